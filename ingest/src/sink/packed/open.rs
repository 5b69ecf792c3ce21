//! One shard's open chunks: each durable event joins its viewer's open chunk of its day; a chunk
//! closes on a trigger (size, age, the session's end, the day boundary, the memory bound,
//! shutdown) and waits, still readable, until the store has it. What the log still holds that
//! no stored chunk does is tracked per log entry, so the checkpoint is exact.

use std::collections::{BTreeMap, BTreeSet, HashMap};

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
    open: HashMap<u64, Vec<(i32, OpenChunk)>>,
    /// Open chunks, oldest first: `(opened_at_ms, user_id, day)`.
    by_age: BTreeSet<(i64, u64, i32)>,
    open_bytes: usize,
    /// Closed, not yet stored; readable meanwhile.
    closed: Vec<ClosedChunk>,
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
        events: &[PlaybackEvent],
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
        for event in events {
            let day = event.day();
            let key = (event.user_id, day);
            if self.chunk_mut(key).is_none() {
                // The viewer has moved past midnight: yesterday's chunk is complete.
                self.close((event.user_id, day - 1), CloseReason::DayBoundary);
                self.open.entry(event.user_id).or_default().push((
                    day,
                    OpenChunk {
                        events: Vec::new(),
                        positions: Vec::new(),
                        opened_at_ms: now_ms,
                        bytes: 0,
                    },
                ));
                self.by_age.insert((now_ms, event.user_id, day));
            }
            let bytes = event_bytes(event);
            self.open_bytes += bytes;
            let chunk = self.chunk_mut(key).expect("inserted above");
            chunk.events.push(event.clone());
            chunk.positions.push(position);
            chunk.bytes += bytes;
            if chunk.events.len() >= limits.max_events {
                self.close(key, CloseReason::Full);
            } else if matches!(event.kind, EventKind::Stop | EventKind::Complete) {
                self.close(key, CloseReason::SessionEnded);
            }
        }
        while self.open_bytes > limits.max_open_bytes {
            let Some(&(_, user_id, day)) = self.by_age.first() else {
                break;
            };
            self.close((user_id, day), CloseReason::MemoryBound);
        }
    }

    /// Closes the chunks opened `max_age` or longer before `now_ms`.
    pub fn close_aged(&mut self, limits: &ChunkLimits, now_ms: i64) {
        let max_age = limits.max_age.as_millis().min(i64::MAX as u128) as i64;
        while let Some(&(opened_at, user_id, day)) = self.by_age.first() {
            if now_ms.saturating_sub(opened_at) < max_age {
                break;
            }
            self.close((user_id, day), CloseReason::Aged);
        }
    }

    /// Closes every open chunk (shutdown).
    pub fn close_all(&mut self) {
        while let Some(&(_, user_id, day)) = self.by_age.first() {
            self.close((user_id, day), CloseReason::Shutdown);
        }
    }

    fn chunk_mut(&mut self, (user_id, day): (u64, i32)) -> Option<&mut OpenChunk> {
        self.open
            .get_mut(&user_id)?
            .iter_mut()
            .find(|(open_day, _)| *open_day == day)
            .map(|(_, chunk)| chunk)
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
        self.by_age.remove(&(chunk.opened_at_ms, key.0, key.1));
        self.open_bytes -= chunk.bytes;
        self.closed.push(ClosedChunk::new(
            key.0,
            key.1,
            chunk.events,
            chunk.positions,
            reason,
        ));
    }

    /// The closed chunks waiting for the store (cloned: they stay readable until stored).
    pub fn closed(&self) -> Vec<ClosedChunk> {
        self.closed.clone()
    }

    pub fn has_closed(&self) -> bool {
        !self.closed.is_empty()
    }

    /// The store has these chunks now: they leave memory, and their log entries are done.
    pub fn stored(&mut self, chunks: &[ClosedChunk]) {
        let ids: BTreeSet<(u64, i32, u64)> = chunks
            .iter()
            .map(|chunk| (chunk.user_id, chunk.day, chunk.chunk_id))
            .collect();
        self.closed
            .retain(|chunk| !ids.contains(&(chunk.user_id, chunk.day, chunk.chunk_id)));
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
        let chunks = self.by_age.len();
        let events = self
            .open
            .values()
            .flatten()
            .map(|(_, chunk)| chunk.events.len())
            .sum();
        (chunks, events, self.open_bytes)
    }
}
