//! The two registries as child processes on loopback ports, each on its own data directory
//! (or, for `--cluster`, several nodes of one behind HAProxy), and what the benchmark reads of
//! them from `/proc`: resident memory and CPU time.
//!
//! A [`Server`] is killed when dropped, so a failing or panicking run leaves no process behind.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::tls::Access;
use crate::BenchResult;

const STARTUP: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);
const LISTENING: &str = "regapp engine listening on http://";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// regapp's edge (TLS, Basic Auth) in front of its engine, one process.
    RegappEdge,
    /// Debian's nginx (TLS, `auth_basic`) in front of a docker-registry.
    Nginx,
    Regapp,
    DockerRegistry,
    /// regapp with its registry in a bucket of a SeaweedFS the bench starts.
    RegappS3,
    /// The same, answering blob GETs with 307 to the bucket.
    RegappS3Redirect,
    /// docker-registry on its `s3-aws` driver, on the same SeaweedFS.
    DockerRegistryS3,
    /// `--cluster`: three regapp nodes on one prefix of the bucket, behind HAProxy.
    RegappCluster3,
    /// One regapp node behind the same HAProxy setup.
    RegappCluster1,
    /// One docker-registry on the bucket behind HAProxy.
    DockerRegistryCluster1,
    /// Three docker-registry nodes sharing `http.secret` and the prefix, behind HAProxy.
    DockerRegistryCluster3,
}

impl Kind {
    /// Every kind, in the order of the report's columns: the first is compared with the next.
    pub const ALL: [Kind; 11] = [
        Kind::RegappCluster3,
        Kind::RegappCluster1,
        Kind::DockerRegistryCluster1,
        Kind::DockerRegistryCluster3,
        Kind::RegappEdge,
        Kind::Nginx,
        Kind::RegappS3,
        Kind::DockerRegistryS3,
        Kind::RegappS3Redirect,
        Kind::Regapp,
        Kind::DockerRegistry,
    ];
    /// The default set: both engines on plain HTTP.
    pub const PLAIN: [Kind; 2] = [Kind::Regapp, Kind::DockerRegistry];
    /// `--edge`: both TLS + auth setups, and docker-registry alone as the no-auth baseline.
    pub const EDGE: [Kind; 3] = [Kind::RegappEdge, Kind::Nginx, Kind::DockerRegistry];
    /// `--s3`: both engines on one SeaweedFS, regapp redirecting too, regapp on disk beside.
    pub const S3: [Kind; 4] = [
        Kind::RegappS3,
        Kind::DockerRegistryS3,
        Kind::RegappS3Redirect,
        Kind::Regapp,
    ];
    /// `--cluster`: regapp on 3 nodes and on 1, and docker-registry on 1, each behind HAProxy
    /// on one SeaweedFS (docker-registry on 3 nodes only when named: see BENCHMARKS.md).
    pub const CLUSTER: [Kind; 3] = [
        Kind::RegappCluster3,
        Kind::RegappCluster1,
        Kind::DockerRegistryCluster1,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::RegappEdge => "regapp-edge",
            Kind::Nginx => "nginx",
            Kind::Regapp => "regapp",
            Kind::DockerRegistry => "docker-registry",
            Kind::RegappS3 => "regapp-s3",
            Kind::RegappS3Redirect => "regapp-s3-redirect",
            Kind::DockerRegistryS3 => "docker-registry-s3",
            Kind::RegappCluster3 => "regapp-3-nodes",
            Kind::RegappCluster1 => "regapp-1-node",
            Kind::DockerRegistryCluster1 => "docker-registry-1-node",
            Kind::DockerRegistryCluster3 => "docker-registry-3-nodes",
        }
    }

    /// How many nodes HAProxy balances over, for the `--cluster` kinds.
    pub fn cluster_nodes(self) -> Option<usize> {
        match self {
            Kind::RegappCluster1 | Kind::DockerRegistryCluster1 => Some(1),
            Kind::RegappCluster3 | Kind::DockerRegistryCluster3 => Some(3),
            _ => None,
        }
    }

    /// Whether regapp serves this kind's registry (else docker-registry, maybe behind a proxy).
    pub fn is_regapp(self) -> bool {
        matches!(
            self,
            Kind::Regapp
                | Kind::RegappEdge
                | Kind::RegappS3
                | Kind::RegappS3Redirect
                | Kind::RegappCluster1
                | Kind::RegappCluster3
        )
    }
}

/// A running registry; killed on drop.
pub struct Server {
    pub kind: Kind,
    child: Child,
    /// `http://127.0.0.1:PORT` (or `https://localhost:PORT` for the edge kinds)
    pub base: String,
    /// How a client reaches it (TLS, credentials).
    pub access: Access,
    log: PathBuf,
    /// The servers behind this one, stopped after it: nginx's docker-registry, HAProxy's nodes.
    pub inner: Vec<Server>,
}

impl Server {
    /// Starts `kind` with its storage root at `dir/data` (which may already hold a layout),
    /// its config and log in `dir`, and waits until `GET /v2/` answers 200.
    pub fn start(kind: Kind, dir: &Path, regapp: &Path) -> BenchResult<Server> {
        match kind {
            Kind::RegappEdge => crate::edge::start_regapp(dir, regapp),
            Kind::Nginx => crate::edge::start_nginx(dir, regapp),
            _ if kind.cluster_nodes().is_some() => crate::cluster::start(kind, dir, regapp),
            _ => Server::start_node(kind, dir, regapp, None),
        }
    }

    /// [`Server::start`] for one engine process; `node` names it in a cluster (regapp's
    /// `[cluster] node`; docker-registry's nodes share `http.secret` instead).
    pub fn start_node(
        kind: Kind,
        dir: &Path,
        regapp: &Path,
        node: Option<&str>,
    ) -> BenchResult<Server> {
        let root = dir.join("data");
        fs::create_dir_all(&root)?;
        let log = dir.join("server.log");
        let stdout = File::create(dir.join("stdout.log"))?;
        // docker-registry is given its port; regapp picks one and prints it.
        let mut address = None;
        let mut command = match kind {
            _ if kind.is_regapp() => {
                let config = dir.join("regapp.toml");
                let storage = crate::s3::regapp_storage(kind, dir)?;
                let cluster = node.map_or_else(String::new, |n| {
                    format!("\n[cluster]\nnode = {}\n", toml_string(n))
                });
                let text = format!(
                    "[storage]\nroot = {}\n{storage}\n[engine]\nlisten = \"127.0.0.1:0\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n{cluster}",
                    toml_string(path_str(&root)?)
                );
                fs::write(&config, text)?;
                let mut command = Command::new(regapp);
                command.arg("serve").arg("--config").arg(&config);
                // docker-registry runs at level error below; regapp logs nothing per request
                // at any level, but keep the two alike.
                command.env("REGAPP_LOG", "error");
                command
            }
            _ => {
                let config = dir.join("config.yml");
                let port = free_port()?;
                address = Some(format!("127.0.0.1:{port}"));
                // JSON strings are valid YAML scalars, which takes care of quoting the path.
                let storage = match kind {
                    _ if crate::s3::in_bucket(kind) => crate::s3::docker_registry_storage(kind),
                    _ => format!(
                        "  filesystem:\n    rootdirectory: {}\n",
                        serde_json::Value::from(path_str(&root)?)
                    ),
                };
                // Behind a balancer every node must sign upload state with the same secret.
                let secret = if node.is_some() {
                    "  secret: regapp-bench-shared-secret\n"
                } else {
                    ""
                };
                let yaml = format!(
                    "version: 0.1\nlog:\n  level: error\n\
                     storage:\n{storage}  delete:\n    enabled: true\n\
                     http:\n  addr: 127.0.0.1:{port}\n{secret}",
                );
                fs::write(&config, yaml)?;
                let mut command = Command::new("docker-registry");
                command.arg("serve").arg(&config);
                // 2.8.2 on S3 dies at start when this is set.
                command.env_remove("AWS_CA_BUNDLE");
                // It reads REGISTRY_* variables as config overrides; keep the caller's out.
                for (key, _) in std::env::vars_os() {
                    if key.to_string_lossy().starts_with("REGISTRY_") {
                        command.env_remove(key);
                    }
                }
                command
            }
        };
        command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(File::create(&log)?);
        let child = command.spawn().map_err(|e| {
            if kind.is_regapp() {
                format!("cannot start {} ({e})", regapp.display())
            } else {
                format!("cannot start docker-registry ({e}); install it with `apt-get install docker-registry`")
            }
        })?;
        let mut server = Server::spawned(kind, child, log);
        let address = match address {
            Some(address) => address,
            None => server.wait_for(|| {
                let out = fs::read_to_string(dir.join("stdout.log")).unwrap_or_default();
                out.lines()
                    .find_map(|l| l.strip_prefix(LISTENING).map(|a| a.trim().to_owned()))
            })?,
        };
        server.wait_for(|| answers_v2(&address).then_some(()))?;
        server.base = format!("http://{address}");
        Ok(server)
    }

    /// A child already spawned, logging to `log`; not yet known to answer.
    pub fn spawned(kind: Kind, child: Child, log: PathBuf) -> Server {
        Server {
            kind,
            child,
            base: String::new(),
            access: Access::default(),
            log,
            inner: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every process this server is: itself, its children (nginx's workers), and the server
    /// behind it (nginx's docker-registry).
    pub fn pids(&self) -> Vec<u32> {
        let pid = self.pid();
        let mut pids = vec![pid];
        let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"));
        pids.extend(
            children
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
        for inner in &self.inner {
            pids.extend(inner.pids());
        }
        pids
    }

    /// The processes whose memory counts as one: all of them (nginx with its docker-registry),
    /// or for a cluster each node apart (HAProxy not counted).
    pub fn memory_groups(&self) -> Vec<Vec<u32>> {
        if self.kind.cluster_nodes().is_some() {
            self.inner.iter().map(Server::pids).collect()
        } else {
            vec![self.pids()]
        }
    }

    /// A `kB` status field (`VmRSS`, `VmHWM`) summed over each memory group, the largest.
    pub fn memory_kib(&self, field: &str) -> u64 {
        groups_kib(&self.memory_groups(), field)
    }

    /// Polls `ready` until it gives a value, failing with the server's log if the server exits
    /// or [`STARTUP`] passes.
    pub fn wait_for<T>(&mut self, mut ready: impl FnMut() -> Option<T>) -> BenchResult<T> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(value) = ready() {
                return Ok(value);
            }
            let log = || fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(status) = self.child.try_wait()? {
                return Err(
                    format!("{} exited with {status}:\n{}", self.kind.name(), log()).into(),
                );
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not come up:\n{}", self.kind.name(), log()).into());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]; then the same for the servers behind it.
    pub fn stop(&mut self) {
        self.stop_own();
        for inner in &mut self.inner {
            inner.stop();
        }
    }

    fn stop_own(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.kind == Kind::Nginx {
            // SIGKILL would leave nginx's workers behind; SIGTERM makes the master stop them.
            self.stop_own();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (for docker-registry, which is given a port rather than picking one).
pub fn free_port() -> BenchResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether `GET /v2/` at `address` answers 200 (plain blocking HTTP/1.0, for start-up only).
pub fn answers_v2(address: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut answer = String::new();
    stream
        .write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .and_then(|()| stream.read_to_string(&mut answer))
        .is_ok()
        && answer.starts_with("HTTP/1.")
        && answer.split(' ').nth(1) == Some("200")
}

pub fn path_str(path: &Path) -> BenchResult<&str> {
    Ok(path.to_str().ok_or("the bench directory is not UTF-8")?)
}

/// A TOML basic string: quoted, with `\` and `"` escaped.
pub fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The sum of a `kB` status field over several processes, in KiB.
pub fn status_kib_sum(pids: &[u32], field: &str) -> u64 {
    pids.iter().filter_map(|&p| status_kib(p, field)).sum()
}

/// [`status_kib_sum`] of each group of processes, the largest.
pub fn groups_kib(groups: &[Vec<u32>], field: &str) -> u64 {
    groups
        .iter()
        .map(|g| status_kib_sum(g, field))
        .max()
        .unwrap_or(0)
}

/// User + system CPU seconds of several processes so far.
pub fn cpu_seconds_sum(pids: &[u32]) -> f64 {
    pids.iter().map(|&p| cpu_seconds(p)).sum()
}

/// User + system CPU seconds a process has used so far (all its threads).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the `(comm)`, which may hold spaces: state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// User + system CPU seconds this benchmark process (the client) has used so far.
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we hand it; all-zero bytes are a valid `rusage`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Samples `VmRSS` (summed over the server's processes) every few milliseconds on its own thread; [`RssSampler::finish`]
/// gives the largest value seen, in KiB. Given several groups of processes (a cluster's nodes),
/// it keeps the largest group's sum.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl RssSampler {
    const EVERY: Duration = Duration::from_millis(10);
    /// However long the phase, the sampler stops by itself after this long.
    const LIMIT: Duration = Duration::from_secs(3600);

    pub fn start(groups: Vec<Vec<u32>>) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let until = Instant::now() + Self::LIMIT;
            let mut max = 0;
            while !flag.load(Ordering::Relaxed) && Instant::now() < until {
                max = max.max(groups_kib(&groups, "VmRSS"));
                thread::sleep(Self::EVERY);
            }
            max.max(groups_kib(&groups, "VmRSS"))
        });
        RssSampler { stop, thread }
    }

    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}
