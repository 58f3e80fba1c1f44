//! `regapp gc` / `regapp du` ↔ the running server, over `gc.sock` (0600) in the storage root.
//!
//! The line protocol of `control_socket`; the client sends `gc`, `gc dry-run`,
//! `gc delete-untagged`, `gc dry-run delete-untagged` or `du`; the server answers with report
//! lines and a last line `ok` or `error: <message>`, then closes; while it works it sends the
//! client its progress. A collection asked for while another runs is refused (`error: a
//! collection is already running …`).

use std::io;
use std::path::Path;
use std::sync::Arc;

use super::{Collector, RunOptions};
use crate::plumbing::control_socket::{self, ControlError, Interim};

/// Binds the socket, replacing a stale one left by a crash; refuses if a server answers on it.
pub fn bind(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    control_socket::bind(path, "another regapp serves this storage root")
}

/// Answers on `listener` forever (inside a Tokio runtime).
pub async fn serve(listener: std::os::unix::net::UnixListener, collector: Arc<Collector>) {
    control_socket::serve(listener, "gc socket", "regapp gc", move |line, progress| {
        let collector = collector.clone();
        async move { answer(&line, &collector, progress).await }
    })
    .await
}

async fn answer(line: &str, collector: &Collector, progress: Interim) -> String {
    match parse(line) {
        Some(Request::Collect(options)) => {
            tracing::info!(
                ?options,
                "garbage collection asked for through the gc socket"
            );
            match collector.run_once_reporting_to(options, progress).await {
                Ok(report) => format!("{}ok\n", report.summary()),
                Err(e) => format!("error: {e}\n"),
            }
        }
        Some(Request::Usage) => match collector.usage_reporting_to(progress).await {
            Ok(usage) => format!("{}ok\n", usage.report()),
            Err(e) => format!("error: {e}\n"),
        },
        None => format!(
            "error: unknown command {line:?} (expected gc [dry-run] [delete-untagged] or du)\n"
        ),
    }
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

/// Sends `command` and returns the server's report (without the final `ok`); `on_progress`
/// gets each progress line meanwhile. No read timeout: a collection of a large store takes as
/// long as it takes.
pub fn request(
    path: &Path,
    command: &str,
    on_progress: impl FnMut(&str),
) -> Result<String, ControlError> {
    control_socket::request(path, command, None, on_progress)
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
            request(&path, "du", |_| {}),
            Err(ControlError::NotRunning { .. })
        ));
        let first = bind(&path).unwrap();
        assert_eq!(bind(&path).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        drop(first);
        bind(&path).unwrap();
    }
}
