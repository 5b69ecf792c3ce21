//! The packed layout on Cassandra: the log is `event_log` (one row per batch, a block, at
//! `cassandra.consistency`), closed chunks are `viewing_chunks` rows, and each node's shard
//! checkpoints are in `log_checkpoints` (see `schema.cql` in the `event_cql` crate). The rows
//! sink underneath gives the session, the bounded and retried requests, the day index and
//! readiness.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use event_cql::chunks::{chunk_row, log_second, ChunkMeta, ChunkStatements, POSITIONS_PER_MS};
use event_cql::statements::u64_to_cql;
use event_cql::CassandraError;
use futures::TryStreamExt;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::value::CqlTimestamp;
use wire::PlaybackEvent;

use super::sink::CassandraSink;
use crate::now_ms;
use crate::sink::block;
use crate::sink::packed::{ChunkPage, ChunkStore, ClosedChunk, LogPos, StoredChunk};
use crate::sink::SinkError;

/// A batch is split into log rows of at most this many events: a row stays far under 1 MiB.
const LOG_ROW_EVENTS: usize = 4096;

/// Chunk rows written at once by one commit.
const CHUNK_WRITES_IN_FLIGHT: usize = 64;

/// The packed layout's store on Cassandra.
pub struct CassandraChunks {
    rows: CassandraSink,
    statements: ChunkStatements,
    node_id: String,
    /// Per shard: the last log position handed out (positions only grow, across restarts too).
    last_position: Vec<AtomicU64>,
    /// Per shard: the second of the log already deleted up to (exclusive).
    deleted_before: Vec<AtomicU64>,
}

fn decode(error: impl std::fmt::Display) -> CassandraError {
    CassandraError::Decode(error.to_string())
}

impl CassandraChunks {
    /// On a sink of the same keyspace; `node_id` names this ingest node's log.
    pub async fn new(
        rows: CassandraSink,
        node_id: String,
        shards: usize,
    ) -> Result<CassandraChunks, CassandraError> {
        let statements = ChunkStatements::prepare(rows.session(), &rows.config().keyspace).await?;
        let mut chunks = CassandraChunks {
            rows,
            statements,
            node_id,
            last_position: Vec::new(),
            deleted_before: Vec::new(),
        };
        let checkpoints = chunks.checkpoints().await?;
        let count = checkpoints
            .iter()
            .map(|&(shard, _)| shard + 1)
            .max()
            .unwrap_or(0)
            .max(shards.max(1));
        for shard in 0..count {
            let recorded = checkpoints
                .iter()
                .find(|&&(known, _)| known == shard)
                .map(|&(_, from)| from);
            let from = match recorded {
                Some(from) => from,
                None => {
                    // A shard's first start: its log begins now, and its checkpoint says so
                    // before the first write, so that a crash before the first commit replays.
                    let from = (now_ms().max(0) as u64).saturating_mul(POSITIONS_PER_MS);
                    chunks.record(shard, from).await?;
                    from
                }
            };
            chunks.last_position.push(AtomicU64::new(from));
            chunks
                .deleted_before
                .push(AtomicU64::new(log_second(from) as u64));
        }
        Ok(chunks)
    }

    pub fn rows(&self) -> &CassandraSink {
        &self.rows
    }

    async fn checkpoints(&self) -> Result<Vec<(usize, LogPos)>, CassandraError> {
        let session = self.rows.session().as_ref();
        let (result, _) = self
            .rows
            .service()
            .call("checkpoint read", 1, || {
                session.execute_single_page(
                    &self.statements.select_checkpoints,
                    (&self.node_id,),
                    PagingState::start(),
                )
            })
            .await?;
        let rows = result.into_rows_result().map_err(decode)?;
        let mut found = Vec::new();
        for row in rows.rows::<(i32, i64)>().map_err(decode)? {
            let (shard, from) = row.map_err(decode)?;
            found.push((shard.max(0) as usize, from.max(0) as u64));
        }
        Ok(found)
    }

    /// The next position of `shard`'s log: the clock in ms (times [`POSITIONS_PER_MS`]), past
    /// every position handed out before.
    fn next_position(&self, shard: usize) -> LogPos {
        let clock = (now_ms().max(0) as u64).saturating_mul(POSITIONS_PER_MS);
        let last = &self.last_position[shard];
        let mut current = last.load(Ordering::Relaxed);
        loop {
            let next = clock.max(current + 1);
            match last.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(seen) => current = seen,
            }
        }
    }

    async fn write_log(
        &self,
        shard: usize,
        events: &[PlaybackEvent],
    ) -> Result<LogPos, CassandraError> {
        let session = self.rows.session().as_ref();
        let ttl = self.rows.config().ttl_seconds as i32;
        let mut first = None;
        // A large batch is several rows, each its own position; replay reads them all.
        for part in events.chunks(LOG_ROW_EVENTS) {
            let position = self.next_position(shard);
            first.get_or_insert(position);
            let block = block::encode(part).bytes;
            let row = (
                &self.node_id,
                shard as i32,
                log_second(position),
                position as i64,
                block.as_slice(),
                ttl,
            );
            self.rows
                .service()
                .call("log write", part.len(), || {
                    session.execute_unpaged(&self.statements.insert_log, &row)
                })
                .await?;
        }
        Ok(first.unwrap_or_else(|| self.next_position(shard)))
    }

    async fn write_chunks(&self, chunks: &[Arc<ClosedChunk>]) -> Result<(), CassandraError> {
        let session = self.rows.session().as_ref();
        let ttl = self.rows.config().ttl_seconds;
        futures::stream::iter(chunks.iter().map(Ok))
            .try_for_each_concurrent(CHUNK_WRITES_IN_FLIGHT, |chunk| async move {
                let block = chunk.encode();
                let meta = ChunkMeta {
                    user_id: chunk.user_id,
                    day: chunk.day,
                    first_ts: chunk.first_ts,
                    last_ts: chunk.last_ts,
                    chunk_id: chunk.chunk_id,
                    events: chunk.events.len(),
                };
                let row = chunk_row(&meta, &block, ttl);
                self.rows
                    .service()
                    .call("chunk write", 1, || {
                        session.execute_unpaged(&self.statements.insert_chunk, &row)
                    })
                    .await
                    .map(|_| ())
            })
            .await?;
        self.rows
            .write_day_rows(chunks.iter().map(|chunk| (chunk.user_id, chunk.day)))
            .await
    }

    async fn record(&self, shard: usize, checkpoint: LogPos) -> Result<(), CassandraError> {
        let session = self.rows.session().as_ref();
        let row = (&self.node_id, shard as i32, checkpoint as i64);
        self.rows
            .service()
            .call("checkpoint write", 1, || {
                session.execute_unpaged(&self.statements.upsert_checkpoint, &row)
            })
            .await
            .map(|_| ())
    }

    async fn record_checkpoint(
        &self,
        shard: usize,
        checkpoint: LogPos,
    ) -> Result<(), CassandraError> {
        self.record(shard, checkpoint).await?;
        let session = self.rows.session().as_ref();
        // Seconds of the log wholly before the checkpoint are in chunks: delete them.
        let keep_from = log_second(checkpoint) as u64;
        let deleted = &self.deleted_before[shard];
        let from = deleted.load(Ordering::Relaxed);
        for second in from..keep_from {
            let key = (&self.node_id, shard as i32, second as i64);
            self.rows
                .service()
                .call("log delete", 1, || {
                    session.execute_unpaged(&self.statements.delete_log, &key)
                })
                .await?;
            deleted.store(second + 1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn read_log(
        &self,
        shard: usize,
    ) -> Result<(LogPos, Vec<(LogPos, Vec<PlaybackEvent>)>), CassandraError> {
        let from = self.last_position[shard].load(Ordering::Relaxed);
        let session = self.rows.session().as_ref();
        let mut entries = Vec::new();
        // Every second since the checkpoint, up to now (and a little past: clocks drift).
        let (first, last) = (log_second(from), now_ms().max(0) / 1000 + 5);
        for second in first..=last {
            let key = (&self.node_id, shard as i32, second);
            let mut paging = PagingState::start();
            loop {
                let (result, next) = self
                    .rows
                    .service()
                    .call("log replay", 1, || {
                        session.execute_single_page(
                            &self.statements.select_log,
                            &key,
                            paging.clone(),
                        )
                    })
                    .await?;
                let rows = result.into_rows_result().map_err(decode)?;
                for row in rows.rows::<(i64, Vec<u8>)>().map_err(decode)? {
                    let (position, bytes) = row.map_err(decode)?;
                    let position = position as u64;
                    if position < from {
                        continue;
                    }
                    let events = block::decode(&bytes).map_err(decode)?;
                    entries.push((position, events));
                }
                match next {
                    PagingStateResponse::HasMorePages { state } => paging = state,
                    PagingStateResponse::NoMorePages => break,
                }
            }
        }
        entries.sort_unstable_by_key(|(position, _)| *position);
        if let Some(&(newest, _)) = entries.last() {
            self.last_position[shard].fetch_max(newest, Ordering::AcqRel);
        }
        Ok((from, entries))
    }

    async fn read_chunks(&self, page: ChunkPage) -> Result<Vec<StoredChunk>, CassandraError> {
        let session = self.rows.session().as_ref();
        let user = u64_to_cql(page.user_id);
        let limit = page.limit.min(i32::MAX as usize) as i32;
        let from = CqlTimestamp(page.from_ms);
        let (result, _) = match page.after {
            None => {
                let key = (user, page.day, from, limit);
                self.rows
                    .service()
                    .call("chunk read", 1, || {
                        session.execute_single_page(
                            &self.statements.select_chunks,
                            &key,
                            PagingState::start(),
                        )
                    })
                    .await?
            }
            Some((last_ts, chunk_id)) => {
                let key = (
                    user,
                    page.day,
                    CqlTimestamp(last_ts),
                    chunk_id as i64,
                    from,
                    limit,
                );
                self.rows
                    .service()
                    .call("chunk read", 1, || {
                        session.execute_single_page(
                            &self.statements.select_chunks_after,
                            &key,
                            PagingState::start(),
                        )
                    })
                    .await?
            }
        };
        let rows = result.into_rows_result().map_err(decode)?;
        let mut found = Vec::new();
        for row in rows
            .rows::<(CqlTimestamp, i64, CqlTimestamp, Vec<u8>)>()
            .map_err(decode)?
        {
            let (last_ts, chunk_id, first_ts, block) = row.map_err(decode)?;
            found.push(StoredChunk {
                last_ts: last_ts.0,
                chunk_id: chunk_id as u64,
                first_ts: first_ts.0,
                block,
            });
        }
        Ok(found)
    }
}

#[async_trait]
impl ChunkStore for Arc<CassandraChunks> {
    async fn shards(&self, _configured: usize) -> Result<usize, SinkError> {
        // `new` made one for every shard this node ever logged to and every configured one.
        Ok(self.last_position.len())
    }

    async fn append_log(
        &self,
        shard: usize,
        events: Arc<Vec<PlaybackEvent>>,
    ) -> Result<LogPos, SinkError> {
        let shard = shard % self.last_position.len();
        Ok(self.write_log(shard, &events).await?)
    }

    async fn commit(
        &self,
        shard: usize,
        chunks: &[Arc<ClosedChunk>],
        checkpoint: LogPos,
    ) -> Result<(), SinkError> {
        self.write_chunks(chunks).await?;
        Ok(self.record_checkpoint(shard, checkpoint).await?)
    }

    async fn replay(
        &self,
        shard: usize,
    ) -> Result<(LogPos, Vec<(LogPos, Vec<PlaybackEvent>)>), SinkError> {
        Ok(self.read_log(shard).await?)
    }

    async fn days(&self, user_id: u64, from_day: i32, to_day: i32) -> Result<Vec<i32>, SinkError> {
        let mut days = self
            .rows
            .days_with_history(user_id, from_day, to_day)
            .await?;
        days.sort_unstable_by(|a, b| b.cmp(a));
        Ok(days)
    }

    async fn chunks(&self, page: ChunkPage) -> Result<Vec<StoredChunk>, SinkError> {
        Ok(self.read_chunks(page).await?)
    }

    async fn ready(&self) -> bool {
        use crate::sink::EventSink;
        self.rows.ready().await
    }
}
