//! Sweep: deletes what the mark did not keep — unreferenced blobs, revisions of manifests no
//! longer kept, dangling `_layers` links and stale upload sessions.
//!
//! Every blob or revision deletion goes through `Pins::condemn` (see `registry::store::pins`):
//! a digest a push holds, or released after the cutoff, is skipped. In a dry run nothing is
//! deleted and everything old enough counts as removed.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

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
        let mut seen = 0;
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = paths::blobs_dir(algorithm);
            for fanout in list_or_empty(self.driver, &dir).await? {
                let Some(fanout) = fanout.parse::<FanOut>().ok() else {
                    continue;
                };
                let fanout_dir = format!("{dir}/{}", fanout.0);
                for digest in digests_under(self.driver, &fanout_dir, algorithm).await? {
                    seen += 1;
                    progress.update("blobs", seen, None);
                    if marked.contains(&digest) {
                        sweep.kept += 1;
                        sweep.present.insert(digest);
                        continue;
                    }
                    let info = match self.driver.stat(&paths::blob_data(&digest)).await {
                        Ok(info) => info,
                        Err(e) if e.is_not_found() => continue,
                        Err(e) => return Err(e),
                    };
                    if info.modified > self.cutoff
                        || self.linked_recently(&digest, linked_from).await?
                    {
                        sweep.spared += 1;
                        sweep.present.insert(digest);
                        continue;
                    }
                    if self.dry_run {
                        sweep.removed += 1;
                        sweep.bytes_removed += info.size;
                        continue;
                    }
                    match self
                        .delete_condemned(&digest, &paths::blob_dir(&digest))
                        .await?
                    {
                        Deletion::Done => {
                            sweep.removed += 1;
                            sweep.bytes_removed += info.size;
                        }
                        Deletion::Gone => {}
                        Deletion::Spared => {
                            sweep.spared += 1;
                            sweep.present.insert(digest);
                        }
                    }
                }
            }
        }
        Ok(sweep)
    }

    /// Removes `_layers` links whose blob is gone; returns how many.
    pub async fn dangling_links(
        &self,
        links: &[(RepoName, Digest)],
        present: &HashSet<Digest>,
    ) -> StorageResult<u64> {
        let mut removed = 0;
        for (repo, digest) in links {
            if present.contains(digest) {
                continue;
            }
            if self.dry_run {
                removed += 1;
                continue;
            }
            // Condemned while it is checked, so an upload or mount of the digest waits and
            // then writes its link again.
            if !self.pins.condemn(digest, self.cutoff) {
                continue;
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
            if result? {
                removed += 1;
            }
        }
        Ok(removed)
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
struct FanOut(String);

impl std::str::FromStr for FanOut {
    type Err = ();
    fn from_str(s: &str) -> Result<FanOut, ()> {
        if s.len() == 2
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(FanOut(s.to_owned()))
        } else {
            Err(())
        }
    }
}
