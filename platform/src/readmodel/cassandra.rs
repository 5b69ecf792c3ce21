//! The read models at scale: tables in a keyspace of their own, created idempotently. The
//! profile is written `USING TIMESTAMP <version>`: Cassandra keeps the write with the highest
//! timestamp, so a replayed or late event can never overwrite a newer profile, without a
//! lightweight transaction.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use super::{
    title_entry, title_row, ReadModel, ReadModelError, Recommendation, RecommendationList,
    UserProfile,
};
use crate::domain::UserId;
use crate::store::catalog::{CatalogEntry, TitleEvent};

/// Where the read models live.
#[derive(Debug, Clone)]
pub struct CassandraReadModelConfig {
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// The keyspace's replication, as CQL.
    pub replication: String,
    pub local_datacenter: String,
    pub request_timeout: Duration,
}

/// Recommendation lists written at once.
const PUT_CONCURRENCY: usize = 32;

/// Popularity counters all live in one partition: the catalog is small next to the viewers.
const POPULARITY_BUCKET: i32 = 0;

fn cassandra(context: &'static str) -> impl FnOnce(String) -> ReadModelError {
    move |message| ReadModelError::Cassandra { context, message }
}

struct Statements {
    select_profile_version: PreparedStatement,
    insert_profile: PreparedStatement,
    select_profile: PreparedStatement,
    insert_watched: PreparedStatement,
    insert_viewer: PreparedStatement,
    select_watched_new: PreparedStatement,
    count_view: PreparedStatement,
    select_watched: PreparedStatement,
    select_viewers: PreparedStatement,
    select_popular: PreparedStatement,
    insert_recommendations: PreparedStatement,
    select_recommendations: PreparedStatement,
    insert_title: PreparedStatement,
    select_title: PreparedStatement,
}

pub struct CassandraReadModel {
    session: Arc<Session>,
    statements: Statements,
}

impl CassandraReadModel {
    /// Connects, creates the keyspace and tables if missing, prepares every statement.
    pub async fn connect(
        config: &CassandraReadModelConfig,
    ) -> Result<CassandraReadModel, ReadModelError> {
        let session = event_cql::open_session(&event_cql::SessionSpec {
            nodes: &config.nodes,
            keyspace: &config.keyspace,
            replication: &config.replication,
            local_datacenter: &config.local_datacenter,
            // One replica set, quorum inside the local datacenter: a profile read after the
            // projector wrote it sees the write.
            consistency: Consistency::LocalQuorum,
            request_timeout: config.request_timeout,
            connections_per_node: 1,
            driver_retries: true,
        })
        .await
        .map_err(|error| cassandra("connect")(error.to_string()))?;
        let keyspace = &config.keyspace;
        let ddl = [
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {}",
                config.replication
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.user_profile (user_id bigint PRIMARY KEY, \
                 email text, name text, country text, subscription_active boolean, plan_id bigint, \
                 subscription_id bigint, subscription_date bigint, version bigint)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.watched_by_user (user_id bigint, \
                 content_id bigint, PRIMARY KEY (user_id, content_id))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.viewers_by_content (content_id bigint, \
                 user_id bigint, PRIMARY KEY (content_id, user_id))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.popularity (bucket int, content_id bigint, \
                 views counter, PRIMARY KEY (bucket, content_id))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.recommendations (user_id bigint PRIMARY KEY, \
                 items text)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.titles (id bigint PRIMARY KEY, version bigint, \
                 deleted boolean, body text, updated_at bigint)"
            ),
        ];
        for cql in ddl {
            let mut statement = scylla::statement::unprepared::Statement::new(cql.clone());
            // DDL waits for schema agreement, far longer than a request.
            statement.set_request_timeout(Some(Duration::from_secs(60)));
            session
                .query_unpaged(statement, ())
                .await
                .map_err(|error| {
                    cassandra("create read model schema")(format!("{cql}: {error}"))
                })?;
        }
        let prepare = |cql: String| {
            let session = &session;
            async move {
                session
                    .prepare(cql.clone())
                    .await
                    .map_err(|error| cassandra("prepare")(format!("{cql}: {error}")))
            }
        };
        let mut statements = Statements {
            select_profile_version: prepare(format!(
                "SELECT version FROM {keyspace}.user_profile WHERE user_id = ?"
            ))
            .await?,
            insert_profile: prepare(format!(
                "INSERT INTO {keyspace}.user_profile (user_id, email, name, country, \
                 subscription_active, plan_id, subscription_id, subscription_date, version) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            select_profile: prepare(format!(
                "SELECT user_id, email, name, country, subscription_active, plan_id, \
                 subscription_id, subscription_date, version FROM {keyspace}.user_profile WHERE user_id = ?"
            ))
            .await?,
            insert_watched: prepare(format!(
                "INSERT INTO {keyspace}.watched_by_user (user_id, content_id) VALUES (?, ?)"
            ))
            .await?,
            insert_viewer: prepare(format!(
                "INSERT INTO {keyspace}.viewers_by_content (content_id, user_id) VALUES (?, ?)"
            ))
            .await?,
            select_watched_new: prepare(format!(
                "SELECT content_id FROM {keyspace}.watched_by_user WHERE user_id = ? AND content_id = ?"
            ))
            .await?,
            count_view: prepare(format!(
                "UPDATE {keyspace}.popularity SET views = views + 1 WHERE bucket = ? AND content_id = ?"
            ))
            .await?,
            select_watched: prepare(format!(
                "SELECT content_id FROM {keyspace}.watched_by_user WHERE user_id = ? LIMIT ?"
            ))
            .await?,
            select_viewers: prepare(format!(
                "SELECT user_id FROM {keyspace}.viewers_by_content WHERE content_id = ? LIMIT ?"
            ))
            .await?,
            select_popular: prepare(format!(
                "SELECT content_id, views FROM {keyspace}.popularity WHERE bucket = ?"
            ))
            .await?,
            insert_recommendations: prepare(format!(
                "INSERT INTO {keyspace}.recommendations (user_id, items) VALUES (?, ?)"
            ))
            .await?,
            select_recommendations: prepare(format!(
                "SELECT items FROM {keyspace}.recommendations WHERE user_id = ?"
            ))
            .await?,
            // The version is the write timestamp: a newer version wins every cell, an older one
            // (a replay, a reorder) loses, with no read before the write.
            insert_title: prepare(format!(
                "INSERT INTO {keyspace}.titles (id, version, deleted, body, updated_at) \
                 VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            select_title: prepare(format!(
                "SELECT id, version, deleted, body, updated_at FROM {keyspace}.titles WHERE id = ?"
            ))
            .await?,
        };
        // Writes that may be retried safely (the counter is the exception).
        for statement in [
            &mut statements.insert_profile,
            &mut statements.insert_watched,
            &mut statements.insert_viewer,
            &mut statements.insert_recommendations,
            &mut statements.insert_title,
        ] {
            statement.set_is_idempotent(true);
        }
        Ok(CassandraReadModel {
            session: Arc::new(session),
            statements,
        })
    }

    /// Drops the keyspace (tests and benchmarks only).
    pub async fn drop_keyspace(&self, keyspace: &str) -> Result<(), ReadModelError> {
        let mut statement = scylla::statement::unprepared::Statement::new(format!(
            "DROP KEYSPACE IF EXISTS {keyspace}"
        ));
        statement.set_request_timeout(Some(Duration::from_secs(60)));
        self.session
            .query_unpaged(statement, ())
            .await
            .map(|_| ())
            .map_err(|error| cassandra("drop keyspace")(error.to_string()))
    }

    async fn ids(
        &self,
        statement: &PreparedStatement,
        key: i64,
        limit: i64,
        context: &'static str,
    ) -> Result<Vec<u64>, ReadModelError> {
        let result = self
            .session
            .execute_unpaged(statement, (key, limit as i32))
            .await
            .map_err(|error| cassandra(context)(error.to_string()))?;
        let rows = result
            .into_rows_result()
            .map_err(|error| cassandra(context)(error.to_string()))?;
        rows.rows::<(i64,)>()
            .map_err(|error| cassandra(context)(error.to_string()))?
            .map(|row| {
                row.map(|(id,)| id as u64)
                    .map_err(|error| cassandra(context)(error.to_string()))
            })
            .collect()
    }
}

type ProfileRow = (
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

#[async_trait]
impl ReadModel for CassandraReadModel {
    async fn apply_profile(&self, profile: &UserProfile) -> Result<bool, ReadModelError> {
        // The read only saves a write (and says whether anything changed); correctness comes
        // from the write timestamp, even when two relays race here.
        let result = self
            .session
            .execute_unpaged(&self.statements.select_profile_version, (profile.user_id,))
            .await
            .map_err(|error| cassandra("read profile version")(error.to_string()))?;
        let stored = result
            .into_rows_result()
            .map_err(|error| cassandra("read profile version")(error.to_string()))?
            .maybe_first_row::<(Option<i64>,)>()
            .map_err(|error| cassandra("read profile version")(error.to_string()))?
            .and_then(|(version,)| version);
        if stored.is_some_and(|stored| stored >= profile.version) {
            return Ok(false);
        }
        let values = (
            profile.user_id,
            profile.email.as_str(),
            profile.name.as_str(),
            profile.country.as_str(),
            profile.subscription_active,
            profile.plan_id,
            profile.subscription_id,
            profile.subscription_date,
            profile.version,
            profile.version,
        );
        self.session
            .execute_unpaged(&self.statements.insert_profile, values)
            .await
            .map_err(|error| cassandra("write profile")(error.to_string()))?;
        Ok(true)
    }

    async fn profile(&self, user: UserId) -> Result<Option<UserProfile>, ReadModelError> {
        let result = self
            .session
            .execute_unpaged(&self.statements.select_profile, (user.get(),))
            .await
            .map_err(|error| cassandra("read profile")(error.to_string()))?;
        let row = result
            .into_rows_result()
            .map_err(|error| cassandra("read profile")(error.to_string()))?
            .maybe_first_row::<ProfileRow>()
            .map_err(|error| cassandra("read profile")(error.to_string()))?;
        Ok(row.map(
            |(user_id, email, name, country, active, plan_id, subscription_id, date, version)| {
                UserProfile {
                    user_id,
                    email: email.unwrap_or_default(),
                    name: name.unwrap_or_default(),
                    country: country.unwrap_or_default(),
                    subscription_active: active.unwrap_or(false),
                    plan_id,
                    subscription_id,
                    subscription_date: date,
                    version: version.unwrap_or(0),
                }
            },
        ))
    }

    async fn record_views(&self, views: &[(u64, u64)]) -> Result<(), ReadModelError> {
        for &(user, content) in views {
            let (user, content) = (user as i64, content as i64);
            // Popularity counts viewers: only a first view of a title bumps its counter. (Two
            // ingest processes racing on the same first view may both count it: a ranking
            // signal, not billing.)
            let seen = self
                .session
                .execute_unpaged(&self.statements.select_watched_new, (user, content))
                .await
                .map_err(|error| cassandra("read view")(error.to_string()))?
                .into_rows_result()
                .map_err(|error| cassandra("read view")(error.to_string()))?
                .rows_num()
                > 0;
            if seen {
                continue;
            }
            self.session
                .execute_unpaged(&self.statements.insert_watched, (user, content))
                .await
                .map_err(|error| cassandra("record view")(error.to_string()))?;
            self.session
                .execute_unpaged(&self.statements.insert_viewer, (content, user))
                .await
                .map_err(|error| cassandra("record viewer")(error.to_string()))?;
            self.session
                .execute_unpaged(&self.statements.count_view, (POPULARITY_BUCKET, content))
                .await
                .map_err(|error| cassandra("count view")(error.to_string()))?;
        }
        Ok(())
    }

    async fn watched_by(&self, user: u64, limit: i64) -> Result<Vec<u64>, ReadModelError> {
        self.ids(
            &self.statements.select_watched,
            user as i64,
            limit,
            "watched by",
        )
        .await
    }

    async fn viewers_of(&self, content: u64, limit: i64) -> Result<Vec<u64>, ReadModelError> {
        self.ids(
            &self.statements.select_viewers,
            content as i64,
            limit,
            "viewers of",
        )
        .await
    }

    async fn popular(&self, limit: usize) -> Result<Vec<Recommendation>, ReadModelError> {
        let result = self
            .session
            .execute_unpaged(&self.statements.select_popular, (POPULARITY_BUCKET,))
            .await
            .map_err(|error| cassandra("popular")(error.to_string()))?;
        let rows = result
            .into_rows_result()
            .map_err(|error| cassandra("popular")(error.to_string()))?;
        let mut popular = rows
            .rows::<(i64, scylla::value::Counter)>()
            .map_err(|error| cassandra("popular")(error.to_string()))?
            .map(|row| {
                row.map(|(content, views)| Recommendation {
                    content_id: content as u64,
                    score: views.0 as f64,
                })
                .map_err(|error| cassandra("popular")(error.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        popular.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.content_id.cmp(&b.content_id))
        });
        popular.truncate(limit);
        Ok(popular)
    }

    async fn put_recommendations(
        &self,
        lists: &[(u64, RecommendationList)],
    ) -> Result<(), ReadModelError> {
        // Each user's row is its own partition: writes in flight side by side, not a batch.
        for chunk in lists.chunks(PUT_CONCURRENCY) {
            let mut writes = Vec::with_capacity(chunk.len());
            for (user, list) in chunk {
                let items = list.encode()?;
                writes.push(async move {
                    self.session
                        .execute_unpaged(
                            &self.statements.insert_recommendations,
                            (*user as i64, items),
                        )
                        .await
                        .map_err(|error| cassandra("write recommendations")(error.to_string()))
                });
            }
            futures::future::try_join_all(writes).await?;
        }
        Ok(())
    }

    async fn recommendations(
        &self,
        user: u64,
    ) -> Result<Option<RecommendationList>, ReadModelError> {
        let result = self
            .session
            .execute_unpaged(&self.statements.select_recommendations, (user as i64,))
            .await
            .map_err(|error| cassandra("read recommendations")(error.to_string()))?;
        let row = result
            .into_rows_result()
            .map_err(|error| cassandra("read recommendations")(error.to_string()))?
            .maybe_first_row::<(Option<String>,)>()
            .map_err(|error| cassandra("read recommendations")(error.to_string()))?;
        let Some((Some(items),)) = row else {
            return Ok(None);
        };
        RecommendationList::decode(&items).map(Some)
    }

    /// Counts every event as applied: the write timestamp decides, without a read.
    async fn apply_titles(&self, events: &[TitleEvent]) -> Result<u64, ReadModelError> {
        for event in events {
            let (id, version, deleted, body, updated_at) = title_row(event)?;
            self.session
                .execute_unpaged(
                    &self.statements.insert_title,
                    (id, version, deleted, body, updated_at, version),
                )
                .await
                .map_err(|error| cassandra("write title")(error.to_string()))?;
        }
        Ok(events.len() as u64)
    }

    async fn title(&self, id: u64) -> Result<Option<CatalogEntry>, ReadModelError> {
        let context = "read title";
        let result = self
            .session
            .execute_unpaged(&self.statements.select_title, (id as i64,))
            .await
            .map_err(|error| cassandra(context)(error.to_string()))?;
        let row = result
            .into_rows_result()
            .map_err(|error| cassandra(context)(error.to_string()))?
            .maybe_first_row::<(i64, Option<i64>, Option<bool>, Option<String>, Option<i64>)>()
            .map_err(|error| cassandra(context)(error.to_string()))?;
        match row {
            Some((id, Some(version), deleted, body, updated_at)) => title_entry(
                id,
                version,
                deleted.unwrap_or(false),
                body.as_deref().unwrap_or(""),
                updated_at.unwrap_or(0),
            ),
            _ => Ok(None),
        }
    }
}
