//! The state directory: the one place that knows its layout.
//!
//! ```text
//! <state_dir>/                             0700
//!   account-<directory key>.json           0600  one ACME account per directory URL
//!   certificate-<directory key>.pem        0600  the chain (leaf first), then its private key
//!   control.sock                           0600  `regapp cert status|renew` reach the server here
//! ```
//!
//! `<directory key>` is the first 16 hex digits of SHA-256(directory URL): staging and
//! production (or two CAs) never share an account, and switching `acme.directory` never serves a
//! certificate from the CA it was switched away from (a staging certificate after moving to
//! production would be kept until its renewal otherwise).
//!
//! The chain and its key are one file so that one rename replaces both: a crash leaves the old
//! pair or the new one, never a new chain with an old key. Every write is temp file + fsync +
//! rename ([`crate::certs::disk`]).

use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use instant_acme::AccountCredentials;
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use super::error::AcmeError;
use crate::certs::disk::{ensure_dir, write_atomic, PRIVATE_DIR, PRIVATE_FILE};
use crate::certs::pem;

const CONTROL: &str = "control.sock";

/// Paths and atomic reads/writes under one state directory, for one ACME directory URL.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
    /// Distinguishes the files of one ACME directory URL from another's.
    key: String,
}

impl StateDir {
    pub fn new(dir: &Path, directory_url: &str) -> StateDir {
        let hash = hex::encode(Sha256::digest(directory_url.as_bytes()));
        StateDir {
            dir: dir.to_owned(),
            key: hash[..16].to_owned(),
        }
    }

    /// Creates the directory (0700), or narrows an existing one to 0700.
    pub fn ensure(&self) -> Result<(), AcmeError> {
        ensure_dir(&self.dir, PRIVATE_DIR)?;
        fs::set_permissions(&self.dir, Permissions::from_mode(PRIVATE_DIR))
            .map_err(|e| self.error(&self.dir, e))
    }

    /// Distinguishes one ACME directory URL's account and certificate from another's.
    pub fn directory_key(&self) -> &str {
        &self.key
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn certificate_path(&self) -> PathBuf {
        self.dir.join(format!("certificate-{}.pem", self.key))
    }

    pub fn control_socket(&self) -> PathBuf {
        self.dir.join(CONTROL)
    }

    pub fn account_path(&self) -> PathBuf {
        self.dir.join(format!("account-{}.json", self.key))
    }

    /// The stored account, if there is one.
    pub fn load_account(&self) -> Result<Option<AccountCredentials>, AcmeError> {
        let path = self.account_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error(&path, e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AcmeError::State {
                path,
                message: format!("not an account file ({e}); move it away to create a new account"),
            })
    }

    pub fn save_account(&self, credentials: &AccountCredentials) -> Result<(), AcmeError> {
        let path = self.account_path();
        let json = serde_json::to_vec_pretty(credentials).map_err(|e| AcmeError::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&path, &json, PRIVATE_FILE)?;
        Ok(())
    }

    /// The stored certificate and key, if present; a file that does not load is an error (the
    /// caller decides whether to order a new one).
    pub fn load_certificate(&self) -> Result<Option<CertifiedKey>, AcmeError> {
        let path = self.certificate_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error(&path, e)),
        };
        Ok(Some(pem::parse(&bytes, &path, &bytes, &path)?))
    }

    /// Replaces the stored pair after checking that the key belongs to the chain's leaf.
    pub fn save_certificate(
        &self,
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<CertifiedKey, AcmeError> {
        let path = self.certificate_path();
        let both = Self::pair(chain_pem, key_pem);
        let checked = pem::parse(both.as_bytes(), &path, both.as_bytes(), &path)?;
        write_atomic(&path, both.as_bytes(), PRIVATE_FILE)?;
        Ok(checked)
    }

    /// The stored form of a pair: the chain (leaf first), then its key.
    pub fn pair(chain_pem: &str, key_pem: &str) -> String {
        let mut both = chain_pem.trim_end().to_owned();
        both.push('\n');
        both.push_str(key_pem);
        both
    }

    fn error(&self, path: &Path, e: io::Error) -> AcmeError {
        AcmeError::State {
            path: path.to_owned(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_directory_and_the_pair_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("acme");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        let state = StateDir::new(&dir, "https://ca.test/dir");
        state.ensure().unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert!(state.load_certificate().unwrap().is_none());

        let cert = crate::certs::selfsigned::generate(
            "registry.test",
            std::time::Duration::from_secs(86_400),
        )
        .unwrap();
        let saved = state
            .save_certificate(&cert.cert_pem, cert.key_pem())
            .unwrap();
        assert_eq!(saved.cert, cert.key.cert);
        assert_eq!(mode(&state.certificate_path()), 0o600);
        let loaded = state.load_certificate().unwrap().unwrap();
        assert_eq!(loaded.cert, cert.key.cert);

        // A key that is not the leaf's is refused and the stored pair stays.
        let other = crate::certs::selfsigned::generate(
            "registry.test",
            std::time::Duration::from_secs(86_400),
        )
        .unwrap();
        assert!(state
            .save_certificate(&cert.cert_pem, other.key_pem())
            .is_err());
        assert_eq!(
            state.load_certificate().unwrap().unwrap().cert,
            cert.key.cert
        );
        // Only the certificate file: no temporary file left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn each_directory_url_has_its_own_account_and_certificate() {
        let production = StateDir::new(
            Path::new("/state"),
            "https://acme-v02.api.letsencrypt.org/directory",
        );
        let staging = StateDir::new(
            Path::new("/state"),
            "https://acme-staging-v02.api.letsencrypt.org/directory",
        );
        assert_ne!(production.account_path(), staging.account_path());
        assert_ne!(production.certificate_path(), staging.certificate_path());
        assert_eq!(production.control_socket(), staging.control_socket());
        assert!(production.account_path().starts_with("/state"));
    }
}
