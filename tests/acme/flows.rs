//! The ACME flows an operator meets: the first start, a restart, a forced renewal under load,
//! and the errors for an unreachable :80 and a wrong External Account Binding.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{fingerprint, served_leaf, wait_until_served, AcmeRegapp, Pebble, EAB_KID};
use crate::edge::{free_port, PASSWORD, USER};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_first_start_orders_over_http01_and_a_restart_orders_nothing() {
    let http_port = free_port();
    let mut pebble = Pebble::start(http_port);
    let root = pebble.issuing_root();
    let mut regapp = AcmeRegapp::configure(http_port, &pebble.directory, &pebble.listener_ca, "");

    let started = Instant::now();
    regapp.start();
    let (leaf, took) = wait_until_served(&regapp, &root, started, Duration::from_secs(30));
    eprintln!("first certificate served {took:?} after spawning regapp");
    let log = regapp.log();
    assert_eq!(log.matches("ACME order starting").count(), 1, "{log}");
    assert!(log.contains("created an ACME account"), "{log}");
    assert!(log.contains("ACME certificate installed"), "{log}");

    // The state is private.
    let state = regapp.state_dir();
    assert_eq!(mode(&state), 0o700);
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }

    // :80 answers only tokens it holds; everything else is redirected.
    let probe = |path: &str| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://127.0.0.1:{}{path}", regapp.http_port))
            .output()
            .unwrap();
        stdout(&out)
    };
    assert_eq!(probe("/.well-known/acme-challenge/unknown-token"), "404");
    assert_eq!(probe("/v2/"), "301");

    // `regapp cert status` through the running server.
    let out = regapp.cert(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("names:         localhost"), "{text}");
    assert!(
        text.contains("issuer:        CN=Pebble Intermediate CA"),
        "{text}"
    );
    assert!(
        text.contains(&format!("sha256:        {}", fingerprint(&leaf))),
        "{text}"
    );
    assert!(text.contains("renewal due:"), "{text}");
    assert!(text.contains("attempts:      success=1"), "{text}");

    // Ready once the certificate is served; the metrics see the attempt and the expiry.
    let (status, body) = crate::ops::get(regapp.metrics_port, "/readyz");
    assert_eq!(status, 200, "{body}");
    let (_, scrape) = crate::ops::get(regapp.metrics_port, "/metrics");
    let series = r#"regapp_acme_renewal_attempts_total{result="success"}"#;
    assert_eq!(crate::ops::sample(&scrape, series), 1.0, "{scrape}");
    let series = r#"regapp_tls_certificate_expiry_timestamp_seconds{name="localhost"}"#;
    assert!(crate::ops::sample(&scrape, series) > 0.0, "{scrape}");

    // A restart with a valid certificate on disk serves it at once and orders nothing.
    regapp.stop();
    let started = Instant::now();
    regapp.start();
    let (again, took) = wait_until_served(&regapp, &root, started, Duration::from_secs(30));
    eprintln!("restart: stored certificate served {took:?} after spawning regapp");
    assert_eq!(fingerprint(&again), fingerprint(&leaf));
    std::thread::sleep(Duration::from_millis(300));
    let log = regapp.log();
    assert!(log.contains("serving the stored ACME certificate"), "{log}");
    assert!(!log.contains("ACME order starting"), "{log}");
    assert!(!log.contains("created an ACME account"), "{log}");
    regapp.stop();

    // Without the server, status still reads the disk; renew says why it cannot.
    let out = regapp.cert(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("server:        not running"),
        "{}",
        stdout(&out)
    );
    let out = regapp.cert(&["renew"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("regapp is not running"),
        "{}",
        stderr(&out)
    );
    pebble.stop();
}

#[test]
fn a_name_added_to_acme_domains_is_ordered_at_the_next_start() {
    let http_port = free_port();
    let mut pebble = Pebble::start(http_port);
    let root = pebble.issuing_root();
    let mut regapp = AcmeRegapp::configure(http_port, &pebble.directory, &pebble.listener_ca, "");
    regapp.start();
    let (first, _) = wait_until_served(&regapp, &root, Instant::now(), Duration::from_secs(30));
    regapp.stop();

    // Two names: two authorizations, two tokens served on :80 at once, one certificate.
    let config = std::fs::read_to_string(&regapp.config).unwrap();
    let config = config.replacen(
        "[acme]\n",
        "[acme]\ndomains = [\"localhost\", \"registry.test\"]\n",
        1,
    );
    std::fs::write(&regapp.config, config).unwrap();
    regapp.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !regapp.log().contains("ACME certificate installed") {
        assert!(
            Instant::now() < deadline,
            "no new certificate:\n{}",
            regapp.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = regapp.log();
    assert!(
        log.contains("the stored certificate lacks configured names"),
        "{log}"
    );
    let (second, _) = wait_until_served(&regapp, &root, Instant::now(), Duration::from_secs(5));
    assert_ne!(fingerprint(&first), fingerprint(&second));
    let out = regapp.cert(&["status"]);
    assert!(
        stdout(&out).contains("names:         localhost, registry.test"),
        "{}",
        stdout(&out)
    );
    regapp.stop();
    pebble.stop();
}

/// Opens an upload session through the edge; returns its (relative) Location.
fn start_upload(regapp: &AcmeRegapp, root: &std::path::Path, repo: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-i", "-X", "POST", "--cacert"])
        .arg(root)
        .args(["-u", &format!("{USER}:{PASSWORD}")])
        .arg(format!("{}/v2/{repo}/blobs/uploads/", regapp.url()))
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.starts_with("HTTP/2 202") || text.starts_with("HTTP/1.1 202"),
        "{text}"
    );
    crate::util::header_value(&text, "location").expect("a Location header")
}

#[test]
fn a_forced_renewal_swaps_the_certificate_while_an_upload_continues() {
    let http_port = free_port();
    let mut pebble = Pebble::start(http_port);
    let root = pebble.issuing_root();
    let root_file = pebble.dir.path().join("issuing-root.pem");
    std::fs::write(&root_file, &root).unwrap();
    let mut regapp = AcmeRegapp::configure(http_port, &pebble.directory, &pebble.listener_ca, "");
    regapp.start();
    let (before, _) = wait_until_served(&regapp, &root, Instant::now(), Duration::from_secs(30));

    // 8 MiB at 2 MiB/s: the upload is in flight for about 4 s, over one TLS connection.
    let blob = regapp.dir.path().join("blob");
    let bytes = vec![42u8; 8 << 20];
    std::fs::write(&blob, &bytes).unwrap();
    let location = start_upload(&regapp, &root_file, "renewal");
    let upload = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--limit-rate",
            "2M",
        ])
        .arg("--cacert")
        .arg(&root_file)
        .args(["-u", &format!("{USER}:{PASSWORD}"), "-X", "PATCH", "-T"])
        .arg(&blob)
        .arg(format!("{}{location}", regapp.url()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));

    let renewed = Instant::now();
    let out = regapp.cert(&["renew"]);
    eprintln!("regapp cert renew took {:?}", renewed.elapsed());
    assert!(out.status.success(), "{}\n{}", stderr(&out), regapp.log());
    let text = stdout(&out);
    assert!(text.contains("renewed"), "{text}");
    assert!(text.contains("attempts:      success=2"), "{text}");

    // New handshakes get the new certificate at once.
    let after = served_leaf(regapp.https_port, &root).expect("a handshake after the renewal");
    assert_ne!(fingerprint(&after), fingerprint(&before));
    assert!(text.contains(&fingerprint(&after)), "{text}");

    // The upload that began before the swap completes on its connection.
    let out = upload.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "202", "the upload in flight completed");
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    );
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "--cacert",
        ])
        .arg(&root_file)
        .args(["-u", &format!("{USER}:{PASSWORD}")])
        .arg(format!("{}{location}?digest={digest}", regapp.url()))
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "201", "the blob was stored whole");
    let log = regapp.log();
    assert!(
        log.contains("renewal forced through the control socket"),
        "{log}"
    );
    assert_eq!(
        log.matches("ACME certificate installed").count(),
        2,
        "{log}"
    );
    regapp.stop();
    pebble.stop();
}

/// Waits (≤ 30 s) for regapp to log a failed order; prints that line and returns the whole log.
fn first_failed_order(regapp: &AcmeRegapp) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = regapp.log();
        if let Some(line) = log.lines().find(|l| l.contains("ACME order failed")) {
            eprintln!("{line}");
            return log;
        }
        assert!(Instant::now() < deadline, "no failure logged:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_failed_validation_shows_the_cas_detail_and_keeps_retrying() {
    // pebble validates against a port where nothing listens: :80 "not reachable".
    let closed = free_port();
    let mut pebble = Pebble::start(closed);
    let mut regapp = AcmeRegapp::configure(free_port(), &pebble.directory, &pebble.listener_ca, "");
    regapp.start();
    let log = first_failed_order(&regapp);
    assert!(
        log.contains("the CA could not validate localhost over HTTP-01"),
        "{log}"
    );
    // pebble's own words, e.g. "Connection refused".
    assert!(log.to_lowercase().contains("connection refused"), "{log}");
    assert!(log.contains("port 80"), "{log}");
    // Nothing is served meanwhile: the handshake is refused, not left hanging (a hang would
    // end at `served_leaf`'s 5 s read timeout; below that the bound is loose, so that a busy
    // machine passes), and the status says what happened and when it retries.
    let tried = Instant::now();
    assert!(served_leaf(regapp.https_port, &pebble.issuing_root()).is_none());
    assert!(
        tried.elapsed() < Duration::from_secs(4),
        "{:?}",
        tried.elapsed()
    );
    let out = regapp.cert(&["status"]);
    let text = stdout(&out);
    assert!(text.contains("certificate:   none yet"), "{text}");
    assert!(text.contains("attempts:      validation=1"), "{text}");
    assert!(text.contains("last error:"), "{text}");
    assert!(text.contains("retry after:"), "{text}");
    regapp.stop();
    pebble.stop();
}

#[test]
fn a_name_that_does_not_resolve_shows_the_cas_dns_detail() {
    let http_port = free_port();
    let mut pebble = Pebble::start_without_dns_answers(http_port);
    let mut regapp = AcmeRegapp::configure(
        http_port,
        &pebble.directory,
        &pebble.listener_ca,
        "domains = [\"registry.invalid-name.test\"]\n",
    );
    regapp.start();
    let log = first_failed_order(&regapp);
    assert!(
        log.contains("the CA could not validate registry.invalid-name.test over HTTP-01"),
        "{log}"
    );
    assert!(log.contains("resolves to this host"), "{log}");
    regapp.stop();
    pebble.stop();
}

#[test]
fn a_wrong_external_account_binding_is_named() {
    let http_port = free_port();
    let mut pebble = Pebble::start_with_eab(http_port);
    let wrong_key = "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH";
    let mut regapp = AcmeRegapp::configure(
        http_port,
        &pebble.directory,
        &pebble.listener_ca,
        &format!("eab_kid = \"{EAB_KID}\"\neab_hmac_key = \"{wrong_key}\"\n"),
    );
    regapp.start();
    let log = first_failed_order(&regapp);
    assert!(
        log.contains("the CA refused the account's External Account Binding"),
        "{log}"
    );
    assert!(log.contains("acme.eab_hmac_key"), "{log}");
    regapp.stop();
    pebble.stop();
}

#[test]
fn a_missing_external_account_binding_is_asked_for() {
    let http_port = free_port();
    let mut pebble = Pebble::start_with_eab(http_port);
    let mut regapp = AcmeRegapp::configure(http_port, &pebble.directory, &pebble.listener_ca, "");
    regapp.start();
    let log = first_failed_order(&regapp);
    assert!(
        log.contains("the CA requires External Account Binding"),
        "{log}"
    );
    assert!(
        log.contains("set acme.eab_kid and acme.eab_hmac_key"),
        "{log}"
    );
    regapp.stop();
    pebble.stop();
}

#[test]
fn the_right_external_account_binding_gets_a_certificate() {
    let http_port = free_port();
    let mut pebble = Pebble::start_with_eab(http_port);
    let root = pebble.issuing_root();
    let mut regapp = AcmeRegapp::configure(
        http_port,
        &pebble.directory,
        &pebble.listener_ca,
        &format!(
            "eab_kid = \"{EAB_KID}\"\neab_hmac_key = \"{}\"\n",
            super::EAB_KEY
        ),
    );
    regapp.start();
    wait_until_served(&regapp, &root, Instant::now(), Duration::from_secs(30));
    regapp.stop();
    pebble.stop();
}
