//! The failed-login limiter: token buckets of failures, so a password cannot be guessed at line
//! rate. Only failures take tokens; a correct password never does, and a limited client is
//! answered without verifying anything. The authenticator keeps two: one per (address, user
//! name), so a client guessing bob's password (or a CI job with a stale one) does not lock alice
//! out from the same address or NAT, and one per address across user names with a much higher
//! ceiling, against trying one password on many users (password spraying).
//!
//! The bucket is kept as one instant per client (GCRA): `full_at`, when the bucket would be full
//! again. Tokens left at `now` = burst − (full_at − now) / refill interval. A client whose bucket is
//! full is forgotten, so memory holds only clients that failed recently, and never more than
//! [`MAX_CLIENTS`] of them. Time is passed in (`now`), so tests drive the arithmetic directly.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failures allowed in a row for one user name from one address before limiting. Enough for
/// someone fumbling a password or a client retrying a stale credential a few times, far too few
/// for guessing.
pub const BURST: u32 = 10;

/// One more failure is allowed every 6 s once the burst is spent: 10 a minute, 14,400 a day per
/// user and address, against passwords that `htpasswd -B` users pick. A legitimate user who
/// mistyped waits seconds, not minutes.
pub const REFILL_EVERY: Duration = Duration::from_secs(6);

/// Failures allowed in a row from one address whatever the user names: ten users' worth, so an
/// office behind one NAT is not locked out by a few misconfigured clients, while spraying one
/// password over a user list stops after 100 names.
pub const ADDRESS_BURST: u32 = 100;

/// Then one more failure per address every second: 3,600 an hour.
pub const ADDRESS_REFILL_EVERY: Duration = Duration::from_secs(1);

/// Clients tracked at once. Each entry is a few dozen bytes; 10,000 is under a megabyte, and an
/// attacker with more addresses than that meets the eviction policy in [`FailureLimiter`].
pub const MAX_CLIENTS: usize = 10_000;

/// Token buckets of allowed failures, one per key (an address, or an address and a user name).
pub struct FailureLimiter<K = IpAddr> {
    burst: u32,
    refill_every: Duration,
    max_clients: usize,
    full_at: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Copy> FailureLimiter<K> {
    /// `burst` failures in a row (at least 1), then one per `refill_every`.
    pub fn new(burst: u32, refill_every: Duration, max_clients: usize) -> Self {
        Self {
            burst: burst.max(1),
            refill_every,
            max_clients: max_clients.max(1),
            full_at: Mutex::default(),
        }
    }

    /// `Ok` if `client` may try a password now, else how long until it may.
    pub fn check(&self, client: K, now: Instant) -> Result<(), Duration> {
        let full_at = self.lock().get(&client).copied();
        let debt = full_at.map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
        // Trying needs one token: the debt may be at most (burst − 1) intervals.
        let allowance = self.refill_every * (self.burst - 1);
        match debt.checked_sub(allowance) {
            Some(wait) if !wait.is_zero() => Err(wait),
            _ => Ok(()),
        }
    }

    /// Takes one token from `client` for a failed attempt.
    pub fn record_failure(&self, key: K, now: Instant) {
        let mut buckets = self.lock();
        if !buckets.contains_key(&key) && buckets.len() >= self.max_clients {
            make_room(&mut buckets, now);
        }
        let full_at = buckets.entry(key).or_insert(now);
        *full_at = (*full_at).max(now) + self.refill_every;
    }

    /// How many clients are tracked now (for tests and, later, metrics).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Instant>> {
        // Each update is one insert or assignment: a panic elsewhere cannot leave a torn entry.
        self.full_at.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Frees at least one entry: first every client whose bucket has refilled (they are the same as
/// absent), and if none has, the client closest to full, which loses the least protection.
fn make_room<K: Hash + Eq + Copy>(buckets: &mut HashMap<K, Instant>, now: Instant) {
    let before = buckets.len();
    buckets.retain(|_, full_at| *full_at > now);
    if buckets.len() < before {
        return;
    }
    let nearest = buckets
        .iter()
        .min_by_key(|(_, full_at)| **full_at)
        .map(|(ip, _)| *ip);
    if let Some(ip) = nearest {
        buckets.remove(&ip);
    }
}

/// The address a client is counted by (its failures here, its connections at the edge): IPv4
/// as is (IPv4-mapped IPv6 counts as IPv4), IPv6 by its /64, since one host usually owns a
/// whole /64 and could otherwise rotate through it.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_burst_is_allowed_then_one_per_interval() {
        let limiter = FailureLimiter::new(BURST, REFILL_EVERY, MAX_CLIENTS);
        let t0 = Instant::now();
        for i in 0..BURST {
            assert_eq!(
                limiter.check(A, t0),
                Ok(()),
                "failure {i} is within the burst"
            );
            limiter.record_failure(A, t0);
        }
        assert_eq!(limiter.check(A, t0), Err(REFILL_EVERY));
        assert_eq!(limiter.check(A, t0 + secs(2)), Err(secs(4)));
        assert_eq!(
            limiter.check(B, t0),
            Ok(()),
            "other clients are not affected"
        );
        // One token back after one interval, and it is spent by one more failure.
        assert_eq!(limiter.check(A, t0 + REFILL_EVERY), Ok(()));
        limiter.record_failure(A, t0 + REFILL_EVERY);
        assert_eq!(limiter.check(A, t0 + REFILL_EVERY), Err(REFILL_EVERY));
        // After burst × interval with no failures the bucket is full again.
        let later = t0 + REFILL_EVERY * (BURST + 1);
        for _ in 0..BURST {
            assert_eq!(limiter.check(A, later), Ok(()));
            limiter.record_failure(A, later);
        }
        assert!(limiter.check(A, later).is_err());
    }

    #[test]
    fn failures_spread_over_time_refill_between() {
        let limiter = FailureLimiter::new(3, secs(10), 100);
        let t0 = Instant::now();
        // One failure every 10 s never runs out.
        for i in 0..20 {
            let now = t0 + secs(10 * i);
            assert_eq!(limiter.check(A, now), Ok(()), "at {i}");
            limiter.record_failure(A, now);
        }
    }

    #[test]
    fn a_burst_of_one_limits_after_each_failure() {
        let limiter = FailureLimiter::new(0, secs(5), 100); // clamped to 1
        let t0 = Instant::now();
        assert_eq!(limiter.check(A, t0), Ok(()));
        limiter.record_failure(A, t0);
        assert_eq!(limiter.check(A, t0 + secs(1)), Err(secs(4)));
        assert_eq!(limiter.check(A, t0 + secs(5)), Ok(()));
    }

    #[test]
    fn ipv6_clients_are_their_64_and_mapped_ipv4_is_ipv4() {
        let key = |text: &str| client_key(text.parse().expect("valid"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.1"), A);
    }

    #[test]
    fn memory_is_bounded_refilled_clients_go_first() {
        let limiter = FailureLimiter::new(2, secs(10), 3);
        let t0 = Instant::now();
        let ip = |i: u8| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i));
        for i in 0..3 {
            limiter.record_failure(ip(i), t0 + secs(u64::from(i)));
        }
        assert_eq!(limiter.tracked(), 3);
        // At t0+10.5 s client 0 has refilled; it is dropped to make room.
        limiter.record_failure(ip(9), t0 + Duration::from_millis(10_500));
        assert_eq!(limiter.tracked(), 3);
        // Nobody has refilled at t0+10.8 s: the one closest to full (client 1) makes room.
        let now = t0 + Duration::from_millis(10_800);
        limiter.record_failure(ip(8), now);
        assert_eq!(limiter.tracked(), 3);
        limiter.record_failure(ip(8), now);
        assert!(limiter.check(ip(8), now).is_err());
        assert!(limiter.check(ip(2), now).is_ok());
        limiter.record_failure(ip(2), now);
        assert!(limiter.check(ip(2), now).is_err(), "client 2 was kept");
        assert_eq!(limiter.tracked(), 3, "client 1 was evicted");
    }
}
