//! What the registry needs to know of a stored manifest without parsing it again: its media
//! type and its referrer facts; and the bytes of small manifests, not to read them again. A
//! manifest is immutable under its digest, so neither goes stale; the caches are only bounded.
//! Whether a repository still has a manifest is asked of the store every time (its link).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use serde_json::{Map, Value};

use crate::registry::types::{Digest, ParsedManifest};

#[derive(Debug)]
pub(super) struct ManifestSummary {
    pub media_type: &'static str,
    pub size: u64,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    pub annotations: Option<Map<String, Value>>,
}

impl ManifestSummary {
    pub fn of(manifest: &ParsedManifest, size: u64) -> ManifestSummary {
        ManifestSummary {
            media_type: manifest.media_type(),
            size,
            subject: manifest.subject.as_ref().map(|s| s.digest.clone()),
            artifact_type: manifest.effective_artifact_type().map(str::to_owned),
            annotations: manifest.annotations.clone(),
        }
    }
}

const MAX_SUMMARIES: usize = 16_384;

#[derive(Default)]
pub(super) struct Summaries {
    known: Mutex<HashMap<Digest, Arc<ManifestSummary>>>,
}

impl Summaries {
    pub fn get(&self, digest: &Digest) -> Option<Arc<ManifestSummary>> {
        self.known
            .lock()
            .expect("summary cache poisoned")
            .get(digest)
            .cloned()
    }

    pub fn insert(&self, digest: Digest, summary: ManifestSummary) -> Arc<ManifestSummary> {
        let summary = Arc::new(summary);
        let mut known = self.known.lock().expect("summary cache poisoned");
        if known.len() >= MAX_SUMMARIES {
            // Rare and cheap to rebuild: start over rather than track recency.
            known.clear();
        }
        known.insert(digest, summary.clone());
        summary
    }
}

/// Bytes of manifests kept, at most; manifests are a few KiB, images' indexes tens.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Larger manifests (up to the 4 MiB limit) are read from the store every time.
const MAX_CACHED_BODY: usize = 64 * 1024;

#[derive(Default)]
pub(super) struct Bodies {
    /// The bytes held, and the bodies.
    known: Mutex<(usize, HashMap<Digest, Bytes>)>,
}

impl Bodies {
    pub fn get(&self, digest: &Digest) -> Option<Bytes> {
        let known = self.known.lock().expect("manifest cache poisoned");
        known.1.get(digest).cloned()
    }

    pub fn insert(&self, digest: &Digest, body: &Bytes) {
        if body.len() > MAX_CACHED_BODY {
            return;
        }
        let mut known = self.known.lock().expect("manifest cache poisoned");
        let (held, bodies) = &mut *known;
        if *held + body.len() > MAX_BODY_BYTES {
            // As for summaries: start over rather than track recency.
            bodies.clear();
            *held = 0;
        }
        // Its own copy: `body` may be a slice of a larger buffer.
        if let Some(old) = bodies.insert(digest.clone(), Bytes::copy_from_slice(body)) {
            *held -= old.len();
        }
        *held += body.len();
    }
}
