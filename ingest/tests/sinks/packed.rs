//! The packed layout on both stores: the contract suite's factories, and what only this layout
//! has: each trigger that closes a chunk, replay of the log after a crash (between the log write
//! and the chunk write, and between the chunk write and the checkpoint), duplicates across
//! chunks, reads that merge stored and open chunks, and two ingest nodes on one Cassandra.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use event_cql::WriteMode;
use ingest::sink::cassandra::{CassandraChunks, CassandraSink};
use ingest::sink::embedded::{open_packed, EmbeddedChunks, StoreOptions};
use ingest::sink::packed::{ChunkLimits, ChunkPage, ChunkStore, PackedSink};
use ingest::sink::{EventSink, HistoryQuery};
use ingest::telemetry::Metrics;
use testkit::cassandra::TestKeyspace;
use testkit::full_event as playback;
use uuid::Uuid;
use wire::{EventKind, PlaybackEvent, MS_PER_DAY};

use crate::contract::StoreUnderTest;

/// Limits that close chunks by size in tests, and commit briskly.
fn limits() -> ChunkLimits {
    ChunkLimits {
        max_events: 8,
        max_age: Duration::from_secs(3_600),
        max_open_bytes: 64 << 20,
        commit_interval: Duration::from_millis(50),
    }
}

/// A store the packed layout can be opened on again (a restart), with its own limits.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    type Store: ChunkStore;
    async fn open(&self, limits: ChunkLimits) -> PackedSink<Self::Store>;
}

pub struct EmbeddedBackend {
    dir: tempfile::TempDir,
    retention: Duration,
}

#[async_trait]
impl Backend for EmbeddedBackend {
    type Store = Arc<EmbeddedChunks>;

    async fn open(&self, limits: ChunkLimits) -> PackedSink<Self::Store> {
        let options = StoreOptions {
            data_dir: self.dir.path().to_owned(),
            shards: 2,
            retention: self.retention,
            segment_bytes: 1 << 20,
            fsync: true,
        };
        // A sink just dropped may still be closing its chunk index (its tasks end on their own).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match open_packed(options.clone(), limits).await {
                Ok(sink) => return sink,
                Err(error) if tokio::time::Instant::now() < deadline => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("the embedded packed store opens: {error}"),
            }
        }
    }
}

pub struct CassandraBackend {
    keyspace: TestKeyspace,
    node_id: String,
}

impl CassandraBackend {
    /// Another ingest node on the same keyspace.
    fn node(&self, node_id: &str) -> CassandraNode<'_> {
        CassandraNode {
            keyspace: &self.keyspace,
            node_id: node_id.to_owned(),
        }
    }
}

pub struct CassandraNode<'a> {
    keyspace: &'a TestKeyspace,
    node_id: String,
}

impl CassandraNode<'_> {
    async fn open(&self, limits: ChunkLimits) -> PackedSink<Arc<CassandraChunks>> {
        let mut config = self.keyspace.config.clone();
        config.write_mode = WriteMode::ReplicaBatches;
        let rows = CassandraSink::with_session(
            self.keyspace.session.clone(),
            config,
            Arc::new(Metrics::default()),
        )
        .await
        .expect("the sink prepares its statements");
        let chunks = CassandraChunks::new(rows, self.node_id.clone(), 2)
            .await
            .expect("the chunk statements prepare");
        PackedSink::start(Arc::new(chunks), 2, limits, self.keyspace_retention())
            .await
            .expect("the packed sink starts")
    }

    fn keyspace_retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.keyspace.config.ttl_seconds))
    }
}

#[async_trait]
impl Backend for CassandraBackend {
    type Store = Arc<CassandraChunks>;

    async fn open(&self, limits: ChunkLimits) -> PackedSink<Self::Store> {
        self.node(&self.node_id).open(limits).await
    }
}

pub async fn embedded_backend(retention: Duration) -> Option<EmbeddedBackend> {
    Some(EmbeddedBackend {
        dir: tempfile::tempdir().unwrap(),
        retention,
    })
}

pub async fn cassandra_backend(retention: Duration) -> Option<CassandraBackend> {
    let address = testkit::engines::cassandra()?;
    let keyspace = TestKeyspace::create(&address, retention, WriteMode::ReplicaBatches).await;
    Some(CassandraBackend {
        keyspace,
        node_id: "node-a".to_owned(),
    })
}

/// The contract suite's factories: a packed sink, with its backend kept alive beside it.
pub async fn embedded_store(retention: Duration) -> Option<StoreUnderTest> {
    let backend = embedded_backend(retention).await?;
    let sink = backend.open(limits()).await;
    Some(StoreUnderTest {
        sink: Arc::new(sink),
        _guard: Box::new(backend),
    })
}

pub async fn cassandra_store(retention: Duration) -> Option<StoreUnderTest> {
    let backend = cassandra_backend(retention).await?;
    let sink = backend.open(limits()).await;
    Some(StoreUnderTest {
        sink: Arc::new(sink),
        _guard: Box::new(backend),
    })
}

fn all(user_id: u64) -> HistoryQuery {
    HistoryQuery {
        user_id,
        from_ms: i64::MIN,
        to_ms: i64::MAX,
        limit: 10_000,
    }
}

fn ids(events: &[PlaybackEvent]) -> Vec<Uuid> {
    events.iter().map(|event| event.event_id).collect()
}

/// `count` events of `user`, one a second back from `newest`, newest first.
fn events(user: u64, newest: i64, count: usize) -> Vec<PlaybackEvent> {
    (0..count)
        .map(|i| playback(user, newest - 1_000 * i as i64))
        .collect()
}

/// Chunks stored for `user` on `day`.
async fn stored_chunks<S: ChunkStore>(sink: &PackedSink<S>, user_id: u64, day: i32) -> usize {
    sink.store()
        .chunks(ChunkPage {
            user_id,
            day,
            from_ms: i64::MIN,
            after: None,
            limit: 1_000,
        })
        .await
        .unwrap()
        .len()
}

/// Acknowledged events, then a crash before any chunk is written: a restart replays them.
pub async fn a_crash_before_the_chunk_write_loses_nothing<B: Backend>(backend: B) {
    let user = testkit::fresh_user();
    let written = events(user, ingest::now_ms(), 5);
    let sink = backend.open(limits()).await;
    sink.write(0, Arc::new(written.clone())).await.unwrap();
    assert_eq!(stored_chunks(&sink, user, written[0].day()).await, 0);
    drop(sink); // kill -9: open chunks are gone from memory, the log is not
    let restarted = backend.open(limits()).await;
    assert_eq!(
        ids(&restarted.history(all(user)).await.unwrap()),
        ids(&written)
    );
}

/// Chunks written, then a crash before the checkpoint says so: the replay writes the same
/// events again, and history still returns each once.
pub async fn a_crash_before_the_checkpoint_doubles_nothing<B: Backend>(backend: B) {
    let user = testkit::fresh_user();
    let written = events(user, ingest::now_ms(), 20);
    let sink = backend.open(limits()).await;
    sink.write(0, Arc::new(written.clone())).await.unwrap();
    sink.commit_now().await.unwrap();
    assert!(stored_chunks(&sink, user, written[0].day()).await > 0);
    drop(sink);
    let restarted = backend.open(limits()).await;
    restarted.shutdown().await;
    assert_eq!(
        ids(&restarted.history(all(user)).await.unwrap()),
        ids(&written)
    );
    drop(restarted);
    let again = backend.open(limits()).await;
    assert_eq!(ids(&again.history(all(user)).await.unwrap()), ids(&written));
}

/// A chunk closes at `max_events`, when its session ends, at the day boundary, past the
/// memory bound, at its age, and at shutdown: each leaves the events readable, in chunks.
pub async fn each_trigger_closes_a_chunk<B: Backend>(backend: B) {
    let now = ingest::now_ms();
    let sink = backend.open(limits()).await;

    let full = testkit::fresh_user();
    let full_events = events(full, now, 8);
    sink.write(0, Arc::new(full_events.clone())).await.unwrap();

    let ended = testkit::fresh_user();
    let mut session = events(ended, now - 10, 2);
    session[0].kind = EventKind::Stop;
    sink.write(0, Arc::new(session.clone())).await.unwrap();

    // Yesterday's events, then today's: yesterday's chunk is complete.
    let traveller = testkit::fresh_user();
    let today = now.div_euclid(MS_PER_DAY) * MS_PER_DAY + 1_000;
    let yesterday = playback(traveller, today - 2_000);
    let after_midnight = playback(traveller, today);
    sink.write(0, Arc::new(vec![yesterday.clone()]))
        .await
        .unwrap();
    sink.write(0, Arc::new(vec![after_midnight.clone()]))
        .await
        .unwrap();

    sink.commit_now().await.unwrap();
    assert_eq!(
        stored_chunks(&sink, full, full_events[0].day()).await,
        1,
        "max_events"
    );
    assert_eq!(
        stored_chunks(&sink, ended, session[0].day()).await,
        1,
        "stop"
    );
    assert_eq!(
        stored_chunks(&sink, traveller, yesterday.day()).await,
        1,
        "day boundary"
    );
    assert_eq!(
        stored_chunks(&sink, traveller, after_midnight.day()).await,
        0
    );
    drop(sink);

    let tight = ChunkLimits {
        max_open_bytes: 1,
        ..limits()
    };
    let sink = backend.open(tight).await;
    let crowded = testkit::fresh_user();
    let crowded_events = events(crowded, now - 20, 3);
    sink.write(1, Arc::new(crowded_events.clone()))
        .await
        .unwrap();
    sink.commit_now().await.unwrap();
    assert!(
        stored_chunks(&sink, crowded, crowded_events[0].day()).await >= 1,
        "memory bound"
    );
    assert_eq!(
        sink.open_sizes().1,
        0,
        "nothing stays open past the memory bound"
    );
    drop(sink);

    let brief = ChunkLimits {
        max_age: Duration::from_millis(1),
        ..limits()
    };
    let sink = backend.open(brief).await;
    let idle = testkit::fresh_user();
    let idle_events = events(idle, now - 30, 2);
    sink.write(0, Arc::new(idle_events.clone())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await; // past max_age, on purpose
    sink.close_aged();
    sink.commit_now().await.unwrap();
    assert_eq!(
        stored_chunks(&sink, idle, idle_events[0].day()).await,
        1,
        "age"
    );
    drop(sink);

    let sink = backend.open(limits()).await;
    let last = testkit::fresh_user();
    let last_events = events(last, now - 40, 3);
    sink.write(0, Arc::new(last_events.clone())).await.unwrap();
    sink.shutdown().await;
    assert_eq!(
        stored_chunks(&sink, last, last_events[0].day()).await,
        1,
        "shutdown"
    );

    // Every event of every case reads back once, newest first.
    for (user, written) in [
        (full, full_events),
        (ended, session),
        (traveller, vec![after_midnight, yesterday]),
        (crowded, crowded_events),
        (idle, idle_events),
        (last, last_events),
    ] {
        assert_eq!(
            ids(&sink.history(all(user)).await.unwrap()),
            ids(&written),
            "user {user}"
        );
    }
}

/// A retried batch lands in a second chunk: history returns each event once, and a `limit`
/// over stored and open chunks is exact.
pub async fn duplicates_across_chunks_are_returned_once<B: Backend>(backend: B) {
    let user = testkit::fresh_user();
    let written = events(user, ingest::now_ms(), 30);
    let sink = backend.open(limits()).await;
    sink.write(0, Arc::new(written.clone())).await.unwrap();
    sink.commit_now().await.unwrap();
    sink.write(1, Arc::new(written[..12].to_vec()))
        .await
        .unwrap();
    sink.write(0, Arc::new(written[5..9].to_vec()))
        .await
        .unwrap();
    assert_eq!(ids(&sink.history(all(user)).await.unwrap()), ids(&written));
    sink.commit_now().await.unwrap();
    for limit in [1, 7, 8, 9, 29, 30, 31] {
        let query = HistoryQuery { limit, ..all(user) };
        let expected = &written[..limit.min(written.len())];
        assert_eq!(
            ids(&sink.history(query).await.unwrap()),
            ids(expected),
            "limit {limit}"
        );
    }
    let middle = HistoryQuery {
        from_ms: written[20].ts,
        to_ms: written[10].ts,
        limit: 5,
        user_id: user,
    };
    assert_eq!(
        ids(&sink.history(middle).await.unwrap()),
        ids(&written[10..15])
    );
}

/// Two ingest nodes on one Cassandra, each with its own log and open chunks: an event taken
/// by one is visible through the other once its chunk closes (at most `max_age`) and is
/// written (`commit_interval`).
pub async fn a_second_node_sees_the_first_nodes_events_within_the_age_bound(
    backend: CassandraBackend,
) {
    let quick = ChunkLimits {
        max_age: Duration::from_millis(500),
        commit_interval: Duration::from_millis(50),
        ..limits()
    };
    let first = backend.node("node-a").open(quick).await;
    let second = backend.node("node-b").open(quick).await;
    let user = testkit::fresh_user();
    let written = events(user, ingest::now_ms(), 3);
    let taken_at = std::time::Instant::now();
    first.write(0, Arc::new(written.clone())).await.unwrap();
    assert_eq!(ids(&first.history(all(user)).await.unwrap()), ids(&written));
    let seen = testkit::eventually(Duration::from_secs(10), || {
        let (second, written) = (&second, &written);
        async move { ids(&second.history(all(user)).await.unwrap()) == ids(written) }
    })
    .await;
    assert!(seen, "the second node never saw the first node's events");
    let bound = quick.max_age + quick.commit_interval * 4 + Duration::from_secs(2);
    assert!(
        taken_at.elapsed() <= bound,
        "visible after {:?}",
        taken_at.elapsed()
    );
    // Each node replays only its own log.
    second
        .write(1, Arc::new(events(user, ingest::now_ms() - 60_000, 1)))
        .await
        .unwrap();
    drop(second);
    let restarted = backend.node("node-b").open(quick).await;
    assert_eq!(restarted.history(all(user)).await.unwrap().len(), 4);
}

macro_rules! packed_suite {
    ($module:ident, $make:path, $($case:ident),*) => {
        mod $module {
            use super::*;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(backend) = $make(Duration::from_secs(30 * 86_400)).await else {
                        return;
                    };
                    super::$case(backend).await;
                }
            )*
        }
    };
}

packed_suite!(
    embedded,
    embedded_backend,
    a_crash_before_the_chunk_write_loses_nothing,
    a_crash_before_the_checkpoint_doubles_nothing,
    each_trigger_closes_a_chunk,
    duplicates_across_chunks_are_returned_once
);
packed_suite!(
    cassandra,
    cassandra_backend,
    a_crash_before_the_chunk_write_loses_nothing,
    a_crash_before_the_checkpoint_doubles_nothing,
    each_trigger_closes_a_chunk,
    duplicates_across_chunks_are_returned_once,
    a_second_node_sees_the_first_nodes_events_within_the_age_bound
);
