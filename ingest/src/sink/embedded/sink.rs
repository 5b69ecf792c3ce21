//! The embedded store behind the async sink trait: its blocking I/O runs on tokio's blocking pool.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use wire::PlaybackEvent;

use super::store::{EventStore, StoreOptions};
use crate::sink::{EventSink, HistoryQuery, SinkError};

#[derive(Clone)]
pub struct EmbeddedSink {
    store: Arc<EventStore>,
}

fn failed(error: impl std::fmt::Display) -> SinkError {
    SinkError::Failed(error.to_string())
}

impl EmbeddedSink {
    /// Opens the store (recovering it after a crash) and starts deleting expired segments.
    pub async fn open(options: StoreOptions) -> std::io::Result<EmbeddedSink> {
        let sweep_every =
            (options.retention / 8).clamp(Duration::from_millis(100), Duration::from_secs(60));
        let store = tokio::task::spawn_blocking(move || EventStore::open(options))
            .await
            .map_err(std::io::Error::other)??;
        let sink = EmbeddedSink {
            store: Arc::new(store),
        };
        let weak = Arc::downgrade(&sink.store);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(sweep_every);
            loop {
                ticks.tick().await;
                let Some(store) = weak.upgrade() else { return };
                match tokio::task::spawn_blocking(move || store.expire()).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(deleted)) => tracing::info!(deleted, "expired segments deleted"),
                    Ok(Err(error)) => tracing::warn!(%error, "retention sweep failed"),
                    Err(error) => tracing::warn!(%error, "retention sweep panicked"),
                }
            }
        });
        Ok(sink)
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
            .map_err(|error| match error.raw_os_error() {
                // A full disk may drain (retention); tell clients to come back.
                Some(libc::ENOSPC) => SinkError::Unavailable(error.to_string()),
                _ => failed(error),
            })
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
