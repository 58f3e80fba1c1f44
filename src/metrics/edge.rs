//! What the edge's listeners count: connections open, refused, and TLS handshakes that failed.

use prometheus::{IntCounterVec, IntGauge, Registry};

use super::{counter_vec, gauge};

/// The edge's connection handles. Cheap to clone.
#[derive(Clone)]
pub struct EdgeMetrics {
    open: IntGauge,
    refused: IntCounterVec,
    handshake_failures: IntCounterVec,
}

impl EdgeMetrics {
    pub(super) fn register(registry: &Registry) -> EdgeMetrics {
        EdgeMetrics {
            open: gauge(
                registry,
                "regapp_edge_connections_open",
                "Client connections the edge holds now (:443 and :80).",
            ),
            refused: counter_vec(
                registry,
                "regapp_edge_connections_refused_total",
                "Connections closed at once, by reason: per_client (its address holds \
                 edge.max_connections_per_client), total (edge.max_connections reached).",
                &["reason"],
            ),
            handshake_failures: counter_vec(
                registry,
                "regapp_tls_handshake_failures_total",
                "TLS handshakes that did not finish, by reason: timeout (nothing, or not \
                 all of it, within edge.handshake_timeout), closed (the client left), alert (the \
                 client refused, e.g. an untrusted certificate), protocol (not TLS, or \
                 nothing in common).",
                &["reason"],
            ),
        }
    }

    /// Copies the count the edge keeps (at scrape time).
    pub fn set_open(&self, connections: usize) {
        self.open
            .set(i64::try_from(connections).unwrap_or(i64::MAX));
    }

    pub fn refused(&self, reason: &str) {
        self.refused.with_label_values(&[reason]).inc();
    }

    pub fn handshake_failed(&self, reason: &str) {
        self.handshake_failures.with_label_values(&[reason]).inc();
    }
}
