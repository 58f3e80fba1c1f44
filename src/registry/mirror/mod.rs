//! The pull-through cache: repositories under a `[[mirror]]`'s prefix are read-only copies of
//! an upstream's (Docker Hub, ghcr.io, …), filled as clients pull and kept in the same store
//! as local repositories, under their full local name (`dockerhub/library/alpine`).
//!
//! - **Which requests** (`resolve`): a name under a mirror's prefix; containerd's `?ns=` naming a
//!   mirror's namespace; a name the store does not hold, for the mirror marked `default`
//!   (Docker's `registry-mirrors` sends Docker Hub names without a prefix). Local repositories
//!   win over the default.
//! - **Tags** are trusted for `tag_ttl`, then confirmed by a HEAD upstream; when the upstream
//!   cannot be asked, the cached manifest is served stale. Digests never change and are never
//!   fetched twice.
//! - **Blobs** stream to the client while they are fetched (`flights.rs`): one upstream
//!   fetch per digest however many clients ask, spooled to an unnamed file that every client
//!   reads, verified before anyone gets the last bytes and before the store gets it.
//!
//! Architecture Invariant: the mirror sits between the API and the store; the store does not
//! know it exists, and the upstream client (`crate::upstream`) knows neither.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::{Cached, MirrorMetrics};
use crate::registry::store::{Store, StoreError};
use crate::registry::types::{Digest, RepoName};
use crate::upstream::{Upstream, UpstreamError, UpstreamSettings};

mod blobs;
mod flights;
mod manifests;

pub use blobs::MirroredBlob;

/// One `[[mirror]]` (checked by `config`).
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorSettings {
    /// The upstream: its name (logs, metrics, `regapp du`), URL and credentials.
    pub upstream: UpstreamSettings,
    /// The first component of the local names it fills (`dockerhub`).
    pub prefix: String,
    /// What containerd sends as `?ns=` for it (`docker.io`).
    pub namespace: Option<String>,
    /// Names without a prefix that the store does not hold come here.
    pub default: bool,
    pub tag_ttl: Duration,
    /// The cache's size: least recently pulled content goes first beyond it.
    pub max_bytes: Option<u64>,
    /// Content nobody pulled for this long goes.
    pub max_unused: Option<Duration>,
}

/// The default `tag_ttl`.
pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(10 * 60);
/// The default `max_concurrent`.
pub const DEFAULT_MAX_CONCURRENT: usize = 8;

/// What can go wrong answering for a mirrored repository.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("{repo} is a read-only mirror of {url} ([[mirror]] {name:?}); push to a name outside {prefix:?}")]
    ReadOnly {
        repo: String,
        url: String,
        name: String,
        prefix: String,
    },
    #[error("{what} is not cached, and the upstream {name:?} cannot be asked: {source}")]
    Upstream {
        what: String,
        name: String,
        #[source]
        source: UpstreamError,
    },
    #[error("[[mirror]] {name:?}: {source}")]
    Setup {
        name: String,
        #[source]
        source: UpstreamError,
    },
    #[error("the mirror's spool file: {0}")]
    Spool(#[source] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every configured mirror. Cheap to share; one per engine.
#[derive(Default)]
pub struct Mirrors {
    mirrors: Vec<Arc<Mirror>>,
}

/// One mirror: its settings, its upstream client and what it remembers between requests.
pub struct Mirror {
    settings: MirrorSettings,
    upstream: Upstream,
    /// When each cached tag was last confirmed upstream (in memory: after a restart every tag
    /// is asked once more).
    tags_checked: Mutex<HashMap<(String, String), Instant>>,
    flights: flights::Flights,
    /// When this node last wrote each manifest's pull stamp.
    stamped: Mutex<HashMap<(String, Digest), Instant>>,
    /// Whether the last upstream request failed, so that failures are logged once, not per
    /// request.
    failing: AtomicBool,
    metrics: Option<MirrorMetrics>,
}

/// What a request would do, as far as choosing a mirror goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// A manifest, tag list or referrers read.
    Read,
    /// `HEAD` of a blob: how a push asks whether to upload it.
    ProbeBlob,
    /// `GET` of a blob.
    FetchBlob,
    /// Anything else: uploads, manifest PUTs, deletes.
    Write,
}

/// A request's repository resolved to a mirror: the local name it is stored under and the
/// upstream's name for it.
#[derive(Clone)]
pub struct Target {
    pub mirror: Arc<Mirror>,
    pub local: RepoName,
    pub remote: String,
    /// The name the client used (what a tag list answers with).
    pub asked: RepoName,
}

/// A manifest's pull stamp is rewritten at most this often per node: the cache limits judge
/// age in minutes, not seconds.
const STAMP_EVERY: Duration = Duration::from_secs(60);

/// Most tag confirmations remembered; beyond it the oldest are forgotten (and asked again).
const MAX_TAGS_CHECKED: usize = 100_000;

impl Mirrors {
    /// Builds each mirror's upstream client; `spool` is the directory of the fetches' unnamed
    /// files (made here).
    pub fn new(
        settings: Vec<MirrorSettings>,
        spool: PathBuf,
        metrics: Option<MirrorMetrics>,
    ) -> Result<Mirrors, MirrorError> {
        if !settings.is_empty() {
            std::fs::create_dir_all(&spool).map_err(MirrorError::Spool)?;
        }
        let mut mirrors = Vec::new();
        for settings in settings {
            let upstream =
                Upstream::new(&settings.upstream).map_err(|source| MirrorError::Upstream {
                    what: "nothing".into(),
                    name: settings.upstream.name.clone(),
                    source,
                })?;
            mirrors.push(Arc::new(Mirror {
                upstream,
                tags_checked: Mutex::default(),
                flights: flights::Flights::new(spool.clone()),
                stamped: Mutex::default(),
                failing: AtomicBool::new(false),
                metrics: metrics.clone(),
                settings,
            }));
        }
        Ok(Mirrors { mirrors })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Mirror>> {
        self.mirrors.iter()
    }

    /// The mirror a request for `name` goes to, if any. `ns` is containerd's `?ns=`. By
    /// prefix or namespace every request is resolved (writes, to be refused). The default
    /// mirror takes only what Docker's `registry-mirrors` sends for a name the store does not
    /// hold: manifests and tag lists, then GETs of blobs once a manifest of that name is
    /// cached. A push's probes (blob HEADs) and writes stay local, so a first push to an
    /// unprefixed name neither asks the upstream nor takes its blobs for the push's.
    pub async fn resolve(
        &self,
        name: &RepoName,
        ns: Option<&str>,
        intent: Intent,
        store: &Store,
    ) -> Result<Option<Target>, StoreError> {
        if self.mirrors.is_empty() {
            return Ok(None);
        }
        let under = |mirror: &Arc<Mirror>, remote: &str| -> Option<Target> {
            let local = format!("{}/{remote}", mirror.settings.prefix)
                .parse()
                .ok()?;
            Some(Target {
                mirror: mirror.clone(),
                local,
                remote: remote.to_owned(),
                asked: name.clone(),
            })
        };
        if let Some(ns) = ns {
            let by_namespace = self
                .mirrors
                .iter()
                .find(|m| m.settings.namespace.as_deref() == Some(ns));
            if let Some(mirror) = by_namespace {
                return Ok(under(mirror, name.as_str()));
            }
        }
        if let Some((first, rest)) = name.as_str().split_once('/') {
            if let Some(mirror) = self.mirrors.iter().find(|m| m.settings.prefix == first) {
                return Ok(Some(Target {
                    mirror: mirror.clone(),
                    local: name.clone(),
                    remote: rest.to_owned(),
                    asked: name.clone(),
                }));
            }
        }
        let Some(default) = self.mirrors.iter().find(|m| m.settings.default) else {
            return Ok(None);
        };
        if matches!(intent, Intent::Write | Intent::ProbeBlob)
            || store.repository_exists(name).await?
        {
            return Ok(None);
        }
        let Some(target) = under(default, name.as_str()) else {
            return Ok(None);
        };
        if intent == Intent::FetchBlob && !store.repository_exists(&target.local).await? {
            return Ok(None);
        }
        Ok(Some(target))
    }
}

impl Mirror {
    pub fn settings(&self) -> &MirrorSettings {
        &self.settings
    }

    pub fn name(&self) -> &str {
        &self.settings.upstream.name
    }

    /// The refusal of a push, delete or upload into `target`.
    pub fn read_only(&self, repo: &RepoName) -> MirrorError {
        MirrorError::ReadOnly {
            repo: repo.to_string(),
            url: self.upstream.url().to_owned(),
            name: self.name().to_owned(),
            prefix: format!("{}/", self.settings.prefix),
        }
    }

    fn hit(&self, what: Cached) {
        if let Some(metrics) = &self.metrics {
            metrics.hit(self.name(), what);
        }
    }

    fn miss(&self, what: Cached) {
        if let Some(metrics) = &self.metrics {
            metrics.miss(self.name(), what);
        }
    }

    fn fetched(&self, bytes: u64) {
        if let Some(metrics) = &self.metrics {
            metrics.fetched(self.name(), bytes);
        }
    }

    fn stale(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.stale(self.name());
        }
    }

    /// Records how an upstream request went: logs the first failure after a success (and the
    /// recovery), counts every failure by kind. A 404 is an answer, not a failure, and so is a
    /// refusal: Docker Hub answers 401 for a repository that does not exist.
    fn upstream_result<T>(&self, result: &Result<T, UpstreamError>) {
        match result {
            Err(UpstreamError::Denied(_)) => {
                if let Some(metrics) = &self.metrics {
                    metrics.upstream_error(self.name(), "denied");
                }
            }
            Ok(_) | Err(UpstreamError::NotFound) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(mirror = self.name(), "the upstream answers again");
                }
            }
            Err(e) => {
                if let Some(metrics) = &self.metrics {
                    metrics.upstream_error(self.name(), e.kind());
                }
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        mirror = self.name(),
                        url = self.upstream.url(),
                        error = %e,
                        "the upstream fails; serving what is cached until it answers again"
                    );
                }
            }
        }
    }

    /// Stamps `digest` of `repo` as pulled now, unless this node did within [`STAMP_EVERY`].
    /// A failed stamp is logged, not answered: the pull itself succeeded.
    async fn pulled(&self, store: &Store, repo: &RepoName, digest: &Digest) {
        {
            let mut stamped = self.stamped.lock().expect("not poisoned");
            let key = (repo.to_string(), digest.clone());
            if stamped
                .get(&key)
                .is_some_and(|at| at.elapsed() < STAMP_EVERY)
            {
                return;
            }
            if stamped.len() >= MAX_TAGS_CHECKED {
                stamped.retain(|_, at| at.elapsed() < STAMP_EVERY);
            }
            stamped.insert(key, Instant::now());
        }
        if let Err(e) = store.manifest_pulled(repo, digest).await {
            tracing::warn!(mirror = self.name(), %repo, %digest, error = %e,
                "the manifest's pull time could not be stored");
        }
    }

    fn tag_fresh(&self, repo: &RepoName, tag: &str) -> bool {
        let checked = self.tags_checked.lock().expect("not poisoned");
        checked
            .get(&(repo.to_string(), tag.to_owned()))
            .is_some_and(|at| at.elapsed() < self.settings.tag_ttl)
    }

    fn tag_confirmed(&self, repo: &RepoName, tag: &str) {
        let mut checked = self.tags_checked.lock().expect("not poisoned");
        if checked.len() >= MAX_TAGS_CHECKED {
            let ttl = self.settings.tag_ttl;
            checked.retain(|_, at| at.elapsed() < ttl);
            if checked.len() >= MAX_TAGS_CHECKED {
                checked.clear();
            }
        }
        checked.insert((repo.to_string(), tag.to_owned()), Instant::now());
    }
}

/// Repositories under `<prefix>/` that were pushed, not cached by a mirror (no pull stamps):
/// a mirror with that prefix hides them (pulls go upstream, pushes are refused). For
/// `check-config`'s warning.
pub async fn local_repositories_under(
    store: &Store,
    prefix: &str,
) -> Result<Vec<String>, StoreError> {
    let mut local = Vec::new();
    for name in store.walk_repository_dirs().await? {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let Ok(repo) = name.parse::<RepoName>() else {
            continue;
        };
        if !rest.starts_with('/') {
            continue;
        }
        let stamps = crate::registry::store::paths::mirror_pulled_dir(&repo);
        match store.driver().list(&stamps).await {
            Ok(found) if !found.is_empty() => {}
            Ok(_) => local.push(name),
            Err(e) if e.is_not_found() => local.push(name),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(local)
}
