//! Several nodes on one store: what they agree on through the store alone (no other channel,
//! no shared secret). Leases: work that one node at a time does.

pub mod lease;

pub use lease::{Acquired, Holder, Lease, Leases};

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// How logs, metrics and leases name this node; the host name unless set.
    pub node: String,
    /// How far apart the nodes' clocks may be: a pin or a lease counts this much longer.
    pub clock_skew: std::time::Duration,
}

impl Default for ClusterSettings {
    fn default() -> ClusterSettings {
        ClusterSettings {
            node: host_name(),
            clock_skew: lease::CLOCK_SKEW,
        }
    }
}

/// The machine's host name (`localhost` if it has none readable).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| valid_node_name(name))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Letters, digits, `.`, `_` and `-`, 1 to 63 of them: a name that reads the same in a log
/// line, a metric label and a lease.
pub fn valid_node_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
