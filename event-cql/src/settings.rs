//! The `[cassandra]` section of the settings, as written (see `config/default.toml`); checked
//! into a [`crate::CassandraConfig`].

use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Deserialize;

/// How a batch of events becomes CQL requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// One INSERT per row, many in flight.
    ConcurrentInserts,
    /// One UNLOGGED BATCH per partition `(user_id, day)`.
    PartitionBatches,
    /// One UNLOGGED BATCH per replica set (rows whose partitions live on the same nodes).
    ReplicaBatches,
}

/// How the viewing history is laid out in a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryLayout {
    /// One row per event (`viewing_history`; on the embedded store, blocks of batches).
    Rows,
    /// A durable log, and one row per chunk of a viewer's events (`viewing_chunks`).
    Chunks,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CassandraSettings {
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub replication: String,
    pub local_datacenter: String,
    pub consistency: String,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Rows in CQL requests in flight at once (a batch request counts its rows).
    pub max_in_flight_rows: NonZeroUsize,
    pub write_mode: WriteMode,
    pub layout: HistoryLayout,
    /// This ingest node's name for its log; empty: the host name.
    pub node_id: String,
    pub max_retries: u32,
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
}

impl CassandraSettings {
    /// Whether `keyspace` is a CQL identifier this schema can be created in.
    pub fn keyspace_is_identifier(keyspace: &str) -> bool {
        keyspace
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && keyspace.len() <= 48
            && keyspace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
    }
}

/// `[cassandra]` as the compiled-in `config/default.toml` has it.
impl Default for CassandraSettings {
    fn default() -> Self {
        let mut file: toml::Table = include_str!("../../config/default.toml")
            .parse()
            .expect("TOML");
        let section = file
            .remove("cassandra")
            .expect("config/default.toml has [cassandra]");
        section
            .try_into()
            .expect("[cassandra] of config/default.toml is valid")
    }
}
