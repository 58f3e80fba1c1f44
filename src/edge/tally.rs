//! Failed handshakes and refused connections, logged as one summary line per interval: a
//! flood of them must not flood the log (they are counted one by one in the metrics).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How often a summary may be logged.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// What happened to connections since the last summary.
#[derive(Debug, Default)]
pub struct Tally {
    since_last: Mutex<Counts>,
}

#[derive(Debug, Default, PartialEq)]
struct Counts {
    handshake_failures: BTreeMap<&'static str, u64>,
    refused: BTreeMap<&'static str, u64>,
    last_refused: Option<IpAddr>,
}

impl Tally {
    pub fn handshake_failed(&self, reason: &'static str) {
        *self.counts().handshake_failures.entry(reason).or_default() += 1;
    }

    pub fn refused(&self, reason: &'static str, client: IpAddr) {
        let mut counts = self.counts();
        *counts.refused.entry(reason).or_default() += 1;
        counts.last_refused = Some(client);
    }

    /// Logs what happened in each interval that had anything, forever.
    pub async fn log_summaries(&self) {
        let mut every = tokio::time::interval(SUMMARY_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.log_summary();
        }
    }

    fn log_summary(&self) {
        let counts = std::mem::take(&mut *self.counts());
        let failures = list(&counts.handshake_failures);
        if !counts.refused.is_empty() {
            tracing::warn!(
                refused = %list(&counts.refused),
                last_refused = %counts.last_refused.map_or_else(String::new, |ip| ip.to_string()),
                handshake_failures = %failures,
                "connections refused at the edge's limits (edge.max_connections_per_client, \
                 edge.max_connections) in the last {}s",
                SUMMARY_INTERVAL.as_secs()
            );
        } else if !counts.handshake_failures.is_empty() {
            tracing::info!(
                handshake_failures = %failures,
                "TLS handshakes that failed in the last {}s",
                SUMMARY_INTERVAL.as_secs()
            );
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.since_last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// `timeout 3, closed 1`
fn list(counts: &BTreeMap<&'static str, u64>) -> String {
    counts
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_takes_what_happened_since_the_last_one() {
        let tally = Tally::default();
        tally.handshake_failed("timeout");
        tally.handshake_failed("timeout");
        tally.handshake_failed("closed");
        tally.refused("per_client", "10.0.0.9".parse().unwrap());
        {
            let counts = tally.counts();
            assert_eq!(list(&counts.handshake_failures), "closed 1, timeout 2");
            assert_eq!(list(&counts.refused), "per_client 1");
        }
        tally.log_summary();
        assert_eq!(*tally.counts(), Counts::default());
    }
}
