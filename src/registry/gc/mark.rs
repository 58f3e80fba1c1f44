//! Mark: what one repository holds (revisions, tags, layer links) and which of its manifests
//! are kept.
//!
//! A revision is kept when it is tagged, untagged while untagged manifests are kept, linked
//! after the cutoff (younger than the grace period), a child of a kept index, or a referrer
//! (`subject`) of a kept manifest — transitively. What a kept manifest references (its own
//! bytes, config, layers) is marked in the whole store.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use crate::registry::store::paths;
use crate::registry::types::manifest::is_external;
use crate::registry::types::{Algorithm, Digest, ParsedManifest, RepoName, Tag};
use crate::storage::{StorageDriver, StorageResult};

/// A manifest revision of a repository and what it references.
#[derive(Debug)]
pub struct Revision {
    pub digest: Digest,
    /// When the revision link was written.
    pub linked: SystemTime,
    /// None when the manifest's bytes are missing or unreadable: kept, references unknown.
    pub refs: Option<References>,
}

#[derive(Debug, Default)]
pub struct References {
    /// The manifest's own bytes, config and layers, with their declared sizes.
    pub blobs: Vec<(Digest, u64)>,
    pub children: Vec<Digest>,
    pub subject: Option<Digest>,
}

#[derive(Debug)]
pub struct RepoState {
    pub name: RepoName,
    pub revisions: HashMap<Digest, Revision>,
    /// Tag → (target, push time).
    pub tags: HashMap<String, (Digest, SystemTime)>,
    /// Every tag directory, with a current link or without (its history stays in `index`).
    pub tag_names: Vec<Tag>,
    pub layer_links: Vec<Digest>,
    /// Revision directories without their link: a push that died before its rename left
    /// them (and a temporary file in them).
    pub linkless: Vec<String>,
}

/// Every repository: loaded concurrently (a few at a time), in name order.
pub async fn load_all(
    driver: &dyn StorageDriver,
    names: Vec<RepoName>,
    progress: &mut super::progress::Progress,
) -> StorageResult<Vec<RepoState>> {
    use futures_util::StreamExt;
    let total = names.len();
    let mut loading = futures_util::stream::iter(names)
        .map(|name| load(driver, name))
        .buffered(LOAD_CONCURRENCY);
    let mut repos = Vec::with_capacity(total);
    while let Some(repo) = loading.next().await {
        repos.push(repo?);
        progress.update("repositories", repos.len(), Some(total));
    }
    Ok(repos)
}

/// Repositories loaded at once: each waits for its listings and lookups on a blocking thread
/// of its own, so up to this many wait for a cold disk side by side.
const LOAD_CONCURRENCY: usize = 8;

/// Objects looked up in one hop to a blocking thread: enough that the hop costs little beside
/// them, few enough that a repository of many manifests is never held in memory whole.
const LOOKUPS_PER_HOP: usize = 256;

/// Reads a repository's revisions (and their manifests), tags and layer links.
pub async fn load(driver: &dyn StorageDriver, name: RepoName) -> StorageResult<RepoState> {
    let mut revisions = HashMap::new();
    let mut linkless = Vec::new();
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        let digests =
            digests_under(driver, &paths::revisions_dir(&name, algorithm), algorithm).await?;
        for digests in digests.chunks(LOOKUPS_PER_HOP) {
            let links: Vec<String> = digests
                .iter()
                .map(|digest| paths::revision_link(&name, digest))
                .collect();
            let mut linked = Vec::with_capacity(digests.len());
            for ((digest, link), info) in digests
                .iter()
                .zip(&links)
                .zip(driver.stat_each(&links).await)
            {
                match info {
                    Ok(info) => linked.push((digest, info.modified)),
                    Err(e) if e.is_not_found() => linkless.push(paths::link_dir(link).to_owned()),
                    Err(e) => return Err(e),
                }
            }
            let manifests: Vec<String> = linked
                .iter()
                .map(|(digest, _)| paths::blob_data(digest))
                .collect();
            for ((digest, linked), body) in
                linked.into_iter().zip(driver.get_each(&manifests).await)
            {
                let revision = Revision {
                    digest: digest.clone(),
                    linked,
                    refs: references(digest, body)?,
                };
                revisions.insert(digest.clone(), revision);
            }
        }
    }
    let mut tags = HashMap::new();
    let names: Vec<Tag> = list_or_empty(driver, &paths::tags_dir(&name))
        .await?
        .into_iter()
        .filter_map(|tag| tag.parse().ok())
        .collect();
    for names in names.chunks(LOOKUPS_PER_HOP) {
        let links: Vec<String> = names
            .iter()
            .map(|tag| paths::tag_current_link(&name, tag))
            .collect();
        let contents = driver.get_each(&links).await;
        let infos = driver.stat_each(&links).await;
        for ((tag, content), info) in names.iter().zip(contents).zip(infos) {
            let (content, info) = match (content, info) {
                (Ok(content), Ok(info)) => (content, info),
                (Err(e), _) | (_, Err(e)) if e.is_not_found() => continue,
                (Err(e), _) | (_, Err(e)) => return Err(e),
            };
            if let Some(target) = std::str::from_utf8(&content)
                .ok()
                .and_then(|s| s.trim().parse::<Digest>().ok())
            {
                tags.insert(tag.to_string(), (target, info.modified));
            }
        }
    }
    let mut layer_links = Vec::new();
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        layer_links
            .extend(digests_under(driver, &paths::layers_dir(&name, algorithm), algorithm).await?);
    }
    Ok(RepoState {
        name,
        revisions,
        tags,
        tag_names: names,
        layer_links,
        linkless,
    })
}

/// What a revision's manifest references, from its bytes as read.
fn references(
    digest: &Digest,
    body: StorageResult<bytes::Bytes>,
) -> StorageResult<Option<References>> {
    let body = match body {
        Ok(body) => body,
        Err(e) if e.is_not_found() => {
            tracing::warn!(%digest, "a revision link points at missing manifest bytes; kept as it is");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let manifest = match ParsedManifest::parse(&body, None) {
        Ok(manifest) => manifest,
        Err(e) => {
            tracing::warn!(%digest, error = %e, "a stored manifest does not parse; kept, its references unknown");
            return Ok(None);
        }
    };
    let mut blobs = vec![(digest.clone(), body.len() as u64)];
    blobs.extend(
        manifest
            .referenced_blobs()
            .filter(|blob| !is_external(blob))
            .map(|blob| (blob.digest.clone(), blob.size)),
    );
    Ok(Some(References {
        blobs,
        children: manifest
            .manifests
            .iter()
            .map(|c| c.digest.clone())
            .collect(),
        subject: manifest.subject.map(|s| s.digest),
    }))
}

/// Digests named by `<dir>/<hex>` entries (revisions, layer links).
pub async fn digests_under(
    driver: &dyn StorageDriver,
    dir: &str,
    algorithm: Algorithm,
) -> StorageResult<Vec<Digest>> {
    Ok(list_or_empty(driver, dir)
        .await?
        .into_iter()
        .filter_map(|hex| format!("{}:{hex}", algorithm.as_str()).parse().ok())
        .collect())
}

pub async fn list_or_empty(driver: &dyn StorageDriver, dir: &str) -> StorageResult<Vec<String>> {
    match driver.list(dir).await {
        Ok(names) => Ok(names),
        Err(e) if e.is_not_found() => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Which revisions a repository keeps before any deletion is tried.
pub struct Roots<'a> {
    pub delete_untagged: bool,
    /// Revisions whose last tag retention removed in this run, with their children and
    /// referrers: deletable like untagged ones even when untagged manifests are kept.
    pub untagged_by_retention: &'a HashSet<Digest>,
    pub cutoff: SystemTime,
}

impl RepoState {
    pub fn tagged(&self) -> HashSet<&Digest> {
        self.tags.values().map(|(d, _)| d).collect()
    }

    /// The revisions kept from the start: tagged, young, and untagged when those are kept.
    pub fn roots(&self, rules: &Roots<'_>) -> HashSet<Digest> {
        let tagged = self.tagged();
        self.revisions
            .values()
            .filter(|rev| {
                tagged.contains(&rev.digest)
                    || rev.linked > rules.cutoff
                    || rev.refs.is_none()
                    || (!rules.delete_untagged
                        && !rules.untagged_by_retention.contains(&rev.digest))
            })
            .map(|rev| rev.digest.clone())
            .collect()
    }

    /// `kept` grown by the children of kept indexes and the referrers of kept manifests, until
    /// nothing more is added.
    pub fn close(&self, kept: HashSet<Digest>) -> HashSet<Digest> {
        self.reach(kept)
    }

    /// The manifests that go with a removed tag's target: the target, the children of an index
    /// and the referrers (`subject`) of all of them. Retention removes them together, so a
    /// signature or a platform image does not stay behind as untagged garbage.
    pub fn dependents(&self, targets: HashSet<Digest>) -> HashSet<Digest> {
        self.reach(targets)
    }

    /// `start` and every revision reachable from it through children and referrers.
    fn reach(&self, mut reached: HashSet<Digest>) -> HashSet<Digest> {
        let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
        for rev in self.revisions.values() {
            if let Some(subject) = rev.refs.as_ref().and_then(|r| r.subject.as_ref()) {
                referrers.entry(subject).or_default().push(&rev.digest);
            }
        }
        let mut pending: Vec<Digest> = reached.iter().cloned().collect();
        while let Some(digest) = pending.pop() {
            let children = self
                .revisions
                .get(&digest)
                .and_then(|rev| rev.refs.as_ref())
                .map(|refs| refs.children.iter())
                .into_iter()
                .flatten();
            let referring = referrers.get(&digest).into_iter().flatten().copied();
            for next in children.chain(referring) {
                if self.revisions.contains_key(next) && reached.insert(next.clone()) {
                    pending.push(next.clone());
                }
            }
        }
        reached
    }
}
