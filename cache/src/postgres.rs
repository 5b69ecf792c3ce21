//! The cache on PostgreSQL, for a platform that runs PostgreSQL alone: an `UNLOGGED` table
//! (`cache_entries`), so a cache write costs no WAL flush and a crash empties it, as a cache
//! may be emptied. Expiry is checked on read against the database's clock; a sweep every
//! [`SWEEP_INTERVAL`] deletes what has expired. This is the cache-aside path without Redis, and
//! the cost `bench architectures` puts a number on.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;

use super::{Cache, CacheError};

/// How often expired entries are deleted.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

const SCHEMA: &str = "CREATE UNLOGGED TABLE IF NOT EXISTS cache_entries (
    key text PRIMARY KEY,
    value bytea NOT NULL,
    expires_at timestamptz NOT NULL)";

pub struct PostgresCache {
    pool: PgPool,
    request_timeout: Duration,
    sweeper: tokio::task::JoinHandle<()>,
}

fn unavailable(context: &str, error: impl std::fmt::Display) -> CacheError {
    CacheError::Unavailable(format!("postgres cache: {context}: {error}"))
}

impl PostgresCache {
    /// Connects to `url` and creates the table where missing.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        request_timeout: Duration,
    ) -> Result<PostgresCache, CacheError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(request_timeout)
            .connect(url)
            .await
            .map_err(|error| match error {
                sqlx::Error::Configuration(_) => CacheError::InvalidAddress(error.to_string()),
                other => unavailable("connect", other),
            })?;
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(|error| unavailable("create cache_entries", error))?;
        let sweeping = pool.clone();
        let sweeper = tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                every.tick().await;
                if let Err(error) =
                    sqlx::query("DELETE FROM cache_entries WHERE expires_at <= now()")
                        .execute(&sweeping)
                        .await
                {
                    tracing::debug!(%error, "the cache sweep failed; the next one retries");
                }
            }
        });
        Ok(PostgresCache {
            pool,
            request_timeout,
            sweeper,
        })
    }

    async fn bounded<T>(
        &self,
        context: &str,
        work: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, CacheError> {
        match tokio::time::timeout(self.request_timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(unavailable(context, error)),
            Err(_) => Err(unavailable(context, "timed out")),
        }
    }
}

impl Drop for PostgresCache {
    fn drop(&mut self) {
        self.sweeper.abort();
    }
}

#[async_trait]
impl Cache for PostgresCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.bounded(
            "get",
            sqlx::query_scalar(
                "SELECT value FROM cache_entries WHERE key = $1 AND expires_at > now()",
            )
            .bind(key)
            .fetch_optional(&self.pool),
        )
        .await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let ttl_us = ttl.as_micros().min(i64::MAX as u128) as i64;
        self.bounded(
            "set",
            sqlx::query(
                "INSERT INTO cache_entries (key, value, expires_at) \
                 VALUES ($1, $2, now() + make_interval(secs => $3::float8 / 1e6)) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, \
                 expires_at = EXCLUDED.expires_at",
            )
            .bind(key)
            .bind(value)
            .bind(ttl_us as f64)
            .execute(&self.pool),
        )
        .await?;
        Ok(())
    }

    async fn unlink(&self, keys: &[String]) -> Result<u64, CacheError> {
        if keys.is_empty() {
            return Ok(0);
        }
        // Like UNLINK, an expired key not yet swept does not count as existing.
        let result = self
            .bounded(
                "unlink",
                sqlx::query(
                    "WITH gone AS (DELETE FROM cache_entries WHERE key = ANY($1) RETURNING expires_at) \
                     SELECT count(*) FROM gone WHERE expires_at > now()",
                )
                .bind(keys)
                .fetch_one(&self.pool),
            )
            .await?;
        let count: i64 = result
            .try_get(0)
            .map_err(|error| unavailable("unlink count", error))?;
        Ok(count as u64)
    }

    async fn ready(&self) -> bool {
        self.bounded("ready", sqlx::query("SELECT 1").execute(&self.pool))
            .await
            .is_ok()
    }
}
