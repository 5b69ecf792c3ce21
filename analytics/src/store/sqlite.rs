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
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            // A multi-row upsert keeps a statement journal; on disk it was a third of the
            // writer's CPU (pwrite of every page touched), in memory it is a copy.
            .pragma("temp_store", "MEMORY");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        create_table(&pool).await?;
        Ok(SqliteRollups { pool })
    }
}

/// The table is clustered on its key (`WITHOUT ROWID`): a rowid table kept the key twice, in the
/// table and in its index, and a rewrite of a row updated both. A file made before that has
/// its rows moved over once.
async fn create_table(pool: &SqlitePool) -> Result<(), AnalyticsError> {
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'qoe_rollups'",
    )
    .fetch_optional(pool)
    .await
    .map_err(unavailable)?;
    let create = "CREATE TABLE IF NOT EXISTS qoe_rollups (grouping TEXT NOT NULL, minute \
                  INTEGER NOT NULL, title INTEGER NOT NULL, country TEXT NOT NULL, device TEXT NOT \
                  NULL, cdn TEXT NOT NULL, writer TEXT NOT NULL, measures BLOB NOT NULL, PRIMARY \
                  KEY (grouping, minute, title, country, device, cdn, writer)) WITHOUT ROWID";
    match existing {
        Some(sql) if !sql.contains("WITHOUT ROWID") => {
            let mut transaction = pool.begin().await.map_err(unavailable)?;
            for statement in [
                "ALTER TABLE qoe_rollups RENAME TO qoe_rollups_rowid",
                create,
                "INSERT OR REPLACE INTO qoe_rollups SELECT grouping, minute, coalesce(title, 0), \
                 coalesce(country, ''), coalesce(device, ''), coalesce(cdn, ''), writer, \
                 measures FROM qoe_rollups_rowid",
                "DROP TABLE qoe_rollups_rowid",
            ] {
                sqlx::query(statement)
                    .execute(&mut *transaction)
                    .await
                    .map_err(unavailable)?;
            }
            transaction.commit().await.map_err(unavailable)
        }
        _ => {
            sqlx::query(create)
                .execute(pool)
                .await
                .map_err(unavailable)?;
            Ok(())
        }
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
                "INSERT INTO qoe_rollups (grouping, minute, title, country, device, cdn, writer, \
                 measures) ",
            );
            insert.push_values(chunk, |mut values, row| {
                let dims = &row.key.dims;
                // NULL never equals NULL in a key: absent dimensions are stored as empty text,
                // and a title as its id bit-cast to i64 (0 where the grouping keeps no title).
                // Borrowed where the row has the text: no copy per row.
                values
                    .push_bind(row.key.grouping.as_str())
                    .push_bind(row.key.minute)
                    .push_bind(title_to_column(dims.title))
                    .push_bind(dims.country.as_ref().map_or("", |country| country.as_str()))
                    .push_bind(dims.device.as_deref().unwrap_or_default())
                    .push_bind(dims.cdn.as_deref().unwrap_or_default())
                    .push_bind(row.writer.as_str())
                    .push_bind(row.measures.to_bytes());
            });
            // An upsert rewrites the blob in place; REPLACE deleted the row and inserted it anew.
            insert.push(
                " ON CONFLICT (grouping, minute, title, country, device, cdn, writer) DO UPDATE \
                 SET measures = excluded.measures",
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_of_the_rowid_layout_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollups.sqlite");
        let mut measures = Measures {
            events: 7,
            ..Measures::default()
        };
        measures.viewers.insert(42);
        {
            let pool = SqlitePool::connect_with(
                SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
                    .unwrap()
                    .create_if_missing(true),
            )
            .await
            .unwrap();
            sqlx::query(
                "CREATE TABLE qoe_rollups (grouping TEXT NOT NULL, minute INTEGER NOT NULL, title \
                 INTEGER, country TEXT, device TEXT, cdn TEXT, writer TEXT NOT NULL, measures \
                 BLOB NOT NULL, PRIMARY KEY (grouping, minute, title, country, device, cdn, \
                 writer))",
            )
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO qoe_rollups VALUES ('device', 60000, 0, '', 'tv', '', 'w', ?)",
            )
            .bind(measures.to_bytes())
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let store = SqliteRollups::open(&path).await.unwrap();
        let rows = store
            .read(Grouping::By(Dimension::Device), 0, 120_000)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].key.dims.device.as_deref(), Some("tv"));
        assert_eq!(rows[0].writer, "w");
        assert_eq!(rows[0].measures, measures);
        let sql: String =
            sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'qoe_rollups'")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert!(sql.contains("WITHOUT ROWID"), "{sql}");
        // A rewrite of the moved row replaces it.
        measures.events = 8;
        store
            .write(&[RollupRow {
                key: rows[0].key.clone(),
                writer: "w".to_owned(),
                measures: measures.clone(),
            }])
            .await
            .unwrap();
        let again = store
            .read(Grouping::By(Dimension::Device), 0, 120_000)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].measures.events, 8);
    }
}
