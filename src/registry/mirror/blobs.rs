//! Blobs of mirrored repositories: from the store when it has them (linked from another
//! mirrored repository if that one brought them), else from the blob's flight.

use std::sync::Arc;

use super::flights::Flight;
use super::{MirrorError, Target};
use crate::metrics::Cached;
use crate::registry::store::{Store, StoreError};
use crate::registry::types::Digest;
use crate::upstream::UpstreamError;

/// Where a mirrored blob's bytes come from.
pub enum MirroredBlob {
    /// The store has it, linked into the repository, of this size: serve it as any blob.
    Stored(u64),
    /// Being fetched: read it from the flight (which knows its size).
    Fetching(Arc<Flight>),
}

impl Target {
    /// Where to read `digest` from, starting its fetch if nothing has it.
    pub async fn blob(
        &self,
        store: &Arc<Store>,
        digest: &Digest,
    ) -> Result<MirroredBlob, MirrorError> {
        if let Some(size) = self.stored(store, digest).await? {
            self.mirror.hit(Cached::Blob);
            return Ok(MirroredBlob::Stored(size));
        }
        let (flight, started) = self
            .mirror
            .flights
            .join_or_start(self, store, digest)
            .await
            .map_err(|e| self.blob_unknown(digest, e))?;
        if started {
            self.mirror.miss(Cached::Blob);
        } else {
            self.mirror.hit(Cached::Blob);
        }
        Ok(MirroredBlob::Fetching(flight))
    }

    /// The size of `digest`, from the store, a flight or a HEAD upstream (nothing fetched).
    pub async fn blob_size(&self, store: &Store, digest: &Digest) -> Result<u64, MirrorError> {
        if let Some(size) = self.stored(store, digest).await? {
            self.mirror.hit(Cached::Blob);
            return Ok(size);
        }
        if let Some(flight) = self.mirror.flights.running(digest) {
            return Ok(flight.size);
        }
        let answer = self
            .mirror
            .upstream
            .blob_size(&self.remote, &digest.to_string())
            .await;
        self.mirror.upstream_result(&answer);
        answer.map_err(|source| {
            self.blob_unknown(
                digest,
                MirrorError::Upstream {
                    what: format!("blob {digest}"),
                    name: self.mirror.name().to_owned(),
                    source,
                },
            )
        })
    }

    /// The size of `digest` if the repository can serve it from the store now, linking bytes
    /// another repository brought.
    async fn stored(&self, store: &Store, digest: &Digest) -> Result<Option<u64>, MirrorError> {
        match store.blob_size(&self.local, digest).await {
            Ok(size) => Ok(Some(size)),
            Err(StoreError::BlobUnknown(_)) => {
                if !store.blob_link_existing(&self.local, digest).await? {
                    return Ok(None);
                }
                Ok(Some(store.blob_size(&self.local, digest).await?))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The upstream's 404 is the spec's `BLOB_UNKNOWN`.
    fn blob_unknown(&self, digest: &Digest, e: MirrorError) -> MirrorError {
        match e {
            MirrorError::Upstream {
                source: UpstreamError::NotFound,
                ..
            } => StoreError::BlobUnknown(digest.clone()).into(),
            e => e,
        }
    }
}
