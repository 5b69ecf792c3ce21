//! History on the packed layout: the viewer's events newest first, from stored chunks and from
//! memory, each `event_id` once, exactly `limit` of them, reading in proportion to the limit:
//! days newest first, each day's chunks newest `last_ts` first, stopping as soon as no chunk
//! left unread can hold an event newer than the last one to return.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

use uuid::Uuid;
use wire::{PlaybackEvent, MS_PER_DAY};

use super::{ChunkPage, ChunkStore};
use crate::sink::{block, HistoryQuery, SinkError};

/// Chunks fetched per request: a chunk holds up to `chunks.max_events` events, so a page
/// usually covers a `limit` of 100.
const PAGE_CHUNKS: usize = 16;

/// An event in the heap, ordered newest first.
struct Newest(PlaybackEvent);

impl Newest {
    fn key(&self) -> (i64, Uuid, i64) {
        (self.0.ts, self.0.event_id, self.0.received_at)
    }
}

impl PartialEq for Newest {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Newest {}
impl PartialOrd for Newest {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Newest {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// What has been decided: events out, in order, each id once.
struct Answer {
    candidates: BinaryHeap<Newest>,
    seen: HashSet<Uuid>,
    events: Vec<PlaybackEvent>,
    limit: usize,
}

impl Answer {
    fn full(&self) -> bool {
        self.events.len() >= self.limit
    }

    /// Emits every candidate at least as new as `bound` (nothing unread can be newer).
    fn emit_down_to(&mut self, bound: i64) {
        while !self.full() {
            match self.candidates.peek() {
                Some(newest) if newest.0.ts >= bound => {}
                _ => return,
            }
            let Newest(event) = self.candidates.pop().expect("peeked");
            if self.seen.insert(event.event_id) {
                self.events.push(event);
            }
        }
    }
}

/// `expired_before`: events received before it have outlived the retention.
pub async fn history<S: ChunkStore>(
    store: &S,
    query: HistoryQuery,
    in_memory: Vec<PlaybackEvent>,
    expired_before: i64,
) -> Result<Vec<PlaybackEvent>, SinkError> {
    let live = |event: &PlaybackEvent| event.received_at >= expired_before;
    let mut answer = Answer {
        candidates: in_memory.into_iter().filter(live).map(Newest).collect(),
        seen: HashSet::new(),
        events: Vec::new(),
        limit: query.limit,
    };
    if query.limit == 0 || query.from_ms > query.to_ms {
        return Ok(Vec::new());
    }
    let day_of = |ms: i64| {
        ms.div_euclid(MS_PER_DAY)
            .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
    };
    let days = store
        .days(query.user_id, day_of(query.from_ms), day_of(query.to_ms))
        .await?;
    for day in days {
        // Every event of this day and older is older than the day's first millisecond.
        let next_day_start = (i64::from(day) + 1).saturating_mul(MS_PER_DAY);
        answer.emit_down_to(next_day_start);
        if answer.full() {
            break;
        }
        let mut after = None;
        loop {
            let page = store
                .chunks(ChunkPage {
                    user_id: query.user_id,
                    day,
                    from_ms: query.from_ms,
                    after,
                    limit: PAGE_CHUNKS,
                })
                .await?;
            for chunk in &page {
                // Nothing in this chunk or after it is newer than its last event.
                answer.emit_down_to(chunk.last_ts.saturating_add(1));
                if answer.full() {
                    break;
                }
                if chunk.first_ts > query.to_ms {
                    continue;
                }
                let events = block::decode(&chunk.block)
                    .map_err(|error| SinkError::Failed(format!("a stored chunk: {error}")))?;
                answer.candidates.extend(
                    events
                        .into_iter()
                        .filter(|event| {
                            event.ts >= query.from_ms && event.ts <= query.to_ms && live(event)
                        })
                        .map(Newest),
                );
            }
            if answer.full() || page.len() < PAGE_CHUNKS {
                break;
            }
            after = page.last().map(|chunk| (chunk.last_ts, chunk.chunk_id));
        }
        if answer.full() {
            break;
        }
    }
    answer.emit_down_to(i64::MIN);
    Ok(answer.events)
}
