//! What the pull-through cache counts, per `[[mirror]]` name: answers from the cache (hits),
//! fetches from the upstream (misses), bytes fetched, upstream errors by kind and answers
//! served stale because the upstream could not be asked.

use prometheus::{IntCounterVec, Registry};

use super::counter_vec;

/// Cheap to clone.
#[derive(Clone)]
pub struct MirrorMetrics {
    hits: IntCounterVec,
    misses: IntCounterVec,
    upstream_bytes: IntCounterVec,
    upstream_errors: IntCounterVec,
    stale: IntCounterVec,
}

/// What was asked for: a manifest or a blob (a label with two values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    Manifest,
    Blob,
}

impl Cached {
    fn label(self) -> &'static str {
        match self {
            Cached::Manifest => "manifest",
            Cached::Blob => "blob",
        }
    }
}

impl MirrorMetrics {
    pub(super) fn register(registry: &Registry) -> MirrorMetrics {
        MirrorMetrics {
            hits: counter_vec(
                registry,
                "regapp_mirror_hits_total",
                "Mirror requests answered from the cache (a tag within tag_ttl or confirmed \
                 by the upstream, a digest held).",
                &["mirror", "kind"],
            ),
            misses: counter_vec(
                registry,
                "regapp_mirror_misses_total",
                "Mirror requests that fetched from the upstream.",
                &["mirror", "kind"],
            ),
            upstream_bytes: counter_vec(
                registry,
                "regapp_mirror_upstream_bytes_total",
                "Blob and manifest bytes fetched from the upstream.",
                &["mirror"],
            ),
            upstream_errors: counter_vec(
                registry,
                "regapp_mirror_upstream_errors_total",
                "Upstream requests that failed, by kind (unreachable, timeout, rate_limited, \
                 denied, status, invalid, not_found).",
                &["mirror", "kind"],
            ),
            stale: counter_vec(
                registry,
                "regapp_mirror_stale_total",
                "Tags served from the cache past tag_ttl because the upstream could not be \
                 asked.",
                &["mirror"],
            ),
        }
    }

    pub fn hit(&self, mirror: &str, what: Cached) {
        self.hits.with_label_values(&[mirror, what.label()]).inc();
    }

    pub fn miss(&self, mirror: &str, what: Cached) {
        self.misses.with_label_values(&[mirror, what.label()]).inc();
    }

    pub fn fetched(&self, mirror: &str, bytes: u64) {
        self.upstream_bytes
            .with_label_values(&[mirror])
            .inc_by(bytes);
    }

    /// `kind` is one of the few `UpstreamError::kind` values.
    pub fn upstream_error(&self, mirror: &str, kind: &'static str) {
        self.upstream_errors
            .with_label_values(&[mirror, kind])
            .inc();
    }

    pub fn stale(&self, mirror: &str) {
        self.stale.with_label_values(&[mirror]).inc();
    }
}
