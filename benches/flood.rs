//! The edge under hostile connections, beside nginx (+ docker-registry) in the same run: a
//! normal client's `GET /v2/` latency (a new TLS connection each time, as a client that was
//! locked out would need) and the server's RSS, while
//!
//! - **idle**: 10,000 connections from 40 loopback addresses (250 each) never send a
//!   ClientHello, held open by the flooder;
//! - **slowloris**: 200 clients finish their TLS handshake, then send one header byte a second;
//!
//! and RSS 10 s after the flood ended. `cargo bench --bench flood` (`-- --rounds N`, default 3;
//! `REGAPP_BENCH_BIN` for the regapp binary). Results in BENCHMARKS.md.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "engine/cluster.rs"]
#[allow(dead_code)]
mod cluster;
#[path = "engine/edge.rs"]
#[allow(dead_code)]
mod edge;
#[path = "engine/s3.rs"]
#[allow(dead_code)]
mod s3;
#[path = "../tests/util/seaweed.rs"]
#[allow(dead_code)]
mod seaweed;
#[path = "engine/server.rs"]
#[allow(dead_code)]
mod server;
#[path = "engine/tls.rs"]
#[allow(dead_code)]
mod tls;

use server::{status_kib_sum, Kind, RssSampler, Server};

pub type BenchError = Box<dyn std::error::Error + Send + Sync>;
pub type BenchResult<T> = Result<T, BenchError>;

const IDLE_CONNECTIONS: usize = 10_000;
const SLOWLORIS_CLIENTS: usize = 200;
/// Connections per flooding address: under regapp's default per-client cap (256), so the
/// flood is held rather than refused and its cost is what is measured.
const PER_ADDRESS: usize = 250;
const SAMPLES: usize = 100;
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
const SETTLE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "flood bench: skipped (not run by `cargo bench`; run `cargo bench --bench flood`)"
        );
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flood bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Row {
    server: &'static str,
    scenario: &'static str,
    p50_ms: f64,
    p99_ms: f64,
    failed: usize,
    idle_mib: f64,
    during_mib: f64,
    after_mib: f64,
}

fn run() -> BenchResult<()> {
    let rounds: usize = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .map_or(Ok(3), |n| n.parse())?;
    raise_descriptor_limit()?;
    let regapp = std::env::var_os("REGAPP_BENCH_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/regapp"),
        Into::into,
    );
    let dir = tempfile::Builder::new()
        .prefix("flood-")
        .tempdir_in(Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))?;
    let copy = dir.path().join("regapp-under-test");
    std::fs::copy(&regapp, &copy)?;
    println!("# Edge under hostile connections\n");
    println!(
        "date: {}; regapp: {}; nginx: {}; rounds: {rounds}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        regapp.display(),
        String::from_utf8_lossy(
            &std::process::Command::new("nginx")
                .arg("-v")
                .output()?
                .stderr
        )
        .trim()
    );
    let mut rows = Vec::new();
    for kind in [Kind::RegappEdge, Kind::Nginx] {
        let dir = dir.path().join(kind.name());
        let mut server = match kind {
            // Room for the whole flood on a machine whose descriptor limit is 20,000, where
            // the default cap (every connection busy: 3 descriptors) is 6,325.
            Kind::RegappEdge => edge::start_regapp_with(&dir, &copy, "max_connections = 15000\n")?,
            _ => Server::start(kind, &dir, &copy)?,
        };
        let client = Client::new(&server)?;
        client.sample()?;
        for round in 1..=rounds {
            for scenario in ["idle", "slowloris"] {
                let row = measure(&server, &client, scenario)?;
                eprintln!(
                    "round {round}: {} {scenario}: p50 {:.1} ms, p99 {:.1} ms, {} failed; RSS \
                     {:.1} → {:.1} → {:.1} MiB",
                    row.server,
                    row.p50_ms,
                    row.p99_ms,
                    row.failed,
                    row.idle_mib,
                    row.during_mib,
                    row.after_mib
                );
                rows.push(row);
            }
        }
        server.stop();
    }
    print_table(&rows, rounds);
    Ok(())
}

/// The front processes' RSS (nginx's master and workers; regapp is one process), not the
/// docker-registry behind nginx, which the flood never reaches.
fn front_pids(server: &Server) -> Vec<u32> {
    let behind: Vec<u32> = server.inner.iter().flat_map(Server::pids).collect();
    server
        .pids()
        .into_iter()
        .filter(|p| !behind.contains(p))
        .collect()
}

fn measure(server: &Server, client: &Client, scenario: &'static str) -> BenchResult<Row> {
    let pids = front_pids(server);
    let idle = status_kib_sum(&pids, "VmRSS");
    let port = client.address.port();
    let rss = RssSampler::start(vec![pids.clone()]);
    let stop = Arc::new(AtomicBool::new(false));
    let flood: Box<dyn FnOnce() + Send> = match scenario {
        "idle" => {
            let held = idle_flood(port)?;
            Box::new(move || drop(held))
        }
        _ => {
            let slow = slowloris(client, port, stop.clone())?;
            Box::new(move || drop(slow.join()))
        }
    };
    let mut latencies = Vec::new();
    let mut failed = 0;
    for _ in 0..SAMPLES {
        match client.sample() {
            Ok(took) => latencies.push(took),
            Err(_) => failed += 1,
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    let during = rss.finish();
    stop.store(true, Ordering::Relaxed);
    flood();
    std::thread::sleep(SETTLE);
    let after = status_kib_sum(&pids, "VmRSS");
    latencies.sort();
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(Row {
        server: server.kind.name(),
        scenario,
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
        failed,
        idle_mib: idle as f64 / 1024.0,
        during_mib: during as f64 / 1024.0,
        after_mib: after as f64 / 1024.0,
    })
}

/// Opens [`IDLE_CONNECTIONS`] TCP connections from 127.0.1.2 onwards that never send a byte.
fn idle_flood(port: u16) -> BenchResult<Vec<TcpStream>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut held = Vec::with_capacity(IDLE_CONNECTIONS);
    for n in 0..IDLE_CONNECTIONS {
        if let Ok(stream) = runtime.block_on(connect_from(flood_address(n), port)) {
            held.push(stream);
        }
    }
    eprintln!("idle flood: {} connections open", held.len());
    Ok(held)
}

fn flood_address(n: usize) -> Ipv4Addr {
    let host = n / PER_ADDRESS;
    Ipv4Addr::new(127, 0, 1 + (host / 200) as u8, 2 + (host % 200) as u8)
}

async fn connect_from(source: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket
        .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await?;
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// [`SLOWLORIS_CLIENTS`] TLS clients from 127.0.9.2 that each send one more header byte every
/// second until `stop`.
fn slowloris(
    client: &Client,
    port: u16,
    stop: Arc<AtomicBool>,
) -> BenchResult<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut slow = Vec::new();
    for _ in 0..SLOWLORIS_CLIENTS {
        let tcp = runtime.block_on(connect_from(Ipv4Addr::new(127, 0, 9, 2), port))?;
        let mut tls = client.tls(tcp)?;
        tls.write_all(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\n")?;
        slow.push(tls);
    }
    eprintln!("slowloris: {} clients", slow.len());
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            for tls in &mut slow {
                let _ = tls.write_all(b"x");
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }))
}

/// The normal client: a new TLS connection and one authenticated `GET /v2/` per sample.
struct Client {
    address: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    authorization: String,
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

impl Client {
    fn new(server: &Server) -> BenchResult<Client> {
        let port: u16 = server
            .base
            .rsplit(':')
            .next()
            .ok_or("no port in the server's address")?
            .parse()?;
        let mut roots = rustls::RootCertStore::empty();
        let ca = server.access.ca.as_ref().ok_or("the edge has a CA")?;
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)? {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let authorization = server
            .access
            .authorization()?
            .ok_or("the edge has credentials")?
            .to_str()?
            .to_owned();
        Ok(Client {
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            config: Arc::new(config),
            authorization,
        })
    }

    fn tls(&self, tcp: TcpStream) -> BenchResult<Tls> {
        let name = "localhost".try_into()?;
        let connection = rustls::ClientConnection::new(self.config.clone(), name)?;
        Ok(rustls::StreamOwned::new(connection, tcp))
    }

    /// Connect, handshake, `GET /v2/`, read the status line: how long it took.
    fn sample(&self) -> BenchResult<Duration> {
        let started = Instant::now();
        let tcp = TcpStream::connect_timeout(&self.address, Duration::from_secs(10))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        tcp.set_nodelay(true)?;
        let mut tls = self.tls(tcp)?;
        write!(
            tls,
            "GET /v2/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            self.authorization
        )?;
        let mut head = [0u8; 12];
        tls.read_exact(&mut head)?;
        if &head[9..12] != b"200" {
            return Err(format!("GET /v2/ answered {}", String::from_utf8_lossy(&head)).into());
        }
        Ok(started.elapsed())
    }
}

/// The flooder holds 10,000 sockets: the soft descriptor limit goes up to the hard one.
fn raise_descriptor_limit() -> BenchResult<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
    }
    if limit.rlim_cur < IDLE_CONNECTIONS as u64 + 1024 {
        return Err(format!(
            "the descriptor limit is {}: the flood needs {IDLE_CONNECTIONS} and more",
            limit.rlim_cur
        )
        .into());
    }
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn print_table(rows: &[Row], rounds: usize) {
    println!(
        "\nMedian of {rounds} rounds (range in brackets). Latency: a new TLS connection and \
         an authenticated GET /v2/, {SAMPLES} samples {}ms apart during the flood.\n",
        SAMPLE_EVERY.as_millis()
    );
    println!("| server | flood | p50 ms | p99 ms | failed | RSS idle MiB | RSS during MiB | RSS 10 s after MiB | after / idle |");
    println!("|---|---|--:|--:|--:|--:|--:|--:|--:|");
    for server in ["regapp-edge", "nginx"] {
        for scenario in ["idle", "slowloris"] {
            let of: Vec<&Row> = rows
                .iter()
                .filter(|r| r.server == server && r.scenario == scenario)
                .collect();
            if of.is_empty() {
                continue;
            }
            let col = |f: fn(&Row) -> f64| {
                let values: Vec<f64> = of.iter().map(|r| f(r)).collect();
                let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
                let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                format!("{:.1} ({lo:.1}–{hi:.1})", median(values))
            };
            println!(
                "| {server} | {} | {} | {} | {} | {} | {} | {} | {} |",
                if scenario == "idle" {
                    "10,000 idle, no ClientHello"
                } else {
                    "200 slowloris, 1 byte/s"
                },
                col(|r| r.p50_ms),
                col(|r| r.p99_ms),
                col(|r| r.failed as f64),
                col(|r| r.idle_mib),
                col(|r| r.during_mib),
                col(|r| r.after_mib),
                col(|r| r.after_mib / r.idle_mib),
            );
        }
    }
}
