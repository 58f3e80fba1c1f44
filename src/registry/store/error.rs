//! What can go wrong in the store, in the registry's own terms. The API layer maps each variant
//! to an OCI error code and status in one `match`.

use crate::registry::types::manifest::ManifestError;
use crate::registry::types::{Digest, RepoName};
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("repository {0} is not known")]
    NameUnknown(RepoName),
    #[error("blob {0} is not known to this repository")]
    BlobUnknown(Digest),
    #[error("upload session is not known (it was finished, cancelled or never started)")]
    UploadUnknown,
    #[error("chunk starts at byte {requested} but the upload has {size} bytes")]
    UploadOutOfOrder { requested: u64, size: u64 },
    #[error("upload failed: {0}")]
    UploadInvalid(String),
    #[error("content does not match digest {expected} (it hashes to {actual})")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("manifest {0} is not known")]
    ManifestUnknown(String),
    #[error(transparent)]
    ManifestInvalid(#[from] ManifestError),
    #[error("manifest is larger than the limit of {limit} bytes")]
    ManifestTooLarge { limit: usize },
    #[error("manifest references {0}, which this repository does not have")]
    ManifestBlobUnknown(Digest),
    #[error("{repo}:{tag} is immutable by {rule}{}", match current {
        Some(d) => format!(" and names {d}: push that digest, or another tag"),
        None => String::new(),
    })]
    TagImmutable {
        repo: RepoName,
        tag: String,
        rule: String,
        current: Option<Digest>,
    },
    #[error("deleting is disabled on this registry (storage.delete_enabled = false)")]
    DeleteDisabled,
    #[error("the request body failed: {0}")]
    Body(String),
    #[error("the request body stalled: {0}; an upload keeps what arrived and can be resumed")]
    BodyStalled(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Maps a storage "not found" to a registry error, keeping every other storage error.
pub(crate) trait OrUnknown<T> {
    fn or_unknown(self, unknown: impl FnOnce() -> StoreError) -> StoreResult<T>;
}

impl<T> OrUnknown<T> for Result<T, StorageError> {
    fn or_unknown(self, unknown: impl FnOnce() -> StoreError) -> StoreResult<T> {
        self.map_err(|e| {
            if e.is_not_found() {
                unknown()
            } else {
                e.into()
            }
        })
    }
}

impl StoreError {
    /// A request body that failed to arrive, told apart from one that went quiet.
    pub fn from_body(e: std::io::Error) -> StoreError {
        if e.kind() == std::io::ErrorKind::TimedOut {
            StoreError::BodyStalled(e.to_string())
        } else {
            StoreError::Body(e.to_string())
        }
    }
}
