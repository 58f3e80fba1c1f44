//! A debounced watch on a few files: calls back once their changes have settled. Used by `auth`
//! (the htpasswd file) and `certs` (PEM files); knows nothing of either.
//!
//! The files' parent directories are watched, not the files: editors, `htpasswd`, certbot and
//! `mv` replace a file by renaming a new one over it (a new inode a file watch would never see),
//! and certbot's `live/` symlinks are unlinked and recreated. Events naming one of the files — or
//! a `..name` entry, which is how Kubernetes swaps a mounted secret — start a quiet period; the
//! callback runs once no such event has come for `quiet`, or after [`MAX_DELAY`] while events
//! keep coming, so a cert and key written one after the other are read together. Reads (open,
//! close without write) are ignored, so the callback reading the files does not trigger itself.
//! A watch error or an event without paths (queue overflow) might hide a change, so it counts.
//! A change made through a symlink's target in another directory is not seen: SIGHUP covers that.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// The longest a callback waits for quiet while events keep coming: keeps reloads well inside
/// the 2-second promise for htpasswd edits.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {dir} for changes: {source}")]
    Notify {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot start the {name} watcher thread: {source}")]
    Thread {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

enum Signal {
    Changed,
    Stop,
}

/// Stops watching when dropped (and waits for a callback in progress to finish).
pub struct WatchGuard {
    watcher: Option<RecommendedWatcher>,
    signals: mpsc::Sender<Signal>,
    thread: Option<JoinHandle<()>>,
}

/// Watches `files` and calls `on_change` on a background thread named `name` after each settled
/// change.
pub fn watch_files(
    name: &str,
    files: &[&Path],
    quiet: Duration,
    mut on_change: impl FnMut() + Send + 'static,
) -> Result<WatchGuard, WatchError> {
    let dirs: BTreeSet<PathBuf> = files.iter().map(|f| parent_dir(f)).collect();
    let names: BTreeSet<OsString> = files
        .iter()
        .filter_map(|f| f.file_name().map(ToOwned::to_owned))
        .collect();
    let (signals, received) = mpsc::channel();
    let notify_signals = signals.clone();
    let notify_error = |dir: &Path| {
        let dir = dir.to_owned();
        move |source| WatchError::Notify { dir, source }
    };
    let first_dir = dirs.iter().next().cloned().unwrap_or_default();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        if relevant(&event, &names) {
            // The receiver is gone only while the guard is being dropped.
            let _ = notify_signals.send(Signal::Changed);
        }
    })
    .map_err(notify_error(&first_dir))?;
    for dir in &dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(notify_error(dir))?;
    }
    let thread = std::thread::Builder::new()
        .name(format!("{name}-watch"))
        .spawn(move || debounce_loop(&received, quiet, &mut on_change))
        .map_err(|source| WatchError::Thread {
            name: name.to_owned(),
            source,
        })?;
    tracing::debug!(dirs = ?dirs, "watching {name}");
    Ok(WatchGuard {
        watcher: Some(watcher),
        signals,
        thread: Some(thread),
    })
}

fn debounce_loop(received: &mpsc::Receiver<Signal>, quiet: Duration, on_change: &mut impl FnMut()) {
    while let Ok(Signal::Changed) = received.recv() {
        let deadline = Instant::now() + MAX_DELAY;
        loop {
            let wait = quiet.min(deadline.saturating_duration_since(Instant::now()));
            match received.recv_timeout(wait) {
                Ok(Signal::Changed) if Instant::now() < deadline => continue,
                Ok(Signal::Changed) | Err(RecvTimeoutError::Timeout) => break,
                Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        on_change();
    }
}

/// Whether an event may have changed one of the files named `names`.
fn relevant(event: &notify::Result<Event>, names: &BTreeSet<OsString>) -> bool {
    let event = match event {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(%error, "file watch error; reloading to be safe");
            return true;
        }
    };
    let kind_matters = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    kind_matters
        && (event.paths.is_empty()
            || event.paths.iter().any(|path| {
                path.file_name().is_some_and(|name| {
                    names.contains(name) || name.as_encoded_bytes().starts_with(b"..")
                })
            }))
}

fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        drop(self.watcher.take());
        let _ = self.signals.send(Signal::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join(); // a panic there was already reported by the panic hook
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};
    use std::fs;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn event(kind: EventKind, paths: &[&str]) -> notify::Result<Event> {
        let mut event = Event::new(kind);
        for p in paths {
            event = event.add_path(Path::new(p).to_owned());
        }
        Ok(event)
    }

    #[test]
    fn only_changes_to_the_watched_names_count() {
        let names: BTreeSet<OsString> = [OsString::from("htpasswd")].into();
        let modify = EventKind::Modify(ModifyKind::Any);
        assert!(relevant(&event(modify, &["/etc/regapp/htpasswd"]), &names));
        assert!(!relevant(&event(modify, &["/etc/regapp/other"]), &names));
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        let renamed = event(
            rename,
            &["/etc/regapp/.htpasswd.tmp", "/etc/regapp/htpasswd"],
        );
        assert!(relevant(&renamed, &names));
        let create = EventKind::Create(CreateKind::File);
        assert!(relevant(&event(create, &["/etc/regapp/htpasswd"]), &names));
        assert!(relevant(&event(create, &["/etc/regapp/..data"]), &names));
        let close_write = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(relevant(
            &event(close_write, &["/etc/regapp/htpasswd"]),
            &names
        ));
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert!(!relevant(&event(open, &["/etc/regapp/htpasswd"]), &names));
        assert!(relevant(&event(EventKind::Other, &[]), &names));
        assert!(relevant(&Err(notify::Error::generic("overflow")), &names));
    }

    fn wait_for(count: &AtomicUsize, at_least: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if count.load(Ordering::SeqCst) >= at_least {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn burst_of_changes_gives_one_call_and_drop_stops() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("fullchain.pem");
        let key = dir.path().join("privkey.pem");
        fs::write(&cert, "a").unwrap();
        fs::write(&key, "a").unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let guard = watch_files(
            "test",
            &[&cert, &key],
            Duration::from_millis(300),
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();

        // Unrelated files and plain reads don't count.
        fs::write(dir.path().join("htpasswd"), "x").unwrap();
        let _ = fs::read(&cert).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // Replace both by rename, as certbot and editors do: one settled change.
        fs::write(dir.path().join("new-cert"), "b").unwrap();
        fs::write(dir.path().join("new-key"), "b").unwrap();
        fs::rename(dir.path().join("new-cert"), &cert).unwrap();
        fs::rename(dir.path().join("new-key"), &key).unwrap();
        assert!(wait_for(&calls, 1));
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        drop(guard);
        fs::write(&cert, "c").unwrap();
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
