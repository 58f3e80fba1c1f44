//! `[[mirror]]` → the engine's [`MirrorSettings`]: every problem with its line and key (a
//! missing name or URL, two defaults, a prefix or namespace used twice, a password without a
//! user). The files (`password_file`, `ca_file`) are read when the server starts.

use std::collections::HashSet;

use super::diagnostics::{ConfigError, Locator};
use super::raw::RawMirror;
use crate::registry::mirror::{MirrorSettings, DEFAULT_MAX_CONCURRENT, DEFAULT_TAG_TTL};
use crate::upstream::UpstreamSettings;

pub(super) fn mirror_settings(
    raw: Option<Vec<RawMirror>>,
    locator: &Locator<'_>,
) -> Result<Vec<MirrorSettings>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut mirrors = Vec::new();
    let (mut names, mut prefixes, mut namespaces) =
        (HashSet::new(), HashSet::new(), HashSet::new());
    let mut default_at = None;
    for (index, raw) in raw.unwrap_or_default().into_iter().enumerate() {
        let mut error = |key: &str, message: String| {
            errors.push(locator.error_in_array("mirror", index, key, message))
        };
        let name = raw.name.unwrap_or_default();
        if !valid_component(&name) {
            error(
                "name",
                format!(
                    "{name:?}: a mirror needs a name of lowercase letters, digits, '.', '_' or '-'"
                ),
            );
        } else if !names.insert(name.clone()) {
            error("name", format!("{name:?} names two mirrors"));
        }
        let url = raw.url.unwrap_or_default();
        let url = url.trim_end_matches('/').to_owned();
        match url.split_once("://") {
            Some(("http" | "https", host)) if !host.is_empty() && !host.contains('/') => {}
            _ => error(
                "url",
                format!(
                    "{url:?}: the upstream's URL is http:// or https:// and a host, without a \
                     path (\"https://registry-1.docker.io\")"
                ),
            ),
        }
        let prefix = raw.prefix.unwrap_or_else(|| name.clone());
        if !valid_component(&prefix) {
            error(
                "prefix",
                format!(
                    "{prefix:?}: a prefix is one component of a repository name (\"dockerhub\")"
                ),
            );
        } else if !prefixes.insert(prefix.clone()) {
            error("prefix", format!("{prefix:?} is the prefix of two mirrors"));
        }
        let namespace = raw.namespace.filter(|ns| !ns.is_empty());
        if let Some(ns) = &namespace {
            if !namespaces.insert(ns.clone()) {
                error(
                    "namespace",
                    format!("{ns:?} is the namespace of two mirrors"),
                );
            }
        }
        let default = raw.default.unwrap_or(false);
        if default {
            match &default_at {
                Some(first) => error(
                    "default",
                    format!("only one mirror can be the default; mirror {first:?} is already"),
                ),
                None => default_at = Some(name.clone()),
            }
        }
        let username = raw.username.filter(|u| !u.is_empty());
        let password_file = raw.password_file.filter(|p| !p.as_os_str().is_empty());
        match (&username, &password_file) {
            (Some(_), None) => error("password_file", "a username needs its password_file".into()),
            (None, Some(_)) => error("username", "a password_file needs its username".into()),
            _ => {}
        }
        let max_concurrent = raw.max_concurrent.unwrap_or(DEFAULT_MAX_CONCURRENT);
        if max_concurrent == 0 {
            error("max_concurrent", "0 would never ask the upstream".into());
        }
        if raw.max_bytes.is_some_and(|b| b.0 == 0) {
            error(
                "max_bytes",
                "0 would keep nothing; leave it out for no limit".into(),
            );
        }
        if raw.max_unused.is_some_and(|d| d.0.is_zero()) {
            error(
                "max_unused",
                "0 would keep nothing; leave it out for no limit".into(),
            );
        }
        mirrors.push(MirrorSettings {
            upstream: UpstreamSettings {
                name,
                url,
                username,
                password_file,
                ca_file: raw.ca_file.filter(|p| !p.as_os_str().is_empty()),
                max_concurrent,
            },
            prefix,
            namespace,
            default,
            tag_ttl: raw.tag_ttl.map_or(DEFAULT_TAG_TTL, |d| d.0),
            max_bytes: raw.max_bytes.map(|b| b.0),
            max_unused: raw.max_unused.map(|d| d.0),
        });
    }
    if errors.is_empty() {
        Ok(mirrors)
    } else {
        Err(errors)
    }
}

/// One component of a repository name, as the distribution spec writes it.
fn valid_component(text: &str) -> bool {
    format!("{text}/x")
        .parse::<crate::registry::types::RepoName>()
        .is_ok()
        && !text.contains('/')
}
