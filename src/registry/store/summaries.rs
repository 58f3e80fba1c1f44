//! What the registry needs to know of a stored manifest without parsing it again: its media
//! type and its referrer facts. Manifests are immutable under their digest, so a summary never
//! goes stale; the cache is only bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
