//! The analytics side path: what the batchers hand over once a batch is durable becomes
//! per-minute rollups, trending increments and live-session updates, coalesced in memory and
//! flushed every `flush_interval` by one task. Recording is a map update under a lock of one
//! shard; nothing here waits on I/O on the batchers' side, so an acknowledgement never waits.
//!
//! Rollups are written whole: the flusher keeps each recent minute's cells (every grouping)
//! and rewrites the ones that changed, under this process's own writer id, so a retried write
//! replaces rather than adds. A minute is kept `retain` after it ends; an event for a minute
//! already let go (very late) reloads this writer's rows of that minute first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;
use wire::{CountryCode, EventKind, PlaybackEvent};

use crate::index::RollupIndex;
use crate::measures::Measures;
use crate::rollup::{minute_of, CellKey, Dims, Grouping, RollupRow, MINUTE_MS};
use crate::sessions::{LiveSession, SessionStore};
use crate::store::RollupStore;
use crate::trending::{self, StartCount, TrendingStore};

const SHARDS: usize = 8;
/// How long the last flush at shutdown may take.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct AnalyticsSettings {
    pub flush_interval: Duration,
    /// How long after a minute ends its cells stay in memory for late events.
    pub retain: Duration,
}

impl Default for AnalyticsSettings {
    fn default() -> AnalyticsSettings {
        AnalyticsSettings {
            flush_interval: Duration::from_secs(1),
            retain: Duration::from_secs(300),
        }
    }
}

/// The recorder's maps are touched once per event: a seeded fast hash instead of SipHash
/// (keys come from clients, so still seeded).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What one shard gathered since the last flush.
#[derive(Default)]
struct Pending {
    deltas: FastMap<(i64, Dims), Measures>,
    starts: FastMap<(Option<CountryCode>, u64, i64), u64>,
    sessions: FastMap<Uuid, LiveSession>,
}

impl Pending {
    fn record(&mut self, event: &PlaybackEvent) {
        let minute = minute_of(event.ts);
        self.deltas
            .entry((minute, Dims::of(event)))
            .or_default()
            .record(event);
        if event.kind == EventKind::Start {
            *self
                .starts
                .entry((event.country, event.content_id, minute))
                .or_default() += 1;
        }
        match self.sessions.get_mut(&event.session_id) {
            Some(session) => session.absorb(event),
            None => {
                self.sessions
                    .insert(event.session_id, LiveSession::of(event));
            }
        }
    }

    fn absorb(&mut self, other: Pending) {
        for (key, measures) in other.deltas {
            self.deltas.entry(key).or_default().merge(&measures);
        }
        for (key, count) in other.starts {
            *self.starts.entry(key).or_default() += count;
        }
        for (id, session) in other.sessions {
            match self.sessions.get_mut(&id) {
                Some(known) if known.last_event_at > session.last_event_at => {
                    known.seen_at = known.seen_at.max(session.seen_at);
                }
                Some(known) => {
                    let state = session.state.or(known.state);
                    *known = LiveSession { state, ..session };
                }
                None => {
                    self.sessions.insert(id, session);
                }
            }
        }
    }
}

/// Counters the service reports.
#[derive(Debug, Default)]
pub struct AnalyticsStats {
    pub events: AtomicU64,
    pub rows_written: AtomicU64,
    pub flush_failures: AtomicU64,
    pub trending_rebuilds: AtomicU64,
    pub sessions_updated: AtomicU64,
    /// The newest arrival time flushed to the rollup store (epoch ms).
    pub flushed_through: AtomicU64,
}

struct Shared {
    shards: Box<[Mutex<Pending>]>,
    next_shard: AtomicUsize,
    stats: Arc<AnalyticsStats>,
}

/// The batchers' half: records a durable batch into one shard.
pub struct AnalyticsRecorder {
    shared: Arc<Shared>,
    /// Dropped with the recorder: tells the flusher to make its last flush.
    _alive: mpsc::Sender<()>,
}

impl AnalyticsRecorder {
    pub fn record(&self, events: &[PlaybackEvent]) {
        let shard = self.shared.next_shard.fetch_add(1, Ordering::Relaxed) % SHARDS;
        let mut pending = self.shared.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for event in events {
            pending.record(event);
        }
        self.shared
            .stats
            .events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
    }
}

/// The engines the side path writes to.
#[derive(Clone)]
pub struct AnalyticsSinks {
    pub rollups: Arc<dyn RollupStore>,
    pub index: Option<Arc<dyn RollupIndex>>,
    pub trending: Arc<dyn TrendingStore>,
    pub sessions: Arc<dyn SessionStore>,
}

/// The flusher task.
pub struct AnalyticsTask {
    handle: JoinHandle<()>,
}

impl AnalyticsTask {
    /// Waits for the last flush (after every recorder is dropped).
    pub async fn finished(self) {
        if let Err(error) = self.handle.await {
            tracing::warn!(%error, "the analytics flusher stopped abnormally");
        }
    }
}

/// Starts the side path; `writer` names this process's rollup rows (unique per run).
pub fn start(
    settings: &AnalyticsSettings,
    sinks: AnalyticsSinks,
    writer: String,
    stats: Arc<AnalyticsStats>,
) -> (AnalyticsRecorder, AnalyticsTask) {
    let shared = Arc::new(Shared {
        shards: (0..SHARDS)
            .map(|_| Mutex::new(Pending::default()))
            .collect(),
        next_shard: AtomicUsize::new(0),
        stats,
    });
    let (alive, mut stopped) = mpsc::channel::<()>(1);
    let mut flusher = Flusher {
        shared: shared.clone(),
        sinks,
        writer,
        retain_ms: settings.retain.as_millis() as i64,
        minutes: BTreeMap::new(),
        evicted_through: i64::MIN,
        unwritten_index: HashSet::new(),
        trending_needs_rebuild: true,
        pending_starts: HashMap::new(),
    };
    let interval = settings.flush_interval;
    let handle = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => flusher.flush().await,
                _ = stopped.recv() => {
                    if tokio::time::timeout(FINAL_FLUSH_TIMEOUT, flusher.flush()).await.is_err() {
                        tracing::warn!("the last analytics flush did not finish in time");
                    }
                    return;
                }
            }
        }
    });
    (
        AnalyticsRecorder {
            shared,
            _alive: alive,
        },
        AnalyticsTask { handle },
    )
}

/// One recent minute: its cells in every grouping, and those not yet written.
#[derive(Default)]
struct MinuteCells {
    cells: FastMap<CellKey, Measures>,
    dirty: HashSet<CellKey, foldhash::fast::RandomState>,
}

struct Flusher {
    shared: Arc<Shared>,
    sinks: AnalyticsSinks,
    writer: String,
    retain_ms: i64,
    minutes: BTreeMap<i64, MinuteCells>,
    /// Minutes up to here have left memory.
    evicted_through: i64,
    /// Cells written to the store but not yet to the index.
    unwritten_index: HashSet<CellKey>,
    trending_needs_rebuild: bool,
    /// Starts not yet in the trending store (kept while it is down).
    pending_starts: HashMap<(Option<CountryCode>, u64, i64), u64>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

impl Flusher {
    fn take(&self) -> Pending {
        let mut all = Pending::default();
        for shard in self.shared.shards.iter() {
            let taken = std::mem::take(&mut *shard.lock().unwrap_or_else(PoisonError::into_inner));
            all.absorb(taken);
        }
        all
    }

    async fn flush(&mut self) {
        let pending = self.take();
        let rollups_ok = self.flush_rollups(pending.deltas).await;
        for (key, count) in pending.starts {
            *self.pending_starts.entry(key).or_default() += count;
        }
        if rollups_ok {
            self.flush_trending().await;
        }
        self.flush_sessions(pending.sessions).await;
    }

    async fn flush_rollups(&mut self, deltas: FastMap<(i64, Dims), Measures>) -> bool {
        for ((minute, dims), measures) in deltas {
            if !self.minutes.contains_key(&minute) && minute <= self.evicted_through {
                self.reload(minute).await;
            }
            let cells = self.minutes.entry(minute).or_default();
            for grouping in Grouping::ALL {
                let key = CellKey {
                    grouping,
                    minute,
                    dims: grouping.project(&dims),
                };
                cells.cells.entry(key.clone()).or_default().merge(&measures);
                cells.dirty.insert(key);
            }
        }
        let mut rows = Vec::new();
        for cells in self.minutes.values() {
            for key in &cells.dirty {
                rows.push(RollupRow {
                    key: key.clone(),
                    writer: self.writer.clone(),
                    measures: cells.cells[key].clone(),
                });
            }
        }
        let mut ok = true;
        if !rows.is_empty() {
            match self.sinks.rollups.write(&rows).await {
                Ok(()) => {
                    let stats = &self.shared.stats;
                    stats
                        .rows_written
                        .fetch_add(rows.len() as u64, Ordering::Relaxed);
                    let newest = rows
                        .iter()
                        .map(|row| row.measures.last_received_at)
                        .max()
                        .unwrap_or(0);
                    stats
                        .flushed_through
                        .fetch_max(newest.max(0) as u64, Ordering::Relaxed);
                    for cells in self.minutes.values_mut() {
                        for key in cells.dirty.drain() {
                            self.unwritten_index.insert(key);
                        }
                    }
                }
                Err(error) => {
                    self.shared
                        .stats
                        .flush_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, rows = rows.len(), "rollups not written; retrying at the next flush");
                    ok = false;
                }
            }
        }
        self.flush_index().await;
        self.evict();
        ok
    }

    async fn flush_index(&mut self) {
        let Some(index) = &self.sinks.index else {
            self.unwritten_index.clear();
            return;
        };
        if self.unwritten_index.is_empty() {
            return;
        }
        let rows: Vec<RollupRow> = self
            .unwritten_index
            .iter()
            .filter_map(|key| {
                let measures = self.minutes.get(&key.minute)?.cells.get(key)?;
                Some(RollupRow {
                    key: key.clone(),
                    writer: self.writer.clone(),
                    measures: measures.clone(),
                })
            })
            .collect();
        match index.index(&rows).await {
            Ok(()) => self.unwritten_index.clear(),
            Err(error) => {
                self.shared
                    .stats
                    .flush_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "rollups not indexed; retrying at the next flush");
            }
        }
    }

    /// Lets go of minutes that ended more than `retain` ago and are written.
    fn evict(&mut self) {
        let horizon = minute_of(now_ms()) - self.retain_ms - MINUTE_MS;
        let old: Vec<i64> = self
            .minutes
            .range(..horizon)
            .filter(|(_, cells)| cells.dirty.is_empty())
            .map(|(minute, _)| *minute)
            .collect();
        for minute in old {
            if let Some(cells) = self.minutes.remove(&minute) {
                for key in cells.cells.keys() {
                    self.unwritten_index.remove(key);
                }
            }
            self.evicted_through = self.evicted_through.max(minute);
        }
    }

    /// Loads this writer's rows of a minute that left memory, so a late event adds to them.
    async fn reload(&mut self, minute: i64) {
        let mut cells = MinuteCells::default();
        for grouping in Grouping::ALL {
            match self.sinks.rollups.read(grouping, minute, minute).await {
                Ok(rows) => {
                    for row in rows.into_iter().filter(|row| row.writer == self.writer) {
                        cells.cells.insert(row.key, row.measures);
                    }
                }
                Err(error) => {
                    // Written anyway: a late event then replaces this writer's earlier part of
                    // the minute; logged so that it shows.
                    tracing::warn!(%error, minute, "cannot reload a minute for a late event");
                }
            }
        }
        self.minutes.insert(minute, cells);
    }

    async fn flush_trending(&mut self) {
        let trending = &self.sinks.trending;
        let built = match trending.is_built().await {
            Ok(built) => built,
            Err(error) => {
                tracing::warn!(%error, "trending store unreachable; starts kept for later");
                self.trending_needs_rebuild = true;
                return;
            }
        };
        if !built || self.trending_needs_rebuild {
            // The rollups are written, so they hold every start up to now: rebuild from them
            // (exact) instead of adding what may have been half-applied.
            match trending::rebuild(trending.as_ref(), self.sinks.rollups.as_ref(), now_ms()).await
            {
                Ok(_) => {
                    self.shared
                        .stats
                        .trending_rebuilds
                        .fetch_add(1, Ordering::Relaxed);
                    self.trending_needs_rebuild = false;
                    self.pending_starts.clear();
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot rebuild trending; trying again at the next flush");
                }
            }
            return;
        }
        if self.pending_starts.is_empty() {
            return;
        }
        let starts: Vec<StartCount> = self
            .pending_starts
            .iter()
            .map(|(&(country, title, minute), &count)| StartCount {
                country,
                title,
                minute,
                count,
            })
            .collect();
        match trending.add(&starts).await {
            Ok(()) => self.pending_starts.clear(),
            Err(error) => {
                // A pipeline cut off half-way may have applied part of it: rebuild when back.
                tracing::warn!(%error, "trending not updated; rebuilding when the store is back");
                self.trending_needs_rebuild = true;
            }
        }
    }

    async fn flush_sessions(&mut self, sessions: FastMap<Uuid, LiveSession>) {
        if sessions.is_empty() {
            return;
        }
        let sessions: Vec<LiveSession> = sessions.into_values().collect();
        match self.sinks.sessions.update(&sessions).await {
            Ok(()) => {
                self.shared
                    .stats
                    .sessions_updated
                    .fetch_add(sessions.len() as u64, Ordering::Relaxed);
            }
            // Live state: the next events of each session bring it back.
            Err(error) => tracing::warn!(%error, "live sessions not updated"),
        }
    }
}
