//! Reloads the htpasswd file when it changes, within about a second.
//!
//! The watch is on the file's parent directory, not the file: editors and tools replace the file
//! by renaming a new one over it, which a watch on the old inode would never see; in-place writes
//! (`htpasswd` copies its temp file over the original) show up as modify and close-write events.
//! Events for other names in the directory are ignored. A burst of events (truncate, writes,
//! close) becomes one reload once the directory has been quiet for [`QUIET`], or after
//! [`MAX_DELAY`] at the latest. Reloading and its error handling are `Users::reload`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use super::users::Users;

/// How long the directory must be quiet before reloading: long enough for a tool to finish
/// writing, short enough to stay well inside the 2-second promise.
pub const QUIET: Duration = Duration::from_millis(200);

/// The longest a reload waits for quiet while events keep coming.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("htpasswd path {0} has no file name")]
    NoFileName(PathBuf),
    #[error("cannot watch {dir} for htpasswd changes: {source}")]
    Notify {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot start the htpasswd watcher thread: {0}")]
    Thread(#[source] std::io::Error),
}

enum Signal {
    Changed,
    Stop,
}

/// Keeps the watch running; dropping it stops the watch and joins its thread.
pub struct WatchGuard {
    signals: mpsc::Sender<Signal>,
    thread: Option<JoinHandle<()>>,
    _watcher: RecommendedWatcher,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let _ = self.signals.send(Signal::Stop); // the thread may already be gone: fine
        if let Some(thread) = self.thread.take() {
            let _ = thread.join(); // a panic there was already reported by the panic hook
        }
    }
}

/// Starts watching `users`' file. Also reloads once right away, on the watcher thread, to catch a
/// change made between the first load and this call.
pub fn watch(users: Arc<Users>) -> Result<WatchGuard, WatchError> {
    let path = users.path().to_owned();
    let name = path
        .file_name()
        .ok_or_else(|| WatchError::NoFileName(path.clone()))?
        .to_owned();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };

    let (signals, receiver) = mpsc::channel();
    let from_notify = signals.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        if concerns(&event, &name) {
            let _ = from_notify.send(Signal::Changed); // after Stop nobody listens: fine
        }
    })
    .map_err(|source| WatchError::Notify {
        dir: dir.clone(),
        source,
    })?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError::Notify {
            dir: dir.clone(),
            source,
        })?;

    let _ = signals.send(Signal::Changed); // the receiver is alive: it is in our hands
    let thread = std::thread::Builder::new()
        .name("htpasswd-watch".into())
        .spawn(move || reload_on_change(&users, &receiver))
        .map_err(WatchError::Thread)?;
    tracing::debug!(dir = %dir.display(), file = %path.display(), "watching htpasswd");
    Ok(WatchGuard {
        signals,
        thread: Some(thread),
        _watcher: watcher,
    })
}

/// Whether an event may have changed the file named `name`. Opens and reads are ignored (our own
/// reload opens the file); an error or an event without paths (queue overflow) might hide a
/// change, so it counts.
fn concerns(event: &notify::Result<Event>, name: &OsString) -> bool {
    let event = match event {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(%error, "htpasswd watch error; reloading to be safe");
            return true;
        }
    };
    let relevant_kind = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    relevant_kind
        && (event.paths.is_empty()
            || event
                .paths
                .iter()
                .any(|p| p.file_name() == Some(name.as_os_str())))
}

/// The watcher thread: waits for a change, lets the burst settle, reloads, repeats until stopped.
fn reload_on_change(users: &Users, signals: &mpsc::Receiver<Signal>) {
    while let Ok(Signal::Changed) = signals.recv() {
        let deadline = Instant::now() + MAX_DELAY;
        loop {
            let wait = QUIET.min(deadline.saturating_duration_since(Instant::now()));
            match signals.recv_timeout(wait) {
                Ok(Signal::Changed) if Instant::now() < deadline => continue,
                Ok(Signal::Changed) | Err(mpsc::RecvTimeoutError::Timeout) => break,
                Ok(Signal::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        // Errors are logged and counted by reload itself; the last good set stays.
        let _ = users.reload();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};
    use std::path::Path;

    fn event(kind: EventKind, paths: &[&str]) -> notify::Result<Event> {
        let mut event = Event::new(kind);
        for p in paths {
            event = event.add_path(Path::new(p).to_owned());
        }
        Ok(event)
    }

    #[test]
    fn only_changes_to_the_watched_name_count() {
        let name = OsString::from("htpasswd");
        let modify = EventKind::Modify(ModifyKind::Any);
        assert!(concerns(&event(modify, &["/etc/regapp/htpasswd"]), &name));
        assert!(!concerns(&event(modify, &["/etc/regapp/other"]), &name));
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(concerns(
            &event(
                rename,
                &["/etc/regapp/.htpasswd.tmp", "/etc/regapp/htpasswd"]
            ),
            &name
        ));
        let create = EventKind::Create(CreateKind::File);
        assert!(concerns(&event(create, &["/etc/regapp/htpasswd"]), &name));
        let close_write = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(concerns(
            &event(close_write, &["/etc/regapp/htpasswd"]),
            &name
        ));
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert!(!concerns(&event(open, &["/etc/regapp/htpasswd"]), &name));
        assert!(concerns(&event(EventKind::Other, &[]), &name));
        assert!(concerns(&Err(notify::Error::generic("overflow")), &name));
    }
}
