//! The catalog on the command side: titles, their outbox (`title_events`) and the positions of
//! the projectors that read it.
//!
//! Unlike the users' outbox (claimed and marked by one relay), the catalog's is a log read by
//! position: each projector (the title read model, the search index) keeps its own, so a search
//! engine that is down holds back no one else, and catches up from where it stopped. A reader
//! must never see seq N+1 committed before seq N, so title writes are serialized: SQLite has one
//! writer; PostgreSQL takes a transaction-level advisory lock before it assigns a seq.

use async_trait::async_trait;
use search::{Title, TitleChange};

use super::StoreError;
use crate::domain::Millis;

/// A title as the command store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub title: Title,
    /// 1 when created, +1 per change (a delete included).
    pub version: u64,
    /// A deleted title keeps its row (and its last body): a tombstone.
    pub deleted: bool,
    pub updated_at: Millis,
}

impl CatalogEntry {
    /// The change that brings an index to this entry.
    pub fn change(&self) -> TitleChange {
        if self.deleted {
            TitleChange::Delete {
                id: self.title.id,
                version: self.version,
            }
        } else {
            TitleChange::Upsert {
                title: self.title.clone(),
                version: self.version,
            }
        }
    }
}

/// One committed change of the catalog, at its position in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TitleEvent {
    pub seq: i64,
    pub change: TitleChange,
    pub created_at: Millis,
}

/// What `create_title` may be refused for, besides the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// A live title already has this id.
    Exists,
}

#[async_trait]
pub trait CatalogStore: Send + Sync {
    /// Creates `title` under `id`, or under the next free id when `id` is none, with its
    /// `TitleUpserted` event. Creating over a deleted title revives it (its version goes on).
    async fn create_title(
        &self,
        id: Option<u64>,
        title: &Title,
        now: Millis,
    ) -> Result<(CreateOutcome, CatalogEntry), StoreError>;
    /// Replaces a live title (`None`: no live title has this id).
    async fn replace_title(
        &self,
        title: &Title,
        now: Millis,
    ) -> Result<Option<CatalogEntry>, StoreError>;
    /// Deletes a live title, keeping a tombstone (`None`: no live title has this id).
    async fn delete_title(&self, id: u64, now: Millis) -> Result<Option<CatalogEntry>, StoreError>;
    /// The title with this id, deleted or not.
    async fn title(&self, id: u64) -> Result<Option<CatalogEntry>, StoreError>;
    /// Up to `limit` titles with ids above `after`, in id order, tombstones included (a rebuild).
    async fn titles_after(&self, after: u64, limit: i64) -> Result<Vec<CatalogEntry>, StoreError>;
    /// Up to `limit` events after position `after`, in order.
    async fn title_events_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<TitleEvent>, StoreError>;
    /// The position of the last event (0: none yet).
    async fn last_title_event(&self) -> Result<i64, StoreError>;
    /// Where the projector `consumer` stopped (0: it never read).
    async fn consumer_position(&self, consumer: &str) -> Result<i64, StoreError>;
    /// Saves where `consumer` stopped; a position never goes back.
    async fn save_consumer_position(&self, consumer: &str, seq: i64) -> Result<(), StoreError>;
}

/// The catalog's tables, in SQL both databases read (`{serial}`: the autoincrementing key).
pub(super) fn schema(serial: &str) -> String {
    format!(
        "
CREATE TABLE IF NOT EXISTS titles (
    id BIGINT PRIMARY KEY,
    version BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS title_events (
    seq {serial},
    title_id BIGINT NOT NULL,
    version BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('TitleUpserted', 'TitleDeleted')),
    body TEXT,
    created_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS consumer_positions (
    consumer TEXT PRIMARY KEY,
    seq BIGINT NOT NULL);
"
    )
}

pub(super) fn body_of(title: &Title) -> Result<String, StoreError> {
    serde_json::to_string(title).map_err(|error| StoreError::Corrupt(error.to_string()))
}

pub(super) fn title_of(body: &str, id: i64) -> Result<Title, StoreError> {
    let mut title: Title = serde_json::from_str(body)
        .map_err(|error| StoreError::Corrupt(format!("title {id}: {error}")))?;
    title.id = id as u64;
    Ok(title)
}

/// Title ids are positive 63-bit integers (the database's BIGINT).
pub(super) fn db_id(id: u64) -> Result<i64, StoreError> {
    i64::try_from(id)
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| StoreError::Conflict(format!("title id {id} is out of range")))
}

/// Implements [`CatalogStore`] for a store with a `pool` and `write_lock()`; `$serialize` is the
/// statement that serializes catalog writes inside their transaction.
macro_rules! catalog_store {
    ($store:ty, $serialize:expr) => {
        impl $store {
            async fn catalog_write(
                &self,
                title_id: i64,
                version: i64,
                deleted: bool,
                title: &search::Title,
                now: $crate::domain::Millis,
                exists: bool,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::StoreError;
                let body = $crate::store::catalog::body_of(title)?;
                let mut tx = self.pool.begin().await.map_err(StoreError::database("begin"))?;
                sqlx::query($serialize)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::database("serialize catalog writes"))?;
                let held: Option<(i64,)> = sqlx::query_as("SELECT version FROM titles WHERE id = $1")
                    .bind(title_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::database("read title version"))?;
                if held.map(|(held,)| held + 1).unwrap_or(1) != version || held.is_some() != exists {
                    // Another writer moved the title between the read and this transaction.
                    return Err(StoreError::Conflict(format!("title {title_id} changed meanwhile; retry")));
                }
                sqlx::query(
                    "INSERT INTO titles (id, version, deleted, body, updated_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted, \
                     body = excluded.body, updated_at = excluded.updated_at",
                )
                .bind(title_id)
                .bind(version)
                .bind(deleted)
                .bind(&body)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::database("write title"))?;
                let (kind, event_body) = if deleted {
                    ("TitleDeleted", None)
                } else {
                    ("TitleUpserted", Some(body))
                };
                sqlx::query(
                    "INSERT INTO title_events (title_id, version, kind, body, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(title_id)
                .bind(version)
                .bind(kind)
                .bind(event_body)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::database("insert title event"))?;
                tx.commit().await.map_err(StoreError::database("commit title"))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::catalog::CatalogStore for $store {
            async fn create_title(
                &self,
                id: Option<u64>,
                title: &search::Title,
                now: $crate::domain::Millis,
            ) -> Result<
                ($crate::store::catalog::CreateOutcome, $crate::store::catalog::CatalogEntry),
                $crate::store::StoreError,
            > {
                use $crate::store::catalog::{db_id, CreateOutcome};
                use $crate::store::StoreError;
                let _writer = self.write_lock().await;
                let title_id = match id {
                    Some(id) => db_id(id)?,
                    None => {
                        let (next,): (i64,) =
                            sqlx::query_as("SELECT COALESCE(MAX(id), 0) + 1 FROM titles")
                                .fetch_one(&self.pool)
                                .await
                                .map_err(StoreError::database("next title id"))?;
                        next
                    }
                };
                let held = self.title(title_id as u64).await?;
                if let Some(held) = held.as_ref().filter(|held| !held.deleted) {
                    return Ok((CreateOutcome::Exists, held.clone()));
                }
                let mut title = title.clone();
                title.id = title_id as u64;
                let version = held.as_ref().map_or(1, |held| held.version + 1);
                self.catalog_write(title_id, version as i64, false, &title, now, held.is_some())
                    .await?;
                Ok((
                    CreateOutcome::Created,
                    $crate::store::catalog::CatalogEntry {
                        title,
                        version,
                        deleted: false,
                        updated_at: now,
                    },
                ))
            }

            async fn replace_title(
                &self,
                title: &search::Title,
                now: $crate::domain::Millis,
            ) -> Result<Option<$crate::store::catalog::CatalogEntry>, $crate::store::StoreError> {
                let _writer = self.write_lock().await;
                let title_id = $crate::store::catalog::db_id(title.id)?;
                let Some(held) = self.title(title.id).await?.filter(|held| !held.deleted) else {
                    return Ok(None);
                };
                let version = held.version + 1;
                self.catalog_write(title_id, version as i64, false, title, now, true)
                    .await?;
                Ok(Some($crate::store::catalog::CatalogEntry {
                    title: title.clone(),
                    version,
                    deleted: false,
                    updated_at: now,
                }))
            }

            async fn delete_title(
                &self,
                id: u64,
                now: $crate::domain::Millis,
            ) -> Result<Option<$crate::store::catalog::CatalogEntry>, $crate::store::StoreError> {
                let _writer = self.write_lock().await;
                let Ok(title_id) = $crate::store::catalog::db_id(id) else {
                    return Ok(None);
                };
                let Some(held) = self.title(id).await?.filter(|held| !held.deleted) else {
                    return Ok(None);
                };
                let version = held.version + 1;
                self.catalog_write(title_id, version as i64, true, &held.title, now, true)
                    .await?;
                Ok(Some($crate::store::catalog::CatalogEntry {
                    version,
                    deleted: true,
                    updated_at: now,
                    ..held
                }))
            }

            async fn title(
                &self,
                id: u64,
            ) -> Result<Option<$crate::store::catalog::CatalogEntry>, $crate::store::StoreError> {
                let Ok(title_id) = i64::try_from(id) else {
                    return Ok(None);
                };
                let row: Option<(i64, i64, bool, String, i64)> = sqlx::query_as(
                    "SELECT id, version, deleted, body, updated_at FROM titles WHERE id = $1",
                )
                .bind(title_id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("read title"))?;
                row.map($crate::store::catalog::entry_of).transpose()
            }

            async fn titles_after(
                &self,
                after: u64,
                limit: i64,
            ) -> Result<Vec<$crate::store::catalog::CatalogEntry>, $crate::store::StoreError> {
                let after = i64::try_from(after).unwrap_or(i64::MAX);
                let rows: Vec<(i64, i64, bool, String, i64)> = sqlx::query_as(
                    "SELECT id, version, deleted, body, updated_at FROM titles WHERE id > $1 \
                     ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("read titles"))?;
                rows.into_iter().map($crate::store::catalog::entry_of).collect()
            }

            async fn title_events_after(
                &self,
                after: i64,
                limit: i64,
            ) -> Result<Vec<$crate::store::catalog::TitleEvent>, $crate::store::StoreError> {
                let rows: Vec<(i64, i64, i64, String, Option<String>, i64)> = sqlx::query_as(
                    "SELECT seq, title_id, version, kind, body, created_at FROM title_events \
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("read title events"))?;
                rows.into_iter().map($crate::store::catalog::event_of).collect()
            }

            async fn last_title_event(&self) -> Result<i64, $crate::store::StoreError> {
                let (last,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM title_events")
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::store::StoreError::database("last title event"))?;
                Ok(last)
            }

            async fn consumer_position(&self, consumer: &str) -> Result<i64, $crate::store::StoreError> {
                let row: Option<(i64,)> =
                    sqlx::query_as("SELECT seq FROM consumer_positions WHERE consumer = $1")
                        .bind(consumer)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::store::StoreError::database("read consumer position"))?;
                Ok(row.map_or(0, |(seq,)| seq))
            }

            async fn save_consumer_position(
                &self,
                consumer: &str,
                seq: i64,
            ) -> Result<(), $crate::store::StoreError> {
                let _writer = self.write_lock().await;
                sqlx::query(
                    "INSERT INTO consumer_positions (consumer, seq) VALUES ($1, $2) \
                     ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq \
                     WHERE excluded.seq > consumer_positions.seq",
                )
                .bind(consumer)
                .bind(seq)
                .execute(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("save consumer position"))?;
                Ok(())
            }
        }
    };
}

pub(super) use catalog_store;

pub(super) fn entry_of(
    (id, version, deleted, body, updated_at): (i64, i64, bool, String, i64),
) -> Result<CatalogEntry, StoreError> {
    Ok(CatalogEntry {
        title: title_of(&body, id)?,
        version: version as u64,
        deleted,
        updated_at,
    })
}

pub(super) fn event_of(
    (seq, title_id, version, kind, body, created_at): (i64, i64, i64, String, Option<String>, i64),
) -> Result<TitleEvent, StoreError> {
    let version = version as u64;
    let change = match (kind.as_str(), body) {
        ("TitleUpserted", Some(body)) => TitleChange::Upsert {
            title: title_of(&body, title_id)?,
            version,
        },
        ("TitleDeleted", _) => TitleChange::Delete {
            id: title_id as u64,
            version,
        },
        (other, _) => {
            return Err(StoreError::Corrupt(format!(
                "title event {seq}: kind {other}"
            )))
        }
    };
    Ok(TitleEvent {
        seq,
        change,
        created_at,
    })
}
