//! The HTTP-01 answers in flight: token → key authorization, shared between the order that
//! publishes them and the :80 listener that serves `/.well-known/acme-challenge/<token>`.
//!
//! A lookup is a read lock on a tiny map; tokens live only while their order runs
//! ([`Published`] removes them when dropped, also when the order fails half-way). With several
//! nodes on one bucket the answers are also objects in the bucket, so whichever node the CA's
//! validation reaches answers: a token this node does not hold is looked up there. Lookups that
//! find nothing are limited per client address ([`MISSES_PER_CLIENT`]), so that a flood of
//! made-up tokens on :80 costs the bucket little and cannot crowd out the CA's validations.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::error::AcmeError;
use super::kept::BUCKET_PREFIX;
use crate::auth::limiter::{client_key, FailureLimiter};
use crate::storage::StorageDriver;

/// The path prefix HTTP-01 validation requests use (RFC 8555 §8.3).
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Bucket lookups of tokens that are not there one client may cause in a row, then one per
/// [`MISS_REFILL`]: a CA's validations find their token and cost nothing, so a client making
/// tokens up cannot spend the lookups of another (the CA's) as one shared budget would let it.
const MISSES_PER_CLIENT: u32 = 20;
const MISS_REFILL: Duration = Duration::from_millis(100);
/// Clients whose misses are remembered at once.
const MISS_CLIENTS: usize = 10_000;

/// How long a lookup in the bucket may take before the answer is 404.
const BUCKET_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Shared, cheap to clone.
#[derive(Clone, Default)]
pub struct ChallengeTokens {
    tokens: Arc<RwLock<HashMap<String, String>>>,
    bucket: Option<Arc<InBucket>>,
}

struct InBucket {
    driver: Arc<dyn StorageDriver>,
    /// Lookups that found nothing, per client address.
    misses: FailureLimiter,
}

impl InBucket {
    fn key(token: &str) -> String {
        format!("{BUCKET_PREFIX}/challenges/{token}")
    }
}

impl std::fmt::Debug for ChallengeTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChallengeTokens")
            .field("held", &self.len())
            .field("in_bucket", &self.bucket.is_some())
            .finish()
    }
}

impl ChallengeTokens {
    pub fn new() -> ChallengeTokens {
        ChallengeTokens::default()
    }

    /// Tokens published in `driver`'s bucket too, and looked up there when not held here.
    pub fn in_bucket(driver: Arc<dyn StorageDriver>) -> ChallengeTokens {
        ChallengeTokens {
            tokens: Arc::default(),
            bucket: Some(Arc::new(InBucket {
                driver,
                misses: FailureLimiter::new(MISSES_PER_CLIENT, MISS_REFILL, MISS_CLIENTS),
            })),
        }
    }

    /// The body to answer for a request path from `client`, if it is a challenge path with a
    /// known token.
    pub async fn answer(&self, path: &str, client: IpAddr) -> Option<String> {
        let token = path.strip_prefix(CHALLENGE_PREFIX)?;
        if let Some(answer) = self.held(token) {
            return Some(answer);
        }
        let bucket = self.bucket.as_ref()?;
        let client = client_key(client);
        if !is_token(token) || bucket.misses.check(client, Instant::now()).is_err() {
            return None;
        }
        let key = InBucket::key(token);
        let lookup = bucket.driver.get(&key);
        match tokio::time::timeout(BUCKET_LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(bytes)) => String::from_utf8(bytes.to_vec()).ok(),
            Ok(Err(e)) if e.is_not_found() => {
                bucket.misses.record_failure(client, Instant::now());
                None
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "looking up an HTTP-01 answer in the bucket failed");
                None
            }
            Err(_) => None,
        }
    }

    fn held(&self, token: &str) -> Option<String> {
        // A poisoned lock only means a writer panicked between two map operations; the map is
        // still a valid map.
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        tokens.get(token).cloned()
    }

    /// Serves `key_authorization` for `token` (from the bucket too, when shared) until the
    /// returned guard is dropped.
    pub async fn publish(
        &self,
        token: &str,
        key_authorization: &str,
    ) -> Result<Published, AcmeError> {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_owned(), key_authorization.to_owned());
        let published = Published {
            tokens: self.clone(),
            token: token.to_owned(),
        };
        if let Some(bucket) = &self.bucket {
            let content = Bytes::from(key_authorization.to_owned());
            bucket
                .driver
                .put(&InBucket::key(token), content)
                .await
                .map_err(|source| AcmeError::Bucket { source })?;
        }
        Ok(published)
    }

    pub fn len(&self) -> usize {
        self.tokens.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// RFC 8555 §8.1: a token is base64url; anything else is not looked up.
fn is_token(token: &str) -> bool {
    (1..=256).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A token being served; removed on drop (from the bucket in the background).
#[derive(Debug)]
pub struct Published {
    tokens: ChallengeTokens,
    token: String,
}

impl Drop for Published {
    fn drop(&mut self) {
        self.tokens
            .tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.token);
        if let (Some(bucket), Ok(runtime)) =
            (&self.tokens.bucket, tokio::runtime::Handle::try_current())
        {
            let (driver, key) = (bucket.driver.clone(), InBucket::key(&self.token));
            runtime.spawn(async move {
                if let Err(e) = driver.delete(&key).await {
                    tracing::debug!(error = %e, "withdrawing an HTTP-01 answer from the bucket");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn a_published_token_is_answered_until_dropped() {
        let tokens = ChallengeTokens::new();
        let path = format!("{CHALLENGE_PREFIX}abc-123");
        assert_eq!(tokens.answer(&path, CLIENT).await, None);
        let published = tokens
            .publish("abc-123", "abc-123.thumbprint")
            .await
            .unwrap();
        assert_eq!(
            tokens.clone().answer(&path, CLIENT).await.as_deref(),
            Some("abc-123.thumbprint")
        );
        assert_eq!(
            tokens
                .answer(&format!("{CHALLENGE_PREFIX}other"), CLIENT)
                .await,
            None
        );
        assert_eq!(
            tokens.answer("/abc-123", CLIENT).await,
            None,
            "only under the challenge path"
        );
        drop(published);
        assert_eq!(tokens.answer(&path, CLIENT).await, None);
        assert!(tokens.is_empty());
    }

    /// Two nodes on one store: the token one publishes, the other answers, until withdrawn;
    /// a made-up token is looked up only within the budget, and never outside the alphabet.
    #[tokio::test]
    async fn a_token_published_on_one_node_is_answered_by_another() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StorageDriver> = Arc::new(crate::storage::FsDriver::new(dir.path()));
        let (a, b) = (
            ChallengeTokens::in_bucket(store.clone()),
            ChallengeTokens::in_bucket(store.clone()),
        );
        let path = format!("{CHALLENGE_PREFIX}tok_1");
        let published = a.publish("tok_1", "tok_1.print").await.unwrap();
        assert_eq!(
            b.answer(&path, CLIENT).await.as_deref(),
            Some("tok_1.print")
        );
        assert!(b.is_empty(), "looked up, not held");
        drop(published);
        // Withdrawn from the bucket itself (not a lookup that the budget refuses).
        tokio::time::timeout(Duration::from_secs(5), async {
            while store.get(&InBucket::key("tok_1")).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("withdrawn from the bucket");
        assert_eq!(b.answer(&path, CLIENT).await, None);
        assert!(!is_token("../x") && !is_token("") && is_token("AZaz09-_"));
        // A client making tokens up spends its own misses, not the CA's lookups.
        for n in 0..MISSES_PER_CLIENT + 5 {
            b.answer(&format!("{CHALLENGE_PREFIX}made-up-{n}"), CLIENT)
                .await;
        }
        let misses = &b.bucket.as_ref().unwrap().misses;
        assert!(misses.check(client_key(CLIENT), Instant::now()).is_err());
        let published = a.publish("tok_2", "tok_2.print").await.unwrap();
        let ca: IpAddr = "192.0.2.7".parse().unwrap();
        let path = format!("{CHALLENGE_PREFIX}tok_2");
        assert_eq!(b.answer(&path, ca).await.as_deref(), Some("tok_2.print"));
        drop(published);
    }
}
