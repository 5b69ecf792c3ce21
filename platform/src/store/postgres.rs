//! The command store at scale: PostgreSQL. Several `playpulse` processes may share it; their
//! relays claim outbox events with `FOR UPDATE SKIP LOCKED` inside a transaction that lives until
//! the events are marked, so an event is published by one relay at a time.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Row, Transaction};

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
    id BIGSERIAL PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    country TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS plans (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
    currency TEXT NOT NULL,
    period TEXT NOT NULL CHECK (period IN ('monthly', 'yearly')),
    available BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS payments (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    amount_cents BIGINT NOT NULL,
    currency TEXT NOT NULL,
    charge_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS subscriptions (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    plan_id BIGINT NOT NULL REFERENCES plans (id),
    payment_id BIGINT NOT NULL UNIQUE REFERENCES payments (id),
    status TEXT NOT NULL CHECK (status IN ('active', 'cancelled')),
    created_at BIGINT NOT NULL,
    cancelled_at BIGINT);
CREATE INDEX IF NOT EXISTS subscriptions_by_user ON subscriptions (user_id, created_at);
CREATE INDEX IF NOT EXISTS subscriptions_by_plan ON subscriptions (plan_id);
CREATE TABLE IF NOT EXISTS outbox (
    seq BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL,
    version BIGINT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    published_at BIGINT);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (user_id, seq) WHERE published_at IS NULL;
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    outcome TEXT,
    body TEXT,
    started_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('ingest', 'read', 'admin')),
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;
";

/// Serializes schema creation across processes starting together (concurrent `CREATE TABLE IF
/// NOT EXISTS` can still collide on the catalog).
const SCHEMA_LOCK: i64 = 0x706c_6179_7075_6c73;

pub struct PostgresStore {
    pool: PgPool,
}

impl Backend for PostgresStore {
    type Db = Postgres;
}

impl PostgresStore {
    /// Connects and creates the tables if they are missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<PostgresStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(StoreError::database(
                "connect to postgres (platform.commands.postgres_url)",
            ))?;
        let mut tx = pool.begin().await.map_err(StoreError::database("begin"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::database("lock schema"))?;
        sqlx::raw_sql(SCHEMA)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::database("create postgres schema"))?;
        sqlx::raw_sql(&super::catalog::schema("BIGSERIAL PRIMARY KEY"))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::database("create postgres catalog schema"))?;
        if let Some(row) = sqlx::query(DUPLICATE_ACTIVE_SUBSCRIPTIONS)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::database("look for duplicate subscriptions"))?
        {
            return Err(duplicate_subscriptions(|name| row.try_get::<i64, _>(name)));
        }
        sqlx::query(ONE_ACTIVE_SUBSCRIPTION_PER_PLAN)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::database("index active subscriptions"))?;
        tx.commit()
            .await
            .map_err(StoreError::database("commit schema"))?;
        let store = PostgresStore { pool };
        store.hash_plaintext_fingerprints().await?;
        Ok(store)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Nothing to take: PostgreSQL has row locks.
    async fn write_lock(&self) {}

    async fn claim_outbox_batch(&self, limit: i64) -> Result<Box<dyn OutboxBatch>, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::database("begin"))?;
        // The head of each user's queue only: a user's later event waits until the earlier one
        // (perhaps locked by another relay, hence skipped, yet still unpublished) is marked.
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox o \
             WHERE o.published_at IS NULL \
               AND NOT EXISTS (SELECT 1 FROM outbox p \
                               WHERE p.user_id = o.user_id AND p.published_at IS NULL AND p.seq < o.seq) \
             ORDER BY o.seq LIMIT $1 FOR UPDATE SKIP LOCKED"
        ))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::database("claim outbox"))?;
        let events = rows
            .iter()
            .map(outbox_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(PostgresBatch { events, tx }))
    }
}

command_store!(PostgresStore);
catalog_store!(PostgresStore, "SELECT pg_advisory_xact_lock(7215001)");

struct PostgresBatch {
    events: Vec<OutboxEvent>,
    /// Holds the claimed rows' locks; dropped unmarked, it rolls back and frees them.
    tx: Transaction<'static, Postgres>,
}

#[async_trait]
impl OutboxBatch for PostgresBatch {
    fn events(&self) -> &[OutboxEvent] {
        &self.events
    }

    async fn mark_published(self: Box<Self>, now: Millis) -> Result<(), StoreError> {
        let PostgresBatch { events, mut tx } = *self;
        let seqs: Vec<i64> = events.iter().map(|event| event.seq).collect();
        sqlx::query("UPDATE outbox SET published_at = $1 WHERE seq = ANY($2)")
            .bind(now)
            .bind(&seqs)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::database("mark outbox published"))?;
        tx.commit()
            .await
            .map_err(StoreError::database("commit outbox mark"))?;
        Ok(())
    }
}
