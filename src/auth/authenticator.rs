//! The facade the edge calls: one [`Authenticator::check`] per request, answering with an
//! [`AuthDecision`]. It puts the parts together in this order, each step for a reason:
//!
//! 1. no or malformed `Authorization: Basic` → `MissingCredentials` (nothing to limit or verify);
//! 2. the failure bucket of this user name from this address, or the address's own (a much
//!    larger one, across user names), is empty → `Limited`, before the cache, so a limited
//!    client cannot keep guessing against the cache;
//! 3. the pair is in the current set's cache → `Allowed`, no bcrypt;
//! 4. wait for a verification slot (as many as CPU cores: more would only queue on the blocking
//!    pool), then look at steps 2 and 3 again, since other requests may have failed or verified
//!    meanwhile — this keeps a flood of parallel guesses from one address within its burst;
//! 5. verify on a blocking thread; a success is cached, a failure takes a token.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::basic::parse_basic;
use super::limiter::{self, client_key, FailureLimiter};
use super::users::{LoadError, Reloaded, Users, Verification};
use crate::plumbing::watch::{watch_files, WatchError, WatchGuard};

/// The answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    /// Valid credentials for this htpasswd user.
    Allowed { user: String },
    /// No `Authorization` header, another scheme, or a malformed Basic value: 401.
    MissingCredentials,
    /// Unknown user or wrong password: 401.
    Denied,
    /// Too many failures for this user name from this address, or from this address for any
    /// (`address_wide`): 429 with `Retry-After`. Whole seconds, rounded up, at least one, so
    /// `retry_after.as_secs()` is the header value.
    Limited {
        retry_after: Duration,
        address_wide: bool,
    },
}

/// A snapshot of the counters, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthStats {
    /// Users in the current set.
    pub users: usize,
    pub reloads_ok: u64,
    pub reload_errors: u64,
    /// bcrypt/argon2 verifications run, the dummy ones for unknown users included.
    pub verifications: u64,
    pub cache_hits: u64,
    /// Checks answered `Denied`.
    pub denied: u64,
    /// Checks answered `Limited`.
    pub limited: u64,
}

/// How long the htpasswd file must be quiet before a change is loaded: long enough for a tool
/// to finish writing, short enough to stay well inside the 2-second promise.
const HTPASSWD_QUIET: Duration = Duration::from_millis(200);

/// HTTP Basic authentication against a hot-reloaded htpasswd file. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    users: Arc<Users>,
    limits: Limits,
    verify_slots: Semaphore,
    verifications: AtomicU64,
    cache_hits: AtomicU64,
    denied: AtomicU64,
    limited: AtomicU64,
}

impl Authenticator {
    /// Loads the htpasswd file; fails if it is missing or does not parse. Blocking (file I/O and
    /// one dummy hash at the file's highest cost): call it at startup.
    pub fn load(htpasswd: impl Into<PathBuf>) -> Result<Self, LoadError> {
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            inner: Arc::new(Inner {
                users: Arc::new(Users::load(htpasswd)?),
                limits: Limits::default(),
                verify_slots: Semaphore::new(slots),
                verifications: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
                denied: AtomicU64::new(0),
                limited: AtomicU64::new(0),
            }),
        })
    }

    /// Decides one request from its `Authorization` header and the client's address. Never runs
    /// a verification on the calling (async) thread.
    pub async fn check(&self, authorization: Option<&str>, client: IpAddr) -> AuthDecision {
        let Some(credentials) = authorization.and_then(parse_basic) else {
            return AuthDecision::MissingCredentials;
        };
        let inner = &self.inner;
        let set = inner.users.current();
        let key = set.cache().key(&credentials.user, &credentials.password);
        let keys = inner.limits.keys(client, &credentials.user);
        let quick = || -> Option<AuthDecision> {
            if let Some(limited) = inner.limits.check(keys, Instant::now()) {
                inner.limited.fetch_add(1, Ordering::Relaxed);
                return Some(limited);
            }
            if set.cache().contains(&key) {
                inner.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Some(AuthDecision::Allowed {
                    user: credentials.user.clone(),
                });
            }
            None
        };
        if let Some(decision) = quick() {
            return decision;
        }
        // The semaphore is never closed, so acquiring fails only in theory; fail closed then.
        let Ok(_slot) = inner.verify_slots.acquire().await else {
            return AuthDecision::Denied;
        };
        if let Some(decision) = quick() {
            return decision;
        }

        inner.verifications.fetch_add(1, Ordering::Relaxed);
        let verifying = Arc::clone(&set);
        let user = credentials.user.clone();
        let verified = tokio::task::spawn_blocking(move || {
            verifying.verify(&credentials.user, &credentials.password)
        })
        .await;
        match verified {
            Ok(Verification::Valid) => {
                set.cache().insert(key);
                AuthDecision::Allowed { user }
            }
            Ok(Verification::WrongPassword | Verification::UnknownUser) => {
                inner.limits.record_failure(keys, Instant::now());
                inner.denied.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%client, %user, "authentication failed");
                AuthDecision::Denied
            }
            Err(error) => {
                // A panic inside bcrypt/argon2, or a runtime shutting down: fail closed.
                tracing::error!(%error, "password verification did not finish");
                inner.denied.fetch_add(1, Ordering::Relaxed);
                AuthDecision::Denied
            }
        }
    }

    /// Re-reads the htpasswd file now (what SIGHUP does). Blocking: from async code, call it
    /// through `tokio::task::spawn_blocking`. Errors are already logged and counted.
    pub fn reload(&self) -> Result<Reloaded, LoadError> {
        self.inner.users.reload()
    }

    /// Starts reloading the file on change; stops when the guard is dropped. Blocking (one
    /// reload right away): call it at startup.
    pub fn watch(&self) -> Result<WatchGuard, WatchError> {
        let users = Arc::clone(&self.inner.users);
        let path = users.path();
        let guard = watch_files("htpasswd", &[&path], HTPASSWD_QUIET, move || {
            // Errors are logged and counted by reload itself; the last good set stays.
            reload_until_settled(&users);
        })?;
        // Catches a change made between the first load and the start of the watch.
        let _ = self.reload();
        Ok(guard)
    }

    /// Switches to another htpasswd file (SIGHUP with a new `auth.htpasswd`): loads it, and
    /// only if it loads, serves its users from now on. The caller replaces its [`watch`]
    /// guard with a new one. Blocking, like [`reload`](Self::reload).
    ///
    /// [`watch`]: Self::watch
    pub fn switch_file(&self, path: &Path) -> Result<Reloaded, LoadError> {
        self.inner.users.switch_to(path)
    }

    /// The htpasswd file in use.
    pub fn file(&self) -> PathBuf {
        self.inner.users.path()
    }

    pub fn stats(&self) -> AuthStats {
        let inner = &self.inner;
        AuthStats {
            users: inner.users.current().len(),
            reloads_ok: inner.users.reloads_ok(),
            reload_errors: inner.users.reload_errors(),
            verifications: inner.verifications.load(Ordering::Relaxed),
            cache_hits: inner.cache_hits.load(Ordering::Relaxed),
            denied: inner.denied.load(Ordering::Relaxed),
            limited: inner.limited.load(Ordering::Relaxed),
        }
    }
}

/// The two failure limiters and how a request is keyed in them.
struct Limits {
    per_user: FailureLimiter<(IpAddr, u64)>,
    per_address: FailureLimiter<IpAddr>,
    /// Keys user names by a hash with this process's random seed: attacker-chosen names
    /// cost 8 bytes each in the table, whatever their length.
    names: std::collections::hash_map::RandomState,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_user: FailureLimiter::new(
                limiter::BURST,
                limiter::REFILL_EVERY,
                limiter::MAX_CLIENTS,
            ),
            per_address: FailureLimiter::new(
                limiter::ADDRESS_BURST,
                limiter::ADDRESS_REFILL_EVERY,
                limiter::MAX_CLIENTS,
            ),
            names: Default::default(),
        }
    }
}

/// A request's keys in the two limiters: (address, user name) and the address.
#[derive(Clone, Copy)]
struct LimitKeys {
    user: (IpAddr, u64),
    address: IpAddr,
}

impl Limits {
    fn keys(&self, client: IpAddr, user: &str) -> LimitKeys {
        let address = client_key(client);
        LimitKeys {
            user: (address, self.names.hash_one(user)),
            address,
        }
    }

    fn check(&self, keys: LimitKeys, now: Instant) -> Option<AuthDecision> {
        let limited = |wait, address_wide| AuthDecision::Limited {
            retry_after: whole_seconds(wait),
            address_wide,
        };
        if let Err(wait) = self.per_address.check(keys.address, now) {
            return Some(limited(wait, true));
        }
        self.per_user
            .check(keys.user, now)
            .err()
            .map(|wait| limited(wait, false))
    }

    fn record_failure(&self, keys: LimitKeys, now: Instant) {
        self.per_user.record_failure(keys.user, now);
        self.per_address.record_failure(keys.address, now);
    }
}

/// Reloads, and once more after the grace an empty file gets (on a thread of its own, so the
/// watcher goes on seeing changes): a file that stays empty applies then, one that was written
/// meanwhile has reloaded through its own change already.
fn reload_until_settled(users: &Arc<Users>) {
    if let Ok(Reloaded::Deferred { recheck_in }) = users.reload() {
        let users = Arc::clone(users);
        std::thread::spawn(move || {
            std::thread::sleep(recheck_in);
            reload_until_settled(&users);
        });
    }
}

/// Rounds up to whole seconds, at least one, as `Retry-After` needs.
fn whole_seconds(wait: Duration) -> Duration {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The edge runs `check` inside pingora's handlers, which need `Send` futures and a shareable
    /// authenticator. Compiling this test is the assertion.
    #[allow(dead_code)]
    fn check_is_send_and_the_authenticator_is_shareable(auth: &Authenticator, client: IpAddr) {
        fn send<T: Send>(_: T) {}
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        send(auth.check(None, client));
        shareable::<Authenticator>();
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(
            whole_seconds(Duration::from_millis(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            whole_seconds(Duration::from_secs(6)),
            Duration::from_secs(6)
        );
        assert_eq!(
            whole_seconds(Duration::from_millis(5001)),
            Duration::from_secs(6)
        );
        assert_eq!(whole_seconds(Duration::ZERO), Duration::from_secs(1));
    }
}
