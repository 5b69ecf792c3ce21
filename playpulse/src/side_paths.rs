//! The side paths: work that follows a durable write and never delays its acknowledgement.
//! Every one is declared in [`SidePaths::start`], in the order it hears of a durable batch and
//! the order it finishes at shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cache::Cache;
use ingest::config::InvalidationSettings;
use ingest::sidepath::invalidation::{self, Invalidator};
use ingest::sidepath::DurableListener;
use ingest::telemetry::Metrics;
use platform::recommendations::{RecorderTask, RefreshListener, ViewingRecorder};
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
    /// 1. `view_recorder` (the platform's, when it records views): records who watched what
    ///    from `start`/`complete` events and refreshes those viewers' recommendations.
    /// 2. `invalidation` (`invalidation.enabled`): drops the viewers' cached keys, coalesced
    ///    per window. When the recorder runs and the keys include `recommendations:{id}`, it
    ///    is fed by the recorder after each refresh instead of by the batchers: a cached answer
    ///    may only go once its replacement is in the read model.
    pub fn start(
        settings: &InvalidationSettings,
        view_recorder: Option<(ViewingRecorder, RecorderTask)>,
        cache: Arc<dyn Cache>,
        metrics: Arc<Metrics>,
    ) -> SidePaths {
        let mut paths = Vec::new();
        let invalidator = settings
            .enabled
            .then(|| invalidation::start(settings, cache, metrics));
        let mut invalidation_fed_by_recorder = false;
        if let Some((recorder, task)) = view_recorder {
            if let Some((invalidator, _)) = &invalidator {
                if settings.invalidates(wire::keys::recommendations) {
                    let after_refresh = Arc::new(InvalidateRefreshed(invalidator.clone()));
                    invalidation_fed_by_recorder = recorder.notify_after_refresh(after_refresh);
                }
            }
            paths.push(SidePath {
                name: "view_recorder",
                listener: Some(Arc::new(RecordViews(recorder))),
                finished: Box::pin(task.finished()),
            });
        }
        if let Some((listener, task)) = invalidator {
            paths.push(SidePath {
                name: "invalidation",
                listener: (!invalidation_fed_by_recorder)
                    .then_some(listener as Arc<dyn DurableListener>),
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

/// The view recorder as a listener of durable batches.
struct RecordViews(ViewingRecorder);

impl DurableListener for RecordViews {
    fn on_durable(&self, events: &[PlaybackEvent]) {
        self.0.record(events);
    }
}

/// The recorder's refreshed viewers, handed to the invalidation side path.
struct InvalidateRefreshed(Arc<Invalidator>);

impl RefreshListener for InvalidateRefreshed {
    fn refreshed(&self, users: &[u64]) {
        self.0.enqueue_users(users.iter().copied());
    }
}
