//! Manifests: stored as blobs, made part of a repository by a revision link, named by tags.

use std::sync::Arc;

use bytes::Bytes;

use super::error::OrUnknown;
use super::summaries::ManifestSummary;
use super::{paths, Store, StoreError, StoreResult};
use crate::registry::types::manifest::{is_external, Descriptor, ManifestError};
use crate::registry::types::{Digest, ParsedManifest, Reference, RepoName, Tag};
use crate::storage::Publish;

#[derive(Debug)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: &'static str,
    pub body: Bytes,
}

#[derive(Debug)]
pub struct PutManifest {
    pub digest: Digest,
    pub media_type: &'static str,
    pub subject: Option<Digest>,
}

impl Store {
    /// The digest a reference names in the repository, if it has it.
    pub async fn manifest_digest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> StoreResult<Digest> {
        let unknown = || StoreError::ManifestUnknown(reference.to_string());
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(tag) => self.tag_target(repo, tag).await?.ok_or_else(unknown)?,
        };
        self.driver
            .stat(&paths::revision_link(repo, &digest))
            .await
            .or_unknown(unknown)?;
        Ok(digest)
    }

    pub async fn manifest_get(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> StoreResult<StoredManifest> {
        let digest = self.manifest_digest(repo, reference).await?;
        let body = match self.bodies.get(&digest) {
            Some(body) => body,
            None => {
                let body = self
                    .driver
                    .get(&paths::blob_data(&digest))
                    .await
                    .or_unknown(|| StoreError::ManifestUnknown(reference.to_string()))?;
                self.bodies.insert(&digest, &body);
                body
            }
        };
        let summary = self.summary(&digest, &body)?;
        Ok(StoredManifest {
            digest,
            media_type: summary.media_type,
            body,
        })
    }

    /// Stores a manifest after checking it is well formed and that everything it references is
    /// in the repository; then links it, and tags it when the reference is a tag.
    pub async fn manifest_put(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
    ) -> StoreResult<PutManifest> {
        self.put_manifest(repo, reference, content_type, body, true)
            .await
    }

    /// Stores a manifest a mirror fetched from its upstream: checked like a pushed one, except
    /// that what it references need not be here yet (a pull-through cache fetches blobs and
    /// child manifests when a client asks for them, as registry:2's proxy does).
    pub async fn manifest_put_cached(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
    ) -> StoreResult<PutManifest> {
        self.put_manifest(repo, reference, content_type, body, false)
            .await
    }

    async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        check_references: bool,
    ) -> StoreResult<PutManifest> {
        let limit = self.options.manifest_max_bytes;
        if body.len() > limit {
            return Err(StoreError::ManifestTooLarge { limit });
        }
        let manifest = ParsedManifest::parse(&body, content_type)?;
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &body);
                if actual != *expected {
                    return Err(StoreError::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                actual
            }
            Reference::Tag(_) => Digest::sha256_of(&body),
        };
        // A client's push may not move an immutable tag; held until the tag is written.
        let _immutable = match reference {
            Reference::Tag(tag) if check_references => {
                self.check_immutable(repo, tag, Some(&digest)).await?
            }
            _ => None,
        };
        // Pinned before the checks: the collector either skips these digests or has deleted
        // them already, in which case the checks fail (see `pins`).
        let mut pinned: Vec<Digest> = manifest
            .referenced_blobs()
            .filter(|blob| !is_external(blob))
            .map(|blob| blob.digest.clone())
            .collect();
        pinned.extend(manifest.manifests.iter().map(|child| child.digest.clone()));
        pinned.push(digest.clone());
        let _pins = self.pin(pinned).await?;
        if check_references {
            self.check_references(repo, &manifest).await?;
        }

        // In this order, so that a link never names a manifest that is not there and the tag
        // moves last; one publish makes them durable together.
        let mut steps = Vec::new();
        if !self.blob_exists(&digest).await? {
            let key = paths::blob_data(&digest);
            steps.push(Publish::Put {
                key,
                content: body.clone(),
            });
        }
        let link = Bytes::from(digest.to_string());
        let mut link_at = |key| {
            steps.push(Publish::Put {
                key,
                content: link.clone(),
            })
        };
        link_at(paths::revision_link(repo, &digest));
        if let Reference::Tag(tag) = reference {
            link_at(paths::tag_index_link(repo, tag, &digest));
            link_at(paths::tag_current_link(repo, tag));
        }
        self.driver.publish(steps).await?;
        self.catalog.note(repo, self.driver.as_ref()).await?;
        self.bodies.insert(&digest, &body);
        let summary = self.summaries.insert(
            digest.clone(),
            ManifestSummary::of(&manifest, body.len() as u64),
        );
        Ok(PutManifest {
            digest,
            media_type: summary.media_type,
            subject: summary.subject.clone(),
        })
    }

    /// Records that a mirrored repository's manifest was pulled now (its stamp's time), for
    /// the cache limits the collector applies (`gc::eviction`).
    pub async fn manifest_pulled(&self, repo: &RepoName, digest: &Digest) -> StoreResult<()> {
        let stamp = paths::mirror_pulled(repo, digest);
        Ok(self.driver.put(&stamp, Bytes::new()).await?)
    }

    /// Deletes a manifest by digest (with every tag pointing at it) or a tag alone.
    pub async fn manifest_delete(&self, repo: &RepoName, reference: &Reference) -> StoreResult<()> {
        self.ensure_delete_enabled()?;
        match reference {
            Reference::Tag(tag) => {
                let unknown = || StoreError::ManifestUnknown(reference.to_string());
                self.tag_target(repo, tag).await?.ok_or_else(unknown)?;
                let _immutable = self.check_immutable(repo, tag, None).await?;
                self.driver
                    .delete(&paths::tag_dir(repo, tag))
                    .await
                    .or_unknown(unknown)
            }
            Reference::Digest(digest) => {
                let link = paths::revision_link(repo, digest);
                self.driver
                    .stat(&link)
                    .await
                    .or_unknown(|| StoreError::ManifestUnknown(digest.to_string()))?;
                let tags = self.tags_pointing_at(repo, digest).await?;
                for tag in &tags {
                    self.check_immutable(repo, tag, None).await?;
                }
                // Tags first: a crash in between leaves a manifest without tags, never a tag
                // pointing at a manifest that is gone.
                for tag in tags {
                    match self.driver.delete(&paths::tag_dir(repo, &tag)).await {
                        Err(e) if !e.is_not_found() => return Err(e.into()),
                        _ => {}
                    }
                }
                let dir = link
                    .strip_suffix("/link")
                    .expect("revision links end in /link");
                self.driver
                    .delete(dir)
                    .await
                    .or_unknown(|| StoreError::ManifestUnknown(digest.to_string()))
            }
        }
    }

    /// Refuses to move (`to` another digest than it names) or delete (`to` None) a tag an
    /// `[[immutable]]` rule holds; the guard serialises immutable writes in this process.
    async fn check_immutable(
        &self,
        repo: &RepoName,
        tag: &Tag,
        to: Option<&Digest>,
    ) -> StoreResult<Option<tokio::sync::MutexGuard<'_, ()>>> {
        let Some(rule) = self.options.immutable.describe(repo.as_str(), tag.as_str()) else {
            return Ok(None);
        };
        let guard = self.immutable_writes.lock().await;
        let current = self.tag_target(repo, tag).await?;
        match (to, current) {
            (Some(to), Some(current)) if *to == current => Ok(Some(guard)),
            (Some(_), None) => Ok(Some(guard)),
            (_, current) => Err(StoreError::TagImmutable {
                repo: repo.clone(),
                tag: tag.to_string(),
                rule,
                current,
            }),
        }
    }

    async fn check_references(
        &self,
        repo: &RepoName,
        manifest: &ParsedManifest,
    ) -> StoreResult<()> {
        // A descriptor's size is what clients check the bytes against when they pull: a wrong
        // one stored now would fail every pull later (containerd refuses the image).
        let same_size = |descriptor: &Descriptor, actual: u64| {
            if descriptor.size == actual {
                Ok(())
            } else {
                Err(StoreError::ManifestInvalid(ManifestError::SizeMismatch {
                    digest: descriptor.digest.clone(),
                    declared: descriptor.size,
                    actual,
                }))
            }
        };
        for blob in manifest.referenced_blobs() {
            if is_external(blob) {
                continue;
            }
            match self.blob_size(repo, &blob.digest).await {
                Ok(size) => same_size(blob, size)?,
                Err(StoreError::BlobUnknown(d)) => return Err(StoreError::ManifestBlobUnknown(d)),
                Err(e) => return Err(e),
            }
        }
        for child in &manifest.manifests {
            let unknown = || StoreError::ManifestBlobUnknown(child.digest.clone());
            self.driver
                .stat(&paths::revision_link(repo, &child.digest))
                .await
                .or_unknown(unknown)?;
            let stored = self
                .driver
                .stat(&paths::blob_data(&child.digest))
                .await
                .or_unknown(unknown)?;
            same_size(child, stored.size)?;
        }
        Ok(())
    }

    /// The summary of a stored manifest, from the cache or by parsing `body`.
    fn summary(&self, digest: &Digest, body: &[u8]) -> StoreResult<Arc<ManifestSummary>> {
        if let Some(summary) = self.summaries.get(digest) {
            return Ok(summary);
        }
        let manifest = ParsedManifest::parse(body, None)?;
        Ok(self.summaries.insert(
            digest.clone(),
            ManifestSummary::of(&manifest, body.len() as u64),
        ))
    }

    pub(super) async fn summary_of_stored(
        &self,
        digest: &Digest,
    ) -> StoreResult<Arc<ManifestSummary>> {
        if let Some(summary) = self.summaries.get(digest) {
            return Ok(summary);
        }
        let body = self.driver.get(&paths::blob_data(digest)).await?;
        self.summary(digest, &body)
    }

    pub(super) async fn tag_target(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> StoreResult<Option<Digest>> {
        match self.driver.get(&paths::tag_current_link(repo, tag)).await {
            Ok(link) => Ok(parse_link(&link)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// A link file's digest; a damaged link reads as absent rather than failing the request.
pub(super) fn parse_link(link: &[u8]) -> Option<Digest> {
    std::str::from_utf8(link).ok()?.trim().parse().ok()
}
