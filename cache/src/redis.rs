//! The cache on Redis: one multiplexed connection that reconnects by itself (the `redis` crate's
//! `ConnectionManager`), every key under `redis.key_prefix`, and a timeout on every call, so a
//! Redis that is down or hung costs a caller at most that timeout, never a stall.

use std::future::Future;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisResult};
use async_trait::async_trait;

use super::{Cache, CacheError};

/// Keys per UNLINK command inside one pipelined request. Redis runs a command to its end before
/// it serves another client, so several mid-sized commands keep other clients' latency low where
/// one command with every key would not; all of them still travel in one round trip.
const UNLINK_KEYS_PER_COMMAND: usize = 256;

/// How long calls may take. The defaults suit a Redis on the same network.
#[derive(Debug, Clone, Copy)]
pub struct RedisOptions {
    /// One connection attempt (TCP connect and handshake).
    pub connect_timeout: Duration,
    /// One call, from sending it to its answer, waiting for a reconnection included.
    pub command_timeout: Duration,
    /// The readiness PING.
    pub ready_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> RedisOptions {
        RedisOptions {
            connect_timeout: Duration::from_millis(500),
            command_timeout: Duration::from_secs(1),
            ready_timeout: Duration::from_millis(250),
        }
    }
}

pub struct RedisCache {
    connection: ConnectionManager,
    prefix: String,
    options: RedisOptions,
    /// Where it connects, for logs (the URL may hold a password; this does not).
    address: String,
}

impl RedisCache {
    /// Checks the address and returns at once, without connecting: Redis may well be down while
    /// the service starts. The first call connects; until Redis answers, calls fail with
    /// [`CacheError::Unavailable`] after their timeout and readiness says false.
    pub fn new(
        url: &str,
        key_prefix: &str,
        options: RedisOptions,
    ) -> Result<RedisCache, CacheError> {
        let client =
            Client::open(url).map_err(|error| CacheError::InvalidAddress(error.to_string()))?;
        let address = client.get_connection_info().addr().to_string();
        // Reconnection attempts stay short: the caller's timeout (and the invalidator's own
        // backoff) decide how long to keep trying, not a long retry loop inside the driver.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.command_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|error| CacheError::InvalidAddress(error.to_string()))?;
        Ok(RedisCache {
            connection,
            prefix: key_prefix.to_owned(),
            options,
            address,
        })
    }

    /// `host:port` of the server.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Runs one call within `limit`; a timeout or an error both mean "unavailable, retry later".
    async fn call<T>(
        &self,
        what: &'static str,
        limit: Duration,
        request: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, CacheError> {
        match tokio::time::timeout(limit, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(CacheError::Unavailable(format!(
                "redis {what} at {}: {error}",
                self.address
            ))),
            Err(_) => Err(CacheError::Unavailable(format!(
                "redis {what} at {}: no answer within {limit:?}",
                self.address
            ))),
        }
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut connection = self.connection.clone();
        let command = ::redis::cmd("GET").arg(self.key(key)).clone();
        self.call(
            "GET",
            self.options.command_timeout,
            command.query_async(&mut connection),
        )
        .await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        // Redis refuses PX 0; a value that expires at once is a value removed.
        if ttl.is_zero() {
            let command = ::redis::cmd("UNLINK").arg(self.key(key)).clone();
            return self
                .call(
                    "UNLINK",
                    self.options.command_timeout,
                    command.exec_async(&mut connection),
                )
                .await;
        }
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let command = ::redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(millis)
            .clone();
        self.call(
            "SET",
            self.options.command_timeout,
            command.exec_async(&mut connection),
        )
        .await
    }

    async fn unlink(&self, keys: &[String]) -> Result<u64, CacheError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut pipeline = ::redis::pipe();
        for group in keys.chunks(UNLINK_KEYS_PER_COMMAND) {
            let command = pipeline.cmd("UNLINK");
            for key in group {
                command.arg(self.key(key));
            }
        }
        let mut connection = self.connection.clone();
        let removed: Vec<u64> = self
            .call(
                "UNLINK",
                self.options.command_timeout,
                pipeline.query_async(&mut connection),
            )
            .await?;
        Ok(removed.iter().sum())
    }

    async fn ready(&self) -> bool {
        let mut connection = self.connection.clone();
        let ping = ::redis::cmd("PING");
        self.call(
            "PING",
            self.options.ready_timeout,
            ping.query_async::<String>(&mut connection),
        )
        .await
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusable_address_is_refused_before_any_connection() {
        let error = RedisCache::new("http://nowhere", "", RedisOptions::default())
            .err()
            .expect("not a redis URL");
        assert!(matches!(error, CacheError::InvalidAddress(_)), "{error}");
    }
}
