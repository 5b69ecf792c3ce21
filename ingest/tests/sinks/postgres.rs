//! The PostgreSQL sink's own cases, beyond the contract: partitions made per day of `ts`, and
//! retention that drops a day's partition only once every row in it has expired.

use std::sync::Arc;
use std::time::Duration;

use ingest::sink::postgres::{PostgresSink, PostgresSinkSettings};
use ingest::sink::{EventSink, HistoryQuery};

const DAY_MS: i64 = 86_400_000;

async fn connect(retention: Duration) -> Option<Arc<PostgresSink>> {
    let url = testkit::engines::postgres()?;
    let settings = PostgresSinkSettings {
        url: testkit::postgres::fresh_database(&url).await,
        max_connections: 4,
        request_timeout: Duration::from_secs(10),
    };
    Some(
        PostgresSink::connect(&settings, retention)
            .await
            .expect("the PostgreSQL sink connects"),
    )
}

/// For the contract suite.
pub async fn postgres_store(retention: Duration) -> Option<Arc<dyn EventSink>> {
    Some(connect(retention).await? as Arc<dyn EventSink>)
}

fn all(user_id: u64) -> HistoryQuery {
    HistoryQuery {
        user_id,
        from_ms: i64::MIN,
        to_ms: i64::MAX,
        limit: 1000,
    }
}

#[tokio::test]
async fn each_day_of_ts_gets_its_partition_and_expired_days_are_dropped() {
    let Some(sink) = connect(Duration::from_secs(30 * 86_400)).await else {
        return;
    };
    let user = testkit::fresh_user();
    let now = ingest::now_ms();
    let today = now.div_euclid(DAY_MS) as i32;
    // Written 40 days ago, about itself 40 days ago: expired.
    let old = wire::PlaybackEvent {
        received_at: now - 40 * DAY_MS,
        ..testkit::full_event(user, now - 40 * DAY_MS)
    };
    // About 35 days ago but written now (a late upload): alive until 30 days from now.
    let late = testkit::full_event(user, now - 35 * DAY_MS);
    let fresh = testkit::full_event(user, now);
    sink.write(0, Arc::new(vec![old.clone(), late.clone(), fresh.clone()]))
        .await
        .unwrap();
    let days = sink.partition_days().await.unwrap();
    assert_eq!(days, vec![today - 40, today - 35, today]);
    // Expired rows are never read, swept or not.
    assert_eq!(
        sink.history(all(user)).await.unwrap(),
        vec![fresh.clone(), late.clone()]
    );

    let dropped = sink.sweep(now).await.unwrap();
    assert_eq!(dropped, 1, "only the day whose every row expired goes");
    assert_eq!(
        sink.partition_days().await.unwrap(),
        vec![today - 35, today]
    );
    assert_eq!(sink.history(all(user)).await.unwrap(), vec![fresh, late]);
    // A write to a dropped day makes its partition again.
    let returning = testkit::full_event(user, now - 40 * DAY_MS);
    sink.write(1, Arc::new(vec![returning.clone()]))
        .await
        .unwrap();
    assert!(sink.partition_days().await.unwrap().contains(&(today - 40)));
    sink.shutdown().await;
}

#[tokio::test]
async fn a_history_holding_re_sent_events_still_fills_its_limit() {
    let Some(sink) = connect(Duration::from_secs(30 * 86_400)).await else {
        return;
    };
    let user = testkit::fresh_user();
    let now = ingest::now_ms();
    let events: Vec<_> = (0..6)
        .map(|i| testkit::full_event(user, now - 10_000 - i))
        .collect();
    sink.write(0, Arc::new(events.clone())).await.unwrap();
    // Each re-sent at a newer ts: twelve rows, six events.
    let moved: Vec<_> = events
        .iter()
        .enumerate()
        .map(|(i, event)| wire::PlaybackEvent {
            ts: now - 100 - i as i64,
            ..event.clone()
        })
        .collect();
    sink.write(1, Arc::new(moved.clone())).await.unwrap();
    let query = HistoryQuery {
        limit: 4,
        ..all(user)
    };
    assert_eq!(sink.history(query).await.unwrap(), moved[..4].to_vec());
    assert_eq!(sink.history(all(user)).await.unwrap(), moved);
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_not_a_panic() {
    let settings = PostgresSinkSettings {
        url: format!(
            "postgres://postgres@127.0.0.1:{}/none",
            testkit::free_port()
        ),
        max_connections: 1,
        request_timeout: Duration::from_secs(2),
    };
    match PostgresSink::connect(&settings, Duration::from_secs(60)).await {
        Err(ingest::sink::SinkError::Unavailable(message)) => {
            assert!(message.contains("postgres.url"), "{message}")
        }
        Err(other) => panic!("expected Unavailable, got {other}"),
        Ok(_) => panic!("connected to nothing"),
    }
}
