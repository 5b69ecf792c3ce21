//! The Cassandra sink: playback events in the `viewing_history` table of `config/schema.cql`,
//! written with the `scylla` driver. See `cassandra.md` beside this file for the write modes,
//! what an acknowledgement means, and how history is read.
//!
//! - `config.rs`: settings, checked; the session built from them.
//! - `statements.rs`: every CQL statement, prepared once; the rows bound to them.
//! - `schema.rs`: `config/schema.cql` filled from the settings and applied idempotently.
//! - `service.rs`: the I/O: bounded in-flight requests, retries with backoff.
//! - `sink.rs`: batches -> requests per write mode; history; readiness.
//! - `error.rs`: what can fail, and how it reaches clients (503 or 500).

mod config;
mod error;
mod schema;
mod service;
mod sink;
mod statements;

use std::sync::Arc;

pub use config::{
    parse_consistency, ttl_seconds, BatchLimits, CassandraConfig, MAX_IN_FLIGHT_ROWS,
};
pub use error::{error_kind, CassandraError};
pub use schema::{CompactionWindow, SchemaParams};
pub use service::{RequestStats, RetryPolicy};
pub use sink::{replica_set_batches, CassandraSink};
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
