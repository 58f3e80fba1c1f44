//! The client side of the edge benchmark: a rustls (ring) connector that trusts one CA file,
//! and how a client reaches a server ([`Access`]: its CA, its Basic Auth credentials).

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use http::HeaderValue;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::BenchResult;

/// How a client reaches a server: plain HTTP without auth, or TLS trusting `ca` with Basic Auth.
#[derive(Clone, Default)]
pub struct Access {
    /// A PEM file with the certificate to trust (`None`: plain HTTP only).
    pub ca: Option<PathBuf>,
    /// User and password sent as `Authorization: Basic` on every request, as docker does.
    pub basic: Option<(String, String)>,
}

impl Access {
    /// The `Authorization` header value, if any.
    pub fn authorization(&self) -> BenchResult<Option<HeaderValue>> {
        let Some((user, password)) = &self.basic else {
            return Ok(None);
        };
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Ok(Some(HeaderValue::from_str(&format!("Basic {token}"))?))
    }

    /// A connector for `http://` and `https://` URLs trusting only `ca`: HTTP/1.1 only (one
    /// connection per concurrent worker, as on plain HTTP), or with `http2` offering h2 and
    /// HTTP/1.1 by ALPN.
    pub fn connector(&self, http2: bool) -> BenchResult<HttpsConnector<HttpConnector>> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = &self.ca {
            for cert in CertificateDer::pem_file_iter(ca)? {
                roots.add(cert?)?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http();
        Ok(if http2 {
            builder.enable_all_versions().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        })
    }
}
