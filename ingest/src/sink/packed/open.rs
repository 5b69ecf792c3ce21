//! One shard's open chunks: each durable event joins its viewer's open chunk of its day; a chunk
//! closes on a trigger (size, age, the session's end, the day boundary, the memory bound,
//! shutdown) and waits, still readable, until the store has it. What the log still holds that
//! no stored chunk does is tracked per log entry, so the checkpoint is exact.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use wire::{EventKind, PlaybackEvent};

use super::{ChunkLimits, ClosedChunk, LogPos};

/// Bytes an event is counted for in memory (the struct, its texts, the index entries).
fn event_bytes(event: &PlaybackEvent) -> usize {
    let text = |field: &Option<wire::SmolStr>| field.as_ref().map_or(0, |text| text.len());
    std::mem::size_of::<PlaybackEvent>()
        + std::mem::size_of::<LogPos>()
        + text(&event.error_code)
        + text(&event.device)
        + text(&event.cdn)
        + text(&event.app_version)
}

struct OpenChunk {
    /// Copies: a reference into its batch would keep the whole batch in memory for as long as
    /// any one of its events waits, past what `max_open_bytes` counts.
    events: Vec<PlaybackEvent>,
    /// The log entry of each event, for the checkpoint.
    positions: Vec<LogPos>,
    opened_at_ms: i64,
    bytes: usize,
}

/// A write whose log position is not known yet: the checkpoint may not pass `floor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket {
    floor: LogPos,
    id: u64,
}

/// User ids are already well spread (and never chosen by a hostile party to collide in one
/// shard's map any worse than in the pipeline's routing): one multiply, not SipHash.
#[derive(Default)]
pub struct UserHasher(u64);

impl Hasher for UserHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (value ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        self.0 ^= self.0 >> 31;
    }
}

/// Why a chunk closed (counted, and tested trigger by trigger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    Full,
    Aged,
    SessionEnded,
    DayBoundary,
    MemoryBound,
    Shutdown,
}

/// The open chunks of one shard, and what of its log is not yet in stored chunks.
#[derive(Default)]
pub struct ShardChunks {
    /// Per viewer, the open chunk of each day (rarely more than one).
    open: HashMap<u64, Vec<(i32, OpenChunk)>, BuildHasherDefault<UserHasher>>,
    /// Chunks in the order they opened (so oldest first): `(opened_at_ms, user_id, day)`. A
    /// chunk closed by another trigger leaves its entry behind; it is skipped when reached.
    by_age: VecDeque<(i64, u64, i32)>,
    open_chunks: usize,
    open_bytes: usize,
    /// Bytes of closed chunks not yet stored: writes wait while they pass the memory bound, so
    /// a store slower than the writers slows the writers instead of filling memory.
    closed_bytes: usize,
    /// Closed, not yet stored, in the order they closed; readable meanwhile.
    closed: Vec<Arc<ClosedChunk>>,
    /// Events of each log entry not yet in a stored chunk.
    pending: BTreeMap<LogPos, u32>,
    tickets: BTreeSet<Ticket>,
    next_ticket: u64,
    /// Everything before this is in stored chunks (or was never written).
    next_position: LogPos,
}

impl ShardChunks {
    /// Starts where the log replay starts: everything before `replay_from` is stored.
    pub fn new(replay_from: LogPos) -> ShardChunks {
        ShardChunks {
            next_position: replay_from,
            ..ShardChunks::default()
        }
    }

    /// Before a log append: holds the checkpoint back until [`ShardChunks::admit`] or
    /// [`ShardChunks::abandon`].
    pub fn reserve(&mut self) -> Ticket {
        self.next_ticket += 1;
        let ticket = Ticket {
            floor: self.next_position,
            id: self.next_ticket,
        };
        self.tickets.insert(ticket);
        ticket
    }

    /// The append failed: nothing of it is in the log.
    pub fn abandon(&mut self, ticket: Ticket) {
        self.tickets.remove(&ticket);
    }

    /// A durable log entry's events join their open chunks (chunks that fill up, end a session
    /// or cross the memory bound close).
    pub fn admit(
        &mut self,
        ticket: Option<Ticket>,
        position: LogPos,
        events: &Arc<Vec<PlaybackEvent>>,
        limits: &ChunkLimits,
        now_ms: i64,
    ) {
        if let Some(ticket) = ticket {
            self.tickets.remove(&ticket);
        }
        if events.is_empty() {
            return;
        }
        self.next_position = self.next_position.max(position + 1);
        *self.pending.entry(position).or_default() += events.len() as u32;
        for event in events.iter() {
            let (user_id, day) = (event.user_id, event.day());
            let bytes = event_bytes(event);
            self.open_bytes += bytes;
            // Most events join a chunk already open: one lookup for them.
            let days = self.open.entry(user_id).or_default();
            let chunk = match days.iter_mut().position(|(open_day, _)| *open_day == day) {
                Some(at) => &mut days[at].1,
                None => {
                    if days.iter().any(|(open_day, _)| *open_day == day - 1) {
                        // The viewer has moved past midnight: yesterday's chunk is complete.
                        self.close((user_id, day - 1), CloseReason::DayBoundary);
                    }
                    self.by_age.push_back((now_ms, user_id, day));
                    self.open_chunks += 1;
                    let days = self.open.entry(user_id).or_default();
                    days.push((
                        day,
                        OpenChunk {
                            events: Vec::new(),
                            positions: Vec::new(),
                            opened_at_ms: now_ms,
                            bytes: 0,
                        },
                    ));
                    &mut days.last_mut().expect("pushed above").1
                }
            };
            chunk.events.push(event.clone());
            chunk.positions.push(position);
            chunk.bytes += bytes;
            let reason = if chunk.events.len() >= limits.max_events {
                Some(CloseReason::Full)
            } else if matches!(event.kind, EventKind::Stop | EventKind::Complete) {
                Some(CloseReason::SessionEnded)
            } else {
                None
            };
            if let Some(reason) = reason {
                self.close((user_id, day), reason);
            }
        }
        while self.open_bytes > limits.max_open_bytes {
            let Some((opened_at, user_id, day)) = self.by_age.pop_front() else {
                break;
            };
            self.close_opened_at((user_id, day), opened_at, CloseReason::MemoryBound);
        }
    }

    /// Closes the chunk of `key` if it is the one opened at `opened_at` (not a later one).
    fn close_opened_at(&mut self, key: (u64, i32), opened_at: i64, reason: CloseReason) {
        let current = self
            .open
            .get(&key.0)
            .and_then(|days| days.iter().find(|(day, _)| *day == key.1))
            .map(|(_, chunk)| chunk.opened_at_ms);
        if current == Some(opened_at) {
            self.close(key, reason);
        }
    }

    /// Closes the chunks opened `max_age` or longer before `now_ms`.
    pub fn close_aged(&mut self, limits: &ChunkLimits, now_ms: i64) {
        let max_age = limits.max_age.as_millis().min(i64::MAX as u128) as i64;
        while let Some(&(opened_at, user_id, day)) = self.by_age.front() {
            if now_ms.saturating_sub(opened_at) < max_age {
                break;
            }
            self.by_age.pop_front();
            self.close_opened_at((user_id, day), opened_at, CloseReason::Aged);
        }
    }

    /// Closes every open chunk (shutdown).
    pub fn close_all(&mut self) {
        while let Some((opened_at, user_id, day)) = self.by_age.pop_front() {
            self.close_opened_at((user_id, day), opened_at, CloseReason::Shutdown);
        }
    }

    fn close(&mut self, key: (u64, i32), reason: CloseReason) {
        let (user_id, day) = key;
        let Some(days) = self.open.get_mut(&user_id) else {
            return;
        };
        let Some(at) = days.iter().position(|(open_day, _)| *open_day == day) else {
            return;
        };
        let (_, chunk) = days.swap_remove(at);
        if days.is_empty() {
            self.open.remove(&user_id);
        }
        self.open_chunks -= 1;
        self.open_bytes -= chunk.bytes;
        self.closed_bytes += chunk.bytes;
        self.closed.push(Arc::new(ClosedChunk::new(
            key.0,
            key.1,
            chunk.events,
            chunk.positions,
            chunk.bytes,
            reason,
        )));
    }

    /// The closed chunks waiting for the store, oldest first (shared: they stay readable until
    /// stored).
    #[cfg(test)]
    pub fn closed(&self) -> Vec<Arc<ClosedChunk>> {
        self.closed.clone()
    }

    /// The `count` oldest closed chunks (all of them when fewer).
    pub fn oldest_closed(&self, count: usize) -> Vec<Arc<ClosedChunk>> {
        self.closed[..count.min(self.closed.len())].to_vec()
    }

    pub fn has_closed(&self) -> bool {
        !self.closed.is_empty()
    }

    /// Whether closed chunks waiting for the store hold more than the memory bound.
    pub fn backlogged(&self, limits: &ChunkLimits) -> bool {
        self.closed_bytes > limits.max_open_bytes
    }

    /// The store has these chunks now, the oldest of the closed ones (as [`ShardChunks::closed`]
    /// gave them): they leave memory, and their log entries are done.
    pub fn stored(&mut self, chunks: &[Arc<ClosedChunk>]) {
        let stored = chunks.len().min(self.closed.len());
        debug_assert!(self.closed[..stored]
            .iter()
            .zip(chunks)
            .all(|(kept, done)| Arc::ptr_eq(kept, done)));
        for chunk in self.closed.drain(..stored) {
            self.closed_bytes = self.closed_bytes.saturating_sub(chunk.bytes);
        }
        for chunk in chunks {
            for &position in &chunk.positions {
                if let Some(count) = self.pending.get_mut(&position) {
                    *count -= 1;
                    if *count == 0 {
                        self.pending.remove(&position);
                    }
                }
            }
        }
    }

    /// Where a replay would have to start: every log entry before it is in stored chunks.
    pub fn checkpoint(&self) -> LogPos {
        let mut checkpoint = self.next_position;
        if let Some((&position, _)) = self.pending.first_key_value() {
            checkpoint = checkpoint.min(position);
        }
        if let Some(ticket) = self.tickets.first() {
            checkpoint = checkpoint.min(ticket.floor);
        }
        checkpoint
    }

    /// The user's events in memory (open and closed chunks) with `from <= ts <= to`.
    pub fn events_of(&self, user_id: u64, from_ms: i64, to_ms: i64, out: &mut Vec<PlaybackEvent>) {
        let in_range = |event: &&PlaybackEvent| event.ts >= from_ms && event.ts <= to_ms;
        for (_, chunk) in self.open.get(&user_id).into_iter().flatten() {
            out.extend(chunk.events.iter().filter(in_range).cloned());
        }
        for chunk in &self.closed {
            if chunk.user_id == user_id {
                out.extend(chunk.events.iter().filter(in_range).cloned());
            }
        }
    }

    /// Open chunks, events in them, and bytes they hold (for metrics and tests).
    pub fn sizes(&self) -> (usize, usize, usize) {
        let chunks = self.open_chunks;
        let events = self
            .open
            .values()
            .flatten()
            .map(|(_, chunk)| chunk.events.len())
            .sum();
        (chunks, events, self.open_bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn batch(user_id: u64, ts: i64) -> Arc<Vec<PlaybackEvent>> {
        Arc::new(vec![testkit::event(user_id, ts)])
    }

    fn limits(max_events: usize) -> ChunkLimits {
        ChunkLimits {
            max_events,
            max_age: Duration::from_secs(60),
            max_open_bytes: 1 << 30,
            commit_interval: Duration::from_millis(100),
        }
    }

    #[test]
    fn the_checkpoint_waits_for_every_event_of_a_log_entry() {
        let mut shard = ShardChunks::new(100);
        assert_eq!(shard.checkpoint(), 100);
        let events = Arc::new(vec![testkit::event(1, 10), testkit::event(2, 10)]);
        shard.admit(None, 100, &events, &limits(1), 0);
        // Both closed (one event each), neither stored: the entry is pending.
        assert_eq!(shard.checkpoint(), 100);
        let closed = shard.closed();
        assert_eq!(closed.len(), 2);
        shard.stored(&closed[..1]);
        assert_eq!(
            shard.checkpoint(),
            100,
            "one event of the entry is not stored yet"
        );
        shard.stored(&closed[1..]);
        assert_eq!(shard.checkpoint(), 101);
        assert!(!shard.has_closed());
    }

    #[test]
    fn an_append_in_flight_holds_the_checkpoint_back() {
        let mut shard = ShardChunks::new(0);
        let slow = shard.reserve();
        let fast = shard.reserve();
        // The second append lands first, and its chunk is stored.
        shard.admit(Some(fast), 20, &batch(1, 5), &limits(1), 0);
        let closed = shard.closed();
        shard.stored(&closed);
        assert_eq!(
            shard.checkpoint(),
            0,
            "the first append may still land before 20"
        );
        shard.admit(Some(slow), 10, &batch(2, 5), &limits(1), 0);
        assert_eq!(shard.checkpoint(), 10);
        let closed = shard.closed();
        shard.stored(&closed);
        assert_eq!(shard.checkpoint(), 21);
        let failed = shard.reserve();
        assert_eq!(shard.checkpoint(), 21);
        shard.abandon(failed);
        assert_eq!(shard.checkpoint(), 21);
    }

    #[test]
    fn chunks_are_per_viewer_and_day_and_closed_chunks_stay_readable() {
        let mut shard = ShardChunks::new(0);
        let day = wire::MS_PER_DAY;
        let events = Arc::new(vec![
            testkit::event(1, day + 5),
            testkit::event(1, day + 6),
            testkit::event(2, day + 7),
        ]);
        shard.admit(None, 0, &events, &limits(10), 0);
        assert_eq!(shard.sizes().0, 2);
        // Viewer 1 moves to the next day: yesterday's chunk closes.
        shard.admit(None, 1, &batch(1, 2 * day + 1), &limits(10), 0);
        let closed = shard.closed();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].reason, CloseReason::DayBoundary);
        assert_eq!(closed[0].last_ts, day + 6);
        assert_eq!(closed[0].first_ts, day + 5);
        let mut found = Vec::new();
        shard.events_of(1, i64::MIN, i64::MAX, &mut found);
        assert_eq!(found.len(), 3);
        shard.close_aged(&limits(10), 60_000);
        assert_eq!(shard.sizes().0, 0, "every chunk aged out");
    }
}
