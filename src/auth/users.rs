//! The current user set, read from the htpasswd file and swapped whole on reload.
//!
//! A [`UserSet`] is one generation of the file: its users, the dummy hash unknown users are
//! verified against, and its own credential cache, so replacing the set drops the cache with it
//! and a verification that finishes after a reload can only fill the old, discarded cache.
//! [`Users`] holds the current set in an `ArcSwap` (readers never wait) and reloads it: a file
//! that fails to read or parse keeps the last good set and is counted. Watching the file is
//! `watch.rs`; when to verify and whom to limit is the `Authenticator`'s business.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::cache::{self, CredentialCache};
use super::htpasswd::{Htpasswd, ParseError};
use super::password::{DummyError, HashShape, PasswordHash};

/// Why the htpasswd file could not be (re)loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read htpasswd file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("htpasswd file {path}, {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
    #[error("htpasswd file {path}: {source}")]
    Dummy {
        path: PathBuf,
        #[source]
        source: DummyError,
    },
}

/// What a successful reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The file changed: a new set with this many users is in place and the cache is empty.
    Changed { users: usize },
    /// Same bytes as the current set: nothing swapped, the cache is kept.
    Unchanged,
    /// The file is empty where users were: most likely an editor or a tool that truncates the
    /// file before it writes it again. Nothing is swapped yet; reload again after `recheck_in`
    /// (the file's own next change reloads it earlier).
    Deferred { recheck_in: Duration },
}

/// How long an empty file must stay empty before it replaces a set with users: far longer than
/// any editor takes between truncating a file and writing it.
pub const EMPTY_FILE_GRACE: Duration = Duration::from_secs(5);

/// The outcome of verifying one (user, password) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Valid,
    WrongPassword,
    UnknownUser,
}

/// One generation of the htpasswd file.
pub struct UserSet {
    users: HashMap<String, PasswordHash>,
    /// For unknown users; `None` only when there are no users, so nothing can be revealed.
    dummy: Option<PasswordHash>,
    digest: [u8; 32],
    cache: CredentialCache,
}

impl UserSet {
    /// Builds a set, reusing `previous`'s dummy when the most expensive shape is unchanged, so
    /// a reload does not pay for a new dummy hash (up to a second at high bcrypt costs).
    fn build(file: Htpasswd, previous: Option<&UserSet>) -> Result<Self, DummyError> {
        let digest = file.digest();
        let users = file.into_users();
        let dummy = match HashShape::most_expensive(users.values()) {
            None => None,
            Some(shape) => match previous.and_then(|p| p.dummy.as_ref()) {
                Some(old) if old.shape() == shape => Some(old.clone()),
                _ => Some(shape.dummy()?),
            },
        };
        Ok(Self {
            users,
            dummy,
            digest,
            cache: CredentialCache::new(cache::CAPACITY),
        })
    }

    /// Verifies a pair. Blocking and slow by design: run it on a blocking thread. An unknown user
    /// costs the same as a wrong password (one verification against the dummy).
    pub fn verify(&self, user: &str, password: &str) -> Verification {
        match self.users.get(user) {
            Some(hash) if hash.verify(password) => Verification::Valid,
            Some(_) => Verification::WrongPassword,
            None => {
                if let Some(dummy) = &self.dummy {
                    // The result is irrelevant: only the time spent matters.
                    let _ = dummy.verify(password);
                }
                Verification::UnknownUser
            }
        }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// This generation's verified credentials.
    pub fn cache(&self) -> &CredentialCache {
        &self.cache
    }
}

/// The htpasswd file's current user set, its reloads and their counters.
pub struct Users {
    /// Changed only by [`Users::switch_to`] (a SIGHUP with a new `auth.htpasswd`).
    path: Mutex<PathBuf>,
    current: ArcSwap<UserSet>,
    /// Serialises reloads, so an older read can never be swapped in over a newer one. Holds
    /// since when the file has been seen empty while the set had users.
    reloading: Mutex<Option<Instant>>,
    reloads_ok: AtomicU64,
    reload_errors: AtomicU64,
}

impl Users {
    /// Reads the file for the first time. Fails if it is missing or does not parse: starting
    /// without the users the operator meant would lock everybody out, or worse.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, LoadError> {
        let path = path.into();
        let set = build_set(&path, read_file(&path)?, None)?;
        tracing::info!(path = %path.display(), users = set.len(), "htpasswd loaded");
        Ok(Self {
            path: Mutex::new(path),
            current: ArcSwap::from_pointee(set),
            reloading: Mutex::new(None),
            reloads_ok: AtomicU64::new(0),
            reload_errors: AtomicU64::new(0),
        })
    }

    /// Re-reads the file. On success the new set replaces the old one (and with it the credential
    /// cache); on failure the last good set stays, the error is logged and counted. Blocking
    /// (file I/O, and a new dummy hash when the highest cost changed).
    pub fn reload(&self) -> Result<Reloaded, LoadError> {
        // The guarded value is an instant: a panic in another reload leaves nothing torn.
        let mut empty_since = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.current.load_full();
        let path = self.path();
        let outcome = read_file(&path).and_then(|file| {
            if file.digest() == current.digest {
                *empty_since = None;
                return Ok(None);
            }
            if file.is_blank() && !current.is_empty() {
                let since = *empty_since.get_or_insert_with(Instant::now);
                let waited = since.elapsed();
                if waited < EMPTY_FILE_GRACE {
                    return Ok(Some(Err(EMPTY_FILE_GRACE - waited)));
                }
            } else {
                *empty_since = None;
            }
            build_set(&path, file, Some(&current)).map(|set| Some(Ok(set)))
        });
        match outcome {
            Ok(None) => {
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                Ok(Reloaded::Unchanged)
            }
            Ok(Some(Err(recheck_in))) => {
                tracing::warn!(
                    path = %path.display(),
                    users = current.len(),
                    "the htpasswd file is empty; keeping its users until it has stayed empty \
                     for {}s (a tool may be writing it)",
                    EMPTY_FILE_GRACE.as_secs()
                );
                Ok(Reloaded::Deferred { recheck_in })
            }
            Ok(Some(Ok(set))) => {
                let users = set.len();
                if users == 0 && !current.is_empty() {
                    tracing::warn!(
                        path = %path.display(),
                        "the htpasswd file has no users any more: nobody can log in"
                    );
                }
                *empty_since = None;
                self.current.store(Arc::new(set));
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(path = %path.display(), users, "htpasswd reloaded");
                Ok(Reloaded::Changed { users })
            }
            Err(error) => {
                self.reload_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    %error,
                    users = current.len(),
                    "htpasswd reload failed; keeping the last good user set"
                );
                Err(error)
            }
        }
    }

    /// The current set; cheap, never blocks.
    pub fn current(&self) -> Arc<UserSet> {
        self.current.load_full()
    }

    pub fn path(&self) -> PathBuf {
        self.path
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads `path` and, if it loads, makes it the file: its users replace the current set and
    /// later reloads read it. If it does not load, the current file and set stay (counted as a
    /// failed reload, like any other).
    pub fn switch_to(&self, path: &Path) -> Result<Reloaded, LoadError> {
        let mut empty_since = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *empty_since = None;
        let current = self.current.load_full();
        match read_file(path).and_then(|file| build_set(path, file, Some(&current))) {
            Ok(set) => {
                let users = set.len();
                self.current.store(Arc::new(set));
                *self.path.lock().unwrap_or_else(PoisonError::into_inner) = path.to_owned();
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(path = %path.display(), users, "htpasswd file switched");
                Ok(Reloaded::Changed { users })
            }
            Err(error) => {
                self.reload_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, "htpasswd file not switched; keeping the current one");
                Err(error)
            }
        }
    }

    /// Reloads that succeeded (including ones that found the file unchanged).
    pub fn reloads_ok(&self) -> u64 {
        self.reloads_ok.load(Ordering::Relaxed)
    }

    /// Reloads that failed and kept the last good set.
    pub fn reload_errors(&self) -> u64 {
        self.reload_errors.load(Ordering::Relaxed)
    }
}

/// Reads and parses the file as a load would, without making a user set: the users a load
/// would skip (`regapp check-config`), or why it would fail.
pub fn inspect(path: &Path) -> Result<Vec<super::htpasswd::Refused>, LoadError> {
    read_file(path).map(|file| file.refused().to_vec())
}

fn read_file(path: &Path) -> Result<Htpasswd, LoadError> {
    let content = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    Htpasswd::parse(&content).map_err(|source| LoadError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Logs each refused user (once per new content) and builds the set.
fn build_set(
    path: &Path,
    file: Htpasswd,
    previous: Option<&UserSet>,
) -> Result<UserSet, LoadError> {
    for refused in file.refused() {
        tracing::warn!(
            path = %path.display(),
            line = refused.line,
            user = %refused.user,
            reason = %refused.reason,
            "htpasswd user refused"
        );
    }
    UserSet::build(file, previous).map_err(|source| LoadError::Dummy {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests;
