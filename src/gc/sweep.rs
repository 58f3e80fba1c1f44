//! Sweep: deletes what the mark did not keep — unreferenced blobs, revisions of manifests no
//! longer kept, dangling `_layers` links and stale upload sessions.
//!
//! Every blob or revision deletion goes through `Pins::condemn` (see `registry::store::pins`):
//! a digest a push holds, or released after the cutoff, is skipped. In a dry run nothing is
//! deleted and everything old enough counts as removed.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use futures_util::StreamExt;

use super::mark::{digests_under, list_or_empty};
use super::progress::Progress;
use crate::registry::store::{paths, Pins};
use crate::registry::types::{Algorithm, Digest, RepoName, UploadId};
use crate::storage::{StorageDriver, StorageResult};

pub struct Sweeper<'a> {
    pub driver: &'a dyn StorageDriver,
    pub pins: &'a Pins,
    pub cutoff: SystemTime,
    pub dry_run: bool,
}

#[derive(Debug, Default)]
pub struct BlobSweep {
    pub removed: u64,
    pub bytes_removed: u64,
    pub kept: u64,
    /// Unreferenced but younger than the grace period, or held by a push.
    pub spared: u64,
    /// Digests whose bytes exist after the sweep (or would, in a dry run).
    pub present: HashSet<Digest>,
}

/// Deletions (and listings) in flight at once: each is a hop to a blocking thread, whose
/// latency, not the filesystem, bounds a sequential sweep on a busy machine.
const CONCURRENCY: usize = 16;

enum BlobOutcome {
    Removed(u64),
    /// Younger than the cutoff, linked recently, or held by a push.
    Spared,
    /// Deleted by someone else meanwhile.
    Gone,
}

/// What deleting a digest under `condemn` came to.
enum Deletion {
    Done,
    Spared,
    Gone,
}

impl Sweeper<'_> {
    /// Deletes a manifest revision unless a push holds its digest; false when it was spared.
    pub async fn revision(&self, repo: &RepoName, digest: &Digest) -> StorageResult<bool> {
        if self.dry_run {
            return Ok(true);
        }
        let link = paths::revision_link(repo, digest);
        match self
            .delete_condemned(digest, paths::link_dir(&link))
            .await?
        {
            Deletion::Spared => Ok(false),
            Deletion::Done | Deletion::Gone => Ok(true),
        }
    }

    /// Removes a tag (retention) unless it moved since it was read (a push re-tagged it: the
    /// new image is the newest and stays). Tags are names, not content: no pin is involved.
    /// Returns whether the tag was (or, dry, would be) removed.
    pub async fn tag(&self, repo: &RepoName, tag: &str, read: &Digest) -> StorageResult<bool> {
        let Ok(tag) = tag.parse() else {
            return Ok(false);
        };
        let current = match self.driver.get(&paths::tag_current_link(repo, &tag)).await {
            Ok(link) => link,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        let now = std::str::from_utf8(&current)
            .ok()
            .and_then(|link| link.trim().parse::<Digest>().ok());
        if now.as_ref() != Some(read) {
            return Ok(false);
        }
        if self.dry_run {
            return Ok(true);
        }
        match self.driver.delete(&paths::tag_dir(repo, &tag)).await {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(true),
        }
    }

    /// Deletes every blob not in `marked` whose bytes, and every `_layers` link to which
    /// (`linked_from`), are older than the cutoff.
    pub async fn blobs(
        &self,
        marked: &HashSet<Digest>,
        linked_from: &HashMap<Digest, Vec<RepoName>>,
        progress: &mut Progress,
    ) -> StorageResult<BlobSweep> {
        let mut sweep = BlobSweep::default();
        let mut candidates = Vec::new();
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = paths::blobs_dir(algorithm);
            let fanouts: Vec<String> = list_or_empty(self.driver, &dir)
                .await?
                .into_iter()
                .filter(|name| is_fanout(name))
                .map(|name| format!("{dir}/{name}"))
                .collect();
            let mut listings = futures_util::stream::iter(fanouts)
                .map(|fanout| async move { digests_under(self.driver, &fanout, algorithm).await })
                .buffer_unordered(CONCURRENCY);
            while let Some(digests) = listings.next().await {
                for digest in digests? {
                    if marked.contains(&digest) {
                        sweep.kept += 1;
                        sweep.present.insert(digest);
                    } else {
                        candidates.push(digest);
                    }
                }
                progress.update(
                    "blobs listed",
                    (sweep.kept as usize) + candidates.len(),
                    None,
                );
            }
        }
        let total = candidates.len();
        let mut judged = futures_util::stream::iter(candidates)
            .map(|digest| async move {
                let outcome = self.sweep_blob(&digest, linked_from).await;
                (digest, outcome)
            })
            .buffer_unordered(CONCURRENCY);
        let mut done = 0;
        while let Some((digest, outcome)) = judged.next().await {
            done += 1;
            progress.update("unreferenced blobs", done, Some(total));
            match outcome? {
                BlobOutcome::Removed(size) => {
                    sweep.removed += 1;
                    sweep.bytes_removed += size;
                }
                BlobOutcome::Spared => {
                    sweep.spared += 1;
                    sweep.present.insert(digest);
                }
                BlobOutcome::Gone => {}
            }
        }
        Ok(sweep)
    }

    /// Judges one unreferenced blob: too young, held by a push, or deleted.
    async fn sweep_blob(
        &self,
        digest: &Digest,
        linked_from: &HashMap<Digest, Vec<RepoName>>,
    ) -> StorageResult<BlobOutcome> {
        let info = match self.driver.stat(&paths::blob_data(digest)).await {
            Ok(info) => info,
            Err(e) if e.is_not_found() => return Ok(BlobOutcome::Gone),
            Err(e) => return Err(e),
        };
        if info.modified > self.cutoff || self.linked_recently(digest, linked_from).await? {
            return Ok(BlobOutcome::Spared);
        }
        if self.dry_run {
            return Ok(BlobOutcome::Removed(info.size));
        }
        Ok(
            match self
                .delete_condemned(digest, &paths::blob_dir(digest))
                .await?
            {
                Deletion::Done => BlobOutcome::Removed(info.size),
                Deletion::Gone => BlobOutcome::Gone,
                Deletion::Spared => BlobOutcome::Spared,
            },
        )
    }

    /// Removes `_layers` links whose blob is gone; returns how many.
    pub async fn dangling_links(
        &self,
        links: &[(RepoName, Digest)],
        present: &HashSet<Digest>,
    ) -> StorageResult<u64> {
        let dangling: Vec<(RepoName, Digest)> = links
            .iter()
            .filter(|(_, digest)| !present.contains(digest))
            .cloned()
            .collect();
        if self.dry_run {
            return Ok(dangling.len() as u64);
        }
        let mut removing = futures_util::stream::iter(dangling)
            .map(|(repo, digest)| async move { self.dangling_link(&repo, &digest).await })
            .buffer_unordered(CONCURRENCY);
        let mut removed = 0;
        while let Some(result) = removing.next().await {
            if result? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn dangling_link(&self, repo: &RepoName, digest: &Digest) -> StorageResult<bool> {
        // Condemned while it is checked, so an upload or mount of the digest waits and then
        // writes its link again.
        if !self.pins.condemn(digest, self.cutoff) {
            return Ok(false);
        }
        let result = async {
            match self.driver.stat(&paths::blob_data(digest)).await {
                Ok(_) => Ok(false),
                Err(e) if e.is_not_found() => {
                    let link = paths::layer_link(repo, digest);
                    match self.driver.delete(paths::link_dir(&link)).await {
                        Ok(()) => Ok(true),
                        Err(e) if e.is_not_found() => Ok(false),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        }
        .await;
        self.pins.acquit(digest);
        result
    }

    /// Removes upload sessions of `repo` untouched since `stale_before`; returns how many.
    pub async fn uploads(&self, repo: &RepoName, stale_before: SystemTime) -> StorageResult<u64> {
        let mut removed = 0;
        for id in list_or_empty(self.driver, &paths::uploads_dir(repo)).await? {
            let Ok(id) = id.parse::<UploadId>() else {
                continue;
            };
            let touched = match self.driver.stat(&paths::upload_data(repo, &id)).await {
                Ok(info) => info.modified,
                Err(e) if e.is_not_found() => {
                    match self.driver.stat(&paths::upload_dir(repo, &id)).await {
                        Ok(info) => info.modified,
                        Err(e) if e.is_not_found() => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            if touched >= stale_before {
                continue;
            }
            if !self.dry_run {
                match self.driver.delete(&paths::upload_dir(repo, &id)).await {
                    Err(e) if !e.is_not_found() => return Err(e),
                    _ => {}
                }
            }
            removed += 1;
        }
        Ok(removed)
    }

    /// Whether a repository linked the blob after the cutoff (a mount, or an upload of bytes
    /// already stored: the blob's own mtime is old then).
    async fn linked_recently(
        &self,
        digest: &Digest,
        linked_from: &HashMap<Digest, Vec<RepoName>>,
    ) -> StorageResult<bool> {
        for repo in linked_from.get(digest).into_iter().flatten() {
            match self.driver.stat(&paths::layer_link(repo, digest)).await {
                Ok(info) if info.modified > self.cutoff => return Ok(true),
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    async fn delete_condemned(&self, digest: &Digest, key: &str) -> StorageResult<Deletion> {
        if !self.pins.condemn(digest, self.cutoff) {
            return Ok(Deletion::Spared);
        }
        let result = self.driver.delete(key).await;
        self.pins.acquit(digest);
        match result {
            Ok(()) => Ok(Deletion::Done),
            Err(e) if e.is_not_found() => Ok(Deletion::Gone),
            Err(e) => Err(e),
        }
    }
}

/// A `blobs/<alg>/<xx>` directory name: two lowercase hex digits.
fn is_fanout(name: &str) -> bool {
    name.len() == 2
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
