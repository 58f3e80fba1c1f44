//! `/metrics` after a push, a pull and refused logins through the edge; `promtool check metrics`.

use std::io::Write;
use std::process::{Command, Stdio};

use sha2::Digest as _;

use super::{get, sample};
use crate::edge::{EdgeServer, Tls, PASSWORD, USER};

#[test]
fn counters_move_with_a_push_a_pull_and_refused_logins_and_promtool_accepts_them() {
    let edge = EdgeServer::start();
    let creds = format!("{USER}:{PASSWORD}");
    let blob = b"metrics test blob".repeat(1000);
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&blob)));
    let blob_file = edge.dir.path().join("blob");
    std::fs::write(&blob_file, &blob).unwrap();

    let (status, _) = edge.curl(&[
        "-u",
        &format!("{USER}:wrong"),
        &format!("{}/v2/", edge.url()),
    ]);
    assert_eq!(status, 401);
    let (status, _) = edge.curl(&[&format!("{}/v2/", edge.url())]);
    assert_eq!(status, 401);
    // A monolithic push (POST with the digest), then a pull.
    let (status, text) = edge.curl(&[
        "-u",
        &creds,
        "-X",
        "POST",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", blob_file.display()),
        &format!("{}/v2/team/app/blobs/uploads/?digest={digest}", edge.url()),
    ]);
    assert_eq!(status, 201, "{text}");
    let (status, text) = edge.curl(&[
        "-u",
        &creds,
        "-o",
        "/dev/null",
        &format!("{}/v2/team/app/blobs/{digest}", edge.url()),
    ]);
    assert_eq!(status, 200, "{text}");

    let (status, scrape) = get(edge.metrics_port, "/metrics");
    assert_eq!(status, 200);
    for (series, at_least) in [
        (r#"regapp_auth_failures_total{reason="denied"}"#, 1.0),
        (r#"regapp_auth_failures_total{reason="missing"}"#, 1.0),
        ("regapp_auth_successes_total", 2.0),
        ("regapp_engine_blobs_pushed_total", 1.0),
        ("regapp_engine_blobs_pulled_total", 1.0),
        (
            r#"regapp_engine_requests_total{method="POST",route="upload",status="201"}"#,
            1.0,
        ),
        (
            r#"regapp_engine_requests_total{method="GET",route="blob",status="200"}"#,
            1.0,
        ),
        (
            r#"regapp_engine_request_duration_seconds_count{method="GET",route="blob"}"#,
            1.0,
        ),
        ("regapp_engine_received_bytes_total", blob.len() as f64),
        ("regapp_engine_sent_bytes_total", blob.len() as f64),
        // The watch's first look at the file at startup.
        ("regapp_auth_htpasswd_reloads_total", 1.0),
        (
            r#"regapp_build_info{commit="unknown",version="0.1.0"}"#,
            1.0,
        ),
    ] {
        let value = sample(&scrape, series);
        assert!(
            value >= at_least,
            "{series} = {value}, want ≥ {at_least}:\n{scrape}"
        );
    }
    assert_eq!(sample(&scrape, "regapp_engine_uploads_in_progress"), 0.0);
    let expiry = sample(
        &scrape,
        r#"regapp_tls_certificate_expiry_timestamp_seconds{name="localhost"}"#,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        expiry > now + 86_400.0,
        "the self-signed certificate's expiry: {expiry}"
    );
    for family in [
        "regapp_gc_runs_total",
        "regapp_gc_duration_seconds",
        "regapp_storage_bytes",
    ] {
        assert!(
            scrape.contains(&format!("# TYPE {family} ")),
            "{family} exported:\n{scrape}"
        );
    }
    promtool_check(&scrape);
}

#[test]
fn the_edge_serves_metrics_only_to_metrics_allow() {
    let edge =
        EdgeServer::start_configured(Tls::SelfSigned, "", "allow = [\"127.0.0.1/32\"]", |_| {});
    let (status, text) = edge.curl(&[&format!("{}/metrics", edge.url())]);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("regapp_build_info"), "{text}");

    let closed = EdgeServer::start();
    let (status, text) = closed.curl(&[&format!("{}/metrics", closed.url())]);
    assert_eq!(
        status, 401,
        "without metrics.allow, /metrics is a registry path: {text}"
    );
}

#[test]
fn a_request_id_travels_from_the_edge_to_the_engine_and_back() {
    // The engine logs refusals at debug level, inside the request's span.
    let edge = EdgeServer::start_configured(Tls::SelfSigned, "", "", |c| {
        c.env("REGAPP_LOG", "info,regapp::registry=debug");
    });
    let (status, text) = edge.curl(&[
        "-u",
        &format!("{USER}:{PASSWORD}"),
        &format!("{}/v2/team/app/manifests/missing", edge.url()),
    ]);
    assert_eq!(status, 404, "{text}");
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap_or_else(|| panic!("no X-Request-Id: {text}"))
        .trim()
        .to_owned();
    assert_eq!(id.len(), 32, "{id}");
    crate::util::eventually(
        std::time::Duration::from_secs(5),
        "the access log line",
        || {
            edge.process
                .log()
                .lines()
                .any(|l| l.contains("regapp::auth::access") && l.contains(&id))
        },
    );
}

/// Runs Prometheus's `promtool check metrics` on a scrape (Debian package `prometheus`).
pub fn promtool_check(scrape: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (apt-get install prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{scrape}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
