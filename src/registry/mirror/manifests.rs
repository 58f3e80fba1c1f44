//! Manifests of mirrored repositories: by digest from the cache, else fetched once; by tag
//! from the cache within `tag_ttl`, then confirmed by a HEAD upstream (which Docker Hub does
//! not count against its pull limit), and served stale when the upstream cannot be asked.

use bytes::Bytes;

use super::{MirrorError, Target};
use crate::metrics::Cached;
use crate::registry::store::{Store, StoreError, StoredManifest};
use crate::registry::types::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::registry::types::{Digest, Reference};
use crate::upstream::UpstreamError;

/// How long a cached tag's confirmation may take before the cached manifest is served.
const REVALIDATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The media types a fetched manifest's `Content-Type` is believed for; anything else is
/// left to the manifest's own `mediaType` field.
const MANIFEST_TYPES: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

impl Target {
    /// The manifest `reference` names in the mirrored repository; stamps it as pulled.
    pub async fn manifest(
        &self,
        store: &Store,
        reference: &Reference,
    ) -> Result<StoredManifest, MirrorError> {
        let manifest = self.find_manifest(store, reference).await?;
        self.mirror
            .pulled(store, &self.local, &manifest.digest)
            .await;
        Ok(manifest)
    }

    async fn find_manifest(
        &self,
        store: &Store,
        reference: &Reference,
    ) -> Result<StoredManifest, MirrorError> {
        let cached = match store.manifest_get(&self.local, reference).await {
            Ok(found) => Some(found),
            Err(StoreError::ManifestUnknown(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mirror = &self.mirror;
        let tag = match reference {
            Reference::Digest(_) if cached.is_some() => {
                mirror.hit(Cached::Manifest);
                return Ok(cached.expect("matched Some"));
            }
            Reference::Digest(digest) => {
                mirror.miss(Cached::Manifest);
                return self.fetch(store, reference, Some(digest)).await;
            }
            Reference::Tag(tag) => tag.as_str(),
        };
        let Some(cached) = cached else {
            // Nothing to confirm: one GET, not a HEAD first.
            mirror.miss(Cached::Manifest);
            let fetched = self.fetch(store, reference, None).await;
            if fetched.is_ok() {
                mirror.tag_confirmed(&self.local, tag);
            }
            return fetched;
        };
        if mirror.tag_fresh(&self.local, tag) {
            mirror.hit(Cached::Manifest);
            return Ok(cached);
        }
        // With a cached copy to fall back on, a slow upstream is not waited for long.
        let head = tokio::time::timeout(
            REVALIDATE_TIMEOUT,
            mirror.upstream.manifest_head(&self.remote, tag),
        )
        .await
        .unwrap_or(Err(UpstreamError::TimedOut));
        mirror.upstream_result(&head);
        match head {
            Ok(answer) if answer.digest.as_deref() == Some(&cached.digest.to_string()) => {
                mirror.tag_confirmed(&self.local, tag);
                mirror.hit(Cached::Manifest);
                Ok(cached)
            }
            Err(UpstreamError::NotFound) => Err(StoreError::ManifestUnknown(tag.to_owned()).into()),
            Err(_) => {
                mirror.stale();
                Ok(cached)
            }
            // Moved upstream, or no digest in the HEAD's answer: fetch it.
            Ok(_) => {
                mirror.miss(Cached::Manifest);
                match self.fetch(store, reference, None).await {
                    Err(MirrorError::Upstream { .. }) => {
                        mirror.stale();
                        Ok(cached)
                    }
                    fetched => {
                        if fetched.is_ok() {
                            mirror.tag_confirmed(&self.local, tag);
                        }
                        fetched
                    }
                }
            }
        }
    }

    /// GETs the manifest upstream, checks it names the digest it should, stores it under
    /// `reference` and answers it.
    async fn fetch(
        &self,
        store: &Store,
        reference: &Reference,
        expected: Option<&Digest>,
    ) -> Result<StoredManifest, MirrorError> {
        let mirror = &self.mirror;
        let answer = mirror
            .upstream
            .manifest_get(&self.remote, &reference.to_string())
            .await;
        mirror.upstream_result(&answer);
        let answer = match answer {
            Ok(answer) => answer,
            Err(UpstreamError::NotFound) => {
                return Err(StoreError::ManifestUnknown(reference.to_string()).into())
            }
            Err(source) => return Err(self.unavailable(reference, source)),
        };
        mirror.fetched(answer.body.len() as u64);
        let invalid = |why: String| self.unavailable(reference, UpstreamError::Invalid(why));
        let algorithm =
            expected.map_or(crate::registry::types::Algorithm::Sha256, |d| d.algorithm());
        let actual = Digest::of(algorithm, &answer.body);
        if let Some(expected) = expected {
            if actual != *expected {
                return Err(invalid(format!("the manifest's content is {actual}")));
            }
        }
        if let Some(said) = &answer.digest {
            if said.starts_with(algorithm.as_str()) && *said != actual.to_string() {
                return Err(invalid(format!(
                    "Docker-Content-Digest says {said}, the content is {actual}"
                )));
            }
        }
        let media_type = answer
            .media_type
            .as_deref()
            .filter(|t| MANIFEST_TYPES.contains(t));
        let body: Bytes = answer.body;
        let stored = store
            .manifest_put_cached(&self.local, reference, media_type, body.clone())
            .await?;
        Ok(StoredManifest {
            digest: stored.digest,
            media_type: stored.media_type,
            body,
        })
    }

    fn unavailable(&self, reference: &Reference, source: UpstreamError) -> MirrorError {
        MirrorError::Upstream {
            what: format!("manifest {}:{reference}", self.local),
            name: self.mirror.name().to_owned(),
            source,
        }
    }
}

impl Target {
    /// The upstream's tag list for the repository (`query`: the client's `n` and `last`), or
    /// None when it cannot be asked or answers something else than a list.
    pub async fn tags(&self, query: &str) -> Option<serde_json::Value> {
        let answer = self.mirror.upstream.tags(&self.remote, query).await;
        self.mirror.upstream_result(&answer);
        let list: serde_json::Value = serde_json::from_slice(&answer.ok()?).ok()?;
        list.get("tags")?.is_array().then_some(list)
    }
}
