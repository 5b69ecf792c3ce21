//! `GET /v1/users/{id}/recommendations`: cache-aside over the recommendations read model, with
//! one load per key at a time (a stampede of misses on one user costs one read-model read).
//! The read model is kept by the graph refresher ([`GraphRecommender`]); a user it holds
//! nothing for gets the refresher's trending or popular list, from memory.

mod co_watch;
mod ranking;
mod refresher;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache::Cache;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

pub use co_watch::co_watched;
pub use ranking::{rank, RankingOptions, Source};
pub use refresher::{
    GraphRecommender, RefreshError, RefreshListener, RefresherOptions, RefresherStats,
    RefresherTask, RoundStats, SimilarTitles,
};

use crate::domain::{now_ms, rfc3339};
use crate::readmodel::{ReadModel, ReadModelError, Recommendation, RecommendationList};

/// Where a recommendations answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
        }
    }
}

/// The answer, as cached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendations {
    pub user_id: u64,
    /// `personal`, `similar_to_recent`, `trending` or `popular` (see [`Source`]).
    pub source: String,
    /// When the list was computed (RFC 3339).
    pub computed_at: String,
    /// How old the list is as it is served, ms (set on every answer, from `computed_at_ms`).
    pub age_ms: i64,
    pub computed_at_ms: i64,
    pub items: Vec<Recommendation>,
}

impl Recommendations {
    fn new(user_id: u64, list: RecommendationList) -> Recommendations {
        Recommendations {
            user_id,
            source: list.source,
            computed_at: rfc3339(list.computed_at),
            age_ms: 0,
            computed_at_ms: list.computed_at,
            items: list.items,
        }
    }

    /// `bytes` (a cached or loaded answer) with `age_ms` as of now.
    fn aged(bytes: &[u8]) -> Result<Vec<u8>, String> {
        let mut document: Recommendations = serde_json::from_slice(bytes)
            .map_err(|error| format!("cached recommendations: {error}"))?;
        document.age_ms = (now_ms() - document.computed_at_ms).max(0);
        serde_json::to_vec(&document).map_err(|error| error.to_string())
    }
}

type Load = Arc<OnceCell<Result<Arc<Vec<u8>>, String>>>;

/// Refreshes of each user's recommendations, counted in a fixed table of slots (users share a
/// slot by hash). A load caches what it read only if no refresh of its user's slot happened
/// meanwhile: otherwise a load that read the read model just before a refresh could fill the
/// cache just after the refresh's invalidation, and serve stale recommendations for the TTL.
/// A shared slot only costs a skipped cache fill.
pub struct RefreshEpochs {
    slots: Box<[AtomicU64]>,
}

/// 4,096 slots (2^12): 32 KiB.
const EPOCH_SLOT_BITS: u32 = 12;

impl Default for RefreshEpochs {
    fn default() -> Self {
        RefreshEpochs {
            slots: (0..1usize << EPOCH_SLOT_BITS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl RefreshEpochs {
    fn slot(&self, user: u64) -> &AtomicU64 {
        let index = user.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - EPOCH_SLOT_BITS);
        &self.slots[index as usize]
    }

    /// Read before a load reads the read model.
    pub fn current(&self, user: u64) -> u64 {
        self.slot(user).load(Ordering::Acquire)
    }

    /// Called after the read model holds a user's refreshed recommendations, before the
    /// cache is invalidated.
    pub fn bump(&self, user: u64) {
        self.slot(user).fetch_add(1, Ordering::Release);
    }
}

pub struct RecommendationService {
    read_model: Arc<dyn ReadModel>,
    recommender: Arc<GraphRecommender>,
    cache: Arc<dyn Cache>,
    ttl: Duration,
    limit: usize,
    epochs: Arc<RefreshEpochs>,
    /// Loads in flight, per user: followers wait on the leader's cell instead of loading.
    loads: Mutex<HashMap<u64, Load>>,
}

impl RecommendationService {
    pub fn new(
        read_model: Arc<dyn ReadModel>,
        recommender: Arc<GraphRecommender>,
        cache: Arc<dyn Cache>,
        ttl: Duration,
        limit: usize,
    ) -> RecommendationService {
        let epochs = recommender.epochs().clone();
        RecommendationService {
            read_model,
            recommender,
            cache,
            ttl,
            limit,
            epochs,
            loads: Mutex::new(HashMap::new()),
        }
    }

    pub fn recommender(&self) -> &Arc<GraphRecommender> {
        &self.recommender
    }

    /// The user's recommendations as JSON bytes (their `age_ms` as of now), and whether the
    /// cache had them.
    pub async fn get(&self, user: u64) -> Result<(Arc<Vec<u8>>, CacheStatus), ReadModelError> {
        let key = wire::keys::recommendations(user);
        match self.cache.get(&key).await {
            Ok(Some(bytes)) => match Recommendations::aged(&bytes) {
                Ok(aged) => return Ok((Arc::new(aged), CacheStatus::Hit)),
                // Not ours to serve (another version's shape): load it again.
                Err(error) => tracing::warn!(%error, "ignoring a cached answer"),
            },
            Ok(None) => {}
            // The cache is an accelerator: when it is down, the read model still answers.
            Err(error) => {
                tracing::warn!(%error, "recommendations cache unavailable; reading the read model")
            }
        }
        let (cell, leader) = {
            let mut loads = self
                .loads
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match loads.get(&user) {
                Some(cell) => (cell.clone(), false),
                None => {
                    let cell: Load = Arc::new(OnceCell::new());
                    loads.insert(user, cell.clone());
                    (cell, true)
                }
            }
        };
        let loaded = cell.get_or_init(|| self.load(user, key)).await.clone();
        if leader {
            self.loads
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&user);
        }
        let bytes = loaded.map_err(ReadModelError::Shared)?;
        let aged = Recommendations::aged(&bytes).map_err(ReadModelError::Corrupt)?;
        Ok((Arc::new(aged), CacheStatus::Miss))
    }

    async fn load(&self, user: u64, key: String) -> Result<Arc<Vec<u8>>, String> {
        let epoch = self.epochs.current(user);
        let document = self.read(user).await.map_err(|error| error.to_string())?;
        let bytes = serde_json::to_vec(&document).map_err(|error| error.to_string())?;
        // A refresh since the read: what was read may be stale and the refresh's invalidation
        // may already be done, so it must not go into the cache.
        if self.epochs.current(user) == epoch {
            if let Err(error) = self.cache.set(&key, &bytes, self.ttl).await {
                tracing::warn!(%error, "cannot fill the recommendations cache");
            }
        }
        Ok(Arc::new(bytes))
    }

    async fn read(&self, user: u64) -> Result<Recommendations, ReadModelError> {
        if let Some(mut list) = self.read_model.recommendations(user).await? {
            if !list.items.is_empty() {
                list.items.truncate(self.limit);
                return Ok(Recommendations::new(user, list));
            }
        }
        Ok(Recommendations::new(
            user,
            self.recommender.fallback(self.limit),
        ))
    }
}
