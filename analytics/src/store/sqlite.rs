//! Rollups in a SQLite file (the embedded default): one table, rows replaced whole.

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Row;

use super::{AnalyticsError, RollupStore};
use crate::measures::Measures;
use crate::rollup::{CellKey, Dimension, Dims, Grouping, RollupRow};

/// Rows written by one `INSERT` (8 parameters each).
const ROWS_PER_STATEMENT: usize = 500;

pub struct SqliteRollups {
    pool: SqlitePool,
}

fn unavailable(error: sqlx::Error) -> AnalyticsError {
    AnalyticsError::Unavailable(error.to_string())
}

impl SqliteRollups {
    /// Opens (creating if missing) the rollup database at `path`.
    pub async fn open(path: &Path) -> Result<SqliteRollups, AnalyticsError> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|error| {
                AnalyticsError::Unavailable(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(unavailable)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A flush rewrites thousands of rows of a few minutes: with SQLite's 2 MB page cache
            // it spilled pages to the WAL mid-transaction and read them back (most of the side
            // path's CPU at 10,000 events/s). 64 MiB holds the recent minutes.
            .pragma("cache_size", "-65536")
            // A commit need not wait for fsync, only checkpoints do: a power cut may lose the
            // last flushes (as a crash loses the cells not yet flushed), never consistency.
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS qoe_rollups (grouping TEXT NOT NULL, minute INTEGER NOT \
             NULL, title INTEGER, country TEXT, device TEXT, cdn TEXT, writer TEXT NOT NULL, \
             measures BLOB NOT NULL, PRIMARY KEY (grouping, minute, title, country, device, cdn, \
             writer))",
        )
        .execute(&pool)
        .await
        .map_err(unavailable)?;
        Ok(SqliteRollups { pool })
    }
}

#[async_trait]
impl RollupStore for SqliteRollups {
    async fn write(&self, rows: &[RollupRow]) -> Result<(), AnalyticsError> {
        let mut transaction = self.pool.begin().await.map_err(unavailable)?;
        // Many rows per statement: sqlx runs each SQLite statement on its worker thread, and a
        // statement per row cost two thread switches a row (most of the side path's CPU at
        // 10,000 events/s). 8 parameters a row stays far under SQLite's 32,766.
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT OR REPLACE INTO qoe_rollups (grouping, minute, title, country, device, \
                 cdn, writer, measures) ",
            );
            insert.push_values(chunk, |mut values, row| {
                let dims = &row.key.dims;
                // NULL never equals NULL in a key: absent dimensions are stored as empty text,
                // and a title as its id bit-cast to i64 (0 where the grouping keeps no title).
                values
                    .push_bind(row.key.grouping.as_str())
                    .push_bind(row.key.minute)
                    .push_bind(title_to_column(dims.title))
                    .push_bind(
                        dims.country
                            .map(|country| country.to_string())
                            .unwrap_or_default(),
                    )
                    .push_bind(dims.device.as_deref().unwrap_or_default().to_owned())
                    .push_bind(dims.cdn.as_deref().unwrap_or_default().to_owned())
                    .push_bind(row.writer.clone())
                    .push_bind(row.measures.to_bytes());
            });
            insert
                .build()
                .execute(&mut *transaction)
                .await
                .map_err(unavailable)?;
        }
        transaction.commit().await.map_err(unavailable)
    }

    async fn read(
        &self,
        grouping: Grouping,
        from_minute: i64,
        to_minute: i64,
    ) -> Result<Vec<RollupRow>, AnalyticsError> {
        let rows = sqlx::query(
            "SELECT minute, title, country, device, cdn, writer, measures FROM qoe_rollups \
             WHERE grouping = ? AND minute >= ? AND minute <= ?",
        )
        .bind(grouping.as_str())
        .bind(from_minute)
        .bind(to_minute)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.into_iter()
            .map(|row| {
                let measures: Vec<u8> = row.get(6);
                Ok(RollupRow {
                    key: CellKey {
                        grouping,
                        minute: row.get(0),
                        dims: dims_from_columns(
                            grouping,
                            row.get(1),
                            row.get::<String, _>(2).as_str(),
                            row.get(3),
                            row.get(4),
                        )?,
                    },
                    writer: row.get(5),
                    measures: Measures::decode(&measures)?,
                })
            })
            .collect()
    }

    async fn ready(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// A title as stored: the id bit-cast to i64 (0 when the grouping keeps none).
pub(crate) fn title_to_column(title: Option<u64>) -> i64 {
    title.map_or(0, |id| id as i64)
}

/// Dimensions from stored columns, where empty text is absent and the title is there when the
/// grouping keeps titles.
pub(crate) fn dims_from_columns(
    grouping: Grouping,
    title: i64,
    country: &str,
    device: String,
    cdn: String,
) -> Result<Dims, AnalyticsError> {
    let country = match country {
        "" => None,
        code => Some(
            wire::CountryCode::parse(code).ok_or(AnalyticsError::Corrupt(
                crate::sketch::DecodeError("bad country in a rollup"),
            ))?,
        ),
    };
    let text = |value: String| (!value.is_empty()).then(|| wire::SmolStr::new(value));
    Ok(Dims {
        title: matches!(
            grouping,
            Grouping::Full | Grouping::TitleCountry | Grouping::By(Dimension::Title)
        )
        .then_some(title as u64),
        country,
        device: text(device),
        cdn: text(cdn),
    })
}
