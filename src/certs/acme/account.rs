//! The ACME account: loaded from the state directory when one exists for this directory URL,
//! otherwise created once (with External Account Binding when configured) and stored.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{Account, AccountBuilder, BodyWrapper, ExternalAccountKey, NewAccount};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::error::AcmeError;
use super::kept::Kept;
use super::AcmeOptions;

/// Makes the HTTP side of an account: the system's roots, a private CA's root, or (in tests)
/// canned answers through `Account::builder_with_http`.
pub type Connector = Arc<dyn Fn() -> Result<AccountBuilder, instant_acme::Error> + Send + Sync>;

/// The connector for real CAs: trusts the roots in `ca_root` alone when given, else the
/// platform's. Unlike instant-acme's default client it sets TCP_NODELAY: with Nagle's algorithm
/// every ACME request (headers, then the JWS body) waited for the CA's delayed ACK, ~40 ms each,
/// which made one order take 0.5 s against a local CA instead of ~0.1 s.
pub fn https_connector(ca_root: Option<PathBuf>) -> Connector {
    Arc::new(move || {
        let tls = match &ca_root {
            Some(root) => HttpsConnectorBuilder::new().with_tls_config(trusting(root)?),
            None => HttpsConnectorBuilder::new()
                .try_with_platform_verifier()
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?,
        };
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        let https = tls
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let client: Client<_, BodyWrapper<Bytes>> =
            Client::builder(TokioExecutor::new()).build(https);
        Ok(Account::builder_with_http(Box::new(client)))
    })
}

/// A TLS client configuration trusting every certificate in the PEM file `root`, and nothing else.
fn trusting(root: &Path) -> Result<rustls::ClientConfig, instant_acme::Error> {
    let error = |message: String| {
        instant_acme::Error::Other(format!("acme.ca_root {}: {message}", root.display()).into())
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(root).map_err(|e| error(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| error(e.to_string()))?;
        roots.add(cert).map_err(|e| error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(error("no certificate in the file".to_owned()));
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| error(e.to_string()))
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}

/// The stored account for `options.directory`, or a new one (stored before it is used).
pub async fn load_or_create(
    options: &AcmeOptions,
    kept: &Kept,
    connector: &Connector,
) -> Result<Account, AcmeError> {
    let builder =
        || connector().map_err(|e| AcmeError::from_acme("setting up the HTTPS client", e));
    if let Some(credentials) = kept.load_account().await? {
        return from_stored(builder()?, credentials).await;
    }
    let contact: Vec<&str> = options.contact.iter().map(String::as_str).collect();
    let eab = options
        .eab
        .as_ref()
        .map(|(kid, key)| ExternalAccountKey::new(kid.clone(), key));
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            options.directory.clone(),
            eab.as_ref(),
        )
        .await
        .map_err(|e| AcmeError::from_account_creation(e, eab.is_some()))?;
    if let Some(theirs) = kept.save_account(&credentials).await? {
        tracing::info!("another node stored an ACME account first; using that one");
        return from_stored(builder()?, theirs).await;
    }
    tracing::info!(
        account = account.id(),
        directory = %options.directory,
        "created an ACME account"
    );
    Ok(account)
}

async fn from_stored(
    builder: AccountBuilder,
    credentials: instant_acme::AccountCredentials,
) -> Result<Account, AcmeError> {
    let account = builder
        .from_credentials(credentials)
        .await
        .map_err(|e| AcmeError::from_acme("reading the CA's directory", e))?;
    tracing::debug!(account = account.id(), "using the stored ACME account");
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_root_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let message = trusting(&missing).unwrap_err().to_string();
        assert!(
            message.contains("acme.ca_root") && message.contains("missing.pem"),
            "{message}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no PEM here\n").unwrap();
        let message = trusting(&empty).unwrap_err().to_string();
        assert!(message.contains("no certificate in the file"), "{message}");
        let good = dir.path().join("root.pem");
        let cert =
            crate::certs::selfsigned::generate("ca.test", std::time::Duration::from_secs(3600))
                .unwrap();
        std::fs::write(&good, &cert.cert_pem).unwrap();
        assert!(trusting(&good).is_ok());
    }
}
