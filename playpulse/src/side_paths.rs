//! The side paths: work that follows a durable write and never delays its acknowledgement.
//! Every one is declared in [`SidePaths::start`], in the order it hears of a durable batch and
//! the order it finishes at shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use analytics::sidepath::{AnalyticsRecorder, AnalyticsTask};
use cache::Cache;
use graph::feed::{FeederTask, GraphFeeder};
use ingest::config::InvalidationSettings;
use ingest::sidepath::invalidation::{self, Invalidator};
use ingest::sidepath::DurableListener;
use ingest::telemetry::Metrics;
use platform::recommendations::{GraphRecommender, RefreshListener};
use wire::PlaybackEvent;

type Finished = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A side path: its name (for logs), what the batchers tell of each durable batch (`None` for a
/// side path fed by another one), and the wait for its last flush.
struct SidePath {
    name: &'static str,
    listener: Option<Arc<dyn DurableListener>>,
    finished: Finished,
}

/// The running side paths.
pub struct SidePaths {
    paths: Vec<SidePath>,
}

impl SidePaths {
    /// Starts the side paths the settings ask for, in this order:
    ///
    /// 1. `graph_feeder` (the platform's, when it feeds the graph from playback): coalesces
    ///    what `start`/`pause`/`stop`/`complete` events say of watches and writes them to the
    ///    graph; the platform's refresher then recomputes those viewers' recommendations.
    /// 2. `invalidation` (`invalidation.enabled`): drops the viewers' cached keys, coalesced
    ///    per window. When the graph is fed and the keys include `recommendations:{id}`, it is
    ///    fed by the refresher after each refresh instead of by the batchers: a cached answer
    ///    may only go once its replacement is in the read model.
    /// 3. `analytics` (`analytics.enabled`): per-minute QoE rollups, trending increments and
    ///    live-session updates, coalesced and flushed every `analytics.flush_interval`.
    pub fn start(
        settings: &InvalidationSettings,
        graph_feeder: Option<(GraphFeeder, FeederTask)>,
        recommender: Option<Arc<GraphRecommender>>,
        analytics: Option<(AnalyticsRecorder, AnalyticsTask)>,
        cache: Arc<dyn Cache>,
        metrics: Arc<Metrics>,
    ) -> SidePaths {
        let mut paths = Vec::new();
        let invalidator = settings
            .enabled
            .then(|| invalidation::start(settings, cache, metrics));
        let mut invalidation_fed_by_refresher = false;
        if let Some((feeder, task)) = graph_feeder {
            if let (Some((invalidator, _)), Some(recommender)) = (&invalidator, &recommender) {
                if settings.invalidates(wire::keys::recommendations) {
                    let after_refresh = Arc::new(InvalidateRefreshed(invalidator.clone()));
                    invalidation_fed_by_refresher = recommender.notify_after_refresh(after_refresh);
                }
            }
            paths.push(SidePath {
                name: "graph_feeder",
                listener: Some(Arc::new(FeedGraph(feeder))),
                // The last write, then the round it calls for: the refreshed users reach the
                // invalidation before it finishes, next.
                finished: Box::pin(async move {
                    task.finished().await;
                    if let Some(recommender) = recommender {
                        if let Err(error) = recommender.refresh_now().await {
                            tracing::warn!(%error, "the last recommendations refresh failed");
                        }
                    }
                }),
            });
        }
        if let Some((listener, task)) = invalidator {
            paths.push(SidePath {
                name: "invalidation",
                listener: (!invalidation_fed_by_refresher)
                    .then_some(listener as Arc<dyn DurableListener>),
                finished: Box::pin(task.finished()),
            });
        }
        if let Some((recorder, task)) = analytics {
            paths.push(SidePath {
                name: "analytics",
                listener: Some(Arc::new(FeedAnalytics(recorder))),
                finished: Box::pin(task.finished()),
            });
        }
        SidePaths { paths }
    }

    /// The side paths' names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.paths.iter().map(|path| path.name).collect()
    }

    /// What the batchers tell of each durable batch, in order. Taken once: a side path finishes
    /// when its listener is dropped (with the pipeline), so nothing else may keep it.
    pub fn take_listeners(&mut self) -> Vec<Arc<dyn DurableListener>> {
        self.paths
            .iter_mut()
            .filter_map(|path| path.listener.take())
            .collect()
    }

    /// Waits for each side path's last flush, in order (call after the pipeline has drained).
    pub async fn finished(self) {
        for path in self.paths {
            path.finished.await;
            tracing::debug!(side_path = path.name, "finished");
        }
    }
}

/// The graph feeder as a listener of durable batches.
struct FeedGraph(GraphFeeder);

impl DurableListener for FeedGraph {
    fn on_durable(&self, events: &[PlaybackEvent]) {
        self.0.record_playback(events);
    }
}

/// The analytics recorder as a listener of durable batches.
struct FeedAnalytics(AnalyticsRecorder);

impl DurableListener for FeedAnalytics {
    fn on_durable(&self, events: &[PlaybackEvent]) {
        self.0.record(events);
    }
}

/// The refresher's refreshed viewers, handed to the invalidation side path.
struct InvalidateRefreshed(Arc<Invalidator>);

impl RefreshListener for InvalidateRefreshed {
    fn refreshed(&self, users: &[u64]) {
        self.0.enqueue_users(users.iter().copied());
    }
}
