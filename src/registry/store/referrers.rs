//! The referrers API, derived from the manifests themselves: every manifest revision of the
//! repository whose `subject` is the digest. Nothing extra is stored, so a store written by
//! registry:2 (which keeps no referrers index) answers correctly too.

use crate::registry::types::{Algorithm, Descriptor, Digest, RepoName};

use super::{paths, Store, StoreResult};

impl Store {
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> StoreResult<Vec<Descriptor>> {
        let mut found = Vec::new();
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let names = match self
                .driver
                .list(&paths::revisions_dir(repo, algorithm))
                .await
            {
                Ok(names) => names,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            for name in names {
                let Ok(digest) = format!("{}:{name}", algorithm.as_str()).parse::<Digest>() else {
                    continue;
                };
                // A revision whose blob is gone or unreadable cannot be a referrer.
                let Ok(summary) = self.summary_of_stored(&digest).await else {
                    continue;
                };
                if summary.subject.as_ref() != Some(subject) {
                    continue;
                }
                if artifact_type.is_some() && summary.artifact_type.as_deref() != artifact_type {
                    continue;
                }
                found.push(Descriptor {
                    media_type: summary.media_type.to_owned(),
                    digest,
                    size: summary.size,
                    urls: Vec::new(),
                    artifact_type: summary.artifact_type.clone(),
                    annotations: summary.annotations.clone(),
                });
            }
        }
        found.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(found)
    }
}
