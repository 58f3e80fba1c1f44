//! Online garbage collection, retention and storage use (`[gc]`, `[[retention]]`, `regapp gc`,
//! `regapp du`).
//!
//! | file | owns |
//! |---|---|
//! | `collect.rs` | one run: load → retention → unlink unkept revisions → mark → sweep blobs, links, leftovers and uploads |
//! | `mark.rs` | what a repository holds and which of its manifests are kept |
//! | `sweep.rs` | the deletions, each under `Pins::condemn` |
//! | `retention.rs` | which tags a `[[retention]]` rule removes (pure; globs are `auth::access::RepoGlob`) |
//! | `trash.rs` | `FsTrash`: garbage renamed aside on a filesystem and purged after the run |
//! | `usage.rs` | bytes per repository (`regapp du`, metrics) |
//! | `lock.rs` | the lock file that keeps two collections (server, command line) apart |
//! | `control.rs` | the Unix socket behind `regapp gc` / `regapp du` while the server runs |
//! | `progress.rs` | progress on a terminal or in the log |
//!
//! The collector works on the store's driver and key layout (`registry::store::paths`) and
//! never on HTTP. Why collecting while pushes run is safe is written in ARCHITECTURE.md
//! ("Garbage collection").

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use async_trait::async_trait;

use crate::cluster::{Acquired, Leases};
use crate::plumbing::control_socket::Interim;
use crate::registry::store::{Store, StoreError};
use crate::storage::{Backend, StorageDriver, StorageError, StorageResult, StorageSettings};

mod collect;
pub mod control;
mod eviction;
pub mod lock;
mod mark;
pub mod progress;
pub mod retention;
mod sweep;
#[cfg(test)]
mod tests;
pub mod trash;
pub mod usage;

pub use eviction::CacheLimit;
pub use retention::RetentionRule;
pub use trash::FsTrash;

/// How the collector gets rid of what it condemned, above the driver: the filesystem store
/// moves it aside at once and gives the space back later ([`FsTrash`]); a store whose driver
/// deletes cheaply deletes in place ([`InPlace`]).
#[async_trait]
pub trait Disposal: Send + Sync {
    /// Deletes everything under each key, with one result per key, in order. Each key is gone
    /// for `stat`, `list` and new readers when this returns; the space may come back later.
    async fn retire(&self, keys: &[String]) -> Vec<StorageResult<()>>;
    /// Starts giving back the space of everything retired so far, and returns at once (the
    /// end of a collection in a serving process).
    fn reclaim_in_background(&self) {}
    /// Returns once the space of everything retired so far is given back (`regapp gc`
    /// without a server waits for this before it exits).
    async fn reclaim(&self) -> StorageResult<()> {
        Ok(())
    }
    /// Removes what writes that died before publishing left in `dirs` (the filesystem
    /// driver's temporary files) if last written before `older_than`; how many.
    async fn remove_leftovers(
        &self,
        dirs: &[String],
        older_than: SystemTime,
    ) -> StorageResult<u64> {
        let _ = (dirs, older_than);
        Ok(0)
    }
}

/// Deletes through the driver, one key after the other.
pub struct InPlace(pub Arc<dyn StorageDriver>);

#[async_trait]
impl Disposal for InPlace {
    async fn retire(&self, keys: &[String]) -> Vec<StorageResult<()>> {
        let mut results = Vec::with_capacity(keys.len());
        for key in keys {
            results.push(self.0.delete(key).await);
        }
        results
    }
}

/// The disposal for the store the settings name: the filesystem's trash in its root; in a
/// bucket, deletes through `driver` (S3 has no rename to move objects aside cheaply).
pub fn disposal_for(
    storage: &StorageSettings,
    driver: &Arc<dyn StorageDriver>,
) -> Arc<dyn Disposal> {
    match storage.backend {
        Backend::Filesystem => Arc::new(FsTrash::new(&storage.root)),
        Backend::S3(_) => Arc::new(InPlace(driver.clone())),
    }
}
pub use usage::{RepoUsage, Usage};

use progress::Progress;

/// What a collection does and when (`[gc]`, `[[retention]]`, checked by `config`); swapped
/// whole at runtime by [`Collector::update`].
#[derive(Debug, Clone, PartialEq)]
pub struct GcPolicy {
    /// Time between scheduled runs; `None` = no schedule (command line only).
    pub interval: Option<Duration>,
    /// Blobs and links younger than this are never deleted (see ARCHITECTURE.md).
    pub grace: Duration,
    pub delete_untagged: bool,
    /// Upload sessions untouched this long are removed.
    pub upload_max_age: Duration,
    /// Evaluated before the mark; the first rule matching a repository applies.
    pub retention: Vec<RetentionRule>,
    /// On a shared store, a push's pin spares a blob if newer than the cutoff less this
    /// (`[cluster] clock_skew`: the pin's time is the pushing node's clock).
    pub clock_skew: Duration,
    /// The mirrors' cache limits (`[[mirror]] max_bytes`, `max_unused`).
    pub caches: Vec<CacheLimit>,
}

pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(86_400);
pub const DEFAULT_UPLOAD_MAX_AGE: Duration = Duration::from_secs(86_400);

/// How a report's settings line starts: `regapp gc` finds it there to compare with its file.
pub const SETTINGS_PREFIX: &str = "settings: ";

impl GcPolicy {
    /// What a collection goes by, in one line: compared between `regapp gc --config FILE`
    /// and the running server that collects for it.
    pub fn settings_line(&self) -> String {
        format!(
            "grace {}, delete_untagged {}, upload_max_age {}, {} retention rule(s), {} mirror cache limit(s)",
            humantime::format_duration(self.grace),
            self.delete_untagged,
            humantime::format_duration(self.upload_max_age),
            self.retention.len(),
            self.caches
                .iter()
                .filter(|c| c.max_bytes.is_some() || c.max_unused.is_some())
                .count()
        )
    }
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy {
            interval: Some(DEFAULT_INTERVAL),
            caches: Vec::new(),
            grace: DEFAULT_GRACE,
            delete_untagged: false,
            upload_max_age: DEFAULT_UPLOAD_MAX_AGE,
            retention: Vec::new(),
            clock_skew: crate::cluster::lease::CLOCK_SKEW,
        }
    }
}

/// Per-run choices on top of the policy (`regapp gc --dry-run --delete-untagged`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    pub dry_run: bool,
    /// Deletes untagged manifests in this run even if the policy keeps them.
    pub delete_untagged: bool,
}

/// What one collection did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub dry_run: bool,
    pub duration: Duration,
    pub repositories: u64,
    pub manifests_kept: u64,
    /// Manifest revisions unlinked (untagged, or untagged by retention or eviction).
    pub manifests_removed: u64,
    /// Mirrored manifests dropped by their cache's limits (unlinked with the rest).
    pub manifests_evicted: u64,
    /// `(repository, tag)` removed by retention.
    pub tags_removed: Vec<(String, String)>,
    pub blobs_kept: u64,
    /// Unreferenced, but younger than the grace period or held by a push in progress.
    pub blobs_spared: u64,
    pub blobs_removed: u64,
    pub bytes_removed: u64,
    pub layer_links_removed: u64,
    pub uploads_removed: u64,
    /// Links of tags' histories to manifests that are gone.
    pub tag_history_removed: u64,
    /// What writes that died before their rename left (the filesystem's `*.tmp` files).
    pub leftovers_removed: u64,
    /// The policy the run used, as [`GcPolicy::settings_line`] says it.
    pub settings: String,
}

impl GcReport {
    /// The summary `regapp gc` prints and the server logs.
    pub fn summary(&self) -> String {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let mut out = String::new();
        let _ = writeln!(out, "{SETTINGS_PREFIX}{}", self.settings);
        for (repo, tag) in &self.tags_removed {
            let _ = writeln!(out, "tag {repo}:{tag} ({verb} by retention)");
        }
        if self.manifests_evicted > 0 {
            let _ = writeln!(
                out,
                "mirror caches: {} manifests over their limits ({verb} with what only they hold)",
                self.manifests_evicted
            );
        }
        let _ = writeln!(
            out,
            "{verb}: {} blobs ({} bytes), {} manifests, {} tags, {} layer links, {} upload sessions, \
             {} tag history links, {} leftover temporary files",
            self.blobs_removed,
            self.bytes_removed,
            self.manifests_removed,
            self.tags_removed.len(),
            self.layer_links_removed,
            self.uploads_removed,
            self.tag_history_removed,
            self.leftovers_removed
        );
        let _ = writeln!(
            out,
            "kept: {} blobs, {} manifests in {} repositories; spared {} unreferenced blobs (younger than the grace period or in use)",
            self.blobs_kept, self.manifests_kept, self.repositories, self.blobs_spared
        );
        let _ = writeln!(out, "took {:.2} s", self.duration.as_secs_f64());
        out
    }
}

/// Told about every finished collection and measurement (the metrics fill this in).
pub trait GcObserver: Send + Sync {
    fn on_report(&self, _report: &GcReport) {}
    fn on_usage(&self, _usage: &Usage) {}
    /// This node took ([`GC_LEASE`]) or gave up the store's collection lease.
    fn on_lease(&self, _held: bool) {}
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("a collection is already running ({0})")]
    Busy(String),
    #[error("lock file {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A scheduled run when another node's finished within the interval.
    #[error("not due: {0}")]
    NotDue(String),
    #[error("the collection's lease in the store was lost (taken over after it expired)")]
    LeaseLost,
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs collections over one store: on a schedule, on request (control socket, command line),
/// never two at once.
pub struct Collector {
    store: Arc<Store>,
    disposal: Arc<dyn Disposal>,
    policy: ArcSwap<GcPolicy>,
    state_dir: PathBuf,
    /// One run at a time inside the process; the lock file keeps other processes out.
    running: tokio::sync::Mutex<()>,
    policy_changed: tokio::sync::Notify,
    observer: std::sync::RwLock<Option<Arc<dyn GcObserver>>>,
    /// The last finished (non-dry) run and measurement, for whoever polls (a metrics scrape).
    last: std::sync::Mutex<(Option<GcReport>, Option<Usage>)>,
    /// Progress on the terminal (the command line running without a server) or in the log.
    interactive: bool,
    /// How often progress shows, where a test sets it.
    #[cfg(test)]
    progress_every: Option<Duration>,
    /// Nodes sharing the store: one collection at a time among them (see [`GC_LEASE`]).
    leases: Option<Arc<Leases>>,
}

/// The lease a collection holds while it runs when several nodes share the store.
pub const GC_LEASE: &str = "gc";
/// How long it lasts without renewal: a node that died mid-run holds it this long at most.
pub const GC_LEASE_TTL: Duration = Duration::from_secs(60);

impl Collector {
    /// A collector for `store` that deletes through `disposal`; `state_dir` holds `gc.lock`
    /// and `gc.sock` (the storage root).
    pub fn new(
        store: Arc<Store>,
        disposal: Arc<dyn Disposal>,
        policy: GcPolicy,
        state_dir: &Path,
    ) -> Collector {
        Collector {
            store,
            disposal,
            policy: ArcSwap::from_pointee(policy),
            state_dir: state_dir.to_owned(),
            running: tokio::sync::Mutex::new(()),
            policy_changed: tokio::sync::Notify::new(),
            observer: std::sync::RwLock::new(None),
            last: std::sync::Mutex::new((None, None)),
            interactive: false,
            #[cfg(test)]
            progress_every: None,
            leases: None,
        }
    }

    /// As `node` among others when the store is a bucket (which several nodes may share):
    /// collections hold its [`GC_LEASE`]. On a filesystem `gc.lock` is enough.
    pub fn on_node(self, storage: &StorageSettings, node: &str) -> Collector {
        match storage.backend {
            Backend::S3(_) => {
                let leases = Leases::new(self.store.driver().clone(), node, GC_LEASE_TTL);
                self.with_leases(Arc::new(leases))
            }
            Backend::Filesystem => self,
        }
    }

    /// Collections also hold the store's [`GC_LEASE`]: one at a time among the nodes that
    /// share the store, one per interval among their schedules.
    pub fn with_leases(mut self, leases: Arc<Leases>) -> Collector {
        self.leases = Some(leases);
        self
    }

    pub fn with_observer(self, observer: Arc<dyn GcObserver>) -> Collector {
        self.set_observer(observer);
        self
    }

    /// Installs (or replaces) the observer of a running collector.
    pub fn set_observer(&self, observer: Arc<dyn GcObserver>) {
        *self.observer.write().expect("observer lock poisoned") = Some(observer);
    }

    /// The last collection that deleted (not a dry run), if any ran.
    pub fn last_report(&self) -> Option<GcReport> {
        self.last.lock().expect("last-run lock poisoned").0.clone()
    }

    /// Storage use as the last collection or `du` measured it.
    pub fn last_usage(&self) -> Option<Usage> {
        self.last.lock().expect("last-run lock poisoned").1.clone()
    }

    /// Shows progress on the terminal when stderr is one (the command line).
    pub fn interactive(mut self) -> Collector {
        self.interactive = true;
        self
    }

    /// Shows progress at most once per `every`, not per the usual tick.
    #[cfg(test)]
    pub fn progress_every(mut self, every: Duration) -> Collector {
        self.progress_every = Some(every);
        self
    }

    pub fn policy(&self) -> Arc<GcPolicy> {
        self.policy.load_full()
    }

    /// Installs a new policy (configuration reload); the schedule restarts its wait.
    pub fn update(&self, policy: GcPolicy) {
        self.policy.store(Arc::new(policy));
        self.policy_changed.notify_waiters();
    }

    pub fn socket_path(&self) -> PathBuf {
        lock::socket_path(&self.state_dir)
    }

    /// One collection now; refused with [`GcError::Busy`] while another runs (here or in
    /// another process).
    pub async fn run_once(&self, options: RunOptions) -> Result<GcReport, GcError> {
        self.run(options, self.progress("gc", None), None).await
    }

    /// [`Collector::run_once`] for a command line on the socket: it gets the progress too.
    pub async fn run_once_reporting_to(
        &self,
        options: RunOptions,
        client: Interim,
    ) -> Result<GcReport, GcError> {
        self.run(options, self.progress("gc", Some(client)), None)
            .await
    }

    /// One run; `scheduled` (the interval) when the schedule asks.
    async fn run(
        &self,
        options: RunOptions,
        progress: Progress,
        scheduled: Option<Duration>,
    ) -> Result<GcReport, GcError> {
        let _running = self
            .running
            .try_lock()
            .map_err(|_| GcError::Busy("in this server".to_owned()))?;
        let _lock = lock::CollectionLock::try_acquire(&self.state_dir)?;
        let Some(leases) = &self.leases else {
            return self.collect(options, progress).await;
        };
        let lease = match leases.try_acquire(GC_LEASE).await? {
            Acquired::Held(lease) => lease,
            Acquired::Busy(holder) => {
                return Err(GcError::Busy(format!("on node {}", holder.node)));
            }
        };
        if let (Some(interval), Some(last)) = (scheduled, lease.last_finished()) {
            let since = SystemTime::now().duration_since(last).unwrap_or_default();
            // A minute's slack: schedules a few seconds apart must not both run.
            if since + Duration::from_secs(60) < interval {
                let _ = lease.release(false).await;
                return Err(GcError::NotDue(format!(
                    "a node finished one {} ago",
                    humantime::format_duration(Duration::from_secs(since.as_secs()))
                )));
            }
        }
        let observer = self.observer();
        if let Some(observer) = &observer {
            observer.on_lease(true);
        }
        let finished = !options.dry_run;
        let result = lease
            .keep_while(self.collect(options, progress), |r| finished && r.is_ok())
            .await
            .unwrap_or(Err(GcError::LeaseLost));
        if let Some(observer) = &observer {
            observer.on_lease(false);
        }
        result
    }

    async fn collect(
        &self,
        options: RunOptions,
        mut progress: Progress,
    ) -> Result<GcReport, GcError> {
        let policy = self.policy();
        tracing::info!(
            dry_run = options.dry_run,
            grace = ?policy.grace,
            delete_untagged = policy.delete_untagged || options.delete_untagged,
            "garbage collection starts"
        );
        let collected = collect::collect(
            &self.store,
            self.disposal.as_ref(),
            &policy,
            options,
            &mut progress,
        )
        .await;
        if !options.dry_run {
            // Also after a failure: what was retired before it is garbage all the same.
            self.disposal.reclaim_in_background();
        }
        let (mut report, usage) = collected?;
        report.settings = policy.settings_line();
        progress.finish();
        tracing::info!(
            dry_run = report.dry_run,
            blobs_removed = report.blobs_removed,
            bytes_removed = report.bytes_removed,
            manifests_removed = report.manifests_removed,
            tags_removed = report.tags_removed.len(),
            blobs_spared = report.blobs_spared,
            seconds = report.duration.as_secs_f64(),
            "garbage collection done"
        );
        if !report.dry_run {
            *self.last.lock().expect("last-run lock poisoned") =
                (Some(report.clone()), Some(usage.clone()));
        }
        if let Some(observer) = self.observer() {
            observer.on_report(&report);
            if !report.dry_run {
                observer.on_usage(&usage);
            }
        }
        Ok(report)
    }

    /// Returns once the space of what collections removed is given back: the storage driver
    /// does that in the background, and a process about to exit waits for it.
    pub async fn reclaim(&self) -> Result<(), GcError> {
        Ok(self.disposal.reclaim().await?)
    }

    /// Storage use per repository now (reads only; runs beside a collection).
    pub async fn usage(&self) -> Result<Usage, GcError> {
        self.measure(self.progress("du", None)).await
    }

    /// [`Collector::usage`] for a command line on the socket: it gets the progress too.
    pub async fn usage_reporting_to(&self, client: Interim) -> Result<Usage, GcError> {
        self.measure(self.progress("du", Some(client))).await
    }

    async fn measure(&self, mut progress: Progress) -> Result<Usage, GcError> {
        let usage = collect::measure(&self.store, &self.policy().caches, &mut progress).await?;
        progress.finish();
        self.last.lock().expect("last-run lock poisoned").1 = Some(usage.clone());
        if let Some(observer) = self.observer() {
            observer.on_usage(&usage);
        }
        Ok(usage)
    }

    /// The schedule: a run every `interval` (re-read after each run and on `update`); no
    /// interval, no runs. Never returns.
    pub async fn run_schedule(self: Arc<Self>) {
        loop {
            let changed = self.policy_changed.notified();
            let Some(interval) = self.policy().interval else {
                changed.await;
                continue;
            };
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = changed => continue,
            }
            let progress = self.progress("gc", None);
            match self
                .run(RunOptions::default(), progress, Some(interval))
                .await
            {
                Ok(_) => {}
                Err(GcError::Busy(who)) => {
                    tracing::info!(%who, "scheduled garbage collection skipped: another runs")
                }
                Err(GcError::NotDue(why)) => {
                    tracing::info!(%why, "scheduled garbage collection skipped: not due")
                }
                Err(e) => tracing::error!(error = %e, "garbage collection failed"),
            }
        }
    }

    fn observer(&self) -> Option<Arc<dyn GcObserver>> {
        self.observer
            .read()
            .expect("observer lock poisoned")
            .clone()
    }

    /// Progress for this process's terminal or log, and for `client` on the socket if any.
    fn progress(&self, what: &'static str, client: Option<Interim>) -> Progress {
        let mut progress = if self.interactive {
            Progress::new(what)
        } else {
            Progress::log(what)
        };
        if let Some(client) = client {
            progress = progress.sending_to(client);
        }
        #[cfg(test)]
        if let Some(every) = self.progress_every {
            return progress.every(every);
        }
        progress
    }
}

/// `start - grace`, or the epoch when the grace reaches before it.
fn cutoff(start: SystemTime, grace: Duration) -> SystemTime {
    start.checked_sub(grace).unwrap_or(SystemTime::UNIX_EPOCH)
}
