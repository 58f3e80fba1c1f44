//! `[[immutable]]` → the store's [`ImmutableTags`]: a repository glob (default every
//! repository) and a tag regex (required), compiled once so a bad one is reported with its
//! line and key.

use super::diagnostics::{ConfigError, Locator};
use super::raw::RawImmutable;
use crate::auth::access::RepoGlob;
use crate::registry::store::{ImmutableRule, ImmutableTags};

pub(super) fn immutable_tags(
    raw: Option<Vec<RawImmutable>>,
    locator: &Locator<'_>,
) -> Result<ImmutableTags, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut rules = Vec::new();
    for (index, rule) in raw.unwrap_or_default().into_iter().enumerate() {
        let error =
            |key: &str, message: String| locator.error_in_array("immutable", index, key, message);
        let repositories = match RepoGlob::parse(rule.repositories.as_deref().unwrap_or("**")) {
            Ok(glob) => glob,
            Err(e) => {
                errors.push(error("repositories", e.to_string()));
                continue;
            }
        };
        let tags = match rule.tags.as_deref() {
            None | Some("") => {
                errors.push(error(
                    "tags",
                    "an immutable rule needs the tags it holds (a regex such as \
                     \"^v[0-9]+\\\\.[0-9]+\\\\.[0-9]+$\")"
                        .to_owned(),
                ));
                continue;
            }
            Some(pattern) => match regex::Regex::new(pattern) {
                Ok(regex) => regex,
                Err(e) => {
                    errors.push(error("tags", format!("not a regular expression: {e}")));
                    continue;
                }
            },
        };
        rules.push(ImmutableRule { repositories, tags });
    }
    if errors.is_empty() {
        Ok(ImmutableTags::new(rules))
    } else {
        Err(errors)
    }
}
