//! `regapp access explain USER REPO`: for each action, which rule decides and why.

use std::fmt::Write as _;

use super::policy::{AccessPolicy, Action};

/// The explanation for `user` (`"anonymous"`: a client without credentials) and `repo`, one
/// line per action, e.g.
///
/// ```text
/// alice on team-a/app (2 rules, anonymous_pull = false)
/// pull    allowed by rule 1: it names "alice" [regapp.toml:12 repositories = "team-a/**", actions = pull, push]
/// delete  denied by rule 1: it names "alice" [regapp.toml:12 …]
/// ```
pub fn explain(policy: &AccessPolicy, user: &str, repo: &str) -> String {
    let caller = (user != "anonymous").then_some(user);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{user} on {repo} ({} rules, anonymous_pull = {})",
        policy.rules().len(),
        policy.anonymous_pull()
    );
    for action in Action::ALL {
        let decision = policy.decide(caller, repo, action);
        let _ = write!(out, "{:<7} {decision}", action.as_str());
        if let Some(rule) = decision.rule().map(|i| &policy.rules()[i]) {
            let actions: Vec<&str> = rule.actions.iter().map(|a| a.as_str()).collect();
            let origin = if rule.origin.is_empty() {
                String::new()
            } else {
                format!("{} ", rule.origin)
            };
            let _ = write!(
                out,
                " [{origin}repositories = {:?}, actions = {}]",
                rule.repositories.as_str(),
                actions.join(", ")
            );
        }
        out.push('\n');
    }
    out
}
