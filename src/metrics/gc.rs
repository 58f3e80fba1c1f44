//! What garbage collection and storage accounting report. The collector calls
//! [`GcMetrics::record_gc`] after each run and [`GcMetrics::set_storage`] as it measures.

use std::time::Duration;

use prometheus::{Histogram, IntCounter, IntGauge, IntGaugeVec, Registry};

use super::{counter, gauge, gauge_vec, histogram, seconds};

/// From a small store (a second) to a large one on slow disks (an hour).
const GC_BUCKETS: &[f64] = &[1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];

/// The garbage collector's handles. Cheap to clone.
#[derive(Clone)]
pub struct GcMetrics {
    runs: IntCounter,
    duration: Histogram,
    removed_blobs: IntCounter,
    removed_bytes: IntCounter,
    repository_bytes: IntGaugeVec,
    total_bytes: IntGauge,
}

impl GcMetrics {
    pub(super) fn register(registry: &Registry) -> GcMetrics {
        GcMetrics {
            runs: counter(
                registry,
                "regapp_gc_runs_total",
                "Garbage collection runs that completed.",
            ),
            duration: histogram(
                registry,
                "regapp_gc_duration_seconds",
                "How long each garbage collection run took.",
                GC_BUCKETS.to_vec(),
            ),
            removed_blobs: counter(
                registry,
                "regapp_gc_removed_blobs_total",
                "Blobs deleted by garbage collection.",
            ),
            removed_bytes: counter(
                registry,
                "regapp_gc_removed_bytes_total",
                "Bytes freed by garbage collection.",
            ),
            repository_bytes: gauge_vec(
                registry,
                "regapp_storage_repository_bytes",
                "Bytes of the blobs each repository references (shared blobs count in each).",
                &["repository"],
            ),
            total_bytes: gauge(
                registry,
                "regapp_storage_bytes",
                "Bytes of every blob in the store, each counted once.",
            ),
        }
    }

    /// One completed run: how long it took and what it removed.
    pub fn record_gc(&self, took: Duration, blobs: u64, bytes: u64) {
        self.runs.inc();
        self.duration.observe(seconds(took));
        self.removed_blobs.inc_by(blobs);
        self.removed_bytes.inc_by(bytes);
    }

    pub fn set_storage(&self, repository: &str, bytes: u64) {
        self.repository_bytes
            .with_label_values(&[repository])
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// A repository that no longer exists stops being reported.
    pub fn forget_repository(&self, repository: &str) {
        let _ = self.repository_bytes.remove_label_values(&[repository]);
    }

    pub fn set_storage_total(&self, bytes: u64) {
        self.total_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}
