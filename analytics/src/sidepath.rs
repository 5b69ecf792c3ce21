//! The analytics side path: what the batchers hand over once a batch is durable becomes
//! per-minute rollups, trending increments and live-session updates, coalesced in memory and
//! flushed every `flush_interval` by one task. Recording is a push of each event's small copy
//! (and a live-session update) under a lock of one shard; the flusher folds the copies into the
//! cells. Nothing here waits on I/O on the batchers' side, so an acknowledgement never waits.
//!
//! Rollups are written whole: the flusher keeps each recent minute's cells (every grouping)
//! and rewrites the ones that changed, under this process's own writer id, so a retried write
//! replaces rather than adds. A minute is kept `retain` after it ends; an event for a minute
//! already let go (very late) reloads this writer's rows of that minute first.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;
use wire::{CountryCode, EventKind, PlaybackEvent};

use crate::index::RollupIndex;
use crate::measures::{Measures, Observation};
use crate::rollup::{minute_of, CellKey, Dims, Grouping, RollupRow, MINUTE_MS};
use crate::sessions::{LiveSession, SessionStore};
use crate::store::RollupStore;
use crate::trending::{self, StartCount, TrendingStore};

const SHARDS: usize = 8;
/// Events the flusher folds between yields to the runtime.
const YIELD_EVERY: usize = 16_384;
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

/// One durable event as the flusher folds it into its cells: a copy without allocation, so that
/// the batchers' part of the side path is a push (the per-event work is the flusher's).
struct Fact {
    minute: i64,
    dims: Dims,
    observation: Observation,
}

/// What one shard gathered since the last flush.
#[derive(Default)]
struct Pending {
    facts: Vec<Fact>,
    sessions: FastMap<Uuid, LiveSession>,
}

impl Pending {
    fn record(&mut self, event: &PlaybackEvent) {
        self.facts.push(Fact {
            minute: minute_of(event.ts),
            dims: Dims::of(event),
            observation: Observation::of(event),
        });
        match self.sessions.get_mut(&event.session_id) {
            Some(session) => session.absorb(event),
            None => {
                self.sessions
                    .insert(event.session_id, LiveSession::of(event));
            }
        }
    }

    fn clear(&mut self) {
        self.facts.clear();
        self.sessions.clear();
    }
}

/// Folds a shard's sessions into `into`: the newest event of a session wins.
fn merge_sessions(
    into: &mut FastMap<Uuid, LiveSession>,
    from: impl IntoIterator<Item = (Uuid, LiveSession)>,
) {
    for (id, session) in from {
        match into.get_mut(&id) {
            Some(known) if known.last_event_at > session.last_event_at => {
                known.seen_at = known.seen_at.max(session.seen_at);
            }
            Some(known) => {
                let state = session.state.or(known.state);
                *known = LiveSession { state, ..session };
            }
            None => {
                into.insert(id, session);
            }
        }
    }
}

/// Counters the service reports.
#[derive(Debug, Default)]
pub struct AnalyticsStats {
    pub events: AtomicU64,
    /// Events folded into rollups that are written: once it equals `events`, the side path has
    /// caught up.
    pub events_flushed: AtomicU64,
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
        pending.facts.reserve(events.len());
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
        pending_starts: FastMap::default(),
        folded_unwritten: 0,
        spares: (0..SHARDS).map(|_| Pending::default()).collect(),
        sessions: FastMap::default(),
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

/// A cell of a recent minute, and whether it changed since it was last written.
#[derive(Default)]
struct Cell {
    measures: Measures,
    dirty: bool,
}

/// One recent minute: its cells in every grouping, and those not yet written (each once).
#[derive(Default)]
struct MinuteCells {
    cells: FastMap<CellKey, Cell>,
    dirty: Vec<CellKey>,
}

impl MinuteCells {
    fn observe(&mut self, key: CellKey, observation: &Observation) {
        let cell = match self.cells.entry(key) {
            Entry::Occupied(cell) if cell.get().dirty => cell.into_mut(),
            entry => {
                self.dirty.push(entry.key().clone());
                let cell = entry.or_default();
                cell.dirty = true;
                cell
            }
        };
        cell.measures.observe(observation);
    }
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
    pending_starts: FastMap<(Option<CountryCode>, u64, i64), u64>,
    /// Events folded into cells not yet written.
    folded_unwritten: u64,
    /// The shards' buffers of the last flush, emptied, swapped in at the next: their capacity
    /// is kept, so the batchers do not regrow them every flush.
    spares: Vec<Pending>,
    /// The sessions of one flush, merged over the shards (emptied after each flush).
    sessions: FastMap<Uuid, LiveSession>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

impl Flusher {
    /// Swaps each shard's buffers for the spares.
    fn take(&mut self) -> Vec<Pending> {
        let mut taken = std::mem::take(&mut self.spares);
        for (shard, spare) in self.shared.shards.iter().zip(taken.iter_mut()) {
            std::mem::swap(
                &mut *shard.lock().unwrap_or_else(PoisonError::into_inner),
                spare,
            );
        }
        taken
    }

    async fn flush(&mut self) {
        let mut taken = self.take();
        let rollups_ok = self.flush_rollups(&taken).await;
        if rollups_ok {
            self.flush_trending().await;
        }
        let mut sessions = std::mem::take(&mut self.sessions);
        for pending in &mut taken {
            merge_sessions(&mut sessions, pending.sessions.drain());
            pending.clear();
        }
        self.flush_sessions(&mut sessions).await;
        self.sessions = sessions;
        self.spares = taken;
    }

    /// Folds the events into their minutes' cells, every grouping, and writes the changed cells.
    async fn flush_rollups(&mut self, taken: &[Pending]) -> bool {
        for (folded, fact) in taken.iter().flat_map(|pending| &pending.facts).enumerate() {
            if folded % YIELD_EVERY == YIELD_EVERY - 1 {
                // A flush after a burst folds millions of events: let the worker serve requests.
                tokio::task::yield_now().await;
            }
            self.folded_unwritten += 1;
            let minute = fact.minute;
            if fact.observation.kind == EventKind::Start {
                let start = (fact.dims.country, fact.dims.title.unwrap_or(0), minute);
                *self.pending_starts.entry(start).or_default() += 1;
            }
            if !self.minutes.contains_key(&minute) && minute <= self.evicted_through {
                self.reload(minute).await;
            }
            let cells = self.minutes.entry(minute).or_default();
            for grouping in Grouping::ALL {
                let key = CellKey {
                    grouping,
                    minute,
                    dims: grouping.project(&fact.dims),
                };
                cells.observe(key, &fact.observation);
            }
        }
        let mut rows = Vec::new();
        for cells in self.minutes.values_mut() {
            // In key order: the stores' B-trees take neighbouring keys page by page.
            cells.dirty.sort_unstable();
            for key in &cells.dirty {
                rows.push(RollupRow {
                    key: key.clone(),
                    writer: self.writer.clone(),
                    measures: cells.cells[key].measures.clone(),
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
                    let indexed = self.sinks.index.is_some();
                    for cells in self.minutes.values_mut() {
                        for key in cells.dirty.drain(..) {
                            if let Some(cell) = cells.cells.get_mut(&key) {
                                cell.dirty = false;
                            }
                            if indexed {
                                self.unwritten_index.insert(key);
                            }
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
        if ok {
            let folded = std::mem::take(&mut self.folded_unwritten);
            self.shared
                .stats
                .events_flushed
                .fetch_add(folded, Ordering::Relaxed);
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
                let cell = self.minutes.get(&key.minute)?.cells.get(key)?;
                Some(RollupRow {
                    key: key.clone(),
                    writer: self.writer.clone(),
                    measures: cell.measures.clone(),
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
                        cells.cells.insert(
                            row.key,
                            Cell {
                                measures: row.measures,
                                dirty: false,
                            },
                        );
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

    async fn flush_sessions(&mut self, sessions: &mut FastMap<Uuid, LiveSession>) {
        if sessions.is_empty() {
            return;
        }
        let sessions: Vec<LiveSession> = sessions.drain().map(|(_, session)| session).collect();
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
