use std::sync::Arc;

use async_trait::async_trait;
use cache::Cache;
use platform::commands::Subscribed;
use platform::domain::{SubscriptionId, UserId};
use platform::outbox::{Relay, RelayOptions};
use platform::projectors::ProfileProjector;
use platform::readmodel::{
    ReadModel, ReadModelError, Recommendation, RecommendationList, UserProfile,
};
use tokio::sync::Notify;

use crate::both_backends;
use crate::helpers::fixtures::{key, plan, subscribe, user};
use crate::helpers::Backend;

both_backends!(
    a_relay_crash_between_publish_and_mark_loses_nothing_and_applies_nothing_twice,
    several_relays_at_once_publish_each_event_once,
    the_cache_is_invalidated_after_commit_and_after_the_read_model_update,
    the_profile_read_model_converges_on_subscribe_and_cancel,
    a_dropped_relay_handle_stops_the_relay,
);

/// An embedder that drops the handle (as `ingest::app::build_state` does) must not be left
/// with a relay that spins: the task ends, letting go of its share of the relay.
async fn a_dropped_relay_handle_stops_the_relay(backend: Backend) {
    let relay = Arc::new(backend.relay());
    let handle = relay.clone().spawn();
    drop(handle);
    crate::helpers::eventually("the relay task ends", || {
        let relay = relay.clone();
        async move { Arc::strong_count(&relay) == 2 }
    })
    .await;
}

async fn a_relay_crash_between_publish_and_mark_loses_nothing_and_applies_nothing_twice(
    backend: Backend,
) {
    let commands = backend.commands();
    let (user, plan) = (
        user(&commands).await,
        plan(&commands, 999, "EUR", "monthly", true).await,
    );
    commands
        .subscribe(&key(), &subscribe(&user, &plan, "tok_visa"))
        .await
        .unwrap();
    // UserCreated is the head of the user's queue; SubscriptionCreated follows.
    let relay = backend.relay();
    let crashed = relay.run_once_then_crash_before_mark().await.unwrap();
    assert!(crashed >= 1);
    let applied_before_restart = relay.applied();
    assert!(
        backend.store.outbox_pending().await.unwrap() >= 2,
        "nothing was marked"
    );
    backend.drain_outbox().await;
    let restarted = backend.relay();
    restarted.run_once().await.unwrap();
    let profile = backend.read_model.profile(user.id).await.unwrap().unwrap();
    assert!(
        profile.subscription_active,
        "[{}] nothing lost",
        backend.name
    );
    assert_eq!(profile.version, 2);
    assert_eq!(profile.plan_id, Some(plan.id.get()));
    // The re-published events changed nothing the crashed round had applied.
    assert_eq!(applied_before_restart, crashed as u64);
}

async fn several_relays_at_once_publish_each_event_once(backend: Backend) {
    let commands = backend.commands();
    let plan = plan(&commands, 999, "EUR", "monthly", true).await;
    let mut users = Vec::new();
    for _ in 0..20 {
        let user = user(&commands).await;
        commands
            .subscribe(&key(), &subscribe(&user, &plan, "tok_visa"))
            .await
            .unwrap();
        users.push(user);
    }
    let events = 40;
    let relays: Vec<Arc<Relay>> = (0..3).map(|_| Arc::new(backend.relay())).collect();
    let rounds = relays.iter().map(|relay| {
        let (relay, store) = (relay.clone(), backend.store.clone());
        tokio::spawn(async move {
            while store.outbox_pending().await.unwrap() > 0 {
                relay.run_once().await.unwrap();
            }
        })
    });
    for round in futures::future::join_all(rounds).await {
        round.unwrap();
    }
    let published: u64 = relays.iter().map(|relay| relay.published()).sum();
    let applied: u64 = relays.iter().map(|relay| relay.applied()).sum();
    assert_eq!(
        published, events,
        "[{}] no event published twice",
        backend.name
    );
    assert_eq!(applied, events);
    for user in &users {
        let profile = backend.read_model.profile(user.id).await.unwrap().unwrap();
        assert!(
            profile.subscription_active && profile.version == 2,
            "{profile:?}"
        );
    }
}

/// A read model that checks, on every write, that the cache keys are still there: the
/// projector must write the read model first and invalidate second.
struct InvalidatesAfterWrite {
    inner: Arc<dyn ReadModel>,
    cache: Arc<dyn Cache>,
    violations: std::sync::atomic::AtomicU64,
}

#[async_trait]
impl ReadModel for InvalidatesAfterWrite {
    async fn apply_profile(&self, profile: &UserProfile) -> Result<bool, ReadModelError> {
        let key = wire::keys::user_profile(profile.user_id as u64);
        if self.cache.get(&key).await.unwrap().is_none() {
            self.violations
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.inner.apply_profile(profile).await
    }
    async fn profile(&self, user: UserId) -> Result<Option<UserProfile>, ReadModelError> {
        self.inner.profile(user).await
    }
    async fn record_views(&self, views: &[(u64, u64)]) -> Result<(), ReadModelError> {
        self.inner.record_views(views).await
    }
    async fn watched_by(&self, user: u64, limit: i64) -> Result<Vec<u64>, ReadModelError> {
        self.inner.watched_by(user, limit).await
    }
    async fn viewers_of(&self, content: u64, limit: i64) -> Result<Vec<u64>, ReadModelError> {
        self.inner.viewers_of(content, limit).await
    }
    async fn apply_titles(
        &self,
        events: &[platform::store::catalog::TitleEvent],
    ) -> Result<u64, ReadModelError> {
        self.inner.apply_titles(events).await
    }
    async fn title(
        &self,
        id: u64,
    ) -> Result<Option<platform::store::catalog::CatalogEntry>, ReadModelError> {
        self.inner.title(id).await
    }
    async fn popular(&self, limit: usize) -> Result<Vec<Recommendation>, ReadModelError> {
        self.inner.popular(limit).await
    }
    async fn put_recommendations(
        &self,
        lists: &[(u64, RecommendationList)],
    ) -> Result<(), ReadModelError> {
        self.inner.put_recommendations(lists).await
    }
    async fn recommendations(
        &self,
        user: u64,
    ) -> Result<Option<RecommendationList>, ReadModelError> {
        self.inner.recommendations(user).await
    }
}

async fn the_cache_is_invalidated_after_commit_and_after_the_read_model_update(backend: Backend) {
    let commands = backend.commands();
    let (user, plan) = (
        user(&commands).await,
        plan(&commands, 999, "EUR", "monthly", true).await,
    );
    backend.drain_outbox().await;
    let id = user.id.get() as u64;
    let keys = [
        wire::keys::user_profile(id),
        wire::keys::recommendations(id),
    ];
    let ttl = std::time::Duration::from_secs(600);
    for key in &keys {
        backend.cache.set(key, b"stale", ttl).await.unwrap();
    }
    commands
        .subscribe(&key(), &subscribe(&user, &plan, "tok_visa"))
        .await
        .unwrap();
    // Committed, not yet projected: the cache still holds the old entries.
    for key in &keys {
        assert!(backend.cache.get(key).await.unwrap().is_some());
    }
    let checking = Arc::new(InvalidatesAfterWrite {
        inner: backend.read_model.clone(),
        cache: backend.cache.clone(),
        violations: Default::default(),
    });
    let relay = Relay::new(
        backend.store.clone(),
        ProfileProjector::new(checking.clone(), backend.cache.clone()),
        RelayOptions::default(),
        Arc::new(Notify::new()),
    );
    assert_eq!(relay.run_once().await.unwrap(), 1);
    assert_eq!(
        checking
            .violations
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    for key in &keys {
        assert_eq!(
            backend.cache.get(key).await.unwrap(),
            None,
            "[{}] {key} invalidated",
            backend.name
        );
    }
}

async fn the_profile_read_model_converges_on_subscribe_and_cancel(backend: Backend) {
    let platform = backend.platform();
    let commands = platform.state.commands.clone();
    let (user, plan) = (
        user(&commands).await,
        plan(&commands, 999, "EUR", "monthly", true).await,
    );
    let Subscribed::Created(view) = commands
        .subscribe(&key(), &subscribe(&user, &plan, "tok_visa"))
        .await
        .unwrap()
    else {
        panic!("created");
    };
    let read_model = backend.read_model.clone();
    crate::helpers::eventually("the profile shows the subscription", || async {
        read_model
            .profile(user.id)
            .await
            .unwrap()
            .is_some_and(|p| p.subscription_active)
    })
    .await;
    commands
        .cancel(SubscriptionId::try_from(view.id).unwrap())
        .await
        .unwrap();
    crate::helpers::eventually("the profile shows the cancellation", || async {
        read_model
            .profile(user.id)
            .await
            .unwrap()
            .is_some_and(|p| !p.subscription_active && p.version == 3)
    })
    .await;
    platform.shutdown().await;
}
