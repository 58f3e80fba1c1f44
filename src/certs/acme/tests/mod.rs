//! The manager against canned ACME answers, through instant-acme's pluggable HTTP client: ARI
//! windows, `replaces` refused and ordered again without it, the lifetime rule for 6-, 45- and
//! 90-day certificates, failures that keep the old certificate and schedule the retry.
//! (Debian's pebble has no ARI and no profiles; the real HTTP-01 flow is tested against pebble in
//! tests/acme.) The fake CA is `fake_ca.rs`.

mod fake_ca;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use instant_acme::Account;
use rcgen::{Issuer, KeyPair};
use serde_json::Value;

use super::*;
use crate::certs::CertResolver;
use fake_ca::{ca_issuer, leaf, FakeCa, Script, BASE, DAY, NAME};

struct Setup {
    manager: Arc<AcmeManager>,
    resolver: Arc<CertResolver>,
    script: Arc<Mutex<Script>>,
    issuer: Arc<Issuer<'static, KeyPair>>,
    _state: tempfile::TempDir,
}

fn setup(script: Script, profile: Option<&str>) -> Setup {
    let state = tempfile::tempdir().unwrap();
    let script = Arc::new(Mutex::new(script));
    let issuer = Arc::new(ca_issuer());
    let connector = fake_connector(&script, &issuer);
    let resolver = Arc::new(CertResolver::new());
    let options = AcmeOptions {
        directory: format!("{BASE}/dir"),
        contact: vec!["mailto:ops@example.com".to_owned()],
        domains: vec![NAME.to_owned()],
        ca_root: None,
        eab: None,
        profile: profile.map(str::to_owned),
        state_dir: state.path().join("acme"),
    };
    let manager = Arc::new(
        AcmeManager::new(options, resolver.clone(), ChallengeTokens::new(), connector).unwrap(),
    );
    Setup {
        manager,
        resolver,
        script,
        issuer,
        _state: state,
    }
}

/// Accounts whose requests the fake CA answers from `script`, issuing with `issuer`.
fn fake_connector(
    script: &Arc<Mutex<Script>>,
    issuer: &Arc<Issuer<'static, KeyPair>>,
) -> Connector {
    let (script, issuer) = (script.clone(), issuer.clone());
    Arc::new(move || {
        Ok(Account::builder_with_http(Box::new(FakeCa {
            script: script.clone(),
            issuer: issuer.clone(),
        })))
    })
}

impl Setup {
    /// Installs a certificate from the fake CA valid from `not_before` for `lifetime`.
    fn install(&self, not_before: SystemTime, lifetime: Duration) -> Arc<crate::certs::CertInfo> {
        let key = KeyPair::generate().unwrap();
        let chain = leaf(&self.issuer, &key, not_before, lifetime);
        let pair = crate::certs::pem::parse(
            chain.as_bytes(),
            std::path::Path::new("chain"),
            key.serialize_pem().as_bytes(),
            std::path::Path::new("key"),
        )
        .unwrap();
        self.resolver.install(Arc::new(pair)).unwrap()
    }

    fn orders(&self) -> Vec<Value> {
        self.script.lock().unwrap().orders.clone()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn an_ari_window_in_the_future_is_where_renewal_is_scheduled() {
    let now = SystemTime::now();
    // ARI speaks whole seconds.
    let whole = SystemTime::UNIX_EPOCH
        + Duration::from_secs(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        );
    let (start, end) = (whole + 20 * DAY, whole + 22 * DAY);
    let s = setup(
        Script {
            ari_window: Some((start, end)),
            ..Script::default()
        },
        None,
    );
    s.install(now - DAY, 90 * DAY);
    let plan = runtime().block_on(s.manager.plan(now));
    assert_eq!(plan.basis, Basis::Ari { start, end });
    assert!(
        plan.renew_at >= start && plan.renew_at <= end,
        "{plan:?} outside the window"
    );
    // Retry-After said 6 h; regapp asks about twice a day.
    assert_eq!(plan.recheck_at, Some(now + Duration::from_secs(12 * 3600)));
    // The answer is kept: planning again before the recheck asks nothing.
    runtime().block_on(s.manager.plan(now + DAY / 4));
    assert_eq!(s.script.lock().unwrap().ari_asked.len(), 1);
    assert!(
        s.orders().is_empty(),
        "nothing is ordered before the window"
    );
}

#[test]
fn inside_the_ari_window_the_renewal_replaces_the_certificate() {
    let now = SystemTime::now();
    let s = setup(
        Script {
            ari_window: Some((now - DAY, now - DAY / 2)),
            ..Script::default()
        },
        None,
    );
    let old = s.install(now - 30 * DAY, 90 * DAY);
    let rt = runtime();
    let plan = rt.block_on(s.manager.plan(now));
    assert!(plan.renew_at <= now, "a past window means now: {plan:?}");
    let asked = s.script.lock().unwrap().ari_asked[0].clone();
    let new = rt.block_on(s.manager.renew(plan.basis)).unwrap();
    assert_ne!(new.sha256_fingerprint, old.sha256_fingerprint);
    let orders = s.orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(
        format!("/renewal-info/{}", orders[0]["replaces"].as_str().unwrap()),
        asked,
        "`replaces` names the certificate ARI was asked about"
    );
    assert_eq!(s.manager.status().attempts.get("success"), Some(&1));
}

#[test]
fn a_refused_replaces_is_ordered_again_without_it() {
    let now = SystemTime::now();
    let s = setup(
        Script {
            ari_window: Some((now - DAY, now - DAY / 2)),
            refuse_replaces: true,
            ..Script::default()
        },
        None,
    );
    let old = s.install(now - 30 * DAY, 90 * DAY);
    let rt = runtime();
    let plan = rt.block_on(s.manager.plan(now));
    let new = rt.block_on(s.manager.renew(plan.basis)).unwrap();
    assert_ne!(new.sha256_fingerprint, old.sha256_fingerprint);
    let orders = s.orders();
    assert_eq!(orders.len(), 2, "{orders:?}");
    assert!(orders[0]["replaces"].is_string());
    assert!(orders[1].get("replaces").is_none(), "{orders:?}");
    assert_eq!(
        s.resolver.info().unwrap().sha256_fingerprint,
        new.sha256_fingerprint
    );
}

#[test]
fn without_ari_the_lifetime_decides_for_6_45_and_90_days() {
    let now = SystemTime::now();
    for (lifetime_days, due_after_days) in [(6.0, 3.0), (45.0, 30.0), (90.0, 60.0)] {
        let s = setup(Script::default(), None);
        let not_before = now - DAY;
        let info = s.install(not_before, DAY.mul_f64(lifetime_days));
        let plan = runtime().block_on(s.manager.plan(now));
        assert_eq!(plan.basis, Basis::Lifetime, "{lifetime_days} days");
        assert_eq!(
            plan.renew_at,
            info.not_before + DAY.mul_f64(due_after_days),
            "{lifetime_days} days"
        );
        assert!(s.script.lock().unwrap().ari_asked.is_empty());
    }
}

#[test]
fn a_profile_is_sent_with_the_order() {
    let s = setup(
        Script {
            profiles_offered: true,
            ..Script::default()
        },
        Some("shortlived"),
    );
    runtime().block_on(s.manager.renew(Basis::Missing)).unwrap();
    assert_eq!(s.orders()[0]["profile"], "shortlived");
    assert!(s.orders()[0].get("replaces").is_none());
}

#[test]
fn a_failure_keeps_the_old_certificate_and_retries_after_about_a_minute() {
    let now = SystemTime::now();
    let s = setup(
        Script {
            order_problem: Some((
                "urn:ietf:params:acme:error:serverInternal",
                "try later".to_owned(),
                500,
            )),
            ..Script::default()
        },
        None,
    );
    let old = s.install(now - 80 * DAY, 90 * DAY);
    let rt = runtime();
    let err = rt.block_on(s.manager.renew(Basis::Lifetime)).unwrap_err();
    assert!(err.to_string().contains("try later"), "{err}");
    assert_eq!(
        s.resolver.info().unwrap().sha256_fingerprint,
        old.sha256_fingerprint
    );
    let status = s.manager.status();
    assert_eq!(status.attempts.get("refused"), Some(&1));
    assert_eq!(status.failures_in_a_row, 1);
    let retry = status.retry_at.unwrap().duration_since(now).unwrap();
    assert!(
        retry >= Duration::from_secs(54) && retry <= Duration::from_secs(67),
        "{retry:?}"
    );
    // The second failure in a row waits about ten minutes.
    rt.block_on(s.manager.renew(Basis::Lifetime)).unwrap_err();
    let retry = s
        .manager
        .status()
        .retry_at
        .unwrap()
        .duration_since(now)
        .unwrap();
    assert!(
        retry >= Duration::from_secs(540) && retry <= Duration::from_secs(661),
        "{retry:?}"
    );
    assert!(s.manager.status().report().contains("try later"));
}

#[test]
fn a_rate_limit_waits_for_the_time_the_ca_gives() {
    let s = setup(
        Script {
            order_problem: Some((
                "urn:ietf:params:acme:error:rateLimited",
                "too many new orders recently: retry after 2099-01-02 03:04:05 UTC: see https://letsencrypt.org/docs/rate-limits/".to_owned(),
                429,
            )),
            ..Script::default()
        },
        None,
    );
    let err = runtime()
        .block_on(s.manager.renew(Basis::Missing))
        .unwrap_err();
    assert_eq!(err.kind(), "rate_limited");
    assert!(
        err.to_string()
            .contains("retrying after 2099-01-02T03:04:05Z"),
        "{err}"
    );
    assert_eq!(
        s.manager.status().retry_at,
        Some(humantime::parse_rfc3339("2099-01-02T03:04:05Z").unwrap())
    );
    assert!(s.resolver.info().is_none());
}

#[test]
fn the_schedule_orders_at_once_without_a_certificate_then_sleeps_until_due() {
    let s = setup(Script::default(), None);
    let rt = runtime();
    rt.block_on(async {
        let schedule = tokio::spawn(s.manager.clone().run());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while s.resolver.info().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "no certificate installed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Give the loop time to plan again (and to misbehave, if it would).
        tokio::time::sleep(Duration::from_millis(200)).await;
        schedule.abort();
    });
    assert_eq!(s.orders().len(), 1, "one order, then nothing until due");
    let status = s.manager.status();
    let cert = status.certificate.clone().unwrap();
    // The fake CA issues 45 days: due with 15 days left, by the lifetime rule.
    assert_eq!(status.next_renewal, Some(cert.not_after - 15 * DAY));
    assert_eq!(status.basis, Some(Basis::Lifetime));
    // What the metrics will read: the expiry per name and the attempts by result.
    let not_after = cert
        .not_after
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(status.expiry_by_name(), [(NAME.to_owned(), not_after)]);
    assert_eq!(status.attempts.get("success"), Some(&1));
}

#[test]
fn the_schedule_waits_after_a_failure_instead_of_spinning() {
    let s = setup(
        Script {
            order_problem: Some((
                "urn:ietf:params:acme:error:serverInternal",
                "down for maintenance".to_owned(),
                503,
            )),
            ..Script::default()
        },
        None,
    );
    let rt = runtime();
    let started = SystemTime::now();
    rt.block_on(async {
        let schedule = tokio::spawn(s.manager.clone().run());
        tokio::time::sleep(Duration::from_millis(500)).await;
        schedule.abort();
    });
    assert_eq!(s.orders().len(), 1, "one attempt, then the backoff");
    let status = s.manager.status();
    let retry = status.retry_at.unwrap();
    assert_eq!(status.next_renewal, Some(retry));
    let wait = retry.duration_since(started).unwrap();
    assert!(
        wait >= Duration::from_secs(54) && wait <= Duration::from_secs(67),
        "{wait:?}"
    );
    assert!(status.report().contains("down for maintenance"));
}

#[test]
fn a_profile_the_ca_does_not_offer_is_named_before_ordering() {
    let s = setup(Script::default(), Some("shortlived"));
    let err = runtime()
        .block_on(s.manager.renew(Basis::Missing))
        .unwrap_err();
    assert_eq!(err.kind(), "profile");
    assert!(
        err.to_string()
            .contains("acme.profile = \"shortlived\": the CA offers no profiles"),
        "{err}"
    );
    assert!(s.orders().is_empty());
}

#[test]
fn a_restart_reuses_the_certificate_only_for_the_same_directory() {
    let s = setup(Script::default(), None);
    let issued = runtime().block_on(s.manager.renew(Basis::Missing)).unwrap();
    let restart = |directory: &str| {
        let resolver = Arc::new(CertResolver::new());
        let options = AcmeOptions {
            directory: directory.to_owned(),
            contact: Vec::new(),
            domains: vec![NAME.to_owned()],
            ca_root: None,
            eab: None,
            profile: None,
            state_dir: s._state.path().join("acme"),
        };
        let never: Connector =
            Arc::new(|| panic!("a restart with a usable certificate connects to no CA"));
        AcmeManager::new(options, resolver.clone(), ChallengeTokens::new(), never).unwrap();
        resolver.info()
    };
    assert_eq!(
        restart(&format!("{BASE}/dir")).unwrap().sha256_fingerprint,
        issued.sha256_fingerprint
    );
    // Moved to another CA (say, from staging to production): that certificate is not served.
    assert!(restart("https://other-ca.test/directory").is_none());
}

/// Another node of `s`'s CA on `store` (the bucket several nodes share), named `node`.
fn node_on(
    s: &Setup,
    store: &Arc<dyn crate::storage::StorageDriver>,
    node: &str,
) -> (Arc<AcmeManager>, Arc<CertResolver>, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let connector = fake_connector(&s.script, &s.issuer);
    let resolver = Arc::new(CertResolver::new());
    let options = AcmeOptions {
        directory: format!("{BASE}/dir"),
        contact: Vec::new(),
        domains: vec![NAME.to_owned()],
        ca_root: None,
        eab: None,
        profile: None,
        state_dir: state.path().join("acme"),
    };
    let tokens = ChallengeTokens::in_bucket(store.clone());
    let manager = AcmeManager::new(options, resolver.clone(), tokens, connector)
        .unwrap()
        .shared(store.clone(), node);
    (Arc::new(manager), resolver, state)
}

/// Nodes on one bucket: one orders, the others pick its certificate up (a node that finds it
/// under the lease orders nothing); a forced renewal reaches the others; while another node
/// holds the lease, a node waits instead of ordering, and its status names the holder.
#[test]
fn nodes_on_one_bucket_order_once_and_pick_up_each_others_certificate() {
    let s = setup(Script::default(), None);
    let bucket = tempfile::tempdir().unwrap();
    let store: Arc<dyn crate::storage::StorageDriver> =
        Arc::new(crate::storage::FsDriver::new(bucket.path()));
    let (a, _, _a) = node_on(&s, &store, "a");
    let (b, b_resolver, _b) = node_on(&s, &store, "b");
    let (c, c_resolver, _c) = node_on(&s, &store, "c");
    runtime().block_on(async {
        let first = a.renew(Basis::Missing).await.unwrap();
        assert_eq!(s.orders().len(), 1);
        let picked = b.pick_up().await.expect("a's certificate reaches b");
        assert_eq!(picked.sha256_fingerprint, first.sha256_fingerprint);
        assert!(b.pick_up().await.is_none(), "nothing new the second time");
        // c was due before it looked: under the lease it finds a's and orders nothing.
        let found = c.renew(Basis::Missing).await.unwrap();
        assert_eq!(found.sha256_fingerprint, first.sha256_fingerprint);
        assert_eq!(s.orders().len(), 1, "one order for the cluster");

        let renewed = a.renew(Basis::Forced).await.unwrap();
        assert_eq!(s.orders().len(), 2);
        assert_ne!(renewed.sha256_fingerprint, first.sha256_fingerprint);
        b.pick_up().await.expect("the renewal reaches b");
        assert_eq!(
            b_resolver.info().unwrap().sha256_fingerprint,
            renewed.sha256_fingerprint
        );
        assert!(
            a.pick_up().await.is_none(),
            "a's own certificate is no news"
        );

        let other = crate::cluster::Leases::new(store.clone(), "x", Duration::from_secs(60));
        let crate::cluster::Acquired::Held(_held) = other.try_acquire(ACME_LEASE).await.unwrap()
        else {
            panic!("the lease is free between orders");
        };
        let busy = c.renew(Basis::Forced).await.unwrap_err();
        assert!(
            matches!(&busy, AcmeError::OrderedElsewhere { node } if node == "x"),
            "{busy}"
        );
        assert_eq!(s.orders().len(), 2, "no order while x holds the lease");
        let status = c.status_now().await;
        assert_eq!(status.failures_in_a_row, 0, "waiting is not failing");
        let report = status.report();
        assert!(report.contains("acme lease:    held by node x"), "{report}");
        assert!(report.contains("node:          c"), "{report}");
        assert!(report.contains("regapp-cluster/acme/"), "{report}");
        c.pick_up().await;
        assert_eq!(
            c_resolver.info().unwrap().sha256_fingerprint,
            renewed.sha256_fingerprint
        );
    });
}
