//! The graph contract: every test runs on the in-process graph and on Neo4j (a label prefix of
//! its own, so tests share the one database without seeing each other).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use graph::feed::{FeedOptions, FlushListener, GraphFeeder};
use graph::{
    CoWatch, GraphError, GraphStore, GraphUpdate, Identifier, IdentityLink, MemoryGraph,
    Neo4jGraph, Neo4jOptions, SharedIdentifiers, TitleViewers, UserWatch, Watch,
};
use wire::{EventKind, PlaybackEvent};

async fn neo4j() -> Option<Arc<dyn GraphStore>> {
    let uri = testkit::engines::neo4j()?;
    let graph = Neo4jGraph::new(&Neo4jOptions {
        uri,
        label_prefix: testkit::unique_name("t"),
        request_timeout: Duration::from_secs(30),
        ..Neo4jOptions::default()
    })
    .expect("a Neo4j driver");
    Some(Arc::new(graph))
}

/// Runs `$test(graph)` on both graphs.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test]
            async fn $name() {
                super::$name(std::sync::Arc::new(graph::MemoryGraph::new())).await;
            })*
        }
        mod neo4j {
            $(#[tokio::test]
            async fn $name() {
                if let Some(graph) = super::neo4j().await {
                    super::$name(graph).await;
                }
            })*
        }
    };
}

on_both!(
    watches_merge_and_come_back_latest_first,
    co_watching_counts_viewers_and_leaves_out_hub_viewers,
    titles_are_ranked_by_viewers,
    accounts_sharing_two_identifiers_pair_up_but_hubs_link_no_one,
    ids_round_trip_over_the_whole_u64_range,
    the_feeder_writes_coalesced_playback_and_says_what_changed,
);

fn watch(user: u64, title: u64, last_ts: i64) -> Watch {
    Watch {
        user,
        title,
        plays: 1,
        watch_ms: 1_000,
        completed: false,
        last_ts,
    }
}

fn watches(pairs: &[(u64, u64)]) -> GraphUpdate {
    GraphUpdate {
        watches: pairs
            .iter()
            .enumerate()
            .map(|(at, &(user, title))| watch(user, title, 1_000 + at as i64))
            .collect(),
        identities: Vec::new(),
    }
}

async fn watches_merge_and_come_back_latest_first(graph: Arc<dyn GraphStore>) {
    graph
        .apply(&watches(&[(1, 10), (1, 11), (1, 12)]))
        .await
        .unwrap();
    let again = GraphUpdate {
        watches: vec![Watch {
            user: 1,
            title: 10,
            plays: 2,
            watch_ms: 500,
            completed: true,
            last_ts: 5_000,
        }],
        identities: Vec::new(),
    };
    graph.apply(&again).await.unwrap();
    let answer = graph.watches_of(&[2, 1], 2).await.unwrap();
    assert_eq!(answer.len(), 2);
    assert_eq!(answer[0], (2, Vec::new()), "a user the graph does not know");
    assert_eq!(
        answer[1],
        (
            1,
            vec![
                UserWatch {
                    title: 10,
                    plays: 3,
                    watch_ms: 1_000,
                    completed: true,
                    last_ts: 5_000
                },
                UserWatch {
                    title: 12,
                    plays: 1,
                    watch_ms: 1_000,
                    completed: false,
                    last_ts: 1_002
                },
            ]
        )
    );
    assert_eq!(graph.viewer_count().await.unwrap(), 1);
    assert!(graph.apply(&GraphUpdate::default()).await.is_ok());
}

async fn co_watching_counts_viewers_and_leaves_out_hub_viewers(graph: Arc<dyn GraphStore>) {
    // Viewers 1 and 2 watched 10 and 11; viewer 3 watched 10 and 12; viewer 4 watched
    // everything (10..=15): a hub viewer once the cap is 3 titles.
    let mut pairs = vec![(1, 10), (1, 11), (2, 10), (2, 11), (3, 10), (3, 12)];
    pairs.extend((10..=15).map(|title| (4, title)));
    graph.apply(&watches(&pairs)).await.unwrap();
    let capped = graph.co_watched(&[10, 99], 3).await.unwrap();
    assert_eq!(
        capped,
        vec![
            CoWatch {
                title: 10,
                other: 11,
                together: 2,
                title_viewers: 4,
                other_viewers: 3
            },
            CoWatch {
                title: 10,
                other: 12,
                together: 1,
                title_viewers: 4,
                other_viewers: 2
            },
        ]
    );
    let uncapped = graph.co_watched(&[11], 100).await.unwrap();
    let others: Vec<(u64, u64)> = uncapped.iter().map(|co| (co.other, co.together)).collect();
    assert_eq!(others, vec![(10, 3), (12, 1), (13, 1), (14, 1), (15, 1)]);
    assert!(graph.co_watched(&[], 3).await.unwrap().is_empty());
}

async fn titles_are_ranked_by_viewers(graph: Arc<dyn GraphStore>) {
    graph
        .apply(&watches(&[
            (1, 30),
            (2, 30),
            (3, 30),
            (1, 20),
            (2, 20),
            (1, 40),
            (2, 10),
            (3, 10),
        ]))
        .await
        .unwrap();
    assert_eq!(
        graph.titles().await.unwrap(),
        vec![
            TitleViewers {
                title: 30,
                viewers: 3
            },
            TitleViewers {
                title: 10,
                viewers: 2
            },
            TitleViewers {
                title: 20,
                viewers: 2
            },
            TitleViewers {
                title: 40,
                viewers: 1
            },
        ]
    );
    assert_eq!(graph.viewer_count().await.unwrap(), 3);
}

fn link(user: u64, identifier: Identifier) -> IdentityLink {
    IdentityLink { user, identifier }
}

async fn accounts_sharing_two_identifiers_pair_up_but_hubs_link_no_one(graph: Arc<dyn GraphStore>) {
    let card = || Identifier::PaymentMethod("card-a".to_owned());
    let phone = || Identifier::Device("phone-a".to_owned());
    let hub = || Identifier::Device("emulator-default".to_owned());
    let mut identities = vec![
        // 1 and 2 share a card and a phone: linked.
        link(1, card()),
        link(1, phone()),
        link(2, card()),
        link(2, phone()),
        // 3 shares only the card: one identifier links no one.
        link(3, card()),
        // 5 and 6 share the hub device and one card: the hub does not count.
        link(5, Identifier::PaymentMethod("card-b".to_owned())),
        link(6, Identifier::PaymentMethod("card-b".to_owned())),
    ];
    identities.extend((5..=8).map(|user| link(user, hub())));
    let update = GraphUpdate {
        watches: Vec::new(),
        identities,
    };
    graph.apply(&update).await.unwrap();
    graph.apply(&update).await.unwrap();
    assert_eq!(
        graph.shared_identifiers(2, 3).await.unwrap(),
        vec![SharedIdentifiers {
            user: 1,
            other: 2,
            identifiers: vec![card(), phone()],
        }]
    );
    // With no hub cap, 5 and 6 share the hub and card-b.
    let uncapped = graph.shared_identifiers(2, 100).await.unwrap();
    let pairs: Vec<(u64, u64)> = uncapped
        .iter()
        .map(|pair| (pair.user, pair.other))
        .collect();
    assert_eq!(pairs, vec![(1, 2), (5, 6)]);
    assert_eq!(
        graph.shared_identifiers(1, 3).await.unwrap().len(),
        4,
        "1-2, 1-3, 2-3, 5-6"
    );
    assert_eq!(
        graph.viewer_count().await.unwrap(),
        0,
        "accounts are not viewers"
    );
}

async fn ids_round_trip_over_the_whole_u64_range(graph: Arc<dyn GraphStore>) {
    let (user, title) = (u64::MAX - 1, (1 << 63) + 5);
    graph
        .apply(&watches(&[(user, title), (7, title)]))
        .await
        .unwrap();
    let answer = graph.watches_of(&[user], 10).await.unwrap();
    assert_eq!(answer[0].1[0].title, title);
    let co = graph.co_watched(&[title], 10).await.unwrap();
    assert!(co.is_empty(), "one title each: nothing co-watched");
    assert_eq!(
        graph.titles().await.unwrap()[0],
        TitleViewers { title, viewers: 2 }
    );
}

#[derive(Default)]
struct Heard {
    users: Mutex<Vec<u64>>,
    titles: Mutex<Vec<u64>>,
}

impl FlushListener for Heard {
    fn flushed(&self, update: &GraphUpdate) {
        let mut users = self.users.lock().unwrap();
        users.extend(update.watches.iter().map(|watch| watch.user));
        users.extend(update.identities.iter().map(|link| link.user));
        let mut titles = self.titles.lock().unwrap();
        titles.extend(update.watches.iter().map(|watch| watch.title));
    }
}

fn playback(user: u64, title: u64, kind: EventKind, ts: i64, position_ms: u64) -> PlaybackEvent {
    PlaybackEvent {
        content_id: title,
        kind,
        position_ms,
        ..testkit::event(user, ts)
    }
}

async fn the_feeder_writes_coalesced_playback_and_says_what_changed(graph: Arc<dyn GraphStore>) {
    let (feeder, task) = GraphFeeder::start(graph.clone(), FeedOptions::default());
    let heard = Arc::new(Heard::default());
    assert!(feeder.notify_after_flush(heard.clone()));
    feeder.record_playback(&[
        playback(1, 10, EventKind::Start, 1_000, 0),
        playback(1, 10, EventKind::Heartbeat, 2_000, 60_000),
        playback(1, 10, EventKind::Stop, 3_000, 90_000),
    ]);
    feeder.record_playback(&[
        playback(1, 10, EventKind::Start, 4_000, 90_000),
        playback(1, 10, EventKind::Complete, 5_000, 120_000),
        playback(2, 11, EventKind::BufferStart, 5_000, 0),
    ]);
    feeder.record_identities(vec![link(2, Identifier::Device("tv-1".to_owned()))]);
    let written = testkit::eventually(Duration::from_secs(30), || {
        let graph = graph.clone();
        async move {
            graph.watches_of(&[1], 10).await.is_ok_and(|answer| {
                answer[0].1
                    == vec![UserWatch {
                        title: 10,
                        plays: 2,
                        watch_ms: 120_000,
                        completed: true,
                        last_ts: 5_000,
                    }]
            })
        }
    })
    .await;
    assert!(written, "the feeder wrote the merged watch");
    assert!(
        testkit::eventually(Duration::from_secs(10), || {
            let heard = heard.clone();
            async move { heard.users.lock().unwrap().contains(&2) }
        })
        .await
    );
    assert_eq!(
        *heard.titles.lock().unwrap(),
        vec![10],
        "a buffer event is no watch"
    );
    drop(feeder);
    task.finished().await;
}

/// A graph that fails while told to: Neo4j down, for the feeder.
struct Flaky {
    inner: MemoryGraph,
    down: AtomicBool,
}

#[async_trait]
impl GraphStore for Flaky {
    async fn apply(&self, update: &GraphUpdate) -> Result<(), GraphError> {
        if self.down.load(Ordering::Acquire) {
            return Err(GraphError::Neo4j {
                context: "apply",
                message: "down".to_owned(),
            });
        }
        self.inner.apply(update).await
    }
    async fn co_watched(&self, titles: &[u64], cap: u64) -> Result<Vec<CoWatch>, GraphError> {
        self.inner.co_watched(titles, cap).await
    }
    async fn watches_of(
        &self,
        users: &[u64],
        limit: usize,
    ) -> Result<Vec<(u64, Vec<UserWatch>)>, GraphError> {
        self.inner.watches_of(users, limit).await
    }
    async fn titles(&self) -> Result<Vec<TitleViewers>, GraphError> {
        self.inner.titles().await
    }
    async fn viewer_count(&self) -> Result<u64, GraphError> {
        self.inner.viewer_count().await
    }
    async fn shared_identifiers(
        &self,
        min_shared: usize,
        max_accounts: u64,
    ) -> Result<Vec<SharedIdentifiers>, GraphError> {
        self.inner
            .shared_identifiers(min_shared, max_accounts)
            .await
    }
    async fn ready(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }
}

#[tokio::test]
async fn a_graph_that_is_down_gets_what_was_held_once_it_is_back_within_the_bound() {
    let flaky = Arc::new(Flaky {
        inner: MemoryGraph::new(),
        down: AtomicBool::new(true),
    });
    let options = FeedOptions {
        flush_interval: Duration::from_millis(10),
        max_pending: 3,
        max_backoff: Duration::from_millis(50),
        ..FeedOptions::default()
    };
    let (feeder, task) = GraphFeeder::start(flaky.clone(), options);
    let starts: Vec<PlaybackEvent> = (1..=5)
        .map(|user| playback(user, 10, EventKind::Start, 1_000, 0))
        .collect();
    feeder.record_playback(&starts);
    assert!(
        testkit::eventually(Duration::from_secs(10), || {
            let stats = feeder.stats();
            async move { stats.failed_writes >= 2 && stats.dropped_updates == 2 && stats.pending == 3 }
        })
        .await,
        "three held and retried, two dropped: {:?}",
        feeder.stats()
    );
    flaky.down.store(false, Ordering::Release);
    assert!(
        testkit::eventually(Duration::from_secs(10), || {
            let stats = feeder.stats();
            async move { stats.written == 3 && stats.pending == 0 }
        })
        .await,
        "{:?}",
        feeder.stats()
    );
    assert_eq!(flaky.viewer_count().await.unwrap(), 3);
    drop(feeder);
    task.finished().await;
}
