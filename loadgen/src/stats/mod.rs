//! What a run measured. Each worker owns its [`LatencyHistogram`] and [`Counters`] (no shared
//! lock on the send path) and hands a [`Sample`] of the last second to the progress printer;
//! totals are merged once, at the end of a phase.

pub mod histogram;
pub mod progress;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use histogram::{HistogramError, LatencyHistogram, LatencySummary};

/// Sends that did not leave when the schedule said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissedSends {
    /// Started late although the connection was free: the generator could not keep up.
    pub generator_late: u64,
    /// Started late because the previous response on the connection came back after the
    /// intended send time: the server was slow (its latency counts from the intended time).
    pub connection_busy: u64,
    /// Scheduled before the end of the run but never sent, because the run ended first.
    pub unsent: u64,
}

impl MissedSends {
    pub fn total(&self) -> u64 {
        self.generator_late + self.connection_busy + self.unsent
    }

    pub fn merge(&mut self, other: &MissedSends) {
        self.generator_late += other.generator_late;
        self.connection_busy += other.connection_busy;
        self.unsent += other.unsent;
    }
}

/// Counts of one worker, or of several merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub requests_sent: u64,
    /// Requests answered 200.
    pub requests_acked: u64,
    pub events_sent: u64,
    /// Events accepted in 200 answers (rejected ones excluded).
    pub events_acked: u64,
    /// Events the server rejected one by one (a generator bug if ever non-zero).
    pub events_rejected: u64,
    /// Request bodies as sent (after compression).
    pub body_bytes: u64,
    /// Request bodies before compression.
    pub raw_bytes: u64,
    /// Failed requests by kind (`status_503`, `connect`, `timeout`, ...), and rejected events.
    pub errors: BTreeMap<String, u64>,
    pub missed: MissedSends,
    /// Events whose timestamp had to be pulled back to `sent_at` (the simulated span ran past the
    /// run's start; zero unless the audience was far too small for the rate).
    pub ts_clamped: u64,
    /// Time spent building and encoding requests.
    pub preparing: Duration,
    /// Time spent waiting for answers.
    pub awaiting: Duration,
}

impl Counters {
    pub fn error(&mut self, kind: &str, count: u64) {
        *self.errors.entry(kind.to_owned()).or_default() += count;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn merge(&mut self, other: &Counters) {
        self.requests_sent += other.requests_sent;
        self.requests_acked += other.requests_acked;
        self.events_sent += other.events_sent;
        self.events_acked += other.events_acked;
        self.events_rejected += other.events_rejected;
        self.body_bytes += other.body_bytes;
        self.raw_bytes += other.raw_bytes;
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
        self.missed.merge(&other.missed);
        self.ts_clamped += other.ts_clamped;
        self.preparing += other.preparing;
        self.awaiting += other.awaiting;
    }
}

/// One worker's measurements over an interval (about a second), or over a whole phase.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub latency: LatencyHistogram,
    pub counters: Counters,
}

impl Sample {
    pub fn merge(&mut self, other: &Sample) -> Result<(), HistogramError> {
        self.latency.merge(&other.latency)?;
        self.counters.merge(&other.counters);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.counters == Counters::default() && self.latency.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_counters_add_up_field_by_field() {
        let mut a = Counters {
            requests_sent: 2,
            events_acked: 10,
            ..Counters::default()
        };
        a.error("status_503", 1);
        a.missed.generator_late = 1;
        let mut b = Counters {
            requests_sent: 3,
            events_acked: 5,
            ..Counters::default()
        };
        b.error("status_503", 2);
        b.error("timeout", 1);
        b.missed.unsent = 4;
        a.merge(&b);
        assert_eq!(a.requests_sent, 5);
        assert_eq!(a.events_acked, 15);
        assert_eq!(a.errors["status_503"], 3);
        assert_eq!(a.error_count(), 4);
        assert_eq!(a.missed.total(), 5);
    }
}
