//! Running as a service: `/metrics` counters that move with traffic (checked by Prometheus's
//! own `promtool`), `/healthz` and `/readyz` that flip with the storage and the certificate,
//! SIGHUP reloads of regapp.toml, systemd's notifications over a real datagram socket, and
//! `check-config`'s exit codes.

use std::time::Duration;

mod health;
mod logs;
mod metrics;
mod notify;
mod reload;

/// GET `http://127.0.0.1:{port}{path}` → (status, body).
pub fn get(port: u16, path: &str) -> (u16, String) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .unwrap_or_else(|e| panic!("GET {path} on :{port}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().unwrap())
}

/// The value of one sample, `name{labels}` exactly as exposed (0 when absent).
pub fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
        .unwrap_or(0.0)
}
