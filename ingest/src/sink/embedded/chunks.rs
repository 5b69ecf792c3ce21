//! The packed layout on the embedded store: the log is the store's fsync'd segments; closed
//! chunks and the checkpoints live in a fjall keyspace (an LSM tree: `{data_dir}/chunks/`),
//! chunks and checkpoint committed in one atomic batch, its journal fsync'd. fjall over redb,
//! by measurement: see BENCHMARKS.md, "The chunk index: fjall or redb".
//!
//! Keys are big-endian so that byte order is key order: a chunk is
//! `user_id | day | !last_ts | !chunk_id` (newest first within a partition, as Cassandra's
//! clustering order), a day `user_id | day`, an expiry `max_received_at | chunk key`.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use fjall::{Config, Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};
use wire::PlaybackEvent;

use super::sink::{failed, write_failed};
use super::store::EventStore;
use crate::sink::packed::{ChunkPage, ChunkStore, ClosedChunk, LogPos, StoredChunk};
use crate::sink::SinkError;

const CHUNK_KEY: usize = 28;

/// fjall's block cache (reads want recent index and data blocks; the page cache has the rest).
const CACHE_BYTES: u64 = 64 << 20;

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

fn db_error(error: impl std::fmt::Display) -> SinkError {
    SinkError::Failed(format!("chunk index: {error}"))
}

/// The embedded store's log with a fjall chunk index.
pub struct EmbeddedChunks {
    log: Arc<EventStore>,
    db: Keyspace,
    chunks: PartitionHandle,
    days: PartitionHandle,
    expiry: PartitionHandle,
    checkpoints: PartitionHandle,
}

impl EmbeddedChunks {
    pub fn open(log: Arc<EventStore>, data_dir: &Path) -> Result<EmbeddedChunks, SinkError> {
        let db = Config::new(data_dir.join("chunks"))
            .cache_size(CACHE_BYTES)
            .open()
            .map_err(db_error)?;
        let partition = |name: &str| {
            db.open_partition(name, PartitionCreateOptions::default())
                .map_err(db_error)
        };
        Ok(EmbeddedChunks {
            chunks: partition("chunks")?,
            days: partition("days")?,
            expiry: partition("expiry")?,
            checkpoints: partition("checkpoints")?,
            db,
            log,
        })
    }

    pub fn log(&self) -> &Arc<EventStore> {
        &self.log
    }

    /// Deletes chunks whose newest event was received before `before` (past the retention).
    pub fn expire(&self, before: i64) -> Result<usize, SinkError> {
        let end = ordered(before).to_be_bytes();
        let mut batch = self.db.batch();
        let mut deleted = 0;
        for entry in self.expiry.range(..end.to_vec()) {
            let (key, _) = entry.map_err(db_error)?;
            let chunk = key
                .get(8..)
                .ok_or_else(|| failed("a malformed expiry key"))?;
            batch.remove(&self.chunks, chunk.to_vec());
            batch.remove(&self.expiry, key.to_vec());
            deleted += 1;
        }
        batch.commit().map_err(db_error)?;
        Ok(deleted)
    }

    fn commit_blocking(
        &self,
        shard: usize,
        chunks: &[Arc<ClosedChunk>],
        checkpoint: LogPos,
    ) -> Result<(), SinkError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for chunk in chunks {
            let key = chunk_key(chunk.user_id, chunk.day, chunk.last_ts, chunk.chunk_id);
            let block = chunk.encode();
            let mut value = Vec::with_capacity(8 + block.len());
            value.extend_from_slice(&chunk.first_ts.to_le_bytes());
            value.extend_from_slice(&block);
            batch.insert(&self.chunks, key, value);
            batch.insert(&self.days, day_key(chunk.user_id, chunk.day), []);
            let mut expires = ordered(chunk.max_received_at).to_be_bytes().to_vec();
            expires.extend_from_slice(&key);
            batch.insert(&self.expiry, expires, []);
        }
        batch.insert(
            &self.checkpoints,
            (shard as u64).to_be_bytes(),
            checkpoint.to_be_bytes(),
        );
        batch.commit().map_err(db_error)?;
        // The log before the checkpoint is in chunks now: whole segments of it can go.
        self.log
            .drop_log_before(shard, checkpoint)
            .map_err(write_failed)?;
        Ok(())
    }

    fn checkpoint_of(&self, shard: usize) -> Result<LogPos, SinkError> {
        let value = self
            .checkpoints
            .get((shard as u64).to_be_bytes())
            .map_err(db_error)?;
        Ok(value
            .and_then(|bytes| bytes.as_ref().try_into().ok())
            .map_or(0, u64::from_be_bytes))
    }

    fn days_blocking(
        &self,
        user_id: u64,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<i32>, SinkError> {
        let (low, high) = (day_key(user_id, from_day), day_key(user_id, to_day));
        let mut days = Vec::new();
        for entry in self.days.range(low..=high).rev() {
            let (key, _) = entry.map_err(db_error)?;
            let raw = u32::from_be_bytes(
                key.get(8..12)
                    .and_then(|bytes| bytes.try_into().ok())
                    .ok_or_else(|| failed("a malformed day key"))?,
            );
            days.push((raw ^ (1 << 31)) as i32);
        }
        Ok(days)
    }

    fn chunks_blocking(&self, page: ChunkPage) -> Result<Vec<StoredChunk>, SinkError> {
        let start = match page.after {
            // Strictly after the cursor: the next key up.
            Some((last_ts, chunk_id)) => {
                let mut key = chunk_key(page.user_id, page.day, last_ts, chunk_id).to_vec();
                key.push(0);
                key
            }
            None => chunk_key(page.user_id, page.day, i64::MAX, u64::MAX).to_vec(),
        };
        let end = chunk_key(page.user_id, page.day, page.from_ms, 0).to_vec();
        let mut found = Vec::new();
        for entry in self.chunks.range(start..=end) {
            let (key, value) = entry.map_err(db_error)?;
            let (last_ts, chunk_id) =
                parse_chunk_key(&key).ok_or_else(|| failed("a malformed chunk key"))?;
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
