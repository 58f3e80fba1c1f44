//! The mirrors' cache limits (`[[mirror]] max_bytes`, `max_unused`): which cached manifests a
//! collection drops, least recently pulled first. Dropping a manifest removes its tags and
//! makes it deletable like an untagged one; the mark and sweep that follow remove the blobs
//! nothing kept references, with every safeguard of any collection (grace, pins), so a
//! manifest cached or pulled within the grace period is never dropped and a blob another
//! kept manifest names stays.
//!
//! When a manifest was last pulled is the time of its pull stamp (`paths::mirror_pulled`,
//! rewritten by the mirror at most once a minute per manifest); without one, when it was
//! cached. The choice is a pure function (`choose`), tested without a store.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use super::mark::RepoState;
use super::sweep::Sweeper;
use super::GcError;
use crate::registry::store::paths;
use crate::registry::types::Digest;

/// One mirror's limits, over the repositories under its prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheLimit {
    /// The mirror's name, for reports.
    pub name: String,
    /// Its repositories are `<prefix>/…`.
    pub prefix: String,
    pub max_bytes: Option<u64>,
    pub max_unused: Option<Duration>,
}

impl CacheLimit {
    pub fn holds(&self, repository: &str) -> bool {
        repository
            .strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// A cached manifest as the choice sees it.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    /// Index of its repository among those loaded.
    pub repo: usize,
    pub digest: Digest,
    pub last_pulled: SystemTime,
    /// Its own bytes, config and layers with their sizes.
    pub blobs: Vec<(Digest, u64)>,
}

/// The manifests to drop: every one unused for longer than `max_unused`; then, least
/// recently pulled first, until what the rest reference (each blob once) fits `max_bytes`.
/// One pulled after `spare_after` (the collection's cutoff) is never dropped: a client may be
/// reading it, so the cache stays over its limit until the next run.
pub(super) fn choose(
    candidates: Vec<Candidate>,
    limit: &CacheLimit,
    now: SystemTime,
    spare_after: SystemTime,
) -> Vec<Candidate> {
    let (mut dropped, mut kept): (Vec<Candidate>, Vec<Candidate>) =
        candidates.into_iter().partition(|c| {
            c.last_pulled <= spare_after
                && limit.max_unused.is_some_and(|age| {
                    now.duration_since(c.last_pulled).unwrap_or(Duration::ZERO) > age
                })
        });
    let Some(max_bytes) = limit.max_bytes else {
        return dropped;
    };
    // Oldest first; ties by digest so the choice is stable.
    kept.sort_by(|a, b| {
        a.last_pulled
            .cmp(&b.last_pulled)
            .then_with(|| a.digest.to_string().cmp(&b.digest.to_string()))
    });
    let mut holders: HashMap<Digest, (u64, u32)> = HashMap::new();
    for candidate in &kept {
        for (digest, size) in &candidate.blobs {
            holders.entry(digest.clone()).or_insert((*size, 0)).1 += 1;
        }
    }
    let mut total: u64 = holders.values().map(|(size, _)| size).sum();
    let mut cut = 0;
    while total > max_bytes && cut < kept.len() && kept[cut].last_pulled <= spare_after {
        let mut seen = HashSet::new();
        for (digest, _) in &kept[cut].blobs {
            if !seen.insert(digest) {
                continue;
            }
            if let Some(held) = holders.get_mut(digest) {
                held.1 -= 1;
                if held.1 == 0 {
                    total -= held.0;
                }
            }
        }
        cut += 1;
    }
    dropped.extend(kept.drain(..cut));
    dropped
}

/// Applies every limit to the loaded repositories: removes the chosen manifests' tags and
/// returns, per repository index, the manifests to delete like untagged ones.
pub(super) async fn evict(
    sweeper: &Sweeper<'_>,
    limits: &[CacheLimit],
    repos: &mut [RepoState],
    now: SystemTime,
) -> Result<(HashMap<usize, HashSet<Digest>>, u64), GcError> {
    let spare_after = sweeper.cutoff;
    let mut chosen: HashMap<usize, HashSet<Digest>> = HashMap::new();
    let mut evicted = 0;
    for limit in limits {
        if limit.max_bytes.is_none() && limit.max_unused.is_none() {
            continue;
        }
        let mut candidates = Vec::new();
        for (index, repo) in repos.iter().enumerate() {
            if !limit.holds(repo.name.as_str()) {
                continue;
            }
            let revisions: Vec<_> = repo
                .revisions
                .values()
                .filter(|rev| rev.refs.is_some())
                .collect();
            let stamps: Vec<String> = revisions
                .iter()
                .map(|rev| paths::mirror_pulled(&repo.name, &rev.digest))
                .collect();
            let infos = sweeper.driver.stat_each(&stamps).await;
            for (rev, info) in revisions.into_iter().zip(infos) {
                let last_pulled = match info {
                    Ok(info) => info.modified.max(rev.linked),
                    Err(e) if e.is_not_found() => rev.linked,
                    Err(e) => return Err(e.into()),
                };
                candidates.push(Candidate {
                    repo: index,
                    digest: rev.digest.clone(),
                    last_pulled,
                    blobs: rev
                        .refs
                        .as_ref()
                        .map(|r| r.blobs.clone())
                        .unwrap_or_default(),
                });
            }
        }
        for dropped in choose(candidates, limit, now, spare_after) {
            let repo = &mut repos[dropped.repo];
            let tags: Vec<String> = repo
                .tags
                .iter()
                .filter(|(_, (target, _))| *target == dropped.digest)
                .map(|(tag, _)| tag.clone())
                .collect();
            for tag in tags {
                if sweeper.tag(&repo.name, &tag, &dropped.digest).await? {
                    repo.tags.remove(&tag);
                }
            }
            evicted += 1;
            chosen
                .entry(dropped.repo)
                .or_default()
                .insert(dropped.digest);
        }
    }
    Ok((chosen, evicted))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn candidate(
        name: &str,
        minutes_ago: u32,
        blobs: &[(&str, u64)],
        now: SystemTime,
    ) -> Candidate {
        Candidate {
            repo: 0,
            digest: Digest::sha256_of(name.as_bytes()),
            last_pulled: now - MINUTE * minutes_ago,
            blobs: blobs
                .iter()
                .map(|(b, size)| (Digest::sha256_of(b.as_bytes()), *size))
                .collect(),
        }
    }

    fn limit(max_bytes: Option<u64>, max_unused: Option<Duration>) -> CacheLimit {
        CacheLimit {
            name: "hub".into(),
            prefix: "hub".into(),
            max_bytes,
            max_unused,
        }
    }

    fn names(dropped: &[Candidate], all: &[(&str, Candidate)]) -> Vec<String> {
        let mut names: Vec<String> = dropped
            .iter()
            .map(|d| {
                all.iter()
                    .find(|(_, c)| c.digest == d.digest)
                    .map(|(n, _)| n.to_string())
                    .unwrap()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_least_recently_pulled_go_until_the_rest_fits() {
        let now = SystemTime::now();
        let all = [
            (
                "old",
                candidate("old", 30, &[("a", 100), ("shared", 50)], now),
            ),
            (
                "mid",
                candidate("mid", 20, &[("b", 100), ("shared", 50)], now),
            ),
            ("new", candidate("new", 10, &[("c", 100)], now)),
        ];
        let candidates: Vec<Candidate> = all.iter().map(|(_, c)| c.clone()).collect();
        // 350 bytes held; 200 allowed: dropping "old" frees only "a" (shared stays with
        // "mid"): 250; dropping "mid" too: 100.
        let dropped = choose(candidates.clone(), &limit(Some(200), None), now, now);
        assert_eq!(names(&dropped, &all), ["mid", "old"]);
        let dropped = choose(candidates.clone(), &limit(Some(350), None), now, now);
        assert!(dropped.is_empty());
        let dropped = choose(
            candidates.clone(),
            &limit(None, Some(MINUTE * 15)),
            now,
            now,
        );
        assert_eq!(names(&dropped, &all), ["mid", "old"]);
        // Pulled within the last 25 minutes (the grace): only "old" may go, whatever the limit.
        let dropped = choose(
            candidates.clone(),
            &limit(Some(100), None),
            now,
            now - MINUTE * 25,
        );
        assert_eq!(names(&dropped, &all), ["old"]);
        let dropped = choose(
            candidates,
            &limit(None, Some(MINUTE)),
            now,
            now - MINUTE * 25,
        );
        assert_eq!(names(&dropped, &all), ["old"]);
    }

    #[test]
    fn a_prefix_holds_only_names_under_it() {
        let l = limit(None, None);
        assert!(l.holds("hub/library/alpine"));
        assert!(!l.holds("hubble/x"));
        assert!(!l.holds("hub"));
    }
}
