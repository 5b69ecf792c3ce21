//! The event-store contract: one suite, run against every implementation of [`EventSink`].
//! Each run gets its own store (its own directory here; its own keyspace on Cassandra).

use std::sync::Arc;
use std::time::Duration;

use ingest::sink::embedded::{EmbeddedSink, StoreOptions};
use ingest::sink::{EventSink, HistoryQuery};
use testkit::full_event as playback;
use uuid::Uuid;

/// A store under test, and whatever must live as long as it does.
pub struct StoreUnderTest {
    pub sink: Arc<dyn EventSink>,
    pub _guard: Box<dyn std::any::Any + Send>,
}

/// A factory gives `None` when its engine is not there and the engine tests are skipped.
pub async fn embedded(retention: Duration) -> Option<StoreUnderTest> {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        data_dir: dir.path().to_owned(),
        shards: 2,
        retention,
        segment_bytes: 1 << 20,
        fsync: true,
    };
    Some(StoreUnderTest {
        sink: Arc::new(EmbeddedSink::open(options).await.unwrap()),
        _guard: Box::new(dir),
    })
}

/// Real Cassandra: a fresh keyspace per test, the schema applied with this retention as TTL.
pub async fn cassandra(retention: Duration) -> Option<StoreUnderTest> {
    let (sink, keyspace) = crate::cassandra::cassandra_store(retention).await?;
    Some(StoreUnderTest {
        sink,
        _guard: Box::new(keyspace),
    })
}

/// Real PostgreSQL: a fresh database per test.
pub async fn postgres(retention: Duration) -> Option<StoreUnderTest> {
    let sink = crate::postgres::postgres_store(retention).await?;
    Some(StoreUnderTest {
        sink,
        _guard: Box::new(()),
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

fn user() -> u64 {
    testkit::fresh_user()
}

pub async fn writes_are_read_back_whole(store: StoreUnderTest) {
    let user = user();
    let now = ingest::now_ms();
    let events = vec![playback(user, now - 10), playback(user, now - 20)];
    store.sink.write(0, Arc::new(events.clone())).await.unwrap();
    assert_eq!(store.sink.history(all(user)).await.unwrap(), events);
}

pub async fn duplicates_are_stored_once(store: StoreUnderTest) {
    let user = user();
    let now = ingest::now_ms();
    let events = vec![playback(user, now - 1), playback(user, now - 2)];
    let twice: Vec<_> = events.iter().chain(events.iter()).cloned().collect();
    store.sink.write(0, Arc::new(twice)).await.unwrap();
    store.sink.write(1, Arc::new(events.clone())).await.unwrap();
    store
        .sink
        .write(0, Arc::new(events[..1].to_vec()))
        .await
        .unwrap();
    let stored = store.sink.history(all(user)).await.unwrap();
    let ids: Vec<Uuid> = stored.iter().map(|event| event.event_id).collect();
    assert_eq!(ids, vec![events[0].event_id, events[1].event_id]);
}

pub async fn history_is_newest_first_across_batches_and_days(store: StoreUnderTest) {
    let user = user();
    let now = ingest::now_ms();
    let day = wire::MS_PER_DAY;
    let events: Vec<_> = [now - 2 * day, now - 5, now - day, now - 100, now - 3 * day]
        .iter()
        .map(|ts| playback(user, *ts))
        .collect();
    store
        .sink
        .write(0, Arc::new(events[..2].to_vec()))
        .await
        .unwrap();
    store
        .sink
        .write(1, Arc::new(events[2..].to_vec()))
        .await
        .unwrap();
    let ts: Vec<i64> = store
        .sink
        .history(all(user))
        .await
        .unwrap()
        .iter()
        .map(|e| e.ts)
        .collect();
    assert_eq!(
        ts,
        vec![now - 5, now - 100, now - day, now - 2 * day, now - 3 * day]
    );
}

pub async fn time_ranges_are_inclusive(store: StoreUnderTest) {
    let user = user();
    let base = ingest::now_ms() - 60_000;
    let events: Vec<_> = (0..10).map(|i| playback(user, base + i * 1_000)).collect();
    store.sink.write(0, Arc::new(events)).await.unwrap();
    let query = HistoryQuery {
        from_ms: base + 2_000,
        to_ms: base + 5_000,
        ..all(user)
    };
    let ts: Vec<i64> = store
        .sink
        .history(query)
        .await
        .unwrap()
        .iter()
        .map(|e| e.ts - base)
        .collect();
    assert_eq!(ts, vec![5_000, 4_000, 3_000, 2_000]);
}

pub async fn limits_keep_the_newest(store: StoreUnderTest) {
    let user = user();
    let base = ingest::now_ms() - 60_000;
    let events: Vec<_> = (0..50).map(|i| playback(user, base + i)).collect();
    store.sink.write(0, Arc::new(events)).await.unwrap();
    let query = HistoryQuery {
        limit: 3,
        ..all(user)
    };
    let ts: Vec<i64> = store
        .sink
        .history(query)
        .await
        .unwrap()
        .iter()
        .map(|e| e.ts - base)
        .collect();
    assert_eq!(ts, vec![49, 48, 47]);
}

pub async fn users_do_not_see_each_other(store: StoreUnderTest) {
    let (alice, bob) = (user(), user());
    let now = ingest::now_ms();
    store
        .sink
        .write(0, Arc::new(vec![playback(alice, now), playback(bob, now)]))
        .await
        .unwrap();
    let stored = store.sink.history(all(alice)).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].user_id, alice);
    assert!(store.sink.history(all(user())).await.unwrap().is_empty());
}

/// Run with a short retention (2 s): rows vanish after it.
pub async fn rows_expire_after_the_retention(store: StoreUnderTest) {
    let user = user();
    let now = ingest::now_ms();
    store
        .sink
        .write(0, Arc::new(vec![playback(user, now)]))
        .await
        .unwrap();
    assert_eq!(store.sink.history(all(user)).await.unwrap().len(), 1);
    let sink = store.sink.clone();
    let gone = testkit::eventually(Duration::from_secs(20), || {
        let sink = sink.clone();
        async move { sink.history(all(user)).await.unwrap().is_empty() }
    })
    .await;
    assert!(gone, "the row outlived its retention");
}

/// An `event_id` is the idempotency key: the same id at another `ts` (a player that re-sent an
/// event with a corrected clock) is one event, returned once, at its newest `ts`.
pub async fn an_event_id_is_one_event_whatever_its_ts(store: StoreUnderTest) {
    let user = user();
    let now = ingest::now_ms();
    let first = playback(user, now - 5_000);
    let moved = wire::PlaybackEvent {
        ts: now - 1_000,
        ..first.clone()
    };
    let other = playback(user, now - 3_000);
    store
        .sink
        .write(0, Arc::new(vec![first, other.clone()]))
        .await
        .unwrap();
    store
        .sink
        .write(1, Arc::new(vec![moved.clone()]))
        .await
        .unwrap();
    let stored = store.sink.history(all(user)).await.unwrap();
    let ids: Vec<(Uuid, i64)> = stored
        .iter()
        .map(|event| (event.event_id, event.ts))
        .collect();
    assert_eq!(
        ids,
        vec![(moved.event_id, moved.ts), (other.event_id, other.ts)]
    );
    let newest = HistoryQuery {
        limit: 1,
        ..all(user)
    };
    assert_eq!(store.sink.history(newest).await.unwrap(), vec![moved]);
}

/// Generates one test per contract case for a store factory `$make(retention)`.
macro_rules! contract_suite {
    ($module:ident, $make:path) => {
        contract_suite!(@cases $module, $make,
            writes_are_read_back_whole,
            duplicates_are_stored_once,
            history_is_newest_first_across_batches_and_days,
            time_ranges_are_inclusive,
            limits_keep_the_newest,
            users_do_not_see_each_other,
            an_event_id_is_one_event_whatever_its_ts;
            short: rows_expire_after_the_retention);
    };
    (@cases $module:ident, $make:path, $($case:ident),*; short: $($short:ident),*) => {
        mod $module {
            use std::time::Duration;

            const LONG: Duration = Duration::from_secs(30 * 86_400);

            $(
                #[tokio::test]
                async fn $case() {
                    let Some(store) = $make(LONG).await else {
                        return;
                    };
                    super::$case(store).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $short() {
                    let Some(store) = $make(Duration::from_secs(2)).await else {
                        return;
                    };
                    super::$short(store).await;
                }
            )*
        }
    };
}

contract_suite!(embedded_rows, super::embedded);
contract_suite!(cassandra_rows, super::cassandra);
contract_suite!(embedded_chunks, crate::packed::embedded_store);
contract_suite!(cassandra_chunks, crate::packed::cassandra_store);
contract_suite!(postgres_rows, super::postgres);
