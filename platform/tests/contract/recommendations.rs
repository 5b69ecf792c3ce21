use std::sync::Arc;
use std::time::Duration;

use platform::readmodel::{ReadModel, ReadModelError, Recommendation, UserProfile};
use platform::recommendations::{
    CacheStatus, RecommendationService, Recommendations, RefreshEpochs, ViewingRecorder,
};

use crate::both_backends;
use crate::helpers::{eventually, Backend};

both_backends!(
    co_watched_titles_are_recommended_and_served_from_the_cache_next,
    a_new_viewer_gets_popular_titles,
    a_stampede_on_one_key_loads_once,
    a_load_that_overlaps_a_refresh_does_not_fill_the_cache,
);

/// The race the epochs close: a load reads the read model, a refresh of the same user writes
/// it and invalidates the cache, then the load would cache what it read, stale for the TTL.
async fn a_load_that_overlaps_a_refresh_does_not_fill_the_cache(backend: Backend) {
    let user = rand_base() + 1;
    let read_model = Arc::new(Counting::new(backend.read_model.clone(), Duration::ZERO));
    let service = RecommendationService::new(
        read_model.clone(),
        backend.cache.clone(),
        Duration::from_secs(60),
        10,
    );
    let _ = read_model.refresh_during_read.set(service.refresh_epochs());
    let (_, status) = service.get(user).await.unwrap();
    assert_eq!(status, CacheStatus::Miss);
    let key = wire::keys::recommendations(user);
    assert_eq!(
        backend.cache.get(&key).await.unwrap(),
        None,
        "[{}] a load overtaken by a refresh filled the cache",
        backend.name
    );
}

fn event(user: u64, content: u64) -> wire::PlaybackEvent {
    wire::PlaybackEvent {
        content_id: content,
        kind: wire::EventKind::Start,
        ..testkit::event(user, 0)
    }
}

/// Users 1 and 2 watched title 10; 2 also watched 20 and 30; 3 watched 10 and 30.
/// For user 1: 30 (two co-viewers) ranks before 20 (one).
async fn co_watched_titles_are_recommended_and_served_from_the_cache_next(backend: Backend) {
    let base = rand_base();
    let (recorder, task) = ViewingRecorder::start(
        backend.read_model.clone(),
        Some(backend.cache.clone()),
        Default::default(),
        10,
        16,
    );
    recorder.record(&[
        event(base + 2, 10),
        event(base + 2, 20),
        event(base + 2, 30),
    ]);
    recorder.record(&[event(base + 3, 10), event(base + 3, 30)]);
    recorder.record(&[event(base + 1, 10)]);
    drop(recorder);
    task.finished().await;
    let service = RecommendationService::new(
        backend.read_model.clone(),
        backend.cache.clone(),
        Duration::from_secs(60),
        10,
    );
    let (bytes, status) = service.get(base + 1).await.unwrap();
    assert_eq!(status, CacheStatus::Miss);
    let document: Recommendations = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(document.source, "co_watched");
    let titles: Vec<u64> = document.items.iter().map(|item| item.content_id).collect();
    assert_eq!(titles, vec![30, 20], "[{}]", backend.name);
    let (again, status) = service.get(base + 1).await.unwrap();
    assert_eq!((status, again), (CacheStatus::Hit, bytes));
}

fn rand_base() -> u64 {
    (uuid::Uuid::new_v4().as_u128() as u64 >> 20) * 1000
}

async fn a_new_viewer_gets_popular_titles(backend: Backend) {
    let base = rand_base();
    backend
        .read_model
        .record_views(&[(base + 1, 7), (base + 2, 7), (base + 3, 8)])
        .await
        .unwrap();
    let service = RecommendationService::new(
        backend.read_model.clone(),
        backend.cache.clone(),
        Duration::from_secs(60),
        10,
    );
    let (bytes, _) = service.get(base + 99).await.unwrap();
    let document: Recommendations = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(document.source, "popular");
    let popular: Vec<u64> = document.items.iter().map(|item| item.content_id).collect();
    // Other tests share a Cassandra read model only when they share a keyspace: they don't.
    assert_eq!(popular, vec![7, 8], "[{}]", backend.name);
}

/// A read model that counts reads of recommendations and answers slowly.
async fn a_stampede_on_one_key_loads_once(backend: Backend) {
    // Slow enough that all 32 requests miss the cache while the first load runs.
    let counting = Arc::new(Counting::new(
        backend.read_model.clone(),
        Duration::from_millis(200),
    ));
    let service = Arc::new(RecommendationService::new(
        counting.clone(),
        backend.cache.clone(),
        Duration::from_secs(60),
        10,
    ));
    let user = rand_base();
    let requests = (0..32).map(|_| {
        let service = service.clone();
        tokio::spawn(async move { service.get(user).await.unwrap().1 })
    });
    let statuses = futures::future::join_all(requests).await;
    assert!(statuses.iter().all(|status| status.is_ok()));
    let reads = counting.reads.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        reads, 1,
        "[{}] one load for 32 concurrent misses",
        backend.name
    );
    eventually("the answer is cached", || async {
        service.get(user).await.unwrap().1 == CacheStatus::Hit
    })
    .await;
}

/// The backend's read model, with its recommendation reads counted and slowed down, and
/// optionally overtaken by a refresh of the same user (its epoch bumped as the read ends).
struct Counting {
    inner: Arc<dyn platform::readmodel::ReadModel>,
    reads: std::sync::atomic::AtomicU64,
    read_delay: Duration,
    refresh_during_read: std::sync::OnceLock<Arc<RefreshEpochs>>,
}

impl Counting {
    fn new(inner: Arc<dyn platform::readmodel::ReadModel>, read_delay: Duration) -> Counting {
        Counting {
            inner,
            reads: Default::default(),
            read_delay,
            refresh_during_read: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl ReadModel for Counting {
    async fn apply_profile(&self, profile: &UserProfile) -> Result<bool, ReadModelError> {
        self.inner.apply_profile(profile).await
    }
    async fn profile(
        &self,
        user: platform::domain::UserId,
    ) -> Result<Option<UserProfile>, ReadModelError> {
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
    async fn popular(&self, limit: usize) -> Result<Vec<Recommendation>, ReadModelError> {
        self.inner.popular(limit).await
    }
    async fn put_recommendations(
        &self,
        user: u64,
        items: &[Recommendation],
    ) -> Result<(), ReadModelError> {
        self.inner.put_recommendations(user, items).await
    }
    async fn recommendations(
        &self,
        user: u64,
    ) -> Result<Option<Vec<Recommendation>>, ReadModelError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(self.read_delay).await;
        let read = self.inner.recommendations(user).await;
        if let Some(epochs) = self.refresh_during_read.get() {
            epochs.bump(user);
        }
        read
    }
}
