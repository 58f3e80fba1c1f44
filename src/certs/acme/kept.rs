//! Where the account and the certificate are kept: the state directory on one node, the bucket
//! when several nodes share it (`[storage] backend = "s3"`), so that one order serves them all.
//!
//! ```text
//! <prefix>/regapp-cluster/acme/<directory key>/account.json     the ACME account (its key)
//! <prefix>/regapp-cluster/acme/<directory key>/certificate.pem  the chain, then its key
//! <prefix>/regapp-cluster/acme/challenges/<token>               an HTTP-01 answer in flight
//! ```
//!
//! Objects are written without an ACL (private, as every object regapp writes; a presigned URL
//! is only ever made for a blob) and unencrypted: whoever can read the bucket can read the keys,
//! as they can read every image. A certificate is one object so that one PUT replaces chain and
//! key together; an account is written with `If-None-Match: *`, so that two nodes creating one
//! at once keep the same.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use instant_acme::AccountCredentials;
use rustls::sign::CertifiedKey;

use super::error::AcmeError;
use super::state::StateDir;
use crate::certs::pem;
use crate::storage::{StorageDriver, StorageError, Version};

/// Where ACME objects live in a shared store (outside registry:2's `docker/`).
pub const BUCKET_PREFIX: &str = "regapp-cluster/acme";

#[derive(Clone)]
pub enum Kept {
    Dir(StateDir),
    Bucket {
        driver: Arc<dyn StorageDriver>,
        /// `regapp-cluster/acme/<directory key>`.
        folder: String,
    },
}

impl Kept {
    pub fn in_bucket(driver: Arc<dyn StorageDriver>, state: &StateDir) -> Kept {
        Kept::Bucket {
            driver,
            folder: format!("{BUCKET_PREFIX}/{}", state.directory_key()),
        }
    }

    /// Where the certificate is, in an operator's words.
    pub fn certificate_location(&self) -> String {
        match self {
            Kept::Dir(state) => state.certificate_path().display().to_string(),
            Kept::Bucket { folder, .. } => format!("bucket object {folder}/certificate.pem"),
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Kept::Bucket { .. })
    }

    /// The stored account, if there is one.
    pub async fn load_account(&self) -> Result<Option<AccountCredentials>, AcmeError> {
        let (bytes, origin) = match self {
            Kept::Dir(state) => return state.load_account(),
            Kept::Bucket { driver, folder } => {
                let key = format!("{folder}/account.json");
                match get(driver.as_ref(), &key).await? {
                    Some((bytes, _)) => (bytes, key),
                    None => return Ok(None),
                }
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AcmeError::State {
                path: origin.into(),
                message: format!("not an account ({e}); delete it to create a new account"),
            })
    }

    /// Stores `credentials`, unless another node stored an account first: then that one, which
    /// every node uses from now on.
    pub async fn save_account(
        &self,
        credentials: &AccountCredentials,
    ) -> Result<Option<AccountCredentials>, AcmeError> {
        match self {
            Kept::Dir(state) => state.save_account(credentials).map(|()| None),
            Kept::Bucket { driver, folder } => {
                let key = format!("{folder}/account.json");
                let json =
                    serde_json::to_vec_pretty(credentials).map_err(|e| AcmeError::State {
                        path: key.clone().into(),
                        message: e.to_string(),
                    })?;
                let stored = driver
                    .put_if_absent(&key, Bytes::from(json))
                    .await
                    .map_err(|source| AcmeError::Bucket { source })?;
                if stored {
                    Ok(None)
                } else {
                    self.load_account().await
                }
            }
        }
    }

    /// The stored certificate and key, and the object's version in a bucket (to notice a new
    /// one cheaply); a stored pair that does not load is an error.
    pub async fn load_certificate(
        &self,
    ) -> Result<Option<(CertifiedKey, Option<Version>)>, AcmeError> {
        match self {
            Kept::Dir(state) => Ok(state.load_certificate()?.map(|key| (key, None))),
            Kept::Bucket { driver, folder } => {
                let key = format!("{folder}/certificate.pem");
                let Some((bytes, version)) = get(driver.as_ref(), &key).await? else {
                    return Ok(None);
                };
                let origin = Path::new(&key);
                Ok(Some((
                    pem::parse(&bytes, origin, &bytes, origin)?,
                    Some(version),
                )))
            }
        }
    }

    /// Replaces the stored pair after checking that the key belongs to the chain's leaf.
    pub async fn save_certificate(
        &self,
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<CertifiedKey, AcmeError> {
        let (driver, folder) = match self {
            Kept::Dir(state) => return state.save_certificate(chain_pem, key_pem),
            Kept::Bucket { driver, folder } => (driver, folder),
        };
        let key = format!("{folder}/certificate.pem");
        let both = StateDir::pair(chain_pem, key_pem);
        let origin = Path::new(&key);
        let checked = pem::parse(both.as_bytes(), origin, both.as_bytes(), origin)?;
        driver
            .put(&key, Bytes::from(both))
            .await
            .map_err(|source| AcmeError::Bucket { source })?;
        Ok(checked)
    }
}

async fn get(driver: &dyn StorageDriver, key: &str) -> Result<Option<(Bytes, Version)>, AcmeError> {
    driver
        .get_versioned(key)
        .await
        .map_err(|source: StorageError| AcmeError::Bucket { source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FsDriver;

    fn in_store(dir: &Path) -> Kept {
        let state = StateDir::new(&dir.join("state"), "https://ca.test/dir");
        Kept::in_bucket(Arc::new(FsDriver::new(dir.join("store"))), &state)
    }

    #[tokio::test]
    async fn a_pair_in_a_shared_store_is_one_object_that_two_nodes_read_alike() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (in_store(dir.path()), in_store(dir.path()));
        assert!(a.load_certificate().await.unwrap().is_none());
        let cert = crate::certs::selfsigned::generate(
            "registry.test",
            std::time::Duration::from_secs(86_400),
        )
        .unwrap();
        a.save_certificate(&cert.cert_pem, cert.key_pem())
            .await
            .unwrap();
        let (loaded, version) = b.load_certificate().await.unwrap().unwrap();
        assert_eq!(loaded.cert, cert.key.cert);
        assert!(version.is_some());
        assert!(a.certificate_location().contains("regapp-cluster/acme/"));
        // A key that is not the leaf's is refused and the stored pair stays.
        let other = crate::certs::selfsigned::generate(
            "registry.test",
            std::time::Duration::from_secs(86_400),
        )
        .unwrap();
        assert!(a
            .save_certificate(&cert.cert_pem, other.key_pem())
            .await
            .is_err());
        assert_eq!(b.load_certificate().await.unwrap().unwrap().1, version);
    }
}
