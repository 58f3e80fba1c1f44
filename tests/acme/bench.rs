//! The ACME benchmark (issue 4): time from process start to the first certificate served,
//! against pebble, beside certbot (Debian's 2.1, `--standalone`) doing the same order.
//!
//! Run: `cargo test --test tests acme::bench -- --ignored --nocapture` (needs `certbot`).
//! Each round starts from an empty state (new account, new order) for both clients. regapp's
//! time ends when a TLS handshake on :443 trusting only pebble's root succeeds; certbot's when
//! `certbot certonly` exits with the certificate written (it serves nothing itself, so its real
//! figure would also include a web server reload).

use std::process::Command;
use std::time::{Duration, Instant};

use super::{wait_until_served, AcmeRegapp, Pebble};
use crate::edge::free_port;

const ROUNDS: usize = 5;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[test]
#[ignore = "benchmark: cargo test --test tests acme::bench -- --ignored --nocapture"]
fn first_certificate_regapp_beside_certbot() {
    let http_port = free_port();
    let mut pebble = Pebble::start(http_port);
    let root = pebble.issuing_root();

    let mut regapp_times = Vec::new();
    for _ in 0..ROUNDS {
        let mut regapp =
            AcmeRegapp::configure(http_port, &pebble.directory, &pebble.listener_ca, "");
        let started = Instant::now();
        regapp.start();
        let (_, took) = wait_until_served(&regapp, &root, started, Duration::from_secs(30));
        regapp.stop();
        regapp_times.push(took);
    }

    let mut certbot_times = Vec::new();
    for _ in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let d = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        let started = Instant::now();
        let out = Command::new("certbot")
            .args([
                "certonly",
                "--standalone",
                "--non-interactive",
                "--agree-tos",
                "--register-unsafely-without-email",
                "--server",
                &pebble.directory,
                "--http-01-port",
                &http_port.to_string(),
                "--http-01-address",
                "127.0.0.1",
                "-d",
                "localhost",
                "--config-dir",
                &d("config"),
                "--work-dir",
                &d("work"),
                "--logs-dir",
                &d("logs"),
            ])
            .env("REQUESTS_CA_BUNDLE", &pebble.listener_ca)
            .output()
            .expect("certbot runs (apt-get install certbot)");
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "certbot: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(dir
            .path()
            .join("config/live/localhost/fullchain.pem")
            .exists());
        certbot_times.push(took);
    }
    pebble.stop();

    let (regapp, certbot) = (median(regapp_times.clone()), median(certbot_times.clone()));
    println!("ACME first certificate, {ROUNDS} rounds against pebble (median):");
    println!("  regapp  (start → TLS handshake with the new certificate)  {regapp:>10.3?}   all: {regapp_times:.3?}");
    println!("  certbot (start → certificate written, --standalone)       {certbot:>10.3?}   all: {certbot_times:.3?}");
    println!(
        "  regapp / certbot = {:.2}",
        regapp.as_secs_f64() / certbot.as_secs_f64()
    );
}
