//! The rules themselves: who may do what to which repositories, checked once when built, and
//! [`AccessPolicy::decide`] — first matching rule wins, default deny.
//!
//! A rule *matches* a request when its glob matches the repository and one of its users names
//! the caller; the matching rule's `actions` then allow or deny. So an earlier, narrower rule can
//! take rights away (`prod/**` pull-only for `*`, then `**` pull+push for `*`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use super::glob::RepoGlob;

/// What a request does to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Action, String> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not an action; use \"pull\", \"push\" or \"delete\""))
    }
}

/// One entry of a rule's `users`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user name from htpasswd.
    User(String),
    /// `@name`: the members of `[[auth.groups]]` `name`.
    Group(String),
    /// `*`: any authenticated user.
    Authenticated,
    /// `anonymous`: a client without credentials (only with `auth.anonymous_pull`).
    Anonymous,
}

impl Principal {
    fn parse(s: &str) -> Result<Principal, String> {
        match s {
            "" => Err("an empty user name".to_owned()),
            "*" => Ok(Principal::Authenticated),
            "anonymous" => Ok(Principal::Anonymous),
            group if group.starts_with('@') => match &group[1..] {
                "" => Err("\"@\" names no group".to_owned()),
                name => Ok(Principal::Group(name.to_owned())),
            },
            user => Ok(Principal::User(user.to_owned())),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::User(u) => write!(f, "{u}"),
            Principal::Group(g) => write!(f, "@{g}"),
            Principal::Authenticated => f.write_str("*"),
            Principal::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub repositories: RepoGlob,
    pub users: Vec<Principal>,
    pub actions: BTreeSet<Action>,
    /// Where it was written, for messages (`regapp.toml:12`); may be empty.
    pub origin: String,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<String> = self.users.iter().map(|u| u.to_string()).collect();
        let actions: Vec<&str> = self.actions.iter().map(|a| a.as_str()).collect();
        write!(
            f,
            "repositories {:?}, users {}, actions {}",
            self.repositories.as_str(),
            users.join(" "),
            actions.join(" ")
        )
    }
}

/// A rule as written, not yet checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSpec {
    pub repositories: String,
    pub users: Vec<String>,
    pub actions: Vec<String>,
    pub origin: String,
}

/// Everything a policy is built from, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySpec {
    pub anonymous_pull: bool,
    /// `[[auth.groups]]`: name and members, in file order.
    pub groups: Vec<(String, Vec<String>)>,
    pub rules: Vec<RuleSpec>,
}

/// Which written item a problem is about, so the config can give its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    AnonymousPull,
    /// `[[auth.groups]]` number (0-based) and key.
    Group(usize, &'static str),
    /// `[[access]]` number (0-based) and key.
    Rule(usize, &'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub place: Place,
    pub message: String,
}

/// The checked rules. `Default` is "no rules, no anonymous pull".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    anonymous_pull: bool,
    groups: BTreeMap<String, BTreeSet<String>>,
    rules: Vec<Rule>,
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// No `[[access]]` rules: every authenticated user may do everything.
    NoRules,
    /// A client without credentials, and `auth.anonymous_pull` is off.
    AnonymousPullOff,
    /// A client without credentials asked for more than a pull.
    AnonymousOnlyPulls,
    /// Rule `index` matched, naming the caller as `by`.
    Rule { index: usize, by: String },
    /// No rule matched.
    DefaultDeny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub why: Why,
}

impl Decision {
    /// The rule that decided, 0-based.
    pub fn rule(&self) -> Option<usize> {
        match self.why {
            Why::Rule { index, .. } => Some(index),
            _ => None,
        }
    }
}

impl AccessPolicy {
    /// Checks `spec` and builds the policy; every problem is reported, each with its place.
    pub fn build(spec: &PolicySpec) -> Result<AccessPolicy, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let groups = build_groups(&spec.groups, &mut errors);
        let mut rules: Vec<Rule> = Vec::new();
        // Each built rule's number as written (rules that cannot be built are skipped).
        let mut written_index: Vec<usize> = Vec::new();
        for (i, written) in spec.rules.iter().enumerate() {
            let mut error = |key, message: String| {
                errors.push(PolicyError {
                    place: Place::Rule(i, key),
                    message,
                })
            };
            let Some(rule) = build_rule(written, &groups, &mut error) else {
                continue;
            };
            let why = never_matches(&rule, &rules, &written_index, &groups, spec.anonymous_pull);
            if let Some((key, message)) = why {
                error(key, message);
            }
            rules.push(rule);
            written_index.push(i);
        }
        errors.extend(check_anonymous_named(spec.anonymous_pull, &rules));
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(AccessPolicy {
            anonymous_pull: spec.anonymous_pull,
            groups,
            rules,
        })
    }

    /// Whether clients without credentials are let in at all (to pull what rules allow).
    pub fn anonymous_pull(&self) -> bool {
        self.anonymous_pull
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// `[[auth.groups]]`: name → members.
    pub fn groups(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.groups
    }

    /// May `user` (`None`: no credentials) do `action` to repository `repo`?
    pub fn decide(&self, user: Option<&str>, repo: &str, action: Action) -> Decision {
        let deny = |why| Decision {
            allowed: false,
            why,
        };
        if user.is_none() {
            if !self.anonymous_pull {
                return deny(Why::AnonymousPullOff);
            }
            if action != Action::Pull {
                return deny(Why::AnonymousOnlyPulls);
            }
        }
        if self.rules.is_empty() {
            return match user {
                Some(_) => Decision {
                    allowed: true,
                    why: Why::NoRules,
                },
                None => deny(Why::DefaultDeny),
            };
        }
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.repositories.matches(repo) {
                continue;
            }
            if let Some(by) = rule.users.iter().find_map(|p| self.names(p, user)) {
                return Decision {
                    allowed: rule.actions.contains(&action),
                    why: Why::Rule { index, by },
                };
            }
        }
        deny(Why::DefaultDeny)
    }

    pub fn allows(&self, user: Option<&str>, repo: &str, action: Action) -> bool {
        self.decide(user, repo, action).allowed
    }

    /// How `principal` names the caller, if it does (for explanations).
    fn names(&self, principal: &Principal, user: Option<&str>) -> Option<String> {
        match (principal, user) {
            (Principal::Anonymous, None) => Some("\"anonymous\"".to_owned()),
            (Principal::User(name), Some(u)) if name == u => Some(format!("{u:?}")),
            (Principal::Authenticated, Some(_)) => {
                Some("\"*\" (any authenticated user)".to_owned())
            }
            (Principal::Group(g), Some(u)) if self.groups.get(g).is_some_and(|m| m.contains(u)) => {
                Some(format!("\"@{g}\" ({u} is a member)"))
            }
            _ => None,
        }
    }
}

fn build_groups(
    written: &[(String, Vec<String>)],
    errors: &mut Vec<PolicyError>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut groups = BTreeMap::new();
    for (i, (name, members)) in written.iter().enumerate() {
        let mut error = |key, message: String| {
            errors.push(PolicyError {
                place: Place::Group(i, key),
                message,
            })
        };
        let reserved = ["*", "anonymous"].contains(&name.as_str());
        if name.is_empty()
            || name.starts_with('@')
            || reserved
            || name.contains(char::is_whitespace)
        {
            error(
                "name",
                format!("{name:?}: a group name is a plain word (rules write it as \"@name\")"),
            );
            continue;
        }
        if groups.contains_key(name) {
            error("name", format!("group {name:?} is defined twice"));
            continue;
        }
        let mut set = BTreeSet::new();
        for m in members {
            match Principal::parse(m) {
                Ok(Principal::User(u)) => {
                    set.insert(u);
                }
                Ok(other) => error(
                    "members",
                    format!("{other}: members are user names (no groups, \"*\" or \"anonymous\")"),
                ),
                Err(e) => error("members", e),
            }
        }
        groups.insert(name.clone(), set);
    }
    groups
}

/// Parses one written rule, reporting each problem through `error`. `None` when its
/// repositories do not parse or none of its users do: there is nothing left to match.
fn build_rule(
    written: &RuleSpec,
    groups: &BTreeMap<String, BTreeSet<String>>,
    error: &mut impl FnMut(&'static str, String),
) -> Option<Rule> {
    let repositories = RepoGlob::parse(&written.repositories)
        .map_err(|e| error("repositories", e.to_string()))
        .ok();
    let users = parse_users(&written.users, groups, error);
    let actions = parse_actions(&written.actions, error);
    // Here, not in `parse_users`, so that it follows the actions' problems as it always has.
    if written.users.is_empty() {
        error("users", "no users: this rule can never match".to_owned());
    }
    if users.is_empty() {
        return None;
    }
    Some(Rule {
        repositories: repositories?,
        users,
        actions,
        origin: written.origin.clone(),
    })
}

/// Checks that each of a rule's users parses and that each group it names is defined;
/// returns those that pass.
fn parse_users(
    written: &[String],
    groups: &BTreeMap<String, BTreeSet<String>>,
    error: &mut impl FnMut(&'static str, String),
) -> Vec<Principal> {
    let mut users = Vec::new();
    for u in written {
        match Principal::parse(u) {
            Ok(Principal::Group(g)) if !groups.contains_key(&g) => error(
                "users",
                format!("@{g}: no [[auth.groups]] has name = {g:?}"),
            ),
            Ok(p) => users.push(p),
            Err(e) => error("users", e),
        }
    }
    users
}

/// Checks that each of a rule's actions is known and that there is at least one;
/// returns the known ones.
fn parse_actions(
    written: &[String],
    error: &mut impl FnMut(&'static str, String),
) -> BTreeSet<Action> {
    let mut actions = BTreeSet::new();
    for a in written {
        match a.parse::<Action>() {
            Ok(a) => {
                actions.insert(a);
            }
            Err(e) => error("actions", e),
        }
    }
    if written.is_empty() {
        error(
            "actions",
            "no actions: this rule can never allow anything; remove it, or list \
             \"pull\", \"push\" or \"delete\""
                .to_owned(),
        );
    }
    actions
}

/// Checks whether `rule` can ever match: it must name a caller that can exist, and no rule
/// before it (`earlier`, written as rules `written_index`) may match every repository and
/// caller it names. Returns the key and message of the problem, if any.
fn never_matches(
    rule: &Rule,
    earlier: &[Rule],
    written_index: &[usize],
    groups: &BTreeMap<String, BTreeSet<String>>,
    anonymous_pull: bool,
) -> Option<(&'static str, String)> {
    if !rule
        .users
        .iter()
        .any(|p| is_live(p, groups, anonymous_pull))
    {
        let message = "this rule can never match: it names only \"anonymous\" while \
                       auth.anonymous_pull is false, or groups without members";
        return Some(("users", message.to_owned()));
    }
    let (j, first) = earlier
        .iter()
        .enumerate()
        .find(|(_, e)| shadows(e, rule, groups, anonymous_pull))?;
    let name = if first.origin.is_empty() {
        first.repositories.as_str()
    } else {
        first.origin.as_str()
    };
    let message = format!(
        "this rule can never match: rule {} ({name}) comes first and matches every repository \
         and user it names",
        written_index[j] + 1,
    );
    Some(("repositories", message))
}

/// Whether `earlier` matches every repository `rule` matches, for every caller `rule` can name.
fn shadows(
    earlier: &Rule,
    rule: &Rule,
    groups: &BTreeMap<String, BTreeSet<String>>,
    anonymous_pull: bool,
) -> bool {
    earlier.repositories.covers(&rule.repositories)
        && rule
            .users
            .iter()
            .filter(|p| is_live(p, groups, anonymous_pull))
            .all(|p| covered_by(p, &earlier.users, groups))
}

/// Checks that a rule names "anonymous" when `anonymous_pull` is on; otherwise the setting
/// would let clients in only to deny them everything.
fn check_anonymous_named(anonymous_pull: bool, rules: &[Rule]) -> Option<PolicyError> {
    let named = rules
        .iter()
        .any(|r| r.users.contains(&Principal::Anonymous));
    if !anonymous_pull || named {
        return None;
    }
    Some(PolicyError {
        place: Place::AnonymousPull,
        message: "anonymous_pull is on but no [[access]] rule names \"anonymous\", so it \
                  allows nothing; add e.g. repositories = \"**\", users = [\"anonymous\"], \
                  actions = [\"pull\"]"
            .to_owned(),
    })
}

/// Whether `p` can ever name a caller.
fn is_live(p: &Principal, groups: &BTreeMap<String, BTreeSet<String>>, anonymous: bool) -> bool {
    match p {
        Principal::Anonymous => anonymous,
        Principal::Group(g) => groups.get(g).is_some_and(|m| !m.is_empty()),
        Principal::User(_) | Principal::Authenticated => true,
    }
}

/// Whether every caller `p` names is named by one of `earlier` too.
fn covered_by(
    p: &Principal,
    earlier: &[Principal],
    groups: &BTreeMap<String, BTreeSet<String>>,
) -> bool {
    let user_covered = |u: &str| {
        earlier.iter().any(|e| match e {
            Principal::User(name) => name == u,
            Principal::Group(g) => groups.get(g).is_some_and(|m| m.contains(u)),
            Principal::Authenticated => true,
            Principal::Anonymous => false,
        })
    };
    match p {
        Principal::Anonymous => earlier.contains(&Principal::Anonymous),
        Principal::Authenticated => earlier.contains(&Principal::Authenticated),
        Principal::User(u) => user_covered(u),
        Principal::Group(g) => {
            earlier.contains(p)
                || groups
                    .get(g)
                    .is_some_and(|members| members.iter().all(|u| user_covered(u)))
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed { "allowed" } else { "denied" };
        match &self.why {
            Why::NoRules => write!(
                f,
                "{verdict}: no [[access]] rules, so every authenticated user may do everything"
            ),
            Why::AnonymousPullOff => write!(
                f,
                "{verdict}: no credentials, and auth.anonymous_pull is false"
            ),
            Why::AnonymousOnlyPulls => {
                write!(f, "{verdict}: clients without credentials may only pull")
            }
            Why::Rule { index, by } if self.allowed => {
                write!(f, "{verdict} by rule {}: it names {by}", index + 1)
            }
            Why::Rule { index, by } => write!(
                f,
                "{verdict} by rule {}: it names {by}, and this action is not in its actions",
                index + 1
            ),
            Why::DefaultDeny => write!(f, "{verdict}: no rule matches (default deny)"),
        }
    }
}
