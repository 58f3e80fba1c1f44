//! The configuration file: raw TOML → each part's own settings type, deserialized and checked
//! once, with every problem reported by file, line and key (`diagnostics.rs`). The parts own
//! their settings types (`edge::EdgeSettings`, `registry::gc::GcPolicy`,
//! `certs::acme::AcmeOptions`, …) and never import this module; `app` hands each its own.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::auth::access::AccessPolicy;
use crate::auth::AuthSettings;
use crate::certs::TlsSettings;
use crate::cluster::ClusterSettings;
use crate::edge::{
    EdgeSettings, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT, DEFAULT_SHUTDOWN_GRACE,
};
use crate::metrics::MetricsSettings;
use crate::ops::logging::LogSettings;
use crate::registry::gc::{CacheLimit, GcPolicy};
use crate::registry::store::StoreOptions;
use crate::registry::{EngineSettings, DEFAULT_LISTEN};
use crate::storage::{Backend, StorageSettings};

mod access;
mod acme;
mod diagnostics;
mod gc;
mod immutable;
mod mirror;
mod ops;
mod raw;
mod storage;

pub use diagnostics::{ConfigError, ConfigErrors};

/// Everything regapp runs with, checked and typed: one value of each part's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub storage: StorageSettings,
    pub engine: EngineSettings,
    /// The TLS edge; without an `[edge]` section the engine runs alone on `engine.listen`.
    pub edge: Option<EdgeSettings>,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    /// `[[access]]` rules, `[[auth.groups]]` and `auth.anonymous_pull`, checked. Enforced by
    /// the engine behind the edge (without `[edge]` nobody is authenticated: not enforced).
    pub access: AccessPolicy,
    /// Garbage collection and retention (`[gc]`, `[[retention]]`).
    pub gc: GcPolicy,
    /// This node among others on the same bucket.
    pub cluster: ClusterSettings,
}

impl Settings {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::single(ConfigError {
                origin: path.display().to_string(),
                line: None,
                key: None,
                message: format!("cannot read the file: {e}"),
            })
        })?;
        Settings::parse(&text, &path.display().to_string())
    }

    /// Checks configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Settings, ConfigErrors> {
        let (mut raw, locator) =
            diagnostics::deserialize_reporting_every_key::<raw::RawConfig>(text, origin)?;
        let log = ops::log_settings(raw.log, &locator);
        let access = access::access_policy(
            raw.auth.anonymous_pull.take(),
            raw.auth.groups.take(),
            raw.access.take(),
            &locator,
        );
        let gc = gc::gc_settings(raw.gc.take(), raw.retention.take(), &locator);
        let mirrors = mirror::mirror_settings(raw.mirror.take(), &locator);
        let immutable = immutable::immutable_tags(raw.immutable.take(), &locator);
        let delete_enabled = raw.storage.delete_enabled;
        let storage = storage::storage_settings(std::mem::take(&mut raw.storage), &locator);
        let edge = match raw.edge {
            None => Ok(None),
            Some(edge) => edge_settings(edge, raw.tls, raw.auth, raw.acme, &locator).map(Some),
        };
        let mut problems = Vec::new();
        let mut cluster = ClusterSettings::default();
        if let Some(skew) = raw.cluster.clock_skew {
            cluster.clock_skew = skew.0;
        }
        match raw.cluster.node {
            None => {}
            Some(node) if crate::cluster::valid_node_name(&node) => cluster.node = node,
            Some(node) => problems.push(locator.error(
                "cluster",
                Some("node"),
                format!("{node:?}: a node's name is 1 to 63 letters, digits, '.', '_' or '-'"),
            )),
        }
        if raw.engine.max_manifest_bytes == Some(0) {
            problems.push(locator.error(
                "engine",
                Some("max_manifest_bytes"),
                "0 would refuse every manifest; registry:2's limit is 4194304",
            ));
        }
        // Every problem at once, not the first section's only.
        let (log, edge, access, gc, storage, mirrors, immutable) =
            match (log, edge, access, gc, storage, mirrors, immutable) {
                (
                    Ok(log),
                    Ok(edge),
                    Ok(access),
                    Ok(gc),
                    Ok(storage),
                    Ok(mirrors),
                    Ok(immutable),
                ) if problems.is_empty() => (log, edge, access, gc, storage, mirrors, immutable),
                (log, edge, access, gc, storage, mirrors, immutable) => {
                    let mut errors = log.err().into_iter().collect::<Vec<_>>();
                    errors.extend(edge.err().into_iter().flat_map(|e| e.0));
                    errors.extend(access.err().unwrap_or_default());
                    errors.extend(gc.err().unwrap_or_default());
                    errors.extend(storage.err().unwrap_or_default());
                    errors.extend(mirrors.err().unwrap_or_default());
                    errors.extend(immutable.err().unwrap_or_default());
                    errors.extend(problems);
                    errors.sort_by_key(|e| e.line);
                    return Err(ConfigErrors(errors));
                }
            };
        let settings = Settings {
            storage,
            engine: EngineSettings {
                listen: raw
                    .engine
                    .listen
                    .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("the default parses")),
                store: StoreOptions {
                    delete_enabled: delete_enabled
                        .unwrap_or(StoreOptions::default().delete_enabled),
                    manifest_max_bytes: raw
                        .engine
                        .max_manifest_bytes
                        .unwrap_or(StoreOptions::default().manifest_max_bytes),
                    immutable,
                },
                mirrors: mirrors.clone(),
            },
            edge,
            metrics: ops::metrics_settings(raw.metrics),
            log,
            access,
            gc: GcPolicy {
                clock_skew: cluster.clock_skew,
                caches: mirrors
                    .iter()
                    .map(|m| CacheLimit {
                        name: m.upstream.name.clone(),
                        prefix: m.prefix.clone(),
                        max_bytes: m.max_bytes,
                        max_unused: m.max_unused,
                    })
                    .collect(),
                ..gc
            },
            cluster,
        };
        let clashes = settings.listen_clashes(&locator);
        if !clashes.is_empty() {
            return Err(ConfigErrors(clashes));
        }
        Ok(settings)
    }

    /// Two listeners on one address (or one port, where one of them is on every address): the
    /// second would fail at start with "Address already in use".
    fn listen_clashes(&self, locator: &diagnostics::Locator<'_>) -> Vec<ConfigError> {
        let mut listeners = vec![
            ("engine", "listen", self.engine.listen),
            ("metrics", "listen", self.metrics.listen),
        ];
        if let Some(edge) = &self.edge {
            listeners.push(("edge", "https_listen", edge.https_listen));
            listeners.push(("edge", "http_listen", edge.http_listen));
        }
        let mut errors = Vec::new();
        for (n, (section, key, address)) in listeners.iter().enumerate() {
            let earlier = listeners[..n].iter().find(|(_, _, other)| {
                address.port() != 0
                    && other.port() == address.port()
                    && (other.ip() == address.ip()
                        || other.ip().is_unspecified()
                        || address.ip().is_unspecified())
            });
            if let Some((other_section, other_key, other)) = earlier {
                errors.push(locator.error(
                    section,
                    Some(key),
                    format!(
                        "{address} clashes with {other_section}.{other_key} = {other}: both \
                         cannot listen there"
                    ),
                ));
            }
        }
        errors
    }

    /// `regapp serve --dev`: data in `./regapp-data`, the edge with a self-signed certificate
    /// on https://localhost:5443 (redirect on :5080), the engine behind it on 127.0.0.1:5000.
    pub fn dev() -> Settings {
        let root = PathBuf::from("regapp-data");
        Settings {
            storage: StorageSettings {
                root: root.clone(),
                backend: Backend::Filesystem,
            },
            engine: EngineSettings {
                listen: DEFAULT_LISTEN.parse().expect("the default parses"),
                store: StoreOptions::default(),
                mirrors: Vec::new(),
            },
            edge: Some(EdgeSettings {
                hostname: "localhost".to_owned(),
                https_listen: "127.0.0.1:5443".parse().expect("a literal address"),
                http_listen: "127.0.0.1:5080".parse().expect("a literal address"),
                allow: Vec::new(),
                trusted_proxies: Vec::new(),
                shutdown_grace: std::time::Duration::from_secs(5),
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
                handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
                max_connections: None,
                max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
                tls: TlsSettings::SelfSigned {
                    state_dir: root.join("tls"),
                },
                auth: AuthSettings {
                    htpasswd: root.join("htpasswd"),
                    realm: "regapp-dev".to_owned(),
                },
            }),
            metrics: MetricsSettings::default(),
            log: LogSettings::default(),
            access: AccessPolicy::default(),
            gc: GcPolicy::default(),
            cluster: ClusterSettings::default(),
        }
    }
}

/// `[edge]`, `[tls]` (with `[acme]`) and `[auth]`'s file and realm → the edge's settings, or
/// every problem found in them.
fn edge_settings(
    mut edge: raw::RawEdge,
    tls: raw::RawTls,
    auth: raw::RawAuth,
    raw_acme: Option<raw::RawAcme>,
    locator: &diagnostics::Locator<'_>,
) -> Result<EdgeSettings, ConfigErrors> {
    let hostname = edge.hostname.take().unwrap_or_default();
    let mut errors = edge_key_problems(&edge, &hostname, locator);
    match tls_settings(tls, raw_acme, &hostname, locator) {
        Ok(tls) if errors.is_empty() => Ok(edge_settings_with_defaults(edge, hostname, tls, auth)),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(acme_errors) => {
            errors.extend(acme_errors);
            Err(ConfigErrors(errors))
        }
    }
}

/// Checks the raw `[edge]` keys (`hostname` given apart: it has been taken out of `edge`).
fn edge_key_problems(
    edge: &raw::RawEdge,
    hostname: &str,
    locator: &diagnostics::Locator<'_>,
) -> Vec<ConfigError> {
    let mut errors: Vec<_> = hostname_problem(hostname, locator).into_iter().collect();
    if edge.idle_timeout.is_some_and(|d| d.0.is_zero()) {
        errors.push(locator.error(
            "edge",
            Some("idle_timeout"),
            "0 would cut every request at once: give at least \"1s\" (nginx uses 60s)",
        ));
    }
    if edge.handshake_timeout.is_some_and(|d| d.0.is_zero()) {
        errors.push(locator.error(
            "edge",
            Some("handshake_timeout"),
            "a handshake needs some time: give at least \"1s\"",
        ));
    }
    for (key, value) in [
        ("max_connections", edge.max_connections),
        (
            "max_connections_per_client",
            edge.max_connections_per_client,
        ),
    ] {
        if value == Some(0) {
            errors.push(locator.error("edge", Some(key), "0 would let nobody in"));
        }
    }
    errors
}

/// Why `hostname` cannot be the name clients use, if it cannot.
fn hostname_problem(hostname: &str, locator: &diagnostics::Locator<'_>) -> Option<ConfigError> {
    if hostname.is_empty() {
        Some(locator.error(
            "edge",
            Some("hostname"),
            "the edge needs the name clients use",
        ))
    } else if !is_host_name(hostname) {
        Some(locator.error(
            "edge",
            Some("hostname"),
            format!(
                "{hostname:?} is not a DNS name or IP address (letters, digits, '-' and '.'; \
                 no scheme, port or path)"
            ),
        ))
    } else {
        None
    }
}

/// The certificate source `tls.mode` names (`files` when unset), with default paths; `acme`
/// reports its own problems.
fn tls_settings(
    tls: raw::RawTls,
    raw_acme: Option<raw::RawAcme>,
    hostname: &str,
    locator: &diagnostics::Locator<'_>,
) -> Result<TlsSettings, Vec<ConfigError>> {
    Ok(match tls.mode.unwrap_or(raw::RawTlsMode::Files) {
        raw::RawTlsMode::Files => TlsSettings::Files {
            cert_file: tls
                .cert_file
                .unwrap_or_else(|| PathBuf::from("/etc/regapp/tls/fullchain.pem")),
            key_file: tls
                .key_file
                .unwrap_or_else(|| PathBuf::from("/etc/regapp/tls/privkey.pem")),
        },
        raw::RawTlsMode::SelfSigned => TlsSettings::SelfSigned {
            state_dir: tls
                .state_dir
                .unwrap_or_else(|| PathBuf::from("/var/lib/regapp/tls")),
        },
        raw::RawTlsMode::Acme => TlsSettings::Acme(acme::acme_settings(
            raw_acme.unwrap_or_default(),
            hostname,
            locator,
        )?),
    })
}

/// The checked `[edge]` keys, with the defaults for those left out.
fn edge_settings_with_defaults(
    edge: raw::RawEdge,
    hostname: String,
    tls: TlsSettings,
    auth: raw::RawAuth,
) -> EdgeSettings {
    EdgeSettings {
        hostname,
        https_listen: edge
            .https_listen
            .unwrap_or_else(|| "0.0.0.0:443".parse().expect("a literal address")),
        http_listen: edge
            .http_listen
            .unwrap_or_else(|| "0.0.0.0:80".parse().expect("a literal address")),
        allow: edge.allow.unwrap_or_default(),
        trusted_proxies: edge.trusted_proxies.unwrap_or_default(),
        shutdown_grace: edge.shutdown_grace.map_or(DEFAULT_SHUTDOWN_GRACE, |d| d.0),
        idle_timeout: edge.idle_timeout.map_or(DEFAULT_IDLE_TIMEOUT, |d| d.0),
        handshake_timeout: edge
            .handshake_timeout
            .map_or(DEFAULT_HANDSHAKE_TIMEOUT, |d| d.0),
        max_connections: edge.max_connections,
        max_connections_per_client: edge
            .max_connections_per_client
            .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_CLIENT),
        tls,
        auth: AuthSettings {
            htpasswd: auth
                .htpasswd
                .unwrap_or_else(|| PathBuf::from("/etc/regapp/htpasswd")),
            realm: auth.realm.unwrap_or_else(|| "regapp".to_owned()),
        },
    }
}

/// A DNS name (labels of letters, digits and inner hyphens, or `_` as some internal names use)
/// or an IP address: what a redirect's `Location` and a certificate can carry.
fn is_host_name(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    name.len() <= 253 && name.trim_end_matches('.').split('.').all(label)
}

impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "cluster.node = {}", self.cluster.node)?;
        writeln!(
            f,
            "cluster.clock_skew = {}",
            humantime::format_duration(self.cluster.clock_skew)
        )?;
        writeln!(f, "storage.root = {}", self.storage.root.display())?;
        if let Backend::S3(s3) = &self.storage.backend {
            // Not the credentials: this text goes to logs.
            writeln!(f, "storage.backend = s3")?;
            writeln!(f, "storage.s3 = {}", s3.location())?;
            writeln!(f, "storage.s3.prefix = {:?}", s3.prefix)?;
            writeln!(f, "storage.s3.path_style = {}", s3.path_style)?;
            writeln!(f, "storage.s3.part_size = {}", s3.part_size)?;
            writeln!(f, "storage.s3.redirect = {}", s3.redirect)?;
        }
        writeln!(
            f,
            "storage.delete_enabled = {}",
            self.engine.store.delete_enabled
        )?;
        writeln!(f, "engine.listen = {}", self.engine.listen)?;
        write!(
            f,
            "engine.max_manifest_bytes = {}",
            self.engine.store.manifest_max_bytes
        )?;
        write!(
            f,
            "\nmetrics.listen = {}\nmetrics.allow = {:?}\nlog.level = {}\nlog.format = {:?}",
            self.metrics.listen, self.metrics.allow, self.log.level, self.log.format
        )?;
        for m in &self.engine.mirrors {
            // Not the password: this text goes to logs.
            write!(
                f,
                "\nmirror {:?} = {} as {}/ (namespace {:?}, default {}, tag_ttl {})",
                m.upstream.name,
                m.upstream.url,
                m.prefix,
                m.namespace.as_deref().unwrap_or(""),
                m.default,
                humantime::format_duration(m.tag_ttl)
            )?;
        }
        write!(f, "\ngc.interval = ")?;
        match self.gc.interval {
            Some(interval) => write!(f, "{}", humantime::format_duration(interval))?,
            None => write!(f, "\"\" (no schedule)")?,
        }
        write!(
            f,
            "\ngc.grace = {}\ngc.delete_untagged = {}\ngc.upload_max_age = {}",
            humantime::format_duration(self.gc.grace),
            self.gc.delete_untagged,
            humantime::format_duration(self.gc.upload_max_age)
        )?;
        // One `key = value` line per rule, so a reload can tell what changed.
        for (i, rule) in self.gc.retention.iter().enumerate() {
            write!(f, "\nretention.{} = {rule}", i + 1)?;
        }
        let Some(edge) = &self.edge else {
            return write!(f, "\n(no [edge]: the engine alone serves engine.listen)");
        };
        writeln!(f)?;
        writeln!(f, "edge.hostname = {}", edge.hostname)?;
        writeln!(f, "edge.https_listen = {}", edge.https_listen)?;
        writeln!(f, "edge.http_listen = {}", edge.http_listen)?;
        writeln!(f, "edge.allow = {:?}", edge.allow)?;
        writeln!(f, "edge.trusted_proxies = {:?}", edge.trusted_proxies)?;
        writeln!(f, "edge.shutdown_grace = {:?}", edge.shutdown_grace)?;
        writeln!(f, "edge.idle_timeout = {:?}", edge.idle_timeout)?;
        writeln!(f, "edge.handshake_timeout = {:?}", edge.handshake_timeout)?;
        match edge.max_connections {
            Some(max) => writeln!(f, "edge.max_connections = {max}")?,
            None => writeln!(f, "edge.max_connections = (the descriptor limit's)")?,
        }
        writeln!(
            f,
            "edge.max_connections_per_client = {}",
            edge.max_connections_per_client
        )?;
        match &edge.tls {
            TlsSettings::Files {
                cert_file,
                key_file,
            } => writeln!(
                f,
                "tls: files {} + {}",
                cert_file.display(),
                key_file.display()
            )?,
            TlsSettings::SelfSigned { state_dir } => {
                writeln!(f, "tls: self-signed in {}", state_dir.display())?
            }
            TlsSettings::Acme(acme) => writeln!(
                f,
                "tls: acme from {} for {:?}, state in {}",
                acme.directory,
                acme.domains,
                acme.state_dir.display()
            )?,
        }
        writeln!(f, "auth.htpasswd = {}", edge.auth.htpasswd.display())?;
        write!(f, "auth.realm = {:?}", edge.auth.realm)?;
        // One `key = value` line per group and rule, so a reload can tell what changed.
        write!(
            f,
            "\nauth.anonymous_pull = {}",
            self.access.anonymous_pull()
        )?;
        for (name, members) in self.access.groups() {
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            write!(f, "\nauth.groups.{name} = {}", members.join(", "))?;
        }
        for (i, rule) in self.access.rules().iter().enumerate() {
            write!(f, "\naccess.{} = {rule}", i + 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
