//! This node among others on one bucket: its name, and the leases it holds now.

use prometheus::{IntGaugeVec, Registry};

use super::gauge_vec;

/// The cluster's handles. Cheap to clone.
#[derive(Clone)]
pub struct ClusterMetrics {
    node: IntGaugeVec,
    leases: IntGaugeVec,
}

impl ClusterMetrics {
    pub(super) fn register(registry: &Registry) -> ClusterMetrics {
        ClusterMetrics {
            node: gauge_vec(
                registry,
                "regapp_cluster_node_info",
                "Always 1; the label is this node's name ([cluster] node).",
                &["node"],
            ),
            leases: gauge_vec(
                registry,
                "regapp_cluster_lease_held",
                "1 while this node holds the lease (gc: a collection runs here), else 0.",
                &["lease"],
            ),
        }
    }

    pub fn set_node(&self, node: &str) {
        self.node.reset();
        self.node.with_label_values(&[node]).set(1);
    }

    pub fn set_lease(&self, lease: &str, held: bool) {
        self.leases.with_label_values(&[lease]).set(i64::from(held));
    }
}
