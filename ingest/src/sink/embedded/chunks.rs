//! The packed layout on the embedded store: the log is the store's fsync'd segments; closed
//! chunks and the checkpoints live in a redb database (`{data_dir}/chunks.redb`), chunks and
//! checkpoint committed in one transaction, fsync'd.
//!
//! Keys are big-endian so that byte order is key order: a chunk is
//! `user_id | day | !last_ts | !chunk_id` (newest first within a partition, as Cassandra's
//! clustering order), a day `user_id | day`, an expiry `max_received_at | chunk key`.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, Durability, ReadableTable, TableDefinition};

use wire::PlaybackEvent;

use super::sink::{failed, write_failed};
use super::store::EventStore;
use crate::sink::packed::{ChunkPage, ChunkStore, ClosedChunk, LogPos, StoredChunk};
use crate::sink::SinkError;

const CHUNKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("chunks");
const DAYS: TableDefinition<&[u8], ()> = TableDefinition::new("days");
const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("expiry");
const CHECKPOINTS: TableDefinition<u64, u64> = TableDefinition::new("checkpoints");

const CHUNK_KEY: usize = 28;

/// redb's page cache (its default is 1 GiB, the whole memory target).
const CACHE_BYTES: usize = 64 << 20;

/// An order-preserving unsigned form of a signed number.
fn ordered(value: i64) -> u64 {
    (value as u64) ^ (1 << 63)
}

fn day_key(user_id: u64, day: i32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&user_id.to_be_bytes());
    key[8..].copy_from_slice(&((day as u32) ^ (1 << 31)).to_be_bytes());
    key
}

fn chunk_key(user_id: u64, day: i32, last_ts: i64, chunk_id: u64) -> [u8; CHUNK_KEY] {
    let mut key = [0u8; CHUNK_KEY];
    key[..12].copy_from_slice(&day_key(user_id, day));
    key[12..20].copy_from_slice(&(!ordered(last_ts)).to_be_bytes());
    key[20..].copy_from_slice(&(!chunk_id).to_be_bytes());
    key
}

fn parse_chunk_key(key: &[u8]) -> Option<(i64, u64)> {
    let last_ts = !u64::from_be_bytes(key.get(12..20)?.try_into().ok()?) ^ (1 << 63);
    let chunk_id = !u64::from_be_bytes(key.get(20..28)?.try_into().ok()?);
    Some((last_ts as i64, chunk_id))
}

fn db_error(error: impl Into<redb::Error>) -> SinkError {
    SinkError::Failed(format!("chunk index: {}", error.into()))
}

/// The embedded store's log with a redb chunk index.
pub struct EmbeddedChunks {
    log: Arc<EventStore>,
    db: Arc<Database>,
}

impl EmbeddedChunks {
    pub fn open(log: Arc<EventStore>, data_dir: &Path) -> Result<EmbeddedChunks, SinkError> {
        let db = redb::Builder::new()
            // Reads want the index pages of recent chunks, not a copy of the whole history:
            // the operating system's page cache holds the rest.
            .set_cache_size(CACHE_BYTES)
            .create(data_dir.join("chunks.redb"))
            .map_err(db_error)?;
        let txn = db.begin_write().map_err(db_error)?;
        {
            txn.open_table(CHUNKS).map_err(db_error)?;
            txn.open_table(DAYS).map_err(db_error)?;
            txn.open_table(EXPIRY).map_err(db_error)?;
            txn.open_table(CHECKPOINTS).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        Ok(EmbeddedChunks {
            log,
            db: Arc::new(db),
        })
    }

    pub fn log(&self) -> &Arc<EventStore> {
        &self.log
    }

    /// Deletes chunks whose newest event was received before `before` (past the retention).
    pub fn expire(&self, before: i64) -> Result<usize, SinkError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        let mut deleted = 0;
        {
            let mut expiry = txn.open_table(EXPIRY).map_err(db_error)?;
            let mut chunks = txn.open_table(CHUNKS).map_err(db_error)?;
            let end = ordered(before).to_be_bytes();
            let expired: Vec<Vec<u8>> = expiry
                .range::<&[u8]>(..&end[..])
                .map_err(db_error)?
                .filter_map(|entry| entry.ok().map(|(key, _)| key.value().to_vec()))
                .collect();
            for key in expired {
                expiry.remove(key.as_slice()).map_err(db_error)?;
                chunks.remove(&key[8..]).map_err(db_error)?;
                deleted += 1;
            }
        }
        txn.commit().map_err(db_error)?;
        Ok(deleted)
    }

    fn commit_blocking(
        &self,
        shard: usize,
        chunks: &[Arc<ClosedChunk>],
        checkpoint: LogPos,
    ) -> Result<(), SinkError> {
        let mut txn = self.db.begin_write().map_err(db_error)?;
        txn.set_durability(Durability::Immediate);
        {
            let mut table = txn.open_table(CHUNKS).map_err(db_error)?;
            let mut days = txn.open_table(DAYS).map_err(db_error)?;
            let mut expiry = txn.open_table(EXPIRY).map_err(db_error)?;
            for chunk in chunks {
                let key = chunk_key(chunk.user_id, chunk.day, chunk.last_ts, chunk.chunk_id);
                let block = chunk.encode();
                let mut value = Vec::with_capacity(8 + block.len());
                value.extend_from_slice(&chunk.first_ts.to_le_bytes());
                value.extend_from_slice(&block);
                table.insert(&key[..], value.as_slice()).map_err(db_error)?;
                days.insert(&day_key(chunk.user_id, chunk.day)[..], ())
                    .map_err(db_error)?;
                let mut expires = ordered(chunk.max_received_at).to_be_bytes().to_vec();
                expires.extend_from_slice(&key);
                expiry.insert(expires.as_slice(), ()).map_err(db_error)?;
            }
            let mut checkpoints = txn.open_table(CHECKPOINTS).map_err(db_error)?;
            checkpoints
                .insert(shard as u64, checkpoint)
                .map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        // The log before the checkpoint is in chunks now: whole segments of it can go.
        self.log
            .drop_log_before(shard, checkpoint)
            .map_err(write_failed)?;
        Ok(())
    }

    fn checkpoint_of(&self, shard: usize) -> Result<LogPos, SinkError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(CHECKPOINTS).map_err(db_error)?;
        Ok(table
            .get(shard as u64)
            .map_err(db_error)?
            .map_or(0, |value| value.value()))
    }

    fn days_blocking(
        &self,
        user_id: u64,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<i32>, SinkError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(DAYS).map_err(db_error)?;
        let (low, high) = (day_key(user_id, from_day), day_key(user_id, to_day));
        let mut days = Vec::new();
        for entry in table
            .range::<&[u8]>(&low[..]..=&high[..])
            .map_err(db_error)?
            .rev()
        {
            let (key, _) = entry.map_err(db_error)?;
            let raw = u32::from_be_bytes(key.value()[8..12].try_into().map_err(failed)?);
            days.push((raw ^ (1 << 31)) as i32);
        }
        Ok(days)
    }

    fn chunks_blocking(&self, page: ChunkPage) -> Result<Vec<StoredChunk>, SinkError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(CHUNKS).map_err(db_error)?;
        let start = match page.after {
            // Strictly after the cursor: the next key up.
            Some((last_ts, chunk_id)) => {
                let mut key = chunk_key(page.user_id, page.day, last_ts, chunk_id).to_vec();
                key.push(0);
                key
            }
            None => chunk_key(page.user_id, page.day, i64::MAX, u64::MAX).to_vec(),
        };
        let end = chunk_key(page.user_id, page.day, page.from_ms, 0);
        let mut found = Vec::new();
        for entry in table
            .range::<&[u8]>(start.as_slice()..=&end[..])
            .map_err(db_error)?
        {
            let (key, value) = entry.map_err(db_error)?;
            let (last_ts, chunk_id) =
                parse_chunk_key(key.value()).ok_or_else(|| failed("a malformed chunk key"))?;
            let value = value.value();
            let first_ts = i64::from_le_bytes(
                value
                    .get(..8)
                    .and_then(|bytes| bytes.try_into().ok())
                    .ok_or_else(|| failed("a malformed chunk"))?,
            );
            found.push(StoredChunk {
                last_ts,
                chunk_id,
                first_ts,
                block: value[8..].to_vec(),
            });
            if found.len() >= page.limit {
                break;
            }
        }
        Ok(found)
    }
}

/// Runs blocking store work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SinkError> + Send + 'static,
) -> Result<T, SinkError> {
    tokio::task::spawn_blocking(work).await.map_err(failed)?
}

#[async_trait]
impl ChunkStore for Arc<EmbeddedChunks> {
    async fn shards(&self, configured: usize) -> Result<usize, SinkError> {
        Ok(self.log.shard_count().max(configured))
    }

    async fn append_log(
        &self,
        shard: usize,
        events: Arc<Vec<PlaybackEvent>>,
    ) -> Result<LogPos, SinkError> {
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || log.append(shard, &events))
            .await
            .map_err(failed)?
            .map_err(write_failed)
    }

    async fn commit(
        &self,
        shard: usize,
        chunks: &[Arc<ClosedChunk>],
        checkpoint: LogPos,
    ) -> Result<(), SinkError> {
        let (this, chunks) = (self.clone(), chunks.to_vec());
        blocking(move || this.commit_blocking(shard, &chunks, checkpoint)).await
    }

    async fn replay(
        &self,
        shard: usize,
    ) -> Result<(LogPos, Vec<(LogPos, Vec<PlaybackEvent>)>), SinkError> {
        let this = self.clone();
        blocking(move || {
            let from = this.checkpoint_of(shard)?;
            let entries = this.log.log_since(shard, from).map_err(failed)?;
            Ok((from, entries))
        })
        .await
    }

    async fn days(&self, user_id: u64, from_day: i32, to_day: i32) -> Result<Vec<i32>, SinkError> {
        let this = self.clone();
        blocking(move || this.days_blocking(user_id, from_day, to_day)).await
    }

    async fn chunks(&self, page: ChunkPage) -> Result<Vec<StoredChunk>, SinkError> {
        let this = self.clone();
        blocking(move || this.chunks_blocking(page)).await
    }

    async fn ready(&self) -> bool {
        true
    }
}
