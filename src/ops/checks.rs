//! The readiness checks `/readyz` and the systemd notifier run: the engine answers HTTP, the
//! storage root takes a write, a certificate is loaded (and still valid).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::certs::CertResolver;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The address to reach a listener bound on `addr` from this host (`0.0.0.0` → loopback).
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        ip if !ip.is_unspecified() => ip,
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    SocketAddr::new(ip, addr.port())
}

/// The engine answers `HEAD /v2/` with any HTTP status (403 without the front token is an
/// answer). Probes are counted like any request: they are the `route="base",method="HEAD"`
/// series (clients ask `GET /v2/`).
pub async fn engine_answers(addr: SocketAddr) -> Result<(), String> {
    let probe = async {
        let mut stream = TcpStream::connect(reachable(addr)).await?;
        stream
            .write_all(b"HEAD /v2/ HTTP/1.1\r\nHost: readyz\r\nConnection: close\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(head)) if head.starts_with(b"HTTP/1.") => Ok(()),
        Ok(Ok(head)) => Err(format!(
            "{addr} answered {:?}, not HTTP",
            String::from_utf8_lossy(&head)
        )),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!("{addr}: no answer within {PROBE_TIMEOUT:?}")),
    }
}

/// A file can be created, written and removed under the storage root (a full or read-only disk
/// shows here before a push fails).
pub async fn storage_writable(root: PathBuf) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&root)
            .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        let probe = root.join(format!(".readyz-{}", uuid::Uuid::new_v4().simple()));
        let written = std::fs::write(&probe, b"ok");
        let _ = std::fs::remove_file(&probe);
        written.map_err(|e| format!("cannot write in {}: {e}", root.display()))
    })
    .await
    .map_err(|e| format!("the check did not finish: {e}"))?
}

/// A certificate is installed and not expired.
pub fn certificate_loaded(resolver: &Arc<CertResolver>) -> Result<(), String> {
    match resolver.info() {
        None => Err("no certificate yet (ACME: waiting for the first one)".to_owned()),
        Some(info) if !info.valid_at(SystemTime::now()) => Err(format!(
            "the certificate for {} is not valid now (expires {})",
            info.dns_names.join(", "),
            humantime::format_rfc3339_seconds(info.not_after)
        )),
        Some(_) => Ok(()),
    }
}

/// Something accepts TCP connections on `addr` (the edge's listener, once pingora bound it).
pub async fn listening(addr: SocketAddr) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(reachable(addr))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!("{addr}: no answer within {PROBE_TIMEOUT:?}")),
    }
}
