//! `regapp gc` / `regapp du` ↔ the running server, over `gc.sock` (0600) in the storage root.
//!
//! One line each way and then some, as `acme::control`: the client sends `gc`, `gc dry-run`,
//! `gc delete-untagged`, `gc dry-run delete-untagged` or `du`; the server answers with report
//! lines and a last line `ok` or `error: <message>`, then closes. A collection asked for while
//! another runs is refused (`error: a collection is already running …`).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::UnixListener;

use super::{Collector, RunOptions};

/// Binds the socket, replacing a stale one left by a crash; refuses if a server answers on it.
pub fn bind(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    if UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "{}: another regapp serves this storage root",
                path.display()
            ),
        ));
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Answers on `listener` forever (inside a Tokio runtime).
pub async fn serve(listener: std::os::unix::net::UnixListener, collector: Arc<Collector>) {
    let listener = match UnixListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "gc socket unusable; `regapp gc` cannot reach this server");
            return;
        }
    };
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "gc socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let collector = collector.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &collector).await {
                tracing::debug!(error = %e, "gc socket: client went away");
            }
        });
    }
}

async fn answer(stream: tokio::net::UnixStream, collector: &Collector) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    AsyncBufReader::new(read).read_line(&mut line).await?;
    let reply = match parse(line.trim()) {
        Some(Request::Collect(options)) => {
            tracing::info!(
                ?options,
                "garbage collection asked for through the gc socket"
            );
            match collector.run_once(options).await {
                Ok(report) => format!("{}ok\n", report.summary()),
                Err(e) => format!("error: {e}\n"),
            }
        }
        Some(Request::Usage) => match collector.usage().await {
            Ok(usage) => format!("{}ok\n", usage.report()),
            Err(e) => format!("error: {e}\n"),
        },
        None => format!(
            "error: unknown command {:?} (expected gc [dry-run] [delete-untagged] or du)\n",
            line.trim()
        ),
    };
    write.write_all(reply.as_bytes()).await?;
    write.shutdown().await
}

#[derive(Debug, PartialEq)]
enum Request {
    Collect(RunOptions),
    Usage,
}

fn parse(line: &str) -> Option<Request> {
    let mut words = line.split_whitespace();
    match words.next()? {
        "du" if words.next().is_none() => Some(Request::Usage),
        "gc" => {
            let mut options = RunOptions::default();
            for word in words {
                match word {
                    "dry-run" => options.dry_run = true,
                    "delete-untagged" => options.delete_untagged = true,
                    _ => return None,
                }
            }
            Some(Request::Collect(options))
        }
        _ => None,
    }
}

/// The line that asks for a collection with `options`.
pub fn collect_command(options: RunOptions) -> String {
    let mut command = "gc".to_owned();
    if options.dry_run {
        command.push_str(" dry-run");
    }
    if options.delete_untagged {
        command.push_str(" delete-untagged");
    }
    command
}

/// Why the command line got no answer from a server.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens: the command line works on the store itself.
    #[error("no server answers on {}: {source}", path.display())]
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

/// Sends `command` and returns the server's report (without the final `ok`). No read timeout:
/// a collection of a large store takes as long as it takes.
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
    fn commands_round_trip() {
        for options in [
            RunOptions::default(),
            RunOptions {
                dry_run: true,
                delete_untagged: true,
            },
        ] {
            let Some(Request::Collect(parsed)) = parse(&collect_command(options)) else {
                panic!("not a collection");
            };
            assert_eq!(
                (parsed.dry_run, parsed.delete_untagged),
                (options.dry_run, options.delete_untagged)
            );
        }
        assert_eq!(parse("du"), Some(Request::Usage));
        assert_eq!(parse("gc now"), None);
        assert_eq!(parse("rm -rf"), None);
    }

    #[test]
    fn a_live_socket_is_refused_and_nobody_listening_means_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gc.sock");
        assert!(matches!(
            request(&path, "du"),
            Err(ControlError::NotRunning { .. })
        ));
        let first = bind(&path).unwrap();
        assert_eq!(bind(&path).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        drop(first);
        bind(&path).unwrap();
    }
}
