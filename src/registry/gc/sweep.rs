//! Sweep: deletes what the mark did not keep — unreferenced blobs, revisions of manifests no
//! longer kept, dangling `_layers` links and stale upload sessions.
//!
//! Every blob or revision deletion goes through `Pins::condemn` (see `registry::store::pins`):
//! a digest a push holds, or released after the cutoff, is skipped. In a dry run nothing is
//! deleted and everything old enough counts as removed. Deletions go through the collector's
//! [`Disposal`](super::Disposal): gone when it returns, the space given back as it sees fit.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use futures_util::StreamExt;

use super::mark::{digests_under, list_or_empty};
use super::progress::Progress;
use super::Disposal;
use crate::registry::store::{paths, shared_pins, Pins};
use crate::registry::types::{Algorithm, Digest, RepoName, Tag, UploadId};
use crate::storage::{StorageDriver, StorageResult};

/// A push publishes its files within milliseconds (a manifest is at most a few MiB): a
/// temporary file or a tag history link this old is no push in progress. Tag history links
/// have no pins (they name no content), and a push's link keeps the time its temporary file
/// was written, which may be before a collection with a grace of 0 starts.
pub const WRITE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(300);

pub struct Sweeper<'a> {
    pub driver: &'a dyn StorageDriver,
    pub disposal: &'a dyn Disposal,
    pub pins: &'a Pins,
    pub cutoff: SystemTime,
    /// A pin in a shared store newer than this spares its digest (the cutoff less the skew
    /// between nodes' clocks).
    pub pinned_since: SystemTime,
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
    /// `_layers` links removed with their blob.
    pub links_removed: u64,
    /// Digests whose blob went in this sweep, and their `_layers` links with it: none of
    /// their links is left for [`Sweeper::dangling_links`].
    pub unlinked: HashSet<Digest>,
    /// Blob directories without their `data`: a write that died before its rename left them.
    pub dataless: Vec<String>,
}

/// What one directory's batch came to.
#[derive(Default)]
struct BlobBatch {
    outcomes: Vec<(Digest, BlobOutcome)>,
    links_removed: u64,
    /// Digests whose `_layers` links went with their blob.
    unlinked: Vec<Digest>,
}

/// Listings in flight at once: each is a hop to a blocking thread, whose latency, not the
/// filesystem, bounds a sequential walk on a busy machine.
const CONCURRENCY: usize = 16;
/// Batches of deletions in flight at once. A batch holds the garbage of one directory (a blob
/// fan-out directory, a repository's `_layers`) and goes to the driver in one call: one
/// blocking-thread hop per directory instead of one per key. Thread hand-offs were a third of
/// the collector's CPU with one hop per key (perf), and that CPU is taken from pushes. Two, so
/// that one batch is checked (`stat`s, pins) while the other is retired: the filesystem driver
/// retires one batch at a time anyway (`Trash::renaming`).
const BATCHES: usize = 2;

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
        match self.retire(paths::tag_dir(repo, &tag)).await {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(true),
        }
    }

    /// Deletes every blob not in `marked` whose bytes, and every `_layers` link to which
    /// (`linked_from`), are older than the cutoff, and those links with it.
    pub async fn blobs(
        &self,
        marked: &HashSet<Digest>,
        linked_from: &HashMap<Digest, Vec<RepoName>>,
        progress: &mut Progress,
    ) -> StorageResult<BlobSweep> {
        let mut sweep = BlobSweep::default();
        // Unmarked digests, one group per fan-out directory.
        let mut candidates: Vec<Vec<Digest>> = Vec::new();
        let mut listed = 0;
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
                let mut group = Vec::new();
                for digest in digests? {
                    listed += 1;
                    if marked.contains(&digest) {
                        sweep.kept += 1;
                        sweep.present.insert(digest);
                    } else {
                        group.push(digest);
                    }
                }
                if !group.is_empty() {
                    candidates.push(group);
                }
                progress.update("blobs listed", listed, None);
            }
        }
        let total: usize = candidates.iter().map(Vec::len).sum();
        let mut judged = futures_util::stream::iter(candidates)
            .map(|group| async move { self.sweep_blobs(group, linked_from).await })
            .buffer_unordered(BATCHES);
        let mut done = 0;
        while let Some(batch) = judged.next().await {
            let batch = batch?;
            sweep.links_removed += batch.links_removed;
            sweep.unlinked.extend(batch.unlinked);
            for (digest, outcome) in batch.outcomes {
                done += 1;
                match outcome {
                    BlobOutcome::Removed(size) => {
                        sweep.removed += 1;
                        sweep.bytes_removed += size;
                    }
                    BlobOutcome::Spared => {
                        sweep.spared += 1;
                        sweep.present.insert(digest);
                    }
                    BlobOutcome::Gone => sweep.dataless.push(paths::blob_dir(&digest)),
                }
            }
            progress.update("unreferenced blobs", done, Some(total));
        }
        Ok(sweep)
    }

    /// Judges unreferenced blobs of one fan-out directory — too young, held by a push, or
    /// deleted — and deletes the condemned ones in one batch, then their `_layers` links in
    /// another. Deleting the links here rather than in [`Sweeper::dangling_links`] saves a
    /// second claim and `stat` of each blob (its links are most of the links a sweep removes).
    async fn sweep_blobs(
        &self,
        digests: Vec<Digest>,
        linked_from: &HashMap<Digest, Vec<RepoName>>,
    ) -> StorageResult<BlobBatch> {
        let mut batch = BlobBatch::default();
        let mut old = Vec::new();
        for digest in digests {
            let info = match self.driver.stat(&paths::blob_data(&digest)).await {
                Ok(info) => info,
                Err(e) if e.is_not_found() => {
                    batch.outcomes.push((digest, BlobOutcome::Gone));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if info.modified > self.cutoff || self.linked_recently(&digest, linked_from).await? {
                batch.outcomes.push((digest, BlobOutcome::Spared));
            } else if self.dry_run {
                batch
                    .outcomes
                    .push((digest, BlobOutcome::Removed(info.size)));
            } else {
                old.push((digest, info.size));
            }
        }
        let verdicts = self
            .pins
            .condemn_each(old.iter().map(|(digest, _)| digest), self.cutoff);
        let mut condemned = Vec::new();
        for ((digest, size), condemned_now) in old.into_iter().zip(verdicts) {
            if condemned_now {
                condemned.push((digest, size));
            } else {
                batch.outcomes.push((digest, BlobOutcome::Spared));
            }
        }
        // Other nodes' pushes: the store's half of the claim.
        let digests: Vec<Digest> = condemned.iter().map(|(d, _)| d.clone()).collect();
        let in_store = match shared_pins::condemn(self.driver, &digests, self.pinned_since).await {
            Ok(verdicts) => verdicts,
            Err(e) => {
                self.pins.acquit_each(&digests);
                return Err(e);
            }
        };
        let (condemned, spared): (Vec<_>, Vec<_>) = condemned
            .into_iter()
            .zip(in_store)
            .partition(|(_, delete)| *delete);
        for ((digest, _), _) in spared {
            self.pins.acquit(&digest);
            batch.outcomes.push((digest, BlobOutcome::Spared));
        }
        let condemned: Vec<(Digest, u64)> = condemned.into_iter().map(|(c, _)| c).collect();
        let result = self
            .retire_condemned(&condemned, linked_from, &mut batch)
            .await;
        let digests: Vec<Digest> = condemned.iter().map(|(d, _)| d.clone()).collect();
        shared_pins::release(self.driver, &digests).await;
        self.pins.acquit_each(&digests);
        result.map(|()| batch)
    }

    /// Deletes condemned blobs, then the `_layers` links of those that are gone (while the
    /// caller still holds them condemned: a push linking one meanwhile waits, then finds it
    /// unknown and uploads it again).
    async fn retire_condemned(
        &self,
        condemned: &[(Digest, u64)],
        linked_from: &HashMap<Digest, Vec<RepoName>>,
        batch: &mut BlobBatch,
    ) -> StorageResult<()> {
        if condemned.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = condemned
            .iter()
            .map(|(digest, _)| paths::blob_dir(digest))
            .collect();
        let results = self.disposal.retire(&keys).await;
        let mut failure = None;
        let mut links = Vec::new();
        for ((digest, size), result) in condemned.iter().zip(results) {
            let outcome = match result {
                Ok(()) => BlobOutcome::Removed(*size),
                Err(e) if e.is_not_found() => BlobOutcome::Gone,
                Err(e) => {
                    failure = failure.or(Some(e));
                    continue;
                }
            };
            for repo in linked_from.get(digest).into_iter().flatten() {
                links.push(paths::link_dir(&paths::layer_link(repo, digest)).to_owned());
            }
            batch.unlinked.push(digest.clone());
            batch.outcomes.push((digest.clone(), outcome));
        }
        match self.retire_counted(links).await {
            Ok(removed) => batch.links_removed = removed,
            Err(e) => failure = failure.or(Some(e)),
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Retires `keys` (none: no hop to the driver); how many went, or the first failure other
    /// than a key already gone.
    async fn retire_counted(&self, keys: Vec<String>) -> StorageResult<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut removed = 0;
        let mut failure = None;
        for result in self.disposal.retire(&keys).await {
            match result {
                Ok(()) => removed += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// Removes the links of a tag's history (`index`) to manifests the repository no longer
    /// has, as registry:2 removes them with a manifest; a link written after the cutoff or
    /// within [`WRITE_MAX_AGE`] stays (a push after the load, or one still publishing). Returns how many went, and the history directories
    /// that have no link (a write that died before its rename).
    pub async fn tag_history(
        &self,
        repo: &RepoName,
        tags: &[Tag],
        has_manifest: impl Fn(&Digest) -> bool,
    ) -> StorageResult<(u64, Vec<String>)> {
        let mut links = Vec::new();
        for tag in tags {
            for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
                let dir = paths::tag_index_dir(repo, tag, algorithm);
                for digest in digests_under(self.driver, &dir, algorithm).await? {
                    if !has_manifest(&digest) {
                        links.push(paths::tag_index_link(repo, tag, &digest));
                    }
                }
            }
        }
        let old_before = self.written_before();
        let mut old = Vec::new();
        let mut linkless = Vec::new();
        for (link, info) in links.iter().zip(self.driver.stat_each(&links).await) {
            let dir = paths::link_dir(link).to_owned();
            match info {
                Ok(info) if info.modified < old_before => old.push(dir),
                Ok(_) => {}
                Err(e) if e.is_not_found() => linkless.push(dir),
                Err(e) => return Err(e),
            }
        }
        if self.dry_run {
            return Ok((old.len() as u64, linkless));
        }
        Ok((self.retire_counted(old).await?, linkless))
    }

    /// Removes what writes that died before their rename left in `dirs` (the filesystem
    /// driver's `*.tmp` files), once older than the cutoff and [`WRITE_MAX_AGE`]: with a
    /// grace of 0 a write still going on could lose its file just before its rename. A dry run
    /// counts nothing.
    pub async fn leftovers(&self, dirs: &[String]) -> StorageResult<u64> {
        if self.dry_run || dirs.is_empty() {
            return Ok(0);
        }
        self.disposal
            .remove_leftovers(dirs, self.written_before())
            .await
    }

    /// What was written before this is no write in progress: the cutoff, and at least
    /// [`WRITE_MAX_AGE`] ago.
    fn written_before(&self) -> SystemTime {
        SystemTime::now()
            .checked_sub(WRITE_MAX_AGE)
            .map_or(self.cutoff, |floor| floor.min(self.cutoff))
    }

    /// Removes `_layers` links whose blob is gone, other than those [`Sweeper::blobs`] removed
    /// with their blob; returns how many.
    pub async fn dangling_links(
        &self,
        links: &[(RepoName, Digest)],
        blobs: &BlobSweep,
        progress: &mut Progress,
    ) -> StorageResult<u64> {
        let dangling: Vec<(RepoName, Digest)> = links
            .iter()
            .filter(|(_, digest)| {
                !blobs.present.contains(digest) && !blobs.unlinked.contains(digest)
            })
            .cloned()
            .collect();
        if self.dry_run {
            return Ok(dangling.len() as u64);
        }
        let mut by_repo: HashMap<RepoName, Vec<Digest>> = HashMap::new();
        for (repo, digest) in dangling {
            by_repo.entry(repo).or_default().push(digest);
        }
        let repositories = by_repo.len();
        let mut removing = futures_util::stream::iter(by_repo)
            .map(|(repo, digests)| async move { self.dangling_links_of(&repo, digests).await })
            .buffer_unordered(BATCHES);
        let (mut removed, mut done) = (0, 0);
        while let Some(result) = removing.next().await {
            removed += result?;
            done += 1;
            progress.update("repositories' dangling links", done, Some(repositories));
        }
        Ok(removed)
    }

    /// Removes one repository's links to blobs that are gone, in one batch; returns how many.
    async fn dangling_links_of(&self, repo: &RepoName, digests: Vec<Digest>) -> StorageResult<u64> {
        // Claimed while each is checked and its link deleted, so an upload or mount of one
        // waits and then writes its link again.
        let verdicts = self.pins.condemn_each(&digests, self.cutoff);
        let claimed: Vec<Digest> = digests
            .into_iter()
            .zip(verdicts)
            .filter_map(|(digest, claimed)| claimed.then_some(digest))
            .collect();
        let result = self.retire_dangling(repo, &claimed).await;
        self.pins.acquit_each(&claimed);
        result
    }

    /// Removes the links of `repo` to those claimed digests whose blob is (still) missing.
    async fn retire_dangling(&self, repo: &RepoName, claimed: &[Digest]) -> StorageResult<u64> {
        let mut keys = Vec::new();
        for digest in claimed {
            match self.driver.stat(&paths::blob_data(digest)).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {
                    keys.push(paths::link_dir(&paths::layer_link(repo, digest)).to_owned())
                }
                Err(e) => return Err(e),
            }
        }
        self.retire_counted(keys).await
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
                match self.retire(paths::upload_dir(repo, &id)).await {
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

    /// Deletes everything under one key (see `Disposal::retire`).
    async fn retire(&self, key: String) -> StorageResult<()> {
        let mut results = self.disposal.retire(&[key]).await;
        results.pop().expect("one result per key")
    }

    async fn delete_condemned(&self, digest: &Digest, key: &str) -> StorageResult<Deletion> {
        if !self.pins.condemn(digest, self.cutoff) {
            return Ok(Deletion::Spared);
        }
        let digests = [digest.clone()];
        match shared_pins::condemn(self.driver, &digests, self.pinned_since).await {
            Ok(verdict) if verdict[0] => {}
            Ok(_) => {
                self.pins.acquit(digest);
                return Ok(Deletion::Spared);
            }
            Err(e) => {
                self.pins.acquit(digest);
                return Err(e);
            }
        }
        let result = self.retire(key.to_owned()).await;
        shared_pins::release(self.driver, &digests).await;
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
