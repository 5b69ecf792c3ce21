//! `GET /v1/users/{id}/recommendations`: cache-aside over the recommendations read model, with
//! one load per key at a time (a stampede of misses on one user costs one read-model read), and
//! the side path that keeps the read model fed from viewing history ([`ViewingRecorder`]).

mod recorder;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache::Cache;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

pub use recorder::{co_watched, RecorderTask, RefreshListener, ViewingRecorder};

use crate::readmodel::{ReadModel, ReadModelError, Recommendation};

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

/// The cached document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendations {
    pub user_id: u64,
    /// `co_watched` (from viewing history) or `popular` (fallback for a new viewer).
    pub source: String,
    pub items: Vec<Recommendation>,
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
        cache: Arc<dyn Cache>,
        ttl: Duration,
        limit: usize,
    ) -> RecommendationService {
        RecommendationService {
            read_model,
            cache,
            ttl,
            limit,
            epochs: Arc::default(),
            loads: Mutex::new(HashMap::new()),
        }
    }

    /// What the view recorder bumps after each refresh (see [`RefreshEpochs`]).
    pub fn refresh_epochs(&self) -> Arc<RefreshEpochs> {
        self.epochs.clone()
    }

    /// The user's recommendations as JSON bytes, and whether the cache had them.
    pub async fn get(&self, user: u64) -> Result<(Arc<Vec<u8>>, CacheStatus), ReadModelError> {
        let key = wire::keys::recommendations(user);
        match self.cache.get(&key).await {
            Ok(Some(bytes)) => return Ok((Arc::new(bytes), CacheStatus::Hit)),
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
        loaded
            .map(|bytes| (bytes, CacheStatus::Miss))
            .map_err(ReadModelError::Shared)
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
        if let Some(mut items) = self.read_model.recommendations(user).await? {
            if !items.is_empty() {
                items.truncate(self.limit);
                return Ok(Recommendations {
                    user_id: user,
                    source: "co_watched".to_owned(),
                    items,
                });
            }
        }
        Ok(Recommendations {
            user_id: user,
            source: "popular".to_owned(),
            items: self.read_model.popular(self.limit).await?,
        })
    }
}
