//! Retention rules (`[[retention]]`): which tags of a repository to remove, evaluated before
//! the sweep. The choice is a pure function of the tags and their push times, so it is tested
//! without a store.
//!
//! A rule applies to the repositories its glob matches; the first matching rule wins. Tags are
//! ordered by push time (the mtime of `current/link`, rewritten on every push), newest first.
//! A tag is removed when all of these hold: it is not among the `keep_last` newest tags (all
//! tags count, protected or not), it does not match `keep_tags`, and it is older than
//! `older_than` (when given). A rule with neither `keep_last` nor `older_than` removes nothing.

use std::time::{Duration, SystemTime};

use regex::Regex;

use crate::auth::access::RepoGlob;

#[derive(Debug, Clone)]
pub struct RetentionRule {
    pub repositories: RepoGlob,
    pub keep_last: Option<usize>,
    pub keep_tags: Option<Regex>,
    pub older_than: Option<Duration>,
}

/// Rules are equal when they read the same (a regex compares by its pattern).
impl PartialEq for RetentionRule {
    fn eq(&self, other: &Self) -> bool {
        self.repositories == other.repositories
            && self.keep_last == other.keep_last
            && self.keep_tags.as_ref().map(Regex::as_str)
                == other.keep_tags.as_ref().map(Regex::as_str)
            && self.older_than == other.older_than
    }
}

impl std::fmt::Display for RetentionRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "repositories {:?}", self.repositories.as_str())?;
        if let Some(n) = self.keep_last {
            write!(f, ", keep_last {n}")?;
        }
        if let Some(pattern) = &self.keep_tags {
            write!(f, ", keep_tags {:?}", pattern.as_str())?;
        }
        if let Some(age) = self.older_than {
            write!(f, ", older_than {}", humantime::format_duration(age))?;
        }
        Ok(())
    }
}

impl RetentionRule {
    pub fn new(
        repositories: RepoGlob,
        keep_last: Option<usize>,
        keep_tags: Option<Regex>,
        older_than: Option<Duration>,
    ) -> RetentionRule {
        RetentionRule {
            repositories,
            keep_last,
            keep_tags,
            older_than,
        }
    }

    pub fn applies_to(&self, repository: &str) -> bool {
        self.repositories.matches(repository)
    }

    /// The tags to remove from `tags` (name, push time), in no particular order.
    pub fn tags_to_remove(&self, tags: &[(String, SystemTime)], now: SystemTime) -> Vec<String> {
        if self.keep_last.is_none() && self.older_than.is_none() {
            return Vec::new();
        }
        let mut by_age: Vec<&(String, SystemTime)> = tags.iter().collect();
        // Newest first; equal times by name so the choice is stable.
        by_age.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        by_age
            .into_iter()
            .skip(self.keep_last.unwrap_or(0))
            .filter(|(name, _)| !self.keep_tags.as_ref().is_some_and(|re| re.is_match(name)))
            .filter(|(_, pushed)| {
                self.older_than
                    .is_none_or(|age| now.duration_since(*pushed).unwrap_or(Duration::ZERO) > age)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// The first rule that applies to a repository.
pub fn rule_for<'a>(rules: &'a [RetentionRule], repository: &str) -> Option<&'a RetentionRule> {
    rules.iter().find(|rule| rule.applies_to(repository))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn tags(now: SystemTime, list: &[(&str, u64)]) -> Vec<(String, SystemTime)> {
        list.iter()
            .map(|(n, days)| (n.to_string(), now - DAY * *days as u32))
            .collect()
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn keep_last_keeps_the_newest_by_push_time() {
        let now = SystemTime::now();
        let t = tags(now, &[("a", 5), ("b", 1), ("c", 3), ("d", 2)]);
        let rule = RetentionRule::new(
            crate::auth::access::RepoGlob::parse("**").unwrap(),
            Some(2),
            None,
            None,
        );
        assert_eq!(sorted(rule.tags_to_remove(&t, now)), ["a", "c"]);
    }

    #[test]
    fn protected_tags_and_young_tags_stay() {
        let now = SystemTime::now();
        let t = tags(
            now,
            &[
                ("v1", 90),
                ("v2", 60),
                ("nightly-1", 40),
                ("nightly-2", 20),
                ("pr-9", 1),
            ],
        );
        let rule = RetentionRule::new(
            crate::auth::access::RepoGlob::parse("ci/**").unwrap(),
            Some(1),
            Some(Regex::new("^v[0-9]+").unwrap()),
            Some(DAY * 30),
        );
        // pr-9 is the newest (kept by keep_last), v* protected, nightly-2 younger than 30 days.
        assert_eq!(rule.tags_to_remove(&t, now), ["nightly-1"]);
    }

    #[test]
    fn a_rule_without_limits_removes_nothing() {
        let now = SystemTime::now();
        let t = tags(now, &[("a", 500)]);
        let rule = RetentionRule::new(
            crate::auth::access::RepoGlob::parse("**").unwrap(),
            None,
            None,
            None,
        );
        assert!(rule.tags_to_remove(&t, now).is_empty());
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let rules = [
            RetentionRule::new(
                crate::auth::access::RepoGlob::parse("ci/keep/**").unwrap(),
                None,
                None,
                None,
            ),
            RetentionRule::new(
                crate::auth::access::RepoGlob::parse("ci/**").unwrap(),
                Some(1),
                None,
                None,
            ),
        ];
        assert!(rule_for(&rules, "ci/keep/x").unwrap().keep_last.is_none());
        assert_eq!(rule_for(&rules, "ci/x").unwrap().keep_last, Some(1));
        assert!(rule_for(&rules, "prod/x").is_none());
    }
}
