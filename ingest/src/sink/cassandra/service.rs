//! The I/O: every request goes through [`CassandraService::call`], which bounds the requests in
//! flight, retries the errors worth retrying with backoff, and counts the retries.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use event_cql::{is_transient, CassandraConfig, CassandraError};
use scylla::client::session::Session;
use scylla::errors::ExecutionError;
use tokio::sync::Semaphore;

use crate::telemetry::Metrics;

/// The longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Retries with exponential backoff and full jitter.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub backoff: Duration,
}

impl RetryPolicy {
    /// The pause before retry number `retry` (0 for the first): a random time up to
    /// `backoff * 2^retry`, capped. The jitter keeps many writers that failed together from
    /// coming back together.
    pub fn pause(&self, retry: u32) -> Duration {
        let ceiling = self
            .backoff
            .saturating_mul(1u32 << retry.min(16))
            .min(MAX_BACKOFF);
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        ceiling.mul_f64((random % 1_000_001) as f64 / 1_000_000.0)
    }

    /// The longest all attempts of one request can take: every attempt times out, every pause
    /// is the longest.
    pub fn worst_case(&self, request_timeout: Duration) -> Duration {
        let pauses: Duration = (0..self.max_retries)
            .map(|retry| {
                self.backoff
                    .saturating_mul(1u32 << retry.min(16))
                    .min(MAX_BACKOFF)
            })
            .sum();
        request_timeout.saturating_mul(self.max_retries + 1) + pauses
    }
}

/// Requests this service has sent, for benchmarks (the service's metrics count retries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// Attempts sent, retries included.
    pub attempts: u64,
    pub retries: u64,
}

/// The session, with a bound on requests in flight and a retry policy.
pub struct CassandraService {
    session: Arc<Session>,
    /// One permit per row in flight; `capacity` permits in all.
    in_flight: Semaphore,
    capacity: u32,
    retry: RetryPolicy,
    metrics: Arc<Metrics>,
    attempts: AtomicU64,
    retries: AtomicU64,
}

impl CassandraService {
    pub fn new(session: Arc<Session>, config: &CassandraConfig, metrics: Arc<Metrics>) -> Self {
        CassandraService {
            session,
            in_flight: Semaphore::new(config.max_in_flight_rows),
            capacity: config.max_in_flight_rows.min(u32::MAX as usize) as u32,
            retry: RetryPolicy {
                max_retries: config.max_retries,
                backoff: config.retry_backoff,
            },
            metrics,
            attempts: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> RequestStats {
        RequestStats {
            attempts: self.attempts.load(Relaxed),
            retries: self.retries.load(Relaxed),
        }
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Runs one request of `rows` rows: waits until that many rows may be in flight (of
    /// `max_in_flight_rows`: a single-row insert is one, a batch counts its rows, up to the
    /// whole bound), sends it, and on an error worth retrying waits and sends it again, up to
    /// `max_retries` times. The permits go back during the pause, so a failing request does not
    /// hold others up. Every request sent here must be idempotent.
    ///
    /// Rows, not requests, are the bound because rows are what the node queues and applies:
    /// 256 batches of 100 rows put 25,600 mutations in its queue, a wait past any timeout,
    /// where 256 single inserts put 256. This is the backpressure: a slow cluster slows the
    /// writers, whose queues then fill and shed load at admission.
    pub async fn call<T, F, Fut>(
        &self,
        what: &'static str,
        rows: usize,
        mut send: F,
    ) -> Result<T, CassandraError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ExecutionError>>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = {
                let permits = (rows.max(1).min(self.capacity as usize)) as u32;
                let _slots = self
                    .in_flight
                    .acquire_many(permits)
                    .await
                    .expect("the semaphore is never closed");
                self.attempts.fetch_add(1, Relaxed);
                send().await
            };
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if !is_transient(&error) {
                return Err(CassandraError::Permanent {
                    what,
                    source: Box::new(error),
                });
            }
            if attempts > self.retry.max_retries {
                return Err(CassandraError::Transient {
                    what,
                    attempts,
                    source: Box::new(error),
                });
            }
            self.metrics.sink_retried();
            self.retries.fetch_add(1, Relaxed);
            tracing::debug!(what, attempts, %error, "retrying a cassandra request");
            tokio::time::sleep(self.retry.pause(attempts - 1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_but_never_past_their_ceiling() {
        let policy = RetryPolicy {
            max_retries: 10,
            backoff: Duration::from_millis(50),
        };
        for retry in 0..10 {
            let ceiling = (Duration::from_millis(50) * (1 << retry)).min(MAX_BACKOFF);
            for _ in 0..20 {
                assert!(policy.pause(retry) <= ceiling);
            }
        }
    }

    #[test]
    fn the_worst_case_counts_every_attempt_and_pause() {
        let policy = RetryPolicy {
            max_retries: 3,
            backoff: Duration::from_millis(50),
        };
        assert_eq!(
            policy.worst_case(Duration::from_secs(2)),
            Duration::from_millis(8_000 + 50 + 100 + 200)
        );
    }
}
