//! The HTTP-01 answers in flight: token → key authorization, shared between the order that
//! publishes them and the :80 listener that serves `/.well-known/acme-challenge/<token>`.
//!
//! A lookup is a read lock on a tiny map; tokens live only while their order runs
//! ([`Published`] removes them when dropped, also when the order fails half-way).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The path prefix HTTP-01 validation requests use (RFC 8555 §8.3).
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Shared, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ChallengeTokens {
    tokens: Arc<RwLock<HashMap<String, String>>>,
}

impl ChallengeTokens {
    pub fn new() -> ChallengeTokens {
        ChallengeTokens::default()
    }

    /// The body to answer for a request path, if it is a challenge path with a known token.
    pub fn answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(CHALLENGE_PREFIX)?;
        // A poisoned lock only means a writer panicked between two map operations; the map is
        // still a valid map.
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        tokens.get(token).cloned()
    }

    /// Serves `key_authorization` for `token` until the returned guard is dropped.
    pub fn publish(&self, token: &str, key_authorization: &str) -> Published {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_owned(), key_authorization.to_owned());
        Published {
            tokens: self.clone(),
            token: token.to_owned(),
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A token being served; removed on drop.
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_token_is_answered_until_dropped() {
        let tokens = ChallengeTokens::new();
        let path = format!("{CHALLENGE_PREFIX}abc-123");
        assert_eq!(tokens.answer(&path), None);
        let published = tokens.publish("abc-123", "abc-123.thumbprint");
        assert_eq!(
            tokens.clone().answer(&path).as_deref(),
            Some("abc-123.thumbprint")
        );
        assert_eq!(tokens.answer(&format!("{CHALLENGE_PREFIX}other")), None);
        assert_eq!(
            tokens.answer("/abc-123"),
            None,
            "only under the challenge path"
        );
        drop(published);
        assert_eq!(tokens.answer(&path), None);
        assert!(tokens.is_empty());
    }
}
