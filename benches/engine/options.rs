//! What one run does: which phases, which registries, how big (full or `REGAPP_BENCH_QUICK=1`),
//! and where data goes. Read from the command line after `--` and from `REGAPP_BENCH_*`.

use std::path::PathBuf;
use std::time::Duration;

use crate::server::Kind;
use crate::BenchResult;

pub const MIB: usize = 1024 * 1024;

pub const USAGE: &str = "\
usage: cargo bench --bench engine -- [--quick] [--rounds N] [--phases LIST] [--registries LIST]
                                    [--edge] [--s3] [--cluster] [--mirror] [--http2] [--fresh-pages]

  --quick            sizes ~10x smaller, 1 s timed phases, 1 round (or REGAPP_BENCH_QUICK=1)
  --rounds N         run phases 1-6 N times, alternating which registry goes first, and report
                     the median (memory: the maximum) (or REGAPP_BENCH_ROUNDS); default 3;
                     the catalog (7) is walked once, after the rounds
  --phases LIST      comma-separated, by name or number (or REGAPP_BENCH_PHASES); default all:
                     1 push, 2 pull, 3 push8, 4 push1m, 5 head, 6 manifest, 7 catalog
                     (8, the memory of the registry processes, is always reported)
  --registries LIST  regapp,docker-registry (or REGAPP_BENCH_REGISTRIES); default both;
                     also regapp-edge (regapp with its TLS edge and Basic Auth) and nginx
                     (Debian's nginx with TLS and auth_basic in front of a docker-registry),
                     and the --s3 and --cluster kinds
  --big-mib N        the size of phases 1 and 2's blob, in MiB (or REGAPP_BENCH_BIG_MIB);
                     default 1024 (128 with --quick); e.g. 6144 for S3's 5 GiB copy limit
  --edge             the same as --registries regapp-edge,nginx,docker-registry: the edge
                     comparison (h1 over TLS, Basic Auth on every request), ratios to nginx
                     and to docker-registry alone; the catalog (7) is not run
  --s3               the same as --registries regapp-s3,docker-registry-s3,regapp-s3-redirect,
                     regapp: both engines on one SeaweedFS (the test venv's weed), regapp on disk
                     beside
  --cluster          the same as --registries regapp-3-nodes,regapp-1-node,docker-registry-1-node:
                     each behind its own HAProxy (round robin, no stickiness) on one SeaweedFS,
                     a registry's nodes on one prefix; ratios 3 nodes / 1 node and to
                     docker-registry; memory per node. Add docker-registry-3-nodes with
                     --registries (its uploads may fail across nodes: distribution#2225).
                     With --s3 and --cluster, the S3 requests of an image's push and pull,
                     a HEAD and a GET manifest are counted after the phases (SeaweedFS's
                     metrics)
  --mirror           pulls through a pull-through cache (issue 33), instead of the phases: one
                     docker-registry upstream holding an image with a 512 MiB layer and 100
                     small images; cold and warm pulls through regapp's [[mirror]] and through
                     docker-registry's proxy mode, and from the upstream directly (--quick:
                     64 MiB and 20 images; --rounds applies)
  --http2            clients of TLS servers offer h2 by ALPN, as docker, containerd and skopeo
                     do, and multiplex their workers over one connection with Go's windows
                     (4 MiB per stream, 1 GiB per connection); default: HTTP/1.1, a connection
                     per worker. Plain-HTTP servers are always spoken to in HTTP/1.1
  --fresh-pages      do not recycle page-cache pages before the push phases (see BENCHMARKS.md:
                     on a VM that hands free memory back to its host, whichever registry gets
                     never-touched pages pays ~2 s of CPU per GiB written)
environment:
  REGAPP_BENCH_DIR   where the data directories go (default: <repo>/target/engine-bench);
                     must not be tmpfs
  REGAPP_BENCH_BIN   the regapp binary (default: the one cargo builds for this bench)
without cargo (e.g. under perf): target/release/deps/engine-<hash> --bench [options]";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    Push,
    Pull,
    PushParallel,
    PushSmall,
    HeadBlob,
    GetManifest,
    Catalog,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Push,
        Phase::Pull,
        Phase::PushParallel,
        Phase::PushSmall,
        Phase::HeadBlob,
        Phase::GetManifest,
        Phase::Catalog,
    ];

    fn names(self) -> [&'static str; 2] {
        match self {
            Phase::Push => ["1", "push"],
            Phase::Pull => ["2", "pull"],
            Phase::PushParallel => ["3", "push8"],
            Phase::PushSmall => ["4", "push1m"],
            Phase::HeadBlob => ["5", "head"],
            Phase::GetManifest => ["6", "manifest"],
            Phase::Catalog => ["7", "catalog"],
        }
    }
}

/// Sizes and durations of one run.
pub struct Sizes {
    pub big: usize,
    pub parallel_count: usize,
    pub parallel_size: usize,
    pub small_count: usize,
    pub small_size: usize,
    pub concurrency: usize,
    pub timed: Duration,
    pub repositories: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        let shrink = if quick { 8 } else { 1 };
        Sizes {
            big: 1024 * MIB / shrink,
            parallel_count: 8,
            parallel_size: 128 * MIB / shrink,
            small_count: 200 / shrink,
            small_size: MIB,
            concurrency: 16,
            timed: Duration::from_secs(if quick { 1 } else { 5 }),
            repositories: if quick { 1_000 } else { 10_000 },
        }
    }

    /// The content buffer every blob is sliced from must hold the largest set of blobs.
    pub fn buffer(&self) -> usize {
        self.big
            .max(self.parallel_count * self.parallel_size)
            .max(self.small_count * self.small_size)
    }
}

pub struct Options {
    pub quick: bool,
    /// Before each push phase, write and delete a scratch file as large as the phase's writes.
    pub recycle_pages: bool,
    /// Offer h2 to TLS servers (what Go clients do) instead of HTTP/1.1 only.
    pub http2: bool,
    /// `--mirror`: the pull-through cache comparison (`mirror.rs`) instead of the phases.
    pub mirror: bool,
    pub rounds: usize,
    pub phases: Vec<Phase>,
    pub registries: Vec<Kind>,
    pub sizes: Sizes,
    pub dir: PathBuf,
    pub regapp: PathBuf,
}

impl Options {
    /// `Ok(None)` when `--help` was asked for.
    pub fn parse() -> BenchResult<Option<Options>> {
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
        let mut quick = env("REGAPP_BENCH_QUICK").is_some_and(|v| v != "0");
        let mut rounds = env("REGAPP_BENCH_ROUNDS");
        let mut phases = env("REGAPP_BENCH_PHASES");
        let mut registries = env("REGAPP_BENCH_REGISTRIES");
        let mut big_mib = env("REGAPP_BENCH_BIG_MIB");
        let mut edge = false;
        let mut s3 = false;
        let mut cluster = false;
        let mut mirror = false;
        let mut recycle_pages = true;
        let mut http2 = false;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                // cargo bench passes --bench to harness = false targets.
                "--bench" => {}
                "--quick" => quick = true,
                "--rounds" => rounds = Some(args.next().ok_or("--rounds needs a number")?),
                "--phases" => phases = Some(args.next().ok_or("--phases needs a list")?),
                "--registries" => {
                    registries = Some(args.next().ok_or("--registries needs a list")?)
                }
                "--big-mib" => big_mib = Some(args.next().ok_or("--big-mib needs a number")?),
                "--edge" => edge = true,
                "--s3" => s3 = true,
                "--cluster" => cluster = true,
                "--mirror" => mirror = true,
                "--fresh-pages" => recycle_pages = false,
                "--http2" => http2 = true,
                "-h" | "--help" => return Ok(None),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
            }
        }
        if edge {
            let names: Vec<&str> = Kind::EDGE.iter().map(|k| k.name()).collect();
            registries = Some(names.join(","));
        }
        if s3 {
            let names: Vec<&str> = Kind::S3.iter().map(|k| k.name()).collect();
            registries = Some(names.join(","));
        }
        if cluster {
            let names: Vec<&str> = Kind::CLUSTER.iter().map(|k| k.name()).collect();
            registries = Some(names.join(","));
        }
        let phases = match phases {
            None => Phase::ALL.to_vec(),
            Some(list) => {
                let mut chosen = Vec::new();
                for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                    let phase = Phase::ALL
                        .into_iter()
                        .find(|p| p.names().contains(&word))
                        .ok_or_else(|| format!("unknown phase {word:?}\n{USAGE}"))?;
                    chosen.push(phase);
                }
                // Always in the documented order, whatever order they were named in.
                Phase::ALL
                    .into_iter()
                    .filter(|p| chosen.contains(p))
                    .collect()
            }
        };
        let registries = match registries {
            None => Kind::PLAIN.to_vec(),
            Some(list) => {
                let mut chosen = Vec::new();
                for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                    let kind = Kind::ALL
                        .into_iter()
                        .find(|k| k.name() == word)
                        .ok_or_else(|| format!("unknown registry {word:?}\n{USAGE}"))?;
                    chosen.push(kind);
                }
                Kind::ALL
                    .into_iter()
                    .filter(|k| chosen.contains(k))
                    .collect()
            }
        };
        // Behind nginx, docker-registry's data is not where the catalog seeder writes it; the
        // edge comparison is about the edge, not the walk.
        let mut phases = phases;
        if registries
            .iter()
            .any(|k| matches!(k, Kind::RegappEdge | Kind::Nginx))
        {
            phases.retain(|&p| p != Phase::Catalog);
        }
        let rounds = match rounds {
            None if quick => 1,
            None => 3,
            Some(n) => match n.parse::<usize>() {
                Ok(n @ 1..=100) => n,
                _ => return Err(format!("--rounds wants a number from 1 to 100, not {n:?}").into()),
            },
        };
        let mut sizes = Sizes::new(quick);
        if let Some(n) = big_mib {
            match n.parse::<usize>() {
                Ok(n @ 1..=65536) => sizes.big = n * MIB,
                _ => return Err(format!("--big-mib wants MiB from 1 to 65536, not {n:?}").into()),
            }
        }
        let dir = env("REGAPP_BENCH_DIR").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/engine-bench"),
            PathBuf::from,
        );
        let regapp = env("REGAPP_BENCH_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_regapp")),
            PathBuf::from,
        );
        Ok(Some(Options {
            quick,
            recycle_pages,
            http2,
            mirror,
            rounds,
            phases,
            registries,
            sizes,
            dir,
            regapp,
        }))
    }

    pub fn runs(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }
}
