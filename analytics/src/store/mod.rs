//! The rollup store port: whole rows written by their writer, read back by grouping and minute
//! range. SQLite on the embedded default ([`sqlite::SqliteRollups`]), Cassandra at scale
//! ([`cassandra::CassandraRollups`]); `tests/contract.rs` runs on both.

pub mod cassandra;
pub mod sqlite;

use async_trait::async_trait;

use crate::rollup::{Grouping, RollupRow};

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("the analytics store is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Corrupt(#[from] crate::sketch::DecodeError),
    #[error("{0}")]
    Invalid(String),
}

#[async_trait]
pub trait RollupStore: Send + Sync + 'static {
    /// Writes rows whole, replacing any row of the same cell and writer.
    async fn write(&self, rows: &[RollupRow]) -> Result<(), AnalyticsError>;

    /// Every writer's rows of `grouping` with `from_minute <= minute <= to_minute`.
    async fn read(
        &self,
        grouping: Grouping,
        from_minute: i64,
        to_minute: i64,
    ) -> Result<Vec<RollupRow>, AnalyticsError>;

    async fn ready(&self) -> bool;
}
