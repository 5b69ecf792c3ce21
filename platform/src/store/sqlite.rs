//! The command store on the embedded default: one SQLite file (WAL, `synchronous = FULL`:
//! a committed payment survives a power cut). SQLite has one writer; the store serializes its
//! write transactions in the process rather than letting them fail with SQLITE_BUSY.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::catalog::catalog_store;
use super::common::{
    command_store, duplicate_subscriptions, outbox_from, Backend, DUPLICATE_ACTIVE_SUBSCRIPTIONS,
    ONE_ACTIVE_SUBSCRIPTION_PER_PLAN, OUTBOX_COLUMNS,
};
use super::{OutboxBatch, StoreError};
use crate::domain::Millis;
use crate::outbox::OutboxEvent;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    country TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS plans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    currency TEXT NOT NULL,
    period TEXT NOT NULL CHECK (period IN ('monthly', 'yearly')),
    available BOOLEAN NOT NULL,
    created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS payments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id),
    amount_cents INTEGER NOT NULL,
    currency TEXT NOT NULL,
    charge_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS subscriptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id),
    plan_id INTEGER NOT NULL REFERENCES plans (id),
    payment_id INTEGER NOT NULL UNIQUE REFERENCES payments (id),
    status TEXT NOT NULL CHECK (status IN ('active', 'cancelled')),
    created_at INTEGER NOT NULL,
    cancelled_at INTEGER);
CREATE INDEX IF NOT EXISTS subscriptions_by_user ON subscriptions (user_id, created_at);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    published_at INTEGER);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE published_at IS NULL;
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    outcome TEXT,
    body TEXT,
    started_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('ingest', 'read', 'admin')),
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;
";

pub struct SqliteStore {
    pool: SqlitePool,
    /// SQLite's single writer, taken by every write transaction of this process.
    writer: Arc<Mutex<()>>,
    /// One relay at a time claims the outbox (a second one would publish the same events).
    relay: Arc<Mutex<()>>,
}

impl Backend for SqliteStore {
    type Db = Sqlite;
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and its tables.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| {
                StoreError::Corrupt(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(StoreError::database("sqlite options"))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(StoreError::database("open sqlite"))?;
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(StoreError::database("create sqlite schema"))?;
        sqlx::raw_sql(&super::catalog::schema("INTEGER PRIMARY KEY AUTOINCREMENT"))
            .execute(&pool)
            .await
            .map_err(StoreError::database("create sqlite catalog schema"))?;
        if let Some(row) = sqlx::query(DUPLICATE_ACTIVE_SUBSCRIPTIONS)
            .fetch_optional(&pool)
            .await
            .map_err(StoreError::database("look for duplicate subscriptions"))?
        {
            return Err(duplicate_subscriptions(|name| row.try_get::<i64, _>(name)));
        }
        sqlx::query(ONE_ACTIVE_SUBSCRIPTION_PER_PLAN)
            .execute(&pool)
            .await
            .map_err(StoreError::database("index active subscriptions"))?;
        let store = SqliteStore {
            pool,
            writer: Arc::new(Mutex::new(())),
            relay: Arc::new(Mutex::new(())),
        };
        store.hash_plaintext_fingerprints().await?;
        Ok(store)
    }

    async fn write_lock(&self) -> OwnedMutexGuard<()> {
        self.writer.clone().lock_owned().await
    }

    async fn claim_outbox_batch(&self, limit: i64) -> Result<Box<dyn OutboxBatch>, StoreError> {
        let relay = self.relay.clone().lock_owned().await;
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::database("claim outbox"))?;
        let events = rows
            .iter()
            .map(outbox_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(SqliteBatch {
            events,
            pool: self.pool.clone(),
            writer: self.writer.clone(),
            _relay: relay,
        }))
    }
}

command_store!(SqliteStore);
catalog_store!(SqliteStore, "SELECT 1");

struct SqliteBatch {
    events: Vec<OutboxEvent>,
    pool: SqlitePool,
    writer: Arc<Mutex<()>>,
    _relay: OwnedMutexGuard<()>,
}

#[async_trait]
impl OutboxBatch for SqliteBatch {
    fn events(&self) -> &[OutboxEvent] {
        &self.events
    }

    async fn mark_published(self: Box<Self>, now: Millis) -> Result<(), StoreError> {
        let Some(last) = self.events.last() else {
            return Ok(());
        };
        let _writer = self.writer.lock().await;
        // The batch is every unpublished event up to `last` (one relay, in order).
        sqlx::query("UPDATE outbox SET published_at = $1 WHERE published_at IS NULL AND seq <= $2")
            .bind(now)
            .bind(last.seq)
            .execute(&self.pool)
            .await
            .map_err(StoreError::database("mark outbox published"))?;
        Ok(())
    }
}
