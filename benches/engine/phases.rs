//! The measured phases, each run against one registry at a time. A phase does its own untimed
//! set-up (a blob to HEAD, a manifest to GET), so any subset of phases can run.
//!
//! Every loop is bounded twice: by a count and by a time limit.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinSet;

use crate::catalog;
use crate::client::{Client, OCI_MANIFEST};
use crate::content::{slices, Blob};
use crate::options::{Phase, Sizes, MIB};
use crate::report::{Goal, Report, Unit};
use crate::server::{cpu_seconds_sum, own_cpu_seconds, RssSampler, Server};
use crate::{BenchError, BenchResult};

/// No push phase may take longer than this.
const PUSH_LIMIT: Duration = Duration::from_secs(900);
/// Nor a catalog walk.
const WALK_LIMIT: Duration = Duration::from_secs(900);
/// Requests per worker in a timed phase, whatever the duration.
const MAX_REQUESTS_PER_WORKER: u64 = 10_000_000;
/// Requests per worker before a timed phase starts: opens every connection.
const WARMUP_REQUESTS: u64 = 20;

/// Every blob one round of the phases pushes, made and hashed before anything is timed.
pub struct Content {
    pub big: Blob,
    pub parallel: Vec<Blob>,
    pub small: Vec<Blob>,
    /// A small layer for the manifest phase's image.
    pub layer: Blob,
}

/// Each round's blobs start this much further into the buffer, so no round pushes a blob that
/// an earlier round already stored (which both registries would skip writing).
pub const ROUND_SHIFT: usize = 4096;

impl Content {
    /// How many bytes of blobs `phase` pushes (0 for the phases that only read).
    pub fn bytes_written_by(&self, phase: Phase) -> u64 {
        let total = |blobs: &[Blob]| blobs.iter().map(Blob::len).sum();
        match phase {
            Phase::Push => self.big.len(),
            Phase::PushParallel => total(&self.parallel),
            Phase::PushSmall => total(&self.small),
            _ => 0,
        }
    }

    /// Slices round `round`'s blobs out of `buffer` (`sizes.buffer()` + a shift per round).
    pub fn new(buffer: &Bytes, sizes: &Sizes, round: usize) -> Content {
        let offset = round * ROUND_SHIFT;
        Content {
            big: Blob::new(buffer.slice(offset..offset + sizes.big)),
            parallel: slices(buffer, offset, sizes.parallel_count, sizes.parallel_size),
            small: slices(buffer, offset, sizes.small_count, sizes.small_size),
            layer: Blob::new(buffer.slice(offset + 1..offset + 1 + 4096)),
        }
    }
}

/// One registry under test and what earlier phases left in it.
pub struct Target {
    pub server: Server,
    pub client: Client,
    /// The digest of the big blob last pushed, which the pull phase fetches.
    big_pushed: Option<String>,
}

impl Target {
    pub fn new(server: Server, http2: bool) -> BenchResult<Target> {
        let client = Client::new(&server.base, &server.access, http2)?;
        Ok(Target {
            server,
            client,
            big_pushed: None,
        })
    }

    pub fn name(&self) -> &'static str {
        self.server.kind.name()
    }
}

/// Wall time, and the CPU the server and this client used meanwhile.
struct Usage {
    wall: Duration,
    server_cpu: f64,
    client_cpu: f64,
    /// The server's VmHWM once the work is done (a cluster's largest node), KiB: which phase
    /// raised the peak.
    peak_after: u64,
}

async fn measured<T>(
    server: &Server,
    work: impl Future<Output = BenchResult<T>>,
) -> BenchResult<(T, Usage)> {
    let pids = &server.pids()[..];
    let (server_before, client_before) = (cpu_seconds_sum(pids), own_cpu_seconds());
    let start = Instant::now();
    let value = work.await?;
    let usage = Usage {
        wall: start.elapsed(),
        server_cpu: cpu_seconds_sum(pids) - server_before,
        client_cpu: own_cpu_seconds() - client_before,
        peak_after: server.memory_kib("VmHWM"),
    };
    Ok((value, usage))
}

fn mib_per_s(bytes: u64, wall: Duration) -> f64 {
    bytes as f64 / MIB as f64 / wall.as_secs_f64()
}

/// The largest RSS seen during phase `phase`, against the memory targets.
fn record_rss(report: &mut Report, phase: u8, name: &str, rss_kib: u64) {
    let goal = report.goal(
        Goal::RegappAtMost(32.0),
        Goal::RegappAtMost(64.0),
        Goal::RegappAtMost(64.0),
    );
    let label = if report.cluster() {
        format!("max VmRSS of a node during phase {phase}")
    } else {
        format!("max VmRSS during phase {phase}")
    };
    report.record(&label, Unit::Mib, goal, name, rss_kib as f64 / 1024.0);
}

pub async fn run(
    phase: Phase,
    target: &mut Target,
    content: &Content,
    sizes: &Sizes,
    report: &mut Report,
) -> BenchResult<()> {
    let name = target.name();
    let server = &target.server;
    let client = target.client.clone();
    match phase {
        Phase::Push => {
            let label = format!("push 1 × {} MiB blob", content.big.len() / MIB as u64);
            let sampler = RssSampler::start(server.memory_groups());
            let ((), usage) = measured(server, async {
                tokio::time::timeout(PUSH_LIMIT, client.push_blob("bench/big", &content.big))
                    .await
                    .map_err(|_| "the big push timed out")?
            })
            .await?;
            let rss = sampler.finish();
            target.big_pushed = Some(content.big.digest.clone());
            report.record(
                &label,
                Unit::MibPerS,
                report.goal(
                    Goal::RatioAtLeast(2.5),
                    Goal::RatioAtLeast(3.0),
                    Goal::RatioAtLeast(2.0),
                ),
                name,
                mib_per_s(content.big.len(), usage.wall),
            );
            record_rss(report, 1, name, rss);
            record_usage(report, &label, name, &usage);
        }
        Phase::Pull => {
            if target.big_pushed.as_ref() != Some(&content.big.digest) {
                client.push_blob("bench/big", &content.big).await?;
                target.big_pushed = Some(content.big.digest.clone());
            }
            let label = format!("pull 1 × {} MiB blob", content.big.len() / MIB as u64);
            let sampler = RssSampler::start(server.memory_groups());
            let (received, usage) = measured(server, async {
                tokio::time::timeout(
                    PUSH_LIMIT,
                    client.pull_blob("bench/big", &content.big.digest, &content.big.data),
                )
                .await
                .map_err(|_| "the pull timed out")?
            })
            .await?;
            let rss = sampler.finish();
            if received != content.big.len() {
                return Err(format!("pulled {received} bytes of {}", content.big.len()).into());
            }
            report.record(
                &label,
                Unit::MibPerS,
                report.goal(
                    Goal::RatioAtLeast(1.0),
                    Goal::RatioAtLeast(2.0),
                    Goal::RatioAtLeast(1.5),
                ),
                name,
                mib_per_s(received, usage.wall),
            );
            record_rss(report, 2, name, rss);
            record_usage(report, &label, name, &usage);
        }
        Phase::PushParallel => {
            let blobs = &content.parallel;
            let label = format!(
                "push {} × {} MiB, concurrently",
                blobs.len(),
                sizes.parallel_size / MIB
            );
            let sampler = RssSampler::start(server.memory_groups());
            let (bytes, usage) = measured(
                server,
                push_all(&client, "bench/parallel", blobs, blobs.len()),
            )
            .await?;
            let rss = sampler.finish();
            report.record(
                &label,
                Unit::MibPerS,
                Goal::None,
                name,
                mib_per_s(bytes, usage.wall),
            );
            record_rss(report, 3, name, rss);
            record_usage(report, &label, name, &usage);
        }
        Phase::PushSmall => {
            let blobs = &content.small;
            let label = format!(
                "push {} × {} MiB, c={}",
                blobs.len(),
                sizes.small_size / MIB,
                sizes.concurrency
            );
            let (bytes, usage) = measured(
                server,
                push_all(&client, "bench/small", blobs, sizes.concurrency),
            )
            .await?;
            report.record(
                &label,
                Unit::MibPerS,
                report.goal(
                    Goal::RatioAtLeast(2.0),
                    Goal::RatioAtLeast(10.0),
                    Goal::RatioAtLeast(3.0),
                ),
                name,
                mib_per_s(bytes, usage.wall),
            );
            record_usage(report, &label, name, &usage);
        }
        Phase::HeadBlob => {
            let blob = &content.small[0];
            client.push_blob("bench/head", blob).await?;
            let digest: Arc<str> = blob.digest.as_str().into();
            let label = format!("HEAD blob, c={}", sizes.concurrency);
            let op = move |c: Client| {
                let digest = Arc::clone(&digest);
                async move { c.head_blob("bench/head", &digest).await }
            };
            let (count, usage) = timed(&client, server, sizes, op).await?;
            report.record(
                &label,
                Unit::ReqPerS,
                report.goal(
                    Goal::RatioAtLeast(10.0),
                    Goal::RatioAtLeastBoth(100.0, 3.0),
                    Goal::RatioAtLeast(10.0),
                ),
                name,
                count as f64 / usage.wall.as_secs_f64(),
            );
            record_usage(report, &label, name, &usage);
        }
        Phase::GetManifest => {
            let config = image_config("");
            let manifest =
                push_image(&client, "bench/manifest", "v1", &config, &content.layer).await?;
            let got = client.manifest("bench/manifest", "v1").await?;
            if got != manifest {
                return Err("GET manifest answered other bytes than were pushed".into());
            }
            let label = format!("GET manifest by tag, c={}", sizes.concurrency);
            let op = |c: Client| async move { c.manifest("bench/manifest", "v1").await.map(drop) };
            let (count, usage) = timed(&client, server, sizes, op).await?;
            report.record(
                &label,
                Unit::ReqPerS,
                report.goal(
                    Goal::RatioAtLeast(8.0),
                    Goal::RatioAtLeastBoth(100.0, 3.0),
                    Goal::RatioAtLeast(10.0),
                ),
                name,
                count as f64 / usage.wall.as_secs_f64(),
            );
            record_usage(report, &label, name, &usage);
        }
        Phase::Catalog => {
            for page in [100, 1000] {
                let label = format!("catalog walk, {} repos, n={page}", sizes.repositories);
                let max_pages = sizes.repositories / page + 100;
                let (walk, usage) =
                    measured(server, catalog::walk(&client, page, max_pages, WALK_LIMIT)).await?;
                if walk.names < sizes.repositories {
                    return Err(format!(
                        "{name}: the catalog walk at n={page} saw {} names, fewer than the {} seeded",
                        walk.names, sizes.repositories
                    )
                    .into());
                }
                report.record(
                    &label,
                    Unit::Seconds,
                    Goal::RatioAtMost(0.1),
                    name,
                    walk.total.as_secs_f64(),
                );
                report.record(
                    &format!("  first page of that walk (n={page})"),
                    Unit::Seconds,
                    Goal::None,
                    name,
                    walk.first_page.as_secs_f64(),
                );
                report.note(format!(
                    "{name}: catalog n={page}: {} names in {} pages",
                    walk.names, walk.pages
                ));
                record_usage(report, &label, name, &usage);
            }
        }
    }
    Ok(())
}

fn record_usage(report: &mut Report, label: &str, name: &'static str, usage: &Usage) {
    report.usage(
        label,
        name,
        usage.wall.as_secs_f64(),
        usage.server_cpu,
        usage.client_cpu,
        usage.peak_after as f64 / 1024.0,
    );
}

/// Pushes every blob with `workers` concurrent pushes; returns the bytes pushed.
async fn push_all(
    client: &Client,
    repo: &'static str,
    blobs: &[Blob],
    workers: usize,
) -> BenchResult<u64> {
    let blobs: Arc<Vec<Blob>> = Arc::new(blobs.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + PUSH_LIMIT;
    let mut tasks = JoinSet::new();
    for _ in 0..workers.min(blobs.len()) {
        let (client, blobs, next) = (client.clone(), Arc::clone(&blobs), Arc::clone(&next));
        tasks.spawn(async move {
            let mut pushed = 0;
            // Bounded by the number of blobs (each index is taken once) and by the deadline.
            while let Some(blob) = blobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                if Instant::now() > deadline {
                    return Err::<u64, BenchError>("the pushes took too long".into());
                }
                client.push_blob(repo, blob).await?;
                pushed += blob.len();
            }
            Ok(pushed)
        });
    }
    let mut total = 0;
    while let Some(result) = tasks.join_next().await {
        total += result??;
    }
    Ok(total)
}

/// Runs `op` from `sizes.concurrency` workers for `sizes.timed`; returns the operations done.
async fn timed<F, Fut>(
    client: &Client,
    server: &Server,
    sizes: &Sizes,
    op: F,
) -> BenchResult<(u64, Usage)>
where
    F: Fn(Client) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = BenchResult<()>> + Send + 'static,
{
    let run = |requests: u64, duration: Duration| {
        let mut tasks = JoinSet::new();
        let deadline = Instant::now() + duration;
        for _ in 0..sizes.concurrency {
            let (client, op) = (client.clone(), op.clone());
            tasks.spawn(async move {
                let mut done = 0;
                while done < requests && Instant::now() < deadline {
                    op(client.clone()).await?;
                    done += 1;
                }
                Ok::<u64, BenchError>(done)
            });
        }
        async move {
            let mut total = 0;
            while let Some(result) = tasks.join_next().await {
                total += result??;
            }
            Ok::<u64, BenchError>(total)
        }
    };
    run(WARMUP_REQUESTS, sizes.timed).await?;
    measured(server, run(MAX_REQUESTS_PER_WORKER, sizes.timed)).await
}

/// An image config; `variant` makes it another blob.
pub fn image_config(variant: &str) -> Blob {
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "variant": variant,
        "rootfs": { "type": "layers", "diff_ids": [] },
    });
    Blob::new(Bytes::from(config.to_string()))
}

/// Pushes a one-layer OCI image (`config`, then `layer`) and tags it; returns the manifest's
/// bytes.
pub async fn push_image(
    client: &Client,
    repo: &str,
    tag: &str,
    config: &Blob,
    layer: &Blob,
) -> BenchResult<Bytes> {
    client.push_blob(repo, config).await?;
    client.push_blob(repo, layer).await?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer.digest,
            "size": layer.len(),
        }],
        "annotations": { "org.opencontainers.image.title": "regapp engine benchmark" },
    });
    let manifest = Bytes::from(serde_json::to_vec_pretty(&manifest)?);
    client.put_manifest(repo, tag, manifest.clone()).await?;
    Ok(manifest)
}
