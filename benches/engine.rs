//! The engine benchmark: regapp beside Debian's docker-registry (CNCF distribution 2.8), same
//! machine, same client, one run, each registry on a fresh data directory on a real disk.
//!
//! `cargo bench --bench engine` (Cargo builds the regapp binary in release first);
//! `cargo bench --bench engine -- --help` lists the options. Phases, for each registry in turn:
//! push one large blob (POST, one streamed PATCH, PUT ?digest), pull it, push 8 large blobs at
//! once, push 200 × 1 MiB at c=16, HEAD a blob and GET a manifest at c=16 for a few seconds,
//! walk a catalog of 10,000 repositories at n=100 and n=1000; and the memory of each process.
//! `--s3` and `--cluster` put the registries in a SeaweedFS bucket (`--cluster`: behind
//! HAProxy, on 1 node and on 3) and count the S3 requests of a few operations after the phases.
//! `--mirror` runs no phases: it pulls through regapp's `[[mirror]]` and docker-registry's proxy
//! mode from one upstream (`engine/mirror.rs`).
//! Results are printed as Markdown tables (BENCHMARKS.md holds a run).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Instant, SystemTime};

#[path = "engine/catalog.rs"]
mod catalog;
#[path = "engine/client.rs"]
mod client;
#[path = "engine/cluster.rs"]
mod cluster;
#[path = "engine/content.rs"]
mod content;
#[path = "engine/edge.rs"]
mod edge;
#[path = "engine/mirror.rs"]
mod mirror;
#[path = "engine/options.rs"]
mod options;
#[path = "engine/pagecache.rs"]
mod pagecache;
#[path = "engine/phases.rs"]
mod phases;
#[path = "engine/report.rs"]
mod report;
#[path = "engine/requests.rs"]
mod requests;
#[path = "engine/s3.rs"]
mod s3;
#[path = "../tests/util/seaweed.rs"]
#[allow(dead_code)] // the tests' harness, of which the bench uses a part
mod seaweed;
#[path = "engine/server.rs"]
mod server;
#[path = "engine/tls.rs"]
mod tls;

use content::pseudo_random;
use options::{Options, Phase, MIB, USAGE};
use phases::{Content, Target, ROUND_SHIFT};
use report::{Goal, Report, Unit};
use server::Server;

pub type BenchError = Box<dyn std::error::Error + Send + Sync>;
pub type BenchResult<T> = Result<T, BenchError>;

fn main() -> ExitCode {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it,
    // and a test run must not spend minutes pushing gigabytes.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "engine bench: skipped (not run by `cargo bench`; run `cargo bench --bench engine`)"
        );
        return ExitCode::SUCCESS;
    }
    let options = match Options::parse() {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("engine bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Servers are owned inside `run` and killed when it returns or unwinds.
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine bench failed: {e}");
            let mut cause = e.source();
            while let Some(c) = cause {
                eprintln!("  caused by: {c}");
                cause = c.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> BenchResult<()> {
    if !options.regapp.is_file() {
        return Err(format!(
            "no regapp binary at {}: run `cargo build --release` first (or let \
             `cargo bench --bench engine` build it)",
            options.regapp.display()
        )
        .into());
    }
    std::fs::create_dir_all(&options.dir)?;
    let run_dir = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&options.dir)?;
    print_header(options, run_dir.path())?;
    // Run a private copy: a `cargo build` elsewhere must not swap the binary mid-run.
    let regapp = run_dir.path().join("regapp-under-test");
    std::fs::copy(&options.regapp, &regapp)?;
    if options.mirror {
        return mirror::run(options, run_dir.path(), &regapp);
    }

    let sizes = &options.sizes;
    let started = Instant::now();
    // Room for every round's shifted slices and the manifest phase's small layer.
    let buffer = pseudo_random(sizes.buffer() + options.rounds * ROUND_SHIFT + 8192, 0x5EED);
    eprintln!(
        "content: {} MiB generated in {:.1?} (not timed)",
        buffer.len() / MIB,
        started.elapsed()
    );

    // SeaweedFS starts with the first registry in the bucket: with its metrics on.
    let counter = if options.registries.iter().any(|&k| s3::in_bucket(k)) {
        Some(requests::Counter::enable(run_dir.path())?)
    } else {
        None
    };
    let mut targets = Vec::new();
    for &kind in &options.registries {
        let dir = run_dir.path().join(kind.name());
        if options.runs(Phase::Catalog) {
            let started = Instant::now();
            catalog::seed(&dir.join("data"), sizes.repositories)?;
            if s3::in_bucket(kind) {
                s3::upload_seeded(kind, &dir.join("data"))?;
            }
            eprintln!(
                "{}: {} repositories written into the layout in {:.1?}",
                kind.name(),
                sizes.repositories,
                started.elapsed()
            );
        }
        flush_disk();
        targets.push(Target::new(
            Server::start(kind, &dir, &regapp)?,
            options.http2,
        )?);
    }

    let mut report = Report::new(&options.registries);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let machine_before = machine_cpu();
    let processes_before = processes_cpu(&targets);
    let census = runtime.block_on(async {
        for target in &targets {
            target.client.ping().await?;
        }
        let (catalog, rounds): (Vec<Phase>, Vec<Phase>) =
            options.phases.iter().partition(|&&p| p == Phase::Catalog);
        for round in 0..options.rounds {
            if rounds.is_empty() {
                break;
            }
            let started = Instant::now();
            let content = Content::new(&buffer, sizes, round);
            eprintln!(
                "round {}: blobs hashed in {:.1?} (not timed)",
                round + 1,
                started.elapsed()
            );
            // Whoever goes first may find a quieter machine or a colder cache: take turns.
            if round % 2 == 1 {
                targets.reverse();
            }
            for &phase in &rounds {
                for target in &mut targets {
                    // Writes a previous phase left in the page cache must not slow this one.
                    flush_disk();
                    let writes = content.bytes_written_by(phase);
                    if options.recycle_pages && writes > 0 {
                        pagecache::recycle(run_dir.path(), writes + 64 * MIB as u64)?;
                    }
                    let started = Instant::now();
                    phases::run(phase, target, &content, sizes, &mut report).await?;
                    eprintln!(
                        "round {}: {phase:?} on {}: {:.1?}",
                        round + 1,
                        target.name(),
                        started.elapsed()
                    );
                }
            }
            if round % 2 == 1 {
                targets.reverse();
            }
        }
        let content = Content::new(&buffer, sizes, 0);
        for &phase in &catalog {
            for target in &mut targets {
                flush_disk();
                phases::run(phase, target, &content, sizes, &mut report).await?;
            }
        }
        let Some(counter) = &counter else {
            return Ok(None);
        };
        let in_bucket: Vec<&Target> = targets
            .iter()
            .filter(|t| s3::in_bucket(t.server.kind))
            .collect();
        requests::census(counter, &in_bucket).await.map(Some)
    })?;
    let machine = machine_cpu() - machine_before;
    let processes = processes_cpu(&targets) - processes_before;
    report.note(format!(
        "CPU time of the whole machine while phases ran: {machine:.1} s busy, of which {processes:.1} s \
         were the registries and this client; the rest ({:.1} s) was the kernel's own threads \
         (writeback, journal) and any other process",
        machine - processes
    ));

    for target in &mut targets {
        // For nginx: the sum over its master, its workers and the docker-registry behind it.
        // A cluster's largest node (HAProxy not counted).
        let hwm = target.server.memory_kib("VmHWM");
        if hwm == 0 {
            return Err("cannot read VmHWM".into());
        }
        let label = if report.cluster() {
            "peak RSS (VmHWM) of a node after all phases"
        } else {
            "peak RSS (VmHWM) after all phases"
        };
        let goal = report.goal(
            Goal::RegappAtMost(32.0),
            Goal::RegappAtMost(64.0),
            Goal::RegappAtMost(64.0),
        );
        report.record(label, Unit::Mib, goal, target.name(), hwm as f64 / 1024.0);
        let dir = run_dir.path().join(target.name());
        if let Some(spread) = cluster::spread(&target.server, &dir) {
            report.note(spread);
        }
        target.server.stop();
    }
    drop(targets);

    println!("\n## Results\n\n{}", report.results());
    println!("## Where the CPU went\n\n{}", report.cpu());
    for note in report.notes() {
        println!("- {note}");
    }
    if let Some(census) = census {
        println!("\n## S3 requests per operation (SeaweedFS's counters)\n\n{census}");
    }
    Ok(())
}

/// Busy CPU seconds of the whole machine so far, from `/proc/stat` (steal included).
fn machine_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: everything but idle and iowait.
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    // SAFETY: sysconf has no preconditions.
    busy / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// CPU seconds of the registries and of this process so far.
fn processes_cpu(targets: &[Target]) -> f64 {
    let servers: f64 = targets
        .iter()
        .map(|t| server::cpu_seconds_sum(&t.server.pids()))
        .sum();
    servers + server::own_cpu_seconds()
}

/// Flushes dirty pages to disk so that one phase's writes are not paid for by the next.
fn flush_disk() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn print_header(options: &Options, run_dir: &Path) -> BenchResult<()> {
    println!("# regapp engine benchmark\n");
    if let Some(cargo) = parent_command_line() {
        println!("command: `{cargo}`");
    }
    let argv: Vec<String> = std::env::args().collect();
    println!("bench argv: `{}`", argv.join(" "));
    let env: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("REGAPP_BENCH_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !env.is_empty() {
        println!("environment: `{}`", env.join(" "));
    }
    println!(
        "date: {}",
        humantime::format_rfc3339_seconds(SystemTime::now())
    );
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("unknown", |m| m.trim_start_matches([' ', '\t', ':']));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1);
    let memory = memory.and_then(|kib| kib.parse::<u64>().ok()).unwrap_or(0) / 1024 / 1024;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "machine: nproc {}, CPU {model}, {memory} GiB memory, Linux {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel.trim()
    );
    // Other work on the machine skews every number: say how busy it was just before.
    let before = machine_cpu();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let busy = machine_cpu() - before;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    println!("machine busy in the second before the run: {busy:.2} cores (load average {load})");
    if busy > 0.2 {
        println!("WARNING: something else is using the CPU; results will be noisy");
    }
    let same_disk = std::fs::metadata("/work")
        .map(|work| work.dev() == std::fs::metadata(run_dir).map_or(0, |m| m.dev()))
        .unwrap_or(false);
    let fs = filesystem(run_dir)?;
    println!(
        "data: {} ({fs}{})",
        run_dir.display(),
        if same_disk {
            ", the device /work is on"
        } else {
            ""
        }
    );
    println!(
        "regapp: {} ({}; a copy in the data directory is what runs)",
        options.regapp.display(),
        output(Command::new("git").args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty"
        ]))
    );
    println!(
        "docker-registry: {}",
        output(Command::new("docker-registry").arg("--version"))
    );
    if options.mirror {
        // The mirror comparison prints its own sizes.
        return Ok(());
    }
    if options.registries.contains(&server::Kind::Nginx) {
        println!("nginx: {}", output(Command::new("nginx").arg("-v")));
    }
    if options
        .registries
        .iter()
        .any(|k| k.cluster_nodes().is_some())
    {
        let version = output(Command::new("haproxy").arg("-v"));
        println!("haproxy: {}", version.lines().next().unwrap_or(""));
    }
    let s = &options.sizes;
    println!(
        "sizes{}: big blob {} MiB; {} × {} MiB concurrently; {} × {} MiB at c={}; timed phases \
         {:?} at c={}; {} repositories; {} round(s) of phases 1-6",
        if options.quick { " (quick)" } else { "" },
        s.big / MIB,
        s.parallel_count,
        s.parallel_size / MIB,
        s.small_count,
        s.small_size / MIB,
        s.concurrency,
        s.timed,
        s.concurrency,
        s.repositories,
        options.rounds
    );
    println!(
        "phases: {:?}; registries: {}",
        options.phases,
        options
            .registries
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// The command line of the parent process when it is cargo: what the user typed, more or less.
fn parent_command_line() -> Option<String> {
    let ppid = std::os::unix::process::parent_id();
    let raw = std::fs::read(format!("/proc/{ppid}/cmdline")).ok()?;
    let mut words = raw
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned());
    let program = words.next()?;
    let name = Path::new(&program)
        .file_name()?
        .to_string_lossy()
        .into_owned();
    (name == "cargo").then(|| {
        std::iter::once(name)
            .chain(words)
            .collect::<Vec<_>>()
            .join(" ")
    })
}

fn output(command: &mut Command) -> String {
    command.output().map_or_else(
        |e| format!("unknown: {e}"),
        |o| {
            let text = String::from_utf8_lossy(if o.stdout.is_empty() {
                &o.stderr
            } else {
                &o.stdout
            });
            text.trim().to_owned()
        },
    )
}

/// The filesystem type of `path`; refuses tmpfs, where disk-bound phases would mean nothing.
fn filesystem(path: &Path) -> BenchResult<String> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: statfs fills the struct we hand it; all-zero bytes are a valid `statfs`.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let name = match stat.f_type as i64 {
        0xEF53 => "ext4".to_owned(),
        0x5846_5342 => "xfs".to_owned(),
        0x9123_683E => "btrfs".to_owned(),
        0x794C_7630 => "overlayfs".to_owned(),
        0x0102_1994 => {
            return Err(format!(
                "{} is on tmpfs; set REGAPP_BENCH_DIR to a directory on a disk",
                path.display()
            )
            .into())
        }
        other => format!("filesystem type {other:#x}"),
    };
    Ok(name)
}
