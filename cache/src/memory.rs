//! The in-process cache of the embedded default.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Cache, CacheError};

#[derive(Default)]
pub struct MemoryCache {
    entries: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
}

impl MemoryCache {
    pub fn new() -> MemoryCache {
        MemoryCache::default()
    }

    fn with<T>(&self, work: impl FnOnce(&mut HashMap<String, (Vec<u8>, Instant)>) -> T) -> T {
        work(&mut self.entries.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self.with(|entries| match entries.get(key) {
            Some((value, expires)) if *expires > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let expires = Instant::now() + ttl;
        self.with(|entries| {
            // Sweep expired entries now and then, so that memory follows live keys.
            if entries.len() % 1024 == 1023 {
                let now = Instant::now();
                entries.retain(|_, (_, expires)| *expires > now);
            }
            entries.insert(key.to_owned(), (value.to_vec(), expires));
        });
        Ok(())
    }

    async fn unlink(&self, keys: &[String]) -> Result<u64, CacheError> {
        Ok(self.with(|entries| {
            keys.iter()
                .filter(|key| entries.remove(key.as_str()).is_some())
                .count() as u64
        }))
    }

    async fn ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_expire_and_unlink_counts_what_existed() {
        let cache = MemoryCache::new();
        cache.set("a", b"1", Duration::from_secs(60)).await.unwrap();
        cache.set("b", b"2", Duration::ZERO).await.unwrap();
        assert_eq!(cache.get("a").await.unwrap(), Some(b"1".to_vec()));
        assert_eq!(cache.get("b").await.unwrap(), None);
        let removed = cache
            .unlink(&["a".to_owned(), "zz".to_owned()])
            .await
            .unwrap();
        assert_eq!(removed, 1);
        assert_eq!(cache.get("a").await.unwrap(), None);
    }
}
