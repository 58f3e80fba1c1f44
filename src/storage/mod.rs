//! The storage driver: bytes under keys, and nothing registry-shaped.
//!
//! A key is a `/`-separated relative path such as `docker/registry/v2/blobs/sha256/ab/…/data`.
//! Keys are built only by `registry::store::paths`; a driver still refuses keys that try to
//! leave its root. Deduplication, locking and digests live above this trait, so that an
//! object-store driver (S3 through `object_store`: multipart writes, conditional puts) can sit
//! beside the filesystem one without the layers above changing.

use std::io;
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

pub mod fs;
mod fs_reader;
pub mod s3;
#[cfg(test)]
pub(crate) mod suite;

pub use fs::FsDriver;
pub use s3::{S3Driver, S3Settings};

/// `[storage]`: where registry:2's layout (`docker/registry/v2/…`) lives.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageSettings {
    /// The filesystem backend's store; with S3, this node's own state (`gc.lock`, `gc.sock`).
    pub root: std::path::PathBuf,
    pub backend: Backend,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// Under `root`.
    Filesystem,
    /// In a bucket, under its prefix.
    S3(S3Settings),
}

pub const DEFAULT_ROOT: &str = "/var/lib/regapp/registry";

/// The driver the settings name.
pub fn driver(settings: &StorageSettings) -> StorageResult<std::sync::Arc<dyn StorageDriver>> {
    Ok(match &settings.backend {
        Backend::Filesystem => std::sync::Arc::new(FsDriver::new(&settings.root)),
        Backend::S3(s3) => std::sync::Arc::new(S3Driver::new(s3)?),
    })
}

impl StorageSettings {
    /// Where the store is, for messages: the root, or the bucket's endpoint and name.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Filesystem => self.root.display().to_string(),
            Backend::S3(s3) => s3.location(),
        }
    }
}

/// The key [`probe`] writes: outside registry:2's `docker/` tree, which it never lists.
const PROBE_PREFIX: &str = "regapp-probe";

/// Writes, reads back and removes a small object of its own: the store is reachable and takes
/// writes (readiness, and a clear error at start instead of at the first push).
pub async fn probe(driver: &dyn StorageDriver) -> StorageResult<()> {
    let key = format!("{PROBE_PREFIX}/{}", uuid::Uuid::new_v4().simple());
    let content = Bytes::from_static(b"ok");
    driver.put(&key, content.clone()).await?;
    let read = driver.get(&key).await;
    driver.delete(&key).await?;
    if read? != content {
        return Err(StorageError::Io {
            key,
            source: io::Error::other("read back other bytes than were written"),
        });
    }
    Ok(())
}

/// A stream of an object's bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{key}: not found")]
    NotFound { key: String },
    #[error("{key}: the storage is full")]
    Full { key: String },
    #[error("{key}: {source}")]
    Io {
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid storage key {0:?}")]
    InvalidKey(String),
}

impl StorageError {
    pub fn from_io(key: &str, source: io::Error) -> StorageError {
        let key = key.to_owned();
        match source.kind() {
            io::ErrorKind::NotFound => StorageError::NotFound { key },
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StorageError::Full { key },
            _ => StorageError::Io { key, source },
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

/// What an object's version is to its driver (an ETag in a bucket, a content hash on disk):
/// only compared, never read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(pub(crate) String);

#[derive(Debug, Clone, Copy)]
pub struct ObjectInfo {
    pub size: u64,
    pub modified: SystemTime,
    pub is_dir: bool,
}

/// Bytes under keys. Every method is safe to call concurrently.
#[async_trait]
pub trait StorageDriver: Send + Sync + 'static {
    /// Reads a whole small object (a link, a manifest).
    async fn get(&self, key: &str) -> StorageResult<Bytes>;
    /// Writes a small object atomically and durably: readers see the old content or the new one.
    async fn put(&self, key: &str, content: Bytes) -> StorageResult<()>;
    /// `put`, only if nothing is at `key` yet: `false` (and nothing written) if something is.
    /// What several writers agree through (a lock, a lease) without any other coordination.
    async fn put_if_absent(&self, key: &str, content: Bytes) -> StorageResult<bool>;
    /// A small object with its version, which [`put_if_version`](Self::put_if_version)
    /// compares; `None` if there is none.
    async fn get_versioned(&self, key: &str) -> StorageResult<Option<(Bytes, Version)>>;
    /// `put`, only if the object is still at `version`: `false` (and nothing written) if another
    /// writer replaced or removed it since. With `put_if_absent`, what a lease is made of.
    async fn put_if_version(
        &self,
        key: &str,
        content: Bytes,
        version: &Version,
    ) -> StorageResult<bool>;
    /// Streams `len` bytes (or all) of an object from `offset`.
    async fn reader(&self, key: &str, offset: u64, len: Option<u64>) -> StorageResult<ByteStream>;
    /// Opens a streaming writer. With `append` it continues an existing object (a resumed upload);
    /// otherwise it starts the object afresh.
    async fn writer(&self, key: &str, append: bool) -> StorageResult<Box<dyn ObjectWriter>>;
    async fn stat(&self, key: &str) -> StorageResult<ObjectInfo>;

    /// `stat` of each key: one result per key, in order. For callers that look up many small
    /// objects at once (a collection loading a store): the filesystem driver does them on a
    /// blocking thread, so that when the page cache no longer holds them, several callers wait
    /// for the disk side by side instead of one after the other on a runtime thread.
    async fn stat_each(&self, keys: &[String]) -> Vec<StorageResult<ObjectInfo>> {
        let mut results = Vec::with_capacity(keys.len());
        for key in keys {
            results.push(self.stat(key).await);
        }
        results
    }

    /// `get` of each key: one result per key, in order, as `stat_each` does.
    async fn get_each(&self, keys: &[String]) -> Vec<StorageResult<Bytes>> {
        let mut results = Vec::with_capacity(keys.len());
        for key in keys {
            results.push(self.get(key).await);
        }
        results
    }
    /// A URL a client may GET the object from directly for `expires`, if this store hands
    /// them out (S3 with `redirect`); `None` means: serve it through `reader`.
    async fn download_url(
        &self,
        _key: &str,
        _expires: std::time::Duration,
    ) -> StorageResult<Option<String>> {
        Ok(None)
    }

    /// Whether other processes may write the store meanwhile (several nodes on one bucket):
    /// what a node keeps in memory about it must then be checked against it.
    fn shared(&self) -> bool {
        false
    }

    /// Whether an object a writer closed (not committed) can be read back: a file can; the
    /// parts of a multipart upload cannot, so whoever continues such a write must have kept
    /// what it needs of the bytes (an upload's hash state).
    fn reads_unfinished_writes(&self) -> bool {
        true
    }

    /// Names of the direct children of a directory-like key, in no particular order.
    async fn list(&self, key: &str) -> StorageResult<Vec<String>>;
    /// Deletes an object, or everything under a directory-like key.
    async fn delete(&self, key: &str) -> StorageResult<()>;
    /// Moves an object atomically and durably, replacing whatever is at `to`.
    async fn rename(&self, from: &str, to: &str) -> StorageResult<()>;
    /// Carries out `steps` in order, each as `put` or `rename` would, and returns once all of
    /// them are durable. A blob and its link, or a manifest and its three links, become visible
    /// in one call: the filesystem driver syncs every new file, then renames them all, then
    /// syncs their directories, which costs two filesystem journal commits instead of two per
    /// step. If a step fails, the steps before it stay done (as after a crash between them)
    /// and none after it happen.
    async fn publish(&self, steps: Vec<Publish>) -> StorageResult<()> {
        for step in steps {
            match step {
                Publish::Put { key, content } => self.put(&key, content).await?,
                Publish::Move { from, to } => self.rename(&from, &to).await?,
            }
        }
        Ok(())
    }
}

/// One step of [`StorageDriver::publish`].
#[derive(Debug, Clone)]
pub enum Publish {
    /// Writes a small object, as `put` does.
    Put { key: String, content: Bytes },
    /// Moves an object whose bytes are already durable (a committed writer), as `rename` does.
    Move { from: String, to: String },
}

/// A streaming write in progress. Dropping it without `close`/`commit` abandons the bytes.
#[async_trait]
pub trait ObjectWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> StorageResult<()>;
    /// Bytes in the object so far, including what was there before an append.
    fn size(&self) -> u64;
    /// Makes the bytes readable and the object appendable again (end of an upload chunk).
    async fn close(self: Box<Self>) -> StorageResult<()>;
    /// Like `close`, and the bytes survive a power loss (before a blob becomes visible).
    async fn commit(self: Box<Self>) -> StorageResult<()>;
}
