//! The Cassandra sink against a real Cassandra (`engines/up cassandra`, address in
//! `PLAYPULSE_TEST_CASSANDRA`): a keyspace per test, the schema applied with the test's TTL.
//! The contract suite runs on it from `sink_contract.rs`; here are the Cassandra-only checks.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ingest::config::{Settings, WriteMode};
use ingest::sink::cassandra::{self, CassandraConfig, CassandraSink, HISTORY_TABLE};
use ingest::sink::{newest_first_unique, EventSink, HistoryQuery};
use ingest::telemetry::Metrics;
use scylla::client::session::Session;
use uuid::Uuid;
use wire::PlaybackEvent;

use crate::sink_contract::playback;

/// The Cassandra to test against. Unset: the test fails and says how to start one, unless
/// `PLAYPULSE_SKIP_ENGINE_TESTS=1`, when it is skipped (returns `None`) with a note.
pub fn cassandra_address() -> Option<String> {
    if let Ok(address) = std::env::var("PLAYPULSE_TEST_CASSANDRA") {
        return Some(address);
    }
    if std::env::var("PLAYPULSE_SKIP_ENGINE_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped: a Cassandra test (PLAYPULSE_SKIP_ENGINE_TESTS=1)");
        return None;
    }
    panic!(
        "PLAYPULSE_TEST_CASSANDRA is not set, and this test needs a real Cassandra. From the \
         repository root run `engines/up cassandra`, then \
         `PLAYPULSE_TEST_CASSANDRA=127.0.0.1:9042 cargo test`; PLAYPULSE_SKIP_ENGINE_TESTS=1 \
         skips the engine tests instead."
    );
}

/// Test keyspaces are named `pp_test_<unix seconds>_<random>`; ones older than this are left
/// over from earlier runs and dropped.
const STALE_KEYSPACE_AGE_SECS: u64 = 30 * 60;

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Settings for a fresh keyspace on the test Cassandra.
pub fn test_config(address: &str, retention: Duration, mode: WriteMode) -> CassandraConfig {
    let random = Uuid::new_v4().simple().to_string();
    let mut settings = Settings::defaults();
    settings.cassandra.nodes = vec![address.to_owned()];
    settings.cassandra.keyspace = format!("pp_test_{}_{}", unix_secs(), &random[..10]);
    settings.cassandra.write_mode = mode;
    CassandraConfig::from_settings(&settings.cassandra, retention).expect("test settings are valid")
}

/// A keyspace with the schema applied, and a sink on it.
pub struct TestKeyspace {
    pub config: CassandraConfig,
    pub session: Arc<Session>,
}

impl TestKeyspace {
    pub async fn create(address: &str, retention: Duration, mode: WriteMode) -> TestKeyspace {
        let config = test_config(address, retention, mode);
        let (session, _report) = cassandra::apply_schema(&config)
            .await
            .expect("the schema applies to a fresh keyspace");
        drop_stale_keyspaces(&session).await;
        TestKeyspace { config, session }
    }

    /// A sink on this keyspace writing with `mode` (sharing the keyspace's session).
    pub async fn sink(&self, mode: WriteMode) -> CassandraSink {
        let mut config = self.config.clone();
        config.write_mode = mode;
        CassandraSink::with_session(self.session.clone(), config, Arc::new(Metrics::default()))
            .await
            .expect("the sink prepares its statements")
    }
}

/// Drops test keyspaces that earlier runs left behind, so they do not pile up in the engine.
async fn drop_stale_keyspaces(session: &Session) {
    let Ok(result) = session
        .query_unpaged("SELECT keyspace_name FROM system_schema.keyspaces", ())
        .await
    else {
        return;
    };
    let Ok(rows) = result.into_rows_result() else {
        return;
    };
    let Ok(names) = rows.rows::<(String,)>() else {
        return;
    };
    let now = unix_secs();
    let stale: Vec<String> = names
        .filter_map(Result::ok)
        .map(|(name,)| name)
        .filter(|name| {
            name.strip_prefix("pp_test_")
                .and_then(|rest| rest.split('_').next())
                .and_then(|secs| secs.parse::<u64>().ok())
                .is_some_and(|created| now.saturating_sub(created) > STALE_KEYSPACE_AGE_SECS)
        })
        .collect();
    for name in stale {
        // Another test run may be dropping it too; either way it goes.
        let _ = cassandra::drop_keyspace(session, &name).await;
    }
}

/// The contract-suite factory: a fresh keyspace with this retention, the configured write mode.
pub async fn cassandra_store(retention: Duration) -> Option<(Arc<dyn EventSink>, TestKeyspace)> {
    let address = cassandra_address()?;
    let keyspace = TestKeyspace::create(&address, retention, WriteMode::PartitionBatches).await;
    let sink = keyspace.sink(keyspace.config.write_mode).await;
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
    let Some(address) = cassandra_address() else {
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
        let sink = keyspace.sink(mode).await;
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
    let Some(address) = cassandra_address() else {
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
    let Some(address) = cassandra_address() else {
        return;
    };
    let keyspace = TestKeyspace::create(
        &address,
        Duration::from_secs(3_600),
        WriteMode::PartitionBatches,
    )
    .await;
    let (_session, report) = cassandra::apply_schema(&keyspace.config).await.unwrap();
    assert_eq!(report.len(), 3, "{report:?}");
    assert!(
        report.iter().all(|line| line.contains("exists")),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_sink_is_ready_on_its_keyspace_and_refuses_to_start_without_the_schema() {
    let Some(address) = cassandra_address() else {
        return;
    };
    let keyspace = TestKeyspace::create(
        &address,
        Duration::from_secs(3_600),
        WriteMode::PartitionBatches,
    )
    .await;
    assert!(
        keyspace
            .sink(WriteMode::PartitionBatches)
            .await
            .ready()
            .await
    );

    let missing = test_config(
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

/// A TCP proxy in front of Cassandra whose connections a test can cut (all current ones closed,
/// new ones dropped on accept) and restore: a node going away, for real, without stopping the
/// engine other tests share.
pub struct CutProxy {
    pub addr: std::net::SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(upstream: String) -> CutProxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accept = {
            let (cut, connections) = (cut.clone(), connections.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue; // dropped: the connection closes at once
                    }
                    let upstream = upstream.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    connections.lock().unwrap().push(task.abort_handle());
                }
            })
        };
        CutProxy {
            addr,
            cut,
            connections,
            accept,
        }
    }

    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

#[tokio::test]
async fn while_cassandra_is_unreachable_clients_get_503_and_the_service_recovers_by_itself() {
    let Some(address) = cassandra_address() else {
        return;
    };
    let keyspace = TestKeyspace::create(
        &address,
        Duration::from_secs(3_600),
        WriteMode::PartitionBatches,
    )
    .await;
    let proxy = CutProxy::start(address).await;
    let nodes = format!("[\"{}\"]", proxy.addr);
    let app = crate::helpers::spawn_app_with(&[
        ("PLAYPULSE_SINK__KIND", "cassandra"),
        ("PLAYPULSE_CASSANDRA__NODES", &nodes),
        ("PLAYPULSE_CASSANDRA__KEYSPACE", &keyspace.config.keyspace),
        ("PLAYPULSE_CASSANDRA__REQUEST_TIMEOUT", "500ms"),
        ("PLAYPULSE_CASSANDRA__MAX_RETRIES", "2"),
        ("PLAYPULSE_SERVER__REQUEST_TIMEOUT", "3s"),
    ])
    .await;

    let before = crate::helpers::fresh_user();
    let acknowledged = crate::helpers::events_for(before, 20);
    assert_eq!(app.post_events(&acknowledged).await.status(), 200);

    proxy.cut();
    let during = crate::helpers::fresh_user();
    let refused = crate::helpers::events_for(during, 20);
    let response = app.post_events(&refused).await;
    assert_eq!(
        response.status(),
        503,
        "a write Cassandra never took must not be acknowledged"
    );
    assert!(response.headers().contains_key("retry-after"));
    let readiness = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(readiness.status(), 503, "not ready while Cassandra is away");

    proxy.restore();
    // The client retries, as a 503 asks it to; the driver reconnects by itself.
    let recovered = crate::helpers::eventually(Duration::from_secs(60), || {
        let (app, refused) = (&app, &refused);
        async move { app.post_events(refused).await.status() == 200 }
    })
    .await;
    assert!(
        recovered,
        "the service did not come back after Cassandra did"
    );

    let ids = crate::helpers::ids;
    assert_eq!(
        ids(&app.history(before, "limit=100").await),
        ids(&acknowledged),
        "an acknowledged event was lost"
    );
    assert_eq!(
        ids(&app.history(during, "limit=100").await),
        ids(&refused),
        "the retried events are stored once each"
    );
    app.stop().await;
}
