//! The read models' SQL, the same on SQLite (the embedded default) and PostgreSQL (a platform on
//! PostgreSQL alone): one implementation of [`super::ReadModel`], instantiated per engine by
//! [`sql_read_model!`] as the command stores are (`store/common.rs`). Only the DDL and the
//! pool differ.

pub(crate) fn i64_of(value: u64) -> i64 {
    // Ids above i63 are not produced by the command store; playback ids are taken as stored.
    value as i64
}

/// Implements [`super::ReadModel`] for a type with a `pool` field, where a function
/// `database(context) -> impl FnOnce(sqlx::Error) -> ReadModelError` is in scope.
macro_rules! sql_read_model {
    ($model:ty) => {
        #[async_trait::async_trait]
        impl $crate::readmodel::ReadModel for $model {
            async fn apply_profile(&self, profile: &$crate::readmodel::UserProfile) -> Result<bool, $crate::readmodel::ReadModelError> {
                let json = serde_json::to_string(profile)
                    .map_err(|error| $crate::readmodel::ReadModelError::Corrupt(error.to_string()))?;
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
                .map_err(database("apply profile"))?
                .rows_affected();
                Ok(applied == 1)
            }

            async fn profile(&self, user: $crate::domain::UserId) -> Result<Option<$crate::readmodel::UserProfile>, $crate::readmodel::ReadModelError> {
                let row = sqlx::query("SELECT profile FROM user_profile WHERE user_id = $1")
                    .bind(user.get())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(database("read profile"))?;
                let Some(row) = row else { return Ok(None) };
                let json: String = row.try_get("profile").map_err(database("profile column"))?;
                serde_json::from_str(&json)
                    .map(Some)
                    .map_err(|error| $crate::readmodel::ReadModelError::Corrupt(format!("profile: {error}")))
            }

            async fn record_views(&self, views: &[(u64, u64)]) -> Result<(), $crate::readmodel::ReadModelError> {
                let mut tx = self.pool.begin().await.map_err(database("begin"))?;
                for &(user, content) in views {
                    let new = sqlx::query(
                        "INSERT INTO watched (user_id, content_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    )
                    .bind($crate::readmodel::sql::i64_of(user))
                    .bind($crate::readmodel::sql::i64_of(content))
                    .execute(&mut *tx)
                    .await
                    .map_err(database("record view"))?
                    .rows_affected();
                    // Popularity counts viewers, not events: a replayed event does not inflate it.
                    if new == 1 {
                        sqlx::query(
                            "INSERT INTO popularity (content_id, views) VALUES ($1, 1) \
                             ON CONFLICT (content_id) DO UPDATE SET views = popularity.views + 1",
                        )
                        .bind($crate::readmodel::sql::i64_of(content))
                        .execute(&mut *tx)
                        .await
                        .map_err(database("count view"))?;
                    }
                }
                tx.commit().await.map_err(database("commit views"))
            }

            async fn watched_by(&self, user: u64, limit: i64) -> Result<Vec<u64>, $crate::readmodel::ReadModelError> {
                let rows = sqlx::query("SELECT content_id FROM watched WHERE user_id = $1 LIMIT $2")
                    .bind($crate::readmodel::sql::i64_of(user))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database("watched by"))?;
                rows.iter()
                    .map(|row| row.try_get::<i64, _>("content_id").map(|id| id as u64))
                    .collect::<Result<_, _>>()
                    .map_err(database("content_id"))
            }

            async fn viewers_of(&self, content: u64, limit: i64) -> Result<Vec<u64>, $crate::readmodel::ReadModelError> {
                let rows = sqlx::query("SELECT user_id FROM watched WHERE content_id = $1 LIMIT $2")
                    .bind($crate::readmodel::sql::i64_of(content))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database("viewers of"))?;
                rows.iter()
                    .map(|row| row.try_get::<i64, _>("user_id").map(|id| id as u64))
                    .collect::<Result<_, _>>()
                    .map_err(database("user_id"))
            }

            async fn popular(&self, limit: usize) -> Result<Vec<$crate::readmodel::Recommendation>, $crate::readmodel::ReadModelError> {
                let rows = sqlx::query(
                    "SELECT content_id, views FROM popularity ORDER BY views DESC, content_id LIMIT $1",
                )
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await
                .map_err(database("popular"))?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::readmodel::Recommendation {
                            content_id: row.try_get::<i64, _>("content_id")? as u64,
                            score: row.try_get::<i64, _>("views")? as f64,
                        })
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(database("popularity row"))
            }

            async fn put_recommendations(
                &self,
                lists: &[(u64, $crate::readmodel::RecommendationList)],
            ) -> Result<(), $crate::readmodel::ReadModelError> {
                // One transaction for the round: one commit (and fsync) instead of one per user.
                let mut tx = self.pool.begin().await.map_err(database("begin"))?;
                for (user, list) in lists {
                    sqlx::query(
                        "INSERT INTO recommendations (user_id, items) VALUES ($1, $2) \
                         ON CONFLICT (user_id) DO UPDATE SET items = excluded.items",
                    )
                    .bind($crate::readmodel::sql::i64_of(*user))
                    .bind(list.encode()?)
                    .execute(&mut *tx)
                    .await
                    .map_err(database("put recommendations"))?;
                }
                tx.commit().await.map_err(database("commit recommendations"))
            }

            async fn recommendations(
                &self,
                user: u64,
            ) -> Result<Option<$crate::readmodel::RecommendationList>, $crate::readmodel::ReadModelError> {
                let row = sqlx::query("SELECT items FROM recommendations WHERE user_id = $1")
                    .bind($crate::readmodel::sql::i64_of(user))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(database("read recommendations"))?;
                let Some(row) = row else { return Ok(None) };
                let items: String = row.try_get("items").map_err(database("items"))?;
                $crate::readmodel::RecommendationList::decode(&items).map(Some)
            }

            async fn apply_titles(&self, events: &[$crate::store::catalog::TitleEvent]) -> Result<u64, $crate::readmodel::ReadModelError> {
                let mut tx = self.pool.begin().await.map_err(database("begin"))?;
                let mut applied = 0;
                for event in events {
                    let (id, version, deleted, body, updated_at) = $crate::readmodel::title_row(event)?;
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
                    .map_err(database("apply title"))?
                    .rows_affected();
                }
                tx.commit().await.map_err(database("commit titles"))?;
                Ok(applied)
            }

            async fn title(&self, id: u64) -> Result<Option<$crate::store::catalog::CatalogEntry>, $crate::readmodel::ReadModelError> {
                let row: Option<(i64, i64, bool, String, i64)> = sqlx::query_as(
                    "SELECT id, version, deleted, body, updated_at FROM titles WHERE id = $1",
                )
                .bind($crate::readmodel::sql::i64_of(id))
                .fetch_optional(&self.pool)
                .await
                .map_err(database("read title"))?;
                match row {
                    Some((id, version, deleted, body, updated_at)) => {
                        $crate::readmodel::title_entry(id, version, deleted, &body, updated_at)
                    }
                    None => Ok(None),
                }
            }
        }
    };
}

pub(crate) use sql_read_model;
