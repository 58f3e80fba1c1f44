//! `regapp cert status|renew` ↔ the running server, over a Unix socket in the state directory
//! (`control.sock`, 0600 in a 0700 directory: only the user regapp runs as can use it).
//!
//! The protocol is one line each way and then some: the client sends `status` or `renew`; the
//! server answers with report lines and a last line `ok` or `error: <message>`, then closes.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::UnixListener;

use super::manager::{AcmeManager, ATTEMPT_TIMEOUT};

/// Binds the control socket, replacing a stale one left by a crash; refuses if another process
/// answers on it.
pub fn bind(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    if UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "{}: another regapp answers on this control socket (same acme.state_dir?)",
                path.display()
            ),
        ));
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Answers on `listener` forever (inside a Tokio runtime).
pub async fn serve(listener: std::os::unix::net::UnixListener, manager: Arc<AcmeManager>) {
    let listener = match UnixListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "control socket unusable; `regapp cert` cannot reach this server");
            return;
        }
    };
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let manager = manager.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &manager).await {
                tracing::debug!(error = %e, "control socket: client went away");
            }
        });
    }
}

async fn answer(stream: tokio::net::UnixStream, manager: &AcmeManager) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    AsyncBufReader::new(read).read_line(&mut line).await?;
    let reply = match line.trim() {
        "status" => format!("{}ok\n", manager.status().report()),
        "renew" => {
            tracing::info!("renewal forced through the control socket");
            match manager.renew_now().await {
                Ok(_) => format!("{}ok\n", manager.status().report()),
                Err(e) => format!("error: {e}\n"),
            }
        }
        other => format!("error: unknown command {other:?} (expected status or renew)\n"),
    };
    write.write_all(reply.as_bytes()).await?;
    write.shutdown().await
}

/// Why the CLI could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "regapp is not running with this acme.state_dir (nothing answers on {}: {source}); \
         start it (systemctl start regapp) and try again",
        path.display()
    )]
    NotRunning {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: permission denied; run this as the user regapp runs as", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

/// Sends `command` and returns the server's report (without the final `ok`).
pub fn request(path: &Path, command: &str) -> Result<String, ControlError> {
    let io_error = |source: io::Error| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(|source| match source.kind() {
        io::ErrorKind::PermissionDenied => ControlError::PermissionDenied {
            path: path.to_owned(),
        },
        _ => ControlError::NotRunning {
            path: path.to_owned(),
            source,
        },
    })?;
    // A renewal may take a whole attempt; allow it that and a little more.
    stream
        .set_read_timeout(Some(ATTEMPT_TIMEOUT + Duration::from_secs(30)))
        .map_err(io_error)?;
    stream
        .write_all(format!("{command}\n").as_bytes())
        .map_err(io_error)?;
    let mut report = String::new();
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(io_error)?;
        if line == "ok" {
            return Ok(report);
        }
        if let Some(message) = line.strip_prefix("error: ") {
            return Err(ControlError::Refused(message.to_owned()));
        }
        report.push_str(&line);
        report.push('\n');
    }
    Err(ControlError::Refused(
        "the server closed the connection without an answer".to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let first = bind(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let refused = bind(&path).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::AddrInUse);
        assert!(refused.to_string().contains("another regapp"), "{refused}");
        // A crash leaves the file behind with nobody listening.
        drop(first);
        assert!(path.exists());
        let _second = bind(&path).unwrap();
    }

    #[test]
    fn nobody_listening_means_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let err = request(&dir.path().join("control.sock"), "status").unwrap_err();
        assert!(matches!(err, ControlError::NotRunning { .. }), "{err}");
        assert!(err.to_string().contains("regapp is not running"), "{err}");
    }
}
