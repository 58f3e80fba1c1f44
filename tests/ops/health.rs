//! `/healthz` and `/readyz`: ready when the engine answers, the storage takes writes and a
//! certificate is loaded; each failing check is named.

use std::process::Command;
use std::time::Duration;

use super::{eventually, get};
use crate::acme::AcmeRegapp;
use crate::edge::EdgeServer;

/// Makes a directory refuse new files even to root (tests run as root on CI): `chattr +i`.
struct ReadOnly(std::path::PathBuf);

impl ReadOnly {
    fn new(dir: &std::path::Path) -> ReadOnly {
        let out = Command::new("chattr").arg("+i").arg(dir).output().unwrap();
        assert!(
            out.status.success(),
            "chattr +i: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ReadOnly(dir.to_owned())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).output();
    }
}

#[test]
fn readiness_fails_while_the_storage_is_read_only_and_recovers() {
    let edge = EdgeServer::start();
    assert_eq!(
        get(edge.metrics_port, "/healthz"),
        (200, "alive\n".to_owned())
    );
    eventually(Duration::from_secs(10), "ready at start", || {
        get(edge.metrics_port, "/readyz").0 == 200
    });
    let (_, body) = get(edge.metrics_port, "/readyz");
    assert_eq!(body, "ready\nstorage: ok\nengine: ok\ncertificate: ok\n");

    let root = edge.dir.path().join("data");
    let read_only = ReadOnly::new(&root);
    let (status, body) = get(edge.metrics_port, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("not ready\nstorage: FAIL: cannot write in"),
        "{body}"
    );
    assert!(body.contains("engine: ok\ncertificate: ok"), "{body}");
    assert_eq!(get(edge.metrics_port, "/healthz").0, 200, "still alive");

    drop(read_only);
    assert_eq!(get(edge.metrics_port, "/readyz").0, 200);
    // /v2/ keeps its spec behaviour: 401 without credentials, whatever the probes say.
    let (status, _) = edge.curl(&[&format!("{}/v2/", edge.url())]);
    assert_eq!(status, 401);
}

#[test]
fn acme_mode_is_not_ready_before_its_first_certificate() {
    // A CA that never answers: the certificate never comes, the rest is fine.
    let dir = tempfile::tempdir().unwrap();
    let ca_root = dir.path().join("no-ca.pem");
    std::fs::write(&ca_root, "").unwrap();
    let mut regapp = AcmeRegapp::configure(
        crate::edge::free_port(),
        &format!("https://127.0.0.1:{}/dir", crate::edge::free_port()),
        &ca_root,
        "",
    );
    regapp.start();
    let port = regapp.metrics_port;
    eventually(Duration::from_secs(10), "the metrics listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let (status, body) = get(port, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("certificate: FAIL: no certificate yet"),
        "{body}"
    );
    assert!(body.contains("engine: ok"), "{body}");
    assert_eq!(get(port, "/healthz").0, 200);
    regapp.stop();
}
