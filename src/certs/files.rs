//! `tls.mode = "files"`: the certificate is a PEM chain and key that the operator (or certbot, or
//! a secret manager) maintains; regapp picks up new versions without a restart.
//!
//! [`FilesSource::open`] loads and installs them (a broken pair stops startup). [`FilesSource::reload`]
//! — called by the watcher after a change and by the edge on SIGHUP — installs a new pair only if it
//! loads and matches; otherwise the certificate in use stays and the reason is logged once, here.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::error::CertError;
use super::info::CertInfo;
use super::pem;
use super::resolver::CertResolver;
use crate::plumbing::watch::{watch_files, WatchError, WatchGuard};

/// How long the files must be quiet before a watched change is loaded.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(250);

/// A certificate and key kept in two PEM files, installed into a resolver.
#[derive(Debug)]
pub struct FilesSource {
    cert_file: PathBuf,
    key_file: PathBuf,
    resolver: Arc<CertResolver>,
    /// Serialises reloads so a slow one can't install older files after a newer one.
    reloading: Mutex<()>,
}

/// What a successful [`FilesSource::reload`] did.
#[derive(Debug, Clone)]
pub enum Reloaded {
    /// A different certificate is now served.
    Installed(Arc<CertInfo>),
    /// The files hold the certificate already served.
    Unchanged,
}

impl FilesSource {
    /// Loads `cert_file` and `key_file` and installs them in `resolver`. An error here means the
    /// server cannot serve TLS: report it and stop.
    pub fn open(
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
        resolver: Arc<CertResolver>,
    ) -> Result<FilesSource, CertError> {
        let source = FilesSource {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            resolver,
            reloading: Mutex::new(()),
        };
        source.load_and_install()?;
        Ok(source)
    }

    /// Reads the files again. On success the new certificate serves every new handshake (open
    /// connections keep theirs); on failure the current one stays and a warning says why. The
    /// error is returned for the caller's information (a metric, a reply) — it is already logged.
    pub fn reload(&self) -> Result<Reloaded, CertError> {
        let outcome = self.load_and_install();
        if let Err(error) = &outcome {
            tracing::warn!(
                %error,
                "certificate files not reloaded; still serving the previous certificate"
            );
        }
        outcome
    }

    /// Reloads after the files change (replaced by rename, rewritten in place, symlink swapped),
    /// once they have been quiet for `debounce`, until the guard is dropped.
    pub fn watch(self: &Arc<Self>, debounce: Duration) -> Result<WatchGuard, WatchError> {
        let source = Arc::clone(self);
        watch_files(
            "certificate",
            &[&self.cert_file, &self.key_file],
            debounce,
            move || {
                // Outcome logged by reload itself.
                let _ = source.reload();
            },
        )
    }

    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    fn load_and_install(&self) -> Result<Reloaded, CertError> {
        // A poisoned lock only means another reload panicked; the unit value inside is fine.
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let key = pem::load_files(&self.cert_file, &self.key_file)?;
        if self
            .resolver
            .current()
            .is_some_and(|cur| cur.cert == key.cert)
        {
            tracing::debug!(cert = %self.cert_file.display(), "certificate files unchanged");
            return Ok(Reloaded::Unchanged);
        }
        let info = self.resolver.install(Arc::new(key)).map_err(|e| match e {
            CertError::Unparsable(source) => CertError::BadCertificate {
                path: self.cert_file.clone(),
                source,
            },
            other => other,
        })?;
        let now = SystemTime::now();
        if !info.valid_at(now) {
            tracing::warn!(
                cert = %self.cert_file.display(),
                not_before = %humantime::format_rfc3339_seconds(info.not_before),
                not_after = %humantime::format_rfc3339_seconds(info.not_after),
                "serving a certificate that is not valid now"
            );
        }
        tracing::info!(
            cert = %self.cert_file.display(),
            subject = %info.subject,
            issuer = %info.issuer,
            not_after = %humantime::format_rfc3339_seconds(info.not_after),
            sha256 = %info.sha256_fingerprint,
            "certificate installed"
        );
        Ok(Reloaded::Installed(info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::selfsigned::{self, SelfSigned};
    use std::fs;

    const YEAR: Duration = Duration::from_secs(365 * 86_400);

    struct Files {
        _dir: tempfile::TempDir,
        cert: PathBuf,
        key: PathBuf,
    }

    fn files_with(pair: &SelfSigned) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (
            dir.path().join("fullchain.pem"),
            dir.path().join("privkey.pem"),
        );
        fs::write(&cert, &pair.cert_pem).unwrap();
        fs::write(&key, pair.key_pem()).unwrap();
        Files {
            _dir: dir,
            cert,
            key,
        }
    }

    #[test]
    fn reload_installs_new_files_and_reports_unchanged_ones() {
        let (a, b) = (
            selfsigned::generate("a.test", YEAR).unwrap(),
            selfsigned::generate("b.test", YEAR).unwrap(),
        );
        let files = files_with(&a);
        let resolver = Arc::new(CertResolver::new());
        let source = FilesSource::open(&files.cert, &files.key, Arc::clone(&resolver)).unwrap();
        assert_eq!(resolver.current().unwrap().cert, a.key.cert);
        assert!(matches!(source.reload(), Ok(Reloaded::Unchanged)));

        fs::write(&files.cert, &b.cert_pem).unwrap();
        fs::write(&files.key, b.key_pem()).unwrap();
        match source.reload() {
            Ok(Reloaded::Installed(info)) => assert!(info.covers("b.test")),
            other => panic!("{other:?}"),
        }
        assert_eq!(resolver.current().unwrap().cert, b.key.cert);
    }

    #[test]
    fn broken_files_keep_the_old_certificate() {
        let (a, b) = (
            selfsigned::generate("a.test", YEAR).unwrap(),
            selfsigned::generate("b.test", YEAR).unwrap(),
        );
        let files = files_with(&a);
        let resolver = Arc::new(CertResolver::new());
        let source = FilesSource::open(&files.cert, &files.key, Arc::clone(&resolver)).unwrap();

        fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
        assert!(matches!(source.reload(), Err(CertError::Pem { .. })));
        assert_eq!(resolver.current().unwrap().cert, a.key.cert);

        // Half a renewal: the new chain with the old key.
        fs::write(&files.cert, &b.cert_pem).unwrap();
        assert!(matches!(
            source.reload(),
            Err(CertError::KeyMismatch { .. })
        ));
        assert_eq!(resolver.current().unwrap().cert, a.key.cert);

        fs::remove_file(&files.key).unwrap();
        assert!(matches!(source.reload(), Err(CertError::Read { .. })));
        assert_eq!(resolver.current().unwrap().cert, a.key.cert);
    }

    #[test]
    fn broken_files_at_startup_are_an_error() {
        let a = selfsigned::generate("a.test", YEAR).unwrap();
        let files = files_with(&a);
        fs::write(&files.key, "").unwrap();
        let resolver = Arc::new(CertResolver::new());
        let err = FilesSource::open(&files.cert, &files.key, Arc::clone(&resolver)).unwrap_err();
        assert!(err.to_string().contains("privkey.pem"), "{err}");
        assert!(resolver.current().is_none());
    }
}
