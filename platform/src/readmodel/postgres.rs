//! The read models on PostgreSQL, for a platform that runs PostgreSQL alone: the same SQL as
//! the local one ([`super::sql`]), in a schema of their own (`read_model` by default) beside
//! the command store's tables. A read model is disposable and rebuilt from events, so its
//! tables are `UNLOGGED`: no WAL is written for them, and a crash empties them (the relay and
//! the refresher fill them again).

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};

use super::sql::sql_read_model;
use super::ReadModelError;

const SCHEMA: &str = "
CREATE UNLOGGED TABLE IF NOT EXISTS user_profile (
    user_id BIGINT PRIMARY KEY, version BIGINT NOT NULL, profile TEXT NOT NULL);
CREATE UNLOGGED TABLE IF NOT EXISTS watched (
    user_id BIGINT NOT NULL, content_id BIGINT NOT NULL, PRIMARY KEY (user_id, content_id));
CREATE INDEX IF NOT EXISTS viewers ON watched (content_id, user_id);
CREATE UNLOGGED TABLE IF NOT EXISTS popularity (content_id BIGINT PRIMARY KEY, views BIGINT NOT NULL);
CREATE UNLOGGED TABLE IF NOT EXISTS recommendations (user_id BIGINT PRIMARY KEY, items TEXT NOT NULL);
CREATE UNLOGGED TABLE IF NOT EXISTS titles (
    id BIGINT PRIMARY KEY, version BIGINT NOT NULL, deleted BOOLEAN NOT NULL, body TEXT NOT NULL,
    updated_at BIGINT NOT NULL);
";

fn database(context: &'static str) -> impl FnOnce(sqlx::Error) -> ReadModelError {
    move |source| ReadModelError::Postgres { context, source }
}

pub struct PostgresReadModel {
    pool: PgPool,
}

impl PostgresReadModel {
    /// Connects to `url` with `schema` first on the search path, and creates both where missing.
    pub async fn connect(
        url: &str,
        schema: &str,
        max_connections: u32,
    ) -> Result<PostgresReadModel, ReadModelError> {
        if schema.is_empty()
            || !schema
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
        {
            return Err(ReadModelError::Corrupt(format!(
                "platform.read_model.postgres_schema must be lowercase letters, digits and _: {schema:?}"
            )));
        }
        let options: PgConnectOptions = url.parse().map_err(database("postgres url"))?;
        let options = options.options([("search_path", schema)]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(database("connect"))?;
        sqlx::raw_sql(&format!("CREATE SCHEMA IF NOT EXISTS {schema};{SCHEMA}"))
            .execute(&pool)
            .await
            .map_err(database("create read model schema"))?;
        Ok(PostgresReadModel { pool })
    }
}

sql_read_model!(PostgresReadModel);
