//! A streaming write into the bucket: parts of a multipart upload as the bytes arrive, the
//! state between writers in `<key>.writing`, one object only once committed.
//!
//! `<key>.writing` is a line of JSON (the multipart upload's id, its parts' ETags and sizes,
//! when it was written) followed by the tail: the bytes since the last part, fewer than a part.
//! It is replaced in one PUT at every `close`, so a reader of it sees one consistent state; a
//! part sent after the state it belongs to was lost (a crash) is sent again under the same
//! number. Bytes gather in a [`Spool`] file until they make a part, which streams from it while
//! the next one gathers: a writer's memory is a few staging buffers, whatever the part size.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::signed::Signed;
use super::spool::{Sealed, Spool};
use super::{error, S3Driver};
use crate::storage::{ByteStream, ObjectWriter, StorageError, StorageResult};

/// The state object of a key being written is `<key>` followed by this.
pub(super) const WRITING_SUFFIX: &str = ".writing";

/// Parts of one write on their way to the bucket while the next gathers.
const PARTS_IN_FLIGHT: usize = 2;

/// A state's header line is read in a first ranged GET of this much, and in a second of
/// [`MAX_HEADER`] if longer (thousands of parts).
const HEADER_GUESS: u64 = 64 * 1024;
/// 10,000 parts of about 60 bytes each, with room.
const MAX_HEADER: u64 = 2 * 1024 * 1024;

/// Where a write stands between writers.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct WriteState {
    /// The multipart upload, once the first part went out.
    upload_id: Option<String>,
    /// ETag and size of each part, in order.
    parts: Vec<(String, u64)>,
    /// Seconds since the epoch of the last `close`.
    modified: u64,
    /// Where the tail starts in the state object, and its length.
    #[serde(skip)]
    tail_at: u64,
    #[serde(skip)]
    tail_len: u64,
    /// The state object's, so that its tail is read from the same version as its header.
    #[serde(skip)]
    e_tag: Option<String>,
}

impl WriteState {
    /// The state in `bytes`, the start of a state object of `size` bytes; `None` if its
    /// header line goes on past them.
    fn decode(
        key: &str,
        bytes: &[u8],
        size: u64,
        e_tag: Option<String>,
    ) -> StorageResult<Option<WriteState>> {
        let Some(line) = bytes.iter().position(|&b| b == b'\n') else {
            return match (bytes.len() as u64) < size {
                true => Ok(None),
                false => Err(unreadable(key, "no header line")),
            };
        };
        let mut state: WriteState =
            serde_json::from_slice(&bytes[..line]).map_err(|e| unreadable(key, &e.to_string()))?;
        state.tail_at = line as u64 + 1;
        state.tail_len = size - state.tail_at;
        state.e_tag = e_tag;
        Ok(Some(state))
    }

    /// The state stored at `writing` for `key` (for messages), if there is one: its header
    /// only, in one or two ranged GETs.
    pub(super) async fn read(
        store: &AmazonS3,
        key: &str,
        writing: &Path,
    ) -> StorageResult<Option<WriteState>> {
        use object_store::{GetOptions, GetRange, ObjectStore};
        for want in [HEADER_GUESS, MAX_HEADER] {
            let options = GetOptions::default().with_range(Some(GetRange::Bounded(0..want)));
            let got = match store.get_opts(writing, options).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(error(key, e)),
            };
            let (size, e_tag) = (got.meta.size, got.meta.e_tag.clone());
            let bytes = got.bytes().await.map_err(|e| error(key, e))?;
            if let Some(state) = WriteState::decode(key, &bytes, size, e_tag)? {
                return Ok(Some(state));
            }
        }
        Err(unreadable(key, "its header line is too long"))
    }

    /// `range` of the tail, from the version of the state object the header came from.
    pub(super) async fn tail(
        &self,
        store: &AmazonS3,
        key: &str,
        writing: &Path,
        range: std::ops::Range<u64>,
    ) -> StorageResult<ByteStream> {
        use futures_util::{StreamExt, TryStreamExt};
        use object_store::{GetOptions, GetRange, ObjectStore};
        let range = range.start.min(self.tail_len)..range.end.min(self.tail_len);
        if range.is_empty() {
            return Ok(futures_util::stream::empty().boxed());
        }
        let options = GetOptions {
            if_match: self.e_tag.clone(),
            ..GetOptions::default()
        }
        .with_range(Some(GetRange::Bounded(
            self.tail_at + range.start..self.tail_at + range.end,
        )));
        let got = store
            .get_opts(writing, options)
            .await
            .map_err(|e| error(key, e))?;
        let key = key.to_owned();
        Ok(got
            .into_stream()
            .map_err(move |e| std::io::Error::other(format!("{key}: {e}")))
            .boxed())
    }

    /// Continues a committed object (or starts a missing one). A committed object cannot be
    /// reopened as a multipart upload without copying it, so only one smaller than a part can;
    /// its bytes become the tail. `size` is the object's, so that a large one is refused
    /// without being read.
    pub(super) async fn from_object(
        driver: &S3Driver,
        key: &str,
        size: u64,
    ) -> StorageResult<(WriteState, Option<ByteStream>)> {
        if size >= driver.part_size {
            return Err(StorageError::Io {
                key: key.to_owned(),
                source: std::io::Error::other(
                    "appending to a committed object of a part or more is not supported",
                ),
            });
        }
        use crate::storage::StorageDriver;
        match driver.reader(key, 0, None).await {
            Ok(bytes) => Ok((WriteState::default(), Some(bytes))),
            Err(e) if e.is_not_found() => Ok((WriteState::default(), None)),
            Err(e) => Err(e),
        }
    }

    /// No part went out yet: every byte is in the tail.
    pub(super) fn in_tail(&self) -> bool {
        self.upload_id.is_none()
    }

    pub(super) fn size(&self) -> u64 {
        self.parts.iter().map(|(_, size)| size).sum::<u64>() + self.tail_len
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

fn unreadable(key: &str, why: &str) -> StorageError {
    StorageError::Io {
        key: key.to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("its write state is unreadable: {why}"),
        ),
    }
}

fn failed(key: &str, why: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        key: key.to_owned(),
        source: std::io::Error::other(why.to_string()),
    }
}

pub(super) struct S3Writer {
    store: Arc<AmazonS3>,
    signed: Arc<Signed>,
    key: String,
    path: Path,
    writing: Path,
    part_size: u64,
    spool_dir: PathBuf,
    state: WriteState,
    /// Bytes since the last part (the state's tail first).
    spool: Spool,
    /// Parts on their way, oldest first: their sizes, and the tasks that give their ETags.
    sending: VecDeque<(u64, JoinHandle<StorageResult<String>>)>,
    /// The object was committed before this writer appended to it: it goes once the state
    /// stands for the key, so that the key never has two truths.
    replaces_object: bool,
}

/// What a writer starts from.
pub(super) struct Start {
    pub(super) state: WriteState,
    /// The bytes since the last part, if there are any.
    pub(super) tail: Option<ByteStream>,
    pub(super) replaces_object: bool,
}

impl S3Writer {
    pub(super) async fn open(
        driver: &S3Driver,
        key: String,
        path: Path,
        writing: Path,
        start: Start,
    ) -> StorageResult<S3Writer> {
        let mut spool =
            Spool::new(&driver.spool).map_err(|e| failed(&key, spool_error(&driver.spool, e)))?;
        if let Some(tail) = start.tail {
            spool.write_all(tail).await.map_err(|e| failed(&key, e))?;
        }
        Ok(S3Writer {
            store: driver.store.clone(),
            signed: driver.signed.clone(),
            key,
            path,
            writing,
            part_size: driver.part_size,
            spool_dir: driver.spool.clone(),
            state: start.state,
            spool,
            sending: VecDeque::new(),
            replaces_object: start.replaces_object,
        })
    }

    /// The spool's bytes, sealed, and a fresh spool in its place.
    async fn take_spool(&mut self) -> StorageResult<Sealed> {
        let fresh = Spool::new(&self.spool_dir)
            .map_err(|e| failed(&self.key, spool_error(&self.spool_dir, e)))?;
        std::mem::replace(&mut self.spool, fresh)
            .seal()
            .await
            .map_err(|e| failed(&self.key, e))
    }

    /// Starts sending the spool as the next part; waits while too many are on their way.
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
        while self.sending.len() >= PARTS_IN_FLIGHT {
            self.receive_part().await?;
        }
        let part = self.take_spool().await?;
        let query = format!(
            "?partNumber={}&uploadId={}",
            self.state.parts.len() + self.sending.len() + 1,
            form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
        );
        let (signed, path, key) = (self.signed.clone(), self.path.clone(), self.key.clone());
        let size = part.len();
        let sending = tokio::spawn(async move {
            signed
                .put_streamed(&path, &query, size, || part.stream())
                .await
                .map_err(|e| failed(&key, e))
        });
        self.sending.push_back((size, sending));
        Ok(())
    }

    /// Waits for the oldest part on its way and records it.
    async fn receive_part(&mut self) -> StorageResult<()> {
        let Some((size, sending)) = self.sending.pop_front() else {
            return Ok(());
        };
        let etag = sending.await.map_err(|e| failed(&self.key, e))??;
        self.state.parts.push((etag, size));
        Ok(())
    }

    async fn receive_all(&mut self) -> StorageResult<()> {
        while !self.sending.is_empty() {
            self.receive_part().await?;
        }
        Ok(())
    }

    async fn remove_state(&self) -> StorageResult<()> {
        match self.store.delete(&self.writing).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(error(&self.key, e)),
        }
    }
}

/// A writer dropped before `close` or `commit` (its request failed or was cancelled) stops its
/// parts: one finishing later could overwrite the same part number sent by the next writer.
impl Drop for S3Writer {
    fn drop(&mut self) {
        for (_, sending) in &self.sending {
            sending.abort();
        }
    }
}

fn spool_error(dir: &std::path::Path, e: std::io::Error) -> String {
    format!("cannot gather an upload's part in {}: {e}", dir.display())
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> StorageResult<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.spool
            .write(&chunk)
            .await
            .map_err(|e| failed(&self.key, spool_error(&self.spool_dir, e)))?;
        if self.spool.len() >= self.part_size {
            self.send_part().await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.state.parts.iter().map(|(_, size)| size).sum::<u64>()
            + self.sending.iter().map(|(size, _)| size).sum::<u64>()
            + self.spool.len()
    }

    async fn close(mut self: Box<Self>) -> StorageResult<()> {
        self.receive_all().await?;
        self.state.modified = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let tail = self.take_spool().await?;
        let mut header = serde_json::to_vec(&self.state).expect("a write state serializes");
        header.push(b'\n');
        let header = Bytes::from(header);
        let length = header.len() as u64 + tail.len();
        let body = || {
            use futures_util::StreamExt;
            futures_util::stream::once(std::future::ready(Ok(header.clone())))
                .chain(tail.stream())
                .boxed()
        };
        self.signed
            .put_streamed(&self.writing, "", length, body)
            .await
            .map_err(|e| failed(&self.key, e))?;
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
                let content = self.take_spool().await?;
                self.signed
                    .put_streamed(&self.path, "", content.len(), || content.stream())
                    .await
                    .map_err(|e| failed(&self.key, e))?;
            }
            Some(id) => {
                if self.spool.len() > 0 {
                    self.send_part().await?;
                }
                self.receive_all().await?;
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
