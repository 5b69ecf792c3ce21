//! Projectors: apply a committed event to the read models, THEN invalidate the cache keys it
//! makes stale. The order matters: invalidating first would let a reader refill the cache from
//! the old read model between the two steps, and the stale entry would live for a whole TTL.

use std::sync::Arc;

use cache::{Cache, CacheError};

use crate::outbox::OutboxEvent;
use crate::readmodel::{ReadModel, ReadModelError};

/// Why an event could not be projected (the relay retries it later).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The read model write failed; nothing was invalidated.
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
    /// The read model was written but the cache keys were not invalidated.
    #[error("cache invalidation: {0}")]
    Cache(#[from] CacheError),
}

/// The user profile projector.
#[derive(Clone)]
pub struct ProfileProjector {
    read_model: Arc<dyn ReadModel>,
    cache: Arc<dyn Cache>,
}

impl ProfileProjector {
    pub fn new(read_model: Arc<dyn ReadModel>, cache: Arc<dyn Cache>) -> ProfileProjector {
        ProfileProjector { read_model, cache }
    }

    /// Applies `event`; says whether the read model changed (false: it already held this
    /// version or a newer one). The keys are invalidated either way: a relay that crashed after
    /// the write but before the invalidation left them stale.
    pub async fn project(&self, event: &OutboxEvent) -> Result<bool, ProjectionError> {
        let applied = self.read_model.apply_profile(&event.profile).await?;
        let user = event.user_id.get() as u64;
        let keys = [
            wire::keys::user_profile(user),
            wire::keys::recommendations(user),
        ];
        self.cache.unlink(&keys).await?;
        Ok(applied)
    }
}
