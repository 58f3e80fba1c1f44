//! The file's shape as serde reads it: every key optional, unknown keys refused. Values that
//! have a type (addresses, durations, CIDRs, modes) are parsed here, so a bad one is reported
//! with its key and line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub engine: RawEngine,
    pub edge: Option<RawEdge>,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub auth: RawAuth,
    pub acme: Option<RawAcme>,
    pub gc: Option<RawGc>,
    pub retention: Option<Vec<RawRetention>>,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub cluster: RawCluster,
    /// `[[access]]`: per-repository rules, in order.
    pub access: Option<Vec<RawAccessRule>>,
    /// `[[mirror]]`: upstreams the engine caches.
    pub mirror: Option<Vec<RawMirror>>,
    /// `[[immutable]]`: tags that never move.
    pub immutable: Option<Vec<RawImmutable>>,
}

/// One `[[immutable]]` rule.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawImmutable {
    pub repositories: Option<String>,
    pub tags: Option<String>,
}

/// One `[[mirror]]`; missing and contradictory keys are reported by `mirror.rs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMirror {
    pub name: Option<String>,
    pub url: Option<String>,
    pub prefix: Option<String>,
    pub namespace: Option<String>,
    pub default: Option<bool>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub tag_ttl: Option<HumanDuration>,
    pub max_concurrent: Option<usize>,
    pub max_bytes: Option<HumanBytes>,
    pub max_unused: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub node: Option<String>,
    pub clock_skew: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    pub root: Option<PathBuf>,
    pub delete_enabled: Option<bool>,
    pub backend: Option<String>,
    pub s3: Option<RawS3>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawS3 {
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub prefix: Option<String>,
    pub path_style: Option<bool>,
    pub credentials_file: Option<PathBuf>,
    pub part_size: Option<u64>,
    pub redirect: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEngine {
    pub listen: Option<SocketAddr>,
    pub max_manifest_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEdge {
    pub hostname: Option<String>,
    pub https_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub allow: Option<Vec<ipnet::IpNet>>,
    pub trusted_proxies: Option<Vec<ipnet::IpNet>>,
    pub shutdown_grace: Option<HumanDuration>,
    pub idle_timeout: Option<HumanDuration>,
    pub handshake_timeout: Option<HumanDuration>,
    pub max_connections: Option<usize>,
    pub max_connections_per_client: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawTlsMode {
    Files,
    SelfSigned,
    Acme,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub mode: Option<RawTlsMode>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Where `self-signed` keeps its certificate (and `ca.crt` for clients to trust).
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    pub htpasswd: Option<PathBuf>,
    pub realm: Option<String>,
    pub anonymous_pull: Option<bool>,
    pub groups: Option<Vec<RawGroup>>,
}

/// `[[auth.groups]]`: a name rules write as `@name`, and its members.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    pub name: String,
    pub members: Option<Vec<String>>,
}

/// `[[access]]`: one rule; missing keys are reported with the rule's line by `access.rs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccessRule {
    pub repositories: Option<String>,
    pub users: Option<Vec<String>>,
    pub actions: Option<Vec<String>>,
}

/// `[acme]`: used when `tls.mode = "acme"`. Empty strings mean "not set", as in the shipped file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcme {
    pub directory: Option<String>,
    pub contact: Option<Vec<String>>,
    pub domains: Option<Vec<String>>,
    pub ca_root: Option<PathBuf>,
    pub eab_kid: Option<String>,
    pub eab_hmac_key: Option<String>,
    pub profile: Option<String>,
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: Option<SocketAddr>,
    pub allow: Option<Vec<ipnet::IpNet>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawLogFormat {
    Text,
    Json,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub level: Option<String>,
    pub format: Option<RawLogFormat>,
}

/// `[gc]`: the collection schedule and what it may delete.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGc {
    /// `""` (or `"0s"`) means no schedule.
    #[serde(default, deserialize_with = "optional_duration")]
    pub interval: Option<Option<HumanDuration>>,
    pub grace: Option<HumanDuration>,
    pub delete_untagged: Option<bool>,
    pub upload_max_age: Option<HumanDuration>,
}

/// One `[[retention]]` rule.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub repositories: Option<String>,
    pub keep_last: Option<usize>,
    pub keep_tags: Option<String>,
    pub older_than: Option<HumanDuration>,
}

/// A present key whose value may be `""` (then `Some(None)`).
fn optional_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<HumanDuration>>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Ok(Some(None));
    }
    parse_duration(&text)
        .map(|d| Some(Some(HumanDuration(d))))
        .map_err(serde::de::Error::custom)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like \"30s\", \"24h\" or \"30d\": {e}"))
}

/// A duration written as humans do: `"30s"`, `"5m"`, `"24h"`, `"30d"` (humantime).
#[derive(Debug, Clone, Copy)]
pub(super) struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// A size written as humans do: `"50GiB"`, `"500MB"`, `"1024"` (bytes). Units are powers of
/// 1024 with or without the `i` (`GB` = `GiB`), as in `regapp du`'s output.
#[derive(Debug, Clone, Copy)]
pub(super) struct HumanBytes(pub u64);

impl<'de> Deserialize<'de> for HumanBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u64),
            Text(String),
        }
        match Written::deserialize(d)? {
            Written::Number(n) => Ok(HumanBytes(n)),
            Written::Text(text) => parse_bytes(&text).map(HumanBytes).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{text:?} is not a size like \"50GiB\", \"500MiB\" or a number of bytes"
                ))
            }),
        }
    }
}

fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let power = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => 2,
        "g" | "gb" | "gib" => 3,
        "t" | "tb" | "tib" => 4,
        _ => return None,
    };
    let bytes = number * 1024f64.powi(power);
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod bytes_tests {
    #[test]
    fn sizes_parse_in_powers_of_1024() {
        assert_eq!(super::parse_bytes("50GiB"), Some(50 << 30));
        assert_eq!(super::parse_bytes("1.5 GB"), Some(3 << 29));
        assert_eq!(super::parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(super::parse_bytes("1000"), Some(1000));
        assert_eq!(super::parse_bytes("lots"), None);
        assert_eq!(super::parse_bytes("5 parsecs"), None);
    }
}
