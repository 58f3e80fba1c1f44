//! `/healthz` and `/readyz`: ready when the engine answers, the storage takes writes and a
//! certificate is loaded; each failing check is named.

use std::process::Command;
use std::time::Duration;

use super::get;
use crate::acme::AcmeRegapp;
use crate::edge::EdgeServer;
use crate::util::eventually;

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

#[test]
fn the_engine_alone_is_ready_when_it_answers_and_its_storage_takes_writes() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = crate::edge::free_port();
    let config = dir.path().join("regapp.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nroot = {:?}\n[engine]\nlisten = \"127.0.0.1:0\"\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_regapp"));
    command.arg("serve").arg("--config").arg(&config);
    let (mut process, found) =
        crate::util::process::ServerProcess::spawn("regapp", "regapp", command, |line| {
            line.strip_prefix("regapp engine listening on http://")
                .map(str::to_owned)
        });
    let engine = process.wait_for_line(&found, "its listening line");
    eventually(Duration::from_secs(10), "ready", || {
        std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_ok()
            && get(metrics_port, "/readyz").0 == 200
    });
    assert_eq!(
        get(metrics_port, "/readyz").1,
        "ready\nstorage: ok\nengine: ok\n"
    );
    // The engine alone counts its requests too.
    let (status, _) = get(engine.rsplit(':').next().unwrap().parse().unwrap(), "/v2/");
    assert_eq!(status, 200);
    let (_, scrape) = get(metrics_port, "/metrics");
    let series = r#"regapp_engine_requests_total{method="GET",route="base",status="200"}"#;
    assert_eq!(super::sample(&scrape, series), 1.0, "{scrape}");
    process.stop();
}

/// A storage root that is a file is reported as the storage root's problem at start, before
/// anything tries to put `gc.sock` in it.
#[test]
fn a_storage_root_that_is_a_file_is_named_as_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("not-a-directory");
    std::fs::write(&root, "x").unwrap();
    let config = dir.path().join("regapp.toml");
    std::fs::write(
        &config,
        format!("[storage]\nroot = {root:?}\n[engine]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let stderr = crate::util::regapp_fails("serve", &config);
    assert!(
        stderr.contains(&format!(
            "storage root {}: it exists and is not a directory",
            root.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("gc.sock"), "{stderr}");
}
