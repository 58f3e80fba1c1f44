//! The credential cache: (user, password) pairs that verified successfully, so the bcrypt or
//! argon2 cost is paid once per pair instead of on every request (docker and podman send
//! credentials with each one).
//!
//! Holds no passwords: an entry is SHA-256(salt ‖ user ‖ NUL ‖ password), with a random salt drawn
//! when the cache is made, so a memory dump reveals neither the passwords nor (without the salt) a
//! table to test guesses against offline. Each user-set generation owns its own cache (see
//! `users.rs`): when the htpasswd file changes, the whole cache goes with the old set. Only
//! successes are stored; a miss always means "verify".

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use sha2::{Digest as _, Sha256};

/// How many verified pairs are kept. Entries are only added for correct passwords, so the number of
/// distinct entries is about the number of active users; the bound only stops pathological growth.
pub const CAPACITY: usize = 4096;

/// A salted hash of one (user, password) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

/// A bounded set of verified credentials; the oldest entry leaves first when it is full.
pub struct CredentialCache {
    salt: [u8; 32],
    capacity: usize,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    keys: HashSet<CacheKey>,
    order: VecDeque<CacheKey>,
}

impl CredentialCache {
    /// An empty cache with a fresh random salt.
    pub fn new(capacity: usize) -> Self {
        let mut salt = [0; 32];
        salt[..16].copy_from_slice(&super::password::random_bytes());
        salt[16..].copy_from_slice(&super::password::random_bytes());
        Self::with_salt(salt, capacity)
    }

    fn with_salt(salt: [u8; 32], capacity: usize) -> Self {
        Self {
            salt,
            capacity: capacity.max(1),
            entries: Mutex::default(),
        }
    }

    /// The key for a pair. The NUL separator is unambiguous because user names with control
    /// characters never get this far (`basic.rs` refuses them).
    pub fn key(&self, user: &str, password: &str) -> CacheKey {
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        hasher.update(user.as_bytes());
        hasher.update([0]);
        hasher.update(password.as_bytes());
        CacheKey(hasher.finalize().into())
    }

    /// Whether this pair was verified before.
    pub fn contains(&self, key: &CacheKey) -> bool {
        self.lock().keys.contains(key)
    }

    /// Remembers a pair that verified, evicting the oldest entry when full.
    pub fn insert(&self, key: CacheKey) {
        let mut entries = self.lock();
        if !entries.keys.insert(key) {
            return;
        }
        entries.order.push_back(key);
        while entries.order.len() > self.capacity {
            if let Some(oldest) = entries.order.pop_front() {
                entries.keys.remove(&oldest);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.lock().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // No code path panics while holding the lock with the two collections out of step, and a
        // stale entry could only be a pair that did verify: recovering from poison is safe.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_salt_user_and_password_but_never_contain_them() {
        let cache = CredentialCache::with_salt([7; 32], 8);
        let key = cache.key("alice", "secret");
        assert_eq!(key, cache.key("alice", "secret"));
        assert_ne!(key, cache.key("alice", "Secret"));
        assert_ne!(key, cache.key("bob", "secret"));
        // The separator keeps the boundary between user and password.
        assert_ne!(cache.key("ab", "c"), cache.key("a", "bc"));
        let other_salt = CredentialCache::with_salt([8; 32], 8);
        assert_ne!(key, other_salt.key("alice", "secret"));
        let expected: [u8; 32] = Sha256::digest([&[7u8; 32][..], b"alice\0secret"].concat()).into();
        assert_eq!(key, CacheKey(expected));
    }

    #[test]
    fn fresh_caches_draw_different_salts() {
        let (a, b) = (CredentialCache::new(8), CredentialCache::new(8));
        assert_ne!(a.key("alice", "secret"), b.key("alice", "secret"));
    }

    #[test]
    fn only_inserted_pairs_hit() {
        let cache = CredentialCache::new(8);
        let key = cache.key("alice", "secret");
        assert!(!cache.contains(&key));
        cache.insert(key);
        cache.insert(key);
        assert!(cache.contains(&key));
        assert_eq!(cache.len(), 1);
        assert!(!cache.contains(&cache.key("alice", "other")));
    }

    #[test]
    fn the_oldest_entry_leaves_when_full() {
        let cache = CredentialCache::new(3);
        let keys: Vec<_> = (0..4).map(|i| cache.key("u", &i.to_string())).collect();
        for key in &keys {
            cache.insert(*key);
        }
        assert_eq!(cache.len(), 3);
        assert!(!cache.contains(&keys[0]));
        assert!(keys[1..].iter().all(|k| cache.contains(k)));
    }
}
