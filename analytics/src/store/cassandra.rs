//! Rollups on Cassandra (the cluster profile): one partition per grouping and hour, a row per
//! minute, dimensions and writer, replaced whole (an INSERT is an upsert; no counters, so a
//! retried write never counts twice).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::try_join_all;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use super::sqlite::{dims_from_columns, title_to_column};
use super::{AnalyticsError, RollupStore};
use crate::measures::Measures;
use crate::rollup::{CellKey, Grouping, RollupRow};

const HOUR_MS: i64 = 3_600_000;
/// Rows written concurrently per flush.
const WRITES_IN_FLIGHT: usize = 256;

/// Where the rollups live on Cassandra.
#[derive(Debug, Clone)]
pub struct CassandraRollupsConfig {
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub replication: String,
    pub local_datacenter: String,
    pub request_timeout: Duration,
    /// How long a minute's rows are kept.
    pub ttl_seconds: u32,
}

pub struct CassandraRollups {
    session: Arc<Session>,
    insert: PreparedStatement,
    select: PreparedStatement,
    keyspace: String,
}

fn unavailable(what: &str) -> impl Fn(String) -> AnalyticsError + '_ {
    move |error| AnalyticsError::Unavailable(format!("{what}: {error}"))
}

impl CassandraRollups {
    /// Connects, creates the table if missing and prepares the statements.
    pub async fn connect(
        config: &CassandraRollupsConfig,
    ) -> Result<CassandraRollups, AnalyticsError> {
        let session = event_cql::open_session(&event_cql::SessionSpec {
            nodes: &config.nodes,
            keyspace: &config.keyspace,
            replication: &config.replication,
            local_datacenter: &config.local_datacenter,
            // Quorum in the local datacenter: a query right after a flush sees it.
            consistency: Consistency::LocalQuorum,
            request_timeout: config.request_timeout,
            connections_per_node: 1,
            driver_retries: true,
        })
        .await
        .map_err(|error| unavailable("connect")(error.to_string()))?;
        let keyspace = &config.keyspace;
        for cql in [
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {}",
                config.replication
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.qoe_rollups (grouping text, hour bigint, \
                 minute bigint, title bigint, country text, device text, cdn text, writer text, \
                 measures blob, PRIMARY KEY ((grouping, hour), minute, title, country, device, \
                 cdn, writer)) WITH default_time_to_live = {}",
                config.ttl_seconds
            ),
        ] {
            let mut statement = scylla::statement::unprepared::Statement::new(cql.clone());
            statement.set_request_timeout(Some(Duration::from_secs(60)));
            session
                .query_unpaged(statement, ())
                .await
                .map_err(|error| {
                    unavailable("create the rollup table")(format!("{cql}: {error}"))
                })?;
        }
        let insert = session
            .prepare(format!(
                "INSERT INTO {keyspace}.qoe_rollups (grouping, hour, minute, title, country, \
                 device, cdn, writer, measures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await
            .map_err(|error| unavailable("prepare")(error.to_string()))?;
        let select = session
            .prepare(format!(
                "SELECT minute, title, country, device, cdn, writer, measures FROM \
                 {keyspace}.qoe_rollups WHERE grouping = ? AND hour = ? AND minute >= ? AND \
                 minute <= ?"
            ))
            .await
            .map_err(|error| unavailable("prepare")(error.to_string()))?;
        Ok(CassandraRollups {
            session: Arc::new(session),
            insert,
            select,
            keyspace: keyspace.clone(),
        })
    }

    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    async fn read_hour(
        &self,
        grouping: Grouping,
        hour: i64,
        from_minute: i64,
        to_minute: i64,
    ) -> Result<Vec<RollupRow>, AnalyticsError> {
        let mut pager = self
            .session
            .execute_iter(
                self.select.clone(),
                (grouping.as_str(), hour, from_minute, to_minute),
            )
            .await
            .map_err(|error| unavailable("read rollups")(error.to_string()))?
            .rows_stream::<(i64, i64, String, String, String, String, Vec<u8>)>()
            .map_err(|error| unavailable("read rollups")(error.to_string()))?;
        let mut rows = Vec::new();
        use futures::StreamExt;
        while let Some(row) = pager.next().await {
            let (minute, title, country, device, cdn, writer, measures) =
                row.map_err(|error| unavailable("read rollups")(error.to_string()))?;
            rows.push(RollupRow {
                key: CellKey {
                    grouping,
                    minute,
                    dims: dims_from_columns(grouping, title, &country, device, cdn)?,
                },
                writer,
                measures: Measures::decode(&measures)?,
            });
        }
        Ok(rows)
    }
}

#[async_trait]
impl RollupStore for CassandraRollups {
    async fn write(&self, rows: &[RollupRow]) -> Result<(), AnalyticsError> {
        for chunk in rows.chunks(WRITES_IN_FLIGHT) {
            try_join_all(chunk.iter().map(|row| {
                let dims = &row.key.dims;
                let values = (
                    row.key.grouping.as_str(),
                    row.key.minute.div_euclid(HOUR_MS),
                    row.key.minute,
                    title_to_column(dims.title),
                    dims.country
                        .map(|country| country.to_string())
                        .unwrap_or_default(),
                    dims.device.as_deref().unwrap_or_default().to_owned(),
                    dims.cdn.as_deref().unwrap_or_default().to_owned(),
                    row.writer.as_str(),
                    row.measures.to_bytes(),
                );
                async move { self.session.execute_unpaged(&self.insert, values).await }
            }))
            .await
            .map_err(|error| unavailable("write rollups")(error.to_string()))?;
        }
        Ok(())
    }

    async fn read(
        &self,
        grouping: Grouping,
        from_minute: i64,
        to_minute: i64,
    ) -> Result<Vec<RollupRow>, AnalyticsError> {
        if from_minute > to_minute {
            return Ok(Vec::new());
        }
        let hours = from_minute.div_euclid(HOUR_MS)..=to_minute.div_euclid(HOUR_MS);
        let parts =
            try_join_all(hours.map(|hour| self.read_hour(grouping, hour, from_minute, to_minute)))
                .await?;
        Ok(parts.into_iter().flatten().collect())
    }

    async fn ready(&self) -> bool {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", ())
            .await
            .is_ok()
    }
}
