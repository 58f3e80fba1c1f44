//! Upstream registries for the pull-through-cache tests: Debian's `docker-registry` 2.8.2 on a
//! loopback port, in the three shapes a mirror meets in production — open (a local registry),
//! TLS with Basic auth (a private registry behind nginx) and token auth (Docker Hub's flow,
//! with a [`TokenIssuer`] in the test process as its realm).
//!
//! What tests read back from it: its access log, one line per request whatever the answer,
//! parsed into [`LoggedRequest`]s — that is how a test counts what a mirror fetched
//! ("exactly one GET of this blob"). An upstream can be stopped and started again on the same
//! port and storage, to test a mirror serving what it has while its upstream is down.
//!
//! It owns only the upstream side: it knows nothing of regapp, and pushes its content with its
//! own skopeo invocation (the shared [`super::Skopeo`] helper has no credentials or CA options).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;

use super::docker_registry::{self, json};
use super::process::ServerProcess;
use super::token_issuer::TokenIssuer;

/// The user [`Upstream::token_auth`]'s issuer grants every action to (anonymous gets `pull`).
pub const TOKEN_USER: &str = "upstream-user";
/// The password of [`TOKEN_USER`].
pub const TOKEN_PASSWORD: &str = "upstream-password";

/// The query parameter of the requests [`Upstream::requests`] sends to make sure the log has
/// caught up; they are left out of [`Upstream::access_log`].
const SYNC_MARK: &str = "regapp-upstream-log-sync";

/// One request as the registry's access log has it (Apache combined format on its stdout,
/// written for every request, 401s included — unlike its `response completed` lines, which
/// only requests past authentication get, and its `http.request.method=` fields, which
/// appear on several lines per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    /// Path and query as sent, e.g. `/v2/library/alpine/manifests/3?ns=docker.io`.
    pub uri: String,
    pub status: u16,
}

/// How clients authenticate to an [`Upstream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    Open,
    Basic,
    Token,
}

/// A docker-registry on `127.0.0.1:PORT`, killed on drop; see the module doc.
pub struct Upstream {
    /// `None` while stopped.
    process: Option<ServerProcess>,
    /// `127.0.0.1:PORT`: port 0 on the first start, the same port on every later one.
    host: String,
    auth: Auth,
    tls: bool,
    credentials: Option<(String, String)>,
    issuer: Option<TokenIssuer>,
    /// What earlier runs printed: logs and counts span restarts.
    earlier_logs: String,
    syncs: AtomicUsize,
    /// Config, storage root, certificate, htpasswd, skopeo's files.
    dir: TempDir,
}

impl Upstream {
    /// Plain HTTP, no authentication: anyone pulls and pushes.
    pub fn open() -> Self {
        Self::launch(Auth::Open, false, None, None)
    }

    /// HTTPS with a self-signed certificate for `127.0.0.1` and `localhost` (see
    /// [`Upstream::ca_file`]) and Basic auth for `user`/`password`, from an htpasswd file that
    /// Apache's `htpasswd -B` writes (the registry accepts only bcrypt).
    pub fn basic_tls(user: &str, password: &str) -> Self {
        Self::launch(
            Auth::Basic,
            true,
            Some((user.to_owned(), password.to_owned())),
            None,
        )
    }

    /// Plain HTTP (the token flow does not need TLS on loopback, and a mirror's TLS client is
    /// tested by [`Upstream::basic_tls`]) with `auth.token` pointing at a fresh [`TokenIssuer`]:
    /// anonymous clients get `pull` tokens, [`TOKEN_USER`]/[`TOKEN_PASSWORD`] get what they ask.
    pub fn token_auth() -> Self {
        let issuer = TokenIssuer::start(TOKEN_USER, TOKEN_PASSWORD);
        Self::launch(
            Auth::Token,
            false,
            Some((TOKEN_USER.to_owned(), TOKEN_PASSWORD.to_owned())),
            Some(issuer),
        )
    }

    fn launch(
        auth: Auth,
        tls: bool,
        credentials: Option<(String, String)>,
        issuer: Option<TokenIssuer>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir for the upstream");
        let skopeo = dir.path().join("skopeo");
        std::fs::create_dir_all(skopeo.join("registries.d")).expect("create registries.d");
        std::fs::create_dir_all(skopeo.join("tmp")).expect("create skopeo's tmpdir");
        std::fs::write(skopeo.join("auth.json"), "{}").expect("write skopeo's auth file");
        std::fs::write(skopeo.join("registries.conf"), "").expect("write registries.conf");
        if tls {
            write_certificate(dir.path());
        }
        if let (Auth::Basic, Some((user, password))) = (auth, &credentials) {
            write_htpasswd(&dir.path().join("htpasswd"), user, password);
        }
        let mut upstream = Self {
            process: None,
            host: "127.0.0.1:0".to_owned(),
            auth,
            tls,
            credentials,
            issuer,
            earlier_logs: String::new(),
            syncs: AtomicUsize::new(0),
            dir,
        };
        upstream.start();
        upstream
    }

    /// `127.0.0.1:PORT`, as in image references.
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// `http://127.0.0.1:PORT` or `https://…`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host)
    }

    /// The PEM certificate a client must trust (the server's own, self-signed); `None` on HTTP.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("tls/cert.pem"))
    }

    /// A directory holding that certificate as `ca.crt`, as skopeo's and podman's
    /// `--cert-dir` and `/etc/containers/certs.d/HOST/` want it; `None` on HTTP.
    pub fn cert_dir(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("certs.d"))
    }

    /// The user and password that may push (and pull); `None` for [`Upstream::open`].
    pub fn credentials(&self) -> Option<(String, String)> {
        self.credentials.clone()
    }

    /// The token server of [`Upstream::token_auth`]: its counts and settings.
    pub fn token_issuer(&self) -> Option<&TokenIssuer> {
        self.issuer.as_ref()
    }

    /// The storage root (filesystem driver), which survives [`Upstream::stop`].
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Stops the registry (SIGTERM) after its log has caught up; port and storage are kept
    /// for [`Upstream::start`]. Clients then get "connection refused". Idempotent.
    pub fn stop(&mut self) {
        if self.process.is_none() {
            return;
        }
        self.sync_log();
        let mut process = self.process.take().expect("checked above");
        process.stop();
        self.earlier_logs.push_str(&process.log());
    }

    /// Starts the registry again on the same port and storage (and the same certificate,
    /// htpasswd and token issuer); waits until it answers. Panics if it is running.
    pub fn start(&mut self) {
        assert!(self.process.is_none(), "the upstream is already running");
        let config = self.dir.path().join("config.yml");
        std::fs::write(&config, self.config_yaml()).expect("write the upstream's config");
        let (process, host) = docker_registry::serve(&config);
        assert!(
            self.host.ends_with(":0") || host == self.host,
            "the upstream came back on {host}, not {}",
            self.host
        );
        self.host = host;
        self.process = Some(process);
    }

    /// Everything the registry printed, over all its runs.
    pub fn log(&self) -> String {
        let mut log = self.earlier_logs.clone();
        if let Some(process) = &self.process {
            log.push_str(&process.log());
        }
        log
    }

    /// Every request the registry answered, over all its runs, in the order it logged them.
    /// Call [`Upstream::requests`] (which waits for the log to catch up) for exact counts.
    pub fn access_log(&self) -> Vec<LoggedRequest> {
        self.log()
            .lines()
            .filter_map(parse_access_line)
            .filter(|r| !r.uri.contains(SYNC_MARK))
            .collect()
    }

    /// How many `method` requests (`GET`, `HEAD` …) whose URI contains `uri_contains` the
    /// registry answered, whatever the status (a 401 challenge counts too). Exact: it first
    /// makes sure every request answered before the call is in the log.
    pub fn requests(&self, method: &str, uri_contains: &str) -> usize {
        self.matching(method, uri_contains, None)
    }

    /// Like [`Upstream::requests`], counting only answers with `status` (e.g. 200: content
    /// really served, not a 401 before the token).
    pub fn requests_with_status(&self, method: &str, uri_contains: &str, status: u16) -> usize {
        self.matching(method, uri_contains, Some(status))
    }

    /// Every request the registry answered, whatever the method, URI and status; exact, as
    /// [`Upstream::requests`].
    pub fn total_requests(&self) -> usize {
        self.sync_log();
        self.access_log().len()
    }

    /// Requests the registry answered with `status`, whatever the method and URI; exact.
    pub fn total_with_status(&self, status: u16) -> usize {
        self.sync_log();
        self.access_log()
            .iter()
            .filter(|r| r.status == status)
            .count()
    }

    fn matching(&self, method: &str, uri_contains: &str, status: Option<u16>) -> usize {
        self.sync_log();
        self.access_log()
            .iter()
            .filter(|r| r.method == method && r.uri.contains(uri_contains))
            .filter(|r| status.is_none_or(|s| r.status == s))
            .count()
    }

    /// Pushes `skopeo_src_ref` (e.g. an [`super::images::Image::reference`]) to `name_and_tag`
    /// with skopeo, with the push credentials and the CA when there are any; digests are kept
    /// (`--preserve-digests`). Returns the manifest digest.
    pub fn push(&self, skopeo_src_ref: &str, name_and_tag: &str) -> String {
        let dst = super::skopeo::docker_ref(&self.host, name_and_tag);
        self.skopeo_copy(skopeo_src_ref, &dst, "dest")
    }

    /// Copies `name_and_reference` out of the upstream to `skopeo_dst_ref` (e.g. an `oci:` or
    /// `dir:` reference) with the upstream's credentials and CA; returns the manifest digest.
    pub fn pull_to(&self, name_and_reference: &str, skopeo_dst_ref: &str) -> String {
        let src = super::skopeo::docker_ref(&self.host, name_and_reference);
        self.skopeo_copy(&src, skopeo_dst_ref, "src")
    }

    /// `skopeo copy` with this upstream on the `side` (`src` or `dest`) of the copy.
    fn skopeo_copy(&self, src: &str, dst: &str, side: &str) -> String {
        let n = self.syncs.fetch_add(1, Ordering::Relaxed);
        let skopeo = self.dir.path().join("skopeo");
        let digest_file = skopeo.join(format!("digest-{n}"));
        let mut args = vec![
            "copy".to_owned(),
            "--quiet".to_owned(),
            "--retry-times=0".to_owned(),
            "--preserve-digests".to_owned(),
            format!("--authfile={}", skopeo.join("auth.json").display()),
            format!("--digestfile={}", digest_file.display()),
        ];
        match self.cert_dir() {
            Some(dir) => args.push(format!("--{side}-cert-dir={}", dir.display())),
            // HTTP: skopeo tries https first, then falls back to plain HTTP.
            None => args.push(format!("--{side}-tls-verify=false")),
        }
        if let Some((user, password)) = &self.credentials {
            args.push(format!("--{side}-creds={user}:{password}"));
        }
        args.extend([src.to_owned(), dst.to_owned()]);
        let output = Command::new("skopeo")
            .arg("--insecure-policy")
            .arg("--command-timeout=120s")
            .arg(format!(
                "--registries.d={}",
                skopeo.join("registries.d").display()
            ))
            .arg(format!("--tmpdir={}", skopeo.join("tmp").display()))
            .args(&args)
            .env("CONTAINERS_REGISTRIES_CONF", skopeo.join("registries.conf"))
            .env_remove("REGISTRY_AUTH_FILE")
            .output()
            .expect("run skopeo (apt-get install skopeo)");
        assert!(
            output.status.success(),
            "skopeo {} failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout),
        );
        let digest = std::fs::read_to_string(&digest_file)
            .unwrap_or_else(|e| panic!("skopeo wrote no digest file for {src} -> {dst}: {e}"));
        digest.trim().to_owned()
    }

    /// Sends a marked request and waits until the access log shows it: the registry writes an
    /// access-log line after the response, and the test reads its output on another thread,
    /// so without this a count taken right after a client finished could miss that client's
    /// last request.
    fn sync_log(&self) {
        if self.process.is_none() {
            return;
        }
        let mark = format!("{SYNC_MARK}={}", self.syncs.fetch_add(1, Ordering::Relaxed));
        let path = format!("/v2/?{mark}");
        self.send_get(&path);
        super::eventually(
            Duration::from_secs(10),
            "the upstream logs a request",
            || self.log().contains(&mark),
        );
    }

    /// `GET path` over a fresh connection (TLS checked against [`Upstream::ca_file`]); the
    /// answer is read and dropped.
    fn send_get(&self, path: &str) {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host
        );
        let tcp = TcpStream::connect(&self.host)
            .unwrap_or_else(|e| panic!("connect to the upstream at {}: {e}", self.host));
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set a read timeout");
        let mut answer = Vec::new();
        match self.ca_file() {
            None => {
                let mut tcp = tcp;
                tcp.write_all(request.as_bytes())
                    .expect("send to the upstream");
                let _ = tcp.read_to_end(&mut answer);
            }
            Some(ca) => {
                let pem = std::fs::read(ca).expect("read the upstream's certificate");
                let config = Arc::new(super::tls::client_trusting(&pem));
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1")
                    .expect("an IP address is a server name");
                let connection = rustls::ClientConnection::new(config, name)
                    .expect("a rustls client connection");
                let mut tls = rustls::StreamOwned::new(connection, tcp);
                tls.write_all(request.as_bytes())
                    .expect("send to the upstream over TLS");
                // The server may close without close_notify; the answer does not matter.
                let _ = tls.read_to_end(&mut answer);
            }
        }
    }

    fn config_yaml(&self) -> String {
        let path = |name: &str| json(self.dir.path().join(name).to_str().expect("UTF-8 paths"));
        let mut yaml = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {}\n  secret: regapp-upstream-fixture\n",
            path("root"),
            self.host,
        );
        if self.tls {
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                path("tls/cert.pem"),
                path("tls/key.pem"),
            ));
        }
        match self.auth {
            Auth::Open => {}
            Auth::Basic => yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: upstream\n    path: {}\n",
                path("htpasswd")
            )),
            Auth::Token => {
                let issuer = self.issuer.as_ref().expect("token auth has an issuer");
                yaml.push_str(&format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    \
                     rootcertbundle: {}\n",
                    json(&issuer.realm()),
                    json(issuer.service()),
                    json(issuer.issuer()),
                    json(issuer.bundle_path().to_str().expect("UTF-8 paths")),
                ));
            }
        }
        yaml
    }
}

/// A self-signed ECDSA certificate for `127.0.0.1` and `localhost` in `dir/tls/` (and as
/// `dir/certs.d/ca.crt`). No keyUsage, serverAuth only: Go, webpki and OpenSSL all accept a
/// self-signed leaf as its own trust anchor then (as regapp's own self-signed mode relies on).
fn write_certificate(dir: &Path) {
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate a P-256 key");
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("certificate parameters for 127.0.0.1 and localhost");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "regapp test upstream");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .self_signed(&key)
        .expect("self-sign the upstream's certificate");
    std::fs::create_dir_all(dir.join("tls")).expect("create the tls dir");
    std::fs::create_dir_all(dir.join("certs.d")).expect("create the cert dir");
    std::fs::write(dir.join("tls/cert.pem"), cert.pem()).expect("write the certificate");
    std::fs::write(dir.join("tls/key.pem"), key.serialize_pem()).expect("write the key");
    std::fs::write(dir.join("certs.d/ca.crt"), cert.pem()).expect("write ca.crt");
}

/// `htpasswd -B -b -c FILE USER PASSWORD`: one bcrypt line, as an operator writes it.
fn write_htpasswd(file: &Path, user: &str, password: &str) {
    let output = Command::new("htpasswd")
        .args(["-B", "-b", "-c"])
        .arg(file)
        .args([user, password])
        .output()
        .expect("run htpasswd (apt-get install apache2-utils)");
    assert!(
        output.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Parses an access-log line as [`super::process::ServerProcess`] keeps it, e.g.
/// `stdout: 127.0.0.1 - - [08/Dec/2026:01:45:40 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"`.
fn parse_access_line(line: &str) -> Option<LoggedRequest> {
    let line = line
        .strip_prefix("stdout: ")
        .or_else(|| line.strip_prefix("stderr: "))?;
    if line.starts_with("time=") {
        return None;
    }
    let rest = &line[line.find("] \"")? + 3..];
    let (request, rest) = rest.split_once("\" ")?;
    let mut parts = request.split(' ');
    let method = parts.next()?.to_owned();
    let uri = parts.next()?.to_owned();
    parts.next()?.strip_prefix("HTTP/")?;
    let status = rest.split(' ').next()?.parse().ok()?;
    Some(LoggedRequest {
        method,
        uri,
        status,
    })
}
