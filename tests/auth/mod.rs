//! Authentication as the edge will use it: `regapp::auth::Authenticator` over htpasswd files
//! written by the real Apache `htpasswd` (Debian's apache2-utils).
//!
//! Protects: bcrypt of any cost and argon2 verify, other schemes are refused with the user and
//! line named; unknown users cost a verification like wrong passwords; a missing or broken file
//! fails at startup. `limits.rs`: the credential cache spares repeated verifications and failures
//! are limited per address. `reload.rs`: the file reloads on edit and on rename within 2 s, and a
//! broken file keeps the working users.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use regapp::auth::htpasswd::{Htpasswd, Refusal};
use regapp::auth::password::UnsupportedScheme;
use regapp::auth::{AuthDecision, Authenticator};

use crate::util::basic_auth;

mod limits;
mod reload;

/// Runs Apache's `htpasswd` with `args`, panicking with its output if it fails.
fn htpasswd(args: &[&str]) {
    let output = Command::new("htpasswd")
        .args(args)
        .output()
        .expect("`htpasswd` runs (Debian package apache2-utils; tests/run-all.sh installs it)");
    assert!(
        output.status.success(),
        "htpasswd {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A temporary directory holding an htpasswd file with `user`:`password` in bcrypt of cost 4
/// (cheap, so tests stay fast; one test uses cost 12).
fn bcrypt_file(user: &str, password: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("htpasswd");
    htpasswd(&["-bcB", "-C", "4", path_str(&path), user, password]);
    (dir, path)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// A client address no other check has used, so the limiter only sees what a test means it to.
fn fresh_client() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n))
}

async fn check(auth: &Authenticator, user: &str, password: &str) -> AuthDecision {
    auth.check(Some(&basic_auth(user, password)), fresh_client())
        .await
}

fn allowed(user: &str) -> AuthDecision {
    AuthDecision::Allowed { user: user.into() }
}

/// An argon2id PHC line with small parameters, made with the `argon2` crate (htpasswd has no
/// argon2 option).
fn argon2_line(user: &str, password: &str) -> String {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let params = argon2::Params::new(256, 2, 1, None).expect("valid argon2 parameters");
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"a fixed test salt").expect("valid salt");
    let hash = hasher
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes");
    format!("{user}:{hash}\n")
}

fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open htpasswd for appending");
    file.write_all(text.as_bytes()).expect("append");
}

#[tokio::test]
async fn bcrypt_cost_12_from_htpasswd_allows_only_the_right_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("htpasswd");
    htpasswd(&[
        "-bcB",
        "-C",
        "12",
        path_str(&path),
        "alice",
        "correct horse",
    ]);
    assert!(std::fs::read_to_string(&path)
        .expect("read")
        .starts_with("alice:$2y$12$"));

    let auth = Authenticator::load(&path).expect("htpasswd's own file loads");
    assert_eq!(
        check(&auth, "alice", "correct horse").await,
        allowed("alice")
    );
    assert_eq!(
        check(&auth, "alice", "correct horsE").await,
        AuthDecision::Denied
    );
    assert_eq!(
        check(&auth, "bob", "correct horse").await,
        AuthDecision::Denied
    );
    // The unknown user was verified too (against the cost-12 dummy): 3 checks, 3 verifications.
    let stats = auth.stats();
    assert_eq!((stats.verifications, stats.denied), (3, 2));
}

#[tokio::test]
async fn argon2_lines_verify_beside_bcrypt() {
    let (_dir, path) = bcrypt_file("alice", "secret");
    append(&path, &argon2_line("carol", "argon pass"));
    let auth = Authenticator::load(&path).expect("loads");
    assert_eq!(auth.stats().users, 2);
    assert_eq!(check(&auth, "carol", "argon pass").await, allowed("carol"));
    assert_eq!(check(&auth, "carol", "secret").await, AuthDecision::Denied);
    assert_eq!(check(&auth, "alice", "secret").await, allowed("alice"));
}

#[tokio::test]
async fn other_schemes_are_refused_naming_user_and_line() {
    let (_dir, path) = bcrypt_file("alice", "secret");
    let file = path_str(&path);
    htpasswd(&["-bs", file, "sha", "pw"]); // {SHA}
    htpasswd(&["-bm", file, "md5", "pw"]); // $apr1$
    htpasswd(&["-bd", file, "crypt", "pw"]); // DES crypt
    htpasswd(&["-b5", file, "sha512", "pw"]); // $6$
    htpasswd(&["-bp", file, "plain", "pw"]); // plain text

    let parsed = Htpasswd::parse(&std::fs::read(&path).expect("read")).expect("parses");
    let refused: Vec<_> = parsed
        .refused()
        .iter()
        .map(|r| (r.line, r.user.as_str(), r.reason.clone()))
        .collect();
    let scheme = Refusal::Scheme;
    assert_eq!(
        refused,
        [
            (2, "sha", scheme(UnsupportedScheme::Sha1)),
            (3, "md5", scheme(UnsupportedScheme::Apr1Md5)),
            (4, "crypt", scheme(UnsupportedScheme::Crypt)),
            (5, "sha512", scheme(UnsupportedScheme::Crypt)),
            (6, "plain", scheme(UnsupportedScheme::PlainOrUnknown)),
        ]
    );
    let warning = parsed.refused()[0].to_string();
    assert!(
        warning.contains("line 2") && warning.contains("\"sha\"") && warning.contains("{SHA}"),
        "{warning}"
    );

    // The loader skips them (and logs the same warnings); their right passwords are denied.
    let auth = Authenticator::load(&path).expect("refused users do not fail the file");
    assert_eq!(auth.stats().users, 1);
    for user in ["sha", "md5", "crypt", "sha512", "plain"] {
        assert_eq!(
            check(&auth, user, "pw").await,
            AuthDecision::Denied,
            "{user}"
        );
    }
    assert_eq!(check(&auth, "alice", "secret").await, allowed("alice"));
}

#[tokio::test]
async fn missing_or_malformed_credentials_are_not_verified() {
    let (_dir, path) = bcrypt_file("alice", "secret");
    let auth = Authenticator::load(&path).expect("loads");
    let client = fresh_client();
    for header in [
        None,
        Some("Bearer abc"),
        Some("Basic !!!"),
        Some("Basic YWxpY2U="), // "alice", no colon
    ] {
        assert_eq!(
            auth.check(header, client).await,
            AuthDecision::MissingCredentials,
            "{header:?}"
        );
    }
    assert_eq!(auth.stats().verifications, 0);
}

#[test]
fn load_fails_clearly_on_a_missing_or_broken_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("htpasswd");
    let err = Authenticator::load(&missing).err().expect("missing file");
    let message = err.to_string();
    assert!(
        message.contains("cannot read htpasswd file") && message.contains(path_str(&missing)),
        "{message}"
    );

    let (_dir, path) = bcrypt_file("alice", "secret");
    append(&path, "bob\n");
    let err = Authenticator::load(&path).err().expect("broken file");
    assert!(
        err.to_string()
            .ends_with("line 2: no `:` between user and hash"),
        "{err}"
    );
}

/// Polls `check` of (`user`, `password`) from fresh addresses until it answers `expected`; panics
/// after `within`. Returns how long it took.
async fn eventually(
    auth: &Authenticator,
    (user, password): (&str, &str),
    expected: &AuthDecision,
    within: Duration,
) -> Duration {
    let start = std::time::Instant::now();
    loop {
        let decision = check(auth, user, password).await;
        if decision == *expected {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{user}: still {decision:?} after {within:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
