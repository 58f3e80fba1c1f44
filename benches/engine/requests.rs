//! S3 requests per registry operation, as SeaweedFS's S3 gateway counts them
//! (`SeaweedFS_s3_request_total` by request type and status, on a Prometheus port the bench
//! turns on by starting `weed` through a wrapper that adds `-metricsPort`). After the phases,
//! each registry in the bucket does each operation [`REPEAT`] times, one at a time, while the
//! others idle; the counters' difference over the repeats is the cost of one. An idle second
//! is counted the same way, to show what background work adds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use http::{Method, StatusCode};

use crate::client::Client;
use crate::content::{pseudo_random, Blob, ReqBody};
use crate::phases::{image_config, push_image, Target};
use crate::server::free_port;
use crate::tls::Access;
use crate::BenchResult;

/// How many times each operation runs; the table shows the mean.
const REPEAT: u64 = 10;

/// SeaweedFS's request counters, from the port the wrapper gave it.
pub struct Counter {
    metrics: Client,
}

/// Request type (and status, unless 2xx) → how many so far.
type Counts = BTreeMap<String, f64>;

impl Counter {
    /// Points the SeaweedFS harness (`REGAPP_WEED`) at a wrapper in `dir` that runs the real
    /// `weed` with metrics on a free port. Call before SeaweedFS starts.
    pub fn enable(dir: &Path) -> BenchResult<Counter> {
        let weed = std::env::var_os("REGAPP_WEED").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/weed"),
            Into::into,
        );
        let port = free_port()?;
        let wrapper = dir.join("weed-with-metrics");
        // The harness gives flags only, so ours may follow them.
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec '{}' \"$@\" -metricsIp=127.0.0.1 -metricsPort={port}\n",
                weed.to_str().ok_or("the weed path is not UTF-8")?
            ),
        )?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
        // Set before any thread that reads the environment starts (SeaweedFS has not yet).
        std::env::set_var("REGAPP_WEED", &wrapper);
        let metrics = Client::new(
            &format!("http://127.0.0.1:{port}"),
            &Access::default(),
            false,
        )?;
        Ok(Counter { metrics })
    }

    async fn counts(&self) -> BenchResult<Counts> {
        let answer = self
            .metrics
            .call(Method::GET, "/metrics", &[], ReqBody::Empty)
            .await?;
        if answer.status != StatusCode::OK {
            return Err(format!("SeaweedFS metrics: {}", answer.status).into());
        }
        let mut counts = Counts::new();
        let text = String::from_utf8_lossy(&answer.body);
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("SeaweedFS_s3_request_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let label = |name: &str| {
                labels
                    .split(',')
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix("=\"")?.strip_suffix('"'))
            };
            let (kind, code) = (label("type").unwrap_or("?"), label("code").unwrap_or("?"));
            let key = if code.starts_with('2') {
                kind.to_owned()
            } else {
                format!("{kind} {code}")
            };
            *counts.entry(key).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
        }
        Ok(counts)
    }

    /// Runs `op` [`REPEAT`] times (given the repeat's number); the requests per run.
    async fn per_op<F, Fut>(&self, op: F) -> BenchResult<Counts>
    where
        F: Fn(u64) -> Fut,
        Fut: Future<Output = BenchResult<()>>,
    {
        let before = self.counts().await?;
        for n in 0..REPEAT {
            op(n).await?;
        }
        let mut after = self.counts().await?;
        for (key, value) in after.iter_mut() {
            *value = (*value - before.get(key).copied().unwrap_or(0.0)) / REPEAT as f64;
        }
        after.retain(|_, v| *v > 0.0);
        Ok(after)
    }
}

/// One cell: the total and its parts, e.g. `6.0 (GET 2, HEAD 3, PUT 1)`.
fn cell(counts: &Counts) -> String {
    if counts.is_empty() {
        return "0".to_owned();
    }
    let total: f64 = counts.values().sum();
    let parts: Vec<String> = counts
        .iter()
        .map(|(k, v)| format!("{k} {}", trim(*v)))
        .collect();
    format!("{} ({})", trim(total), parts.join(", "))
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_owned)
}

/// The table of S3 requests per operation for each target in the bucket, Markdown.
pub async fn census(counter: &Counter, targets: &[&Target]) -> BenchResult<String> {
    const REPO: &str = "census/image";
    let names: Vec<&str> = targets.iter().map(|t| t.name()).collect();
    let mut rows: Vec<(&str, Vec<String>)> = [
        "push an image (config, one 4 KiB layer, manifest by tag)",
        "pull it (GET manifest by tag, GET config, GET layer)",
        "HEAD a blob",
        "GET manifest by tag",
        "nothing, 1 s (background work)",
    ]
    .into_iter()
    .map(|label| (label, Vec::new()))
    .collect();
    for target in targets {
        let client = &target.client;
        // Each repeat pushes an image of its own: nothing is there yet.
        let images: Vec<(Blob, Blob)> = (0..REPEAT)
            .map(|n| {
                let layer = Blob::new(pseudo_random(4096, 0xCE45_0000 + n));
                (image_config(&format!("census-{n}")), layer)
            })
            .collect();
        let images = &images;
        let tag = |n: u64| format!("c{n}");
        let push = counter
            .per_op(|n| async move {
                let (config, layer) = &images[n as usize];
                push_image(client, REPO, &tag(n), config, layer)
                    .await
                    .map(drop)
            })
            .await?;
        let pull = counter
            .per_op(|n| async move {
                let (config, layer) = &images[n as usize];
                client.manifest(REPO, &tag(n)).await?;
                for blob in [config, layer] {
                    client.pull_blob(REPO, &blob.digest, &blob.data).await?;
                }
                Ok(())
            })
            .await?;
        let head = counter
            .per_op(|n| async move { client.head_blob(REPO, &images[n as usize].1.digest).await })
            .await?;
        let manifest = counter
            .per_op(|_| async { client.manifest(REPO, &tag(0)).await.map(drop) })
            .await?;
        let idle = counter
            .per_op(|_| async {
                tokio::time::sleep(Duration::from_millis(1000 / REPEAT)).await;
                Ok(())
            })
            .await?;
        let idle: Counts = idle
            .into_iter()
            .map(|(k, v)| (k, v * REPEAT as f64))
            .collect();
        for (row, counts) in rows.iter_mut().zip([push, pull, head, manifest, idle]) {
            row.1.push(cell(&counts));
        }
    }
    let mut out = format!(
        "| S3 requests per operation (mean of {REPEAT}) | {} |\n|---|{}\n",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for (label, cells) in rows {
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    }
    Ok(out)
}
