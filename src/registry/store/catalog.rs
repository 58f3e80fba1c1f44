//! The catalog: every repository name, in lexical order.
//!
//! Walking `repositories/` costs one directory listing per level of every name, far too much
//! per page for tens of thousands of repositories. The walk runs once, on the first catalog
//! request, and the sorted set it builds is kept up to date as repositories appear. This
//! assumes one regapp process owns the store (as registry:2 assumes too).

use std::collections::BTreeSet;
use std::ops::Bound;

use tokio::sync::RwLock;

use super::{paths, Store, StoreResult};
use crate::registry::types::RepoName;

#[derive(Default)]
pub(super) struct Catalog {
    names: RwLock<Option<BTreeSet<String>>>,
}

impl Catalog {
    /// Records that a repository exists (a no-op until the catalog has been walked once).
    pub async fn note(&self, repo: &RepoName) {
        if let Some(names) = self.names.write().await.as_mut() {
            if !names.contains(repo.as_str()) {
                names.insert(repo.to_string());
            }
        }
    }
}

impl Store {
    /// Repository names after `last`, at most `limit`.
    pub async fn catalog(
        &self,
        last: Option<&str>,
        limit: Option<usize>,
    ) -> StoreResult<Vec<String>> {
        if self.catalog.names.read().await.is_none() {
            let walked = self.walk_repositories().await?;
            let mut names = self.catalog.names.write().await;
            names.get_or_insert(walked);
        }
        let names = self.catalog.names.read().await;
        let names = names.as_ref().expect("the catalog was walked above");
        let start = match last {
            Some(last) => Bound::Excluded(last.to_owned()),
            None => Bound::Unbounded,
        };
        Ok(names
            .range((start, Bound::Unbounded))
            .take(limit.unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn walk_repositories(&self) -> StoreResult<BTreeSet<String>> {
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
                if paths::REPOSITORY_MARKERS.contains(&child.as_str()) {
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
