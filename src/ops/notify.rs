//! systemd's readiness protocol (`Type=notify`, sd_notify(3)): one datagram per state change to
//! the socket named by `$NOTIFY_SOCKET`. Without that variable (not under systemd) every call is
//! a no-op. Hand-written: the protocol is one `sendto` and a crate would add nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// `READY=1`: listening, and (ACME) serving a certificate; also ends a reload.
pub fn ready() {
    send("READY=1\nSTATUS=serving");
}

/// `RELOADING=1` with the monotonic time systemd's `Type=notify-reload` asks for.
pub fn reloading() {
    send(&format!(
        "RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC={}",
        monotonic_usec()
    ));
}

/// `STOPPING=1`: draining after SIGTERM.
pub fn stopping() {
    send("STOPPING=1\nSTATUS=draining requests in flight");
}

/// `WATCHDOG=1`: still alive.
pub fn watchdog() {
    send("WATCHDOG=1");
}

/// How often to send [`watchdog`]: half of `$WATCHDOG_USEC`, as sd_watchdog_enabled(3)
/// recommends; `None` when systemd asked for no watchdog (or asked another process).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

fn send(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send_to(&path, message) {
        tracing::warn!(error = %e, socket = ?path, "cannot notify systemd");
    }
}

fn send_to(path: &std::ffi::OsStr, message: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    // A leading '@' names a socket in the abstract namespace.
    let address = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)?
        }
        None => std::os::unix::net::SocketAddr::from_pathname(std::path::Path::new(path))?,
    };
    socket.send_to_addr(message.as_bytes(), &address)?;
    Ok(())
}

fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000
        + u64::try_from(now.tv_nsec).unwrap_or(0) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_one_datagram_per_state_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn the_monotonic_clock_is_past_zero_and_moves_forward() {
        let a = monotonic_usec();
        std::thread::sleep(Duration::from_millis(2));
        assert!(monotonic_usec() > a && a > 0);
    }
}
