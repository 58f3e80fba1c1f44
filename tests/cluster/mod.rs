//! Issue 32's cluster as an operator runs it: three regapp nodes (n1, n2, n3), each a full
//! edge with TLS and Basic Auth, sharing one certificate, one htpasswd file and one prefix of a
//! SeaweedFS bucket, behind HAProxy (round robin, no stickiness). The nodes share state only
//! through the bucket; these tests check that clients cannot tell: pushes and pulls spread over
//! the nodes, an upload that goes on across nodes and past a node killed mid-chunk,
//! collections on every node while pushes run, and one node's writes read on the others.
//!
//! The two-node engine tests in `s3` check the same properties in-process; these run the real
//! binary, real clients and a real load balancer.

mod collect;
mod read_after_write;
mod spread;
mod upload;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::edge::{free_port, htpasswd, PASSWORD, USER};
use crate::util::haproxy::{self, Haproxy};
use crate::util::process::ServerProcess;
use crate::util::seaweed::{self, Seaweed};

pub const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// One regapp node of a [`Cluster`].
pub struct Node {
    pub name: &'static str,
    pub process: ServerProcess,
    pub https_port: u16,
    pub metrics_port: u16,
}

/// Three nodes on one bucket prefix behind HAProxy; everything stops on drop.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub haproxy: Haproxy,
    /// Certificates, htpasswd, each node's config and state, the clients' scratch files.
    dir: tempfile::TempDir,
    scratch: AtomicUsize,
}

/// A curl answer.
pub struct Answer {
    pub status: u16,
    /// The response head as curl wrote it.
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> String {
        crate::util::header_value(&self.head, name)
            .unwrap_or_else(|| panic!("no {name} header in:\n{}", self.head))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Cluster {
    /// Starts the nodes with `extra` appended to each one's config (`[gc]`, more `[cluster]`
    /// keys), then HAProxy in front of their edges.
    pub fn start(extra: &str) -> Cluster {
        let started = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        write_certificates(dir.path());
        let users = dir.path().join("htpasswd");
        // Cost 5, not 12: each node checks the password once, then caches; the cost only
        // slows the test down.
        htpasswd(&[
            "-B",
            "-C",
            "5",
            "-b",
            "-c",
            users.to_str().unwrap(),
            USER,
            PASSWORD,
        ]);
        let server = Seaweed::shared();
        let prefix = server.fresh_prefix();
        let credentials = dir.path().join("s3-credentials");
        std::fs::write(
            &credentials,
            format!(
                "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                seaweed::ACCESS_KEY,
                seaweed::SECRET_KEY
            ),
        )
        .unwrap();
        let mut spawned = Vec::new();
        for name in NODES {
            let (https_port, http_port) = (free_port(), free_port());
            let (engine_port, metrics_port) = (free_port(), free_port());
            let node_dir = dir.path().join(name);
            std::fs::create_dir(&node_dir).unwrap();
            let config = format!(
                "[storage]\nroot = {root:?}\ndelete_enabled = true\nbackend = \"s3\"\n\n\
                 [storage.s3]\nbucket = {bucket:?}\nendpoint = {endpoint:?}\nprefix = {prefix:?}\n\
                 credentials_file = {credentials:?}\n\n\
                 [engine]\nlisten = \"127.0.0.1:{engine_port}\"\n\n\
                 [edge]\nhostname = \"localhost\"\nhttps_listen = \"127.0.0.1:{https_port}\"\n\
                 http_listen = \"127.0.0.1:{http_port}\"\n\
                 trusted_proxies = [\"{proxy}/32\"]\n\n\
                 [tls]\nmode = \"files\"\ncert_file = {cert:?}\nkey_file = {key:?}\n\n\
                 [auth]\nhtpasswd = {users:?}\nrealm = \"regapp\"\n\n\
                 [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n\
                 [cluster]\nnode = \"{name}\"\n{extra}",
                root = node_dir.join("data"),
                bucket = seaweed::BUCKET,
                endpoint = server.endpoint(),
                cert = dir.path().join("node.crt"),
                key = dir.path().join("node.key"),
                proxy = haproxy::SOURCE,
            );
            let config_file = node_dir.join("regapp.toml");
            std::fs::write(&config_file, config).unwrap();
            let mut command = Command::new(env!("CARGO_BIN_EXE_regapp"));
            command.arg("serve").arg("--config").arg(&config_file);
            if std::env::var_os("RUST_LOG").is_none() {
                command.env("RUST_LOG", "info");
            }
            let (process, listening) = ServerProcess::spawn("regapp", "regapp", command, |line| {
                line.starts_with("regapp listening on https://")
                    .then(|| line.to_owned())
            });
            let node = Node {
                name,
                process,
                https_port,
                metrics_port,
            };
            spawned.push((node, listening));
        }
        let mut nodes = Vec::new();
        for (mut node, listening) in spawned {
            node.process.wait_for_line(&listening, "its listening line");
            wait_for_port(node.https_port);
            nodes.push(node);
        }
        let servers: Vec<(&str, u16)> = nodes.iter().map(|n| (n.name, n.https_port)).collect();
        let tls = haproxy::Tls::Both {
            pem: dir.path().join("haproxy.pem"),
            ca: Some(dir.path().join("trust/ca.crt")),
        };
        let haproxy = Haproxy::start(&servers, &tls);
        println!("cluster up in {:?}", started.elapsed());
        Cluster {
            nodes,
            haproxy,
            dir,
            scratch: AtomicUsize::new(0),
        }
    }

    /// `https://localhost:PORT` of HAProxy.
    pub fn url(&self) -> String {
        format!("https://{}", self.haproxy.host())
    }

    /// `https://localhost:PORT` of node `i`'s edge, past HAProxy.
    pub fn node_url(&self, i: usize) -> String {
        format!("https://localhost:{}", self.nodes[i].https_port)
    }

    /// The directory with `ca.crt` (skopeo's and podman's `--cert-dir`).
    pub fn trust_dir(&self) -> PathBuf {
        self.dir.path().join("trust")
    }

    pub fn ca(&self) -> PathBuf {
        self.trust_dir().join("ca.crt")
    }

    pub fn creds() -> String {
        format!("{USER}:{PASSWORD}")
    }

    /// A fresh path in the cluster's directory for a client's files.
    pub fn scratch(&self, what: &str) -> PathBuf {
        let n = self.scratch.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("{what}-{n}"))
    }

    /// `METHOD base+path` with alice's credentials, trusting the cluster's CA; `body` goes
    /// as `application/octet-stream` (HEAD sends none and reads none).
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Answer {
        let (head_file, body_file) = (self.scratch("head"), self.scratch("body"));
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--cacert"])
            .arg(self.ca())
            .args(["-u", &Cluster::creds(), "-D"])
            .arg(&head_file)
            .arg("-o")
            .arg(&body_file)
            .args(["-w", "%{http_code}"]);
        match method {
            "HEAD" => curl.arg("-I"),
            _ => curl.args(["-X", method]),
        };
        for (name, value) in headers {
            curl.args(["-H", &format!("{name}: {value}")]);
        }
        if body.is_some() {
            curl.args([
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                "@-",
            ]);
        }
        let mut child = curl
            .arg(url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl runs (apt-get install curl)");
        let mut stdin = child.stdin.take().unwrap();
        let body = body.unwrap_or_default().to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&body));
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap().expect("curl reads the whole body");
        let status = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        assert!(
            status != 0,
            "{method} {url}: no answer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let head = std::fs::read_to_string(&head_file).unwrap_or_default();
        let body = std::fs::read(&body_file).unwrap_or_default();
        let _ = std::fs::remove_file(head_file);
        let _ = std::fs::remove_file(body_file);
        Answer { status, head, body }
    }

    /// `skopeo ARGS` with the cluster's CA and alice's credentials for both ends, no trust
    /// policy and nothing from the machine's containers configuration; its output.
    pub fn skopeo(&self, args: &[&str]) -> Output {
        let registries = self.dir.path().join("registries.conf");
        std::fs::write(&registries, "").unwrap();
        Command::new("skopeo")
            .args(["--insecure-policy", "--command-timeout=120s"])
            .args(args)
            .env("CONTAINERS_REGISTRIES_CONF", registries)
            .env_remove("REGISTRY_AUTH_FILE")
            .output()
            .expect("skopeo runs (apt-get install skopeo)")
    }

    /// `skopeo copy --preserve-digests SRC DST` with credentials and the CA on whichever end
    /// is a registry; the manifest digest it wrote.
    pub fn skopeo_copy(&self, src: &str, dst: &str) -> String {
        let digest_file = self.scratch("digest");
        let (creds, trust) = (Cluster::creds(), self.trust_dir());
        let trust = trust.to_str().unwrap();
        let digest_arg = format!("--digestfile={}", digest_file.display());
        let out = self.skopeo(&[
            "copy",
            "--quiet",
            "--retry-times=0",
            "--preserve-digests",
            &digest_arg,
            "--src-creds",
            &creds,
            "--src-cert-dir",
            trust,
            "--dest-creds",
            &creds,
            "--dest-cert-dir",
            trust,
            src,
            dst,
        ]);
        assert!(
            out.status.success(),
            "skopeo copy {src} {dst}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(digest_file)
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Requests node `i`'s engine answered, by route, leaving out `/v2/` (HAProxy's health
    /// checks): what the balancer sent it.
    pub fn requests_on(&self, i: usize) -> u64 {
        metric_sum(
            &self.metrics(i),
            "regapp_engine_request_duration_seconds_count",
            |labels| !labels.contains("route=\"base\""),
        )
    }

    /// Node `i`'s `/metrics`.
    pub fn metrics(&self, i: usize) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.nodes[i].metrics_port);
        let response = reqwest::blocking::get(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(response.status().is_success(), "{url}");
        response.text().unwrap()
    }

    /// The nodes still running.
    pub fn live_nodes(&mut self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].process.is_running())
            .collect()
    }
}

/// The sum of the samples of `name` whose labels pass `keep` (`{a="b",…}`, empty without).
pub fn metric_sum(scrape: &str, name: &str, keep: impl Fn(&str) -> bool) -> u64 {
    scrape
        .lines()
        .filter_map(|line| line.strip_prefix(name))
        .filter_map(|rest| {
            let (labels, value) = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once('}')?,
                None if rest.starts_with(' ') => ("", rest),
                None => return None,
            };
            keep(labels).then(|| value.trim().parse::<f64>().ok())?
        })
        .sum::<f64>() as u64
}

/// A CA and one certificate for `localhost` and 127.0.0.1 signed by it (every node serves it,
/// from `node.crt`/`node.key`); `haproxy.pem` is the same certificate and key in one file, and
/// `trust/ca.crt` the CA for clients.
fn write_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl runs (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let new_key = [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
    ];
    openssl(
        &[
            &new_key[..],
            &["-subj", "/CN=regapp-cluster-test-ca"],
            &["-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat(),
    );
    openssl(
        &[
            &new_key[..],
            &["-subj", "/CN=localhost"],
            &["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            &["-addext", "basicConstraints=critical,CA:FALSE"],
            &["-CA", "ca.crt", "-CAkey", "ca.key"],
            &["-keyout", "node.key", "-out", "node.crt"],
        ]
        .concat(),
    );
    let pem = [
        std::fs::read(dir.join("node.crt")).unwrap(),
        std::fs::read(dir.join("node.key")).unwrap(),
    ]
    .concat();
    std::fs::write(dir.join("haproxy.pem"), pem).unwrap();
    std::fs::create_dir(dir.join("trust")).unwrap();
    std::fs::copy(dir.join("ca.crt"), dir.join("trust/ca.crt")).unwrap();
}

fn wait_for_port(port: u16) {
    crate::util::eventually(Duration::from_secs(30), "the edge listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

pub use crate::util::noise;

pub fn sha256(bytes: &[u8]) -> String {
    crate::util::layout::sha256_digest(bytes)
}
