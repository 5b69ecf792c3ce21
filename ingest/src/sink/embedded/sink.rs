//! The embedded store behind the async sink trait: its blocking I/O runs on tokio's blocking pool.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use wire::PlaybackEvent;

use super::chunks::EmbeddedChunks;
use super::store::{EventStore, StoreOptions};
use crate::sink::packed::{ChunkLimits, PackedSink};
use crate::sink::{EventSink, HistoryQuery, SinkError};

#[derive(Clone)]
pub struct EmbeddedSink {
    store: Arc<EventStore>,
}

pub(super) fn failed(error: impl std::fmt::Display) -> SinkError {
    SinkError::Failed(error.to_string())
}

/// A write that failed: a full disk may drain (retention), so clients are told to come back.
pub(super) fn write_failed(error: std::io::Error) -> SinkError {
    match error.raw_os_error() {
        Some(libc::ENOSPC) => SinkError::Unavailable(error.to_string()),
        _ => failed(error),
    }
}

/// How often expired data is looked for: often enough that a short retention (tests) is kept.
fn sweep_interval(retention: Duration) -> Duration {
    (retention / 8).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// Runs `sweep` on the blocking pool every `every` while `owner` lives; `what` names it in logs.
fn spawn_sweep<T: Send + Sync + 'static>(
    owner: &Arc<T>,
    every: Duration,
    what: &'static str,
    sweep: impl Fn(&T) -> Result<usize, String> + Send + Sync + 'static,
) {
    let weak = Arc::downgrade(owner);
    let sweep = Arc::new(sweep);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            let Some(owner) = weak.upgrade() else { return };
            let sweep = sweep.clone();
            match tokio::task::spawn_blocking(move || sweep(&owner)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(deleted)) => tracing::info!(deleted, what, "expired data deleted"),
                Ok(Err(error)) => tracing::warn!(%error, what, "retention sweep failed"),
                Err(error) => tracing::warn!(%error, what, "retention sweep panicked"),
            }
        }
    });
}

async fn open_store(
    options: StoreOptions,
    open: fn(StoreOptions) -> std::io::Result<EventStore>,
) -> std::io::Result<Arc<EventStore>> {
    let store = tokio::task::spawn_blocking(move || open(options))
        .await
        .map_err(std::io::Error::other)??;
    Ok(Arc::new(store))
}

impl EmbeddedSink {
    /// Opens the store in the rows layout (recovering it after a crash) and starts deleting
    /// expired segments.
    pub async fn open(options: StoreOptions) -> std::io::Result<EmbeddedSink> {
        let every = sweep_interval(options.retention);
        let store = open_store(options, EventStore::open).await?;
        spawn_sweep(&store, every, "segments", |store| {
            store.expire().map_err(|error| error.to_string())
        });
        Ok(EmbeddedSink { store })
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }
}

#[async_trait]
impl EventSink for EmbeddedSink {
    async fn write(&self, shard: usize, events: Arc<Vec<PlaybackEvent>>) -> Result<(), SinkError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.append(shard, &events))
            .await
            .map_err(failed)?
            .map(|_position| ())
            .map_err(write_failed)
    }

    async fn history(&self, query: HistoryQuery) -> Result<Vec<PlaybackEvent>, SinkError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.history(&query))
            .await
            .map_err(failed)?
            .map_err(failed)
    }

    async fn ready(&self) -> bool {
        true
    }
}

/// Opens the store in the packed layout: its segments are the log, a chunk index beside them
/// holds the history (`chunks.rs`); the log past the checkpoint is replayed into open chunks.
pub async fn open_packed(
    options: StoreOptions,
    limits: ChunkLimits,
) -> Result<PackedSink<Arc<EmbeddedChunks>>, SinkError> {
    let (every, retention, shards) = (
        sweep_interval(options.retention),
        options.retention,
        options.shards,
    );
    let data_dir = options.data_dir.clone();
    let store = open_store(options, EventStore::open_log)
        .await
        .map_err(failed)?;
    let chunks = tokio::task::spawn_blocking(move || EmbeddedChunks::open(store, &data_dir))
        .await
        .map_err(failed)??;
    let chunks = Arc::new(chunks);
    spawn_sweep(&chunks, every, "chunks", move |chunks| {
        let before = crate::now_ms().saturating_sub(retention.as_millis() as i64);
        let deleted = chunks.expire(before).map_err(|error| error.to_string())?;
        // The log's own expired segments (a checkpoint stuck behind them) go too.
        Ok(deleted + chunks.log().expire().map_err(|error| error.to_string())?)
    });
    PackedSink::start(chunks, shards, limits, retention).await
}
