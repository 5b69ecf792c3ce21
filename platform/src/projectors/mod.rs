//! Projectors: apply a committed event to the read models, THEN invalidate the cache keys it
//! makes stale. The order matters: invalidating first would let a reader refill the cache from
//! the old read model between the two steps, and the stale entry would live for a whole TTL.

use std::sync::Arc;

use cache::{Cache, CacheError};
use graph::feed::WeakGraphFeeder;
use graph::{Identifier, IdentityLink};

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

/// Users whose events are written to the read model at once, per batch.
const PROJECTION_CONCURRENCY: usize = 32;

/// The user profile projector; it also hands the identifiers accounts used to the graph.
#[derive(Clone)]
pub struct ProfileProjector {
    read_model: Arc<dyn ReadModel>,
    cache: Arc<dyn Cache>,
    graph: Option<WeakGraphFeeder>,
}

impl ProfileProjector {
    pub fn new(read_model: Arc<dyn ReadModel>, cache: Arc<dyn Cache>) -> ProfileProjector {
        ProfileProjector {
            read_model,
            cache,
            graph: None,
        }
    }

    /// Feeds each projected event's identifiers (payment method, device) to the graph.
    pub fn feeding(mut self, graph: WeakGraphFeeder) -> ProfileProjector {
        self.graph = Some(graph);
        self
    }

    /// After the read model write: a replayed event links what it linked before (no change).
    fn feed_graph<'a>(&self, events: impl IntoIterator<Item = &'a OutboxEvent>) {
        let Some(graph) = &self.graph else { return };
        let mut links = Vec::new();
        for event in events {
            let user = event.user_id.get() as u64;
            let identifiers = &event.identifiers;
            if let Some(fingerprint) = &identifiers.payment_method {
                links.push(IdentityLink {
                    user,
                    identifier: Identifier::PaymentMethod(fingerprint.clone()),
                });
            }
            if let Some(device) = &identifiers.device {
                links.push(IdentityLink {
                    user,
                    identifier: Identifier::Device(device.clone()),
                });
            }
        }
        graph.record_identities(links);
    }

    /// Applies a batch: every read-model write first (users concurrently, each user's events in
    /// order), then one round trip that invalidates every affected key. Returns how many
    /// events changed the read model.
    pub async fn project_batch(&self, events: &[OutboxEvent]) -> Result<u64, ProjectionError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let mut per_user: Vec<Vec<&OutboxEvent>> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for event in events {
            let slot = *index.entry(event.user_id).or_insert_with(|| {
                per_user.push(Vec::new());
                per_user.len() - 1
            });
            per_user[slot].push(event);
        }
        let applied: Vec<u64> = stream::iter(per_user)
            .map(|user_events| async move {
                let mut applied = 0;
                for event in user_events {
                    applied += u64::from(self.read_model.apply_profile(&event.profile).await?);
                }
                Ok::<u64, ReadModelError>(applied)
            })
            .buffer_unordered(PROJECTION_CONCURRENCY)
            .try_collect()
            .await?;
        let mut keys = Vec::with_capacity(index.len() * 2);
        for user in index.keys() {
            let user = user.get() as u64;
            keys.push(wire::keys::user_profile(user));
            keys.push(wire::keys::recommendations(user));
        }
        if !keys.is_empty() {
            self.cache.unlink(&keys).await?;
        }
        self.feed_graph(events);
        Ok(applied.into_iter().sum())
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
        self.feed_graph([event]);
        Ok(applied)
    }
}
