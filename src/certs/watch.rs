//! A debounced watch on a few files: calls back once after their changes have settled.
//!
//! The files' parent directories are watched, not the files: certbot, editors and `mv` replace a
//! file by rename (a new inode a file watch would never see), and certbot's `live/` symlinks are
//! unlinked and recreated. Events naming one of the files — or a `..name` entry, which is how
//! Kubernetes swaps a mounted secret — start a quiet period; the callback runs when no such event
//! has come for `debounce`, so a cert and key written one after the other are read together.
//! Reads (open, close without write) are ignored, so the callback reading the files does not
//! trigger itself. A change made through a symlink's target in another directory is not seen:
//! SIGHUP covers that.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use super::error::CertError;

/// Stops watching when dropped (and waits for a callback in progress to finish).
pub struct WatchGuard {
    watcher: Option<RecommendedWatcher>,
    signals: mpsc::Sender<Signal>,
    thread: Option<JoinHandle<()>>,
}

enum Signal {
    Changed,
    Stop,
}

/// Watches `files` and calls `on_change` on a background thread after each settled change.
pub fn watch_files(
    files: &[&Path],
    debounce: Duration,
    mut on_change: impl FnMut() + Send + 'static,
) -> Result<WatchGuard, CertError> {
    let mut dirs = BTreeSet::new();
    let mut names = BTreeSet::new();
    for file in files {
        dirs.insert(parent_dir(file));
        if let Some(name) = file.file_name() {
            names.insert(name.to_owned());
        }
    }
    let (signals, received) = mpsc::channel();
    let notify_signals = signals.clone();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<Event>| match event {
            Ok(event) if relevant(&event, &names) => {
                // The receiver is gone only while the guard is being dropped.
                let _ = notify_signals.send(Signal::Changed);
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "file watch error; reload with SIGHUP if needed"),
        })
        .map_err(|source| CertError::Watch {
            path: files.first().map(|f| f.to_path_buf()).unwrap_or_default(),
            source,
        })?;
    for dir in &dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|source| CertError::Watch {
                path: dir.clone(),
                source,
            })?;
    }
    let thread = std::thread::Builder::new()
        .name("regapp-cert-watch".into())
        .spawn(move || debounce_loop(&received, debounce, &mut on_change))
        .map_err(|source| CertError::Watch {
            path: dirs.iter().next().cloned().unwrap_or_default(),
            source: notify::Error::io(source),
        })?;
    Ok(WatchGuard {
        watcher: Some(watcher),
        signals,
        thread: Some(thread),
    })
}

fn debounce_loop(
    received: &mpsc::Receiver<Signal>,
    debounce: Duration,
    on_change: &mut impl FnMut(),
) {
    loop {
        match received.recv() {
            Ok(Signal::Changed) => {}
            Ok(Signal::Stop) | Err(_) => return,
        }
        loop {
            match received.recv_timeout(debounce) {
                Ok(Signal::Changed) => continue,
                Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        on_change();
    }
}

fn relevant(event: &Event, names: &BTreeSet<OsString>) -> bool {
    let kind_matters = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    kind_matters
        && event.paths.iter().any(|path| {
            path.file_name().is_some_and(|name| {
                names.contains(name) || name.as_encoded_bytes().starts_with(b"..")
            })
        })
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
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

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
        let guard = watch_files(&[&cert, &key], Duration::from_millis(300), move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })
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
