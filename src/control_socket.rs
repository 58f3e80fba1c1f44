//! How a command line reaches the running server: a Unix socket (mode 0600, so only the user
//! regapp runs as can use it) and a line protocol. The client sends one line; the server
//! answers with report lines and a last line `ok` or `error: <message>`, then closes.
//! `gc::control` (`gc.sock`: `regapp gc`, `regapp du`) and `acme::control` (`control.sock`:
//! `regapp cert`) say what the lines mean; this module only carries them.

use std::future::Future;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::UnixListener;

/// Binds the socket, replacing a stale one left by a crash. Refuses (`AddrInUse`, the message
/// `<path>: <in_use>`) if a process answers on it.
pub fn bind(path: &Path, in_use: &str) -> io::Result<StdUnixListener> {
    if UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{}: {in_use}", path.display()),
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
    let listener = StdUnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Answers on `listener` forever (inside a Tokio runtime): each connection's line goes to
/// `answer`, whose reply (report lines and `ok\n` or `error: …\n`) is written back. `name`
/// ("gc socket") and `client` ("regapp gc") are for the log.
pub async fn serve<A, F>(
    listener: StdUnixListener,
    name: &'static str,
    client: &'static str,
    answer: A,
) where
    A: Fn(String) -> F + Send + Sync + 'static,
    F: Future<Output = String> + Send + 'static,
{
    let listener = match UnixListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "{name} unusable; `{client}` cannot reach this server");
            return;
        }
    };
    let answer = Arc::new(answer);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "{name}: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            if let Err(e) = converse(stream, answer.as_ref()).await {
                tracing::debug!(error = %e, "{name}: client went away");
            }
        });
    }
}

async fn converse<A, F>(stream: tokio::net::UnixStream, answer: &A) -> io::Result<()>
where
    A: Fn(String) -> F,
    F: Future<Output = String>,
{
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    AsyncBufReader::new(read).read_line(&mut line).await?;
    let reply = answer(line.trim().to_owned()).await;
    write.write_all(reply.as_bytes()).await?;
    write.shutdown().await
}

/// Why the command line got no answer from a server.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens: the server is not running (callers say what that means for them).
    #[error("nothing answers on {}: {source}", path.display())]
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

/// Sends `command` and returns the server's report (without the final `ok`). `read_timeout`
/// bounds each wait for a line (`None`: as long as it takes).
pub fn request(
    path: &Path,
    command: &str,
    read_timeout: Option<Duration>,
) -> Result<String, ControlError> {
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
    stream.set_read_timeout(read_timeout).map_err(io_error)?;
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
        let first = bind(&path, "another regapp answers here").unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let refused = bind(&path, "another regapp answers here").unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::AddrInUse);
        assert!(refused.to_string().contains("another regapp"), "{refused}");
        // A crash leaves the file behind with nobody listening.
        drop(first);
        assert!(path.exists());
        let _second = bind(&path, "another regapp answers here").unwrap();
    }

    #[test]
    fn nobody_listening_means_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let err = request(&dir.path().join("control.sock"), "status", None).unwrap_err();
        assert!(matches!(err, ControlError::NotRunning { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_line_goes_to_the_answer_and_its_reply_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = bind(&path, "in use").unwrap();
        tokio::spawn(serve(
            listener,
            "test socket",
            "test",
            |line: String| async move {
                match line.as_str() {
                    "hello" => "hi\nthere\nok\n".to_owned(),
                    other => format!("error: unknown command {other:?}\n"),
                }
            },
        ));
        let asked = |command: &'static str| {
            let path = path.clone();
            tokio::task::spawn_blocking(move || request(&path, command, None))
        };
        assert_eq!(asked("hello").await.unwrap().unwrap(), "hi\nthere\n");
        let refused = asked("bye").await.unwrap().unwrap_err();
        assert!(matches!(refused, ControlError::Refused(ref m) if m == "unknown command \"bye\""));
    }
}
