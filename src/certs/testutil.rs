//! Test helpers: a real rustls handshake between in-memory client and server connections.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
};

use super::resolver::CertResolver;
use super::selfsigned::SelfSigned;

/// A root store trusting each of `certs` (self-signed: each is its own anchor).
pub fn roots(certs: &[&SelfSigned]) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert.key.cert[0].clone()).unwrap();
    }
    Arc::new(roots)
}

/// Handshakes a client trusting `roots` for `name` with a server answering from `resolver`;
/// returns the certificate the server presented.
pub fn handshake(
    resolver: &Arc<CertResolver>,
    roots: &Arc<RootCertStore>,
    name: &str,
) -> Result<CertificateDer<'static>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(Arc::clone(roots))
        .with_no_client_auth();
    let name =
        ServerName::try_from(name.to_owned()).map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut client = Connection::from(ClientConnection::new(Arc::new(client), name)?);
    let mut server = Connection::from(ServerConnection::new(Arc::new(server))?);
    for _ in 0..10 {
        if !client.is_handshaking() && !server.is_handshaking() {
            let presented = client.peer_certificates().and_then(|c| c.first().cloned());
            return presented.ok_or(rustls::Error::NoCertificatesPresented);
        }
        transfer(&mut client, &mut server)?;
        transfer(&mut server, &mut client)?;
    }
    Err(rustls::Error::General("handshake did not finish".into()))
}

fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
    let io = |e: std::io::Error| rustls::Error::General(e.to_string());
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).map_err(io)?;
    }
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).map_err(io)?;
        to.process_new_packets()?;
    }
    Ok(())
}
