//! `--mirror` (issue 33): pulls through a pull-through cache, regapp's `[[mirror]]` beside
//! docker-registry's proxy mode, against one upstream: Debian's docker-registry on plain HTTP
//! without auth (the proxy speaks only Bearer upstream), holding one image with a 512 MiB layer
//! of incompressible bytes (`big/app:1`) and 100 small ones (`small/i0..i99:1`, a config and a
//! 100 KiB layer each, every blob distinct).
//!
//! Every round starts regapp (`[[mirror]] name = "up"`, prefix `up`, everything else default)
//! and the proxy (`proxy.remoteurl`) on fresh roots, then for the big image and for the small
//! ones: the pull from the upstream directly (cold and warm are the same there), a cold pull
//! through each cache, a wait until each cache holds what it fetched (timed: the store's side
//! of a cold pull, which the client does not wait for), and a warm pull through each. A pull is
//! what a client does: the manifest by tag with containerd's `Accept`, then the config and the
//! layer, whole bodies compared with the bytes pushed; the small images 8 at a time. The
//! upstream's access log tells how many requests and bytes each pull cost it. The caches take
//! turns going first; the table shows the median of the rounds.
//!
//! The table is this module's own: the engine's `Report` is keyed by its registry kinds and
//! compares the first column with each other, while here regapp is held to the proxy and to
//! the upstream with other targets per row.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;

use crate::client::Client;
use crate::content::{pseudo_random, slices, Blob};
use crate::options::{Options, MIB};
use crate::phases::{image_config, push_image};
use crate::server::{
    answers_v2, cpu_seconds_sum, free_port, own_cpu_seconds, path_str, toml_string, Kind, Server,
};
use crate::tls::Access;
use crate::BenchResult;

/// Every image's one tag.
const TAG: &str = "1";
/// regapp's `[[mirror]]` prefix: `up/big/app` is the upstream's `big/app`.
const PREFIX: &str = "up";
/// [`PREFIX`] and a slash: how regapp's clients name the upstream's repositories.
const UNDER_PREFIX: &str = "up/";
/// Small images pulled (and pushed) at once.
const CONCURRENCY: usize = 8;
const SMALL_LAYER: usize = 100 * 1024;
/// No pull of a workload may take longer, nor a cache to finish storing what it fetched.
const LIMIT: Duration = Duration::from_secs(600);

/// Issue 33's targets: regapp against the proxy (cold, warm) and cold against the upstream.
const COLD_VS_PROXY: f64 = 1.0;
const WARM_VS_PROXY: f64 = 2.0;
const COLD_VS_DIRECT: f64 = 0.8;

/// One image in the upstream: what a pull must get back.
struct Image {
    /// The upstream's name (`big/app`).
    repo: String,
    config: Blob,
    layer: Blob,
    /// Filled when it is pushed.
    manifest: Bytes,
}

/// A set of images pulled together, and how its rate is counted.
struct Workload {
    /// `1 image, 512 MiB layer`
    what: String,
    images: Vec<Image>,
    concurrency: usize,
    /// MiB/s of the whole images, or images/s.
    per_byte: bool,
}

impl Workload {
    fn unit(&self) -> &'static str {
        if self.per_byte {
            "MiB/s"
        } else {
            "images/s"
        }
    }

    fn rate(&self, wall: f64) -> f64 {
        if self.per_byte {
            let bytes: usize = self
                .images
                .iter()
                .map(|i| i.manifest.len() + i.config.data.len() + i.layer.data.len())
                .sum();
            bytes as f64 / MIB as f64 / wall
        } else {
            self.images.len() as f64 / wall
        }
    }
}

/// The big image and the small ones, content made and hashed before anything is timed.
fn workloads(quick: bool) -> [Workload; 2] {
    let (big, count) = if quick {
        (64 * MIB, 20)
    } else {
        (512 * MIB, 100)
    };
    let buffer = pseudo_random(big + count * SMALL_LAYER, 0x0033_3133);
    let image = |repo: String, config: Blob, layer: Blob| Image {
        repo,
        config,
        layer,
        manifest: Bytes::new(),
    };
    let big_image = image(
        "big/app".into(),
        image_config("mirror-big"),
        Blob::new(buffer.slice(..big)),
    );
    let small = slices(&buffer, big, count, SMALL_LAYER)
        .into_iter()
        .enumerate()
        .map(|(i, layer)| {
            image(
                format!("small/i{i}"),
                image_config(&format!("mirror-small-{i}")),
                layer,
            )
        })
        .collect();
    [
        Workload {
            what: format!("1 image, {} MiB layer", big / MIB),
            images: vec![big_image],
            concurrency: 1,
            per_byte: true,
        },
        Workload {
            what: format!(
                "{count} images × {} KiB, c={CONCURRENCY}",
                SMALL_LAYER / 1024
            ),
            images: small,
            concurrency: CONCURRENCY,
            per_byte: false,
        },
    ]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Column {
    Regapp,
    Proxy,
    Direct,
}

impl Column {
    const ALL: [Column; 3] = [Column::Regapp, Column::Proxy, Column::Direct];

    fn name(self) -> &'static str {
        match self {
            Column::Regapp => "regapp",
            Column::Proxy => "docker-registry proxy",
            Column::Direct => "upstream direct",
        }
    }
}

/// A way to pull: a server, its client, and the name it gives the upstream's repositories.
struct Via<'a> {
    column: Column,
    server: &'a Server,
    client: Client,
    /// `up/` for regapp, nothing for the proxy and the upstream.
    prefix: &'static str,
    /// The storage root, for the caches: where to see that a fetch is stored.
    root: Option<PathBuf>,
}

impl<'a> Via<'a> {
    fn new(
        column: Column,
        server: &'a Server,
        prefix: &'static str,
        root: Option<PathBuf>,
    ) -> BenchResult<Via<'a>> {
        Ok(Via {
            column,
            server,
            client: Client::new(&server.base, &Access::default(), false)?,
            prefix,
            root,
        })
    }

    /// Whether the cache holds every blob of `images`, linked into the repository, in the
    /// registry:2 layout both caches write.
    fn holds(&self, images: &[Image]) -> bool {
        let Some(root) = &self.root else { return true };
        let v2 = root.join("docker/registry/v2");
        images.iter().all(|image| {
            [&image.config, &image.layer].into_iter().all(|blob| {
                let hex = blob.digest.trim_start_matches("sha256:");
                let data = v2.join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]));
                let link = v2.join(format!(
                    "repositories/{}{}/_layers/sha256/{hex}/link",
                    self.prefix, image.repo
                ));
                fs::metadata(&data).is_ok_and(|m| m.len() == blob.len()) && link.is_file()
            })
        })
    }
}

pub fn run(options: &Options, run_dir: &Path, regapp: &Path) -> BenchResult<()> {
    let started = Instant::now();
    let mut workloads = workloads(options.quick);
    println!(
        "mirror{}: {}; {}; {} round(s)",
        if options.quick { " (quick)" } else { "" },
        workloads[0].what,
        workloads[1].what,
        options.rounds
    );
    eprintln!(
        "content made and hashed in {:.1?} (not timed)",
        started.elapsed()
    );
    let upstream = Server::start_node(
        Kind::DockerRegistry,
        &run_dir.join("upstream"),
        regapp,
        None,
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let pusher = Client::new(&upstream.base, &Access::default(), false)?;
    runtime.block_on(push(&pusher, &mut workloads))?;
    eprintln!("upstream filled in {:.1?} (not timed)", started.elapsed());

    let log = AccessLog(run_dir.join("upstream/stdout.log"));
    let mut results = Results::default();
    let machine_before = crate::machine_cpu();
    for round in 0..options.rounds {
        let dir = run_dir.join(format!("round-{}", round + 1));
        let mut cache = start_regapp(&dir.join("regapp"), regapp, &upstream.base)?;
        let mut proxy = start_proxy(&dir.join("proxy"), &upstream.base)?;
        {
            let mut caches = vec![
                Via::new(
                    Column::Regapp,
                    &cache,
                    UNDER_PREFIX,
                    Some(dir.join("regapp/data")),
                )?,
                Via::new(Column::Proxy, &proxy, "", Some(dir.join("proxy/data")))?,
            ];
            // Whoever goes first may find a quieter machine: take turns.
            if round % 2 == 1 {
                caches.reverse();
            }
            let direct = Via::new(Column::Direct, &upstream, "", None)?;
            let pulls = Pulls {
                round,
                upstream: &upstream,
                log: &log,
                scratch: run_dir,
                recycle_pages: options.recycle_pages,
            };
            runtime.block_on(async {
                for workload in &workloads {
                    pulls
                        .workload(workload, &direct, &caches, &mut results)
                        .await?;
                }
                BenchResult::Ok(())
            })?;
            for via in &caches {
                let hwm = via.server.memory_kib("VmHWM") as f64 / 1024.0;
                results.record_peak(MEMORY, via.column, hwm);
            }
        }
        cache.stop();
        proxy.stop();
        fs::remove_dir_all(&dir)?;
    }
    let machine = crate::machine_cpu() - machine_before;
    let measured: f64 = results.usage.iter().map(UsageRow::cpu).sum();
    println!("\n## Results\n\n{}", results.table());
    println!(
        "## Where the CPU went (sums over the rounds)\n\n{}",
        results.cpu()
    );
    println!(
        "- CPU time of the whole machine during the rounds: {machine:.1} s busy, of which \
         {measured:.1} s were the servers and this client while pulls ran; the rest was \
         starting servers, storing fetched content after a cold pull, recycling pages, \
         writeback and any other process"
    );
    Ok(())
}

const MEMORY: &str = "peak RSS (VmHWM) at the end of a round";

/// Pushes every image into the upstream, as docker pushes (blobs, then the manifest by tag),
/// the small ones 8 at a time; keeps each manifest's bytes.
async fn push(client: &Client, workloads: &mut [Workload]) -> BenchResult<()> {
    for workload in workloads {
        let pushes = workload.images.iter_mut().map(|image| async move {
            image.manifest =
                push_image(client, &image.repo, TAG, &image.config, &image.layer).await?;
            BenchResult::Ok(())
        });
        let results: Vec<_> = futures_util::stream::iter(pushes)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect::<BenchResult<Vec<()>>>()?;
    }
    Ok(())
}

/// One round's pulls.
struct Pulls<'a> {
    round: usize,
    upstream: &'a Server,
    log: &'a AccessLog,
    /// Where the page-cache scratch file goes.
    scratch: &'a Path,
    recycle_pages: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pull {
    /// From the upstream: what the cold and the warm pulls are compared with.
    Direct,
    /// Through a cache that has nothing yet.
    Cold,
    /// Through a cache that has it all.
    Warm,
}

impl Pull {
    fn name(self) -> &'static str {
        match self {
            Pull::Direct => "direct",
            Pull::Cold => "cold",
            Pull::Warm => "warm",
        }
    }
}

impl Pulls<'_> {
    /// The direct pull, then a cold pull through each cache, then a warm pull through each.
    async fn workload(
        &self,
        workload: &Workload,
        direct: &Via<'_>,
        caches: &[Via<'_>],
        results: &mut Results,
    ) -> BenchResult<()> {
        self.pull(workload, direct, Pull::Direct, results).await?;
        for via in caches {
            self.pull(workload, via, Pull::Cold, results).await?;
        }
        for via in caches {
            self.pull(workload, via, Pull::Warm, results).await?;
        }
        Ok(())
    }

    /// Pulls every image of `workload` through `via`, and records the rate, the CPU it took
    /// and what the upstream served for it; after a cold pull, waits until the cache holds
    /// everything (and records how long that took).
    async fn pull(
        &self,
        workload: &Workload,
        via: &Via<'_>,
        pull: Pull,
        results: &mut Results,
    ) -> BenchResult<()> {
        if pull == Pull::Cold && self.recycle_pages {
            // What the cold pull writes (regapp: the spool and the store), on pages just in
            // use: see `pagecache.rs`.
            let bytes: u64 = workload
                .images
                .iter()
                .map(|i| i.config.len() + i.layer.len())
                .sum();
            crate::pagecache::recycle(self.scratch, 2 * bytes + 64 * MIB as u64)?;
        }
        // Writes an earlier pull left in the page cache must not slow this one.
        crate::flush_disk();
        let served = self.log.served();
        let pids = via.server.pids();
        let upstream = if pull == Pull::Direct {
            Vec::new()
        } else {
            self.upstream.pids()
        };
        let before = (
            cpu_seconds_sum(&pids),
            cpu_seconds_sum(&upstream),
            own_cpu_seconds(),
        );
        let started = Instant::now();
        let pulls = workload.images.iter().map(|image| {
            let repo = format!("{}{}", via.prefix, image.repo);
            async move { pull_image(&via.client, &repo, image).await }
        });
        let all = futures_util::stream::iter(pulls)
            .buffer_unordered(workload.concurrency)
            .collect::<Vec<_>>();
        let (name, what, through) = (pull.name(), &workload.what, via.column.name());
        let done = tokio::time::timeout(LIMIT, all)
            .await
            .map_err(|_| format!("{name} pull through {through} timed out"))?;
        done.into_iter().collect::<BenchResult<Vec<()>>>()?;
        let wall = started.elapsed().as_secs_f64();
        eprintln!(
            "round {}: {name} pull of {what} through {through}: {wall:.2} s",
            self.round + 1
        );
        results.usage(UsageRow {
            label: format!("{name}, {what}"),
            column: via.column,
            rounds: 1,
            wall,
            server: cpu_seconds_sum(&pids) - before.0,
            upstream: cpu_seconds_sum(&upstream) - before.1,
            client: own_cpu_seconds() - before.2,
        });
        // The direct pull stands for both in the direct column.
        let rows: &[Pull] = match pull {
            Pull::Direct => &[Pull::Cold, Pull::Warm],
            _ => std::slice::from_ref(&pull),
        };
        let (unit, rate) = (workload.unit(), workload.rate(wall));
        for &row in rows {
            let goal = if row == Pull::Cold {
                Goal::Cold
            } else {
                Goal::Warm
            };
            let label = format!("{} pull, {what}", row.name());
            results.record(&label, unit, goal, via.column, rate);
        }
        if pull == Pull::Cold {
            let started = Instant::now();
            while !via.holds(&workload.images) {
                if started.elapsed() > LIMIT {
                    return Err(format!("{through} did not store the images").into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let label = format!("cache complete after the cold pull, {what}");
            let seconds = started.elapsed().as_secs_f64();
            results.record(&label, "s", Goal::None, via.column, seconds);
        }
        // The upstream logs a request once it has answered it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = self.log.served();
        let requests = (now.requests - served.requests) as f64 / workload.images.len() as f64;
        let sent = (now.bytes - served.bytes) as f64 / MIB as f64;
        for &row in rows {
            let label = format!("upstream requests per image, {} pull, {what}", row.name());
            results.record(&label, "requests", Goal::None, via.column, requests);
            if row == Pull::Cold {
                let label = format!("upstream MiB sent, cold pull, {what}");
                results.record(&label, "MiB", Goal::None, via.column, sent);
            }
        }
        Ok(())
    }
}

/// The upstream's access log: docker-registry writes a line per request to its stdout,
/// `… "GET /v2/big/app/blobs/sha256:… HTTP/1.1" 200 536870912 "" "…"`.
struct AccessLog(PathBuf);

/// What the upstream answered so far.
#[derive(Default)]
struct Served {
    requests: usize,
    bytes: u64,
}

impl AccessLog {
    fn served(&self) -> Served {
        let text = fs::read_to_string(&self.0).unwrap_or_default();
        let mut served = Served::default();
        for line in text.lines() {
            // The status and the size follow the quoted request line.
            let Some(after) = line.split('"').nth(2) else {
                continue;
            };
            served.requests += 1;
            let size = after.split_whitespace().nth(1);
            served.bytes += size.and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        }
        served
    }
}

/// A client's pull: the manifest by tag (containerd's `Accept`), then the config and the
/// layer; every body read whole and compared with what was pushed.
async fn pull_image(client: &Client, repo: &str, image: &Image) -> BenchResult<()> {
    let manifest = client.manifest(repo, TAG).await?;
    if manifest != image.manifest {
        return Err(format!("{repo}:{TAG}: another manifest than the one pushed").into());
    }
    for blob in [&image.config, &image.layer] {
        let got = client.pull_blob(repo, &blob.digest, &blob.data).await?;
        if got != blob.len() {
            let digest = &blob.digest;
            return Err(format!("{repo}@{digest}: {got} bytes of {}", blob.len()).into());
        }
    }
    Ok(())
}

/// regapp's engine alone on plain HTTP with one `[[mirror]]` of `upstream`, root `dir/data`.
fn start_regapp(dir: &Path, regapp: &Path, upstream: &str) -> BenchResult<Server> {
    let root = dir.join("data");
    fs::create_dir_all(&root)?;
    let port = free_port()?;
    let config = dir.join("regapp.toml");
    let text = format!(
        "[storage]\nroot = {}\n\n[engine]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\n\
         [[mirror]]\nname = \"up\"\nurl = {}\nprefix = \"{PREFIX}\"\n",
        toml_string(path_str(&root)?),
        toml_string(upstream),
    );
    fs::write(&config, text)?;
    let mut command = Command::new(regapp);
    command.arg("serve").arg("--config").arg(&config);
    command.env("REGAPP_LOG", "error");
    spawn(Kind::Regapp, command, dir, port)
}

/// docker-registry in proxy mode for `upstream`, root `dir/data`.
fn start_proxy(dir: &Path, upstream: &str) -> BenchResult<Server> {
    let root = dir.join("data");
    fs::create_dir_all(&root)?;
    let port = free_port()?;
    let config = dir.join("config.yml");
    // JSON strings are valid YAML scalars, which takes care of quoting.
    let yaml = format!(
        "version: 0.1\nlog:\n  level: error\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n\
         http:\n  addr: 127.0.0.1:{port}\n\
         proxy:\n  remoteurl: {}\n",
        serde_json::Value::from(path_str(&root)?),
        serde_json::Value::from(upstream),
    );
    fs::write(&config, yaml)?;
    let mut command = Command::new("docker-registry");
    command.arg("serve").arg(&config);
    // It reads REGISTRY_* variables as config overrides; keep the caller's out.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("REGISTRY_") {
            command.env_remove(key);
        }
    }
    spawn(Kind::DockerRegistry, command, dir, port)
}

/// Starts `command` logging into `dir`; waits until `GET /v2/` answers 200 on `port`.
fn spawn(kind: Kind, mut command: Command, dir: &Path, port: u16) -> BenchResult<Server> {
    let log = dir.join("server.log");
    let child = command
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("stdout.log"))?)
        .stderr(File::create(&log)?)
        .spawn()
        .map_err(|e| format!("cannot start {:?} ({e})", command.get_program()))?;
    let mut server = Server::spawned(kind, child, log);
    let address = format!("127.0.0.1:{port}");
    server.wait_for(|| answers_v2(&address).then_some(()))?;
    server.base = format!("http://{address}");
    Ok(server)
}

/// A row's target.
#[derive(Clone, Copy)]
enum Goal {
    None,
    /// regapp ≥ [`COLD_VS_PROXY`] × the proxy and ≥ [`COLD_VS_DIRECT`] × the upstream.
    Cold,
    /// regapp ≥ [`WARM_VS_PROXY`] × the proxy.
    Warm,
}

struct Row {
    label: String,
    unit: &'static str,
    goal: Goal,
    /// Summed up by the largest value (memory), not the median.
    peak: bool,
    /// One value per round, per column (in [`Column::ALL`] order).
    values: [Vec<f64>; 3],
}

impl Row {
    /// The median, or for memory the maximum.
    fn summary(&self, column: Column) -> Option<f64> {
        let mut values = self.values[column as usize].clone();
        values.sort_by(f64::total_cmp);
        let n = values.len();
        match n {
            0 => None,
            _ if self.peak => Some(values[n - 1]),
            _ if n % 2 == 1 => Some(values[n / 2]),
            _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
        }
    }

    fn format(&self, value: f64) -> String {
        if self.unit == "s" {
            format!("{value:.3}")
        } else {
            format!("{value:.1}")
        }
    }

    /// The summary with the range of the rounds.
    fn cell(&self, column: Column) -> String {
        let Some(summary) = self.summary(column) else {
            return "–".to_owned();
        };
        let values = &self.values[column as usize];
        let mut cell = self.format(summary);
        if values.len() > 1 {
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let _ = write!(cell, " ({}–{})", self.format(min), self.format(max));
        }
        cell
    }

    /// regapp / `other`, of the summaries.
    fn ratio(&self, other: Column) -> Option<f64> {
        let (a, b) = (self.summary(Column::Regapp)?, self.summary(other)?);
        (b > 0.0).then(|| a / b)
    }
}

/// Wall time and CPU of one kind of pull through one way, added up over the rounds.
struct UsageRow {
    label: String,
    column: Column,
    rounds: usize,
    wall: f64,
    server: f64,
    /// The upstream behind a cache (none for direct pulls, where it is the server).
    upstream: f64,
    client: f64,
}

impl UsageRow {
    fn cpu(&self) -> f64 {
        self.server + self.upstream + self.client
    }
}

#[derive(Default)]
struct Results {
    rows: Vec<Row>,
    usage: Vec<UsageRow>,
}

impl Results {
    fn record(&mut self, label: &str, unit: &'static str, goal: Goal, column: Column, value: f64) {
        let index = match self.rows.iter().position(|r| r.label == label) {
            Some(index) => index,
            None => {
                self.rows.push(Row {
                    label: label.to_owned(),
                    unit,
                    goal,
                    peak: false,
                    values: Default::default(),
                });
                self.rows.len() - 1
            }
        };
        self.rows[index].values[column as usize].push(value);
    }

    /// Records a memory figure, which the table sums up by its largest value.
    fn record_peak(&mut self, label: &str, column: Column, mib: f64) {
        self.record(label, "MiB", Goal::None, column, mib);
        if let Some(row) = self.rows.iter_mut().find(|r| r.label == label) {
            row.peak = true;
        }
    }

    fn usage(&mut self, row: UsageRow) {
        let existing = self
            .usage
            .iter_mut()
            .find(|u| u.label == row.label && u.column == row.column);
        match existing {
            Some(u) => {
                u.rounds += 1;
                u.wall += row.wall;
                u.server += row.server;
                u.upstream += row.upstream;
                u.client += row.client;
            }
            None => self.usage.push(row),
        }
    }

    /// The results, Markdown: rates and times per column, the ratios, the targets.
    fn table(&self) -> String {
        let names: Vec<&str> = Column::ALL.iter().map(|c| c.name()).collect();
        let mut out = format!(
            "| measurement | unit | {} | regapp / proxy | regapp / direct | target | met? |\n\
             |---|---|--:|--:|--:|--:|--:|---|---|\n",
            names.join(" | ")
        );
        let verdict = |ratio: Option<f64>, at_least: f64| match ratio {
            None => "not measured",
            Some(r) if r >= at_least => "met",
            Some(_) => "**not met**",
        };
        for row in &self.rows {
            let (proxy, direct) = (row.ratio(Column::Proxy), row.ratio(Column::Direct));
            let (target, met) = match row.goal {
                Goal::None => (String::new(), String::new()),
                Goal::Cold => (
                    format!("≥ {COLD_VS_PROXY}× proxy, ≥ {COLD_VS_DIRECT}× direct"),
                    format!(
                        "{}; {}",
                        verdict(proxy, COLD_VS_PROXY),
                        verdict(direct, COLD_VS_DIRECT)
                    ),
                ),
                Goal::Warm => (
                    format!("≥ {WARM_VS_PROXY}× proxy"),
                    verdict(proxy, WARM_VS_PROXY).to_owned(),
                ),
            };
            let ratio = |r: Option<f64>| r.map_or("–".to_owned(), |r| format!("{r:.2}×"));
            let _ = write!(out, "| {} | {} |", row.label, row.unit);
            for column in Column::ALL {
                let _ = write!(out, " {} |", row.cell(column));
            }
            let _ = writeln!(
                out,
                " {} | {} | {target} | {met} |",
                ratio(proxy),
                ratio(direct)
            );
        }
        out
    }

    /// Wall time and CPU per kind of pull and way, Markdown.
    fn cpu(&self) -> String {
        let mut out = String::from(
            "| pull | through | rounds | wall s | its CPU s | upstream CPU s | client CPU s |\n\
             |---|---|--:|--:|--:|--:|--:|\n",
        );
        for u in &self.usage {
            let upstream = if u.column == Column::Direct {
                "–".to_owned()
            } else {
                format!("{:.2}", u.upstream)
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.3} | {:.2} | {upstream} | {:.2} |",
                u.label,
                u.column.name(),
                u.rounds,
                u.wall,
                u.server,
                u.client,
            );
        }
        out
    }
}
