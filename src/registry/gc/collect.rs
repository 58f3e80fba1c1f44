//! One collection, in this order: load every repository (revisions, tags, layer links),
//! apply retention (remove tags), mark what the kept manifests reference, then sweep —
//! revisions, blobs, dangling layer links, stale upload sessions. Also the read-only
//! measurement behind `regapp du`.

use std::collections::{HashMap, HashSet};
use std::time::{Instant, SystemTime};

use futures_util::StreamExt;

use super::eviction::{evict, CacheLimit};
use super::mark::{self, RepoState, Roots};
use super::progress::Progress;
use super::retention::rule_for;
use super::sweep::Sweeper;
use super::usage::{Usage, UsageBuilder};
use super::{cutoff, Disposal, GcError, GcPolicy, GcReport, RunOptions};
use crate::registry::store::{ImmutableTags, Store};
use crate::registry::types::{Digest, RepoName};

/// Revision unlinks in flight at once (each a hop to a blocking thread).
const REVISION_CONCURRENCY: usize = 16;
/// Directories looked into for leftovers in one hop to a blocking thread.
const LEFTOVER_DIRS_PER_HOP: usize = 256;

pub(super) async fn collect(
    store: &Store,
    disposal: &dyn Disposal,
    policy: &GcPolicy,
    options: RunOptions,
    progress: &mut Progress,
) -> Result<(GcReport, Usage), GcError> {
    let start = SystemTime::now();
    let cutoff = cutoff(start, policy.grace);
    // From here on every pin released after the cutoff is remembered until the run ends.
    store.pins().collection_begins(cutoff, policy.grace);
    let result = run(store, disposal, policy, options, start, cutoff, progress).await;
    store.pins().collection_over(cutoff);
    result
}

/// A revision as the sweep knows it: (index into the loaded repositories, digest). Owned
/// pairs, because a stream over borrowed tuples trips the compiler's `Send` check of the
/// spawned socket task (higher-ranked lifetimes).
type RevisionKey = (usize, Digest);

async fn run(
    store: &Store,
    disposal: &dyn Disposal,
    policy: &GcPolicy,
    options: RunOptions,
    start: SystemTime,
    cutoff: SystemTime,
    progress: &mut Progress,
) -> Result<(GcReport, Usage), GcError> {
    let began = Instant::now();
    let step_done =
        |step: &str| tracing::debug!(seconds = began.elapsed().as_secs_f64(), "gc: {step}");
    let sweeper = Sweeper {
        driver: store.driver().as_ref(),
        disposal,
        pins: store.pins(),
        cutoff,
        pinned_since: cutoff
            .checked_sub(policy.clock_skew)
            .unwrap_or(SystemTime::UNIX_EPOCH),
        dry_run: options.dry_run,
    };
    let mut report = GcReport {
        dry_run: options.dry_run,
        ..GcReport::default()
    };
    let names = repository_names(store).await?;
    let mut repos = mark::load_all(sweeper.driver, names, progress).await?;
    report.repositories = repos.len() as u64;
    step_done("repositories loaded");

    let immutable = &store.options().immutable;
    let mut untagged_by_retention =
        retention(&sweeper, policy, immutable, &mut repos, start, &mut report).await?;
    let (evicted, count) = evict(&sweeper, &policy.caches, &mut repos, start).await?;
    report.manifests_evicted = count;
    for (index, digests) in evicted {
        let repo = &repos[index];
        untagged_by_retention
            .entry(repo.name.clone())
            .or_default()
            .extend(repo.dependents(digests));
    }
    let delete_untagged = policy.delete_untagged || options.delete_untagged;
    let kept = kept_revisions(&repos, delete_untagged, &untagged_by_retention, cutoff);
    let (spared, unlinked) =
        unlink_revisions(&sweeper, &repos, &kept, progress, &mut report).await?;
    forget_pulls(&sweeper, &policy.caches, &repos, &unlinked).await?;
    let (marked, usage) = mark_kept(&repos, &kept, &spared, &mut report);
    step_done("marked");

    let dataless = sweep_blobs(&sweeper, &repos, &marked, progress, &mut report).await?;
    step_done("blobs and layer links swept");
    sweep_leftovers(&sweeper, &repos, &unlinked, dataless, &mut report).await?;
    step_done("tag histories and leftovers swept");

    let stale_before = start
        .checked_sub(policy.upload_max_age)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    for repo in &repos {
        report.uploads_removed += sweeper.uploads(&repo.name, stale_before).await?;
    }
    report.duration = began.elapsed();
    step_done("upload sessions swept");
    Ok((report, usage.finish(&policy.caches)))
}

/// Removes the pull stamps of the mirrored manifests this run unlinked.
async fn forget_pulls(
    sweeper: &Sweeper<'_>,
    caches: &[CacheLimit],
    repos: &[RepoState],
    unlinked: &HashSet<RevisionKey>,
) -> Result<(), GcError> {
    if sweeper.dry_run {
        return Ok(());
    }
    for (index, digest) in unlinked {
        let repo = &repos[*index];
        if caches.iter().any(|cache| cache.holds(repo.name.as_str())) {
            let stamp = crate::registry::store::paths::mirror_pulled(&repo.name, digest);
            match sweeper.driver.delete(&stamp).await {
                Err(e) if !e.is_not_found() => return Err(e.into()),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Applies every repository's retention rule; returns, per repository, the revisions whose
/// last tag went (with their children and referrers), deletable like untagged ones.
async fn retention(
    sweeper: &Sweeper<'_>,
    policy: &GcPolicy,
    immutable: &ImmutableTags,
    repos: &mut [RepoState],
    start: SystemTime,
    report: &mut GcReport,
) -> Result<HashMap<RepoName, HashSet<Digest>>, GcError> {
    let mut untagged_by_retention = HashMap::new();
    for repo in repos {
        let removed = apply_retention(sweeper, policy, immutable, repo, start).await?;
        if removed.is_empty() {
            continue;
        }
        report.tags_removed.extend(
            removed
                .iter()
                .map(|(tag, _)| (repo.name.to_string(), tag.clone())),
        );
        let targets = removed.into_iter().map(|(_, digest)| digest).collect();
        untagged_by_retention.insert(repo.name.clone(), repo.dependents(targets));
    }
    Ok(untagged_by_retention)
}

/// Per repository (same order as `repos`), the revisions its roots reach.
fn kept_revisions(
    repos: &[RepoState],
    delete_untagged: bool,
    untagged_by_retention: &HashMap<RepoName, HashSet<Digest>>,
    cutoff: SystemTime,
) -> Vec<HashSet<Digest>> {
    let none = HashSet::new();
    repos
        .iter()
        .map(|repo| {
            let roots = repo.roots(&Roots {
                delete_untagged,
                untagged_by_retention: untagged_by_retention.get(&repo.name).unwrap_or(&none),
                cutoff,
            });
            repo.close(roots)
        })
        .collect()
}

/// Unlinks every revision not kept; returns those a push holds (spared: they and what they
/// reference stay) and those unlinked.
async fn unlink_revisions(
    sweeper: &Sweeper<'_>,
    repos: &[RepoState],
    kept: &[HashSet<Digest>],
    progress: &mut Progress,
    report: &mut GcReport,
) -> Result<(HashSet<RevisionKey>, HashSet<RevisionKey>), GcError> {
    let unkept: Vec<RevisionKey> = repos
        .iter()
        .zip(kept)
        .enumerate()
        .flat_map(|(index, (repo, kept))| {
            repo.revisions
                .keys()
                .filter(|digest| !kept.contains(*digest))
                .map(move |digest| (index, digest.clone()))
        })
        .collect();
    let total = unkept.len();
    let mut unlinking = futures_util::stream::iter(unkept)
        .map(|(index, digest)| async move {
            let removed = sweeper.revision(&repos[index].name, &digest).await;
            (index, digest, removed)
        })
        .buffer_unordered(REVISION_CONCURRENCY);
    let (mut spared, mut unlinked) = (HashSet::new(), HashSet::new());
    let mut done = 0;
    while let Some((index, digest, removed)) = unlinking.next().await {
        done += 1;
        progress.update("manifests", done, Some(total));
        if removed? {
            report.manifests_removed += 1;
            unlinked.insert((index, digest));
        } else {
            spared.insert((index, digest));
        }
    }
    Ok((spared, unlinked))
}

/// The blobs the kept and spared revisions reference, and each repository's usage.
fn mark_kept(
    repos: &[RepoState],
    kept: &[HashSet<Digest>],
    spared: &HashSet<RevisionKey>,
    report: &mut GcReport,
) -> (HashSet<Digest>, UsageBuilder) {
    let mut marked: HashSet<Digest> = HashSet::new();
    let mut usage = UsageBuilder::default();
    for (index, (repo, kept)) in repos.iter().zip(kept).enumerate() {
        let mut repo_blobs = Vec::new();
        for rev in repo.revisions.values() {
            if !kept.contains(&rev.digest) && !spared.contains(&(index, rev.digest.clone())) {
                continue;
            }
            report.manifests_kept += 1;
            if let Some(refs) = &rev.refs {
                marked.extend(refs.blobs.iter().map(|(digest, _)| digest.clone()));
                repo_blobs.extend(refs.blobs.iter().cloned());
            }
        }
        usage.add(repo.name.as_str(), repo_blobs);
    }
    (marked, usage)
}

/// Sweeps unmarked blobs with their layer links, then links left pointing at no blob;
/// returns the blob directories found without their data.
async fn sweep_blobs(
    sweeper: &Sweeper<'_>,
    repos: &[RepoState],
    marked: &HashSet<Digest>,
    progress: &mut Progress,
    report: &mut GcReport,
) -> Result<Vec<String>, GcError> {
    let mut linked_from: HashMap<Digest, Vec<RepoName>> = HashMap::new();
    let mut links = Vec::new();
    for repo in repos {
        for digest in &repo.layer_links {
            linked_from
                .entry(digest.clone())
                .or_default()
                .push(repo.name.clone());
            links.push((repo.name.clone(), digest.clone()));
        }
    }
    let blobs = sweeper.blobs(marked, &linked_from, progress).await?;
    report.blobs_kept = blobs.kept;
    report.blobs_spared = blobs.spared;
    report.blobs_removed = blobs.removed;
    report.bytes_removed = blobs.bytes_removed;
    report.layer_links_removed =
        blobs.links_removed + sweeper.dangling_links(&links, &blobs, progress).await?;
    Ok(blobs.dataless)
}

/// What writes that died before their rename left: in directories that lack their link or
/// data, and beside each tag's current link (a tag move); tag history without a manifest.
async fn sweep_leftovers(
    sweeper: &Sweeper<'_>,
    repos: &[RepoState],
    unlinked: &HashSet<RevisionKey>,
    mut leftover_dirs: Vec<String>,
    report: &mut GcReport,
) -> Result<(), GcError> {
    for (index, repo) in repos.iter().enumerate() {
        let has_manifest = |digest: &Digest| {
            repo.revisions.contains_key(digest) && !unlinked.contains(&(index, digest.clone()))
        };
        let (removed, linkless) = sweeper
            .tag_history(&repo.name, &repo.tag_names, has_manifest)
            .await?;
        report.tag_history_removed += removed;
        leftover_dirs.extend(linkless);
        leftover_dirs.extend(repo.linkless.iter().cloned());
        leftover_dirs.extend(
            repo.tag_names
                .iter()
                .map(|tag| crate::registry::store::paths::tag_current_dir(&repo.name, tag)),
        );
    }
    for dirs in leftover_dirs.chunks(LEFTOVER_DIRS_PER_HOP) {
        report.leftovers_removed += sweeper.leftovers(dirs).await?;
    }
    Ok(())
}

/// Removes the tags the repository's retention rule selects; returns `(tag, target)` of each
/// and drops them from `repo.tags`.
/// Tags an `[[immutable]]` rule holds are never removed (they still count for `keep_last`).
async fn apply_retention(
    sweeper: &Sweeper<'_>,
    policy: &GcPolicy,
    immutable: &ImmutableTags,
    repo: &mut RepoState,
    now: SystemTime,
) -> Result<Vec<(String, Digest)>, GcError> {
    let Some(rule) = rule_for(&policy.retention, repo.name.as_str()) else {
        return Ok(Vec::new());
    };
    let tags: Vec<(String, SystemTime)> = repo
        .tags
        .iter()
        .map(|(tag, (_, pushed))| (tag.clone(), *pushed))
        .collect();
    let mut removed = Vec::new();
    for tag in rule.tags_to_remove(&tags, now) {
        if immutable.rule_for(repo.name.as_str(), &tag).is_some() {
            continue;
        }
        let (target, _) = repo.tags[&tag].clone();
        if sweeper.tag(&repo.name, &tag, &target).await? {
            repo.tags.remove(&tag);
            removed.push((tag, target));
        }
    }
    Ok(removed)
}

/// `regapp du`: what every repository's manifests reference, nothing deleted.
pub(super) async fn measure(
    store: &Store,
    caches: &[CacheLimit],
    progress: &mut Progress,
) -> Result<Usage, GcError> {
    let names = repository_names(store).await?;
    let repos = mark::load_all(store.driver().as_ref(), names, progress).await?;
    let mut usage = UsageBuilder::default();
    for repo in &repos {
        usage.add(
            repo.name.as_str(),
            repo.revisions
                .values()
                .filter_map(|rev| rev.refs.as_ref())
                .flat_map(|refs| refs.blobs.iter().cloned()),
        );
    }
    Ok(usage.finish(caches))
}

async fn repository_names(store: &Store) -> Result<Vec<RepoName>, GcError> {
    Ok(store
        .walk_repository_dirs()
        .await?
        .into_iter()
        .filter_map(|name| name.parse().ok())
        .collect())
}
