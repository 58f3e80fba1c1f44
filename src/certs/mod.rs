//! Certificates: which certificate the TLS server presents, and where it comes from.
//!
//! The server asks one question — "which certificate for this handshake?" — and
//! [`CertResolver`] answers it from memory. Everything else here fills the resolver:
//!
//! | file | owns |
//! |---|---|
//! | `resolver.rs` | [`CertResolver`]: the swappable certificate (rustls `ResolvesServerCert`), no I/O |
//! | `pem.rs` | PEM chain + key → checked `CertifiedKey` (key matches the leaf), errors naming the file |
//! | `files.rs` | `tls.mode = "files"`: [`FilesSource`] loads, reloads (on change or SIGHUP) and keeps the old one on failure |
//! | (`crate::plumbing::watch`) | the debounced directory watch behind [`FilesSource::watch`], shared with `auth` |
//! | `selfsigned.rs` | `tls.mode = "self-signed"`: generate or reuse one, write `ca.crt` for clients |
//! | `info.rs` | [`CertInfo`]: names, issuer, dates, fingerprint, self-signed — from the DER |
//! | `disk.rs` | temp file + fsync + rename with modes (0600 keys, 0644 certificates) |
//! | `error.rs` | [`CertError`] |
//!
//! Architecture Invariant: this module knows rustls, rcgen, x509-parser and notify, and nothing of
//! pingora, the edge or the registry. SIGHUP, listeners and HSTS are the edge's business; it
//! calls [`FilesSource::reload`] and reads [`CertResolver::info`].

pub mod acme;
pub mod disk;
mod error;
mod files;
mod info;
pub mod pem;
mod resolver;
pub mod selfsigned;
#[cfg(test)]
mod testutil;

use std::path::PathBuf;

pub use crate::plumbing::watch::WatchGuard;
pub use error::{CertError, X509Error};
pub use files::{FilesSource, Reloaded, DEFAULT_DEBOUNCE};
pub use info::CertInfo;
pub use resolver::CertResolver;
pub use selfsigned::SelfSigned;

/// Where the edge's certificate comes from (`[tls]`, with `[acme]`).
#[derive(Debug, Clone, PartialEq)]
pub enum TlsSettings {
    /// PEM files, reloaded when they change and on SIGHUP.
    Files {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
    /// A generated certificate for the hostname, localhost and 127.0.0.1, kept in `state_dir`
    /// with `ca.crt` for clients to trust.
    SelfSigned { state_dir: PathBuf },
    /// Obtained and renewed from an ACME CA over HTTP-01.
    Acme(acme::AcmeOptions),
}
