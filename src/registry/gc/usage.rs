//! Storage use per repository, for `regapp du` and the metrics: every blob a repository's
//! manifests reference, counted once per repository (`referenced_bytes`); the part no other
//! repository references (`exclusive_bytes`); and the store's total, each blob counted once.
//! Sizes are those the manifests declare (the registry checks them at push), so measuring
//! needs no `stat` per blob.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use crate::registry::types::Digest;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoUsage {
    pub referenced_bytes: u64,
    pub exclusive_bytes: u64,
    pub blobs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub repositories: BTreeMap<String, RepoUsage>,
    /// Every referenced blob counted once.
    pub total_bytes: u64,
    pub total_blobs: u64,
    /// Per mirror (`[[mirror]]` name): what its repositories hold, each blob counted once.
    pub caches: BTreeMap<String, RepoUsage>,
}

/// Collects the blobs of each repository, then sums.
#[derive(Default)]
pub struct UsageBuilder {
    per_repo: BTreeMap<String, HashMap<Digest, u64>>,
}

impl UsageBuilder {
    pub fn add(&mut self, repo: &str, blobs: impl IntoIterator<Item = (Digest, u64)>) {
        self.per_repo
            .entry(repo.to_owned())
            .or_default()
            .extend(blobs);
    }

    /// Sums per repository, per mirror cache (`caches`) and in total.
    pub fn finish(self, caches: &[super::CacheLimit]) -> Usage {
        let mut holders: HashMap<&Digest, (u64, u32)> = HashMap::new();
        for blobs in self.per_repo.values() {
            for (digest, size) in blobs {
                holders.entry(digest).or_insert((*size, 0)).1 += 1;
            }
        }
        let repositories = self
            .per_repo
            .iter()
            .map(|(name, blobs)| {
                let mut usage = RepoUsage::default();
                for (digest, size) in blobs {
                    usage.referenced_bytes += size;
                    usage.blobs += 1;
                    if holders.get(digest).is_some_and(|(_, n)| *n == 1) {
                        usage.exclusive_bytes += size;
                    }
                }
                (name.clone(), usage)
            })
            .collect();
        let caches = caches
            .iter()
            .map(|cache| {
                // Each blob the cache's repositories reference, and how many of them do.
                let mut held: HashMap<&Digest, (u64, u32)> = HashMap::new();
                for (name, repo_blobs) in &self.per_repo {
                    if cache.holds(name) {
                        for (digest, size) in repo_blobs {
                            held.entry(digest).or_insert((*size, 0)).1 += 1;
                        }
                    }
                }
                let mut usage = RepoUsage::default();
                for (digest, (size, in_cache)) in &held {
                    usage.referenced_bytes += size;
                    usage.blobs += 1;
                    // Exclusive: no repository outside the cache references it.
                    if holders.get(digest).is_some_and(|(_, n)| n == in_cache) {
                        usage.exclusive_bytes += size;
                    }
                }
                (cache.name.clone(), usage)
            })
            .collect();
        Usage {
            repositories,
            total_bytes: holders.values().map(|(size, _)| size).sum(),
            total_blobs: holders.len() as u64,
            caches,
        }
    }
}

impl Usage {
    /// What `regapp du` prints: one line per repository, then the total.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>14} {:>14} {:>7}  repository",
            "referenced", "exclusive", "blobs"
        );
        for (name, usage) in &self.repositories {
            let _ = writeln!(
                out,
                "{:>14} {:>14} {:>7}  {name}",
                usage.referenced_bytes, usage.exclusive_bytes, usage.blobs
            );
        }
        for (name, usage) in &self.caches {
            let _ = writeln!(
                out,
                "{:>14} {:>14} {:>7}  mirror {name} (its repositories, each blob once)",
                usage.referenced_bytes, usage.exclusive_bytes, usage.blobs
            );
        }
        let _ = writeln!(
            out,
            "total: {} bytes in {} blobs (each counted once)",
            self.total_bytes, self.total_blobs
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_blob_counts_once_in_the_total_and_in_each_repository() {
        let shared = Digest::sha256_of(b"shared");
        let own = Digest::sha256_of(b"own");
        let mut builder = UsageBuilder::default();
        builder.add("a", [(shared.clone(), 100), (own.clone(), 10)]);
        builder.add("b", [(shared.clone(), 100), (shared, 100)]);
        let usage = builder.finish(&[]);
        assert_eq!(usage.total_bytes, 110);
        assert_eq!(usage.total_blobs, 2);
        let a = &usage.repositories["a"];
        assert_eq!(
            (a.referenced_bytes, a.exclusive_bytes, a.blobs),
            (110, 10, 2)
        );
        let b = &usage.repositories["b"];
        assert_eq!(
            (b.referenced_bytes, b.exclusive_bytes, b.blobs),
            (100, 0, 1)
        );
    }
}
