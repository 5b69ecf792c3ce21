//! The catalog's projectors: each reads the catalog's outbox (`title_events`) from its own
//! position, applies a batch, then saves the position. Applying is versioned (keep the newer),
//! so a batch applied twice (a crash before the save, two processes running the same projector)
//! changes nothing the second time.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use search::{SearchIndex, TitleChange};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::readmodel::ReadModel;
use crate::store::catalog::TitleEvent;
use crate::store::{CommandStore, StoreError};

/// Why a round failed (the events are applied again next round).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{consumer}: {message}")]
    Consumer { consumer: String, message: String },
}

/// Something kept in step with the catalog.
#[async_trait]
pub trait TitleConsumer: Send + Sync + 'static {
    /// The name its position is saved under.
    fn name(&self) -> &str;
    async fn apply(&self, events: &[TitleEvent]) -> Result<(), String>;
    /// Whether what it holds may have been lost while its position was kept (an index deleted
    /// under a live command store): then it reads the log again from the start.
    async fn lost_everything(&self) -> bool {
        false
    }
}

/// The search index, kept in step.
pub struct SearchProjector {
    pub name: String,
    pub index: Arc<dyn SearchIndex>,
}

#[async_trait]
impl TitleConsumer for SearchProjector {
    fn name(&self) -> &str {
        &self.name
    }

    async fn apply(&self, events: &[TitleEvent]) -> Result<(), String> {
        let changes: Vec<TitleChange> = events.iter().map(|event| event.change.clone()).collect();
        self.index
            .apply(&changes)
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }

    async fn lost_everything(&self) -> bool {
        matches!(self.index.stats().await, Ok(stats) if stats.titles == 0)
    }
}

/// The title read model (`GET /v1/titles/{id}`), kept in step.
pub struct TitleReadModel {
    pub read_model: Arc<dyn ReadModel>,
}

#[async_trait]
impl TitleConsumer for TitleReadModel {
    fn name(&self) -> &str {
        "title_read_model"
    }

    async fn apply(&self, events: &[TitleEvent]) -> Result<(), String> {
        self.read_model
            .apply_titles(events)
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }
}

#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// How long an idle projector waits before looking again (commits wake it sooner).
    pub poll_interval: Duration,
    pub batch_size: i64,
    /// Longest wait between attempts while the consumer fails.
    pub max_backoff: Duration,
}

impl Default for FeedOptions {
    fn default() -> Self {
        FeedOptions {
            poll_interval: Duration::from_millis(500),
            batch_size: 500,
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// One consumer's projector.
pub struct CatalogFeed {
    store: Arc<dyn CommandStore>,
    consumer: Arc<dyn TitleConsumer>,
    options: FeedOptions,
    committed: watch::Receiver<u64>,
    /// The last position applied (-1: not read from the store yet).
    position: AtomicI64,
    applied: AtomicU64,
    failures: AtomicU64,
}

impl CatalogFeed {
    pub fn new(
        store: Arc<dyn CommandStore>,
        consumer: Arc<dyn TitleConsumer>,
        options: FeedOptions,
        committed: watch::Receiver<u64>,
    ) -> CatalogFeed {
        CatalogFeed {
            store,
            consumer,
            options,
            committed,
            position: AtomicI64::new(-1),
            applied: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    async fn start_position(&self) -> Result<i64, FeedError> {
        let known = self.position.load(Ordering::Acquire);
        if known >= 0 {
            return Ok(known);
        }
        let mut saved = self.store.consumer_position(self.consumer.name()).await?;
        if saved > 0 && self.consumer.lost_everything().await {
            tracing::warn!(
                consumer = self.consumer.name(),
                saved,
                "consumer holds nothing: reading the catalog again"
            );
            saved = 0;
        }
        self.position.store(saved, Ordering::Release);
        Ok(saved)
    }

    /// One round: the events after the position, applied, then the position saved. Returns
    /// how many were applied.
    pub async fn run_once(&self) -> Result<usize, FeedError> {
        let after = self.start_position().await?;
        let events: Vec<TitleEvent> = self
            .store
            .title_events_after(after, self.options.batch_size)
            .await?;
        let Some(last) = events.last().map(|event| event.seq) else {
            return Ok(0);
        };
        self.consumer
            .apply(&events)
            .await
            .map_err(|message| FeedError::Consumer {
                consumer: self.consumer.name().to_owned(),
                message,
            })?;
        self.position.store(last, Ordering::Release);
        self.applied
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        self.store
            .save_consumer_position(self.consumer.name(), last)
            .await?;
        Ok(events.len())
    }

    /// The last position applied (0 before the first round).
    pub fn position(&self) -> i64 {
        self.position.load(Ordering::Acquire).max(0)
    }

    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// Rounds that failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Runs rounds until stopped: straight on while there is work, else until a commit or the
    /// poll interval; failures back off up to `max_backoff`.
    pub fn spawn(self: Arc<Self>) -> FeedHandle {
        let (stop, mut stopped) = watch::channel(false);
        let feed = self.clone();
        let task = tokio::spawn(async move {
            let mut committed = feed.committed.clone();
            let mut backoff = feed.options.poll_interval;
            // False once the commands are gone (nothing will ever be committed again).
            let mut commits_open = true;
            loop {
                if *stopped.borrow() {
                    break;
                }
                // While the consumer fails, commits do not cut the backoff short.
                let (wait, woken_by_commits) = match feed.run_once().await {
                    Ok(count) if count > 0 => {
                        backoff = feed.options.poll_interval;
                        continue;
                    }
                    Ok(_) => (feed.options.poll_interval, true),
                    Err(error) => {
                        feed.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, ?backoff, "catalog projector round failed; retrying");
                        backoff = (backoff * 2).min(feed.options.max_backoff);
                        (backoff, false)
                    }
                };
                tokio::select! {
                    changed = stopped.changed() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                    changed = committed.changed(), if woken_by_commits && commits_open => {
                        commits_open = changed.is_ok();
                    }
                    () = tokio::time::sleep(wait) => {}
                }
            }
        });
        FeedHandle { stop, task }
    }
}

/// A running projector.
pub struct FeedHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl FeedHandle {
    /// Stops after the round in progress.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
