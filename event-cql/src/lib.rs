//! The Cassandra event schema of PlayPulse, in one place for every writer and reader of it:
//! the ingest sink, `loadgen cassandra` and the benchmarks.
//!
//! - `schema.cql` (beside `src/`): the DDL template; [`schema`] fills it from the settings and
//!   applies it idempotently.
//! - [`statements`]: every CQL statement of the rows layout, and the rows bound to them
//!   ([`EventRow`]); [`chunks`]: those of the packed layout (chunks, log, checkpoints).
//! - [`grouping`]: rows into UNLOGGED batches, per partition or per replica set.
//! - [`settings`]: the `[cassandra]` section; [`config`]: it checked, consistency and TTL
//!   parsed, and the session built from it ([`open_session`], for every component).
//! - [`error`]: what can fail, and how a driver error is classified.

pub mod chunks;
pub mod config;
pub mod error;
pub mod grouping;
pub mod schema;
pub mod settings;
pub mod statements;

use std::sync::Arc;

pub use config::{
    open_session, parse_consistency, prefers_datacenter, ttl_seconds, BatchLimits, CassandraConfig,
    SessionSpec, MAX_IN_FLIGHT_ROWS,
};
pub use error::{error_kind, is_transient, CassandraError};
pub use grouping::{partition_batches, replica_set_batches};
pub use schema::{CompactionWindow, SchemaParams};
pub use settings::{CassandraSettings, HistoryLayout, WriteMode};
pub use statements::{history_token, insert_event_cql, EventRow, DAYS_TABLE, HISTORY_TABLE};

/// Drops a keyspace and everything in it (tests and benchmarks clean up what they made).
pub async fn drop_keyspace(
    session: &scylla::client::session::Session,
    keyspace: &str,
) -> Result<(), CassandraError> {
    let cql = statements::drop_keyspace_cql(keyspace);
    session
        .query_unpaged(statements::ddl(&cql), ())
        .await
        .map(|_| ())
        .map_err(|source| CassandraError::Schema {
            cql,
            source: Box::new(source),
        })
}

/// Connects with `config` and applies the schema it describes; returns what was done, a line a
/// step. The session is returned too, for a caller that builds a sink on it next.
pub async fn apply_schema(
    config: &CassandraConfig,
) -> Result<(Arc<scylla::client::session::Session>, Vec<String>), CassandraError> {
    let session = Arc::new(config.connect().await?);
    let report = schema::apply(&session, &SchemaParams::new(config)).await?;
    Ok((session, report))
}
