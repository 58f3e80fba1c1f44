//! Upload sessions: bytes stream into `_uploads/<id>/data` while they are hashed, and become a
//! blob only once the whole content matches the digest the client names.
//!
//! The hash state of each session is kept in memory between chunks. Where the bytes of an
//! unfinished upload cannot be read back (a bucket), it is also stored with the upload after
//! every chunk. When neither covers the bytes stored (after a restart, after a failed chunk),
//! the data is hashed again from the start, so a session survives anything its data survives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::StreamExt;

use super::error::OrUnknown;
use super::hashing::StreamHasher;
use super::{paths, Body, Store, StoreError, StoreResult};
use crate::registry::store::batcher::Batcher;
use crate::registry::types::{Algorithm, Digest, Hasher, RepoName, UploadId};
use crate::storage::{ObjectWriter, Publish};

/// Hash states of open sessions, each behind its own lock so that chunks of one session are
/// applied one at a time.
#[derive(Default)]
pub(super) struct UploadSessions {
    open: Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<HashState>>>>,
}

/// A hasher and the number of bytes it has consumed.
#[derive(Default)]
struct HashState {
    hashed: Option<(Hasher, u64)>,
}

/// Sessions whose hash state is kept; beyond it idle states are dropped (they can be rebuilt).
const MAX_CACHED_SESSIONS: usize = 4096;

impl UploadSessions {
    fn session(&self, id: UploadId) -> Arc<tokio::sync::Mutex<HashState>> {
        let mut open = self.open.lock().expect("upload session map poisoned");
        if open.len() >= MAX_CACHED_SESSIONS {
            open.retain(|_, state| Arc::strong_count(state) > 1);
        }
        open.entry(id).or_default().clone()
    }

    fn forget(&self, id: &UploadId) {
        self.open
            .lock()
            .expect("upload session map poisoned")
            .remove(id);
    }
}

impl Store {
    /// Opens an upload session.
    pub async fn upload_start(&self, repo: &RepoName) -> StoreResult<UploadId> {
        let id = UploadId::new_random();
        let started = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        // Written and closed, not synced: after a power loss the client starts its upload
        // again, and the collector removes what is left of this one by age.
        let mut started_at = self
            .driver
            .writer(&paths::upload_started_at(repo, &id), false)
            .await?;
        started_at.write(Bytes::from(started)).await?;
        started_at.close().await?;
        self.driver
            .writer(&paths::upload_data(repo, &id), false)
            .await?
            .close()
            .await?;
        Ok(id)
    }

    /// Bytes received so far.
    pub async fn upload_size(&self, repo: &RepoName, id: &UploadId) -> StoreResult<u64> {
        let info = self
            .driver
            .stat(&paths::upload_data(repo, id))
            .await
            .or_unknown(|| StoreError::UploadUnknown)?;
        Ok(info.size)
    }

    /// Appends a chunk. `start` is where the client says the chunk begins (`Content-Range`);
    /// it must be the current size. Returns the new size.
    pub async fn upload_append(
        &self,
        repo: &RepoName,
        id: &UploadId,
        start: Option<u64>,
        body: Body,
    ) -> StoreResult<u64> {
        let session = self.uploads.session(*id);
        let mut state = session.lock().await;
        let (hasher, size) = self
            .append_locked(repo, id, &mut state, start, body, false)
            .await?;
        state.hashed = Some((hasher, size));
        Ok(size)
    }

    /// Finishes an upload with an optional last chunk: verifies the digest, makes the blob
    /// visible and links it into the repository. On a digest mismatch nothing is kept.
    pub async fn upload_finish(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        last_chunk: Option<Body>,
    ) -> StoreResult<()> {
        let session = self.uploads.session(*id);
        let mut state = session.lock().await;
        let body = last_chunk.unwrap_or_else(|| futures_util::stream::empty().boxed());
        let (hasher, _) = self
            .append_locked(repo, id, &mut state, None, body, true)
            .await?;
        let data = paths::upload_data(repo, id);
        let hasher = if hasher.algorithm() == digest.algorithm() {
            hasher
        } else {
            self.rehash(&data, digest.algorithm()).await?.0
        };
        let actual = hasher.finish();
        if actual != *digest {
            self.discard_upload(repo, id).await?;
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        // Pinned until the link exists, so the collector cannot delete the blob in between.
        let _pin = self.pin(vec![digest.clone()]).await?;
        let mut steps = Vec::new();
        if !self.blob_exists(digest).await? {
            let to = paths::blob_data(digest);
            steps.push(Publish::Move { from: data, to });
        }
        self.link_blob_after(repo, digest, steps).await?;
        self.discard_upload(repo, id).await
    }

    /// Cancels an upload and removes what it received.
    pub async fn upload_cancel(&self, repo: &RepoName, id: &UploadId) -> StoreResult<()> {
        let session = self.uploads.session(*id);
        let _state = session.lock().await;
        self.upload_size(repo, id).await?;
        self.discard_upload(repo, id).await
    }

    /// A whole blob in one request (`POST …/uploads/?digest=`).
    pub async fn upload_monolithic(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: Body,
    ) -> StoreResult<()> {
        let id = self.upload_start(repo).await?;
        self.upload_finish(repo, &id, digest, Some(body)).await
    }

    async fn append_locked(
        &self,
        repo: &RepoName,
        id: &UploadId,
        state: &mut HashState,
        start: Option<u64>,
        mut body: Body,
        durable: bool,
    ) -> StoreResult<(Hasher, u64)> {
        let data = paths::upload_data(repo, id);
        let size = self.upload_size(repo, id).await?;
        if let Some(requested) = start {
            if requested != size {
                return Err(StoreError::UploadOutOfOrder { requested, size });
            }
        }
        let hasher = match state.hashed.take() {
            Some((hasher, hashed)) if hashed == size => hasher,
            // Nothing to read back (in a bucket, an upload's parts cannot be read anyway).
            _ if size == 0 => Algorithm::Sha256.hasher(),
            _ => match self.saved_hash_state(repo, id, size).await {
                Some(hasher) => hasher,
                None => {
                    let (hasher, hashed) = self.rehash(&data, Algorithm::Sha256).await?;
                    if hashed != size {
                        return Err(StoreError::UploadInvalid(
                            "upload data changed while it was read".into(),
                        ));
                    }
                    hasher
                }
            },
        };
        let mut hasher = StreamHasher::new(hasher);
        let mut writer: Box<dyn ObjectWriter> = self.driver.writer(&data, true).await?;
        let mut batcher = Batcher::default();
        let failed = loop {
            let batch = match body.next().await {
                None => break None,
                Some(Err(e)) => break Some(StoreError::from_body(e)),
                Some(Ok(chunk)) => batcher.add(chunk),
            };
            if let Some(batch) = batch {
                let batch = self.batch_budget.hold(batch).await;
                hasher.update(&batch).await;
                writer.write(batch).await?;
            }
        };
        // What arrived before a failure is kept too: the client resumes after it.
        if let Some(rest) = batcher.rest() {
            let rest = self.batch_budget.hold(rest).await;
            hasher.update(&rest).await;
            writer.write(rest).await?;
        }
        if let Some(e) = failed {
            // The hash state is not put back: the next request rebuilds it from disk.
            return Err(e);
        }
        let before = size;
        let size = writer.size();
        if !durable && !self.driver.reads_unfinished_writes() {
            // What a restarted node (or another one) continues from, the bytes being unreadable;
            // stored before the close that gives the upload its new size.
            let hasher = hasher.finish().await;
            if let Some(saved) = hasher.save() {
                let key = paths::upload_hash_state(repo, id, size);
                self.driver.put(&key, saved.into()).await?;
            }
            writer.close().await?;
            if size != before {
                let stale = paths::upload_hash_state(repo, id, before);
                if let Err(e) = self.driver.delete(&stale).await {
                    if !e.is_not_found() {
                        tracing::debug!(key = %stale, error = %e, "removing a hash state failed");
                    }
                }
            }
            return Ok((hasher, size));
        }
        // The hash's tail and the fsync overlap.
        let (hasher, written) = tokio::join!(hasher.finish(), async {
            if durable {
                writer.commit().await
            } else {
                writer.close().await
            }
        });
        written?;
        Ok((hasher, size))
    }

    /// The hash state stored for an upload of `size` bytes, if there is one for exactly those.
    async fn saved_hash_state(&self, repo: &RepoName, id: &UploadId, size: u64) -> Option<Hasher> {
        let saved = self
            .driver
            .get(&paths::upload_hash_state(repo, id, size))
            .await
            .ok()?;
        match Hasher::restore(&saved) {
            Some((hasher, hashed)) if hashed == size => Some(hasher),
            _ => None,
        }
    }

    /// Hashes a stored object from its start; returns the hasher and the bytes it consumed.
    async fn rehash(&self, key: &str, algorithm: Algorithm) -> StoreResult<(Hasher, u64)> {
        let mut hasher = algorithm.hasher();
        let mut consumed = 0;
        let mut stream = self.driver.reader(key, 0, None).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| crate::storage::StorageError::from_io(key, e))?;
            hasher.update(&chunk);
            consumed += chunk.len() as u64;
        }
        Ok((hasher, consumed))
    }

    async fn discard_upload(&self, repo: &RepoName, id: &UploadId) -> StoreResult<()> {
        self.uploads.forget(id);
        match self.driver.delete(&paths::upload_dir(repo, id)).await {
            Err(e) if !e.is_not_found() => Err(e.into()),
            _ => Ok(()),
        }
    }
}
