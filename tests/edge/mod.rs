//! The edge through real clients over TLS: curl (HTTP/2 and HTTP/1.1), openssl s_client,
//! skopeo with a `--cert-dir` trust directory, Apache's htpasswd for the user file.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::util::process::ServerProcess;

mod access;
mod auth;
mod hostile;
mod immutable;
mod linger;
mod proxy;
mod tls;

/// A regapp with its edge on free loopback ports, users in an htpasswd file written by Apache's
/// `htpasswd -B -C 12`, and a self-signed certificate (or PEM files) trusted through `ca.crt`.
pub struct EdgeServer {
    pub process: ServerProcess,
    pub dir: tempfile::TempDir,
    pub https_port: u16,
    pub http_port: u16,
    pub engine_port: u16,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub metrics_port: u16,
    pub config_file: PathBuf,
}

pub const USER: &str = "alice";
pub const PASSWORD: &str = "wonderland";

/// A loopback port nothing listens on now, and never one this test process was given before:
/// the kernel may hand a just-released port out again, and two listeners asked for one after
/// the other (a server's engine and metrics ports) then collided (`Address already in use`).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

pub fn htpasswd(args: &[&str]) {
    let out = Command::new("htpasswd")
        .args(args)
        .output()
        .expect("htpasswd runs (apt-get install apache2-utils)");
    assert!(
        out.status.success(),
        "htpasswd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a test adds to the config: keys of `[edge]`, htpasswd users (and raw lines), keys and
/// tables after `[auth]`, sections at the end, keys and tables of `[storage]`.
#[derive(Default)]
struct Setup<'a> {
    extra_edge: &'a str,
    users: &'a [(&'a str, &'a str)],
    htpasswd_lines: &'a str,
    auth_tail: &'a str,
    extra_sections: &'a str,
    storage: &'a str,
}

/// How the edge gets its certificate in a test.
pub enum Tls {
    SelfSigned,
    /// cert_file, key_file
    Files(PathBuf, PathBuf),
}

impl EdgeServer {
    pub fn start() -> EdgeServer {
        EdgeServer::start_with(Tls::SelfSigned, "")
    }

    pub fn start_with(tls: Tls, extra_edge: &str) -> EdgeServer {
        EdgeServer::start_configured(tls, extra_edge, "", |_| {})
    }

    /// With more htpasswd users and `auth_tail` appended to the config after `[auth]`'s keys
    /// (more `[auth]` keys, then `[[auth.groups]]` and `[[access]]` tables).
    pub fn start_with_rules(users: &[(&str, &str)], auth_tail: &str) -> EdgeServer {
        let setup = Setup {
            users,
            auth_tail,
            ..Setup::default()
        };
        EdgeServer::start_full(Tls::SelfSigned, setup, |_| {})
    }

    /// With `lines` appended to the htpasswd file before the server starts.
    pub fn start_with_htpasswd_lines(lines: &str) -> EdgeServer {
        let setup = Setup {
            htpasswd_lines: lines,
            ..Setup::default()
        };
        EdgeServer::start_full(Tls::SelfSigned, setup, |_| {})
    }

    /// `extra_sections` is appended after `[auth]` (`[log]`, or keys of `[metrics]` after its
    /// `listen`); `customize` can change the environment.
    pub fn start_configured(
        tls: Tls,
        extra_edge: &str,
        extra_sections: &str,
        customize: impl FnOnce(&mut Command),
    ) -> EdgeServer {
        let setup = Setup {
            extra_edge,
            extra_sections,
            ..Setup::default()
        };
        EdgeServer::start_full(tls, setup, customize)
    }

    /// With the registry in a fresh prefix of the test process's SeaweedFS bucket.
    pub fn start_on_s3() -> EdgeServer {
        let server = crate::util::seaweed::Seaweed::shared();
        let storage = format!(
            "backend = \"s3\"\n[storage.s3]\nbucket = {:?}\nendpoint = {:?}\nprefix = {:?}\n",
            crate::util::seaweed::BUCKET,
            server.endpoint(),
            server.fresh_prefix(),
        );
        let setup = Setup {
            storage: &storage,
            ..Setup::default()
        };
        EdgeServer::start_full(Tls::SelfSigned, setup, |command| {
            command
                .env("AWS_ACCESS_KEY_ID", crate::util::seaweed::ACCESS_KEY)
                .env("AWS_SECRET_ACCESS_KEY", crate::util::seaweed::SECRET_KEY);
        })
    }

    fn start_full(tls: Tls, setup: Setup, customize: impl FnOnce(&mut Command)) -> EdgeServer {
        let Setup {
            extra_edge,
            users,
            htpasswd_lines,
            auth_tail,
            extra_sections,
            storage,
        } = setup;
        let dir = tempfile::tempdir().unwrap();
        let htpasswd_file = dir.path().join("htpasswd");
        htpasswd(&[
            "-B",
            "-C",
            "12",
            "-b",
            "-c",
            htpasswd_file.to_str().unwrap(),
            USER,
            PASSWORD,
        ]);
        for (user, password) in users {
            let file = htpasswd_file.to_str().unwrap();
            htpasswd(&["-B", "-C", "4", "-b", file, user, password]);
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&htpasswd_file)
            .unwrap()
            .write_all(htpasswd_lines.as_bytes())
            .unwrap();
        let (https_port, http_port, engine_port) = (free_port(), free_port(), free_port());
        let metrics_port = free_port();
        let tls = match tls {
            Tls::SelfSigned => format!(
                "mode = \"self-signed\"\nstate_dir = {:?}\n",
                dir.path().join("tls")
            ),
            Tls::Files(cert, key) => {
                format!("mode = \"files\"\ncert_file = {cert:?}\nkey_file = {key:?}\n")
            }
        };
        let config = format!(
            "[storage]\nroot = {root:?}\n{storage}\n[engine]\nlisten = \"127.0.0.1:{engine_port}\"\n\n\
             [edge]\nhostname = \"localhost\"\nhttps_listen = \"127.0.0.1:{https_port}\"\n\
             http_listen = \"127.0.0.1:{http_port}\"\nshutdown_grace = \"10s\"\n{extra_edge}\n\n\
             [tls]\n{tls}\n[auth]\nhtpasswd = {htpasswd_file:?}\nrealm = \"test\"\n{auth_tail}\n\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{extra_sections}\n",
            root = dir.path().join("data"),
        );
        let config_file = dir.path().join("regapp.toml");
        std::fs::write(&config_file, config).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_regapp"));
        command.arg("serve").arg("--config").arg(&config_file);
        customize(&mut command);
        let (mut process, found) = ServerProcess::spawn("regapp", "regapp", command, |line| {
            line.starts_with("regapp listening on https://")
                .then(|| line.to_owned())
        });
        process.wait_for_line(&found, "its listening line");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", https_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the edge never listened on {https_port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        EdgeServer {
            process,
            dir,
            https_port,
            http_port,
            engine_port,
            metrics_port,
            config_file,
        }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.https_port)
    }

    pub fn host(&self) -> String {
        format!("localhost:{}", self.https_port)
    }

    /// The directory holding `ca.crt` (skopeo's `--cert-dir`).
    pub fn trust_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    pub fn ca(&self) -> PathBuf {
        self.trust_dir().join("ca.crt")
    }

    pub fn htpasswd_file(&self) -> PathBuf {
        self.dir.path().join("htpasswd")
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// curl with the edge's CA trusted; returns (status, headers+body as text).
    pub fn curl(&self, args: &[&str]) -> (u16, String) {
        let out = curl_with_ca(&self.ca(), args);
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        let status = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("status="))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "curl {args:?} gave no status: {text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        if status == 0 {
            // No answer at all: what curl says went wrong (connect, TLS, reset) is the clue.
            text.push_str(&String::from_utf8_lossy(&out.stderr));
        }
        (status, text)
    }
}

pub fn curl_with_ca(ca: &Path, args: &[&str]) -> Output {
    Command::new("curl")
        .args([
            "-sS",
            "-i",
            "--cacert",
            ca.to_str().unwrap(),
            "-w",
            "\nstatus=%{http_code}\nversion=%{http_version}\n",
        ])
        .args(args)
        .output()
        .expect("curl runs (apt-get install curl)")
}

/// Opens an upload session through the edge; returns its (relative) Location.
pub fn start_upload(edge: &EdgeServer, repo: &str) -> String {
    let creds = format!("{USER}:{PASSWORD}");
    let url = format!("{}/v2/{repo}/blobs/uploads/", edge.url());
    let (status, text) = edge.curl(&["-u", &creds, "-X", "POST", &url]);
    assert_eq!(status, 202, "{text}");
    crate::util::header_value(&text, "location").expect("a Location header")
}

/// What a client offering a 1 GiB PATCH body got back.
pub struct RefusedUpload {
    pub status: String,
    /// The answer's body (the spec's JSON error).
    pub body: String,
    /// Bytes curl sent of the 1 GiB.
    pub uploaded: f64,
}

/// PATCHes `url` with a 1 GiB body from a pipe, over HTTP/1.1 with `Expect: 100-continue`: a
/// server that answers before it wants the body never gets "100 Continue" out of the client
/// and with it the body. (Without Expect the edge still reads none of it, but closing a
/// connection with unread input resets it and the client may miss the answer; over h2 a
/// stream reset can hide it. See the notes.)
pub fn offer_a_1_gib_upload(edge: &EdgeServer, url: &str, creds: Option<&str>) -> RefusedUpload {
    let mut curl = Command::new("curl");
    curl.args(["-s", "--cacert", edge.ca().to_str().unwrap()]);
    if let Some(creds) = creds {
        curl.args(["-u", creds]);
    }
    let mut curl = curl
        .args(["--http1.1", "-H", "Expect: 100-continue"])
        .args([
            "-w",
            "\n%{http_code} %{size_upload}",
            "-X",
            "PATCH",
            "-T",
            "-",
        ])
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl runs (apt-get install curl)");
    let mut stdin = curl.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            if stdin.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let out = curl.wait_with_output().unwrap();
    feeder.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // Unparsable output fails here rather than passing as "0 bytes sent".
    let (body, summary) = text
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("curl printed no summary line: {text:?}"));
    let (status, uploaded) = summary
        .split_once(' ')
        .unwrap_or_else(|| panic!("curl's summary is not \"code bytes\": {text:?}"));
    RefusedUpload {
        status: status.to_owned(),
        body: body.to_owned(),
        uploaded: uploaded
            .parse()
            .unwrap_or_else(|e| panic!("curl's byte count {uploaded:?}: {e}")),
    }
}

/// Peak resident memory of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}
