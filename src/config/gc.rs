//! `[gc]` and `[[retention]]` → [`GcSettings`]: the collection schedule, the grace period and
//! the retention rules. Regexes and globs are checked here, so a bad one is reported with its
//! line and key.

use std::time::Duration;

use super::diagnostics::{ConfigError, Locator};
use super::raw::{RawGc, RawRetention};

pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(86_400);
pub const DEFAULT_GC_GRACE: Duration = Duration::from_secs(3600);
pub const DEFAULT_UPLOAD_MAX_AGE: Duration = Duration::from_secs(86_400);

#[derive(Debug, Clone, PartialEq)]
pub struct GcSettings {
    /// Time between scheduled collections; `None` (`""` or `"0s"`) = none.
    pub interval: Option<Duration>,
    pub grace: Duration,
    pub delete_untagged: bool,
    pub upload_max_age: Duration,
    pub retention: Vec<RetentionSettings>,
}

impl Default for GcSettings {
    fn default() -> Self {
        GcSettings {
            interval: Some(DEFAULT_GC_INTERVAL),
            grace: DEFAULT_GC_GRACE,
            delete_untagged: false,
            upload_max_age: DEFAULT_UPLOAD_MAX_AGE,
            retention: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetentionSettings {
    /// A glob over repository names (`*` within a component, `**` across).
    pub repositories: String,
    pub keep_last: Option<usize>,
    /// A regex (checked to compile) of tags never removed.
    pub keep_tags: Option<String>,
    pub older_than: Option<Duration>,
}

impl std::fmt::Display for RetentionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "repositories {:?}", self.repositories)?;
        if let Some(n) = self.keep_last {
            write!(f, ", keep_last {n}")?;
        }
        if let Some(pattern) = &self.keep_tags {
            write!(f, ", keep_tags {pattern:?}")?;
        }
        if let Some(age) = self.older_than {
            write!(f, ", older_than {}", humantime::format_duration(age))?;
        }
        Ok(())
    }
}

pub(super) fn gc_settings(
    gc: Option<RawGc>,
    retention: Option<Vec<RawRetention>>,
    locator: &Locator<'_>,
) -> Result<GcSettings, Vec<ConfigError>> {
    let gc = gc.unwrap_or_default();
    let mut errors = Vec::new();
    let interval = match gc.interval {
        None => Some(DEFAULT_GC_INTERVAL),
        Some(None) => None,
        Some(Some(d)) if d.0.is_zero() => None,
        Some(Some(d)) => Some(d.0),
    };
    let mut rules = Vec::new();
    for (index, rule) in retention.unwrap_or_default().into_iter().enumerate() {
        let error =
            |key: &str, message: String| locator.error_in_array("retention", index, key, message);
        let repositories = match rule.repositories {
            Some(glob) if !glob.is_empty() => glob,
            _ => {
                errors.push(error(
                    "repositories",
                    "a retention rule needs the repositories it applies to (a glob such as \"ci/**\")".to_owned(),
                ));
                continue;
            }
        };
        if let Some(pattern) = &rule.keep_tags {
            if let Err(e) = regex::Regex::new(pattern) {
                errors.push(error("keep_tags", format!("not a regular expression: {e}")));
            }
        }
        if rule.keep_last.is_none() && rule.older_than.is_none() {
            errors.push(error(
                "repositories",
                "this rule removes nothing: give it keep_last, older_than or both".to_owned(),
            ));
        }
        rules.push(RetentionSettings {
            repositories,
            keep_last: rule.keep_last,
            keep_tags: rule.keep_tags,
            older_than: rule.older_than.map(|d| d.0),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(GcSettings {
        interval,
        grace: gc.grace.map_or(DEFAULT_GC_GRACE, |d| d.0),
        delete_untagged: gc.delete_untagged.unwrap_or(false),
        upload_max_age: gc.upload_max_age.map_or(DEFAULT_UPLOAD_MAX_AGE, |d| d.0),
        retention: rules,
    })
}
