//! Tag listing.

use super::{paths, Store, StoreError, StoreResult};
use crate::registry::types::{Digest, RepoName, Tag};

impl Store {
    /// Tags of a repository in lexical order, after `last`, at most `limit`.
    pub async fn tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: Option<usize>,
    ) -> StoreResult<Vec<String>> {
        let mut tags = self.all_tags(repo).await?;
        tags.sort_unstable();
        let after = |t: &String| last.is_none_or(|last| t.as_str() > last);
        Ok(tags
            .into_iter()
            .filter(after)
            .take(limit.unwrap_or(usize::MAX))
            .collect())
    }

    async fn all_tags(&self, repo: &RepoName) -> StoreResult<Vec<String>> {
        match self.driver.list(&paths::tags_dir(repo)).await {
            Ok(names) => Ok(names
                .into_iter()
                .filter(|n| n.parse::<Tag>().is_ok())
                .collect()),
            Err(e) if e.is_not_found() => {
                // A repository with blobs but no tags yet has an empty list; no repository is 404.
                match self.driver.stat(&paths::repository(repo)).await {
                    Ok(_) => Ok(Vec::new()),
                    Err(e) if e.is_not_found() => Err(StoreError::NameUnknown(repo.clone())),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn tags_pointing_at(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> StoreResult<Vec<Tag>> {
        let mut pointing = Vec::new();
        for name in self.all_tags(repo).await.unwrap_or_default() {
            let tag: Tag = name.parse().expect("all_tags keeps valid tags only");
            if self.tag_target(repo, &tag).await?.as_ref() == Some(digest) {
                pointing.push(tag);
            }
        }
        Ok(pointing)
    }
}
