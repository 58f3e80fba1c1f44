//! systemd's notifications, received on a real datagram socket as systemd would: READY=1 once
//! the edge listens with a certificate, WATCHDOG=1 at half of WATCHDOG_USEC, RELOADING=1 then
//! READY=1 around a SIGHUP, STOPPING=1 on SIGTERM. And `check-config`'s exit codes, which
//! `ExecStartPre`/`ExecReload` rely on.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::edge::{EdgeServer, Tls};

/// Receives datagrams until one starts with `prefix` (others are returned too, in order).
fn wait_for(socket: &UnixDatagram, prefix: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {prefix:?} within {within:?}; got {seen:?}"
        );
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = message.starts_with(prefix);
                seen.push(message);
                if done {
                    return seen;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
}

#[test]
fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut edge = EdgeServer::start_configured(Tls::SelfSigned, "", "", |c| {
        c.env("NOTIFY_SOCKET", &path).env("WATCHDOG_USEC", "400000");
    });
    let seen = wait_for(&socket, "READY=1", Duration::from_secs(30));
    assert!(seen.iter().all(|m| !m.starts_with("STOPPING")), "{seen:?}");
    // Pings every 200 ms: two arrive well within a second.
    let started = Instant::now();
    wait_for(&socket, "WATCHDOG=1", Duration::from_secs(2));
    wait_for(&socket, "WATCHDOG=1", Duration::from_secs(2));
    assert!(started.elapsed() < Duration::from_secs(2));

    edge.process.signal(libc::SIGHUP);
    let seen = wait_for(&socket, "RELOADING=1", Duration::from_secs(10));
    let reloading = seen.last().unwrap();
    assert!(reloading.contains("\nMONOTONIC_USEC="), "{reloading}");
    wait_for(&socket, "READY=1", Duration::from_secs(10));

    edge.process.signal(libc::SIGTERM);
    wait_for(&socket, "STOPPING=1", Duration::from_secs(10));
    edge.process.stop();
}

#[test]
fn check_config_exits_zero_only_for_a_file_serve_would_start_with() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[metrics]\nlisten = \"127.0.0.1:9102\"\n[log]\nformat = \"json\"\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[metrics]\nlisten = \"nowhere\"\n[log]\nlevel = \"loud=\"\n",
    )
    .unwrap();
    let run = |file: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_regapp"))
            .args(["check-config", "--config"])
            .arg(file)
            .output()
            .unwrap()
    };
    let ok = run(&good);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = run(&bad);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("metrics.listen"), "{stderr}");
    let missing = run(&dir.path().join("absent.toml"));
    assert_eq!(missing.status.code(), Some(1));
}
