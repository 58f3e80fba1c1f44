//! Pins across nodes on a shared store (a bucket): [`Pins`](super::pins::Pins) cannot see
//! another node's pushes, so on such a store both halves of the rule also go through it.
//!
//! - A push writes a **pin** for each digest (`regapp-cluster/pins/<digest>`, holding the time
//!   in milliseconds), then checks that no **tombstone** (`regapp-cluster/condemned/<digest>`)
//!   is there, waiting while one is, and only then checks that what it needs exists.
//! - The collector, for a digest it is about to delete, writes the tombstone, then reads the
//!   pin: a pin newer than the cutoff (less `[cluster] clock_skew`) spares the digest; otherwise it
//!   deletes, then removes the tombstone.
//!
//! The store is strongly consistent (S3 since 2020, SeaweedFS), so for one digest either the
//! push's pin comes before the collector reads it (spared), or the collector's tombstone comes
//! before the push looks for it: the push waits until the deletion is over and then finds the
//! blob missing, and fails cleanly (`BLOB_UNKNOWN`, `MANIFEST_BLOB_UNKNOWN`; the client pushes
//! it again). Nothing is deleted from under a push that found it.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::registry::types::Digest;
use crate::storage::{StorageDriver, StorageResult};

/// A tombstone older than this is a dead collector's (killed between writing and removing
/// it): pushes pass it by. A collector deletes within [`DELETE_WITHIN`] of writing its
/// tombstones or spares the digests, well inside this.
const TOMBSTONE_LIFE: Duration = Duration::from_secs(120);
const DELETE_WITHIN: Duration = Duration::from_secs(30);
/// Pins a collector reads at once.
const READS_AT_ONCE: usize = 16;

fn pin_key(digest: &Digest) -> String {
    format!("regapp-cluster/pins/{}", flat(digest))
}

fn tombstone_key(digest: &Digest) -> String {
    format!("regapp-cluster/condemned/{}", flat(digest))
}

/// `sha256-<hex>`: one key segment.
fn flat(digest: &Digest) -> String {
    digest.to_string().replace(':', "-")
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether `key` is there: a GET (one request on S3, where a missing `stat` costs three).
async fn read(driver: &dyn StorageDriver, key: &str) -> StorageResult<Option<Bytes>> {
    match driver.get(key).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A push's half: pins, then waits out any deletion of the digests in progress.
pub async fn pin(driver: &dyn StorageDriver, digests: &[Digest]) -> StorageResult<()> {
    if !driver.shared() {
        return Ok(());
    }
    let now = Bytes::from(millis(SystemTime::now()).to_string());
    put_each(driver, digests.iter().map(pin_key), &now).await?;
    let waits = digests
        .iter()
        .map(|digest| wait_out_tombstone(driver, digest));
    futures_util::future::try_join_all(waits).await.map(drop)
}

/// Returns once no live tombstone of `digest` is in the store.
async fn wait_out_tombstone(driver: &dyn StorageDriver, digest: &Digest) -> StorageResult<()> {
    let key = tombstone_key(digest);
    while let Some(tombstone) = read(driver, &key).await? {
        let written = std::str::from_utf8(&tombstone)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let stale = millis(SystemTime::now()).saturating_sub(written);
        if stale > TOMBSTONE_LIFE.as_millis() as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The collector's half, for digests it claimed in this process: tombstones, then the pins.
/// `true` for each digest no push pinned after `since` (the cutoff less the clock skew): to
/// be deleted, then [`release`]d. The spared ones' tombstones are removed here.
pub async fn condemn(
    driver: &dyn StorageDriver,
    digests: &[Digest],
    since: SystemTime,
) -> StorageResult<Vec<bool>> {
    if !driver.shared() || digests.is_empty() {
        return Ok(vec![true; digests.len()]);
    }
    let written = Instant::now();
    let mark = Bytes::from(millis(SystemTime::now()).to_string());
    put_each(driver, digests.iter().map(tombstone_key), &mark).await?;
    let since = millis(since);
    let keys: Vec<String> = digests.iter().map(pin_key).collect();
    let mut verdicts = Vec::with_capacity(keys.len());
    for some in keys.chunks(READS_AT_ONCE) {
        let reads = some.iter().map(|key| read(driver, key));
        for pin in futures_util::future::try_join_all(reads).await? {
            let pinned_at = pin.and_then(|bytes| {
                std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|text| text.trim().parse::<u64>().ok())
            });
            verdicts.push(pinned_at.is_none_or(|at| at <= since));
        }
    }
    if written.elapsed() > DELETE_WITHIN {
        // Pushes will soon take the tombstones for a dead collector's: delete nothing.
        verdicts.iter_mut().for_each(|delete| *delete = false);
    }
    let spared: Vec<Digest> = digests
        .iter()
        .zip(&verdicts)
        .filter(|(_, delete)| !**delete)
        .map(|(d, _)| d.clone())
        .collect();
    release(driver, &spared).await;
    Ok(verdicts)
}

async fn put_each(
    driver: &dyn StorageDriver,
    keys: impl Iterator<Item = String>,
    content: &Bytes,
) -> StorageResult<()> {
    let puts = keys.map(|key| {
        let content = content.clone();
        async move { driver.put(&key, content).await }
    });
    futures_util::future::try_join_all(puts).await.map(drop)
}

/// Removes the tombstones of `digests` (their deletion is over); a failure leaves one that
/// holds pushes of the digest up to [`TOMBSTONE_WAIT`], and is logged.
pub async fn release(driver: &dyn StorageDriver, digests: &[Digest]) {
    if !driver.shared() {
        return;
    }
    for digest in digests {
        let key = tombstone_key(digest);
        if let Err(e) = driver.delete(&key).await {
            if !e.is_not_found() {
                tracing::warn!(%key, error = %e, "removing a tombstone failed");
            }
        }
    }
}
