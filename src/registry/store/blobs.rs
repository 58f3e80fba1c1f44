//! Blobs as a repository sees them: a blob is served by a repository only through its
//! `_layers` link, and the bytes live once in `blobs/`.

use bytes::Bytes;

use super::error::OrUnknown;
use super::{paths, Store, StoreError, StoreResult};
use crate::registry::types::{ByteRange, Digest, RepoName};
use crate::storage::{ByteStream, Publish};

/// How long a blob's download URL works: long enough for a slow client to start (the
/// transfer may outlast it), short enough that a leaked one soon stops working; distribution's.
pub const DOWNLOAD_URL_LIFETIME: std::time::Duration = std::time::Duration::from_secs(20 * 60);

impl Store {
    /// The size of a blob the repository may serve.
    pub async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> StoreResult<u64> {
        let unknown = || StoreError::BlobUnknown(digest.clone());
        self.driver
            .stat(&paths::layer_link(repo, digest))
            .await
            .or_unknown(unknown)?;
        let info = self
            .driver
            .stat(&paths::blob_data(digest))
            .await
            .or_unknown(unknown)?;
        Ok(info.size)
    }

    /// Where a client may download the blob directly (a presigned bucket URL valid for
    /// [`DOWNLOAD_URL_LIFETIME`]), if the storage hands such URLs out.
    pub async fn blob_download_url(&self, digest: &Digest) -> StoreResult<Option<String>> {
        let key = paths::blob_data(digest);
        Ok(self
            .driver
            .download_url(&key, DOWNLOAD_URL_LIFETIME)
            .await?)
    }

    /// Streams a blob (or a range of it) the repository may serve.
    pub async fn blob_read(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> StoreResult<ByteStream> {
        let (offset, len) = match range {
            Some(r) => (r.start, Some(r.len())),
            None => (0, None),
        };
        self.driver
            .reader(&paths::blob_data(digest), offset, len)
            .await
            .or_unknown(|| StoreError::BlobUnknown(digest.clone()))
    }

    /// Removes the repository's link to a blob; the bytes stay for garbage collection to judge.
    pub async fn blob_delete(&self, repo: &RepoName, digest: &Digest) -> StoreResult<()> {
        self.ensure_delete_enabled()?;
        let link = paths::layer_link(repo, digest);
        self.driver
            .stat(&link)
            .await
            .or_unknown(|| StoreError::BlobUnknown(digest.clone()))?;
        let dir = link
            .strip_suffix("/link")
            .expect("layer links end in /link");
        self.driver
            .delete(dir)
            .await
            .or_unknown(|| StoreError::BlobUnknown(digest.clone()))
    }

    /// Links a blob that `from` may serve into `repo`. Returns false when `from` cannot serve it,
    /// in which case the caller opens an ordinary upload instead.
    pub async fn blob_mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> StoreResult<bool> {
        let _pin = self.pin(vec![digest.clone()]).await?;
        match self.blob_size(from, digest).await {
            Ok(_) => {
                self.link_blob(repo, digest).await?;
                Ok(true)
            }
            Err(StoreError::BlobUnknown(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether the blob's bytes exist at all, whoever links them.
    pub(super) async fn blob_exists(&self, digest: &Digest) -> StoreResult<bool> {
        match self.driver.stat(&paths::blob_data(digest)).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn link_blob(&self, repo: &RepoName, digest: &Digest) -> StoreResult<()> {
        self.link_blob_after(repo, digest, Vec::new()).await
    }

    /// Links a blob into `repo` after `steps` (the blob's own move into place), in one publish:
    /// the link never becomes visible before the blob does.
    pub(super) async fn link_blob_after(
        &self,
        repo: &RepoName,
        digest: &Digest,
        mut steps: Vec<Publish>,
    ) -> StoreResult<()> {
        steps.push(Publish::Put {
            key: paths::layer_link(repo, digest),
            content: Bytes::from(digest.to_string()),
        });
        self.driver.publish(steps).await?;
        self.catalog.note(repo, self.driver.as_ref()).await?;
        Ok(())
    }
}

impl Store {
    /// Links a blob whose bytes are in the store (whichever repository brought them) into
    /// `repo`; false when they are not. For the mirror: a layer another mirrored repository
    /// cached is not fetched again.
    pub async fn blob_link_existing(&self, repo: &RepoName, digest: &Digest) -> StoreResult<bool> {
        // Most asked are simply not here: a stat, before a pin costs a write on a bucket.
        if !self.blob_exists(digest).await? {
            return Ok(false);
        }
        let _pin = self.pin(vec![digest.clone()]).await?;
        if !self.blob_exists(digest).await? {
            return Ok(false);
        }
        self.link_blob(repo, digest).await?;
        Ok(true)
    }
}
