//! The cache port: recommendation caches, user profiles, sessions. Redis at scale, in process on
//! the embedded default, and an unlogged table for a platform on PostgreSQL alone; the same
//! contract tests run against each.

mod memory;
mod postgres;
mod redis;

use std::time::Duration;

use async_trait::async_trait;

pub use self::redis::{RedisCache, RedisOptions};
pub use memory::MemoryCache;
pub use postgres::PostgresCache;

/// Why the cache could not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The cache is unreachable or timed out; retry later.
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// The cache's address (`redis.url`) cannot be used.
    #[error("invalid cache address: {0}")]
    InvalidAddress(String),
}

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;

    /// Stores a value that expires after `ttl`.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError>;

    /// Removes keys in one round trip (UNLINK on Redis); returns how many existed.
    async fn unlink(&self, keys: &[String]) -> Result<u64, CacheError>;

    /// Whether the cache answers now.
    async fn ready(&self) -> bool;
}
