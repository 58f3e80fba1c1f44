//! The S3 driver: the same bytes under the same keys as the filesystem driver, in a bucket of
//! any S3-compatible store, through `object_store` (its signing, retries and multipart API).
//!
//! Keys map to object names under `prefix` one to one, so registry:2's `s3-aws` driver and this
//! one read each other's blobs, links and manifests. S3 has no directories: a directory-like key
//! is a prefix, which exists while some object is under it.
//!
//! An object being written by a [`writer`](StorageDriver::writer) is not an object in the bucket
//! until the writer commits: its bytes are parts of a multipart upload, and `<key>.writing` (see
//! [`writer`]) holds the upload's id, its parts and the tail too short to be a part. That state
//! object is what `stat` reports for the key meanwhile and what a writer opened to append (after
//! a restart, or on another node) continues from; `list` hides it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions};

use super::{
    ByteStream, ObjectInfo, ObjectWriter, StorageDriver, StorageError, StorageResult, Version,
};

#[cfg(test)]
#[path = "../../../tests/util/seaweed.rs"]
#[allow(dead_code)] // shared with the integration tests, which use the rest of it
pub(crate) mod seaweed;
mod signed;
mod spool;
#[cfg(test)]
pub(crate) mod tests;
mod writer;

use writer::{S3Writer, Start, WriteState};

/// S3's smallest part but the last.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// The ranges a large object is copied in.
const COPY_PART_SIZE: u64 = 1024 * 1024 * 1024;
/// Parts of this size take a 50 GiB layer in 6,400 of S3's 10,000 parts.
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;

/// `[storage.s3]`.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Settings {
    pub bucket: String,
    /// Empty: AWS for `region`.
    pub endpoint: String,
    pub region: String,
    /// registry:2's `rootdirectory`: keys live under `<prefix>/docker/registry/v2/`.
    pub prefix: String,
    /// `http://endpoint/bucket/key` rather than `http://bucket.endpoint/key`.
    pub path_style: bool,
    /// Both or neither; neither: the `AWS_*` environment variables.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Bytes of an upload gathered (on local disk) before they go out as one part.
    pub part_size: u64,
    /// The local directory they gather in (`<storage.root>/s3-spool`).
    pub spool: std::path::PathBuf,
    /// Blob GETs answer 307 to a presigned URL of the bucket (clients must reach it).
    pub redirect: bool,
}

impl S3Settings {
    /// Where the bucket is, for messages: `http://127.0.0.1:8333/registry`, or
    /// `s3://registry (eu-west-1)` on AWS.
    pub fn location(&self) -> String {
        match self.endpoint.as_str() {
            "" => format!("s3://{} ({})", self.bucket, self.region),
            endpoint => format!("{}/{}", endpoint.trim_end_matches('/'), self.bucket),
        }
    }
}

impl Default for S3Settings {
    fn default() -> S3Settings {
        S3Settings {
            bucket: String::new(),
            endpoint: String::new(),
            region: "us-east-1".to_owned(),
            prefix: String::new(),
            path_style: true,
            access_key_id: None,
            secret_access_key: None,
            part_size: DEFAULT_PART_SIZE,
            spool: std::env::temp_dir(),
            redirect: false,
        }
    }
}

/// Bytes under keys in a bucket.
pub struct S3Driver {
    store: Arc<AmazonS3>,
    /// Object names are `<prefix>/<key>` (no leading or trailing `/` here; empty: `<key>`).
    prefix: String,
    part_size: u64,
    spool: std::path::PathBuf,
    redirect: bool,
    signed: Arc<signed::Signed>,
    /// Objects larger than this are moved by copying ranges into parts (S3: 5 GiB at most).
    copy_whole_up_to: u64,
}

impl S3Driver {
    pub fn new(settings: &S3Settings) -> StorageResult<S3Driver> {
        // reqwest is built without a crypto provider of its own: it takes the process's, ring.
        let _ = rustls::crypto::CryptoProvider::install_default(
            rustls::crypto::ring::default_provider(),
        );
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_virtual_hosted_style_request(!settings.path_style)
            .with_retry(object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..Default::default()
            })
            .with_client_options(client_options(settings));
        if !settings.endpoint.is_empty() {
            builder = builder.with_endpoint(&settings.endpoint);
        }
        if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|e| StorageError::Io {
            key: settings.location(),
            source: std::io::Error::other(e),
        })?;
        let store = Arc::new(store);
        let signed =
            signed::Signed::new(store.clone(), settings).map_err(|e| StorageError::Io {
                key: settings.location(),
                source: std::io::Error::other(e),
            })?;
        std::fs::create_dir_all(&settings.spool).map_err(|e| StorageError::Io {
            key: settings.spool.display().to_string(),
            source: e,
        })?;
        Ok(S3Driver {
            signed: Arc::new(signed),
            spool: settings.spool.clone(),
            copy_whole_up_to: MAX_PART_SIZE,
            store,
            prefix: settings.prefix.trim_matches('/').to_owned(),
            part_size: settings.part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE),
            redirect: settings.redirect,
        })
    }

    /// Moves objects over `bytes` in copied ranges (tests: S3's 5 GiB limit, in small).
    #[cfg(test)]
    fn copying_whole_up_to(mut self, bytes: u64) -> S3Driver {
        self.copy_whole_up_to = bytes;
        self
    }

    /// The object name of `key`: keys are relative paths that cannot climb out (no `..` or `.`,
    /// not absolute, not empty), as on the filesystem.
    fn path(&self, key: &str) -> StorageResult<Path> {
        let plain = !key.is_empty()
            && key
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !plain {
            return Err(StorageError::InvalidKey(key.to_owned()));
        }
        let name = match self.prefix.as_str() {
            "" => key.to_owned(),
            prefix => format!("{prefix}/{key}"),
        };
        Path::parse(&name).map_err(|_| StorageError::InvalidKey(key.to_owned()))
    }

    /// The object that stands for `key` while a writer has it (see the module doc).
    fn writing_path(&self, key: &str) -> StorageResult<Path> {
        self.path(&format!("{key}{}", writer::WRITING_SUFFIX))
    }

    /// Abandons and removes the write state of `key` (at `path`); whether there was one.
    async fn delete_write(&self, key: &str, path: &Path) -> StorageResult<bool> {
        let writing = self.writing_path(key)?;
        let Some(state) = WriteState::read(&self.store, key, &writing).await? else {
            return Ok(false);
        };
        state.abandon(&self.store, path).await;
        self.store
            .delete(&writing)
            .await
            .map_err(|e| error(key, e))?;
        Ok(true)
    }

    /// Removes the folder entries (see [`signed`]) of `dir` and of every directory between
    /// it and the objects that were below it, deepest first; a failure is only logged (the
    /// store's own sweep removes them later).
    async fn remove_folders(&self, dir: &Path, below: &[object_store::ObjectMeta]) {
        let mut folders = std::collections::BTreeSet::new();
        for meta in below {
            let mut parts: Vec<_> = meta.location.parts().collect();
            parts.pop();
            while parts.len() > dir.parts().count() {
                folders.insert(Path::from_iter(parts.iter().cloned()));
                parts.pop();
            }
        }
        folders.insert(dir.clone());
        let mut deepest_first: Vec<Path> = folders.into_iter().collect();
        deepest_first.sort_by_key(|p| std::cmp::Reverse(p.parts().count()));
        for folder in deepest_first {
            if let Err(e) = self.signed.remove_folder(&folder).await {
                tracing::debug!(%folder, error = %e, "removing a folder entry failed");
            }
        }
    }

    /// Copies `source` (`size` bytes) to `target` as a multipart upload of copied ranges, for
    /// objects a single copy cannot take; `target` appears only once every range is in.
    async fn copy_in_parts(
        &self,
        source: &Path,
        target: &Path,
        size: u64,
    ) -> object_store::Result<()> {
        use object_store::multipart::{MultipartStore, PartId};
        let part = self.copy_whole_up_to.clamp(MIN_PART_SIZE, COPY_PART_SIZE);
        let id = self.store.create_multipart(target).await?;
        let mut parts = Vec::new();
        for (index, start) in (0..size).step_by(part as usize).enumerate() {
            let range = start..(start + part).min(size);
            match self
                .signed
                .copy_part(target, &id, index, source, range)
                .await
            {
                Ok(content_id) => parts.push(PartId { content_id }),
                Err(e) => {
                    let _ = self.store.abort_multipart(target, &id).await;
                    return Err(object_store::Error::Generic {
                        store: "S3",
                        source: e.into(),
                    });
                }
            }
        }
        self.store
            .complete_multipart(target, &id, parts)
            .await
            .map(drop)
    }

    /// A PUT under a condition (`If-None-Match: *`, `If-Match`): `false` when it does not
    /// hold, nothing written.
    async fn put_conditionally(
        &self,
        key: &str,
        content: Bytes,
        mode: PutMode,
    ) -> StorageResult<bool> {
        let options = PutOptions {
            mode,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&self.path(key)?, content.into(), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotFound { .. },
            ) => Ok(false),
            Err(e) => Err(error(key, e)),
        }
    }

    /// Every object below a directory-like key (the key's own object not included).
    async fn objects_under(&self, key: &str) -> StorageResult<Vec<object_store::ObjectMeta>> {
        let prefix = self.path(key)?;
        self.store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| error(key, e))
    }
}

/// How long the bucket may stay silent in the middle of a request before it is given up:
/// no bound on a whole request (a 50 GiB blob streams to a slow client for hours; object_store
/// stops any request at 30 s by default), only on silence.
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(120);
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn client_options(settings: &S3Settings) -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_allow_http(settings.endpoint.starts_with("http://"))
        .with_timeout_disabled()
        .with_read_timeout(READ_TIMEOUT)
        .with_connect_timeout(CONNECT_TIMEOUT)
}

/// An `object_store` error as the driver's: not found stays not found, the rest is I/O.
pub(crate) fn error(key: &str, e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound {
            key: key.to_owned(),
        },
        e => StorageError::Io {
            key: key.to_owned(),
            source: std::io::Error::other(with_causes(&e)),
        },
    }
}

/// An error and its causes on one line: object_store's own message stops at "error sending
/// request", the reason an operator needs ("Connection refused") is a cause below it.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let line = c.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = c.source();
    }
    text
}

fn modified(meta: &object_store::ObjectMeta) -> SystemTime {
    meta.last_modified.into()
}

#[async_trait]
impl StorageDriver for S3Driver {
    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        let got = self
            .store
            .get(&self.path(key)?)
            .await
            .map_err(|e| error(key, e))?;
        got.bytes().await.map_err(|e| error(key, e))
    }

    async fn put(&self, key: &str, content: Bytes) -> StorageResult<()> {
        self.store
            .put(&self.path(key)?, content.into())
            .await
            .map(drop)
            .map_err(|e| error(key, e))
    }

    async fn put_if_absent(&self, key: &str, content: Bytes) -> StorageResult<bool> {
        self.put_conditionally(key, content, PutMode::Create).await
    }

    async fn get_versioned(&self, key: &str) -> StorageResult<Option<(Bytes, Version)>> {
        let got = match self.store.get(&self.path(key)?).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(error(key, e)),
        };
        let Some(e_tag) = got.meta.e_tag.clone() else {
            return Err(StorageError::Io {
                key: key.to_owned(),
                source: std::io::Error::other("the store gave the object no ETag"),
            });
        };
        let bytes = got.bytes().await.map_err(|e| error(key, e))?;
        Ok(Some((bytes, Version(e_tag))))
    }

    async fn put_if_version(
        &self,
        key: &str,
        content: Bytes,
        version: &Version,
    ) -> StorageResult<bool> {
        let mode = PutMode::Update(object_store::UpdateVersion {
            e_tag: Some(version.0.clone()),
            version: None,
        });
        self.put_conditionally(key, content, mode).await
    }

    async fn reader(&self, key: &str, offset: u64, len: Option<u64>) -> StorageResult<ByteStream> {
        let path = self.path(key)?;
        if len == Some(0) {
            self.stat(key).await?;
            return Ok(futures_util::stream::empty().boxed());
        }
        let range = match len {
            Some(len) => Some(GetRange::Bounded(offset..offset + len)),
            None if offset > 0 => Some(GetRange::Offset(offset)),
            None => None,
        };
        let options = GetOptions::default().with_range(range);
        match self.store.get_opts(&path, options).await {
            Ok(got) => {
                let key = key.to_owned();
                Ok(got
                    .into_stream()
                    .map_err(move |e| std::io::Error::other(format!("{key}: {e}")))
                    .boxed())
            }
            Err(object_store::Error::NotFound { .. }) => {
                let writing = self.writing_path(key)?;
                match WriteState::read(&self.store, key, &writing).await? {
                    // No part sent yet: the bytes are all in the state's tail.
                    Some(state) if state.in_tail() => {
                        let end = len.map_or(u64::MAX, |len| offset.saturating_add(len));
                        state.tail(&self.store, key, &writing, offset..end).await
                    }
                    // The bytes of an unfinished multipart upload cannot be read back.
                    Some(_) => Err(StorageError::Io {
                        key: key.to_owned(),
                        source: std::io::Error::other(
                            "the object is still being written; it can be read once committed",
                        ),
                    }),
                    None => Err(StorageError::NotFound {
                        key: key.to_owned(),
                    }),
                }
            }
            // Reading from the end of an object: S3 answers 416, a file gives nothing.
            // object_store does not expose the status, so ask for the size.
            Err(e) if offset > 0 => match self.store.head(&path).await {
                Ok(meta) if offset >= meta.size => Ok(futures_util::stream::empty().boxed()),
                _ => Err(error(key, e)),
            },
            Err(e) => Err(error(key, e)),
        }
    }

    async fn writer(&self, key: &str, append: bool) -> StorageResult<Box<dyn ObjectWriter>> {
        let path = self.path(key)?;
        let writing = self.writing_path(key)?;
        // A committed object is the key's truth over a write state (as for `stat`): a crash
        // between a state's write and the object's removal leaves the object.
        let committed = match append {
            false => None,
            true => match self.store.head(&path).await {
                Ok(meta) => Some(meta.size),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => return Err(error(key, e)),
            },
        };
        let (state, tail) = if let Some(size) = committed {
            WriteState::from_object(self, key, size).await?
        } else if append {
            match WriteState::read(&self.store, key, &writing).await? {
                Some(state) => {
                    let tail = state.tail(&self.store, key, &writing, 0..u64::MAX).await?;
                    (state, Some(tail))
                }
                None => (WriteState::default(), None),
            }
        } else {
            (WriteState::default(), None)
        };
        let start = Start {
            state,
            tail,
            replaces_object: committed.is_some(),
        };
        let writer = S3Writer::open(self, key.to_owned(), path, writing, start).await?;
        Ok(Box::new(writer))
    }

    async fn stat(&self, key: &str) -> StorageResult<ObjectInfo> {
        let path = self.path(key)?;
        match self.store.head(&path).await {
            Ok(meta) => {
                return Ok(ObjectInfo {
                    size: meta.size,
                    modified: modified(&meta),
                    is_dir: false,
                })
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(error(key, e)),
        }
        let writing = self.writing_path(key)?;
        if let Some(state) = WriteState::read(&self.store, key, &writing).await? {
            return Ok(ObjectInfo {
                size: state.size(),
                modified: state.modified(),
                is_dir: false,
            });
        }
        // A directory-like key exists while something is below it.
        let mut below = self.store.list(Some(&path));
        match below.next().await {
            Some(Ok(meta)) => Ok(ObjectInfo {
                size: 0,
                modified: modified(&meta),
                is_dir: true,
            }),
            Some(Err(e)) => Err(error(key, e)),
            None => Err(StorageError::NotFound {
                key: key.to_owned(),
            }),
        }
    }

    fn reads_unfinished_writes(&self) -> bool {
        false
    }

    fn shared(&self) -> bool {
        true
    }

    async fn download_url(&self, key: &str, expires: Duration) -> StorageResult<Option<String>> {
        use object_store::signer::Signer;
        if !self.redirect {
            return Ok(None);
        }
        let path = self.path(key)?;
        let url = self
            .store
            .signed_url(http::Method::GET, &path, expires)
            .await
            .map_err(|e| error(key, e))?;
        Ok(Some(url.to_string()))
    }

    async fn list(&self, key: &str) -> StorageResult<Vec<String>> {
        let path = self.path(key)?;
        let listed = self
            .store
            .list_with_delimiter(Some(&path))
            .await
            .map_err(|e| error(key, e))?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .chain(listed.objects.iter().map(|meta| &meta.location))
            // Some stores (SeaweedFS) list an emptied folder as a prefix of itself.
            .filter(|child| **child != path)
            .filter_map(|child| child.filename().map(str::to_owned))
            .map(|name| match name.strip_suffix(writer::WRITING_SUFFIX) {
                // An object being written is listed under its own name.
                Some(name) => name.to_owned(),
                None => name,
            })
            .collect();
        if names.is_empty() {
            return Err(StorageError::NotFound {
                key: key.to_owned(),
            });
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        let path = self.path(key)?;
        let object = match self.store.head(&path).await {
            Ok(_) => {
                self.store.delete(&path).await.map_err(|e| error(key, e))?;
                true
            }
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(error(key, e)),
        };
        // A write state beside a committed object is what a crash between the two left.
        let write = self.delete_write(key, &path).await?;
        if object || write {
            // A file is no directory: nothing below to list.
            return Ok(());
        }
        let below = self.objects_under(key).await?;
        if below.is_empty() {
            return Err(StorageError::NotFound {
                key: key.to_owned(),
            });
        }
        for meta in &below {
            if let Some(name) = meta.location.as_ref().strip_suffix(writer::WRITING_SUFFIX) {
                // An unfinished write below: give its parts back before its state goes.
                if let Ok(Some(state)) = WriteState::read(&self.store, name, &meta.location).await {
                    state.abandon(&self.store, &Path::from(name)).await;
                }
            }
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(error(key, e)),
            }
        }
        self.remove_folders(&path, &below).await;
        Ok(())
    }

    async fn rename(&self, from: &str, to: &str) -> StorageResult<()> {
        let (source, target) = (self.path(from)?, self.path(to)?);
        // S3 has no rename: a server-side copy, then the source goes. A reader of `to` sees
        // the old object or the new one, never part of one.
        let size = self
            .store
            .head(&source)
            .await
            .map_err(|e| error(from, e))?
            .size;
        if size > self.copy_whole_up_to {
            self.copy_in_parts(&source, &target, size)
                .await
                .map_err(|e| error(from, e))?;
        } else {
            self.store
                .copy(&source, &target)
                .await
                .map_err(|e| error(from, e))?;
        }
        self.store.delete(&source).await.map_err(|e| error(from, e))
    }
}
