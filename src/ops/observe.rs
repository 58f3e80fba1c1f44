//! Scrape-time copies into the metrics of what other parts keep themselves: htpasswd reload
//! counts (`auth` counts them where they happen), the certificate served (any TLS mode), and the
//! certificate manager's attempts by result.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use crate::auth::Authenticator;
use crate::certs::acme::AcmeManager;
use crate::certs::{CertInfo, CertResolver};
use crate::metrics::Metrics;

pub fn auth(metrics: &Metrics, authenticator: Authenticator) {
    metrics.on_scrape(move |m| {
        let stats = authenticator.stats();
        m.auth
            .set_htpasswd_reloads(stats.reloads_ok, stats.reload_errors);
    });
}

/// The served certificate's expiry per name; with `acme`, its attempts too.
pub fn certificates(
    metrics: &Metrics,
    resolver: Arc<CertResolver>,
    acme: Option<Arc<AcmeManager>>,
) {
    metrics.on_scrape(move |m| match &acme {
        Some(manager) => {
            let status = manager.status();
            m.tls.set_expiry(&status.expiry_by_name());
            m.tls
                .set_renewal_attempts(status.attempts.iter().map(|(kind, n)| (*kind, *n)));
        }
        None => m.tls.set_expiry(
            &resolver
                .info()
                .map(|info| expiry_by_name(&info))
                .unwrap_or_default(),
        ),
    });
}

/// (name, expiry in Unix seconds) for each DNS name and IP address on the certificate.
fn expiry_by_name(info: &CertInfo) -> Vec<(String, u64)> {
    let expiry = info
        .not_after
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    info.dns_names
        .iter()
        .cloned()
        .chain(info.ip_addresses.iter().map(ToString::to_string))
        .map(|name| (name, expiry))
        .collect()
}

/// Every collection and measurement of `collector` into the GC and storage metrics, as they
/// happen (a run is an event: counting it at scrape time could miss or double one).
pub fn garbage_collection(metrics: &Metrics, collector: &crate::registry::gc::Collector) {
    collector.set_observer(Arc::new(GcToMetrics {
        metrics: metrics.gc.clone(),
        cluster: metrics.cluster.clone(),
        reported: std::sync::Mutex::new(Vec::new()),
    }));
}

struct GcToMetrics {
    metrics: crate::metrics::GcMetrics,
    cluster: crate::metrics::ClusterMetrics,
    /// Repositories in the last usage, so those gone since stop being reported.
    reported: std::sync::Mutex<Vec<String>>,
}

impl crate::registry::gc::GcObserver for GcToMetrics {
    fn on_lease(&self, held: bool) {
        self.cluster.set_lease(crate::registry::gc::GC_LEASE, held);
    }

    fn on_report(&self, report: &crate::registry::gc::GcReport) {
        if !report.dry_run {
            self.metrics
                .record_gc(report.duration, report.blobs_removed, report.bytes_removed);
        }
    }

    fn on_usage(&self, usage: &crate::registry::gc::Usage) {
        let mut reported = self
            .reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for gone in reported
            .iter()
            .filter(|name| !usage.repositories.contains_key(*name))
        {
            self.metrics.forget_repository(gone);
        }
        for (name, repo) in &usage.repositories {
            self.metrics.set_storage(name, repo.referenced_bytes);
        }
        self.metrics.set_storage_total(usage.total_bytes);
        *reported = usage.repositories.keys().cloned().collect();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::registry::gc::{GcObserver, GcReport, RepoUsage, Usage};

    #[test]
    fn collections_and_usage_reach_the_gc_metrics_and_gone_repositories_leave() {
        let metrics = Metrics::new("test", "test");
        let observer = GcToMetrics {
            metrics: metrics.gc.clone(),
            cluster: metrics.cluster.clone(),
            reported: std::sync::Mutex::new(Vec::new()),
        };
        let report = GcReport {
            duration: Duration::from_millis(1500),
            blobs_removed: 3,
            bytes_removed: 4096,
            ..GcReport::default()
        };
        observer.on_report(&report);
        observer.on_report(&GcReport {
            dry_run: true,
            blobs_removed: 100,
            ..GcReport::default()
        });
        let usage = |names: &[&str]| Usage {
            repositories: names
                .iter()
                .map(|n| {
                    let repo = RepoUsage {
                        referenced_bytes: 10,
                        ..RepoUsage::default()
                    };
                    (n.to_string(), repo)
                })
                .collect(),
            total_bytes: 10 * names.len() as u64,
            total_blobs: names.len() as u64,
            caches: Default::default(),
        };
        observer.on_usage(&usage(&["a", "b"]));
        observer.on_usage(&usage(&["a"]));
        let scrape = metrics.render();
        assert!(scrape.contains("regapp_gc_runs_total 1\n"), "{scrape}");
        assert!(
            scrape.contains("regapp_gc_removed_blobs_total 3\n"),
            "a dry run removes nothing"
        );
        assert!(scrape.contains("regapp_gc_removed_bytes_total 4096\n"));
        assert!(scrape.contains("regapp_storage_repository_bytes{repository=\"a\"} 10\n"));
        assert!(!scrape.contains("repository=\"b\""), "b is gone: {scrape}");
        assert!(scrape.contains("regapp_storage_bytes 10\n"));
    }
}
