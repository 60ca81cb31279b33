//! A cache of what was read from the store that a change empties, reads in flight
//! included.
//!
//! moka's `invalidate_all` spares entries inserted after it. A request that read the
//! store just before a change (a revoked token, a removed grant) and inserts what it
//! read just after the change's invalidation would otherwise keep serving the old
//! value until it expires, or forever where nothing expires.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

use moka::future::Cache;

/// A count of invalidations, to tell whether one overtook a read of the store.
#[derive(Default)]
pub struct Changes(AtomicU64);

/// When a store read began.
#[derive(Clone, Copy)]
pub struct ReadMark(u64);

impl Changes {
    /// Take this before reading the store for a value to cache.
    pub fn mark(&self) -> ReadMark {
        ReadMark(self.0.load(Ordering::SeqCst))
    }

    /// Call before invalidating.
    pub fn record(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// An invalidation happened since `read` was taken.
    pub fn since(&self, read: ReadMark) -> bool {
        self.0.load(Ordering::SeqCst) != read.0
    }

    /// Call after inserting what a read begun at `read` found: drops it again if an
    /// invalidation came in between. Insert first, then look: an invalidation after
    /// the look covers the entry, one before it is seen.
    pub async fn drop_if_overtaken<K, V>(&self, entries: &Cache<K, V>, key: &K, read: ReadMark)
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        if self.since(read) {
            entries.invalidate(key).await;
        }
    }
}

pub struct StoreCache<K, V> {
    entries: Cache<K, V>,
    changes: Changes,
}

impl<K, V> StoreCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(entries: Cache<K, V>) -> Self {
        StoreCache {
            entries,
            changes: Changes::default(),
        }
    }

    pub async fn get(&self, key: &K) -> Option<V> {
        self.entries.get(key).await
    }

    /// Take this before reading the store for a value to cache.
    pub fn mark(&self) -> ReadMark {
        self.changes.mark()
    }

    /// Caches `value`, read from the store after `read` was taken, unless the cache was
    /// invalidated since.
    pub async fn insert(&self, read: ReadMark, key: K, value: V) {
        self.entries.insert(key.clone(), value).await;
        self.changes.drop_if_overtaken(&self.entries, &key, read).await;
    }

    pub fn invalidate_all(&self) {
        self.changes.record();
        self.entries.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_from_before_an_invalidation_is_not_kept() {
        let cache = StoreCache::new(Cache::new(10));
        let read = cache.mark();
        // The change lands while the value is being read...
        cache.invalidate_all();
        // ...and the old value arrives after it.
        cache.insert(read, "token", "valid").await;
        assert_eq!(cache.get(&"token").await, None);
    }

    #[tokio::test]
    async fn a_read_after_the_invalidation_is_kept() {
        let cache = StoreCache::new(Cache::new(10));
        cache.invalidate_all();
        let read = cache.mark();
        cache.insert(read, "token", "revoked").await;
        assert_eq!(cache.get(&"token").await, Some("revoked"));
    }

    #[tokio::test]
    async fn moka_alone_keeps_a_value_inserted_after_invalidate_all() {
        // The behaviour this type exists for; if moka changes it, this type is moot.
        let cache: Cache<&str, &str> = Cache::new(10);
        cache.invalidate_all();
        cache.insert("token", "valid").await;
        assert_eq!(cache.get(&"token").await, Some("valid"));
    }
}
