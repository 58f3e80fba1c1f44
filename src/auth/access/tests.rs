use super::*;

fn rule(repositories: &str, users: &[&str], actions: &[&str]) -> RuleSpec {
    RuleSpec {
        repositories: repositories.to_owned(),
        users: users.iter().map(|s| (*s).to_owned()).collect(),
        actions: actions.iter().map(|s| (*s).to_owned()).collect(),
        origin: String::new(),
    }
}

fn spec(anonymous_pull: bool, rules: Vec<RuleSpec>) -> PolicySpec {
    PolicySpec {
        anonymous_pull,
        groups: vec![(
            "ci".to_owned(),
            vec!["ci-bot".to_owned(), "release-bot".to_owned()],
        )],
        rules,
    }
}

fn policy(anonymous_pull: bool, rules: Vec<RuleSpec>) -> AccessPolicy {
    AccessPolicy::build(&spec(anonymous_pull, rules)).unwrap()
}

fn errors(anonymous_pull: bool, rules: Vec<RuleSpec>) -> Vec<PolicyError> {
    AccessPolicy::build(&spec(anonymous_pull, rules)).unwrap_err()
}

use Action::{Delete, Pull, Push};

/// The example, plus anonymous pull of `public/**`.
fn example() -> AccessPolicy {
    policy(
        true,
        vec![
            rule("team-a/**", &["alice"], &["pull", "push"]),
            rule("**", &["@ci"], &["pull", "push", "delete"]),
            rule("public/**", &["anonymous", "*"], &["pull"]),
        ],
    )
}

#[test]
fn users_groups_star_and_anonymous_match_as_written() {
    let p = example();
    assert!(p.allows(Some("alice"), "team-a/app", Pull));
    assert!(p.allows(Some("alice"), "team-a/x/app", Push));
    assert!(!p.allows(Some("alice"), "team-a/app", Delete));
    assert!(!p.allows(Some("alice"), "team-b/app", Pull), "default deny");
    assert!(p.allows(Some("ci-bot"), "team-b/app", Delete), "via @ci");
    assert!(p.allows(Some("release-bot"), "team-a/app", Push));
    assert!(
        p.allows(Some("bob"), "public/base", Pull),
        "\"*\" is any user"
    );
    assert!(!p.allows(Some("bob"), "public/base", Push));
    assert!(p.allows(None, "public/base", Pull), "anonymous");
    assert!(!p.allows(None, "public/base", Push), "anonymous only pulls");
    assert!(!p.allows(None, "team-a/app", Pull));
    let d = p.decide(Some("release-bot"), "x", Pull);
    assert_eq!(
        d.why,
        Why::Rule {
            index: 1,
            by: "\"@ci\" (release-bot is a member)".to_owned()
        }
    );
}

#[test]
fn the_first_matching_rule_wins_even_when_it_denies() {
    // prod is read-only for everyone; a later, broader rule does not add push back.
    let p = policy(
        false,
        vec![
            rule("prod/**", &["*"], &["pull"]),
            rule("**", &["*"], &["pull", "push", "delete"]),
        ],
    );
    assert!(!p.allows(Some("alice"), "prod/app", Push));
    assert_eq!(p.decide(Some("alice"), "prod/app", Push).rule(), Some(0));
    assert!(p.allows(Some("alice"), "dev/app", Push));
    assert_eq!(p.decide(Some("alice"), "dev/app", Push).rule(), Some(1));
}

#[test]
fn without_rules_every_authenticated_user_may_do_everything() {
    let p = AccessPolicy::default();
    for action in Action::ALL {
        let d = p.decide(Some("anyone"), "any/repo", action);
        assert_eq!((d.allowed, d.why), (true, Why::NoRules));
    }
    assert_eq!(p.decide(None, "any/repo", Pull).why, Why::AnonymousPullOff);
}

#[test]
fn anonymous_needs_anonymous_pull() {
    let rules = || vec![rule("**", &["anonymous", "*"], &["pull"])];
    let off = policy(false, rules());
    assert_eq!(off.decide(None, "a", Pull).why, Why::AnonymousPullOff);
    let on = policy(true, rules());
    assert!(on.allows(None, "a", Pull));
    assert_eq!(on.decide(None, "a", Delete).why, Why::AnonymousOnlyPulls);
}

fn places(errors: &[PolicyError]) -> Vec<Place> {
    errors.iter().map(|e| e.place).collect()
}

#[test]
fn mistakes_are_reported_with_their_place() {
    let e = errors(
        false,
        vec![
            rule("team/**", &["@nobody"], &["pull"]),
            rule("Team/**", &["alice"], &["pull"]),
            rule("a", &["alice"], &["pull", "write"]),
            rule("b", &[], &["pull"]),
            rule("c", &["alice"], &[]),
        ],
    );
    assert_eq!(
        places(&e),
        [
            Place::Rule(0, "users"),
            Place::Rule(1, "repositories"),
            Place::Rule(2, "actions"),
            Place::Rule(3, "users"),
            Place::Rule(4, "actions"),
        ],
        "{e:?}"
    );
    assert!(e[0].message.contains("@nobody"), "{}", e[0].message);
    assert!(e[2].message.contains("\"write\""), "{}", e[2].message);
}

#[test]
fn a_rule_that_can_never_match_is_an_error() {
    // Shadowed by an earlier rule with broader repositories and users.
    let e = errors(
        false,
        vec![
            rule("team/**", &["*"], &["pull"]),
            rule("team/app", &["alice", "@ci"], &["push"]),
        ],
    );
    assert_eq!(places(&e), [Place::Rule(1, "repositories")]);
    assert!(e[0].message.contains("rule 1"), "{}", e[0].message);
    // Same repositories, a group whose every member is named earlier.
    let e = errors(
        false,
        vec![
            rule("**", &["ci-bot", "release-bot"], &["pull"]),
            rule("**", &["@ci"], &["push"]),
        ],
    );
    assert_eq!(places(&e), [Place::Rule(1, "repositories")]);
    // Only anonymous, with anonymous pull off.
    let e = errors(false, vec![rule("**", &["anonymous"], &["pull"])]);
    assert_eq!(places(&e), [Place::Rule(0, "users")]);
    // Partly shadowed rules are fine: bob and other repositories still reach them.
    policy(
        false,
        vec![
            rule("team/**", &["alice"], &["pull"]),
            rule("team/**", &["alice", "bob"], &["push"]),
            rule("**", &["alice"], &["push"]),
        ],
    );
}

#[test]
fn anonymous_pull_without_an_anonymous_rule_is_an_error() {
    let e = errors(true, vec![rule("**", &["*"], &["pull"])]);
    assert_eq!(places(&e), [Place::AnonymousPull]);
    let e = AccessPolicy::build(&PolicySpec {
        anonymous_pull: true,
        ..PolicySpec::default()
    })
    .unwrap_err();
    assert_eq!(places(&e), [Place::AnonymousPull]);
}

#[test]
fn group_mistakes_are_reported() {
    let e = AccessPolicy::build(&PolicySpec {
        anonymous_pull: false,
        groups: vec![
            ("ci".into(), vec!["a".into()]),
            ("ci".into(), vec![]),
            ("@x".into(), vec![]),
            ("y".into(), vec!["@ci".into(), "*".into()]),
        ],
        rules: vec![],
    })
    .unwrap_err();
    assert_eq!(
        places(&e),
        [
            Place::Group(1, "name"),
            Place::Group(2, "name"),
            Place::Group(3, "members"),
            Place::Group(3, "members"),
        ]
    );
}

#[test]
fn explain_names_the_deciding_rule_for_each_action() {
    let mut written = spec(
        false,
        vec![
            rule("team-a/**", &["alice"], &["pull", "push"]),
            rule("**", &["@ci"], &["pull", "push", "delete"]),
        ],
    );
    written.rules[0].origin = "regapp.toml:12".to_owned();
    let p = AccessPolicy::build(&written).unwrap();
    let text = explain(&p, "alice", "team-a/app");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "alice on team-a/app (2 rules, anonymous_pull = false)"
    );
    assert_eq!(
        lines[1],
        "pull    allowed by rule 1: it names \"alice\" \
         [regapp.toml:12 repositories = \"team-a/**\", actions = pull, push]"
    );
    assert!(lines[3].starts_with("delete  denied by rule 1"), "{text}");
    let text = explain(&p, "alice", "team-b/app");
    assert!(
        text.contains("pull    denied: no rule matches (default deny)"),
        "{text}"
    );
    let text = explain(&AccessPolicy::default(), "bob", "x");
    assert!(
        text.contains("push    allowed: no [[access]] rules, so every authenticated user"),
        "{text}"
    );
    let text = explain(&p, "anonymous", "team-a/app");
    assert!(text.contains("auth.anonymous_pull is false"), "{text}");
}

#[test]
fn an_update_is_seen_by_the_next_load() {
    let access = Access::new(AccessPolicy::default());
    let before = access.current();
    access.update(example());
    assert!(before.allows(Some("bob"), "team-a/app", Push));
    assert!(!access.current().allows(Some("bob"), "team-a/app", Push));
}
