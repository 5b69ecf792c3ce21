//! The Cassandra sink against a real Cassandra (`engines/up cassandra`, address in
//! `PLAYPULSE_TEST_CASSANDRA`): a keyspace per test, the schema applied with the test's TTL.
//! The contract suite runs on it from `contract.rs`; here are the Cassandra-only checks.

use std::sync::Arc;
use std::time::Duration;

use event_cql::{self as cassandra, WriteMode, HISTORY_TABLE};
use ingest::sink::cassandra::CassandraSink;
use ingest::sink::{newest_first_unique, EventSink, HistoryQuery};
use ingest::telemetry::Metrics;
use testkit::cassandra::TestKeyspace;
use testkit::full_event as playback;
use wire::PlaybackEvent;

/// A sink on `keyspace` writing with `mode` (sharing the keyspace's session).
pub async fn sink_on(keyspace: &TestKeyspace, mode: WriteMode) -> CassandraSink {
    let mut config = keyspace.config.clone();
    config.write_mode = mode;
    CassandraSink::with_session(
        keyspace.session.clone(),
        config,
        Arc::new(Metrics::default()),
    )
    .await
    .expect("the sink prepares its statements")
}

/// The contract-suite factory: a fresh keyspace with this retention, the configured write mode.
pub async fn cassandra_store(retention: Duration) -> Option<(Arc<dyn EventSink>, TestKeyspace)> {
    let address = testkit::engines::cassandra()?;
    let keyspace = TestKeyspace::create(&address, retention, WriteMode::PartitionBatches).await;
    let sink = sink_on(&keyspace, keyspace.config.write_mode).await;
    Some((Arc::new(sink), keyspace))
}

fn all(user_id: u64) -> HistoryQuery {
    HistoryQuery {
        user_id,
        from_ms: i64::MIN,
        to_ms: i64::MAX,
        limit: 10_000,
    }
}

/// A batch like the pipeline forms: many viewers, a few events each, over three days, with
/// some events twice, and ids above i64::MAX.
fn mixed_batch(first_user: u64, users: u64) -> Vec<PlaybackEvent> {
    let now = ingest::now_ms();
    let mut events = Vec::new();
    for user in first_user..first_user + users {
        for i in 0..5 {
            let ts = now - (i % 3) * wire::MS_PER_DAY - i * 1_000 - (user as i64 % 7);
            let mut event = playback(user, ts);
            event.content_id = u64::MAX - user;
            event.position_ms = i64::MAX as u64 + 1 + i as u64;
            event.bitrate_kbps = Some(u32::MAX - i as u32);
            event.device = (i % 2 == 0).then(|| "tv".into());
            event.error_code = (i == 4).then(|| "E42".into());
            events.push(event);
        }
    }
    let twice: Vec<_> = events.iter().step_by(7).cloned().collect();
    events.extend(twice);
    events
}

#[tokio::test]
async fn every_write_mode_reads_back_exactly_what_it_wrote() {
    let Some(address) = testkit::engines::cassandra() else {
        return;
    };
    let keyspace = TestKeyspace::create(
        &address,
        Duration::from_secs(3_600),
        WriteMode::ConcurrentInserts,
    )
    .await;
    let modes = [
        WriteMode::ConcurrentInserts,
        WriteMode::PartitionBatches,
        WriteMode::ReplicaBatches,
    ];
    for (round, mode) in modes.into_iter().enumerate() {
        let sink = sink_on(&keyspace, mode).await;
        // Ids above i64::MAX too: they are bit-cast into bigint and must come back unchanged.
        let first_user = u64::MAX - 1_000 * (round as u64 + 1);
        let events = mixed_batch(first_user, 200);
        sink.write(0, Arc::new(events.clone())).await.unwrap();
        for user in [
            first_user,
            first_user + 1,
            first_user + 99,
            first_user + 199,
        ] {
            let written: Vec<_> = events
                .iter()
                .filter(|event| event.user_id == user)
                .cloned()
                .collect();
            let expected = newest_first_unique(written, usize::MAX);
            assert_eq!(expected.len(), 5);
            let stored = sink.history(all(user)).await.unwrap();
            assert_eq!(stored, expected, "{mode:?}, user {user}");
        }
    }
}

#[tokio::test]
async fn the_sinks_token_of_a_partition_is_the_drivers() {
    let Some(address) = testkit::engines::cassandra() else {
        return;
    };
    let keyspace = TestKeyspace::create(
        &address,
        Duration::from_secs(3_600),
        WriteMode::ReplicaBatches,
    )
    .await;
    let cluster = keyspace.session.get_cluster_state();
    for (user_id, day) in [
        (0u64, 0i32),
        (42, 20_000),
        (u64::MAX, -3),
        (1 << 40, i32::MAX),
    ] {
        let drivers = cluster
            .compute_token(
                &keyspace.config.keyspace,
                HISTORY_TABLE,
                &(user_id as i64, day),
            )
            .unwrap();
        assert_eq!(cassandra::history_token(user_id, day), drivers);
    }
}

#[tokio::test]
async fn applying_the_schema_again_changes_nothing_and_says_so() {
    let Some(address) = testkit::engines::cassandra() else {
        return;
    };
    let keyspace = TestKeyspace::create(
        &address,
        Duration::from_secs(3_600),
        WriteMode::PartitionBatches,
    )
    .await;
    let (_session, report) = cassandra::apply_schema(&keyspace.config).await.unwrap();
    assert_eq!(report.len(), 5, "{report:?}");
    assert!(
        report.iter().all(|line| line.contains("exists")),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_sink_is_ready_on_its_keyspace_and_refuses_to_start_without_the_schema() {
    let Some(address) = testkit::engines::cassandra() else {
        return;
    };
    let keyspace = TestKeyspace::create(
        &address,
        Duration::from_secs(3_600),
        WriteMode::PartitionBatches,
    )
    .await;
    assert!(
        sink_on(&keyspace, WriteMode::PartitionBatches)
            .await
            .ready()
            .await
    );

    let missing = testkit::cassandra::test_config(
        &address,
        Duration::from_secs(60),
        WriteMode::PartitionBatches,
    );
    let error = match CassandraSink::connect(missing, Arc::new(Metrics::default())).await {
        Ok(_) => panic!("a sink started on a keyspace that does not exist"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("schema apply"), "{error}");
}
