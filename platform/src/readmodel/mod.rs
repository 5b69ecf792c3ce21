//! Read models: the user profile and the recommendations, shaped for their queries. Cassandra at
//! scale ([`CassandraReadModel`]), a local SQLite file on the embedded default
//! ([`LocalReadModel`]), a schema of their own on PostgreSQL for a platform on PostgreSQL alone
//! ([`PostgresReadModel`]); the same contract tests run against each.

mod cassandra;
mod local;
mod postgres;
pub(crate) mod sql;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use cassandra::{CassandraReadModel, CassandraReadModelConfig};
pub use local::LocalReadModel;
pub use postgres::PostgresReadModel;

use crate::domain::{Millis, UserId};

/// Why a read model could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadModelError {
    /// The local store failed.
    #[error("local read model: {context}: {source}")]
    Local {
        context: &'static str,
        source: sqlx::Error,
    },
    /// PostgreSQL failed or could not be reached.
    #[error("postgres read model: {context}: {source}")]
    Postgres {
        context: &'static str,
        source: sqlx::Error,
    },
    /// Cassandra failed or could not be reached.
    #[error("cassandra read model: {context}: {message}")]
    Cassandra {
        context: &'static str,
        message: String,
    },
    /// A load shared by several requests (single flight) failed; its first error, as text.
    #[error("read model: {0}")]
    Shared(String),
    /// A stored value cannot be read back.
    #[error("read model holds a bad value: {0}")]
    Corrupt(String),
}

/// The user profile read model: what `GET /v1/users/{id}` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    pub user_id: i64,
    pub email: String,
    pub name: String,
    pub country: String,
    pub subscription_active: bool,
    pub plan_id: Option<i64>,
    pub subscription_id: Option<i64>,
    /// When the active subscription started, epoch ms.
    pub subscription_date: Option<Millis>,
    /// The user's version this profile reflects.
    pub version: i64,
}

/// A title recommended to a user, with its score (co-watch count, or views for popular ones).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub content_id: u64,
    pub score: f64,
}

/// A user's recommendation list as the read model keeps it: where it came from and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommendationList {
    /// `personal`, `similar_to_recent`, `trending` or `popular`.
    pub source: String,
    /// When it was computed, epoch ms.
    pub computed_at: Millis,
    pub items: Vec<Recommendation>,
}

impl RecommendationList {
    /// The stored text (both read models keep it in one text column).
    fn encode(&self) -> Result<String, ReadModelError> {
        serde_json::to_string(self).map_err(|error| ReadModelError::Corrupt(error.to_string()))
    }

    /// Reads the stored text back; a bare array is a list kept before lists said where they
    /// came from (co-watch counts, time unknown).
    fn decode(text: &str) -> Result<RecommendationList, ReadModelError> {
        let corrupt =
            |error: serde_json::Error| ReadModelError::Corrupt(format!("recommendations: {error}"));
        if text.trim_start().starts_with('[') {
            return Ok(RecommendationList {
                source: "co_watched".to_owned(),
                computed_at: 0,
                items: serde_json::from_str(text).map_err(corrupt)?,
            });
        }
        serde_json::from_str(text).map_err(corrupt)
    }
}

use search::TitleChange;

use crate::store::catalog::{CatalogEntry, TitleEvent};

#[async_trait]
pub trait ReadModel: Send + Sync + 'static {
    /// Stores `profile` unless a profile of the same or a newer version is there; says whether
    /// it was applied. Applying an event twice, or an old one late, changes nothing.
    async fn apply_profile(&self, profile: &UserProfile) -> Result<bool, ReadModelError>;
    async fn profile(&self, user: UserId) -> Result<Option<UserProfile>, ReadModelError>;

    /// Records that `user` watched `content` (idempotent) and counts a view of `content`: the
    /// tables of the co-watch counts recommender, kept as the baseline `bench recommendations`
    /// measures the graph against.
    async fn record_views(&self, views: &[(u64, u64)]) -> Result<(), ReadModelError>;
    /// Titles `user` watched, at most `limit`.
    async fn watched_by(&self, user: u64, limit: i64) -> Result<Vec<u64>, ReadModelError>;
    /// Viewers of `content`, at most `limit`.
    async fn viewers_of(&self, content: u64, limit: i64) -> Result<Vec<u64>, ReadModelError>;
    /// The most viewed titles, most viewed first.
    async fn popular(&self, limit: usize) -> Result<Vec<Recommendation>, ReadModelError>;

    /// Stores each user's list (replacing what was there), as one write where the engine can.
    /// A user appears at most once per call (the writes may go side by side).
    async fn put_recommendations(
        &self,
        lists: &[(u64, RecommendationList)],
    ) -> Result<(), ReadModelError>;
    /// `None`: nothing computed for this user yet.
    async fn recommendations(
        &self,
        user: u64,
    ) -> Result<Option<RecommendationList>, ReadModelError>;

    /// Applies catalog events in order, each only if newer than the title's stored version
    /// (a delete keeps a tombstone); returns how many changed something.
    async fn apply_titles(&self, events: &[TitleEvent]) -> Result<u64, ReadModelError>;
    /// The live title with this id (`None`: unknown or deleted).
    async fn title(&self, id: u64) -> Result<Option<CatalogEntry>, ReadModelError>;
}

/// What a catalog event writes: (id, version, deleted, body, updated_at); a delete keeps no
/// body (its tombstone only has to win over older versions).
pub(crate) fn title_row(
    event: &TitleEvent,
) -> Result<(i64, i64, bool, String, i64), ReadModelError> {
    let (id, version, body) = match &event.change {
        TitleChange::Upsert { title, version } => (
            title.id,
            *version,
            serde_json::to_string(title)
                .map_err(|error| ReadModelError::Corrupt(error.to_string()))?,
        ),
        TitleChange::Delete { id, version } => (*id, *version, String::new()),
    };
    let deleted = matches!(event.change, TitleChange::Delete { .. });
    Ok((id as i64, version as i64, deleted, body, event.created_at))
}

/// A stored title row back as an entry (`None` for a tombstone).
pub(crate) fn title_entry(
    id: i64,
    version: i64,
    deleted: bool,
    body: &str,
    updated_at: i64,
) -> Result<Option<CatalogEntry>, ReadModelError> {
    if deleted {
        return Ok(None);
    }
    let mut title: search::Title = serde_json::from_str(body)
        .map_err(|error| ReadModelError::Corrupt(format!("title {id}: {error}")))?;
    title.id = id as u64;
    Ok(Some(CatalogEntry {
        title,
        version: version as u64,
        deleted: false,
        updated_at,
    }))
}
