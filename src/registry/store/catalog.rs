//! The catalog: every repository name, in lexical order.
//!
//! Walking `repositories/` costs one directory listing per level of every name, far too much
//! per page for tens of thousands of repositories. The walk runs once, on the first catalog
//! request, and the sorted set it builds is kept up to date as repositories appear.
//!
//! On a store other nodes write too (a bucket), a node that sees a repository first leaves a
//! marker for it, `regapp-cluster/catalog/<name, '/' as '+'>`, before its push is answered;
//! a catalog request reads the markers again when they are older than [`SHARED_FRESHNESS`],
//! so a repository pushed through any node is listed by every node within that bound. (A
//! listing of 10,000 markers is ten S3 requests.) Repositories that existed before any marker
//! are found by each node's walk at start.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::RwLock;

use super::{paths, Store, StoreResult};
use crate::registry::types::RepoName;
use crate::storage::StorageDriver;

/// How old a shared store's markers may be when a catalog is answered.
pub const SHARED_FRESHNESS: Duration = Duration::from_secs(2);

/// Where the markers are.
const MARKERS: &str = "regapp-cluster/catalog";

#[derive(Default)]
pub(super) struct Catalog {
    names: RwLock<Option<BTreeSet<String>>>,
    /// When a shared store's markers were last read.
    markers_read: std::sync::Mutex<Option<Instant>>,
    /// Repositories that appeared while the walk was running (it may have listed their parent
    /// directory before they existed); merged in when the walk's result is installed.
    seen_before_walk: std::sync::Mutex<BTreeSet<String>>,
}

impl Catalog {
    /// Records that a repository exists; on a shared store, leaves its marker for the other
    /// nodes the first time this node sees it.
    pub async fn note(&self, repo: &RepoName, driver: &dyn StorageDriver) -> StoreResult<()> {
        // Nearly always already known: a shared lock suffices then.
        if let Some(names) = self.names.read().await.as_ref() {
            if names.contains(repo.as_str()) {
                return Ok(());
            }
        }
        if driver.shared() {
            driver.put(&marker(repo.as_str()), Bytes::new()).await?;
        }
        let mut names = self.names.write().await;
        match names.as_mut() {
            Some(names) => {
                if !names.contains(repo.as_str()) {
                    names.insert(repo.to_string());
                }
            }
            None => {
                self.seen_before_walk
                    .lock()
                    .expect("catalog lock poisoned")
                    .insert(repo.to_string());
            }
        }
        Ok(())
    }

    /// On a shared store, adds the names other nodes marked, if the last read is stale.
    async fn read_markers(&self, driver: &dyn StorageDriver) -> StoreResult<()> {
        {
            let mut read = self.markers_read.lock().expect("catalog lock poisoned");
            if !driver.shared() || read.is_some_and(|at| at.elapsed() < SHARED_FRESHNESS) {
                return Ok(());
            }
            *read = Some(Instant::now());
        }
        let marked = match driver.list(MARKERS).await {
            Ok(marked) => marked,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => {
                *self.markers_read.lock().expect("catalog lock poisoned") = None;
                return Err(e.into());
            }
        };
        let mut names = self.names.write().await;
        if let Some(names) = names.as_mut() {
            names.extend(
                marked
                    .into_iter()
                    .map(|m| m.replace('+', "/"))
                    .filter(|name| name.parse::<RepoName>().is_ok()),
            );
        }
        Ok(())
    }

    async fn install_walk(&self, mut walked: BTreeSet<String>) {
        let mut names = self.names.write().await;
        if names.is_none() {
            walked.append(&mut self.seen_before_walk.lock().expect("catalog lock poisoned"));
            *names = Some(walked);
        }
    }
}

/// The marker of a repository: one object directly under [`MARKERS`] ('+' is in no name).
fn marker(repo: &str) -> String {
    format!("{MARKERS}/{}", repo.replace('/', "+"))
}

impl Store {
    /// Walks the repositories now, in the background of a start, so that the first catalog
    /// request does not pay for the walk (0.85 s for 10,000 repositories here).
    pub async fn warm_catalog(self: std::sync::Arc<Self>) {
        match self.catalog(None, Some(0)).await {
            Ok(_) => tracing::debug!("catalog index built"),
            Err(e) => {
                tracing::warn!(error = %e, "catalog index not built; the first request will retry")
            }
        }
    }

    /// Repository names after `last`, at most `limit`.
    pub async fn catalog(
        &self,
        last: Option<&str>,
        limit: Option<usize>,
    ) -> StoreResult<Vec<String>> {
        self.catalog_where(last, limit, |_| true).await
    }

    /// Like [`Store::catalog`], counting only names `keep` accepts.
    pub async fn catalog_where(
        &self,
        last: Option<&str>,
        limit: Option<usize>,
        keep: impl Fn(&str) -> bool,
    ) -> StoreResult<Vec<String>> {
        self.catalog_ready().await?;
        let names = self.catalog.names.read().await;
        let names = names.as_ref().expect("the catalog was walked above");
        let start = match last {
            Some(last) => Bound::Excluded(last.to_owned()),
            None => Bound::Unbounded,
        };
        Ok(names
            .range((start, Bound::Unbounded))
            .filter(|name| keep(name))
            .take(limit.unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    /// Walks the repositories once, then on a shared store reads the other nodes' markers
    /// when stale.
    async fn catalog_ready(&self) -> StoreResult<()> {
        if self.catalog.names.read().await.is_none() {
            let walked = self.walk_repositories().await?;
            self.catalog.install_walk(walked).await;
        }
        self.catalog.read_markers(self.driver.as_ref()).await
    }

    async fn walk_repositories(&self) -> StoreResult<BTreeSet<String>> {
        self.walk_repositories_marked_by(&paths::REPOSITORY_MARKERS)
            .await
    }

    /// Every repository directory on disk now, walked afresh, including those holding only
    /// upload sessions (garbage collection must see the store, not the catalog).
    pub async fn walk_repository_dirs(&self) -> StoreResult<BTreeSet<String>> {
        let mut markers = paths::REPOSITORY_MARKERS.to_vec();
        markers.push(paths::UPLOADS_MARKER);
        self.walk_repositories_marked_by(&markers).await
    }

    async fn walk_repositories_marked_by(&self, markers: &[&str]) -> StoreResult<BTreeSet<String>> {
        let root = paths::repositories();
        let mut found = BTreeSet::new();
        let mut pending = vec![String::new()];
        while let Some(prefix) = pending.pop() {
            let dir = if prefix.is_empty() {
                root.clone()
            } else {
                format!("{root}/{prefix}")
            };
            let children = match self.driver.list(&dir).await {
                Ok(children) => children,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            for child in children {
                if markers.contains(&child.as_str()) {
                    found.insert(prefix.clone());
                } else if !child.starts_with('_') {
                    let name = if prefix.is_empty() {
                        child
                    } else {
                        format!("{prefix}/{child}")
                    };
                    if name.parse::<RepoName>().is_ok() {
                        pending.push(name);
                    }
                }
            }
        }
        found.remove("");
        Ok(found)
    }
}

impl Store {
    /// Whether the catalog lists `name` (on a shared store, as of [`SHARED_FRESHNESS`] ago):
    /// the mirror asks it to tell a local repository from a name for its default upstream.
    pub async fn repository_exists(&self, name: &RepoName) -> StoreResult<bool> {
        self.catalog_ready().await?;
        let names = self.catalog.names.read().await;
        Ok(names
            .as_ref()
            .expect("the catalog was walked above")
            .contains(name.as_str()))
    }
}
