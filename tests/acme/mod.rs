//! ACME against a real CA: Debian's `pebble` and `pebble-challtestsrv` on free loopback ports.
//! pebble validates HTTP-01 by fetching from regapp's :80 listener (its `httpPort` is regapp's
//! `http_listen` port; every name resolves to 127.0.0.1 through challtestsrv's DNS). The served
//! certificate is checked with a rustls client that trusts only pebble's root, as pebble's
//! management API hands it out.
//!
//! Needs the Debian packages `pebble`, `openssl` and `curl` (tests/run-all.sh installs them).

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};

use crate::edge::{free_port, htpasswd, PASSWORD, USER};
use crate::util::process::ServerProcess;

mod bench;
mod cluster;
mod flows;

/// pebble and its DNS server, with a CA of our own for pebble's HTTPS listener.
pub struct Pebble {
    pub dir: tempfile::TempDir,
    pebble: ServerProcess,
    challtestsrv: ServerProcess,
    /// The ACME directory URL.
    pub directory: String,
    /// The root pebble's own HTTPS listener uses (regapp's `acme.ca_root`, certbot's bundle).
    pub listener_ca: PathBuf,
    management: u16,
}

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (apt-get install {program}): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The EAB key pebble accepts for `kid-1` in [`Pebble::start_with_eab`] (base64url).
pub const EAB_KID: &str = "kid-1";
pub const EAB_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

impl Pebble {
    /// pebble validating HTTP-01 on `http_port`.
    pub fn start(http_port: u16) -> Pebble {
        Pebble::start_with(http_port, false, "127.0.0.1")
    }

    /// pebble that requires External Account Binding (`EAB_KID` / `EAB_KEY`).
    pub fn start_with_eab(http_port: u16) -> Pebble {
        Pebble::start_with(http_port, true, "127.0.0.1")
    }

    /// pebble whose DNS resolves no name at all: every name "does not resolve to this host".
    pub fn start_without_dns_answers(http_port: u16) -> Pebble {
        Pebble::start_with(http_port, false, "")
    }

    fn start_with(http_port: u16, eab: bool, resolve_to: &str) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        let (ca_key, ca_pem) = (path("ca.key"), path("ca.pem"));
        ca.extend(["-days", "2", "-subj", "/CN=pebble listener test CA"]);
        ca.extend(["-keyout", &ca_key, "-out", &ca_pem]);
        run("openssl", &ca);
        let (key, csr, cert, ext) = (
            path("pebble.key"),
            path("pebble.csr"),
            path("pebble.pem"),
            path("ext"),
        );
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-subj", "/CN=localhost", "-keyout", &key, "-out", &csr]);
        run("openssl", &req);
        std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &cert,
            ],
        );

        let (dns, dns_management) = (free_port(), free_port());
        let mut command = Command::new("pebble-challtestsrv");
        command.args([
            "-dns01",
            &format!("127.0.0.1:{dns}"),
            "-defaultIPv4",
            resolve_to,
            "-defaultIPv6",
            "",
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &format!("127.0.0.1:{dns_management}"),
        ]);
        let (mut challtestsrv, found) =
            ServerProcess::spawn("pebble-challtestsrv", "pebble", command, |line| {
                line.contains("Starting management server")
                    .then(|| line.to_owned())
            });
        challtestsrv.wait_for_line(&found, "its management line");

        let (listen, management) = (free_port(), free_port());
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": eab,
        }});
        if eab {
            config["pebble"]["externalAccountMACKeys"] = serde_json::json!({ EAB_KID: EAB_KEY });
        }
        let config_file = path("pebble.json");
        std::fs::write(&config_file, config.to_string()).unwrap();
        let mut command = Command::new("pebble");
        command
            .args([
                "-config",
                &config_file,
                "-dnsserver",
                &format!("127.0.0.1:{dns}"),
            ])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0");
        let (mut pebble, found) = ServerProcess::spawn("pebble", "pebble", command, |line| {
            line.split_once("ACME directory available at: ")
                .map(|(_, url)| url.trim().to_owned())
        });
        let directory = pebble.wait_for_line(&found, "its directory URL");
        Pebble {
            listener_ca: PathBuf::from(ca_pem),
            dir,
            pebble,
            challtestsrv,
            directory,
            management,
        }
    }

    /// The root of the chains pebble issues, from its management API (`/roots/0`), as PEM.
    pub fn issuing_root(&self) -> String {
        let out = run(
            "curl",
            &[
                "-sf",
                "--cacert",
                self.listener_ca.to_str().unwrap(),
                &format!("https://127.0.0.1:{}/roots/0", self.management),
            ],
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn stop(&mut self) {
        self.pebble.stop();
        self.challtestsrv.stop();
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A regapp with `tls.mode = "acme"` against a pebble; the state survives restarts.
pub struct AcmeRegapp {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub https_port: u16,
    pub http_port: u16,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub metrics_port: u16,
    pub process: Option<ServerProcess>,
}

impl AcmeRegapp {
    /// Writes the configuration (ports chosen here; `http_port` is the one pebble validates
    /// against) without starting anything. `extra_acme` is appended to `[acme]`.
    pub fn configure(http_port: u16, directory: &str, ca_root: &Path, extra_acme: &str) -> Self {
        Self::configure_with(http_port, directory, ca_root, extra_acme, |_| String::new())
    }

    /// Like [`AcmeRegapp::configure`], the registry (and so the certificate) in `prefix` of the
    /// tests' SeaweedFS bucket, as the node named `node` of several.
    pub fn configure_on_bucket(
        http_port: u16,
        directory: &str,
        ca_root: &Path,
        prefix: &str,
        node: &str,
    ) -> Self {
        use crate::util::seaweed::{Seaweed, ACCESS_KEY, BUCKET, SECRET_KEY};
        Self::configure_with(http_port, directory, ca_root, "", |dir| {
            let credentials = dir.join("s3-credentials");
            std::fs::write(
                &credentials,
                format!(
                    "[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
                ),
            )
            .unwrap();
            format!(
                "[storage.s3]\nbucket = {BUCKET:?}\nendpoint = {:?}\nprefix = {prefix:?}\n\
                 credentials_file = {credentials:?}\n\n[cluster]\nnode = {node:?}\n",
                Seaweed::shared().endpoint()
            )
        })
    }

    /// `storage` writes what the config needs beside `dir` and returns its `[storage.s3]` and
    /// `[cluster]` sections (empty: the registry on disk).
    fn configure_with(
        http_port: u16,
        directory: &str,
        ca_root: &Path,
        extra_acme: &str,
        storage: impl FnOnce(&Path) -> String,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sections = storage(dir.path());
        let backend = if sections.is_empty() {
            ""
        } else {
            "backend = \"s3\"\n"
        };
        let htpasswd_file = dir.path().join("htpasswd");
        htpasswd(&[
            "-B",
            "-C",
            "4",
            "-b",
            "-c",
            htpasswd_file.to_str().unwrap(),
            USER,
            PASSWORD,
        ]);
        let https_port = free_port();
        let metrics_port = free_port();
        let config = format!(
            "[storage]\nroot = {root:?}\n{backend}\n{sections}\n[engine]\nlisten = \"127.0.0.1:{engine}\"\n\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n\
             [edge]\nhostname = \"localhost\"\nhttps_listen = \"127.0.0.1:{https_port}\"\n\
             http_listen = \"127.0.0.1:{http_port}\"\nshutdown_grace = \"10s\"\n\n\
             [tls]\nmode = \"acme\"\n\n\
             [acme]\ndirectory = {directory:?}\nca_root = {ca_root:?}\n\
             contact = [\"mailto:ops@example.com\"]\nstate_dir = {state:?}\n{extra_acme}\n\n\
             [auth]\nhtpasswd = {htpasswd_file:?}\nrealm = \"test\"\n",
            root = dir.path().join("data"),
            engine = free_port(),
            state = dir.path().join("acme"),
        );
        let config_file = dir.path().join("regapp.toml");
        std::fs::write(&config_file, config).unwrap();
        AcmeRegapp {
            dir,
            config: config_file,
            https_port,
            http_port,
            metrics_port,
            process: None,
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("acme")
    }

    /// Spawns regapp (returns when it printed its listening line; :443 may not serve yet).
    pub fn start(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_regapp"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("REGAPP_LOG", "info");
        let (mut process, found) = ServerProcess::spawn("regapp", "regapp", command, |line| {
            line.starts_with("regapp listening on https://")
                .then(|| line.to_owned())
        });
        process.wait_for_line(&found, "its listening line");
        self.process = Some(process);
    }

    pub fn stop(&mut self) {
        if let Some(process) = &mut self.process {
            process.stop();
        }
    }

    pub fn log(&self) -> String {
        self.process.as_ref().map(|p| p.log()).unwrap_or_default()
    }

    /// Runs `regapp cert <args> --config <this config>`.
    pub fn cert(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_regapp"))
            .arg("cert")
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.https_port)
    }
}

impl Drop for AcmeRegapp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The leaf certificate a TLS handshake with `127.0.0.1:port` (SNI `localhost`) presents, if the
/// handshake succeeds with `root_pem` as the only trusted root.
pub fn served_leaf(port: u16, root_pem: &str) -> Option<CertificateDer<'static>> {
    let config = crate::util::tls::client_trusting(root_pem.as_bytes());
    let name = ServerName::try_from("localhost").unwrap();
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    while connection.is_handshaking() {
        connection.complete_io(&mut tcp).ok()?;
    }
    let _ = connection.writer().flush();
    connection.peer_certificates()?.first().cloned()
}

pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(cert.as_ref()))
}

/// Polls until :443 completes a handshake trusted by `root_pem`; returns the leaf and how long
/// it took from `since`.
pub fn wait_until_served(
    regapp: &AcmeRegapp,
    root_pem: &str,
    since: Instant,
    timeout: Duration,
) -> (CertificateDer<'static>, Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(leaf) = served_leaf(regapp.https_port, root_pem) {
            return (leaf, since.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "no certificate served within {timeout:?}; regapp said:\n{}",
            regapp.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
