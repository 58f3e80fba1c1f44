//! How a command line reaches the running server: a Unix socket (mode 0600, so only the user
//! regapp runs as can use it) and a line protocol. The client sends one line; the server
//! answers with report lines and a last line `ok` or `error: <message>`, then closes. Before
//! the report, the server may send `progress: <text>` lines as the work goes on.
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
use tokio::sync::mpsc;

/// Where an answer sends its progress while it works: each line goes to the client at once.
pub type Interim = mpsc::UnboundedSender<String>;

/// Marks a line of progress, which comes before the report.
const PROGRESS: &str = "progress: ";

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
/// `answer`, with an [`Interim`] for its progress; its reply (report lines and `ok\n` or
/// `error: …\n`) is written back. `name` ("gc socket") and `client` ("regapp gc") are for the
/// log.
pub async fn serve<A, F>(
    listener: StdUnixListener,
    name: &'static str,
    client: &'static str,
    answer: A,
) where
    A: Fn(String, Interim) -> F + Send + Sync + 'static,
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
    A: Fn(String, Interim) -> F,
    F: Future<Output = String> + Send + 'static,
{
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    AsyncBufReader::new(read).read_line(&mut line).await?;
    let (interim, mut progress) = mpsc::unbounded_channel();
    // The work runs on a task of its own: a client that goes away (Ctrl-C) or stops reading
    // can neither cancel nor stall it. A collection asked for runs to its end.
    let work = tokio::spawn(answer(line.trim().to_owned(), interim));
    // Ends when the work is done with its `Interim`, at the latest when it finishes.
    while let Some(text) = progress.recv().await {
        write
            .write_all(format!("{PROGRESS}{text}\n").as_bytes())
            .await?;
    }
    let reply = work.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "a control socket's answer failed");
        "error: the server failed while answering; see its log\n".to_owned()
    });
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

/// Sends `command` and returns the server's report (without the final `ok`); each progress
/// line before it goes to `on_progress`. `read_timeout` bounds each wait for a line (`None`:
/// as long as it takes).
pub fn request(
    path: &Path,
    command: &str,
    read_timeout: Option<Duration>,
    mut on_progress: impl FnMut(&str),
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
        if let Some(text) = line.strip_prefix(PROGRESS) {
            on_progress(text);
            continue;
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
        let err = request(&dir.path().join("control.sock"), "status", None, |_| {}).unwrap_err();
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
            |line: String, progress: Interim| async move {
                match line.as_str() {
                    "hello" => {
                        for step in ["one", "two"] {
                            progress.send(format!("greeting {step}")).unwrap();
                        }
                        "hi\nthere\nok\n".to_owned()
                    }
                    other => format!("error: unknown command {other:?}\n"),
                }
            },
        ));
        let asked = |command: &'static str| {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let mut progress = Vec::new();
                let answer = request(&path, command, None, |text| progress.push(text.to_owned()));
                (answer, progress)
            })
        };
        let (answer, progress) = asked("hello").await.unwrap();
        assert_eq!(answer.unwrap(), "hi\nthere\n");
        assert_eq!(progress, ["greeting one", "greeting two"]);
        let (refused, progress) = asked("bye").await.unwrap();
        let refused = refused.unwrap_err();
        assert!(matches!(refused, ControlError::Refused(ref m) if m == "unknown command \"bye\""));
        assert!(progress.is_empty());
    }

    #[tokio::test]
    async fn a_client_that_goes_away_does_not_stop_the_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let go_on = Arc::new(tokio::sync::Notify::new());
        let (finished, mut work_finished) = mpsc::unbounded_channel::<String>();
        let listener = bind(&path, "in use").unwrap();
        let may_go_on = go_on.clone();
        tokio::spawn(serve(
            listener,
            "test socket",
            "test",
            move |line, progress| {
                let (may_go_on, finished) = (may_go_on.clone(), finished.clone());
                async move {
                    progress.send("started".to_owned()).unwrap();
                    may_go_on.notified().await;
                    // The client is gone by now: progress goes nowhere, the work goes on.
                    let _ = progress.send("still working".to_owned());
                    finished.send(line).unwrap();
                    "done\nok\n".to_owned()
                }
            },
        ));
        let client = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let mut stream = UnixStream::connect(&path).unwrap();
                stream.write_all(b"long job\n").unwrap();
                let mut first = String::new();
                BufReader::new(&stream).read_line(&mut first).unwrap();
                first
            })
        };
        assert_eq!(client.await.unwrap(), "progress: started\n");
        go_on.notify_one();
        let done = tokio::time::timeout(Duration::from_secs(10), work_finished.recv()).await;
        assert_eq!(done.unwrap().as_deref(), Some("long job"));
    }
}
