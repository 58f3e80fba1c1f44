//! The one question the TLS server asks: "which certificate for this handshake?"
//!
//! `CertResolver` holds the certificate in use behind an `ArcSwapOption`: answering a handshake is
//! one atomic load — no I/O, no lock, no parsing. Whoever obtains a certificate (files mode, the
//! self-signed generator, later ACME) calls [`CertResolver::install`]; new handshakes get it at once,
//! connections already open keep the key they negotiated. With nothing installed the handshake is
//! refused, which is what :443 does while a first ACME order is pending.
//!
//! One certificate for every SNI name: regapp serves one hostname.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::error::CertError;
use super::info::CertInfo;

/// A certificate in use and what it says about itself, swapped together so the two never disagree.
struct Active {
    key: Arc<CertifiedKey>,
    info: Arc<CertInfo>,
}

/// The swappable certificate source handed to the TLS listener (`Arc<dyn ResolvesServerCert>`).
#[derive(Default)]
pub struct CertResolver {
    active: ArcSwapOption<Active>,
}

impl CertResolver {
    /// A resolver with nothing installed: handshakes fail until [`install`](Self::install).
    pub fn new() -> CertResolver {
        CertResolver::default()
    }

    /// Makes `key` the certificate for every new handshake and returns what its leaf says.
    ///
    /// Refused (and nothing changes) when the chain is empty or its first certificate cannot be
    /// read as X.509. The key is not checked against the leaf here: the loaders do that
    /// ([`super::pem`], [`super::selfsigned`]).
    pub fn install(&self, key: Arc<CertifiedKey>) -> Result<Arc<CertInfo>, CertError> {
        let leaf = key
            .end_entity_cert()
            .map_err(|_| super::error::X509Error("the certificate chain is empty".into()))?;
        let info = Arc::new(CertInfo::from_der(leaf)?);
        self.active.store(Some(Arc::new(Active {
            key,
            info: Arc::clone(&info),
        })));
        Ok(info)
    }

    /// The certificate new handshakes get, if any.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.active.load().as_ref().map(|a| Arc::clone(&a.key))
    }

    /// What the current certificate says (names, dates, self-signed), if one is installed.
    /// Cheap enough to call per request (one atomic load and an `Arc` clone).
    pub fn info(&self) -> Option<Arc<CertInfo>> {
        self.active.load().as_ref().map(|a| Arc::clone(&a.info))
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.info() {
            Some(info) => f
                .debug_struct("CertResolver")
                .field("subject", &info.subject)
                .field("sha256", &info.sha256_fingerprint)
                .finish(),
            None => f.write_str("CertResolver(empty)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::selfsigned;
    use crate::certs::testutil::{handshake, roots};
    use std::time::Duration;

    const YEAR: Duration = Duration::from_secs(365 * 86_400);

    #[test]
    fn empty_resolver_refuses_the_handshake() {
        let resolver = Arc::new(CertResolver::new());
        let a = selfsigned::generate("registry.test", YEAR).unwrap();
        assert!(resolver.current().is_none() && resolver.info().is_none());
        assert!(handshake(&resolver, &roots(&[&a]), "registry.test").is_err());
    }

    #[test]
    fn install_is_seen_by_the_next_handshake() {
        let resolver = Arc::new(CertResolver::new());
        let a = selfsigned::generate("registry.test", YEAR).unwrap();
        let b = selfsigned::generate("registry.test", YEAR).unwrap();
        let trust = roots(&[&a, &b]);

        let info = resolver.install(Arc::clone(&a.key)).unwrap();
        assert!(info.covers("registry.test"));
        assert_eq!(
            handshake(&resolver, &trust, "registry.test").unwrap(),
            a.key.cert[0]
        );

        resolver.install(Arc::clone(&b.key)).unwrap();
        assert!(Arc::ptr_eq(&resolver.current().unwrap(), &b.key));
        assert_eq!(
            handshake(&resolver, &trust, "registry.test").unwrap(),
            b.key.cert[0]
        );
        assert_eq!(
            resolver.info().unwrap().sha256_fingerprint,
            CertInfo::from_der(&b.key.cert[0])
                .unwrap()
                .sha256_fingerprint
        );
    }

    #[test]
    fn empty_chain_is_refused_and_keeps_the_old_one() {
        let resolver = CertResolver::new();
        let a = selfsigned::generate("registry.test", YEAR).unwrap();
        resolver.install(Arc::clone(&a.key)).unwrap();
        let empty = CertifiedKey::new(Vec::new(), Arc::clone(&a.key.key));
        assert!(resolver.install(Arc::new(empty)).is_err());
        assert!(Arc::ptr_eq(&resolver.current().unwrap(), &a.key));
    }
}
