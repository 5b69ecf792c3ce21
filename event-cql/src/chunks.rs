//! The statements of the packed layout: `viewing_chunks`, `event_log` and `log_checkpoints`
//! (see `schema.cql`), prepared once, with the rows bound to them.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

use crate::error::CassandraError;
use crate::statements::{prepare_idempotent, u64_to_cql};

pub const CHUNKS_TABLE: &str = "viewing_chunks";
pub const LOG_TABLE: &str = "event_log";

const INSERT_CHUNK: &str = "INSERT INTO {ks}.viewing_chunks \
    (user_id, day, last_ts, chunk_id, first_ts, events, block) VALUES (?, ?, ?, ?, ?, ?, ?) \
    USING TTL ?";
/// One page of a partition's chunks, newest first, whose newest event is at or after `from`.
const SELECT_CHUNKS: &str = "SELECT last_ts, chunk_id, first_ts, block FROM {ks}.viewing_chunks \
    WHERE user_id = ? AND day = ? AND last_ts >= ? LIMIT ?";
/// The next page: strictly after the cursor `(last_ts, chunk_id)` in clustering order.
const SELECT_CHUNKS_AFTER: &str = "SELECT last_ts, chunk_id, first_ts, block \
    FROM {ks}.viewing_chunks WHERE user_id = ? AND day = ? AND (last_ts, chunk_id) < (?, ?) \
    AND (last_ts) >= (?) LIMIT ?";
const INSERT_LOG: &str = "INSERT INTO {ks}.event_log (node_id, shard, second, position, block) \
    VALUES (?, ?, ?, ?, ?) USING TTL ?";
const SELECT_LOG: &str = "SELECT position, block FROM {ks}.event_log \
    WHERE node_id = ? AND shard = ? AND second = ?";
const DELETE_LOG: &str =
    "DELETE FROM {ks}.event_log WHERE node_id = ? AND shard = ? AND second = ?";
const UPSERT_CHECKPOINT: &str =
    "INSERT INTO {ks}.log_checkpoints (node_id, shard, replay_from) VALUES (?, ?, ?)";
const SELECT_CHECKPOINTS: &str =
    "SELECT shard, replay_from FROM {ks}.log_checkpoints WHERE node_id = ?";

/// A log position is the append's clock in ms times this, plus a counter within the ms.
pub const POSITIONS_PER_MS: u64 = 1024;

/// The `event_log` partition (second) of a log position.
pub fn log_second(position: u64) -> i64 {
    (position / POSITIONS_PER_MS / 1000) as i64
}

/// The packed layout's statements, all idempotent.
#[derive(Debug, Clone)]
pub struct ChunkStatements {
    pub insert_chunk: PreparedStatement,
    pub select_chunks: PreparedStatement,
    pub select_chunks_after: PreparedStatement,
    pub insert_log: PreparedStatement,
    pub select_log: PreparedStatement,
    pub delete_log: PreparedStatement,
    pub upsert_checkpoint: PreparedStatement,
    pub select_checkpoints: PreparedStatement,
}

impl ChunkStatements {
    pub async fn prepare(
        session: &Session,
        keyspace: &str,
    ) -> Result<ChunkStatements, CassandraError> {
        let prepare = |template: &'static str| {
            prepare_idempotent(session, template.replace("{ks}", keyspace))
        };
        Ok(ChunkStatements {
            insert_chunk: prepare(INSERT_CHUNK).await?,
            select_chunks: prepare(SELECT_CHUNKS).await?,
            select_chunks_after: prepare(SELECT_CHUNKS_AFTER).await?,
            insert_log: prepare(INSERT_LOG).await?,
            select_log: prepare(SELECT_LOG).await?,
            delete_log: prepare(DELETE_LOG).await?,
            upsert_checkpoint: prepare(UPSERT_CHECKPOINT).await?,
            select_checkpoints: prepare(SELECT_CHECKPOINTS).await?,
        })
    }
}

/// Bound to `INSERT_CHUNK`.
pub type ChunkRow<'a> = (
    i64,
    i32,
    CqlTimestamp,
    i64,
    CqlTimestamp,
    i32,
    &'a [u8],
    i32,
);

/// What a chunk row says of its chunk, beside the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    pub user_id: u64,
    pub day: i32,
    pub first_ts: i64,
    pub last_ts: i64,
    pub chunk_id: u64,
    pub events: usize,
}

pub fn chunk_row<'a>(meta: &ChunkMeta, block: &'a [u8], ttl_seconds: u32) -> ChunkRow<'a> {
    (
        u64_to_cql(meta.user_id),
        meta.day,
        CqlTimestamp(meta.last_ts),
        meta.chunk_id as i64,
        CqlTimestamp(meta.first_ts),
        meta.events.min(i32::MAX as usize) as i32,
        block,
        ttl_seconds as i32,
    )
}
