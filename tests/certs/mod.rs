//! Certificates as a TLS client sees them: real rustls handshakes (client and server connections
//! joined in memory) against a server whose certificate comes from `regapp::certs`.
//!
//! Protects: files mode swaps the certificate for new handshakes without touching established
//! connections, whether the files are replaced by rename and reloaded (SIGHUP's path) or picked
//! up by the watcher; a broken file keeps the certificate in use; an empty resolver refuses.

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regapp::certs::{selfsigned, CertResolver, FilesSource, Reloaded, SelfSigned};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
    SupportedProtocolVersion,
};

const NAME: &str = "registry.test";
const YEAR: Duration = Duration::from_secs(365 * 86_400);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(resolver: &Arc<CertResolver>) -> Arc<ServerConfig> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    Arc::new(config)
}

/// A client trusting exactly `trusted`, speaking only `version`.
fn client_config(
    trusted: &[&SelfSigned],
    version: &'static SupportedProtocolVersion,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots
            .add(cert.key.cert[0].clone())
            .expect("a generated certificate is a valid anchor");
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .expect("ring supports the version")
        .with_root_certificates(roots)
        .with_no_client_auth();
    // A resumed session presents no certificate and reports the one from the session it
    // resumes: every handshake here must be a full one to show which certificate is served.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// An established TLS connection, both ends in this process.
struct Session {
    client: Connection,
    server: Connection,
}

impl Session {
    fn connect(
        client: &Arc<ClientConfig>,
        server: &Arc<ServerConfig>,
    ) -> Result<Session, rustls::Error> {
        let name = ServerName::try_from(NAME).expect("a valid DNS name");
        let mut session = Session {
            client: ClientConnection::new(client.clone(), name)?.into(),
            server: ServerConnection::new(server.clone())?.into(),
        };
        for _ in 0..10 {
            if !session.client.is_handshaking() && !session.server.is_handshaking() {
                return Ok(session);
            }
            transfer(&mut session.client, &mut session.server)?;
            transfer(&mut session.server, &mut session.client)?;
        }
        Err(rustls::Error::General("handshake did not finish".into()))
    }

    fn presented(&self) -> CertificateDer<'static> {
        let chain = self.client.peer_certificates().expect("handshake done");
        chain[0].clone()
    }

    /// Sends `message` client → server and back; returns what the client read.
    fn echo(&mut self, message: &[u8]) -> Vec<u8> {
        self.client
            .writer()
            .write_all(message)
            .expect("plaintext buffered");
        transfer(&mut self.client, &mut self.server).expect("client → server");
        let mut received = vec![0; message.len()];
        self.server
            .reader()
            .read_exact(&mut received)
            .expect("server reads");
        self.server
            .writer()
            .write_all(&received)
            .expect("plaintext buffered");
        transfer(&mut self.server, &mut self.client).expect("server → client");
        let mut back = vec![0; message.len()];
        self.client
            .reader()
            .read_exact(&mut back)
            .expect("client reads");
        back
    }
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

struct CertFiles {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl CertFiles {
    fn new(pair: &SelfSigned) -> CertFiles {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = CertFiles {
            cert: dir.path().join("fullchain.pem"),
            key: dir.path().join("privkey.pem"),
            _dir: dir,
        };
        fs::write(&files.cert, &pair.cert_pem).expect("write cert");
        fs::write(&files.key, pair.key_pem()).expect("write key");
        files
    }

    /// Replaces both files by rename, certificate first, as certbot and editors do.
    fn replace_by_rename(&self, pair: &SelfSigned) {
        for (path, content) in [
            (&self.cert, pair.cert_pem.as_str()),
            (&self.key, pair.key_pem()),
        ] {
            let temp = path.with_extension("new");
            fs::write(&temp, content).expect("write temp");
            fs::rename(&temp, path).expect("rename over");
        }
    }
}

fn generate() -> SelfSigned {
    selfsigned::generate(NAME, YEAR).expect("generate a certificate")
}

fn leaf(pair: &SelfSigned) -> &CertificateDer<'static> {
    &pair.key.cert[0]
}

#[test]
fn files_swap_is_seen_by_new_handshakes_only() {
    let (a, b) = (generate(), generate());
    let files = CertFiles::new(&a);
    let resolver = Arc::new(CertResolver::new());
    let source = FilesSource::open(&files.cert, &files.key, Arc::clone(&resolver)).expect("open");
    let server = server_config(&resolver);

    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let session = Session::connect(&client_config(&[&a], version), &server).expect("trusts A");
        assert_eq!(&session.presented(), leaf(&a), "{version:?}");
    }
    let trusts_a = client_config(&[&a], &rustls::version::TLS13);
    let trusts_both = client_config(&[&a, &b], &rustls::version::TLS13);
    let mut established = Session::connect(&trusts_both, &server).expect("handshake with A");
    assert_eq!(&established.presented(), leaf(&a));

    // Replace the files by rename and reload, as SIGHUP does.
    files.replace_by_rename(&b);
    assert!(matches!(source.reload(), Ok(Reloaded::Installed(_))));
    let fresh = Session::connect(&trusts_both, &server).expect("handshake with B");
    assert_eq!(&fresh.presented(), leaf(&b));
    assert!(
        Session::connect(&trusts_a, &server).is_err(),
        "B is not trusted by an A-only client"
    );
    // The connection made before the swap still works, on A's session.
    assert_eq!(established.echo(b"still here"), b"still here");
    assert_eq!(&established.presented(), leaf(&a));

    // A broken certificate written over in place: B stays.
    fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").expect("overwrite");
    let err = source.reload().expect_err("broken file refused");
    assert!(err.to_string().contains("fullchain.pem"), "{err}");
    let after = Session::connect(&trusts_both, &server).expect("still B");
    assert_eq!(&after.presented(), leaf(&b));
}

#[test]
fn watcher_picks_up_renamed_files() {
    let (a, b) = (generate(), generate());
    let files = CertFiles::new(&a);
    let resolver = Arc::new(CertResolver::new());
    let source =
        Arc::new(FilesSource::open(&files.cert, &files.key, Arc::clone(&resolver)).expect("open"));
    let guard = source.watch(Duration::from_millis(100)).expect("watch");
    let server = server_config(&resolver);
    let trusts_both = client_config(&[&a, &b], &rustls::version::TLS13);

    files.replace_by_rename(&b);
    let swapped = wait_until(Duration::from_secs(5), || {
        let session = Session::connect(&trusts_both, &server).expect("handshake");
        &session.presented() == leaf(&b)
    });
    assert!(swapped, "the watcher did not install B within 5 s");

    // After the guard is dropped, changes are no longer picked up.
    drop(guard);
    files.replace_by_rename(&a);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(&resolver.current().expect("installed").cert[0], leaf(&b));
}

#[test]
fn empty_resolver_refuses_handshakes() {
    let a = generate();
    let resolver = Arc::new(CertResolver::new());
    let result = Session::connect(
        &client_config(&[&a], &rustls::version::TLS13),
        &server_config(&resolver),
    );
    assert!(result.is_err());
    resolver.install(Arc::clone(&a.key)).expect("install");
    let session = Session::connect(
        &client_config(&[&a], &rustls::version::TLS13),
        &server_config(&resolver),
    );
    assert_eq!(&session.expect("handshake").presented(), leaf(&a));
}

#[test]
fn client_trusting_the_written_ca_file_accepts_the_self_signed_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let pair = selfsigned::load_or_generate(NAME, &state, YEAR).expect("generate");
    let ca = pair
        .write_ca(&dir.path().join("certs.d"))
        .expect("write ca.crt");
    let pem = fs::read(&ca).expect("read ca.crt");
    let mut roots = RootCertStore::empty();
    for cert in regapp::certs::pem::certificates(&pem, &ca).expect("ca.crt parses") {
        roots.add(cert).expect("a valid anchor");
    }
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("defaults")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let resolver = Arc::new(CertResolver::new());
    let info = resolver.install(Arc::clone(&pair.key)).expect("install");
    assert!(info.self_signed, "the edge must not send HSTS for this one");
    let session = Session::connect(&Arc::new(client), &server_config(&resolver));
    assert_eq!(&session.expect("handshake").presented(), leaf(&pair));

    // A restart reuses it, so clients keep trusting the same file.
    let again = selfsigned::load_or_generate(NAME, &state, YEAR).expect("reuse");
    assert_eq!(again.cert_pem, pair.cert_pem);
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
