use std::sync::Arc;
use std::time::Duration;

use graph::feed::{FeedOptions, FlushListener, GraphFeeder};
use graph::{GraphStore, GraphUpdate, Neo4jGraph, Neo4jOptions, Watch};
use platform::readmodel::{
    ReadModel, ReadModelError, Recommendation, RecommendationList, UserProfile,
};
use platform::recommendations::{
    CacheStatus, GraphRecommender, RankingOptions, RecommendationService, Recommendations,
    RefreshEpochs, RefresherOptions,
};

use crate::both_backends;
use crate::helpers::{eventually, Backend};

both_backends!(
    co_watched_titles_are_recommended_from_the_graph_and_served_from_the_cache_next,
    a_new_viewer_gets_trending_titles_then_popular_ones,
    a_watch_changes_the_list_and_drops_the_cached_one,
    a_stampede_on_one_key_loads_once,
    a_load_that_overlaps_a_refresh_does_not_fill_the_cache,
    lists_written_together_read_back_apart_with_their_source_and_time,
);

async fn lists_written_together_read_back_apart_with_their_source_and_time(backend: Backend) {
    let base = rand_base();
    let list = |source: &str, at: i64, title: u64| RecommendationList {
        source: source.to_owned(),
        computed_at: at,
        items: vec![Recommendation {
            content_id: title,
            score: 0.5,
        }],
    };
    let first = vec![
        (base + 1, list("personal", 1_000, 7)),
        (base + 2, list("trending", 2_000, 8)),
    ];
    backend
        .read_model
        .put_recommendations(&first)
        .await
        .unwrap();
    let replacement = (base + 1, list("similar_to_recent", 3_000, 9));
    backend
        .read_model
        .put_recommendations(std::slice::from_ref(&replacement))
        .await
        .unwrap();
    backend.read_model.put_recommendations(&[]).await.unwrap();
    let read = |user| {
        let read_model = backend.read_model.clone();
        async move { read_model.recommendations(user).await.unwrap() }
    };
    assert_eq!(
        read(base + 1).await,
        Some(replacement.1.clone()),
        "the later list replaces it"
    );
    assert_eq!(read(base + 2).await, Some(first[1].1.clone()));
    assert_eq!(read(base + 3).await, None, "[{}]", backend.name);
}

/// Tiny graphs: no hub cap, one viewer in common is enough.
fn options() -> RefresherOptions {
    let mut options = RefresherOptions {
        refresh_interval: Duration::from_millis(20),
        ranking: RankingOptions {
            limit: 10,
            ..RankingOptions::default()
        },
        ..RefresherOptions::default()
    };
    options.similarity.hub_share = 1.0;
    options.similarity.min_together = 1;
    options
}

fn recommender(backend: &Backend, read_model: Arc<dyn ReadModel>) -> Arc<GraphRecommender> {
    Arc::new(GraphRecommender::new(
        backend.graph.clone(),
        read_model,
        Some(backend.cache.clone()),
        Arc::new(RefreshEpochs::default()),
        options(),
    ))
}

fn service(
    backend: &Backend,
    read_model: Arc<dyn ReadModel>,
    recommender: Arc<GraphRecommender>,
) -> RecommendationService {
    RecommendationService::new(
        read_model,
        recommender,
        backend.cache.clone(),
        Duration::from_secs(60),
        10,
    )
}

fn watches(pairs: &[(u64, u64)]) -> GraphUpdate {
    GraphUpdate {
        watches: pairs
            .iter()
            .enumerate()
            .map(|(at, &(user, title))| Watch {
                user,
                title,
                plays: 1,
                watch_ms: 60_000,
                completed: false,
                last_ts: 1_000 + at as i64,
            })
            .collect(),
        identities: Vec::new(),
    }
}

fn rand_base() -> u64 {
    (uuid::Uuid::new_v4().as_u128() as u64 >> 20) * 1000
}

fn titles(document: &Recommendations) -> Vec<u64> {
    document.items.iter().map(|item| item.content_id).collect()
}

/// Users 1, 2 and 3 watched title 10; 2 also watched 20 and 30; 3 watched 30. For user 1:
/// 30 (Jaccard 2/3 with 10) ranks before 20 (1/3).
async fn co_watched_titles_are_recommended_from_the_graph_and_served_from_the_cache_next(
    backend: Backend,
) {
    let base = rand_base();
    let recommender = recommender(&backend, backend.read_model.clone());
    let update = watches(&[
        (base + 2, 10),
        (base + 2, 20),
        (base + 2, 30),
        (base + 3, 10),
        (base + 3, 30),
        (base + 1, 10),
    ]);
    backend.graph.apply(&update).await.unwrap();
    recommender.heard(&update);
    let round = recommender.refresh_now().await.unwrap();
    assert_eq!((round.users, round.full), (3, true), "[{}]", backend.name);
    let similar = recommender.similar_to(10).expect("similar titles of 10");
    let neighbours: Vec<u64> = similar.titles.iter().map(|s| s.title).collect();
    assert_eq!(neighbours, vec![30, 20], "[{}]", backend.name);

    let service = service(&backend, backend.read_model.clone(), recommender);
    let (bytes, status) = service.get(base + 1).await.unwrap();
    assert_eq!(status, CacheStatus::Miss);
    let document: Recommendations = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(document.source, "similar_to_recent", "[{}]", backend.name);
    assert_eq!(titles(&document)[..2], [30, 20], "[{}]", backend.name);
    assert!(document.computed_at_ms > 0 && document.age_ms >= 0);
    let (again, status) = service.get(base + 1).await.unwrap();
    assert_eq!(status, CacheStatus::Hit);
    let again: Recommendations = serde_json::from_slice(&again).unwrap();
    assert_eq!(again.items, document.items);
    assert_eq!(again.computed_at_ms, document.computed_at_ms);
}

async fn a_new_viewer_gets_trending_titles_then_popular_ones(backend: Backend) {
    let base = rand_base();
    let recommender = recommender(&backend, backend.read_model.clone());
    // 7 has three viewers, 8 has one: popular is [7, 8].
    let update = watches(&[(base + 1, 7), (base + 2, 7), (base + 3, 7), (base + 3, 8)]);
    backend.graph.apply(&update).await.unwrap();
    recommender.refresh_now().await.unwrap();
    let service = service(&backend, backend.read_model.clone(), recommender.clone());
    let (bytes, _) = service.get(base + 99).await.unwrap();
    let document: Recommendations = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(document.source, "popular", "[{}]", backend.name);
    assert_eq!(titles(&document), vec![7, 8], "[{}]", backend.name);
    // Plays started lately trend: title 8 twice, then popular fills in.
    let lately = watches(&[(base + 4, 8), (base + 5, 8)]);
    recommender.heard(&lately);
    let list = recommender.fallback(10);
    assert_eq!(list.source, "trending");
    let trending: Vec<u64> = list.items.iter().map(|item| item.content_id).collect();
    assert_eq!(trending, vec![8, 7]);
}

/// The whole side path: playback through the feeder, the refresher's round, the read model
/// write, then the cached answer dropped (never before the write).
async fn a_watch_changes_the_list_and_drops_the_cached_one(backend: Backend) {
    let base = rand_base();
    let recommender = recommender(&backend, backend.read_model.clone());
    let (feeder, feeder_task) = GraphFeeder::start(
        backend.graph.clone(),
        FeedOptions {
            flush_interval: Duration::from_millis(20),
            ..FeedOptions::default()
        },
    );
    struct Mark(Arc<GraphRecommender>);
    impl FlushListener for Mark {
        fn flushed(&self, update: &GraphUpdate) {
            self.0.heard(update);
        }
    }
    feeder.notify_after_flush(Arc::new(Mark(recommender.clone())));
    let refresher = recommender.start();
    let service = service(&backend, backend.read_model.clone(), recommender.clone());
    let start = |user: u64, title: u64| wire::PlaybackEvent {
        content_id: title,
        kind: wire::EventKind::Start,
        ..testkit::event(user, 1_000)
    };
    feeder.record_playback(&[
        start(base + 2, 40),
        start(base + 2, 41),
        start(base + 1, 40),
    ]);
    eventually("user 1 gets 41", || async {
        let (bytes, _) = service.get(base + 1).await.unwrap();
        let document: Recommendations = serde_json::from_slice(&bytes).unwrap();
        titles(&document).first() == Some(&41)
    })
    .await;
    // Cached now; a new co-viewer links 42 to 40 more strongly than 41 is.
    assert_eq!(service.get(base + 1).await.unwrap().1, CacheStatus::Hit);
    feeder.record_playback(&[
        start(base + 3, 40),
        start(base + 3, 42),
        start(base + 4, 40),
        start(base + 4, 42),
        wire::PlaybackEvent {
            kind: wire::EventKind::Complete,
            ..start(base + 1, 40)
        },
    ]);
    eventually(
        "user 1's list is refreshed and its cached answer dropped",
        || async {
            let (bytes, _) = service.get(base + 1).await.unwrap();
            let document: Recommendations = serde_json::from_slice(&bytes).unwrap();
            titles(&document).first() == Some(&42)
        },
    )
    .await;
    drop(feeder);
    feeder_task.finished().await;
    refresher.stop().await;
}

/// The race the epochs close: a load reads the read model, a refresh of the same user writes
/// it and invalidates the cache, then the load would cache what it read, stale for the TTL.
async fn a_load_that_overlaps_a_refresh_does_not_fill_the_cache(backend: Backend) {
    let user = rand_base() + 1;
    let read_model = Arc::new(Counting::new(backend.read_model.clone(), Duration::ZERO));
    let recommender = recommender(&backend, read_model.clone());
    let _ = read_model
        .refresh_during_read
        .set(recommender.epochs().clone());
    let service = service(&backend, read_model.clone(), recommender);
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

async fn a_stampede_on_one_key_loads_once(backend: Backend) {
    // Slow enough that all 32 requests miss the cache while the first load runs.
    let counting = Arc::new(Counting::new(
        backend.read_model.clone(),
        Duration::from_millis(200),
    ));
    let recommender = recommender(&backend, counting.clone());
    let service = Arc::new(service(&backend, counting.clone(), recommender));
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

/// Neo4j down (a Bolt address nothing listens on): a refresh fails within its bound, the list
/// computed before is still served with its age, and the changed user stays marked.
#[tokio::test]
async fn with_the_graph_down_lists_are_served_stale_with_their_age() {
    let backend = Backend::embedded().await;
    let base = rand_base();
    let list = RecommendationList {
        source: "personal".to_owned(),
        computed_at: platform::domain::now_ms() - 60_000,
        items: vec![Recommendation {
            content_id: 5,
            score: 1.0,
        }],
    };
    backend
        .read_model
        .put_recommendations(&[(base + 1, list)])
        .await
        .unwrap();
    let down: Arc<dyn GraphStore> = Arc::new(
        Neo4jGraph::new(&Neo4jOptions {
            uri: format!("127.0.0.1:{}", testkit::free_port()),
            request_timeout: Duration::from_millis(500),
            ..Neo4jOptions::default()
        })
        .unwrap(),
    );
    assert!(!down.ready().await);
    let recommender = Arc::new(GraphRecommender::new(
        down,
        backend.read_model.clone(),
        Some(backend.cache.clone()),
        Arc::new(RefreshEpochs::default()),
        options(),
    ));
    recommender.heard(&watches(&[(base + 1, 9)]));
    let started = std::time::Instant::now();
    assert!(recommender.refresh_now().await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the request timeout"
    );
    assert_eq!(recommender.stats().failed_rounds, 1);
    let service = service(&backend, backend.read_model.clone(), recommender.clone());
    let (bytes, _) = service.get(base + 1).await.unwrap();
    let document: Recommendations = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(document.source, "personal");
    assert_eq!(titles(&document), vec![5]);
    assert!(
        document.age_ms >= 60_000,
        "the age says how stale: {}",
        document.age_ms
    );
    // Still marked: a later round (with the graph back) refreshes the user.
    assert!(recommender.refresh_now().await.is_err());
    assert_eq!(recommender.stats().failed_rounds, 2);
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
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(self.read_delay).await;
        let read = self.inner.recommendations(user).await;
        if let Some(epochs) = self.refresh_during_read.get() {
            epochs.bump(user);
        }
        read
    }
}
