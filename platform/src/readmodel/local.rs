//! The read models on the embedded default: a SQLite file of their own (not the command store's:
//! a read model is disposable and rebuilt from events, the command store is not).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::sql::sql_read_model;
use super::ReadModelError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS user_profile (
    user_id INTEGER PRIMARY KEY, version INTEGER NOT NULL, profile TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS watched (
    user_id INTEGER NOT NULL, content_id INTEGER NOT NULL, PRIMARY KEY (user_id, content_id));
CREATE INDEX IF NOT EXISTS viewers ON watched (content_id, user_id);
CREATE TABLE IF NOT EXISTS popularity (content_id INTEGER PRIMARY KEY, views INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS recommendations (user_id INTEGER PRIMARY KEY, items TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS titles (
    id INTEGER PRIMARY KEY, version INTEGER NOT NULL, deleted BOOLEAN NOT NULL, body TEXT NOT NULL,
    updated_at INTEGER NOT NULL);
";

fn database(context: &'static str) -> impl FnOnce(sqlx::Error) -> ReadModelError {
    move |source| ReadModelError::Local { context, source }
}

pub struct LocalReadModel {
    pool: SqlitePool,
}

impl LocalReadModel {
    pub async fn open(path: &Path) -> Result<LocalReadModel, ReadModelError> {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(database("sqlite options"))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A read model is rebuilt from events: losing its last writes to a power cut is fine.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            // One connection: SQLite has one writer, and the read model's writes are small.
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(database("open read model"))?;
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(database("create read model schema"))?;
        Ok(LocalReadModel { pool })
    }
}

sql_read_model!(LocalReadModel);
