//! Immutable tags (`[[immutable]]`): rules over repositories and tag patterns. A tag a rule
//! holds never moves to another digest and is never deleted, by a client, by retention or by
//! a manifest's deletion; pushing the digest it already names again is fine (CI retries).
//! Mirrored repositories follow their upstream and are not held (the mirror caches with
//! `manifest_put_cached`).

use regex::Regex;

use crate::auth::access::RepoGlob;

#[derive(Debug, Clone)]
pub struct ImmutableRule {
    pub repositories: RepoGlob,
    pub tags: Regex,
}

/// Rules are equal when they read the same (a regex compares by its pattern).
impl PartialEq for ImmutableRule {
    fn eq(&self, other: &Self) -> bool {
        self.repositories == other.repositories && self.tags.as_str() == other.tags.as_str()
    }
}

impl std::fmt::Display for ImmutableRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "repositories {:?}, tags {:?}",
            self.repositories.as_str(),
            self.tags.as_str()
        )
    }
}

/// Every `[[immutable]]` rule, in the file's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImmutableTags {
    rules: Vec<ImmutableRule>,
}

impl ImmutableTags {
    pub fn new(rules: Vec<ImmutableRule>) -> ImmutableTags {
        ImmutableTags { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule holding `tag` of `repo`, with its number (1-based, as operators count
    /// `[[immutable]]` tables).
    pub fn rule_for(&self, repo: &str, tag: &str) -> Option<(usize, &ImmutableRule)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.repositories.matches(repo) && rule.tags.is_match(tag))
            .map(|(index, rule)| (index + 1, rule))
    }

    /// What a refusal says about the rule: `[[immutable]] #1 (repositories "**", tags "…")`.
    pub fn describe(&self, repo: &str, tag: &str) -> Option<String> {
        self.rule_for(repo, tag)
            .map(|(n, rule)| format!("[[immutable]] #{n} ({rule})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ImmutableTags {
        ImmutableTags::new(vec![
            ImmutableRule {
                repositories: RepoGlob::parse("prod/**").unwrap(),
                tags: Regex::new(".*").unwrap(),
            },
            ImmutableRule {
                repositories: RepoGlob::parse("**").unwrap(),
                tags: Regex::new(r"^v[0-9]+\.[0-9]+\.[0-9]+$").unwrap(),
            },
        ])
    }

    #[test]
    fn the_first_rule_holding_a_tag_names_it() {
        let rules = rules();
        assert_eq!(rules.rule_for("prod/app", "latest").map(|r| r.0), Some(1));
        assert_eq!(rules.rule_for("team/app", "v1.2.3").map(|r| r.0), Some(2));
        assert!(rules.rule_for("team/app", "v1.2").is_none());
        assert!(rules.rule_for("team/app", "latest").is_none());
        assert_eq!(
            rules.describe("team/app", "v1.0.0").unwrap(),
            // Quoted as the config file writes it.
            r#"[[immutable]] #2 (repositories "**", tags "^v[0-9]+\\.[0-9]+\\.[0-9]+$")"#
        );
    }
}
