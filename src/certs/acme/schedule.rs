//! When to renew and when to try again: pure functions of dates and a random fraction, so every
//! rule is tested without a clock or a CA.
//!
//! - With ACME Renewal Information (RFC 9773) the CA suggests a window; regapp picks a uniformly
//!   random moment inside it ([`ari_renewal_at`]) and asks again about twice a day
//!   ([`ari_check_after`]).
//! - Without it: when a third of the lifetime is left, or half for certificates shorter than
//!   10 days ([`lifetime_renewal_at`]). The lifetime is read from the certificate, never assumed.
//! - After a failed attempt: about 1 min, 10 min, 100 min, then daily, each ±10 % so that many
//!   servers that failed together do not retry together ([`retry_delay`]).

use std::time::{Duration, SystemTime};

/// Certificates shorter than this renew at half their lifetime instead of at two thirds.
pub const SHORT_LIVED: Duration = Duration::from_secs(10 * 86_400);
/// How often the CA's renewal window is asked for, unless the CA asks for less often.
pub const ARI_CHECK_INTERVAL: Duration = Duration::from_secs(12 * 3600);
/// The base delays after the 1st, 2nd, 3rd and every later failure in a row.
pub const RETRY_STEPS: [Duration; 4] = [
    Duration::from_secs(60),
    Duration::from_secs(600),
    Duration::from_secs(6000),
    Duration::from_secs(86_400),
];
/// Retry delays are spread ±10 % around their base.
const JITTER: f64 = 0.1;

/// The moment a certificate valid from `not_before` to `not_after` should be renewed when the
/// CA offers no renewal window: 1/3 of its lifetime left (1/2 below [`SHORT_LIVED`]).
pub fn lifetime_renewal_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    let left = if lifetime < SHORT_LIVED {
        lifetime / 2
    } else {
        lifetime / 3
    };
    not_after - left
}

/// A moment inside the CA's suggested window `[start, end]`; `fraction` in `[0, 1)` picks it
/// (uniformly random in use, as RFC 9773 §4.2 asks). A window that ends before it starts means
/// "at its start".
pub fn ari_renewal_at(start: SystemTime, end: SystemTime, fraction: f64) -> SystemTime {
    let width = end.duration_since(start).unwrap_or(Duration::ZERO);
    start + width.mul_f64(fraction.clamp(0.0, 1.0))
}

/// How long to wait before asking for the renewal window again: about twice a day, or later
/// if the CA's Retry-After asks for that (never more often than it allows), at most weekly.
pub fn ari_check_after(retry_after_hint: Duration) -> Duration {
    retry_after_hint.clamp(ARI_CHECK_INTERVAL, Duration::from_secs(7 * 86_400))
}

/// The delay after `failures` attempts in a row have failed (`failures` ≥ 1; 0 is treated as
/// 1). `jitter` in `[0, 1)` spreads it ±10 % around the step.
pub fn retry_delay(failures: u32, jitter: f64) -> Duration {
    let step = RETRY_STEPS[(failures.max(1) as usize - 1).min(RETRY_STEPS.len() - 1)];
    step.mul_f64(1.0 - JITTER + 2.0 * JITTER * jitter.clamp(0.0, 1.0))
}

/// A uniformly distributed fraction in `[0, 1)` from the operating system's generator.
pub fn random_fraction() -> f64 {
    // 53 random bits, the precision of an f64's mantissa.
    let bits = uuid::Uuid::new_v4().as_u128() >> 75;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(days: u32) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000) + days * DAY
    }

    #[test]
    fn ninety_days_renew_with_thirty_left() {
        assert_eq!(lifetime_renewal_at(at(0), at(90)), at(60));
    }

    #[test]
    fn forty_five_days_renew_with_fifteen_left() {
        assert_eq!(lifetime_renewal_at(at(0), at(45)), at(30));
    }

    #[test]
    fn six_days_renew_at_half() {
        assert_eq!(lifetime_renewal_at(at(0), at(6)), at(3));
    }

    #[test]
    fn the_lifetime_is_read_not_assumed() {
        // A 64-day certificate is not treated as a 90-day one (that would renew at day 60).
        let due = lifetime_renewal_at(at(0), at(64));
        assert!(due < at(43) && due > at(42), "{due:?}");
        // Exactly 10 days is not short-lived.
        let ten = lifetime_renewal_at(at(0), at(10));
        assert_eq!(ten, at(10) - DAY * 10 / 3);
    }

    #[test]
    fn the_ari_moment_is_inside_the_window() {
        assert_eq!(ari_renewal_at(at(10), at(12), 0.0), at(10));
        assert_eq!(ari_renewal_at(at(10), at(12), 0.5), at(11));
        let late = ari_renewal_at(at(10), at(12), 0.999_999);
        assert!(late > at(11) && late <= at(12));
        for _ in 0..100 {
            let t = ari_renewal_at(at(10), at(12), random_fraction());
            assert!(t >= at(10) && t < at(12));
        }
        // A window written backwards means its start.
        assert_eq!(ari_renewal_at(at(12), at(10), 0.7), at(12));
    }

    #[test]
    fn ari_is_asked_about_twice_a_day_unless_the_ca_wants_less() {
        assert_eq!(
            ari_check_after(Duration::from_secs(6 * 3600)),
            ARI_CHECK_INTERVAL
        );
        assert_eq!(ari_check_after(Duration::ZERO), ARI_CHECK_INTERVAL);
        assert_eq!(ari_check_after(DAY * 2), DAY * 2);
        assert_eq!(ari_check_after(DAY * 30), DAY * 7);
    }

    #[test]
    fn retries_grow_from_a_minute_to_a_day() {
        let base: Vec<Duration> = (1..=6).map(|n| retry_delay(n, 0.5)).collect();
        assert_eq!(
            base,
            [
                Duration::from_secs(60),
                Duration::from_secs(600),
                Duration::from_secs(6000),
                DAY,
                DAY,
                DAY
            ]
        );
        assert_eq!(retry_delay(0, 0.5), Duration::from_secs(60));
    }

    #[test]
    fn retries_are_jittered_by_ten_percent() {
        assert_eq!(retry_delay(1, 0.0), Duration::from_secs(54));
        assert_eq!(retry_delay(2, 1.0), Duration::from_secs(660));
        let spread: Vec<Duration> = (0..50).map(|_| retry_delay(3, random_fraction())).collect();
        assert!(spread
            .iter()
            .all(|d| *d >= Duration::from_secs(5400) && *d <= Duration::from_secs(6600)));
        assert!(
            spread.iter().any(|d| *d != spread[0]),
            "random jitter gives different delays"
        );
    }
}
