//! The store itself, synchronous: shards of segment files, an in-memory index of blocks,
//! retention. `sink.rs` puts it behind the async [`crate::sink::EventSink`] trait.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use wire::PlaybackEvent;

use super::segment::{self, SegmentWriter};
use crate::now_ms;
use crate::sink::block::{self, BlockHeader, Bloom, RowReader};
use crate::sink::{newest_first_unique, HistoryQuery};

/// Bits of a log position that hold the block's offset in its segment; the segment's number
/// is above them (a segment is far smaller than 2^40 bytes).
const POSITION_OFFSET_BITS: u32 = 40;

/// The position of the block at `offset` of segment `seq` in its shard's log: positions grow
/// with every append.
pub fn log_position(seq: u64, offset: u64) -> u64 {
    (seq << POSITION_OFFSET_BITS) | offset
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub data_dir: PathBuf,
    /// Append streams, one per pipeline shard.
    pub shards: usize,
    /// An event expires this long after it was written.
    pub retention: Duration,
    pub segment_bytes: u64,
    /// fsync each block before the write returns.
    pub fsync: bool,
}

/// Sizes, for benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub segments: usize,
    pub blocks: usize,
    /// Rows stored (duplicates across batches included until they expire).
    pub rows: u64,
    pub bytes_on_disk: u64,
}

struct IndexedBlock {
    offset: u64,
    header: BlockHeader,
    bloom: Bloom,
}

struct IndexedSegment {
    file: Arc<File>,
    path: PathBuf,
    blocks: Vec<IndexedBlock>,
    bytes: u64,
}

impl IndexedSegment {
    fn max_received_at(&self) -> i64 {
        self.blocks
            .iter()
            .map(|block| block.header.max_received_at)
            .max()
            .unwrap_or(i64::MIN)
    }
}

struct Shard {
    dir: PathBuf,
    writer: Mutex<ShardWriter>,
    segments: RwLock<BTreeMap<u64, IndexedSegment>>,
}

struct ShardWriter {
    active: SegmentWriter,
    /// After a failed write or fsync the file's state is unknown: start a new segment.
    must_roll: bool,
}

/// The embedded event store.
pub struct EventStore {
    options: StoreOptions,
    shards: Vec<Shard>,
    /// How blocks are written: zstd when the segments are the history (the rows layout), as
    /// is when they are only the packed layout's log (`EventStore::open_log`).
    payload: block::Payload,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EventStore {
    /// Opens (or creates) a store whose segments are the history, recovering each shard: a
    /// torn tail left by a crash is cut.
    pub fn open(options: StoreOptions) -> io::Result<EventStore> {
        EventStore::open_with(options, block::Payload::Zstd)
    }

    /// Opens the store as the packed layout's log: segments deleted once their events are in
    /// chunks, so blocks are written without zstd (blocks of either kind are read).
    pub fn open_log(options: StoreOptions) -> io::Result<EventStore> {
        EventStore::open_with(options, block::Payload::AsIs)
    }

    fn open_with(options: StoreOptions, payload: block::Payload) -> io::Result<EventStore> {
        let events_dir = options.data_dir.join("events");
        fs::create_dir_all(&events_dir)?;
        let existing_shards = fs::read_dir(&events_dir)?
            .filter_map(|entry| {
                entry
                    .ok()?
                    .file_name()
                    .to_str()?
                    .strip_prefix("shard-")?
                    .parse::<usize>()
                    .ok()
            })
            .map(|shard| shard + 1)
            .max()
            .unwrap_or(0);
        let shard_count = options.shards.max(existing_shards).max(1);
        let shards = (0..shard_count)
            .map(|shard| open_shard(&events_dir.join(format!("shard-{shard}")), &options))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(EventStore {
            options,
            shards,
            payload,
        })
    }

    fn retention_ms(&self) -> i64 {
        self.options.retention.as_millis().min(i64::MAX as u128) as i64
    }

    /// Age at which the active segment is closed, so that retention can delete it.
    fn max_segment_age_ms(&self) -> i64 {
        (self.retention_ms() / 8).max(1)
    }

    /// Appends a batch as one block; durable when this returns (with `fsync`). Returns the
    /// block's position in its shard's log ([`log_position`]).
    pub fn append(&self, shard: usize, events: &[PlaybackEvent]) -> io::Result<u64> {
        let shard_index = shard % self.shards.len();
        if events.is_empty() {
            let writer = lock(&self.shards[shard_index].writer);
            return Ok(log_position(writer.active.seq, writer.active.len));
        }
        let block = block::encode_as(events, self.payload);
        let shard = &self.shards[shard_index];
        let mut writer = lock(&shard.writer);
        let now = now_ms();
        let full = writer.active.len + block.bytes.len() as u64 > self.options.segment_bytes;
        let old = now - writer.active.opened_at_ms > self.max_segment_age_ms();
        if writer.must_roll || (writer.active.len > 0 && (full || old)) {
            self.roll(shard, &mut writer, now)?;
        }
        let offset = match writer.active.append(&block.bytes, self.options.fsync) {
            Ok(offset) => offset,
            Err(error) => {
                writer.must_roll = true;
                return Err(error);
            }
        };
        let mut segments = shard
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let segment = segments
            .entry(writer.active.seq)
            .or_insert_with(|| IndexedSegment {
                file: writer.active.file.clone(),
                path: segment::segment_path(&shard.dir, writer.active.seq),
                blocks: Vec::new(),
                bytes: 0,
            });
        segment.bytes = writer.active.len;
        segment.blocks.push(IndexedBlock {
            offset,
            header: block.header,
            bloom: block.bloom,
        });
        Ok(log_position(writer.active.seq, offset))
    }

    /// Shards (append streams) the store has.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The blocks of `shard`'s log at or after `from`, in order, with their positions.
    pub fn log_since(&self, shard: usize, from: u64) -> io::Result<Vec<(u64, Vec<PlaybackEvent>)>> {
        let shard = &self.shards[shard % self.shards.len()];
        let located: Vec<(u64, Arc<File>, u64, BlockHeader)> = {
            let segments = shard
                .segments
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            segments
                .range(from >> POSITION_OFFSET_BITS..)
                .flat_map(|(seq, segment)| {
                    segment.blocks.iter().map(move |block| {
                        (
                            log_position(*seq, block.offset),
                            segment.file.clone(),
                            block.offset,
                            block.header.clone(),
                        )
                    })
                })
                .filter(|(position, ..)| *position >= from)
                .collect()
        };
        let mut entries = Vec::with_capacity(located.len());
        for (position, file, offset, header) in located {
            let raw = segment::read_block(&file, offset, &header)?;
            let events = RowReader::new(&raw).collect::<io::Result<Vec<_>>>()?;
            entries.push((position, events));
        }
        Ok(entries)
    }

    /// Deletes `shard`'s closed segments wholly before `position` (their blocks are in stored
    /// chunks). Returns how many were deleted.
    pub fn drop_log_before(&self, shard: usize, position: u64) -> io::Result<usize> {
        let shard = &self.shards[shard % self.shards.len()];
        let active = lock(&shard.writer).active.seq;
        let keep_from = (position >> POSITION_OFFSET_BITS).min(active);
        let mut segments = shard
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let done: Vec<u64> = segments.range(..keep_from).map(|(seq, _)| *seq).collect();
        for seq in &done {
            if let Some(segment) = segments.remove(seq) {
                fs::remove_file(&segment.path)?;
            }
        }
        Ok(done.len())
    }

    fn roll(&self, shard: &Shard, writer: &mut ShardWriter, now: i64) -> io::Result<()> {
        let next = SegmentWriter::create(&shard.dir, writer.active.seq + 1, now)?;
        writer.active = next;
        writer.must_roll = false;
        Ok(())
    }

    /// A user's events in `[from_ms, to_ms]`, newest first, each primary key once.
    pub fn history(&self, query: &HistoryQuery) -> io::Result<Vec<PlaybackEvent>> {
        let now = now_ms();
        let retention = self.retention_ms();
        let alive = |received_at: i64| received_at.saturating_add(retention) > now;
        let mut candidates = Vec::new();
        for shard in &self.shards {
            let segments = shard
                .segments
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            for segment in segments.values() {
                for block in &segment.blocks {
                    let header = &block.header;
                    if header.max_ts >= query.from_ms
                        && header.min_ts <= query.to_ms
                        && alive(header.max_received_at)
                        && block.bloom.may_contain(query.user_id)
                    {
                        candidates.push((segment.file.clone(), block.offset, header.clone()));
                    }
                }
            }
        }
        let mut found = Vec::new();
        for (file, offset, header) in candidates {
            let raw = segment::read_block(&file, offset, &header)?;
            for row in RowReader::new(&raw) {
                let row = row?;
                // Rows are sorted by user: past ours, the block holds nothing more for us.
                if row.user_id > query.user_id {
                    break;
                }
                if row.user_id == query.user_id
                    && (query.from_ms..=query.to_ms).contains(&row.ts)
                    && alive(row.received_at)
                {
                    found.push(row);
                }
            }
        }
        Ok(newest_first_unique(found, query.limit))
    }

    /// Deletes closed segments whose newest row has expired; closes an active segment that has
    /// grown old so that it can expire too. Returns how many segments were deleted.
    pub fn expire(&self) -> io::Result<usize> {
        let now = now_ms();
        let retention = self.retention_ms();
        let mut deleted = 0;
        for shard in &self.shards {
            let mut writer = lock(&shard.writer);
            if writer.active.len > 0 && now - writer.active.opened_at_ms > self.max_segment_age_ms()
            {
                self.roll(shard, &mut writer, now)?;
            }
            let active = writer.active.seq;
            let mut segments = shard
                .segments
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let expired: Vec<u64> = segments
                .iter()
                .filter(|(seq, segment)| {
                    **seq != active && segment.max_received_at().saturating_add(retention) <= now
                })
                .map(|(seq, _)| *seq)
                .collect();
            for seq in expired {
                if let Some(segment) = segments.remove(&seq) {
                    fs::remove_file(&segment.path)?;
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    pub fn stats(&self) -> StoreStats {
        let mut stats = StoreStats::default();
        for shard in &self.shards {
            let segments = shard
                .segments
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            stats.segments += segments.len();
            for segment in segments.values() {
                stats.blocks += segment.blocks.len();
                stats.rows += segment
                    .blocks
                    .iter()
                    .map(|block| block.header.rows as u64)
                    .sum::<u64>();
                stats.bytes_on_disk += segment.bytes;
            }
        }
        stats
    }
}

fn open_shard(dir: &Path, options: &StoreOptions) -> io::Result<Shard> {
    fs::create_dir_all(dir)?;
    let mut seqs: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|entry| segment::segment_seq(&entry.ok()?.path()))
        .collect();
    seqs.sort_unstable();
    let now = now_ms();
    let mut segments = BTreeMap::new();
    let last = seqs.last().copied();
    for seq in &seqs {
        let path = segment::segment_path(dir, *seq);
        let file = fs::OpenOptions::new().read(true).open(&path)?;
        let is_tail = Some(*seq) == last;
        let scan = segment::scan(&file, is_tail)?;
        if scan.trailing > 0 {
            if is_tail {
                // Never acknowledged: the crash came before its fsync returned.
                tracing::warn!(path = %path.display(), bytes = scan.trailing, "cutting a torn tail left by a crash");
                let writable = fs::OpenOptions::new().write(true).open(&path)?;
                writable.set_len(scan.valid_len)?;
                writable.sync_all()?;
            } else {
                tracing::error!(path = %path.display(), bytes = scan.trailing, "corrupt data in a closed segment; reading what precedes it");
            }
        }
        let blocks = scan
            .blocks
            .into_iter()
            .map(|found| IndexedBlock {
                offset: found.offset,
                header: found.header,
                bloom: found.bloom,
            })
            .collect();
        segments.insert(
            *seq,
            IndexedSegment {
                file: Arc::new(file),
                path,
                blocks,
                bytes: scan.valid_len,
            },
        );
    }
    let active = match last {
        Some(seq) if segments[&seq].bytes < options.segment_bytes => {
            SegmentWriter::reopen(dir, seq, segments[&seq].bytes, now)?
        }
        Some(seq) => SegmentWriter::create(dir, seq + 1, now)?,
        None => SegmentWriter::create(dir, 0, now)?,
    };
    Ok(Shard {
        dir: dir.to_owned(),
        writer: Mutex::new(ShardWriter {
            active,
            must_roll: false,
        }),
        segments: RwLock::new(segments),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use uuid::Uuid;
    use wire::EventKind;

    use super::*;

    fn options(dir: &Path) -> StoreOptions {
        StoreOptions {
            data_dir: dir.to_owned(),
            shards: 1,
            retention: Duration::from_secs(86_400),
            segment_bytes: 1 << 20,
            fsync: true,
        }
    }

    fn event(user_id: u64, ts: i64) -> PlaybackEvent {
        PlaybackEvent {
            session_id: Uuid::from_u128(9),
            content_id: 3,
            kind: EventKind::Pause,
            received_at: now_ms(),
            position_ms: 5,
            buffer_ms: Some(40),
            played_ms: None,
            startup_ms: None,
            before_start: None,
            fatal: None,
            error_code: Some("E1".into()),
            ..testkit::event(user_id, ts)
        }
    }

    fn everything(user_id: u64) -> HistoryQuery {
        HistoryQuery {
            user_id,
            from_ms: i64::MIN,
            to_ms: i64::MAX,
            limit: 10_000,
        }
    }

    fn only_segment(dir: &Path) -> PathBuf {
        segment::segment_path(&dir.join("events").join("shard-0"), 0)
    }

    #[test]
    fn a_torn_tail_is_cut_on_open_and_acknowledged_blocks_survive() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        let acknowledged: Vec<_> = (0..100).map(|i| event(7, now - i)).collect();
        {
            let store = EventStore::open(options(dir.path())).unwrap();
            store.append(0, &acknowledged).unwrap();
        }
        // A crash in the middle of the next block: half of it reached the disk.
        let torn = block::encode(&[event(7, now + 1)]).bytes;
        let path = only_segment(dir.path());
        let clean_len = fs::metadata(&path).unwrap().len();
        let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&torn[..torn.len() / 2]).unwrap();
        drop(file);

        let store = EventStore::open(options(dir.path())).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            clean_len,
            "the torn tail is cut"
        );
        assert_eq!(store.history(&everything(7)).unwrap().len(), 100);
        // Writing goes on after the cut, and both survive another reopen.
        store.append(0, &[event(7, now + 2)]).unwrap();
        drop(store);
        let store = EventStore::open(options(dir.path())).unwrap();
        assert_eq!(store.history(&everything(7)).unwrap().len(), 101);
    }

    #[test]
    fn a_log_writes_blocks_as_is_and_either_kind_reads_back_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        {
            let log = EventStore::open_log(options(dir.path())).unwrap();
            log.append(0, &[event(3, now), event(3, now - 1)]).unwrap();
        }
        let segment = fs::read(only_segment(dir.path())).unwrap();
        assert_eq!(segment[..4], block::MAGIC_AS_IS.to_le_bytes());
        {
            let store = EventStore::open(options(dir.path())).unwrap();
            store.append(0, &[event(3, now - 2)]).unwrap();
        }
        let log = EventStore::open_log(options(dir.path())).unwrap();
        assert_eq!(log.history(&everything(3)).unwrap().len(), 3);
    }

    #[test]
    fn a_corrupt_block_in_the_tail_is_cut_with_everything_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        {
            let store = EventStore::open(options(dir.path())).unwrap();
            store.append(0, &[event(1, now)]).unwrap();
            store.append(0, &[event(1, now - 1)]).unwrap();
        }
        let path = only_segment(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let store = EventStore::open(options(dir.path())).unwrap();
        let stored = store.history(&everything(1)).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].ts, now);
    }

    #[test]
    fn blocks_round_trip_every_field_and_drop_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::open(options(dir.path())).unwrap();
        let now = now_ms();
        let mut full = event(5, now);
        full.sent_at = Some(now + 3);
        full.duration_ms = Some(99);
        full.bitrate_kbps = Some(u32::MAX);
        full.device = Some("d".repeat(32).into());
        full.cdn = Some("c".into());
        full.app_version = Some("v".into());
        full.error_code = Some("e".repeat(64).into());
        full.country = wire::CountryCode::parse("BR");
        full.kind = EventKind::Complete;
        full.user_id = u64::MAX;
        let batch = vec![full.clone(), full.clone(), event(u64::MAX, now - 10)];
        store.append(0, &batch).unwrap();
        let stored = store.history(&everything(u64::MAX)).unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0], full);
        assert_eq!(
            store.stats().rows,
            2,
            "the duplicate in the batch is not written"
        );
    }

    #[test]
    fn segments_roll_at_their_size_and_expired_ones_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = options(dir.path());
        options.retention = Duration::from_millis(300);
        let store = EventStore::open(options).unwrap();
        let now = now_ms();
        for round in 0..40 {
            let batch: Vec<_> = (0..2_000).map(|i| event(i, now - round)).collect();
            store.append(0, &batch).unwrap();
        }
        assert!(store.stats().segments > 1, "{:?}", store.stats());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !store.history(&everything(3)).unwrap().is_empty() || store.stats().segments > 1 {
            assert!(std::time::Instant::now() < deadline, "{:?}", store.stats());
            store.expire().unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(store.stats().bytes_on_disk < 1 << 20);
    }
}
