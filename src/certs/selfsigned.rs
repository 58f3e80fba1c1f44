//! Self-signed certificates for `tls.mode = "self-signed"` and `regapp serve --dev`.
//!
//! One ECDSA P-256 certificate, valid for the hostname plus `localhost`, `127.0.0.1` and `::1`, is
//! its own trust anchor: clients trust it by installing the certificate itself as a CA file —
//! [`SelfSigned::write_ca`] writes `ca.crt`, the name skopeo's `--cert-dir` and docker's
//! `certs.d/<host:port>/` pick up. With a state directory the pair is kept
//! (`self-signed-cert.pem` 0644, `self-signed-key.pem` 0600) and reused across restarts, so clients
//! don't have to trust a new certificate every time. Neither file ends in `.key` or `.cert`, so a
//! state directory used as a `--cert-dir` is not mistaken for a client certificate pair.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair};
use rustls::sign::CertifiedKey;

use super::disk::{self, PRIVATE_DIR, PRIVATE_FILE, PUBLIC_DIR, PUBLIC_FILE};
use super::error::CertError;
use super::info::CertInfo;
use super::pem;

/// The file clients trust, in the directory given to [`SelfSigned::write_ca`].
pub const CA_FILE_NAME: &str = "ca.crt";
const STATE_CERT: &str = "self-signed-cert.pem";
const STATE_KEY: &str = "self-signed-key.pem";
/// A kept certificate with less than this left is replaced at startup.
const MIN_REMAINING: Duration = Duration::from_secs(30 * 86_400);
/// Longer requests are cut to this (and keep `SystemTime` arithmetic far from overflow).
const MAX_VALIDITY: Duration = Duration::from_secs(100 * 365 * 86_400);
/// Backdating covers clients whose clock is a little behind.
const BACKDATE: Duration = Duration::from_secs(3_600);

/// A generated (or reused) self-signed certificate, ready to install.
pub struct SelfSigned {
    pub key: Arc<CertifiedKey>,
    /// The certificate in PEM: what clients must trust.
    pub cert_pem: String,
    pub info: CertInfo,
    key_pem: String,
}

/// The names a self-signed certificate for `hostname` covers, without duplicates.
pub fn names_for(hostname: &str) -> Vec<String> {
    let mut names = vec![hostname.to_owned()];
    for local in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(local)) {
            names.push(local.to_owned());
        }
    }
    names
}

/// A new certificate for [`names_for`]`(hostname)`, valid from now (backdated an hour) for `valid_for`.
pub fn generate(hostname: &str, valid_for: Duration) -> Result<SelfSigned, CertError> {
    let names = names_for(hostname);
    let failed = |source| CertError::Generate {
        names: names.clone(),
        source,
    };
    let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let mut params = CertificateParams::new(names.clone()).map_err(failed)?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, hostname);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "regapp self-signed");
    let now = SystemTime::now();
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + valid_for.min(MAX_VALIDITY)).into();
    // No keyUsage extension: OpenSSL refuses a self-signed certificate as its own issuer when
    // keyUsage is present without keyCertSign, and webpki and Go need none for a server.
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key_pair).map_err(failed)?;
    from_pem(cert.pem(), key_pair.serialize_pem(), Path::new("generated"))
}

/// The certificate kept in `state_dir` if it is self-signed, covers [`names_for`]`(hostname)`,
/// matches its key and has at least 30 days left; otherwise a new one, written there first.
pub fn load_or_generate(
    hostname: &str,
    state_dir: &Path,
    valid_for: Duration,
) -> Result<SelfSigned, CertError> {
    let cert_path = state_dir.join(STATE_CERT);
    let key_path = state_dir.join(STATE_KEY);
    match kept(hostname, &cert_path, &key_path) {
        Ok(Some(kept)) => {
            tracing::info!(
                cert = %cert_path.display(),
                sha256 = %kept.info.sha256_fingerprint,
                "reusing the self-signed certificate"
            );
            return Ok(kept);
        }
        Ok(None) => {}
        Err(reason) => {
            tracing::info!(
                cert = %cert_path.display(),
                %reason,
                "replacing the kept self-signed certificate"
            )
        }
    }
    let fresh = generate(hostname, valid_for)?;
    disk::ensure_dir(state_dir, PRIVATE_DIR)?;
    disk::write_atomic(&key_path, fresh.key_pem.as_bytes(), PRIVATE_FILE)?;
    disk::write_atomic(&cert_path, fresh.cert_pem.as_bytes(), PUBLIC_FILE)?;
    tracing::info!(
        cert = %cert_path.display(),
        sha256 = %fresh.info.sha256_fingerprint,
        "generated a self-signed certificate; clients must trust it anew"
    );
    Ok(fresh)
}

impl SelfSigned {
    /// The private key in PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Writes the certificate as `dir/ca.crt` (0644; `dir` created 0755 if missing) and returns
    /// that path. Point `skopeo --cert-dir`, `/etc/docker/certs.d/<host:port>/` or
    /// `/etc/containers/certs.d/<host:port>/` at `dir`, or `curl --cacert` at the file.
    pub fn write_ca(&self, dir: &Path) -> Result<PathBuf, CertError> {
        disk::ensure_dir(dir, PUBLIC_DIR)?;
        let path = dir.join(CA_FILE_NAME);
        disk::write_atomic(&path, self.cert_pem.as_bytes(), PUBLIC_FILE)?;
        Ok(path)
    }
}

impl fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfSigned")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// `Ok(None)` when nothing is kept; `Err(why)` when what is kept can't be reused.
fn kept(hostname: &str, cert_path: &Path, key_path: &Path) -> Result<Option<SelfSigned>, String> {
    if !cert_path.exists() {
        return Ok(None);
    }
    let read =
        |path: &Path| fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
    let (cert_pem, key_pem) = (read(cert_path)?, read(key_path)?);
    let kept = from_pem(cert_pem, key_pem, cert_path).map_err(|e| e.to_string())?;
    let info = &kept.info;
    if !info.self_signed {
        return Err("it is not self-signed".into());
    }
    if let Some(missing) = names_for(hostname).iter().find(|n| !info.covers(n)) {
        return Err(format!("it does not cover {missing}"));
    }
    if info.remaining(SystemTime::now()) < MIN_REMAINING {
        return Err("it expires within 30 days".into());
    }
    Ok(Some(kept))
}

fn from_pem(cert_pem: String, key_pem: String, origin: &Path) -> Result<SelfSigned, CertError> {
    let key = pem::parse(cert_pem.as_bytes(), origin, key_pem.as_bytes(), origin)?;
    // `pem::parse` refuses an empty chain, so the leaf exists.
    let info = CertInfo::from_der(&key.cert[0]).map_err(|source| CertError::BadCertificate {
        path: origin.to_owned(),
        source,
    })?;
    Ok(SelfSigned {
        key: Arc::new(key),
        cert_pem,
        info,
        key_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const YEAR: Duration = Duration::from_secs(365 * 86_400);

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn covers_the_names_and_is_self_signed() {
        let cert = generate("registry.example.com", YEAR).unwrap();
        let info = &cert.info;
        for name in ["registry.example.com", "localhost", "127.0.0.1", "::1"] {
            assert!(info.covers(name), "{name} not in {info:?}");
        }
        assert!(info.self_signed);
        assert_eq!(info.subject, info.issuer);
        let now = SystemTime::now();
        assert!(info.valid_at(now));
        assert!(info.remaining(now) > YEAR - Duration::from_secs(60));
        assert_eq!(names_for("localhost"), ["localhost", "127.0.0.1", "::1"]);
    }

    #[test]
    fn writes_a_trust_file_clients_read() {
        let dir = tempfile::tempdir().unwrap();
        let cert = generate("registry.test", YEAR).unwrap();
        let ca = cert
            .write_ca(&dir.path().join("certs.d/registry.test:8443"))
            .unwrap();
        assert!(ca.ends_with("certs.d/registry.test:8443/ca.crt"));
        assert_eq!(fs::read_to_string(&ca).unwrap(), cert.cert_pem);
        assert_eq!(mode(&ca), 0o644);
    }

    #[test]
    fn state_dir_keeps_the_certificate_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("self-signed");
        let first = load_or_generate("registry.test", &state, YEAR).unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join(STATE_KEY)), 0o600);
        assert_eq!(mode(&state.join(STATE_CERT)), 0o644);

        let again = load_or_generate("registry.test", &state, YEAR).unwrap();
        assert_eq!(again.cert_pem, first.cert_pem);

        // Another hostname, or a damaged key, means a new certificate.
        let other = load_or_generate("other.test", &state, YEAR).unwrap();
        assert_ne!(other.cert_pem, first.cert_pem);
        assert!(other.info.covers("other.test"));
        fs::write(state.join(STATE_KEY), "garbage").unwrap();
        let repaired = load_or_generate("other.test", &state, YEAR).unwrap();
        assert_ne!(repaired.cert_pem, other.cert_pem);
    }

    #[test]
    fn nearly_expired_kept_certificate_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let short = load_or_generate("registry.test", dir.path(), Duration::from_secs(86_400));
        let renewed = load_or_generate("registry.test", dir.path(), YEAR).unwrap();
        assert_ne!(short.unwrap().cert_pem, renewed.cert_pem);
    }
}
