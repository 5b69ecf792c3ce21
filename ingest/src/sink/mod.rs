//! Where batches become durable. Every store of playback events implements [`EventSink`]; the
//! same contract tests run against each.

pub mod block;
pub mod cassandra;
pub mod embedded;
pub mod packed;
pub mod postgres;

use std::sync::Arc;

use async_trait::async_trait;
use wire::PlaybackEvent;

/// Why a sink could not do what was asked. Cloned to every request waiting on a batch.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The store cannot take writes or answer now (down, overloaded, timed out); retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store failed in a way a retry will not fix by itself (disk error, corrupt data).
    #[error("store failed: {0}")]
    Failed(String),
}

/// A user's viewing history between two client timestamps (inclusive), newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    pub user_id: u64,
    pub from_ms: i64,
    pub to_ms: i64,
    pub limit: usize,
}

/// A store of playback events, keyed as docs/DESIGN.md says: partition `(user_id, day)`, clustering
/// `(ts DESC, event_id DESC)`; writing an event twice stores it once.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Makes a batch durable: when this returns `Ok`, every event survives a crash. `shard` is the
    /// batcher that formed the batch (a store may keep one append stream per shard).
    async fn write(&self, shard: usize, events: Arc<Vec<PlaybackEvent>>) -> Result<(), SinkError>;

    /// The events of one user in a time range, newest first, each once.
    async fn history(&self, query: HistoryQuery) -> Result<Vec<PlaybackEvent>, SinkError>;

    /// Whether the store answers now.
    async fn ready(&self) -> bool;

    /// After the last write (the pipeline has drained): store what is held in memory.
    async fn shutdown(&self) {}
}

/// Orders a user's events newest first, `(ts DESC, event_id DESC)`, keeping one copy of each
/// `event_id`, the idempotency key: its newest `ts`, and of equal ones the last written (as
/// Cassandra's last-write-wins would). Then applies the limit. Every sink answers this way.
pub fn newest_first_unique(mut events: Vec<PlaybackEvent>, limit: usize) -> Vec<PlaybackEvent> {
    packed::sort_newest_first(&mut events);
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    events.retain(|event| seen.insert(event.event_id));
    events.truncate(limit);
    events
}
