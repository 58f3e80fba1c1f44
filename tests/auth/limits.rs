//! What makes repeated and hostile requests cheap: the credential cache (counted verifications,
//! not timings), concurrent checks of one pair, and the per-address failure limiter.

use regapp::auth::{AuthDecision, Authenticator};

use super::{allowed, bcrypt_file, check, fresh_client, htpasswd, path_str};
use crate::util::basic_auth;

#[tokio::test]
async fn the_cache_spares_repeated_verifications() {
    let (_dir, path) = bcrypt_file("alice", "secret");
    let auth = Authenticator::load(&path).expect("loads");
    for _ in 0..5 {
        assert_eq!(check(&auth, "alice", "secret").await, allowed("alice"));
    }
    let stats = auth.stats();
    assert_eq!((stats.verifications, stats.cache_hits), (1, 4));

    // Failures are not cached: each wrong password is verified again.
    for _ in 0..3 {
        assert_eq!(check(&auth, "alice", "wrong").await, AuthDecision::Denied);
    }
    assert_eq!(auth.stats().verifications, 4);

    // A changed file drops the cache: the next check verifies again.
    htpasswd(&["-bB", "-C", "4", path_str(&path), "bob", "other"]);
    auth.reload().expect("reloads");
    assert_eq!(check(&auth, "alice", "secret").await, allowed("alice"));
    assert_eq!(auth.stats().verifications, 5);
}

#[tokio::test]
async fn concurrent_checks_of_one_pair_share_a_verification_slot() {
    let (_dir, path) = bcrypt_file("alice", "secret");
    let auth = Authenticator::load(&path).expect("loads");
    let header = basic_auth("alice", "secret");
    let client = fresh_client();
    let checks = (0..16).map(|_| auth.check(Some(&header), client));
    let decisions = futures_util::future::join_all(checks).await;
    assert!(
        decisions.iter().all(|d| *d == allowed("alice")),
        "{decisions:?}"
    );
    // Requests that waited for a slot found the pair cached by the first one.
    let stats = auth.stats();
    assert!(stats.verifications < 16, "{stats:?}");
    assert_eq!(stats.verifications + stats.cache_hits, 16);
}

#[tokio::test]
async fn failures_are_limited_per_address_after_the_burst() {
    let (_dir, path) = bcrypt_file("alice", "secret");
    let auth = Authenticator::load(&path).expect("loads");
    let attacker = fresh_client();
    let wrong = basic_auth("alice", "guess");
    for i in 0..regapp::auth::limiter::BURST {
        assert_eq!(
            auth.check(Some(&wrong), attacker).await,
            AuthDecision::Denied,
            "failure {i} is within the burst"
        );
    }
    let verifications = auth.stats().verifications;
    let limited = AuthDecision::Limited {
        retry_after: regapp::auth::limiter::REFILL_EVERY,
        address_wide: false,
    };
    assert_eq!(auth.check(Some(&wrong), attacker).await, limited);
    // Limited means not even the right password is looked at, and nothing is verified.
    let right = basic_auth("alice", "secret");
    assert_eq!(auth.check(Some(&right), attacker).await, limited);
    assert_eq!(auth.stats().verifications, verifications);
    assert_eq!(auth.stats().limited, 2);
    // Other addresses are unaffected, and their successes take nothing.
    let other = fresh_client();
    for _ in 0..20 {
        assert_eq!(auth.check(Some(&right), other).await, allowed("alice"));
    }
}

/// Guessing bob's password (or a CI job with bob's stale one) limits bob from that address, not
/// alice behind the same address or NAT.
#[tokio::test]
async fn a_guessed_user_does_not_lock_out_another_from_the_same_address() {
    let (_dir, path) = bcrypt_file("alice", "secret");
    htpasswd(&["-bB", "-C", "4", path_str(&path), "bob", "builder"]);
    let auth = Authenticator::load(&path).expect("loads");
    let office = fresh_client();
    let guess = basic_auth("bob", "guess");
    for _ in 0..regapp::auth::limiter::BURST {
        assert_eq!(auth.check(Some(&guess), office).await, AuthDecision::Denied);
    }
    assert!(matches!(
        auth.check(Some(&basic_auth("bob", "builder")), office)
            .await,
        AuthDecision::Limited {
            address_wide: false,
            ..
        }
    ));
    let alice = basic_auth("alice", "secret");
    assert_eq!(auth.check(Some(&alice), office).await, allowed("alice"));
}

/// One password tried on many user names (spraying) meets the address's own, much higher
/// ceiling, which then limits every name from that address.
#[tokio::test]
async fn spraying_user_names_from_one_address_meets_the_address_ceiling() {
    let (_dir, path) = bcrypt_file("alice", "secret");
    let auth = Authenticator::load(&path).expect("loads");
    let sprayer = fresh_client();
    for n in 0..regapp::auth::limiter::ADDRESS_BURST {
        let header = basic_auth(&format!("user{n}"), "Summer2026!");
        assert_eq!(
            auth.check(Some(&header), sprayer).await,
            AuthDecision::Denied,
            "name {n} is within the address's burst"
        );
    }
    let alice = basic_auth("alice", "secret");
    assert!(matches!(
        auth.check(Some(&alice), sprayer).await,
        AuthDecision::Limited {
            address_wide: true,
            ..
        }
    ));
    assert_eq!(
        auth.check(Some(&alice), fresh_client()).await,
        allowed("alice")
    );
}
