//! PlayPulse analytics: quality of experience per minute, trending titles and live sessions.
//!
//! - [`measures`]: what a rollup cell keeps of the events (exact counts and sums, a
//!   [`sketch::Sketch`] per distribution, a [`distinct::Distinct`] for unique viewers) and the
//!   QoE metrics derived from it (definitions: `src/qoe.md`).
//! - [`rollup`]: cells keyed by minute and dimensions, and their groupings.
//! - [`store`]: the rollup store port, on SQLite (embedded) and Cassandra, one contract.

pub mod distinct;
pub mod index;
pub mod measures;
pub mod query;
pub mod rollup;
pub mod sessions;
pub mod sidepath;
pub mod sketch;
pub mod store;
pub mod trending;

use std::time::Duration;

/// A Redis connection for trending and sessions: lazy (Redis may be down while the service
/// starts) and bounded, as the cache's.
pub fn redis_connection(
    url: &str,
    command_timeout: Duration,
) -> Result<redis::aio::ConnectionManager, store::AnalyticsError> {
    let invalid = |error: redis::RedisError| store::AnalyticsError::Invalid(error.to_string());
    let client = redis::Client::open(url).map_err(invalid)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(command_timeout))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    redis::aio::ConnectionManager::new_lazy_with_config(client, config).map_err(invalid)
}
pub mod config;
