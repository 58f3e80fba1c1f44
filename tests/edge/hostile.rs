//! Connections an attacker opens, and what the edge does with them: a handshake deadline,
//! caps per client and in all, memory that comes back after a flood, one summary line instead
//! of an ERROR per connection, 431 for oversized headers over both protocols, and a header
//! deadline on the engine's own listener.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{curl_with_ca, start_upload, EdgeServer, Tls, PASSWORD, USER};
use crate::ops::{get, sample};
use crate::util::tls::client_trusting;
use crate::util::{eventually, Regapp};

/// A TCP connection to `port` from the loopback address `from` (127.0.0.0/8 is all local, so
/// each address is another client to the edge's caps).
fn connect_from(from: &str, port: u16) -> TcpStream {
    let stream = bind_and_connect(from.parse().unwrap(), port);
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    stream
}

/// std cannot choose a client socket's source address: libc can.
fn bind_and_connect(source: IpAddr, port: u16) -> TcpStream {
    use std::os::fd::FromRawFd;
    let IpAddr::V4(source) = source else {
        panic!("IPv4 loopback only")
    };
    // SAFETY: a fresh socket, bound and connected with plain sockaddr_in values, then owned
    // by the TcpStream.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let addr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let local = addr(source, 0);
        let bound = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len);
        assert_eq!(bound, 0, "bind: {}", std::io::Error::last_os_error());
        let remote = addr(std::net::Ipv4Addr::LOCALHOST, port);
        let connected = libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len);
        assert_eq!(connected, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}

/// Whether the edge still holds `stream`: a read that times out means open; end of file or a
/// reset means the edge let it go.
fn held(mut stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn scrape(edge: &EdgeServer) -> String {
    get(edge.metrics_port, "/metrics").1
}

fn status_of(edge: &EdgeServer) -> u16 {
    let creds = format!("{USER}:{PASSWORD}");
    edge.curl(&["-u", &creds, &format!("{}/v2/", edge.url())]).0
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Connections that never send a ClientHello are let go at `edge.handshake_timeout`, counted,
/// and summed up in one log line; plain HTTP sent to the TLS port gets a 400 that says so; a
/// client that cancels a download is no server error. The whole log has no ERROR line, the
/// server's own readiness probe at start included.
#[test]
fn idle_handshakes_are_let_go_at_the_deadline_and_summed_up_not_logged_one_by_one() {
    let edge = EdgeServer::start_with(Tls::SelfSigned, "handshake_timeout = \"1s\"\n");
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| connect_from("127.0.0.2", edge.https_port))
        .collect();
    assert_eq!(status_of(&edge), 200, "a real client meanwhile");
    std::thread::sleep(Duration::from_millis(1500));
    let still_held = idle.iter().filter(|s| held(s)).count();
    assert_eq!(still_held, 0, "every idle connection closed after 1 s");

    let plain = curl_with_ca(
        &edge.ca(),
        &[&format!("http://localhost:{}/v2/", edge.https_port)],
    );
    let plain = String::from_utf8_lossy(&plain.stdout);
    assert!(plain.contains("status=400"), "{plain}");
    assert!(plain.contains("use https://"), "{plain}");

    cancel_a_download(&edge);

    let metrics = scrape(&edge);
    let failures = |reason: &str| {
        sample(
            &metrics,
            &format!("regapp_tls_handshake_failures_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(failures("timeout"), 20.0, "{metrics}");
    assert_eq!(failures("not_tls"), 1.0, "{metrics}");
    eventually(Duration::from_secs(25), "the summary line", || {
        edge.process
            .log()
            .contains("TLS handshakes that failed in the last 10s")
    });
    let log = edge.process.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "no ERROR lines: {errors:#?}");
}

/// A download the client gives up on, over HTTP/2 (a stream reset) and HTTP/1.1 (a closed
/// connection).
fn cancel_a_download(edge: &EdgeServer) {
    let creds = format!("{USER}:{PASSWORD}");
    let blob = vec![5u8; 16 * 1024 * 1024];
    let digest = format!("sha256:{}", sha256_hex(&blob));
    let file = edge.dir.path().join("blob");
    std::fs::write(&file, &blob).unwrap();
    let location = start_upload(edge, "cancel/app");
    let (status, text) = edge.curl(&[
        "-u",
        &creds,
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{}{location}?digest={digest}", edge.url()),
    ]);
    assert_eq!(status, 201, "{text}");
    for version in ["--http2", "--http1.1"] {
        let out = curl_with_ca(
            &edge.ca(),
            &[
                version,
                "-u",
                &creds,
                "--limit-rate",
                "1M",
                "--max-time",
                "1",
                "-o",
                "/dev/null",
                &format!("{}/v2/cancel/app/blobs/{digest}", edge.url()),
            ],
        );
        assert!(!out.status.success(), "curl gave up mid-download");
    }
    // The edge logs the request when it notices the client left.
    eventually(
        Duration::from_secs(10),
        "both cancelled downloads logged",
        || {
            edge.process
                .log()
                .lines()
                .filter(|l| l.contains("/v2/cancel/app/blobs/") && l.contains("error="))
                .count()
                >= 2
        },
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// One address at `edge.max_connections_per_client` is refused more, while another address
/// still gets in; `edge.max_connections` refuses everyone once reached, until a place frees.
#[test]
fn a_flood_from_one_address_never_locks_out_another() {
    let edge = EdgeServer::start_with(
        Tls::SelfSigned,
        "max_connections_per_client = 4\nmax_connections = 6\nhandshake_timeout = \"30s\"\n",
    );
    // Serving already: the start's own probes no longer hold places.
    assert_eq!(status_of(&edge), 200);
    let flood: Vec<TcpStream> = (0..10)
        .map(|_| connect_from("127.0.0.2", edge.https_port))
        .collect();
    let held_of = |streams: &[TcpStream]| streams.iter().filter(|s| held(s)).count();
    assert_eq!(held_of(&flood), 4, "127.0.0.2 holds its 4");
    assert_eq!(status_of(&edge), 200, "127.0.0.1 still gets in");
    // curl's connection holds its place until the edge has seen it close.
    eventually(Duration::from_secs(5), "only the flood's 4 held", || {
        sample(&scrape(&edge), "regapp_edge_connections_open") == 4.0
    });

    let second: Vec<TcpStream> = (0..4)
        .map(|_| connect_from("127.0.0.3", edge.https_port))
        .collect();
    assert_eq!(held_of(&second), 2, "the total of 6 is reached");
    assert_eq!(status_of(&edge), 0, "nobody gets in at the total cap");
    drop(second);
    eventually(Duration::from_secs(5), "a place frees", || {
        status_of(&edge) == 200
    });

    let metrics = scrape(&edge);
    let refused = |reason: &str| {
        sample(
            &metrics,
            &format!("regapp_edge_connections_refused_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(refused("per_client"), 6.0, "{metrics}");
    assert!(
        refused("total") >= 3.0,
        "2 of 127.0.0.3 and curl's: {metrics}"
    );
    // As above: the last curl's connection is counted until the edge has seen it close.
    eventually(
        Duration::from_secs(5),
        "only 127.0.0.2's 4 still open",
        || sample(&scrape(&edge), "regapp_edge_connections_open") == 4.0,
    );
    eventually(Duration::from_secs(25), "the summary line", || {
        edge.process
            .log()
            .contains("connections refused at the edge's limits")
    });
}

/// 1,000 clients that finish their TLS handshake and then send a header slowly, as slowloris
/// does, hold ~40 KiB each; once they are gone, the process gives that memory back (glibc kept
/// it for good before).
#[test]
fn memory_comes_back_after_a_flood_of_connections() {
    let edge = EdgeServer::start();
    assert_eq!(status_of(&edge), 200);
    let before = rss_kib(edge.pid());
    let config = Arc::new(client_trusting(&std::fs::read(edge.ca()).unwrap()));
    let mut slow = Vec::new();
    for n in 0..1000 {
        let source = format!("127.0.1.{}", 2 + n / 250);
        let tcp = connect_from(&source, edge.https_port);
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let name = "localhost".try_into().unwrap();
        let connection = rustls::ClientConnection::new(config.clone(), name).unwrap();
        let mut tls = rustls::StreamOwned::new(connection, tcp);
        tls.write_all(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .unwrap();
        tls.flush().unwrap();
        slow.push(tls);
    }
    eventually(Duration::from_secs(10), "the edge holds all 1000", || {
        sample(&scrape(&edge), "regapp_edge_connections_open") >= 1000.0
    });
    let during = rss_kib(edge.pid());
    drop(slow);
    eventually(Duration::from_secs(10), "the edge let them all go", || {
        sample(&scrape(&edge), "regapp_edge_connections_open") == 0.0
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = rss_kib(edge.pid());
    while after >= 2 * before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        after = rss_kib(edge.pid());
    }
    eprintln!("RSS before {before} KiB, with 1000 slow clients {during} KiB, after {after} KiB");
    assert!(
        during > before + 10 * 1024,
        "the flood did cost memory ({before} → {during} KiB), or this test shows nothing"
    );
    assert!(
        after < 2 * before,
        "RSS {after} KiB after the flood, {before} KiB before"
    );
}

/// Request headers above 64 KiB get 431 with the spec's JSON body over HTTP/1.1 and HTTP/2
/// alike (over h2 a 100 KB header used to kill the connection); below it they are served.
#[test]
fn oversized_headers_get_431_over_both_protocols() {
    let edge = EdgeServer::start();
    let creds = format!("{USER}:{PASSWORD}");
    for (size, want) in [(60_000, 200), (100_000, 431)] {
        let header = format!("X-Big: {}", "x".repeat(size));
        let (status, text) = edge.curl(&[
            "--http1.1",
            "-u",
            &creds,
            "-H",
            &header,
            &format!("{}/v2/", edge.url()),
        ]);
        assert_eq!(status, want, "HTTP/1.1, {size} bytes: {text}");
        if want == 431 {
            assert!(text.contains(r#""code":"UNSUPPORTED""#), "{text}");
        }
        let (status, body) = h2_get(&edge, "/v2/", &[("x-big", "x".repeat(size))]);
        assert_eq!(status, want, "HTTP/2, {size} bytes: {body}");
        if want == 431 {
            assert!(body.contains(r#""code":"UNSUPPORTED""#), "{body}");
        }
    }
}

/// One GET over HTTP/2 with hyper (curl's nghttp2 will not send a header list over 64 KiB,
/// hyper's h2 will), with credentials and `headers`.
fn h2_get(edge: &EdgeServer, path: &str, headers: &[(&str, String)]) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = client_trusting(&std::fs::read(edge.ca()).unwrap());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http2()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build::<_, Empty<bytes::Bytes>>(connector);
        let mut request = http::Request::get(format!("{}{path}", edge.url()))
            .header("authorization", crate::util::basic_auth(USER, PASSWORD));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = client
            .request(request.body(Empty::new()).unwrap())
            .await
            .unwrap_or_else(|e| panic!("HTTP/2 GET {path}: {e:?}"));
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

/// The engine alone (no `[edge]`, behind an operator's proxy) lets go of a connection that
/// sends nothing and of one that sends half a header, at its 10 s header deadline, while a
/// kept-alive connection idling as long (a proxy's or client's pool) still takes its next request.
#[test]
fn the_engine_alone_lets_go_of_silent_and_half_sent_headers() {
    const REQUEST: &[u8] = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n";
    let root = tempfile::tempdir().unwrap();
    let engine = Regapp::start(root.path());
    let address: SocketAddr = crate::util::Registry::host(&engine).parse().unwrap();
    let mut pooled = TcpStream::connect(address).unwrap();
    pooled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    pooled.write_all(REQUEST).unwrap();
    assert_eq!(response_status(&mut pooled), "HTTP/1.1 200 OK");
    let mut silent = TcpStream::connect(address).unwrap();
    let mut partial = TcpStream::connect(address).unwrap();
    partial
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    for (what, stream) in [("silent", &mut silent), ("partial", &mut partial)] {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(15),
            "{what}: still open after {waited:?}"
        );
    }
    std::thread::sleep(Duration::from_secs(12).saturating_sub(started.elapsed()));
    pooled.write_all(REQUEST).unwrap();
    assert_eq!(response_status(&mut pooled), "HTTP/1.1 200 OK");
}

/// Reads one small response off a kept-alive HTTP/1.1 connection; returns its status line.
fn response_status(stream: &mut TcpStream) -> String {
    let mut buf = [0; 4096];
    let n = stream.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    head.lines().next().unwrap_or_default().to_owned()
}
