//! The garbage-collection benchmark: a registry:2 store of 10,000 manifests and 100,000 blobs
//! (generated on disk, small blobs, a fifth of the manifests untagged), collected by regapp
//! while clients keep pushing — wall time, and push throughput during the collection against
//! without — then, on the same store generated again, `docker-registry garbage-collect
//! --delete-untagged` (offline, as registry:2 requires) and `regapp gc` with no server.
//!
//! `cargo bench --bench gc` (Cargo builds the regapp binary in release first);
//! `cargo bench --bench gc -- --help` lists the options. Results print as Markdown
//! (BENCHMARKS.md, "Garbage collection", holds a run). The store (~1.5 GB of small files on
//! ext4) is deleted when the run ends.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use sha2::{Digest as _, Sha256};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const USAGE: &str = "\
usage: cargo bench --bench gc -- [--manifests N] [--layers N] [--pushers N] [--baseline-seconds S]

  --manifests N         manifests in the store (default 10000, in repositories of 100)
  --layers N            layers per manifest (default 8: with the config and the manifest itself,
                        10 blobs per manifest, so 100,000 blobs by default)
  --pushers N           concurrent pushing clients (default 4)
  --baseline-seconds S  how long push throughput is measured without a collection (default 10)
  --generate-only       write the store to REGAPP_BENCH_DIR/root and stop (for profiling; delete
                        it yourself)
  --online-only         only the collection while pushes go on (skip docker-registry and the
                        offline run)
environment:
  REGAPP_BENCH_DIR      where the store goes (default: <repo>/target/gc-bench); not tmpfs
  REGAPP_BENCH_BIN      the regapp binary (default: the one cargo builds for this bench)";

struct Options {
    manifests: usize,
    layers: usize,
    pushers: usize,
    baseline: Duration,
    generate_only: bool,
    online_only: bool,
}

const PER_REPO: usize = 100;
/// Every fifth manifest is untagged: garbage for `--delete-untagged`.
const UNTAGGED_EVERY: usize = 5;
/// What generated files look like: written long before the run (older than any grace).
const AGE: Duration = Duration::from_secs(2 * 86_400);

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        println!("gc bench: skipped (not run by `cargo bench`; run `cargo bench --bench gc`)");
        return ExitCode::SUCCESS;
    }
    let options = match parse() {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gc bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse() -> BenchResult<Option<Options>> {
    let mut options = Options {
        manifests: 10_000,
        layers: 8,
        pushers: 4,
        baseline: Duration::from_secs(10),
        generate_only: false,
        online_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> BenchResult<u64> {
            Ok(args.next().ok_or(format!("{arg} needs a value"))?.parse()?)
        };
        match arg.as_str() {
            "--bench" => {}
            "--help" | "-h" => return Ok(None),
            "--manifests" => options.manifests = value()? as usize,
            "--layers" => options.layers = value()? as usize,
            "--pushers" => options.pushers = value()? as usize,
            "--baseline-seconds" => options.baseline = Duration::from_secs(value()?),
            "--generate-only" => options.generate_only = true,
            "--online-only" => options.online_only = true,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(Some(options))
}

fn run(options: &Options) -> BenchResult<()> {
    let dir = std::env::var_os("REGAPP_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/gc-bench"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let root = dir.join("root");
    if options.generate_only {
        generate(&root, options)?;
        println!("store in {}", root.display());
        return Ok(());
    }
    let result = phases(options, &dir, &root);
    std::fs::remove_dir_all(&dir)?;
    result
}

fn phases(options: &Options, dir: &Path, root: &Path) -> BenchResult<()> {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores, load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let store = generate(root, options)?;
    println!(
        "store: {} manifests ({} untagged) in {} repositories, {} blobs, {} link files; generated in {:.1} s",
        store.manifests, store.untagged, store.repositories, store.blobs, store.links, store.seconds
    );

    // regapp, online: pushes go on while it collects.
    let config = dir.join("regapp.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nroot = {root:?}\n[engine]\nlisten = \"127.0.0.1:0\"\n\
             [gc]\ninterval = \"\"\ngrace = \"1h\"\ndelete_untagged = true\n"
        ),
    )?;
    let server_log = dir.join("regapp.log");
    let (mut server, host) = start_regapp(&config, &server_log)?;
    let pushed = Arc::new(Pushed::default());
    let stop = Arc::new(AtomicBool::new(false));
    let pushers: Vec<_> = (0..options.pushers)
        .map(|n| {
            let (host, pushed, stop) = (host.clone(), pushed.clone(), stop.clone());
            std::thread::spawn(move || push_loop(&host, n, &pushed, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let stolen_at_start = stolen_seconds();
    std::thread::sleep(options.baseline);
    let baseline = pushed.rate(started, Instant::now());

    let gc_started = Instant::now();
    let stolen_at_gc = stolen_seconds();
    let online = regapp_gc(&config)?;
    let gc_ended = Instant::now();
    let stolen_during = (stolen_seconds() - stolen_at_gc) / (gc_ended - gc_started).as_secs_f64();
    let stolen_before = (stolen_at_gc - stolen_at_start) / (gc_started - started).as_secs_f64();
    let gc_wall = gc_ended - gc_started;
    let during = pushed.rate(gc_started, gc_ended);
    // The collection's garbage is gone when it returns; its space comes back as the server
    // purges the trash behind it, while the pushes go on.
    wait_for_purge(root)?;
    let purge_ended = Instant::now();
    let purge_wall = purge_ended - gc_ended;
    let during_purge = pushed.rate(gc_ended, purge_ended);
    // Without a collection again, after it: the host's own load drifts over a run, and a
    // baseline from both sides of the collection is not fooled by a drift one way.
    std::thread::sleep(options.baseline);
    let after = pushed.rate(purge_ended, Instant::now());
    stop.store(true, Ordering::Relaxed);
    for pusher in pushers {
        pusher.join().map_err(|_| "a pusher panicked")??;
    }
    stop_process(&mut server);
    println!(
        "regapp online (grace 1h, delete_untagged, {} pushers):\n{online}",
        options.pushers
    );
    let mut phase_start = gc_started;
    for (phase, seconds) in phase_times(&server_log)? {
        let phase_end = gc_started + Duration::from_secs_f64(seconds);
        let rate = pushed.rate(phase_start, phase_end);
        println!(
            "  {phase}: {seconds:.2} s after the start; pushes meanwhile {rate:.1}/s ({:.0} %)",
            100.0 * rate / baseline
        );
        phase_start = phase_end;
    }
    let purge = format!(
        "trash purged {:.2} s after the collection returned, pushes meanwhile {during_purge:.1} of {baseline:.1}/s ({:.0} %)",
        purge_wall.as_secs_f64(),
        100.0 * during_purge / baseline
    );
    println!("{purge}");
    let bracketed = (baseline + after) / 2.0;
    println!(
        "pushes/s without a collection: {baseline:.1} before it, {after:.1} after the purge; during the collection {during:.1}: {:.0} % of before, {:.0} % of the mean of both ({bracketed:.1})",
        100.0 * during / baseline,
        100.0 * during / bracketed
    );
    println!(
        "CPU the host gave to other machines (steal): {stolen_before:.2} cores before the collection, {stolen_during:.2} during it{}",
        if stolen_before.max(stolen_during) >= STEAL_NOTICED {
            " — this run measured the host as much as regapp"
        } else {
            ""
        }
    );
    if options.online_only {
        println!(
            "\n| regapp, online with {} pushers | {:.2} s | {} | {during:.1} of {baseline:.1} ({:.0} %); of {bracketed:.1}, before and after ({:.0} %) |",
            options.pushers,
            gc_wall.as_secs_f64(),
            removed(&online),
            100.0 * during / baseline,
            100.0 * during / bracketed
        );
        return Ok(());
    }

    // The same store again for the offline collectors.
    std::fs::remove_dir_all(root)?;
    generate(root, options)?;
    let registry_config = dir.join("docker-registry.yml");
    std::fs::write(
        &registry_config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n",
            serde_json::Value::from(root.to_str().ok_or("a UTF-8 bench dir")?)
        ),
    )?;
    let started = Instant::now();
    let output = Command::new("docker-registry")
        .args(["garbage-collect", "--delete-untagged"])
        .arg(&registry_config)
        .output()?;
    let registry_wall = started.elapsed();
    if !output.status.success() {
        return Err(format!(
            "docker-registry garbage-collect: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let registry_removed = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.contains("blob eligible for deletion"))
        .count();

    std::fs::remove_dir_all(root)?;
    generate(root, options)?;
    let started = Instant::now();
    let offline = regapp_gc(&config)?;
    let offline_wall = started.elapsed();
    println!("regapp offline:\n{offline}");

    println!();
    println!(
        "| collector | wall time | blobs removed | pushes/s during (without: {baseline:.1}) |"
    );
    println!("|---|---|---|---|");
    println!(
        "| regapp, online with {} pushers | {:.2} s | {} | {during:.1} ({:.0} %; {:.0} % of {bracketed:.1}, the mean of before and after) |",
        options.pushers,
        gc_wall.as_secs_f64(),
        removed(&online),
        100.0 * during / baseline,
        100.0 * during / bracketed
    );
    println!("| (then, space back: {purge}) | | | |");
    println!(
        "| regapp gc, no server (waits for the purge) | {:.2} s | {} | — |",
        offline_wall.as_secs_f64(),
        removed(&offline)
    );
    println!(
        "| docker-registry garbage-collect --delete-untagged (offline) | {:.2} s | {registry_removed} | — (registry stopped or read-only) |",
        registry_wall.as_secs_f64()
    );
    Ok(())
}

/// Waits until the server has purged the trash (`storage::trash::DIR`, which the purge removes
/// when it is done).
fn wait_for_purge(root: &Path) -> BenchResult<()> {
    let trash = root.join("regapp-trash");
    let deadline = Instant::now() + Duration::from_secs(600);
    while trash.exists() {
        if Instant::now() > deadline {
            return Err(format!("{} still there after 10 minutes", trash.display()).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The collector's own timings (debug lines `gc: …` with the seconds since it began), so a run
/// shows where the time went, and what each step cost the pushes: loading, marking, sweeping.
fn phase_times(log: &Path) -> BenchResult<Vec<(String, f64)>> {
    let log = std::fs::read_to_string(log)?;
    let mut phases = Vec::new();
    for line in log.lines().filter(|l| l.contains("gc: ")) {
        let message = line.split("gc: ").nth(1).unwrap_or_default();
        // The message, without the fields tracing appends after it.
        let phase = message
            .split_whitespace()
            .take_while(|w| !w.contains('='))
            .collect::<Vec<_>>()
            .join(" ");
        let seconds = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("seconds="))
            .and_then(|s| s.parse::<f64>().ok());
        if let Some(seconds) = seconds {
            phases.push((phase, seconds));
        }
    }
    Ok(phases)
}

/// Steal (CPU taken by the hypervisor) from which a run says it measured the host: 0.05 cores
/// is a tenth of what a collection costs the pushes at the target; most runs show 0.00–0.02.
const STEAL_NOTICED: f64 = 0.05;

/// CPU time the hypervisor gave to other guests since boot (the `steal` column of
/// `/proc/stat`), in seconds of one core; 0 where there is no such column.
fn stolen_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks = stat
        .lines()
        .next()
        .and_then(|all_cpus| all_cpus.split_whitespace().nth(8))
        .and_then(|steal| steal.parse::<f64>().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf only reads a system constant.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks / ticks_per_second as f64
}

/// When each push completed, so the rate can be taken over any window afterwards.
#[derive(Default)]
struct Pushed(Mutex<Vec<Instant>>);

impl Pushed {
    fn record(&self) {
        self.0.lock().unwrap().push(Instant::now());
    }

    /// Pushes completed per second in `[from, to)`.
    fn rate(&self, from: Instant, to: Instant) -> f64 {
        let count = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|&&t| t >= from && t < to)
            .count();
        count as f64 / (to - from).as_secs_f64().max(1e-3)
    }
}

fn removed(summary: &str) -> String {
    summary
        .lines()
        .find_map(|l| l.strip_prefix("removed: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("?")
        .to_owned()
}

struct Generated {
    repositories: usize,
    manifests: usize,
    untagged: usize,
    blobs: usize,
    links: usize,
    seconds: f64,
}

/// Writes the store in registry:2's layout straight to disk, two repositories at a time.
fn generate(root: &Path, options: &Options) -> BenchResult<Generated> {
    let started = Instant::now();
    let repositories = options.manifests.div_ceil(PER_REPO);
    let threads = 2;
    let counts: Vec<BenchResult<(usize, usize)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let (mut blobs, mut links) = (0, 0);
                    for repo in (t..repositories).step_by(threads) {
                        let (b, l) = generate_repository(root, repo, options)?;
                        blobs += b;
                        links += l;
                    }
                    Ok((blobs, links))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (mut blobs, mut links) = (0, 0);
    for count in counts {
        let (b, l) = count?;
        blobs += b;
        links += l;
    }
    let seconds = started.elapsed().as_secs_f64();
    // A real store was written long ago. Without this, the kernel writes the ~200,000 new files
    // back (30 s after they were dirtied: during the measurements) and every push's fsync waits
    // behind that in the ext4 journal, which made the push rates swing from run to run.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    Ok(Generated {
        repositories,
        manifests: options.manifests,
        untagged: options.manifests / UNTAGGED_EVERY,
        blobs,
        links,
        seconds,
    })
}

fn generate_repository(root: &Path, repo: usize, options: &Options) -> BenchResult<(usize, usize)> {
    let v2 = root.join("docker/registry/v2");
    let name = format!("bench/r{repo:03}");
    let repo_dir = v2.join("repositories").join(&name);
    let old = SystemTime::now() - AGE;
    let (mut blobs, mut links) = (0, 0);
    let first = repo * PER_REPO;
    for m in first..(first + PER_REPO).min(options.manifests) {
        let config =
            serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "bench": m}))?;
        let mut descriptors = Vec::new();
        let config_digest = write_blob(&v2, &config, old)?;
        link(&repo_dir.join("_layers"), &config_digest, old)?;
        for l in 0..options.layers {
            let layer = format!("layer {l} of manifest {m}\n")
                .repeat(4)
                .into_bytes();
            let digest = write_blob(&v2, &layer, old)?;
            link(&repo_dir.join("_layers"), &digest, old)?;
            descriptors.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": layer.len()}));
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": descriptors,
        }))?;
        let digest = write_blob(&v2, &manifest, old)?;
        link(&repo_dir.join("_manifests/revisions"), &digest, old)?;
        blobs += options.layers + 2;
        links += options.layers + 2;
        if m % UNTAGGED_EVERY != 0 {
            let tag = repo_dir.join(format!("_manifests/tags/t{m}"));
            write_old(&tag.join("current/link"), digest.as_bytes(), old)?;
            link(&tag.join("index"), &digest, old)?;
            links += 2;
        }
    }
    Ok((blobs, links))
}

fn write_blob(v2: &Path, bytes: &[u8], old: SystemTime) -> BenchResult<String> {
    let hex = hex::encode(Sha256::digest(bytes));
    write_old(
        &v2.join(format!("blobs/sha256/{}/{hex}/data", &hex[..2])),
        bytes,
        old,
    )?;
    Ok(format!("sha256:{hex}"))
}

/// `<dir>/sha256/<hex>/link` holding the digest.
fn link(dir: &Path, digest: &str, old: SystemTime) -> BenchResult<()> {
    let hex = digest.strip_prefix("sha256:").ok_or("sha256 digests")?;
    write_old(
        &dir.join("sha256").join(hex).join("link"),
        digest.as_bytes(),
        old,
    )
}

fn write_old(path: &Path, bytes: &[u8], old: SystemTime) -> BenchResult<()> {
    std::fs::create_dir_all(path.parent().ok_or("a parent")?)?;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.set_modified(old)?;
    Ok(())
}

fn regapp_bin() -> PathBuf {
    std::env::var_os("REGAPP_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_regapp")))
}

fn start_regapp(config: &Path, log: &Path) -> BenchResult<(Child, String)> {
    let mut child = Command::new(regapp_bin())
        .args(["serve", "--config"])
        .arg(config)
        .env("REGAPP_LOG", "info,regapp::gc=debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("stdout is piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let host = loop {
        let line = lines.next().ok_or("regapp exited before listening")??;
        if let Some(host) = line.strip_prefix("regapp engine listening on http://") {
            break host.trim().to_owned();
        }
    };
    Ok((child, host))
}

fn stop_process(child: &mut Child) {
    // SAFETY: kill(2) on the pid of a child this process spawned and has not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
}

/// `regapp gc --config` (through the running server's socket, or alone); its summary.
fn regapp_gc(config: &Path) -> BenchResult<String> {
    let output = Command::new(regapp_bin())
        .args(["gc", "--config"])
        .arg(config)
        .env("REGAPP_LOG", "warn")
        .output()?;
    if !output.status.success() {
        return Err(format!("regapp gc: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Pushes new images (a config and two 16 KiB layers, as POST ?digest= and a manifest PUT)
/// until told to stop, counting the completed ones.
fn push_loop(host: &str, pusher: usize, pushed: &Pushed, stop: &AtomicBool) -> BenchResult<()> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let base = format!("http://{host}/v2/push/p{pusher}");
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let config = serde_json::to_vec(&json!({"pusher": pusher, "n": n}))?;
        let layers: Vec<Vec<u8>> = (0..2)
            .map(|l| {
                format!("pusher {pusher} image {n} layer {l}\n")
                    .repeat(512)
                    .into_bytes()
            })
            .collect();
        let mut descriptors = Vec::new();
        for (i, blob) in std::iter::once(&config).chain(&layers).enumerate() {
            let digest = format!("sha256:{}", hex::encode(Sha256::digest(blob)));
            let status = client
                .post(format!("{base}/blobs/uploads/?digest={digest}"))
                .body(blob.clone())
                .send()?
                .status();
            if status != 201 {
                return Err(format!("push blob: {status}").into());
            }
            let media_type = if i == 0 {
                "application/vnd.oci.image.config.v1+json"
            } else {
                "application/vnd.oci.image.layer.v1.tar"
            };
            descriptors
                .push(json!({"mediaType": media_type, "digest": digest, "size": blob.len()}));
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptors[0],
            "layers": descriptors[1..],
        }))?;
        let response = client
            .put(format!("{base}/manifests/n{n}"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest)
            .send()?;
        if response.status() != 201 {
            return Err(
                format!("push manifest: {}: {}", response.status(), response.text()?).into(),
            );
        }
        pushed.record();
        n += 1;
    }
    Ok(())
}
