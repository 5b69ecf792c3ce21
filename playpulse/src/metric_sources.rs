//! What `/metrics` renders beyond the ingest path's own counters: the platform's outbox relay
//! and recommendation refresher, and the analytics side path. Each reads the counters its
//! component already keeps, so `/metrics`, `/ops` and a scraper see one set of numbers.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use analytics::sidepath::AnalyticsStats;
use ingest::telemetry::{write_counter, write_gauge, MetricsSource};
use platform::outbox::Relay;
use platform::recommendations::GraphRecommender;
use platform::Platform;

pub fn of_platform(platform: &Platform) -> Vec<Arc<dyn MetricsSource>> {
    vec![
        Arc::new(RelayMetrics(platform.relay.clone())),
        Arc::new(RecommenderMetrics(platform.recommender().clone())),
    ]
}

struct RelayMetrics(Arc<Relay>);

impl MetricsSource for RelayMetrics {
    fn render(&self, out: &mut String) {
        write_counter(
            out,
            "playpulse_outbox_published_total",
            "Outbox events the relay published to the projectors.",
            self.0.published(),
        );
        write_counter(
            out,
            "playpulse_outbox_applied_total",
            "Outbox events that changed a read model.",
            self.0.applied(),
        );
    }
}

struct RecommenderMetrics(Arc<GraphRecommender>);

impl MetricsSource for RecommenderMetrics {
    fn render(&self, out: &mut String) {
        let stats = self.0.stats();
        write_counter(
            out,
            "playpulse_recommendations_refresh_rounds_total",
            "Refresh rounds of similar titles and viewers' lists.",
            stats.rounds,
        );
        write_counter(
            out,
            "playpulse_recommendations_refresh_failures_total",
            "Refresh rounds that failed (the graph did not answer); lists stay as last computed.",
            stats.failed_rounds,
        );
        write_counter(
            out,
            "playpulse_recommendations_refreshed_users_total",
            "Viewers' lists recomputed.",
            stats.refreshed_users,
        );
        write_gauge(
            out,
            "playpulse_recommendations_last_refresh_timestamp_seconds",
            "When a refresh round last succeeded (0: never).",
            stats.last_success as f64 / 1000.0,
        );
        write_gauge(
            out,
            "playpulse_recommendations_similar_titles",
            "Titles whose similar titles are held in memory.",
            stats.similar_titles,
        );
    }
}

pub struct AnalyticsMetrics(pub Arc<AnalyticsStats>);

impl MetricsSource for AnalyticsMetrics {
    fn render(&self, out: &mut String) {
        let stats = &self.0;
        write_counter(
            out,
            "playpulse_analytics_events_total",
            "Durable events handed to the analytics side path.",
            stats.events.load(Relaxed),
        );
        write_counter(
            out,
            "playpulse_analytics_events_flushed_total",
            "Events folded into QoE rollups that are written (equal to the events handed over once caught up).",
            stats.events_flushed.load(Relaxed),
        );
        write_counter(
            out,
            "playpulse_analytics_rows_written_total",
            "QoE rollup rows written.",
            stats.rows_written.load(Relaxed),
        );
        write_counter(
            out,
            "playpulse_analytics_flush_failures_total",
            "Flushes that failed (kept in memory and retried).",
            stats.flush_failures.load(Relaxed),
        );
        write_counter(
            out,
            "playpulse_analytics_sessions_updated_total",
            "Live sessions written.",
            stats.sessions_updated.load(Relaxed),
        );
        write_gauge(
            out,
            "playpulse_analytics_flushed_through_timestamp_seconds",
            "The newest arrival time the rollups hold (0: none yet).",
            stats.flushed_through.load(Relaxed) as f64 / 1000.0,
        );
    }
}
