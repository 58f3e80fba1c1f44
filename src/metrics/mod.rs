//! The one place metrics are created. [`Metrics::new`] registers every family once, named
//! `regapp_<part>_<what>_<unit>`, and hands out typed handles: the engine gets
//! [`EngineMetrics`], the edge [`AuthMetrics`], the garbage collector [`GcMetrics`]. Facts that
//! another part already keeps (htpasswd reload counts, the certificate in use, ACME attempts)
//! are copied in at scrape time by closures `app` registers with [`Metrics::on_scrape`].
//!
//! Architecture Invariant: this module imports nothing of the parts it measures; they import
//! their handle from here. No global registry: a test can run two servers in one process.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

mod cluster;
mod edge;
mod engine;
mod gc;
pub mod health;
mod mirror;
pub mod server;

pub use cluster::ClusterMetrics;
pub use edge::EdgeMetrics;
pub use engine::{EngineMetrics, RouteClass};
pub use gc::GcMetrics;
pub use mirror::{Cached, MirrorMetrics};

/// `[metrics]` (checked by `config`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSettings {
    /// `/metrics`, `/healthz` and `/readyz`, plain HTTP.
    pub listen: std::net::SocketAddr,
    /// Clients that may also read `/metrics` through the edge; empty = not on the edge.
    pub allow: Vec<ipnet::IpNet>,
}

pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9102";

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            listen: DEFAULT_METRICS_LISTEN.parse().expect("the default parses"),
            allow: Vec::new(),
        }
    }
}

/// The content type of the text exposition format that `promtool check metrics` reads.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric regapp exports. Cheap to clone (all handles are shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub engine: EngineMetrics,
    pub auth: AuthMetrics,
    pub edge: EdgeMetrics,
    pub tls: TlsMetrics,
    pub gc: GcMetrics,
    pub cluster: ClusterMetrics,
    pub mirror: MirrorMetrics,
    refreshers: Arc<Mutex<Vec<Refresher>>>,
}

type Refresher = Box<dyn Fn(&Metrics) + Send + Sync>;

/// What the edge counts per request, and the htpasswd reloads copied from `auth`.
#[derive(Clone)]
pub struct AuthMetrics {
    successes: IntCounter,
    failures: IntCounterVec,
    rate_limited: IntCounter,
    htpasswd_reloads: IntCounter,
    htpasswd_reload_errors: IntCounter,
}

/// Certificates: expiry per name (any TLS mode) and ACME renewal attempts by result.
#[derive(Clone)]
pub struct TlsMetrics {
    expiry: IntGaugeVec,
    renewal_attempts: IntCounterVec,
}

impl Metrics {
    /// Registers every family. `version` and `commit` label `regapp_build_info`.
    pub fn new(version: &str, commit: &str) -> Metrics {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new(
                "regapp_build_info",
                "Always 1; the labels say which build runs.",
            ),
            &["version", "commit"],
        )
        .expect("a valid metric definition");
        build.with_label_values(&[version, commit]).set(1);
        register(&registry, build);
        Metrics {
            engine: EngineMetrics::register(&registry),
            auth: AuthMetrics::register(&registry),
            edge: EdgeMetrics::register(&registry),
            tls: TlsMetrics::register(&registry),
            gc: GcMetrics::register(&registry),
            cluster: ClusterMetrics::register(&registry),
            mirror: MirrorMetrics::register(&registry),
            registry,
            refreshers: Arc::default(),
        }
    }

    /// Runs `refresh` before every scrape, to copy in facts another part keeps.
    pub fn on_scrape(&self, refresh: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.refreshers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(refresh));
    }

    /// The text exposition of every metric, refreshed now.
    pub fn render(&self) -> String {
        for refresh in self
            .refreshers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            refresh(self);
        }
        let mut out = Vec::new();
        // Encoding into a Vec fails only for invalid metric names, which `new` rules out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl AuthMetrics {
    fn register(registry: &Registry) -> AuthMetrics {
        AuthMetrics {
            successes: counter(
                registry,
                "regapp_auth_successes_total",
                "Requests let in with valid credentials.",
            ),
            failures: counter_vec(
                registry,
                "regapp_auth_failures_total",
                "Requests refused with 401, by reason (missing credentials, denied).",
                &["reason"],
            ),
            rate_limited: counter(
                registry,
                "regapp_auth_rate_limited_total",
                "Requests refused with 429 because their address failed too often.",
            ),
            htpasswd_reloads: counter(
                registry,
                "regapp_auth_htpasswd_reloads_total",
                "htpasswd reloads that succeeded (file change, SIGHUP).",
            ),
            htpasswd_reload_errors: counter(
                registry,
                "regapp_auth_htpasswd_reload_errors_total",
                "htpasswd reloads that failed and kept the last good user set.",
            ),
        }
    }

    pub fn success(&self) {
        self.successes.inc();
    }

    /// `reason`: "missing" (no credentials) or "denied" (unknown user, wrong password).
    pub fn failure(&self, reason: &'static str) {
        self.failures.with_label_values(&[reason]).inc();
    }

    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// Copies the totals `auth` keeps (it counts reloads where they happen).
    pub fn set_htpasswd_reloads(&self, ok: u64, errors: u64) {
        catch_up(&self.htpasswd_reloads, ok);
        catch_up(&self.htpasswd_reload_errors, errors);
    }
}

impl TlsMetrics {
    fn register(registry: &Registry) -> TlsMetrics {
        TlsMetrics {
            expiry: gauge_vec(
                registry,
                "regapp_tls_certificate_expiry_timestamp_seconds",
                "When the certificate served for each name expires (Unix time).",
                &["name"],
            ),
            renewal_attempts: counter_vec(
                registry,
                "regapp_acme_renewal_attempts_total",
                "ACME renewal attempts by result: success, or the failure's kind.",
                &["result"],
            ),
        }
    }

    /// The certificate in use: (name, expiry in Unix seconds) for each of its names. Names no
    /// longer served disappear.
    pub fn set_expiry(&self, names: &[(String, u64)]) {
        self.expiry.reset();
        for (name, expiry) in names {
            self.expiry
                .with_label_values(&[name.as_str()])
                .set(i64::try_from(*expiry).unwrap_or(i64::MAX));
        }
    }

    /// Copies the attempt totals the certificate manager keeps.
    pub fn set_renewal_attempts<'a>(&self, totals: impl IntoIterator<Item = (&'a str, u64)>) {
        for (result, total) in totals {
            catch_up(&self.renewal_attempts.with_label_values(&[result]), total);
        }
    }
}

/// Brings a counter up to a total kept elsewhere (counters only go up; a lower total is ignored).
fn catch_up(counter: &IntCounter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

fn register<C: prometheus::core::Collector + 'static>(registry: &Registry, collector: C) {
    registry
        .register(Box::new(collector))
        .expect("each metric is registered once, by Metrics::new");
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("a valid metric definition");
    register(registry, c.clone());
    c
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric definition");
    register(registry, c.clone());
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("a valid metric definition");
    register(registry, g.clone());
    g
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric definition");
    register(registry, g.clone());
    g
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("a valid metric definition");
    register(registry, h.clone());
    h
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("a valid metric definition");
    register(registry, h.clone());
    h
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests;
