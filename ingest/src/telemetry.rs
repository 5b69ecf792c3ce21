//! Telemetry: the service's metrics, rendered as Prometheus text (logs are `tracing` events;
//! the binary installs their subscriber).
//!
//! Metrics are plain atomics owned by one application (so tests that run several in one process
//! see their own), counted per request or per batch, never per event in a tight loop. Labels are
//! bounded: reasons and statuses come from fixed lists, never from ids.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Reasons an event is rejected, as metric labels (see `wire::EventError::reason_code`).
const REJECT_REASONS: [&str; 9] = [
    "not_an_object",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "too_long",
    "too_large",
    "duplicate_field",
    "unreadable_value",
    "playback_token",
];

/// HTTP statuses the API answers with, as metric labels; anything else counts as "other".
const STATUSES: [u16; 14] = [
    200, 201, 400, 401, 403, 404, 405, 408, 413, 415, 429, 500, 503, 504,
];

/// Counters kept elsewhere (the platform's refresher, the analytics side path) that `/metrics`
/// renders after the service's own: one exposition, so the dashboard and a scraper read the
/// same numbers.
pub trait MetricsSource: Send + Sync + 'static {
    fn render(&self, out: &mut String);
}

/// One counter in the exposition.
pub fn write_counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

/// One gauge in the exposition.
pub fn write_gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// A histogram with fixed upper bounds.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        if let Some(bucket) = self.bounds.iter().position(|bound| value <= *bound) {
            self.counts[bucket].fetch_add(1, Relaxed);
        }
        self.sum_micros.fetch_add((value * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
        );
    }
}

/// The service's metrics.
pub struct Metrics {
    events_accepted: AtomicU64,
    events_rejected: [AtomicU64; REJECT_REASONS.len()],
    requests: [AtomicU64; STATUSES.len() + 1],
    events_written: AtomicU64,
    sink_errors: AtomicU64,
    batch_events: Histogram,
    sink_write_seconds: Histogram,
    ack_seconds: Histogram,
    /// Events handed to batchers and not yet written.
    queue_depth: AtomicI64,
    /// Admitted request bytes not yet acknowledged.
    in_flight_bytes: AtomicI64,
    /// Sink requests retried (Cassandra: timeouts, overload, unavailable).
    sink_retries: AtomicU64,
    /// Users waiting for a cache invalidation.
    invalidation_pending: AtomicI64,
    /// Keys unlinked (sent) and pipelined requests that failed.
    invalidation_sent: AtomicU64,
    invalidation_failed: AtomicU64,
    /// Users not queued because the pending set was full.
    invalidation_dropped: AtomicU64,
    /// Time from the durable write to the UNLINK that invalidated it.
    invalidation_lag_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        const BATCH: &[f64] = &[
            1.0, 10.0, 100.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0, 65536.0,
        ];
        const SECONDS: &[f64] = &[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        Metrics {
            events_accepted: AtomicU64::new(0),
            events_rejected: Default::default(),
            requests: Default::default(),
            events_written: AtomicU64::new(0),
            sink_errors: AtomicU64::new(0),
            batch_events: Histogram::new(BATCH),
            sink_write_seconds: Histogram::new(SECONDS),
            ack_seconds: Histogram::new(SECONDS),
            queue_depth: AtomicI64::new(0),
            in_flight_bytes: AtomicI64::new(0),
            sink_retries: AtomicU64::new(0),
            invalidation_pending: AtomicI64::new(0),
            invalidation_sent: AtomicU64::new(0),
            invalidation_failed: AtomicU64::new(0),
            invalidation_dropped: AtomicU64::new(0),
            invalidation_lag_seconds: Histogram::new(SECONDS),
        }
    }
}

impl Metrics {
    pub fn events_accepted(&self, count: usize) {
        self.events_accepted.fetch_add(count as u64, Relaxed);
    }

    pub fn event_rejected(&self, reason_code: &str) {
        let index = REJECT_REASONS
            .iter()
            .position(|reason| *reason == reason_code);
        debug_assert!(index.is_some(), "unknown reject reason {reason_code}");
        if let Some(index) = index {
            self.events_rejected[index].fetch_add(1, Relaxed);
        }
    }

    pub fn request_answered(&self, status: u16, elapsed: Duration) {
        let index = STATUSES
            .iter()
            .position(|known| *known == status)
            .unwrap_or(STATUSES.len());
        self.requests[index].fetch_add(1, Relaxed);
        if status == 200 {
            self.ack_seconds.observe(elapsed.as_secs_f64());
        }
    }

    pub fn batch_written(&self, events: usize, elapsed: Duration) {
        self.events_written.fetch_add(events as u64, Relaxed);
        self.batch_events.observe(events as f64);
        self.sink_write_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn batch_failed(&self, elapsed: Duration) {
        self.sink_errors.fetch_add(1, Relaxed);
        self.sink_write_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn queue_depth_add(&self, events: i64) {
        self.queue_depth.fetch_add(events, Relaxed);
    }

    pub fn in_flight_bytes_add(&self, bytes: i64) {
        self.in_flight_bytes.fetch_add(bytes, Relaxed);
    }

    pub fn sink_retried(&self) {
        self.sink_retries.fetch_add(1, Relaxed);
    }

    pub fn invalidation_pending_set(&self, users: usize) {
        self.invalidation_pending.store(users as i64, Relaxed);
    }

    /// One pipelined UNLINK of `keys` keys succeeded; `lags` are durable-to-UNLINK times.
    pub fn invalidation_sent(&self, keys: usize, lags: impl IntoIterator<Item = Duration>) {
        self.invalidation_sent.fetch_add(keys as u64, Relaxed);
        for lag in lags {
            self.invalidation_lag_seconds.observe(lag.as_secs_f64());
        }
    }

    pub fn invalidation_failed(&self) {
        self.invalidation_failed.fetch_add(1, Relaxed);
    }

    pub fn invalidation_dropped(&self, users: usize) {
        self.invalidation_dropped.fetch_add(users as u64, Relaxed);
    }

    pub fn accepted_total(&self) -> u64 {
        self.events_accepted.load(Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let counter = write_counter;
        counter(
            &mut out,
            "playpulse_events_accepted_total",
            "Events accepted and made durable.",
            self.events_accepted.load(Relaxed),
        );
        let _ = writeln!(out, "# HELP playpulse_events_rejected_total Events rejected, by reason.\n# TYPE playpulse_events_rejected_total counter");
        for (reason, count) in REJECT_REASONS.iter().zip(&self.events_rejected) {
            let _ = writeln!(
                out,
                "playpulse_events_rejected_total{{reason=\"{reason}\"}} {}",
                count.load(Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP playpulse_http_requests_total Requests to POST /v1/events, by status.\n# TYPE playpulse_http_requests_total counter");
        for (index, count) in self.requests.iter().enumerate() {
            let status = STATUSES
                .get(index)
                .map_or("other".to_owned(), u16::to_string);
            let _ = writeln!(
                out,
                "playpulse_http_requests_total{{status=\"{status}\"}} {}",
                count.load(Relaxed)
            );
        }
        counter(
            &mut out,
            "playpulse_events_written_total",
            "Events written to the sink (duplicates included).",
            self.events_written.load(Relaxed),
        );
        counter(
            &mut out,
            "playpulse_sink_errors_total",
            "Batches the sink failed to write.",
            self.sink_errors.load(Relaxed),
        );
        self.batch_events.render(
            &mut out,
            "playpulse_batch_events",
            "Events per batch written to the sink.",
        );
        self.sink_write_seconds.render(
            &mut out,
            "playpulse_sink_write_seconds",
            "Sink write latency per batch.",
        );
        self.ack_seconds.render(
            &mut out,
            "playpulse_ack_seconds",
            "Time from request to acknowledgement (200 only).",
        );
        let gauge = write_gauge;
        gauge(
            &mut out,
            "playpulse_queue_depth_events",
            "Events queued in batchers or in the sink, not yet durable.",
            self.queue_depth.load(Relaxed),
        );
        gauge(
            &mut out,
            "playpulse_in_flight_bytes",
            "Admitted request bytes not yet acknowledged.",
            self.in_flight_bytes.load(Relaxed),
        );
        counter(
            &mut out,
            "playpulse_sink_retries_total",
            "Sink requests retried after a retryable error.",
            self.sink_retries.load(Relaxed),
        );
        gauge(
            &mut out,
            "playpulse_invalidation_pending_users",
            "Users waiting for their cache keys to be invalidated.",
            self.invalidation_pending.load(Relaxed),
        );
        counter(
            &mut out,
            "playpulse_invalidation_sent_total",
            "Cache keys unlinked by the invalidation side path.",
            self.invalidation_sent.load(Relaxed),
        );
        counter(
            &mut out,
            "playpulse_invalidation_failed_total",
            "Pipelined UNLINK requests that failed (retried with backoff).",
            self.invalidation_failed.load(Relaxed),
        );
        counter(
            &mut out,
            "playpulse_invalidation_dropped_total",
            "Users not queued for invalidation because the pending set was full.",
            self.invalidation_dropped.load(Relaxed),
        );
        self.invalidation_lag_seconds.render(
            &mut out,
            "playpulse_invalidation_lag_seconds",
            "Time from the durable write to the UNLINK of the user's keys.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets() {
        let metrics = Metrics::default();
        metrics.batch_written(5, Duration::from_millis(2));
        metrics.batch_written(3000, Duration::from_millis(20));
        let text = metrics.render();
        assert!(
            text.contains("playpulse_batch_events_bucket{le=\"10\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("playpulse_batch_events_bucket{le=\"4000\"} 2"),
            "{text}"
        );
        assert!(text.contains("playpulse_batch_events_count 2"), "{text}");
        assert!(
            text.contains("playpulse_events_written_total 3005"),
            "{text}"
        );
    }

    #[test]
    fn rejections_and_statuses_are_labelled() {
        let metrics = Metrics::default();
        metrics.event_rejected("wrong_type");
        metrics.request_answered(413, Duration::ZERO);
        metrics.request_answered(418, Duration::ZERO);
        let text = metrics.render();
        assert!(text.contains("playpulse_events_rejected_total{reason=\"wrong_type\"} 1"));
        assert!(text.contains("playpulse_http_requests_total{status=\"413\"} 1"));
        assert!(text.contains("playpulse_http_requests_total{status=\"other\"} 1"));
    }
}
