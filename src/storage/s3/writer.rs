//! A streaming write into the bucket: parts of a multipart upload as the bytes arrive, the
//! state between writers in `<key>.writing`, one object only once committed.
//!
//! `<key>.writing` is a line of JSON (the multipart upload's id, its parts' ETags and sizes,
//! when it was written) followed by the tail: the bytes since the last part, fewer than a part.
//! It is replaced in one PUT at every `close`, so a reader of it sees one consistent state; a
//! part sent after the state it belongs to was lost (a crash) is sent again under the same
//! number. Memory per writer: one part.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::{error, S3Driver};
use crate::storage::{ObjectWriter, StorageDriver, StorageError, StorageResult};

/// The state object of a key being written is `<key>` followed by this.
pub(super) const WRITING_SUFFIX: &str = ".writing";

/// Where a write stands between writers.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct WriteState {
    /// The multipart upload, once the first part went out.
    upload_id: Option<String>,
    /// ETag and size of each part, in order.
    parts: Vec<(String, u64)>,
    /// Seconds since the epoch of the last `close`.
    modified: u64,
    #[serde(skip)]
    tail: Bytes,
}

impl WriteState {
    pub(super) fn decode(key: &str, bytes: Bytes) -> StorageResult<WriteState> {
        let invalid = |why: &str| StorageError::Io {
            key: key.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("its write state is unreadable: {why}"),
            ),
        };
        let line = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| invalid("no header line"))?;
        let mut state: WriteState =
            serde_json::from_slice(&bytes[..line]).map_err(|e| invalid(&e.to_string()))?;
        state.tail = bytes.slice(line + 1..);
        Ok(state)
    }

    fn encode(&self) -> PutPayload {
        let mut header = serde_json::to_vec(self).expect("a write state serializes");
        header.push(b'\n');
        PutPayload::from_iter([Bytes::from(header), self.tail.clone()])
    }

    /// Continues a committed object (or starts a missing one). A committed object cannot be
    /// reopened as a multipart upload without copying it, so only one smaller than a part can.
    /// `size` is the object's, so that a large one is refused without being read.
    pub(super) async fn from_object(
        driver: &S3Driver,
        key: &str,
        size: u64,
    ) -> StorageResult<WriteState> {
        if size >= driver.part_size {
            return Err(StorageError::Io {
                key: key.to_owned(),
                source: std::io::Error::other(
                    "appending to a committed object of a part or more is not supported",
                ),
            });
        }
        match driver.get(key).await {
            Ok(bytes) => Ok(WriteState {
                tail: bytes,
                ..WriteState::default()
            }),
            Err(e) if e.is_not_found() => Ok(WriteState::default()),
            Err(e) => Err(e),
        }
    }

    /// No part went out yet: every byte is in the tail.
    pub(super) fn in_tail(&self) -> bool {
        self.upload_id.is_none()
    }

    pub(super) fn tail(&self) -> Bytes {
        self.tail.clone()
    }

    pub(super) fn size(&self) -> u64 {
        self.parts.iter().map(|(_, size)| size).sum::<u64>() + self.tail.len() as u64
    }

    pub(super) fn modified(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(self.modified)
    }

    /// Gives the upload's parts back to the store (best effort: a bucket's lifecycle rule for
    /// incomplete multipart uploads catches what this misses).
    pub(super) async fn abandon(&self, store: &AmazonS3, path: &Path) {
        if let Some(id) = &self.upload_id {
            if let Err(e) = store.abort_multipart(path, id).await {
                tracing::debug!(%path, error = %e, "aborting a multipart upload failed");
            }
        }
    }
}

pub(super) struct S3Writer {
    store: Arc<AmazonS3>,
    key: String,
    path: Path,
    writing: Path,
    part_size: u64,
    state: WriteState,
    /// Bytes since the last part (the state's tail first). Copied in, not kept as the
    /// caller's chunks: those may be counted against a budget of bytes in flight (the
    /// engine's), which a part's worth of them would exhaust.
    buffer: BytesMut,
    /// The object was committed before this writer appended to it: it goes once the state
    /// stands for the key, so that the key never has two truths.
    replaces_object: bool,
}

impl S3Writer {
    pub(super) fn new(
        store: Arc<AmazonS3>,
        key: String,
        path: Path,
        writing: Path,
        part_size: u64,
        mut state: WriteState,
        replaces_object: bool,
    ) -> S3Writer {
        let tail = std::mem::take(&mut state.tail);
        S3Writer {
            store,
            key,
            path,
            writing,
            part_size,
            state,
            buffer: BytesMut::from(&tail[..]),
            replaces_object,
        }
    }

    /// Sends the buffer as the next part.
    async fn send_part(&mut self) -> StorageResult<()> {
        let id = match &self.state.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self
                    .store
                    .create_multipart(&self.path)
                    .await
                    .map_err(|e| error(&self.key, e))?;
                self.state.upload_id = Some(id.clone());
                id
            }
        };
        let part = self.buffer.split().freeze();
        let size = part.len() as u64;
        let PartId { content_id } = self
            .store
            .put_part(&self.path, &id, self.state.parts.len(), part.into())
            .await
            .map_err(|e| error(&self.key, e))?;
        self.state.parts.push((content_id, size));
        Ok(())
    }

    fn tail(&mut self) -> Bytes {
        self.buffer.split().freeze()
    }

    async fn remove_state(&self) -> StorageResult<()> {
        match self.store.delete(&self.writing).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(error(&self.key, e)),
        }
    }
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> StorageResult<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        if self.buffer.capacity() == 0 {
            self.buffer.reserve(self.part_size as usize + chunk.len());
        }
        self.buffer.extend_from_slice(&chunk);
        drop(chunk);
        if self.buffer.len() as u64 >= self.part_size {
            self.send_part().await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.state.parts.iter().map(|(_, size)| size).sum::<u64>() + self.buffer.len() as u64
    }

    async fn close(mut self: Box<Self>) -> StorageResult<()> {
        self.state.modified = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.state.tail = self.tail();
        self.store
            .put(&self.writing, self.state.encode())
            .await
            .map_err(|e| error(&self.key, e))?;
        if self.replaces_object {
            match self.store.delete(&self.path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(error(&self.key, e)),
            }
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> StorageResult<()> {
        match self.state.upload_id.clone() {
            None => {
                let content = self.tail();
                self.store
                    .put(&self.path, content.into())
                    .await
                    .map_err(|e| error(&self.key, e))?;
            }
            Some(id) => {
                if !self.buffer.is_empty() {
                    self.send_part().await?;
                }
                let parts = self
                    .state
                    .parts
                    .iter()
                    .map(|(content_id, _)| PartId {
                        content_id: content_id.clone(),
                    })
                    .collect();
                self.store
                    .complete_multipart(&self.path, &id, parts)
                    .await
                    .map_err(|e| error(&self.key, e))?;
            }
        }
        self.remove_state().await
    }
}
