//! HAProxy (Debian's `haproxy` 2.6) in front of several registry nodes, as an operator puts a
//! load balancer in front of a cluster: round robin with no stickiness, each request to the
//! next node, health checks on `/v2/`. Plain HTTP to engines (regapp without an edge), or TLS
//! to edges. Started with `-db` (foreground) on a free loopback port, killed on drop; its log
//! (servers going down and up) is on its stderr.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::process::{ServerProcess, STARTUP_TIMEOUT};

/// How HAProxy talks to clients and to the nodes.
pub enum Tls {
    /// Plain HTTP on both sides, to engines without an edge (an edge's own engine listener
    /// answers its edge only).
    Plain,
    /// TLS on both sides: the frontend serves `pem` (certificate chain, then key, in one
    /// file); the backends' certificates must chain to `ca` and name `localhost` (`None`:
    /// `verify none`).
    Both { pem: PathBuf, ca: Option<PathBuf> },
}

/// A running HAProxy; see the module doc.
pub struct Haproxy {
    process: ServerProcess,
    port: u16,
    config: String,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Balances over `servers` (name, loopback port) on a free port (the edge tests' never
    /// reused one); returns once it accepts connections. The servers should be up already.
    pub fn start(servers: &[(&str, u16)], tls: &Tls) -> Haproxy {
        Haproxy::start_checking(servers, tls, Some(REGISTRY_CHECK))
    }

    /// In front of the nodes' :80 listeners (ACME's HTTP-01 answers, the redirect to https),
    /// plain HTTP, without health checks: a node that is not listening yet is skipped by
    /// `option redispatch` at once, where a check would keep a node that just started out for
    /// up to its interval (and the first order, at a node's start, would fail).
    pub fn start_plain_http(servers: &[(&str, u16)]) -> Haproxy {
        Haproxy::start_checking(servers, &Tls::Plain, None)
    }

    fn start_checking(servers: &[(&str, u16)], tls: &Tls, check: Option<&str>) -> Haproxy {
        let port = crate::edge::free_port();
        let config = config(port, servers, tls, check);
        let dir = tempfile::tempdir().expect("a temp dir for haproxy.cfg");
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, &config).expect("write haproxy.cfg");
        check_config(&file);
        let mut command = Command::new("haproxy");
        command.arg("-f").arg(&file).arg("-db");
        // It prints nothing when it is ready; it logs state changes and each request.
        let (process, _) = ServerProcess::spawn("haproxy", "haproxy", command, |_| None);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "haproxy never listened on {port}:\n{}",
                process.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Haproxy {
            process,
            port,
            config,
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `localhost:PORT`, the name clients use (it is the name in the nodes' certificate).
    pub fn host(&self) -> String {
        format!("localhost:{}", self.port)
    }

    /// The configuration it runs with, as written.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// What HAProxy logged so far (server state changes, one line per request).
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// The configuration: a README can quote it as it is. Timeouts are inactivity timeouts and
/// long enough for a big layer's commit (the node copies it in the bucket before answering).
/// No `option http-buffer-request`: bodies stream to the node as they come. A request that
/// could not connect to a node (a dead one not yet marked down) goes to another. `option
/// forwardfor` names the client to nodes whose `edge.trusted_proxies` hold HAProxy.
fn config(port: u16, servers: &[(&str, u16)], tls: &Tls, check: Option<&str>) -> String {
    let (bind, server_tls) = match tls {
        Tls::Plain => (String::new(), String::new()),
        Tls::Both { pem, ca } => (
            format!(" ssl crt {} alpn h2,http/1.1", pem.display()),
            match ca {
                Some(ca) => format!(
                    " ssl verify required ca-file {} verifyhost localhost",
                    ca.display()
                ),
                None => " ssl verify none".to_owned(),
            },
        ),
    };
    let mut text = format!(
        "global
  log stderr format raw local0 info

defaults
  mode http
  log global
  option httplog
  option redispatch
  retries 2
  timeout connect 5s
  timeout client 10m
  timeout server 10m
  timeout check 5s

frontend registry
  bind 127.0.0.1:{port}{bind}
  default_backend regapp

backend regapp
  balance roundrobin
  option forwardfor
{}",
        match check {
            Some(check) => format!("  option httpchk\n{check}"),
            // Unchecked, a node still starting may take a request and drop it: another gets it.
            None => "  retry-on all-retryable-errors\n".to_owned(),
        }
    );
    let server_check = if check.is_some() {
        " check inter 1s fall 2 rise 1"
    } else {
        ""
    };
    for (name, server_port) in servers {
        text.push_str(&format!(
            "  server {name} 127.0.0.1:{server_port}{server_tls}{server_check} source {SOURCE}\n"
        ));
    }
    text
}

/// The address HAProxy connects to the nodes from: not the clients' 127.0.0.1, so that a node
/// that names 127.0.0.1 as the client learnt it from `X-Forwarded-For`.
pub const SOURCE: &str = "127.0.0.2";

/// A registry node is up while `/v2/` answers (401 without credentials).
const REGISTRY_CHECK: &str =
    "  http-check send meth GET uri /v2/\n  http-check expect status 200,401\n";

/// `haproxy -c`: a bad configuration fails here with HAProxy's own words.
fn check_config(file: &Path) {
    let out = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(file)
        .output()
        .expect("haproxy runs (apt-get install haproxy)");
    assert!(
        out.status.success(),
        "haproxy -c {}:\n{}{}\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(file).unwrap_or_default()
    );
}
