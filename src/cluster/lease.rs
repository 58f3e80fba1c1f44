//! Leases in the store: work one node at a time does (a collection, later a certificate order),
//! agreed through conditional writes and nothing else.
//!
//! A lease is the object `regapp-cluster/leases/<name>` (outside registry:2's `docker/`),
//! a line of JSON: who holds it, until when, and when its last holder finished. It is taken
//! with `put_if_absent` (none yet) or `put_if_version` over an expired or released one, kept
//! by rewriting it over the version its holder wrote before, and released by writing it
//! expired. Of two nodes writing over the same version exactly one succeeds; a holder that
//! dies stops renewing, and the lease is free once it expires. Expiry is judged by the
//! reader's clock with [`CLOCK_SKEW`] to spare: nodes' clocks must agree within it (NTP).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::storage::{StorageDriver, StorageResult, Version};

/// Where leases live in the store.
pub const LEASES_PREFIX: &str = "regapp-cluster/leases";

/// How far apart nodes' clocks may be: a lease counts as expired this long after its expiry.
pub const CLOCK_SKEW: Duration = Duration::from_secs(10);

/// What a lease object says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The node's name (`[cluster] node`).
    pub node: String,
    /// This holding: a node that restarted holds under another token.
    pub token: String,
    /// Seconds since the epoch; 0 once released.
    pub expires: u64,
    /// When the last holder released it (seconds since the epoch), if one did.
    #[serde(default)]
    pub last_finished: Option<u64>,
}

impl Holder {
    /// Held by someone at `now` (released, expired past the skew, or unreadable: not).
    pub fn is_live(&self, now: SystemTime) -> bool {
        self.expires > 0 && seconds(now) <= self.expires + CLOCK_SKEW.as_secs()
    }

    fn encode(&self) -> Bytes {
        let mut line = serde_json::to_vec(self).expect("a lease serializes");
        line.push(b'\n');
        Bytes::from(line)
    }

    fn decode(bytes: &[u8]) -> Option<Holder> {
        serde_json::from_slice(bytes).ok()
    }
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The leases of one node over one store.
pub struct Leases {
    driver: Arc<dyn StorageDriver>,
    node: String,
    ttl: Duration,
}

/// What [`Leases::try_acquire`] found.
pub enum Acquired {
    Held(Lease),
    /// Another holding is live (possibly this node's own, from before a restart).
    Busy(Holder),
}

impl Leases {
    /// Leases held for `ttl` between renewals (renew at a third of it).
    pub fn new(driver: Arc<dyn StorageDriver>, node: &str, ttl: Duration) -> Leases {
        Leases {
            driver,
            node: node.to_owned(),
            ttl,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn key(name: &str) -> String {
        format!("{LEASES_PREFIX}/{name}")
    }

    /// The lease's object as it is now: who holds it (or held it last), if anyone ever did.
    pub async fn holder(&self, name: &str) -> StorageResult<Option<Holder>> {
        Ok(self
            .driver
            .get_versioned(&Self::key(name))
            .await?
            .and_then(|(bytes, _)| Holder::decode(&bytes)))
    }

    /// Takes the lease if nobody holds it.
    pub async fn try_acquire(&self, name: &str) -> StorageResult<Acquired> {
        let key = Self::key(name);
        let mut mine = Holder {
            node: self.node.clone(),
            token: uuid::Uuid::new_v4().simple().to_string(),
            expires: seconds(SystemTime::now() + self.ttl),
            last_finished: None,
        };
        let won = match self.driver.get_versioned(&key).await? {
            None => self.driver.put_if_absent(&key, mine.encode()).await?,
            Some((bytes, version)) => {
                let current = Holder::decode(&bytes);
                if let Some(current) = current.as_ref().filter(|h| h.is_live(SystemTime::now())) {
                    return Ok(Acquired::Busy(current.clone()));
                }
                mine.last_finished = current.and_then(|h| h.last_finished);
                self.driver
                    .put_if_version(&key, mine.encode(), &version)
                    .await?
            }
        };
        // The version just written, to renew over (another writer cannot have replaced a
        // live lease since; if one did, this is not it and the lease is not ours).
        match self.driver.get_versioned(&key).await? {
            Some((bytes, version)) if won && Holder::decode(&bytes).as_ref() == Some(&mine) => {
                Ok(Acquired::Held(Lease {
                    driver: self.driver.clone(),
                    key,
                    holder: mine,
                    version,
                    ttl: self.ttl,
                }))
            }
            Some((bytes, _)) => match Holder::decode(&bytes) {
                Some(other) => Ok(Acquired::Busy(other)),
                None => Ok(Acquired::Busy(mine)),
            },
            None => Ok(Acquired::Busy(mine)),
        }
    }
}

/// A lease this node holds until it is released, lost or dropped (dropped: it expires).
pub struct Lease {
    driver: Arc<dyn StorageDriver>,
    key: String,
    holder: Holder,
    version: Version,
    ttl: Duration,
}

impl Lease {
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// How often to [`renew`](Lease::renew).
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// When the last holder before this one finished.
    pub fn last_finished(&self) -> Option<SystemTime> {
        self.holder
            .last_finished
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
    }

    /// Extends the lease; `false` if it was lost (someone took it over after it expired).
    pub async fn renew(&mut self) -> StorageResult<bool> {
        let mut renewed = self.holder.clone();
        renewed.expires = seconds(SystemTime::now() + self.ttl);
        self.write(renewed).await
    }

    /// Gives the lease up; with `finished`, noting now as when its work last finished (else
    /// the work did not happen: a run skipped or failed).
    pub async fn release(mut self, finished: bool) -> StorageResult<bool> {
        let mut released = self.holder.clone();
        released.expires = 0;
        if finished {
            released.last_finished = Some(seconds(SystemTime::now()));
        }
        self.write(released).await
    }

    /// Runs `work` while renewing the lease, then releases it (noting the work finished when
    /// `finished` says so of its result). `None`: the lease was lost first (taken over, or not
    /// renewable until it could have expired), and `work` was dropped unfinished.
    pub async fn keep_while<T>(
        mut self,
        work: impl std::future::Future<Output = T>,
        finished: impl FnOnce(&T) -> bool,
    ) -> Option<T> {
        let mut work = std::pin::pin!(work);
        let mut renewed = std::time::Instant::now();
        let result = loop {
            tokio::select! {
                result = &mut work => break Some(result),
                _ = tokio::time::sleep(self.renew_every()) => match self.renew().await {
                    Ok(true) => renewed = std::time::Instant::now(),
                    Ok(false) => break None,
                    // Until the lease could have expired, the store may come back.
                    Err(e) if renewed.elapsed() < self.renew_every() * 2 => {
                        tracing::warn!(lease = %self.key, error = %e, "renewing a lease failed");
                    }
                    Err(_) => break None,
                },
            }
        };
        let key = self.key.clone();
        let done = result.as_ref().is_some_and(finished);
        match self.release(done).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(lease = %key, "the lease was taken over before its release")
            }
            Err(e) => {
                tracing::warn!(lease = %key, error = %e, "releasing a lease failed; it expires")
            }
        }
        result
    }

    async fn write(&mut self, holder: Holder) -> StorageResult<bool> {
        if !self
            .driver
            .put_if_version(&self.key, holder.encode(), &self.version)
            .await?
        {
            return Ok(false);
        }
        match self.driver.get_versioned(&self.key).await? {
            Some((bytes, version)) if Holder::decode(&bytes).as_ref() == Some(&holder) => {
                self.holder = holder;
                self.version = version;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FsDriver;

    fn leases(dir: &std::path::Path, node: &str, ttl: Duration) -> Leases {
        Leases::new(Arc::new(FsDriver::new(dir)), node, ttl)
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_a_released_lease_is_free_again() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            leases(dir.path(), "a", Duration::from_secs(60)),
            leases(dir.path(), "b", Duration::from_secs(60)),
        );
        let Acquired::Held(mut held) = a.try_acquire("gc").await.unwrap() else {
            panic!("nobody held it");
        };
        match b.try_acquire("gc").await.unwrap() {
            Acquired::Busy(holder) => assert_eq!(holder.node, "a"),
            Acquired::Held(_) => panic!("two holders"),
        }
        assert!(held.renew().await.unwrap());
        assert!(held.release(true).await.unwrap());
        let Acquired::Held(held) = b.try_acquire("gc").await.unwrap() else {
            panic!("released, so free");
        };
        assert!(held.last_finished().is_some(), "a's run is remembered");
        assert_eq!(a.holder("gc").await.unwrap().unwrap().node, "b");
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_its_old_holder_learns_it_lost_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = leases(dir.path(), "a", Duration::ZERO);
        let b = leases(dir.path(), "b", Duration::from_secs(60));
        let Acquired::Held(mut stale) = a.try_acquire("gc").await.unwrap() else {
            panic!("nobody held it");
        };
        // Expired at once; past the skew too.
        let key = Leases::key("gc");
        let (bytes, version) = a.driver.get_versioned(&key).await.unwrap().unwrap();
        let mut old = Holder::decode(&bytes).unwrap();
        old.expires -= CLOCK_SKEW.as_secs() + 1;
        assert!(a
            .driver
            .put_if_version(&key, old.encode(), &version)
            .await
            .unwrap());
        stale.version = a.driver.get_versioned(&key).await.unwrap().unwrap().1;

        let Acquired::Held(_) = b.try_acquire("gc").await.unwrap() else {
            panic!("expired, so free");
        };
        assert!(!stale.renew().await.unwrap(), "taken over");
    }
}

#[cfg(test)]
mod in_a_bucket {
    use super::*;
    use crate::storage::s3::seaweed::Seaweed;
    use crate::storage::S3Driver;

    /// Eight nodes after one lease at once, twenty times: one holder each time (the bucket's
    /// conditional writes decide, SeaweedFS's included).
    #[test]
    fn of_nodes_racing_for_a_lease_exactly_one_gets_it() {
        let settings = crate::storage::s3::tests::settings(Seaweed::shared());
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let driver: Arc<dyn StorageDriver> = Arc::new(S3Driver::new(&settings).unwrap());
            let nodes: Vec<Arc<Leases>> = (0..8)
                .map(|n| {
                    let node = format!("n{n}");
                    Arc::new(Leases::new(driver.clone(), &node, Duration::from_secs(60)))
                })
                .collect();
            for round in 0..20 {
                let name = format!("race-{round}");
                let tries = nodes.iter().map(|leases| {
                    let (leases, name) = (leases.clone(), name.clone());
                    tokio::spawn(async move { leases.try_acquire(&name).await.unwrap() })
                });
                let mut holders = Vec::new();
                for acquired in futures_util::future::join_all(tries).await {
                    if let Acquired::Held(lease) = acquired.unwrap() {
                        holders.push(lease.holder().node.clone());
                    }
                }
                assert_eq!(holders.len(), 1, "round {round}: {holders:?}");
            }
        });
    }
}
