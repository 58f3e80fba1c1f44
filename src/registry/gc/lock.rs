//! The lock file that keeps two collections apart across processes: `gc.lock` beside
//! `gc.sock` in the storage root (`flock`, released by the kernel when the holder dies, so a
//! crash never leaves it stuck).
//!
//! The server takes it for each run; `regapp gc` without a server takes it for its run. A
//! server that starts while a command-line collection runs waits for it before it serves
//! ([`wait_for_offline_collection`]): pushes to a server the collector does not know about
//! would not be pinned.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::GcError;

pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("gc.lock")
}

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("gc.sock")
}

/// Held for one collection; the lock is released when it is dropped (the file is closed).
pub struct CollectionLock {
    _file: File,
}

impl CollectionLock {
    /// Takes the lock, or fails at once with `Busy` when another process holds it.
    pub fn try_acquire(state_dir: &Path) -> Result<CollectionLock, GcError> {
        let path = lock_path(state_dir);
        let file = open(&path).map_err(|source| GcError::Lock {
            path: path.clone(),
            source,
        })?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(CollectionLock { _file: file }),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(GcError::Busy(format!(
                "another process holds {}",
                path.display()
            ))),
            Err(source) => Err(GcError::Lock { path, source }),
        }
    }
}

/// Blocks until no other process collects on this store (returns at once when none does).
pub fn wait_for_offline_collection(state_dir: &Path) -> io::Result<()> {
    let path = lock_path(state_dir);
    let file = open(&path)?;
    if flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_ok() {
        return Ok(());
    }
    tracing::info!(lock = %path.display(), "waiting for a command-line garbage collection to finish");
    flock(&file, libc::LOCK_EX)
}

fn open(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

fn flock(file: &File, operation: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor this `File` owns for the duration of the call.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = CollectionLock::try_acquire(dir.path()).unwrap();
        // flock locks belong to the open file description: a second open conflicts, as a
        // second process would.
        let second = CollectionLock::try_acquire(dir.path());
        assert!(matches!(second, Err(GcError::Busy(_))));
        drop(first);
        CollectionLock::try_acquire(dir.path()).unwrap();
        wait_for_offline_collection(dir.path()).unwrap();
    }
}
