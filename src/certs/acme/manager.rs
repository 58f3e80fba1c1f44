//! The certificate manager: keeps a certificate for the configured names installed in the
//! [`CertResolver`], ordering when there is none and renewing when it is due.
//!
//! [`AcmeManager::renew`] is the `run_once`: one attempt, logged, counted, and installed on
//! success (saved first, then swapped in; open connections keep their certificate). [`run`]
//! is the schedule around it: plan, sleep until due (or until `regapp cert renew` wakes it),
//! attempt, and after a failure wait the backoff of [`super::schedule::retry_delay`] while the
//! old certificate keeps serving.
//!
//! Several nodes on one bucket ([`AcmeManager::shared`]): the account and the certificate are
//! kept in the bucket ([`Kept`]); a node orders only while it holds the `acme` lease, and looks
//! again under it whether another node's certificate arrived meanwhile; every node looks for a
//! newer certificate in the bucket every [`PICK_UP_EVERY`] and swaps it in.
//!
//! [`run`]: AcmeManager::run

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use instant_acme::{Account, CertificateIdentifier};
use tokio::sync::Notify;

use super::account::{load_or_create, Connector};
use super::challenges::ChallengeTokens;
use super::error::AcmeError;
use super::kept::Kept;
use super::order::order_certificate;
use super::renewal::{ask_ari, without_ari, AriAnswer, Basis, ARI_ERROR_BACKOFF};
use super::schedule::{random_fraction, retry_delay, ARI_CHECK_INTERVAL};
use super::state::StateDir;
use super::status::{rfc3339, Status};
use super::AcmeOptions;
use crate::certs::{CertInfo, CertResolver};
use crate::cluster::{Acquired, Holder, Leases};
use crate::storage::{StorageDriver, Version};

/// The loop wakes at least this often to look again (clock jumps, suspended machines).
const MAX_SLEEP: Duration = Duration::from_secs(12 * 3600);
/// One whole attempt (account, order, validation, issuance) may take this long: a CA that stops
/// answering mid-request must not hold the schedule (and `regapp cert renew`) forever.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);
/// Asking for the renewal window (including reading the directory) may take this long.
const ARI_TIMEOUT: Duration = Duration::from_secs(60);
/// Several nodes: how often a node looks for a certificate another node ordered.
pub const PICK_UP_EVERY: Duration = Duration::from_secs(20);
/// Several nodes: the lease a node orders under (renewed every third of it while it orders).
pub const ACME_LEASE: &str = "acme";
const ACME_LEASE_TTL: Duration = Duration::from_secs(60);
/// Several nodes: while another node orders, look again this soon.
const ELSEWHERE_RETRY: Duration = Duration::from_secs(5);

pub struct AcmeManager {
    options: AcmeOptions,
    state: StateDir,
    /// Where the account and certificate are: `state`, or the bucket.
    kept: Kept,
    /// Several nodes: the lease an order needs.
    leases: Option<Leases>,
    resolver: Arc<CertResolver>,
    tokens: ChallengeTokens,
    connector: Connector,
    account: tokio::sync::Mutex<Option<Account>>,
    /// One attempt at a time: the schedule and `regapp cert renew` never order twice at once.
    attempt: tokio::sync::Mutex<()>,
    inner: Mutex<Inner>,
    /// Wakes the schedule after a forced renewal.
    changed: Notify,
}

#[derive(Default)]
struct Inner {
    ari: Option<AriAnswer>,
    /// (fingerprint, until): the CA gave no window for this certificate; use the lifetime rule.
    no_ari: Option<(String, SystemTime)>,
    retry_at: Option<SystemTime>,
    status: Status,
    /// Several nodes: the version of the bucket's certificate last looked at.
    seen: Option<Version>,
}

/// What [`AcmeManager::plan`] decided.
#[derive(Debug, Clone)]
pub struct Plan {
    pub renew_at: SystemTime,
    pub basis: Basis,
    /// When the renewal window should be asked for again.
    pub recheck_at: Option<SystemTime>,
}

impl AcmeManager {
    /// Prepares the state directory and installs the stored certificate if it is usable (loads,
    /// matches its key, covers the names, not expired): a restart with one orders nothing.
    pub fn new(
        options: AcmeOptions,
        resolver: Arc<CertResolver>,
        tokens: ChallengeTokens,
        connector: Connector,
    ) -> Result<AcmeManager, AcmeError> {
        let state = StateDir::new(&options.state_dir, &options.directory);
        state.ensure()?;
        install_stored(&state, &options.domains, &resolver);
        let status = Status {
            domains: options.domains.clone(),
            directory: options.directory.clone(),
            kept: state.certificate_path().display().to_string(),
            ..Status::default()
        };
        Ok(AcmeManager {
            options,
            kept: Kept::Dir(state.clone()),
            leases: None,
            state,
            resolver,
            tokens,
            connector,
            account: tokio::sync::Mutex::new(None),
            attempt: tokio::sync::Mutex::new(()),
            inner: Mutex::new(Inner {
                status,
                ..Inner::default()
            }),
            changed: Notify::new(),
        })
    }

    /// Several nodes on `bucket`: the account and certificate are kept there and ordered under
    /// its `acme` lease by the node named `node`. The certificate in the bucket is installed by
    /// the first [`pick_up`](AcmeManager::pick_up) (the schedule's first step).
    pub fn shared(mut self, bucket: Arc<dyn StorageDriver>, node: &str) -> AcmeManager {
        self.kept = Kept::in_bucket(bucket.clone(), &self.state);
        self.leases = Some(Leases::new(bucket, node, ACME_LEASE_TTL));
        self.inner().status.kept = self.kept.certificate_location();
        self.inner().status.node = Some(node.to_owned());
        self
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// [`status`](AcmeManager::status) with who holds the `acme` lease, read from the bucket.
    pub async fn status_now(&self) -> Status {
        let mut status = self.status();
        if let Some(leases) = &self.leases {
            status.lease = Some(lease_text(leases.holder(ACME_LEASE).await));
        }
        status
    }

    /// Several nodes: installs the bucket's certificate if it is newer than the one in use (or
    /// that one is unusable) and is itself usable. `Some`: what was installed.
    pub async fn pick_up(&self) -> Option<Arc<CertInfo>> {
        if !self.kept.is_shared() {
            return None;
        }
        let (key, version) = match self.kept.load_certificate().await {
            Ok(Some((key, version))) => (key, version),
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "reading the certificate in the bucket failed");
                return None;
            }
        };
        if version.is_some() && self.inner().seen == version {
            return None;
        }
        self.inner().seen = version;
        let now = SystemTime::now();
        let info = match usable(&key, &self.options.domains, now) {
            Ok(info) => info,
            Err(why) => {
                tracing::info!("the bucket's certificate {why}; not installed");
                return None;
            }
        };
        // The bucket holds the cluster's one certificate; only a usable one issued later (say,
        // before this node joined the bucket) is kept instead.
        let newer = match self.resolver.info() {
            None => true,
            Some(current) => {
                current.sha256_fingerprint != info.sha256_fingerprint
                    && !(current.not_before > info.not_before
                        && usable_info(&current, &self.options.domains, now).is_ok())
            }
        };
        if !newer {
            return None;
        }
        match self.resolver.install(Arc::new(key)) {
            Ok(info) => {
                tracing::info!(names = ?info.dns_names, not_after = %rfc3339(info.not_after),
                    sha256 = %info.sha256_fingerprint, "installed the certificate from the bucket");
                // Not an attempt of this node's: nothing counted, but nothing pending either.
                self.settled(&info);
                Some(info)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the bucket's certificate does not install");
                None
            }
        }
    }

    /// A snapshot of what the manager knows (certificate, due date, attempts).
    pub fn status(&self) -> Status {
        let mut status = self.inner().status.clone();
        status.certificate = self.resolver.info().map(|info| (*info).clone());
        status
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // The state stays consistent even if a holder panicked: each update is one assignment.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn account(&self) -> Result<Account, AcmeError> {
        let mut slot = self.account.lock().await;
        if let Some(account) = &*slot {
            return Ok(account.clone());
        }
        let account = load_or_create(&self.options, &self.kept, &self.connector).await?;
        *slot = Some(account.clone());
        Ok(account)
    }

    /// When the certificate in use is due, asking the CA's renewal window when it is time to.
    pub async fn plan(&self, now: SystemTime) -> Plan {
        let Some(info) = self.resolver.info() else {
            return Plan {
                renew_at: now,
                basis: Basis::Missing,
                recheck_at: None,
            };
        };
        let (lifetime_at, basis) = without_ari(&info, &self.options.domains, now);
        if basis == Basis::NamesChanged {
            return Plan {
                renew_at: now,
                basis,
                recheck_at: None,
            };
        }
        let fingerprint = &info.sha256_fingerprint;
        if let Some(plan) = self.remembered_plan(fingerprint, lifetime_at, &basis, now) {
            return plan;
        }
        let answer = self.ask_renewal_window(fingerprint, now).await;
        self.remember_answer(answer, fingerprint, lifetime_at, basis, now)
    }

    /// The plan from the last answer about this certificate (a window, or that there is none),
    /// while it is not yet time to ask again.
    fn remembered_plan(
        &self,
        fingerprint: &str,
        lifetime_at: SystemTime,
        basis: &Basis,
        now: SystemTime,
    ) -> Option<Plan> {
        let inner = self.inner();
        if let Some(ari) = inner.ari.as_ref().filter(|a| a.fingerprint == fingerprint) {
            if now < ari.ask_again_at {
                return Some(Plan {
                    renew_at: ari.renew_at,
                    basis: ari.basis.clone(),
                    recheck_at: Some(ari.ask_again_at),
                });
            }
        }
        if let Some((_, until)) = inner.no_ari.as_ref().filter(|(f, _)| f == fingerprint) {
            if now < *until {
                return Some(Plan {
                    renew_at: lifetime_at,
                    basis: basis.clone(),
                    recheck_at: Some(*until),
                });
            }
        }
        None
    }

    /// Asks the CA for the renewal window of the certificate in use, within [`ARI_TIMEOUT`].
    async fn ask_renewal_window(
        &self,
        fingerprint: &str,
        now: SystemTime,
    ) -> Result<Option<AriAnswer>, AcmeError> {
        let ask = async {
            match (self.account().await, self.resolver.current()) {
                (Ok(account), Some(key)) => ask_ari(&account, &key.cert[0], fingerprint, now).await,
                (Err(e), _) => Err(e),
                (_, None) => Ok(None),
            }
        };
        tokio::time::timeout(ARI_TIMEOUT, ask)
            .await
            .unwrap_or_else(|_| {
                Err(AcmeError::Timeout {
                    what: "asking for the renewal window (ARI)",
                    seconds: ARI_TIMEOUT.as_secs(),
                })
            })
    }

    /// Remembers the CA's answer (a window, none, or the failure to ask) and plans from it:
    /// without a window the lifetime rule decides until it is time to ask again.
    fn remember_answer(
        &self,
        answer: Result<Option<AriAnswer>, AcmeError>,
        fingerprint: &str,
        lifetime_at: SystemTime,
        basis: Basis,
        now: SystemTime,
    ) -> Plan {
        let mut inner = self.inner();
        let until = match answer {
            Ok(Some(ari)) => {
                tracing::info!(renew_at = %rfc3339(ari.renew_at), basis = %ari.basis,
                    "the CA's renewal window (ARI)");
                let plan = Plan {
                    renew_at: ari.renew_at,
                    basis: ari.basis.clone(),
                    recheck_at: Some(ari.ask_again_at),
                };
                inner.ari = Some(ari);
                return plan;
            }
            Ok(None) => now + ARI_CHECK_INTERVAL,
            Err(e) => {
                tracing::warn!(error = %e, "could not ask the CA for a renewal window; using the lifetime rule for now");
                now + ARI_ERROR_BACKOFF
            }
        };
        inner.no_ari = Some((fingerprint.to_owned(), until));
        Plan {
            renew_at: lifetime_at,
            basis,
            recheck_at: Some(until),
        }
    }

    /// One attempt: order, save, install. Logged and counted whatever happens; on failure the
    /// certificate in use stays and the next retry is scheduled.
    pub async fn renew(&self, basis: Basis) -> Result<Arc<CertInfo>, AcmeError> {
        let _one_at_a_time = self.attempt.lock().await;
        let Some(leases) = &self.leases else {
            return self.attempt(basis).await;
        };
        let lease = match leases.try_acquire(ACME_LEASE).await {
            Ok(Acquired::Held(lease)) => lease,
            Ok(Acquired::Busy(holder)) => return Err(self.ordered_elsewhere(holder)),
            Err(source) => return Err(self.failed(AcmeError::Bucket { source }, Instant::now())),
        };
        // The node that held the lease before may have just stored what this one is after.
        if basis != Basis::Forced {
            if let Some(info) = self.pick_up().await {
                if let Err(e) = lease.release(false).await {
                    tracing::warn!(error = %e, "releasing the acme lease failed; it expires");
                }
                return Ok(info);
            }
        }
        lease
            .keep_while(self.attempt(basis), Result::is_ok)
            .await
            .unwrap_or_else(|| Err(self.failed(AcmeError::LeaseLost, Instant::now())))
    }

    /// Another node orders: look again soon, without counting a failure.
    fn ordered_elsewhere(&self, holder: Holder) -> AcmeError {
        let retry_at = SystemTime::now() + ELSEWHERE_RETRY;
        let mut inner = self.inner();
        inner.retry_at = Some(retry_at);
        inner.status.retry_at = Some(retry_at);
        tracing::info!(node = %holder.node, "another node holds the acme lease and orders; waiting for its certificate");
        AcmeError::OrderedElsewhere { node: holder.node }
    }

    /// One order (with its log lines and counts), whoever decided it may run.
    async fn attempt(&self, basis: Basis) -> Result<Arc<CertInfo>, AcmeError> {
        let started = Instant::now();
        let replaces = self.replaces();
        tracing::info!(domains = ?self.options.domains, reason = %basis,
            replaces = replaces.as_ref().map(|r| r.to_string()), "ACME order starting");
        let result = tokio::time::timeout(ATTEMPT_TIMEOUT, self.order_and_install(replaces))
            .await
            .unwrap_or_else(|_| {
                Err(AcmeError::Timeout {
                    what: "the ACME attempt",
                    seconds: ATTEMPT_TIMEOUT.as_secs(),
                })
            });
        match result {
            Ok(info) => {
                self.succeeded(&info, started);
                Ok(info)
            }
            Err(e) => Err(self.failed(e, started)),
        }
    }

    /// Counts and logs an installed certificate (`started`: ordered here, that long ago).
    /// Counts and logs an attempt that installed `info`.
    fn succeeded(&self, info: &CertInfo, started: Instant) {
        *self.inner().status.attempts.entry("success").or_default() += 1;
        self.settled(info);
        tracing::info!(names = ?info.dns_names, not_after = %rfc3339(info.not_after),
            sha256 = %info.sha256_fingerprint, issuer = %info.issuer,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ACME certificate installed");
    }

    /// `info` is in use (ordered here or picked up from the bucket): no failure or retry is
    /// pending, and the lifetime rule says when to renew until the schedule asks the CA again.
    fn settled(&self, info: &CertInfo) {
        let mut inner = self.inner();
        inner.status.failures_in_a_row = 0;
        inner.status.last_error = None;
        inner.status.retry_at = None;
        inner.retry_at = None;
        inner.ari = None;
        inner.no_ari = None;
        // Until the schedule asks the CA again, the lifetime rule says when.
        let (due, basis) = without_ari(info, &self.options.domains, SystemTime::now());
        inner.status.next_renewal = Some(due);
        inner.status.basis = Some(basis);
    }

    /// Counts and logs a failed attempt and schedules the retry; the certificate in use stays.
    fn failed(&self, e: AcmeError, started: Instant) -> AcmeError {
        let mut inner = self.inner();
        *inner.status.attempts.entry(e.kind()).or_default() += 1;
        inner.status.failures_in_a_row += 1;
        inner.status.last_error = Some(e.to_string());
        let failures = inner.status.failures_in_a_row;
        let mut retry_at = SystemTime::now() + retry_delay(failures, random_fraction());
        if let Some(ca_says) = e.retry_not_before() {
            retry_at = retry_at.max(ca_says);
        }
        inner.retry_at = Some(retry_at);
        inner.status.retry_at = Some(retry_at);
        let serving = self.resolver.info().map(|i| rfc3339(i.not_after));
        tracing::error!(error = %e, kind = e.kind(), failures, retry_at = %rfc3339(retry_at),
            still_serving_until = serving.as_deref().unwrap_or("nothing"),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ACME order failed");
        e
    }

    /// `regapp cert renew`: one attempt now, then the schedule looks again.
    pub async fn renew_now(&self) -> Result<Arc<CertInfo>, AcmeError> {
        let result = self.renew(Basis::Forced).await;
        self.changed.notify_one();
        result
    }

    fn replaces(&self) -> Option<CertificateIdentifier<'static>> {
        let current = self.resolver.info()?;
        let inner = self.inner();
        let ari = inner.ari.as_ref()?;
        (ari.fingerprint == current.sha256_fingerprint).then(|| ari.replaces.clone())
    }

    async fn order_and_install(
        &self,
        replaces: Option<CertificateIdentifier<'static>>,
    ) -> Result<Arc<CertInfo>, AcmeError> {
        let account = self.account().await?;
        let issued = order_certificate(
            &account,
            &self.options.domains,
            self.options.profile.as_deref(),
            replaces,
            &self.tokens,
        )
        .await?;
        tracing::debug!(replaced = issued.replaced, "certificate issued");
        let key = self
            .kept
            .save_certificate(&issued.chain_pem, &issued.key_pem)
            .await?;
        // The next pick-up reads it back once and finds it already served.
        Ok(self.resolver.install(Arc::new(key))?)
    }

    /// The schedule, forever: plan, wait until due, attempt; see the module doc.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.pick_up().await;
            let now = SystemTime::now();
            let plan = self.plan(now).await;
            let retry_at = self.inner().retry_at;
            let due = retry_at.map_or(plan.renew_at, |r| r.max(plan.renew_at));
            {
                let mut inner = self.inner();
                inner.status.next_renewal = Some(due);
                inner.status.basis = Some(plan.basis.clone());
            }
            if due <= now {
                let _ = self.renew(plan.basis).await;
                continue;
            }
            let mut wake = due.min(now + MAX_SLEEP);
            if let Some(recheck) = plan.recheck_at {
                wake = wake.min(recheck.max(now));
            }
            if self.kept.is_shared() {
                wake = wake.min(now + PICK_UP_EVERY);
            }
            tracing::debug!(due = %rfc3339(due), wake = %rfc3339(wake), basis = %plan.basis, "next ACME check");
            let sleep = wake.duration_since(now).unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.changed.notified() => {}
            }
        }
    }
}

/// Installs the stored certificate if it is usable (loads, key matches, covers `domains`, valid
/// now); otherwise says why a new one will be ordered. Never fails startup: an unusable file is
/// replaced by the next order.
fn install_stored(state: &StateDir, domains: &[String], resolver: &CertResolver) {
    let path = state.certificate_path();
    let key = match state.load_certificate() {
        Ok(Some(key)) => key,
        Ok(None) => {
            tracing::info!(dir = %state.dir().display(),
                "no ACME certificate yet; :443 refuses handshakes until the first order completes");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "the stored certificate is unusable; ordering a new one");
            return;
        }
    };
    if let Err(why) = usable(&key, domains, SystemTime::now()) {
        tracing::warn!(file = %path.display(), "the stored certificate {why}; ordering a new one");
        return;
    }
    match resolver.install(Arc::new(key)) {
        Ok(info) => tracing::info!(file = %path.display(), names = ?info.dns_names,
            not_after = %rfc3339(info.not_after), sha256 = %info.sha256_fingerprint,
            "serving the stored ACME certificate"),
        Err(e) => tracing::warn!(file = %path.display(), error = %e,
            "the stored certificate is unusable; ordering a new one"),
    }
}

/// What a stored certificate is, if it may be served for `domains` at `now`; else why not.
fn usable(
    key: &rustls::sign::CertifiedKey,
    domains: &[String],
    now: SystemTime,
) -> Result<CertInfo, String> {
    let info = CertInfo::from_der(&key.cert[0]).map_err(|e| format!("does not read ({e})"))?;
    usable_info(&info, domains, now).map(|()| info)
}

fn usable_info(info: &CertInfo, domains: &[String], now: SystemTime) -> Result<(), String> {
    let missing: Vec<&String> = domains.iter().filter(|d| !info.covers(d)).collect();
    if !info.valid_at(now) {
        Err(format!(
            "not valid now (not after {})",
            rfc3339(info.not_after)
        ))
    } else if !missing.is_empty() {
        Err(format!("lacks configured names {missing:?}"))
    } else {
        Ok(())
    }
}

/// Who holds the `acme` lease, for `regapp cert status`.
pub(super) fn lease_text(holder: crate::storage::StorageResult<Option<Holder>>) -> String {
    let now = SystemTime::now();
    match holder {
        Ok(Some(holder)) if holder.is_live(now) => format!(
            "held by node {} until {}",
            holder.node,
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(holder.expires))
        ),
        Ok(Some(holder)) => match holder.last_finished {
            Some(at) => format!(
                "free (node {} last ordered, finishing {})",
                holder.node,
                rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(at))
            ),
            None => format!("free (node {} held it last)", holder.node),
        },
        Ok(None) => "free (never taken)".to_owned(),
        Err(e) => format!("unknown ({e})"),
    }
}
