//! The packed layout, on either store: a batch is acknowledged once it is durable in an
//! append-only log; its events then wait in their viewers' open chunks, in memory, and closed
//! chunks (one compressed block of one viewer's events of one day) are the history. Once every
//! event of a log range is in stored chunks the range is checkpointed; on start the log past
//! the checkpoint is replayed into open chunks. See `packed.md` beside this file.
//!
//! - `open.rs`: one shard's open chunks, their triggers, and the checkpoint.
//! - `merge.rs`: history newest first from stored chunks and memory, reading in proportion to
//!   the limit.
//! - A store ([`ChunkStore`]) gives the log, the chunks and the checkpoint: the embedded one
//!   (`../embedded/chunks.rs`) or Cassandra's (`../cassandra/chunks.rs`).

mod merge;
mod open;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use wire::PlaybackEvent;

pub use open::CloseReason;
use open::ShardChunks;

use crate::now_ms;
use crate::sink::block;
use crate::sink::{EventSink, HistoryQuery, SinkError};

/// A position in one shard's log; positions grow with every append.
pub type LogPos = u64;

/// When an open chunk closes (`[chunks]` in the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Events in one chunk at most.
    pub max_events: usize,
    /// A chunk closes this long after its first event at the latest: also how long an event
    /// may stay visible on its node only.
    pub max_age: Duration,
    /// Bytes of all open chunks of a shard at most; past it the oldest close first.
    pub max_open_bytes: usize,
    /// How often closed chunks are written and the checkpoint advanced.
    pub commit_interval: Duration,
}

/// A closed chunk: one viewer's events of one day, newest first, each `event_id` once.
#[derive(Debug, Clone)]
pub struct ClosedChunk {
    pub user_id: u64,
    pub day: i32,
    pub first_ts: i64,
    pub last_ts: i64,
    /// A digest of the events' ids: the same events make the same chunk, so writing a chunk
    /// again (after a replay) overwrites it.
    pub chunk_id: u64,
    pub max_received_at: i64,
    pub events: Vec<PlaybackEvent>,
    /// The log entry of each event (before deduplication), for the checkpoint.
    positions: Vec<LogPos>,
    /// What its events were counted for in memory while open.
    bytes: usize,
    pub reason: CloseReason,
}

impl ClosedChunk {
    fn new(
        user_id: u64,
        day: i32,
        mut events: Vec<PlaybackEvent>,
        positions: Vec<LogPos>,
        bytes: usize,
        reason: CloseReason,
    ) -> ClosedChunk {
        if events.len() > 1 {
            sort_newest_first(&mut events);
            dedup_event_ids(&mut events);
        }
        let mut digest = 0xcbf2_9ce4_8422_2325u64;
        for event in &events {
            for byte in event.event_id.as_bytes() {
                digest = (digest ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        ClosedChunk {
            user_id,
            day,
            first_ts: events.last().map_or(0, |event| event.ts),
            last_ts: events.first().map_or(0, |event| event.ts),
            chunk_id: digest,
            max_received_at: events
                .iter()
                .map(|event| event.received_at)
                .max()
                .unwrap_or(0),
            events,
            positions,
            bytes,
            reason,
        }
    }

    /// The chunk as stored: one block of the block codec.
    pub fn encode(&self) -> Vec<u8> {
        block::encode(&self.events).bytes
    }
}

/// A stored chunk as a read finds it.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    pub last_ts: i64,
    pub chunk_id: u64,
    pub first_ts: i64,
    pub block: Vec<u8>,
}

/// Where stored chunks are read from: one page of a `(user_id, day)` partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPage {
    pub user_id: u64,
    pub day: i32,
    /// Chunks whose newest event is at or after this.
    pub from_ms: i64,
    /// Chunks strictly after this `(last_ts, chunk_id)` in newest-first order (the cursor).
    pub after: Option<(i64, u64)>,
    pub limit: usize,
}

/// What the packed layout needs of a store.
#[async_trait]
pub trait ChunkStore: Send + Sync + 'static {
    /// Shards whose logs exist (at least `configured`): each is replayed on start.
    async fn shards(&self, configured: usize) -> Result<usize, SinkError>;

    /// Appends a batch to `shard`'s log; durable when this returns.
    async fn append_log(
        &self,
        shard: usize,
        events: Arc<Vec<PlaybackEvent>>,
    ) -> Result<LogPos, SinkError>;

    /// Stores `chunks` durably (idempotent: a chunk written twice is stored once), then records
    /// that `shard`'s log before `checkpoint` is in stored chunks.
    async fn commit(
        &self,
        shard: usize,
        chunks: &[Arc<ClosedChunk>],
        checkpoint: LogPos,
    ) -> Result<(), SinkError>;

    /// `shard`'s log from its checkpoint on, in order, and where that replay started.
    async fn replay(
        &self,
        shard: usize,
    ) -> Result<(LogPos, Vec<(LogPos, Vec<PlaybackEvent>)>), SinkError>;

    /// Days with stored chunks of `user_id` between `from_day` and `to_day`, newest first.
    async fn days(&self, user_id: u64, from_day: i32, to_day: i32) -> Result<Vec<i32>, SinkError>;

    /// One page of a partition's chunks, newest `last_ts` first.
    async fn chunks(&self, page: ChunkPage) -> Result<Vec<StoredChunk>, SinkError>;

    /// Whether the store answers now.
    async fn ready(&self) -> bool;
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Newest first: `(ts DESC, event_id DESC)`, the latest written first among equals.
pub fn sort_newest_first(events: &mut [PlaybackEvent]) {
    events.sort_unstable_by(|a, b| {
        (b.ts, b.event_id, b.received_at).cmp(&(a.ts, a.event_id, a.received_at))
    });
}

/// Keeps the first copy of each `event_id` (of events sorted newest first).
fn dedup_event_ids(events: &mut Vec<PlaybackEvent>) {
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    events.retain(|event| seen.insert(event.event_id));
}

struct Shared<S> {
    store: S,
    shards: Vec<Mutex<ShardChunks>>,
    limits: ChunkLimits,
    /// An event expires this long after it was received (`sink.retention`).
    retention: Duration,
    /// Woken when chunks close, so that a full chunk does not wait for the next interval.
    wake: Arc<Notify>,
    /// Woken after every commit round: writers waiting for a backlog to drain.
    committed: Notify,
    stopping: std::sync::atomic::AtomicBool,
    /// The checkpoint last recorded per shard: an idle round records nothing.
    recorded: Vec<std::sync::atomic::AtomicU64>,
    /// One commit round at a time: a round stores the oldest closed chunks it saw, and only
    /// it may then let them go.
    committing: tokio::sync::Mutex<()>,
}

/// An [`EventSink`] on the packed layout of `S`.
pub struct PackedSink<S: ChunkStore> {
    shared: Arc<Shared<S>>,
    committer: Mutex<Option<JoinHandle<()>>>,
}

impl<S: ChunkStore> PackedSink<S> {
    /// Replays each shard's log past its checkpoint into open chunks, then starts committing.
    pub async fn start(
        store: S,
        configured_shards: usize,
        limits: ChunkLimits,
        retention: Duration,
    ) -> Result<PackedSink<S>, SinkError> {
        let count = store.shards(configured_shards.max(1)).await?;
        let mut shards = Vec::with_capacity(count);
        let mut replayed = 0usize;
        for shard in 0..count {
            let (from, entries) = store.replay(shard).await?;
            let mut chunks = ShardChunks::new(from);
            let now = now_ms();
            for (position, events) in entries {
                replayed += events.len();
                chunks.admit(None, position, &Arc::new(events), &limits, now);
            }
            shards.push(Mutex::new(chunks));
        }
        if replayed > 0 {
            tracing::info!(
                events = replayed,
                shards = count,
                "log replayed into open chunks"
            );
        }
        let recorded = shards
            .iter()
            .map(|shard| std::sync::atomic::AtomicU64::new(lock(shard).checkpoint()))
            .collect();
        let shared = Arc::new(Shared {
            store,
            shards,
            recorded,
            committing: tokio::sync::Mutex::new(()),
            limits,
            retention,
            wake: Arc::new(Notify::new()),
            committed: Notify::new(),
            stopping: Default::default(),
        });
        let committer = tokio::spawn(commit_loop(Arc::downgrade(&shared)));
        Ok(PackedSink {
            shared,
            committer: Mutex::new(Some(committer)),
        })
    }

    pub fn store(&self) -> &S {
        &self.shared.store
    }

    /// Open chunks, events and bytes in memory, over all shards.
    pub fn open_sizes(&self) -> (usize, usize, usize) {
        self.shared
            .shards
            .iter()
            .map(|shard| lock(shard).sizes())
            .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
    }

    async fn wait_for_backlog(&self, shard: usize) {
        loop {
            let committed = self.shared.committed.notified();
            if !lock(&self.shared.shards[shard]).backlogged(&self.shared.limits) {
                return;
            }
            self.shared.wake.notify_one();
            committed.await;
        }
    }

    /// Writes every closed chunk now and advances the checkpoints (tests, shutdown).
    pub async fn commit_now(&self) -> Result<(), SinkError> {
        commit_all(&self.shared).await
    }

    /// Closes the chunks past their age now (tests; the committer does it on its own).
    pub fn close_aged(&self) {
        let now = now_ms();
        for shard in &self.shared.shards {
            lock(shard).close_aged(&self.shared.limits, now);
        }
    }
}

/// Closes aged chunks and commits closed ones, every `commit_interval` or when woken; retries
/// after a failure (the log keeps everything meanwhile). Ends when the sink is dropped.
async fn commit_loop<S: ChunkStore>(shared: std::sync::Weak<Shared<S>>) {
    let mut failures = 0u32;
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        if strong.stopping.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let pause = if failures == 0 {
            strong.limits.commit_interval
        } else {
            (strong.limits.commit_interval * 2u32.saturating_pow(failures.min(5)))
                .min(Duration::from_secs(5))
        };
        let wake = strong.wake.clone();
        drop(strong);
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let now = now_ms();
        for shard in &strong.shards {
            lock(shard).close_aged(&strong.limits, now);
        }
        let round = commit_round(&strong).await;
        strong.committed.notify_waiters();
        match round {
            Ok(more) => {
                failures = 0;
                if more {
                    // A backlog: the next round starts at once.
                    strong.wake.notify_one();
                }
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(%error, failures, "cannot store closed chunks; retrying (the log keeps them)");
            }
        }
    }
}

/// Closed chunks one commit round stores per shard at most: a backlog drains in steps, each
/// waking the writers that wait on it, instead of one round as long as the backlog.
const ROUND_CHUNKS: usize = 2048;

/// Stores every closed chunk, round after round (tests, shutdown).
async fn commit_all<S: ChunkStore>(shared: &Shared<S>) -> Result<(), SinkError> {
    while commit_round(shared).await? {
        shared.committed.notify_waiters();
    }
    shared.committed.notify_waiters();
    Ok(())
}

/// One round: up to [`ROUND_CHUNKS`] closed chunks of each shard, then its checkpoint. True
/// when closed chunks are left for another round.
async fn commit_round<S: ChunkStore>(shared: &Shared<S>) -> Result<bool, SinkError> {
    let _one_at_a_time = shared.committing.lock().await;
    let mut more = false;
    for (index, shard) in shared.shards.iter().enumerate() {
        let (chunks, checkpoint) = {
            let chunks = lock(shard);
            (chunks.oldest_closed(ROUND_CHUNKS), chunks.checkpoint())
        };
        more |= chunks.len() == ROUND_CHUNKS;
        let recorded = &shared.recorded[index];
        if chunks.is_empty() {
            if recorded.load(std::sync::atomic::Ordering::Relaxed) != checkpoint {
                shared.store.commit(index, &[], checkpoint).await?;
                recorded.store(checkpoint, std::sync::atomic::Ordering::Relaxed);
            }
            continue;
        }
        // The checkpoint these chunks allow is recorded by the next round, once they are
        // known stored: the log is replayed from a little earlier than it could be, never later.
        shared.store.commit(index, &chunks, checkpoint).await?;
        recorded.store(checkpoint, std::sync::atomic::Ordering::Relaxed);
        lock(shard).stored(&chunks);
    }
    Ok(more)
}

#[async_trait]
impl<S: ChunkStore> EventSink for PackedSink<S> {
    async fn write(&self, shard: usize, events: Arc<Vec<PlaybackEvent>>) -> Result<(), SinkError> {
        let shards = &self.shared.shards;
        let shard = shard % shards.len();
        let ticket = lock(&shards[shard]).reserve();
        match self.shared.store.append_log(shard, events.clone()).await {
            Ok(position) => {
                let backlogged = {
                    let mut chunks = lock(&shards[shard]);
                    let limits = &self.shared.limits;
                    chunks.admit(Some(ticket), position, &events, limits, now_ms());
                    if chunks.has_closed() {
                        self.shared.wake.notify_one();
                    }
                    chunks.backlogged(limits)
                };
                if backlogged {
                    // Durable already; the answer waits until the store has caught up (the
                    // request's deadline still bounds it), so memory stays bounded.
                    self.wait_for_backlog(shard).await;
                }
                Ok(())
            }
            Err(error) => {
                lock(&shards[shard]).abandon(ticket);
                Err(error)
            }
        }
    }

    async fn history(&self, query: HistoryQuery) -> Result<Vec<PlaybackEvent>, SinkError> {
        let mut in_memory = Vec::new();
        for shard in &self.shared.shards {
            lock(shard).events_of(query.user_id, query.from_ms, query.to_ms, &mut in_memory);
        }
        let retention = self.shared.retention.as_millis().min(i64::MAX as u128) as i64;
        let expired_before = now_ms().saturating_sub(retention);
        merge::history(&self.shared.store, query, in_memory, expired_before).await
    }

    async fn ready(&self) -> bool {
        self.shared.store.ready().await
    }

    async fn shutdown(&self) {
        self.shared
            .stopping
            .store(true, std::sync::atomic::Ordering::Release);
        self.shared.wake.notify_one();
        let committer = lock(&self.committer).take();
        if let Some(committer) = committer {
            let _ = committer.await;
        }
        for shard in &self.shared.shards {
            lock(shard).close_all();
        }
        // Twice: the second round records the checkpoint the first one's chunks allow.
        for _ in 0..2 {
            if let Err(error) = commit_all(&self.shared).await {
                tracing::warn!(%error, "cannot store the last chunks; the log replays them on start");
                return;
            }
        }
    }
}
