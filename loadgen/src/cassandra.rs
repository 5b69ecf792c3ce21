//! `loadgen cassandra`: baselines for the service, written straight to Cassandra with the sink's
//! own schema (`event-cql/schema.cql`, applied as `playpulse schema apply` does) and row binding
//! (`event_cql::EventRow`): no HTTP, no JSON, no pipeline.
//!
//! - `per-event`: each worker awaits one INSERT at a time, the way a hand-written writer does.
//! - `best`: the fastest raw writer we know how to build with the driver. A request's rows are
//!   grouped by replica set into UNLOGGED batches (token-aware routing sends each to a replica
//!   that owns all of its rows, so the coordinator forwards nothing), and all of a request's
//!   batches go out at once. `bench cassandra-writes` measured this grouping fastest of the
//!   three ways the sink can write.
//!
//! Neither writes the `viewing_days` index: it costs one row per viewer per day, noise beside
//! the events, and would only blur the comparison. Rows written here are not readable through
//! the history API for that reason; `loadgen verify` is for HTTP runs.

use std::sync::Arc;
use std::time::Duration;

use event_cql::{
    self as cassandra, error_kind, insert_event_cql, parse_consistency, replica_set_batches,
    BatchLimits, CassandraConfig, CassandraError, EventRow,
};
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use serde::{Deserialize, Serialize};
use wire::PlaybackEvent;

use crate::settings::SettingsError;
use crate::target::Failure;

/// How the baseline writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CassandraMode {
    /// One INSERT awaited at a time per worker.
    PerEvent,
    /// Replica-set UNLOGGED batches, all of a request's at once.
    Best,
}

impl CassandraMode {
    pub fn name(self) -> &'static str {
        match self {
            CassandraMode::PerEvent => "per-event",
            CassandraMode::Best => "best",
        }
    }
}

/// The Cassandra side of a run's settings, as the report records them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CassandraTargetSettings {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub mode: CassandraMode,
    /// The keyspace's replication map, as CQL (used when the keyspace is created).
    pub replication: String,
    pub local_datacenter: String,
    /// Consistency of the writes: one, quorum, local_quorum, ...
    pub consistency: String,
    /// `USING TTL` of every row, and the table's default TTL.
    pub ttl_seconds: u32,
    /// Connections the driver opens to each node.
    pub driver_connections: usize,
    /// Rows in one batch at most (`best`).
    pub max_batch_rows: usize,
}

impl CassandraTargetSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |flag: &'static str, message: &str| SettingsError::Cassandra {
            flag,
            message: message.to_owned(),
        };
        if self.nodes.is_empty() || self.nodes.iter().any(|node| node.trim().is_empty()) {
            return Err(invalid("--nodes", "must name at least one HOST:PORT"));
        }
        let identifier = !self.keyspace.is_empty()
            && self.keyspace.len() <= 48
            && self.keyspace.starts_with(|c: char| c.is_ascii_alphabetic())
            && self
                .keyspace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier {
            return Err(invalid(
                "--keyspace",
                "must be a CQL name: a letter, then letters, digits or _ (at most 48)",
            ));
        }
        if let Err(error) = parse_consistency(&self.consistency) {
            return Err(SettingsError::Cassandra {
                flag: "--consistency",
                message: error.to_string(),
            });
        }
        if self.ttl_seconds == 0 {
            return Err(invalid("--retention", "must be at least one second"));
        }
        if self.driver_connections == 0 {
            return Err(invalid("--driver-connections", "must be at least 1"));
        }
        if self.max_batch_rows == 0 {
            return Err(invalid("--max-batch-rows", "must be at least 1"));
        }
        Ok(())
    }

    /// The sink's configuration for the same node and keyspace.
    fn sink_config(&self, request_timeout: Duration) -> Result<CassandraConfig, CassandraError> {
        Ok(CassandraConfig {
            nodes: self.nodes.clone(),
            keyspace: self.keyspace.clone(),
            replication: self.replication.clone(),
            local_datacenter: self.local_datacenter.clone(),
            consistency: parse_consistency(&self.consistency)?,
            request_timeout,
            // Not used: the baselines bound nothing but their own workers.
            max_in_flight_rows: cassandra::MAX_IN_FLIGHT_ROWS,
            write_mode: cassandra::WriteMode::ReplicaBatches,
            layout: cassandra::HistoryLayout::Rows,
            node_id: "loadgen".to_owned(),
            max_retries: 0,
            retry_backoff: Duration::ZERO,
            ttl_seconds: self.ttl_seconds,
            batch_limits: BatchLimits {
                max_rows: self.max_batch_rows,
                ..BatchLimits::default()
            },
            connections_per_node: self.driver_connections,
        })
    }
}

/// Writes events the way the mode says. Errors are not retried: a baseline counts them.
pub struct CassandraWriter {
    session: Arc<Session>,
    insert: PreparedStatement,
    mode: CassandraMode,
    keyspace: String,
    limits: BatchLimits,
    ttl_seconds: u32,
}

impl CassandraWriter {
    /// Connects, creates the keyspace and tables if they are missing, prepares the INSERT.
    /// Returns the schema steps taken, a line each.
    pub async fn connect(
        settings: &CassandraTargetSettings,
        request_timeout: Duration,
    ) -> Result<(CassandraWriter, Vec<String>), CassandraError> {
        let config = settings.sink_config(request_timeout)?;
        let (session, schema_steps) = cassandra::apply_schema(&config).await?;
        let cql = insert_event_cql(&config.keyspace);
        let mut insert =
            session
                .prepare(cql.as_str())
                .await
                .map_err(|source| CassandraError::Prepare {
                    cql,
                    source: Box::new(source),
                })?;
        insert.set_is_idempotent(true);
        let writer = CassandraWriter {
            session,
            insert,
            mode: settings.mode,
            keyspace: config.keyspace,
            limits: config.batch_limits,
            ttl_seconds: config.ttl_seconds,
        };
        Ok((writer, schema_steps))
    }

    /// Writes every event; Ok with their count once all are written.
    pub async fn write(&self, events: &[PlaybackEvent]) -> Result<usize, Failure> {
        match self.mode {
            CassandraMode::PerEvent => {
                for event in events {
                    self.insert_one(event).await?;
                }
            }
            CassandraMode::Best => {
                let cluster = self.session.get_cluster_state();
                let groups = replica_set_batches(&cluster, &self.keyspace, events, &self.limits);
                futures::future::try_join_all(
                    groups.iter().map(|group| self.write_group(events, group)),
                )
                .await?;
            }
        }
        Ok(events.len())
    }

    async fn insert_one(&self, event: &PlaybackEvent) -> Result<(), Failure> {
        let row = EventRow::new(event, self.ttl_seconds);
        self.session
            .execute_unpaged(&self.insert, &row)
            .await
            .map(drop)
            .map_err(|error| Failure::Cassandra(error_kind(&error)))
    }

    async fn write_group(&self, events: &[PlaybackEvent], group: &[usize]) -> Result<(), Failure> {
        if let [only] = group {
            return self.insert_one(&events[*only]).await;
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        batch.set_is_idempotent(true);
        let rows: Vec<EventRow<'_>> = group
            .iter()
            .map(|&index| {
                batch.append_statement(self.insert.clone());
                EventRow::new(&events[index], self.ttl_seconds)
            })
            .collect();
        self.session
            .batch(&batch, &rows)
            .await
            .map(drop)
            .map_err(|error| Failure::Cassandra(error_kind(&error)))
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn example() -> CassandraTargetSettings {
        CassandraTargetSettings {
            nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "playpulse_loadgen".into(),
            mode: CassandraMode::Best,
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            local_datacenter: "datacenter1".into(),
            consistency: "local_quorum".into(),
            ttl_seconds: 86_400,
            driver_connections: 1,
            max_batch_rows: 256,
        }
    }

    #[test]
    fn bad_cassandra_settings_name_their_flag() {
        assert_eq!(example().validate(), Ok(()));
        let flag_of = |settings: CassandraTargetSettings| match settings.validate() {
            Err(SettingsError::Cassandra { flag, .. }) => flag,
            other => panic!("expected a Cassandra settings error, got {other:?}"),
        };
        assert_eq!(
            flag_of(CassandraTargetSettings {
                nodes: vec![],
                ..example()
            }),
            "--nodes"
        );
        for keyspace in ["", "1abc", "drop table x", "a-b"] {
            assert_eq!(
                flag_of(CassandraTargetSettings {
                    keyspace: keyspace.into(),
                    ..example()
                }),
                "--keyspace",
                "{keyspace:?}"
            );
        }
        assert_eq!(
            flag_of(CassandraTargetSettings {
                consistency: "most".into(),
                ..example()
            }),
            "--consistency"
        );
        assert_eq!(
            flag_of(CassandraTargetSettings {
                max_batch_rows: 0,
                ..example()
            }),
            "--max-batch-rows"
        );
    }

    #[test]
    fn modes_are_named_as_on_the_command_line() {
        for mode in [CassandraMode::PerEvent, CassandraMode::Best] {
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{}\"", mode.name()));
        }
    }
}
