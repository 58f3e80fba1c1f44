//! `[gc]` and `[[retention]]` → the collector's [`GcPolicy`]: the collection schedule, the
//! grace period and the retention rules. Regexes are compiled here, once, so a bad one is
//! reported with its line and key.

use super::diagnostics::{ConfigError, Locator};
use super::raw::{RawGc, RawRetention};
use crate::auth::access::RepoGlob;
use crate::registry::gc::{GcPolicy, RetentionRule};

pub(super) fn gc_settings(
    gc: Option<RawGc>,
    retention: Option<Vec<RawRetention>>,
    locator: &Locator<'_>,
) -> Result<GcPolicy, Vec<ConfigError>> {
    let gc = gc.unwrap_or_default();
    let default = GcPolicy::default();
    let mut errors = Vec::new();
    let interval = match gc.interval {
        None => default.interval,
        Some(None) => None,
        Some(Some(d)) if d.0.is_zero() => None,
        Some(Some(d)) => Some(d.0),
    };
    let mut rules = Vec::new();
    for (index, rule) in retention.unwrap_or_default().into_iter().enumerate() {
        let error =
            |key: &str, message: String| locator.error_in_array("retention", index, key, message);
        let repositories = match rule.repositories.as_deref() {
            Some(glob) if !glob.is_empty() => match RepoGlob::parse(glob) {
                Ok(glob) => glob,
                Err(e) => {
                    errors.push(error("repositories", e.to_string()));
                    continue;
                }
            },
            _ => {
                errors.push(error(
                    "repositories",
                    "a retention rule needs the repositories it applies to (a glob such as \"ci/**\")".to_owned(),
                ));
                continue;
            }
        };
        let keep_tags = match rule.keep_tags.as_deref().map(regex::Regex::new) {
            None => None,
            Some(Ok(regex)) => Some(regex),
            Some(Err(e)) => {
                errors.push(error("keep_tags", format!("not a regular expression: {e}")));
                None
            }
        };
        if rule.keep_last.is_none() && rule.older_than.is_none() {
            errors.push(error(
                "repositories",
                "this rule removes nothing: give it keep_last, older_than or both".to_owned(),
            ));
        }
        rules.push(RetentionRule::new(
            repositories,
            rule.keep_last,
            keep_tags,
            rule.older_than.map(|d| d.0),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(GcPolicy {
        interval,
        grace: gc.grace.map_or(default.grace, |d| d.0),
        delete_untagged: gc.delete_untagged.unwrap_or(default.delete_untagged),
        upload_max_age: gc.upload_max_age.map_or(default.upload_max_age, |d| d.0),
        retention: rules,
        clock_skew: default.clock_skew,
        caches: Vec::new(),
    })
}
