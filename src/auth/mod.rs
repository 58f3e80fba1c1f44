//! HTTP Basic authentication against an htpasswd file: what the edge asks before letting a request
//! through. The edge calls [`Authenticator::check`] with the `Authorization` header and the client's
//! address and maps the [`AuthDecision`] to a status; this module knows nothing about pingora, HTTP
//! responses or the registry, and the edge knows nothing about hashes, caches or files.
//!
//! | file | owns |
//! |---|---|
//! | `authenticator.rs` | the facade: order of checks, blocking verification, counters |
//! | `basic.rs` | the `Authorization: Basic` header value → user and password |
//! | `htpasswd.rs` | the file format → typed users, refused users, line-numbered errors (pure) |
//! | `htpasswd_file.rs` | editing the file for `regapp user`: set/remove lines, atomic save keeping mode and owner |
//! | `password.rs` | bcrypt and argon2 hashes: parse, verify, the dummy hash for unknown users |
//! | `users.rs` | the current user set in an `ArcSwap`, reload keeping the last good set |
//! | (`crate::plumbing::watch`) | reload on change of the file (watching its directory), debounced: shared with `certs` |
//! | `cache.rs` | verified credentials, by salted SHA-256, per user-set generation |
//! | `limiter.rs` | failed logins per client address, token bucket |
//!
//! Invariants: passwords are never stored or logged (the cache holds salted hashes); an unknown
//! user costs one verification like a wrong password; a limited client gets no verification and
//! no cache lookup; a file that fails to parse never replaces a good one.

pub mod access;
mod authenticator;
pub mod basic;
pub mod cache;
pub mod htpasswd;
pub mod htpasswd_file;
pub mod limiter;
pub mod password;
pub mod users;

pub use crate::plumbing::watch::{WatchError, WatchGuard};
pub use authenticator::{AuthDecision, AuthStats, Authenticator};
pub use users::{LoadError, Reloaded};

/// `[auth]`: where the users are and the realm of the Basic challenge.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSettings {
    pub htpasswd: std::path::PathBuf,
    pub realm: String,
}
