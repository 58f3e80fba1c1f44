//! The certificate part's errors: one enum, every variant naming the file (or the thing) at fault.
//!
//! Messages are written for an operator reading a startup failure or a reload warning, so they
//! say which file and what to do; the cause stays reachable through `source()`.

use std::io;
use std::path::PathBuf;

/// A certificate or key that could not be loaded, generated, written or watched.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not valid PEM: {source}", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{}: no certificate found (expected PEM blocks \"BEGIN CERTIFICATE\", the server's certificate first)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no private key found (expected an unencrypted \"BEGIN PRIVATE KEY\", \"BEGIN EC PRIVATE KEY\" or \"BEGIN RSA PRIVATE KEY\" block)", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: unsupported private key (ECDSA P-256/P-384, RSA and Ed25519 are supported): {source}", path.display())]
    UnsupportedKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{}: the first certificate is not valid: {source}", path.display())]
    BadCertificate {
        path: PathBuf,
        #[source]
        source: X509Error,
    },
    #[error(
        "{}: this key does not belong to the first certificate in {} (the server's own certificate must come first, then its chain)",
        key_path.display(),
        cert_path.display()
    )]
    KeyMismatch {
        cert_path: PathBuf,
        key_path: PathBuf,
    },
    #[error("certificate to install: {0}")]
    Unparsable(#[from] X509Error),
    #[error("generating a self-signed certificate for {names:?}: {source}")]
    Generate {
        names: Vec<String>,
        #[source]
        source: rcgen::Error,
    },
}

/// A DER certificate that is not X.509 as rustls and x509-parser read it.
#[derive(Debug, thiserror::Error)]
#[error("not a valid X.509 certificate: {0}")]
pub struct X509Error(pub(crate) String);
