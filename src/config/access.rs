//! `[auth] anonymous_pull`, `[[auth.groups]]` and `[[access]]` → a checked
//! [`AccessPolicy`]. The checks themselves are `access`'s; this file only gives each problem its
//! file, line and key.

use super::diagnostics::{ConfigError, Locator};
use super::raw::{RawAccessRule, RawGroup};
use crate::auth::access::{AccessPolicy, Place, PolicySpec, RuleSpec};

const RULES: &[&str] = &["access"];
const GROUPS: &[&str] = &["auth", "groups"];

pub(super) fn access_policy(
    anonymous_pull: Option<bool>,
    groups: Option<Vec<RawGroup>>,
    rules: Option<Vec<RawAccessRule>>,
    locator: &Locator<'_>,
) -> Result<AccessPolicy, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let rules = rules.unwrap_or_default();
    for (i, rule) in rules.iter().enumerate() {
        if rule.repositories.is_none() {
            errors.push(locator.error_in_entry(
                RULES,
                i,
                "repositories",
                "a rule needs repositories, a glob such as \"team-a/**\" or \"**\"",
            ));
        }
    }
    let spec = PolicySpec {
        anonymous_pull: anonymous_pull.unwrap_or(false),
        groups: groups
            .unwrap_or_default()
            .into_iter()
            .map(|g| (g.name, g.members.unwrap_or_default()))
            .collect(),
        rules: rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| RuleSpec {
                // A missing glob is reported above; "**" keeps the other checks meaningful.
                repositories: r.repositories.unwrap_or_else(|| "**".to_owned()),
                users: r.users.unwrap_or_default(),
                actions: r.actions.unwrap_or_default(),
                origin: locator.entry_origin(RULES, i),
            })
            .collect(),
    };
    match AccessPolicy::build(&spec) {
        Ok(policy) if errors.is_empty() => Ok(policy),
        Ok(_) => Err(errors),
        Err(problems) => {
            errors.extend(problems.into_iter().map(|p| match p.place {
                Place::AnonymousPull => locator.error("auth", Some("anonymous_pull"), p.message),
                Place::Group(i, key) => locator.error_in_entry(GROUPS, i, key, p.message),
                Place::Rule(i, key) => locator.error_in_entry(RULES, i, key, p.message),
            }));
            errors.sort_by_key(|e| e.line);
            Err(errors)
        }
    }
}
