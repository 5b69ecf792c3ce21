//! The read models on the embedded default: a SQLite file of their own (not the command store's:
//! a read model is disposable and rebuilt from events, the command store is not).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{
    title_entry, title_row, ReadModel, ReadModelError, Recommendation, RecommendationList,
    UserProfile,
};
use crate::domain::UserId;
use crate::store::catalog::{CatalogEntry, TitleEvent};

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

fn local(context: &'static str) -> impl FnOnce(sqlx::Error) -> ReadModelError {
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
            .map_err(local("sqlite options"))?
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
            .map_err(local("open read model"))?;
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(local("create read model schema"))?;
        Ok(LocalReadModel { pool })
    }
}

fn i64_of(value: u64) -> i64 {
    // Ids above i63 are not produced by the command store; playback ids are taken as stored.
    value as i64
}

#[async_trait]
impl ReadModel for LocalReadModel {
    async fn apply_profile(&self, profile: &UserProfile) -> Result<bool, ReadModelError> {
        let json = serde_json::to_string(profile)
            .map_err(|error| ReadModelError::Corrupt(error.to_string()))?;
        let applied = sqlx::query(
            "INSERT INTO user_profile (user_id, version, profile) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET version = excluded.version, profile = excluded.profile \
             WHERE excluded.version > user_profile.version",
        )
        .bind(profile.user_id)
        .bind(profile.version)
        .bind(json)
        .execute(&self.pool)
        .await
        .map_err(local("apply profile"))?
        .rows_affected();
        Ok(applied == 1)
    }

    async fn profile(&self, user: UserId) -> Result<Option<UserProfile>, ReadModelError> {
        let row = sqlx::query("SELECT profile FROM user_profile WHERE user_id = $1")
            .bind(user.get())
            .fetch_optional(&self.pool)
            .await
            .map_err(local("read profile"))?;
        let Some(row) = row else { return Ok(None) };
        let json: String = row.try_get("profile").map_err(local("profile column"))?;
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|error| ReadModelError::Corrupt(format!("profile: {error}")))
    }

    async fn record_views(&self, views: &[(u64, u64)]) -> Result<(), ReadModelError> {
        let mut tx = self.pool.begin().await.map_err(local("begin"))?;
        for &(user, content) in views {
            let new = sqlx::query(
                "INSERT INTO watched (user_id, content_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(i64_of(user))
            .bind(i64_of(content))
            .execute(&mut *tx)
            .await
            .map_err(local("record view"))?
            .rows_affected();
            // Popularity counts viewers, not events: a replayed event does not inflate it.
            if new == 1 {
                sqlx::query(
                    "INSERT INTO popularity (content_id, views) VALUES ($1, 1) \
                     ON CONFLICT (content_id) DO UPDATE SET views = popularity.views + 1",
                )
                .bind(i64_of(content))
                .execute(&mut *tx)
                .await
                .map_err(local("count view"))?;
            }
        }
        tx.commit().await.map_err(local("commit views"))
    }

    async fn watched_by(&self, user: u64, limit: i64) -> Result<Vec<u64>, ReadModelError> {
        let rows = sqlx::query("SELECT content_id FROM watched WHERE user_id = $1 LIMIT $2")
            .bind(i64_of(user))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(local("watched by"))?;
        rows.iter()
            .map(|row| row.try_get::<i64, _>("content_id").map(|id| id as u64))
            .collect::<Result<_, _>>()
            .map_err(local("content_id"))
    }

    async fn viewers_of(&self, content: u64, limit: i64) -> Result<Vec<u64>, ReadModelError> {
        let rows = sqlx::query("SELECT user_id FROM watched WHERE content_id = $1 LIMIT $2")
            .bind(i64_of(content))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(local("viewers of"))?;
        rows.iter()
            .map(|row| row.try_get::<i64, _>("user_id").map(|id| id as u64))
            .collect::<Result<_, _>>()
            .map_err(local("user_id"))
    }

    async fn popular(&self, limit: usize) -> Result<Vec<Recommendation>, ReadModelError> {
        let rows = sqlx::query(
            "SELECT content_id, views FROM popularity ORDER BY views DESC, content_id LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(local("popular"))?;
        rows.iter()
            .map(|row| {
                Ok(Recommendation {
                    content_id: row.try_get::<i64, _>("content_id")? as u64,
                    score: row.try_get::<i64, _>("views")? as f64,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(local("popularity row"))
    }

    async fn put_recommendations(
        &self,
        lists: &[(u64, RecommendationList)],
    ) -> Result<(), ReadModelError> {
        // One transaction for the round: one commit (and fsync) instead of one per user.
        let mut tx = self.pool.begin().await.map_err(local("begin"))?;
        for (user, list) in lists {
            sqlx::query(
                "INSERT INTO recommendations (user_id, items) VALUES ($1, $2) \
                 ON CONFLICT (user_id) DO UPDATE SET items = excluded.items",
            )
            .bind(i64_of(*user))
            .bind(list.encode()?)
            .execute(&mut *tx)
            .await
            .map_err(local("put recommendations"))?;
        }
        tx.commit().await.map_err(local("commit recommendations"))
    }

    async fn recommendations(
        &self,
        user: u64,
    ) -> Result<Option<RecommendationList>, ReadModelError> {
        let row = sqlx::query("SELECT items FROM recommendations WHERE user_id = $1")
            .bind(i64_of(user))
            .fetch_optional(&self.pool)
            .await
            .map_err(local("read recommendations"))?;
        let Some(row) = row else { return Ok(None) };
        let items: String = row.try_get("items").map_err(local("items"))?;
        RecommendationList::decode(&items).map(Some)
    }

    async fn apply_titles(&self, events: &[TitleEvent]) -> Result<u64, ReadModelError> {
        let mut tx = self.pool.begin().await.map_err(local("begin"))?;
        let mut applied = 0;
        for event in events {
            let (id, version, deleted, body, updated_at) = title_row(event)?;
            applied += sqlx::query(
                "INSERT INTO titles (id, version, deleted, body, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted, \
                 body = excluded.body, updated_at = excluded.updated_at \
                 WHERE excluded.version > titles.version",
            )
            .bind(id)
            .bind(version)
            .bind(deleted)
            .bind(body)
            .bind(updated_at)
            .execute(&mut *tx)
            .await
            .map_err(local("apply title"))?
            .rows_affected();
        }
        tx.commit().await.map_err(local("commit titles"))?;
        Ok(applied)
    }

    async fn title(&self, id: u64) -> Result<Option<CatalogEntry>, ReadModelError> {
        let row: Option<(i64, i64, bool, String, i64)> = sqlx::query_as(
            "SELECT id, version, deleted, body, updated_at FROM titles WHERE id = $1",
        )
        .bind(i64_of(id))
        .fetch_optional(&self.pool)
        .await
        .map_err(local("read title"))?;
        match row {
            Some((id, version, deleted, body, updated_at)) => {
                title_entry(id, version, deleted, &body, updated_at)
            }
            None => Ok(None),
        }
    }
}
