//! The cache invalidation side path, end to end: against a real Redis (the engine named by
//! `PLAYPULSE_TEST_REDIS`, and throwaway `redis-server` processes where a test stops its Redis),
//! and on the embedded default's in-process cache. Each test has its own key prefix.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cache::{Cache, CacheError, MemoryCache, RedisCache, RedisOptions};
use ingest::codec::{BodyEncoding, BodyFormat};
use playpulse::{Overrides, Settings};
use redis::aio::MultiplexedConnection;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::helpers::*;

pub fn unique_prefix() -> String {
    format!("pp-test-{}:", uuid::Uuid::new_v4().simple())
}

/// A taste-changing event (`start` or `complete`) for `user_id`.
pub fn taste_event(user_id: u64, kind: &str) -> Value {
    let mut event = event(user_id, now_ms() - 1_000);
    event["kind"] = kind.into();
    event
}

pub async fn connect(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("a redis URL")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|error| panic!("cannot connect to the test Redis at {url}: {error}"))
}

pub async fn set_key(redis: &mut MultiplexedConnection, key: &str) {
    redis::cmd("SET")
        .arg(key)
        .arg("cached")
        .arg("EX")
        .arg(3600)
        .exec_async(redis)
        .await
        .expect("SET");
}

pub async fn exists(redis: &mut MultiplexedConnection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<u64>(redis)
        .await
        .expect("EXISTS")
        == 1
}

/// Polls `check` every 10 ms until it holds or `deadline` passes.
async fn within(deadline: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check().await
}

/// A counter or gauge from the app's /metrics.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

async fn spawn_app_on_redis(url: &str, prefix: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("PLAYPULSE_CACHE__KIND", "redis"),
        ("PLAYPULSE_REDIS__URL", url),
        ("PLAYPULSE_REDIS__KEY_PREFIX", prefix),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(&env).await
}

#[tokio::test]
async fn an_invalidation_lands_within_a_second_of_the_durable_write() {
    let Some(url) = testkit::engines::redis() else {
        return;
    };
    let prefix = unique_prefix();
    let app = spawn_app_on_redis(&url, &prefix, &[]).await;
    let mut redis = connect(&url).await;
    let user = fresh_user();
    let key = format!("{prefix}{}", wire::keys::recommendations(user));
    set_key(&mut redis, &key).await;

    let response = app.post_events(&[taste_event(user, "start")]).await;
    let acknowledged = Instant::now();
    assert_eq!(response.status(), 200);
    let gone = within(Duration::from_secs(5), async || {
        !exists(&mut redis, &key).await
    })
    .await;
    let lag = acknowledged.elapsed();
    assert!(
        gone,
        "{key} still cached 5 s after the write was acknowledged"
    );
    assert!(
        lag <= Duration::from_secs(1),
        "{key} was unlinked {lag:?} after the acknowledgement (target: within 1 s)"
    );
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["cache"], true, "{ready}");
    app.stop().await;
}

/// Reads a Redis MONITOR stream over a plain connection (the stream is one line per command).
struct Monitor {
    lines: tokio::io::Lines<BufReader<TcpStream>>,
}

impl Monitor {
    async fn start(url: &str) -> Monitor {
        let address = redis::Client::open(url)
            .unwrap()
            .get_connection_info()
            .addr()
            .to_string();
        let mut stream = TcpStream::connect(&address).await.expect("connect");
        stream.write_all(b"MONITOR\r\n").await.unwrap();
        let mut lines = BufReader::new(stream).lines();
        let first = lines.next_line().await.unwrap();
        assert_eq!(first.as_deref(), Some("+OK"), "MONITOR refused");
        Monitor { lines }
    }

    /// The commands that name `needle`, up to the first one that names `sentinel`.
    async fn commands_until(&mut self, needle: &str, sentinel: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let read = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                if line.contains(sentinel) {
                    return;
                }
                if line.contains(needle) {
                    seen.push(line);
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the sentinel command shows in MONITOR");
        seen
    }
}

#[tokio::test]
async fn a_burst_for_one_user_is_coalesced_into_one_unlink() {
    let Some(url) = testkit::engines::redis() else {
        return;
    };
    let prefix = unique_prefix();
    // A long window, so that the whole burst surely falls within it.
    let window = Duration::from_secs(3);
    let app = spawn_app_on_redis(
        &url,
        &prefix,
        &[
            ("PLAYPULSE_INVALIDATION__WINDOW", "3s"),
            (
                "PLAYPULSE_INVALIDATION__KEYS",
                r#"["recommendations:{user_id}", "user_profile:{user_id}"]"#,
            ),
        ],
    )
    .await;
    let mut redis = connect(&url).await;
    let mut monitor = Monitor::start(&url).await;
    let user = fresh_user();
    let keys = [
        format!("{prefix}{}", wire::keys::recommendations(user)),
        format!("{prefix}{}", wire::keys::user_profile(user)),
    ];
    for key in &keys {
        set_key(&mut redis, key).await;
    }

    let burst_started = Instant::now();
    for _ in 0..10 {
        let events = [
            taste_event(user, "start"),
            event(user, now_ms() - 500),
            taste_event(user, "complete"),
        ];
        assert_eq!(app.post_events(&events).await.status(), 200);
    }
    assert!(
        burst_started.elapsed() < window,
        "the burst took {:?}, longer than the {window:?} window: cannot show coalescing",
        burst_started.elapsed()
    );

    assert!(
        within(Duration::from_secs(10), async || {
            !exists(&mut redis, &keys[0]).await && !exists(&mut redis, &keys[1]).await
        })
        .await,
        "the user's keys are unlinked"
    );
    assert!(
        within(Duration::from_secs(5), async || {
            metric(&app, "playpulse_invalidation_pending_users").await == 0.0
        })
        .await,
        "nothing left pending"
    );
    // Every UNLINK the app sent went before this GET; MONITOR lists commands in order.
    let sentinel = format!("{prefix}sentinel");
    redis::cmd("GET")
        .arg(&sentinel)
        .query_async::<Option<String>>(&mut redis)
        .await
        .unwrap();
    let unlinks: Vec<String> = monitor
        .commands_until(&prefix, &sentinel)
        .await
        .into_iter()
        .filter(|line| line.contains("\"UNLINK\""))
        .collect();
    assert_eq!(unlinks.len(), 1, "one UNLINK for the burst: {unlinks:#?}");
    assert!(
        keys.iter().all(|key| unlinks[0].contains(key.as_str())),
        "the UNLINK names both keys: {}",
        unlinks[0]
    );
    assert_eq!(metric(&app, "playpulse_invalidation_sent_total").await, 2.0);
    assert_eq!(
        metric(&app, "playpulse_invalidation_lag_seconds_count").await,
        1.0
    );
    app.stop().await;
}

/// A `redis-server` of our own on a free port, so that a test can stop and start it without
/// disturbing the tests that share the main one.
struct ThrowawayRedis {
    port: u16,
    dir: tempfile::TempDir,
    server: Option<Child>,
}

impl ThrowawayRedis {
    async fn start() -> ThrowawayRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = ThrowawayRedis {
            port,
            dir: tempfile::tempdir().unwrap(),
            server: None,
        };
        redis.run().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server on its port and directory (loading the dump a SAVE left there) and
    /// returns once it answers PING.
    async fn run(&mut self) {
        assert!(self.server.is_none(), "already running");
        let log = std::fs::File::create(self.dir.path().join("redis.log")).unwrap();
        let server = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--dbfilename",
                "dump.rdb",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot run redis-server ({error}): `engines/up redis` installs it")
            });
        self.server = Some(server);
        let url = self.url();
        let answers = within(Duration::from_secs(10), async || {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                return false;
            };
            let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
                return false;
            };
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .is_ok()
        })
        .await;
        assert!(
            answers,
            "redis-server on port {} did not answer; its log:\n{}",
            self.port,
            log_text(&self.dir.path().join("redis.log"))
        );
    }

    /// Kills the server outright (SIGKILL), as a crash would, and waits until it is gone.
    fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| format!("({error})"))
}

#[tokio::test]
async fn a_pending_invalidation_survives_a_redis_restart() {
    let Some(_) = testkit::engines::redis() else {
        return;
    };
    let mut server = ThrowawayRedis::start().await;
    let url = server.url();
    let prefix = unique_prefix();
    let app = spawn_app_on_redis(
        &url,
        &prefix,
        &[
            ("PLAYPULSE_INVALIDATION__WINDOW", "100ms"),
            ("PLAYPULSE_INVALIDATION__RETRY_BACKOFF", "50ms"),
            ("PLAYPULSE_INVALIDATION__MAX_BACKOFF", "500ms"),
        ],
    )
    .await;
    let mut redis = connect(&url).await;

    // The app's connection is up and used before the crash, so the crash cuts a live connection.
    let warm_up = fresh_user();
    let warm_up_key = format!("{prefix}{}", wire::keys::recommendations(warm_up));
    set_key(&mut redis, &warm_up_key).await;
    assert_eq!(
        app.post_events(&[taste_event(warm_up, "start")])
            .await
            .status(),
        200
    );
    assert!(
        within(Duration::from_secs(5), async || !exists(
            &mut redis,
            &warm_up_key
        )
        .await)
        .await,
        "invalidations work before the crash"
    );

    // The cached key goes into the dump, so that the restarted Redis holds it from its first
    // moment: if it is gone afterwards, an UNLINK reached the new process. The control key,
    // never invalidated, shows that the dump was loaded.
    let user = fresh_user();
    let key = format!("{prefix}{}", wire::keys::recommendations(user));
    let control = format!("{prefix}control:{user}");
    set_key(&mut redis, &key).await;
    set_key(&mut redis, &control).await;
    redis::cmd("SAVE").exec_async(&mut redis).await.unwrap();
    drop(redis);
    server.kill();

    let failed_before = metric(&app, "playpulse_invalidation_failed_total").await;
    let response = app.post_events(&[taste_event(user, "complete")]).await;
    assert_eq!(response.status(), 200, "the hot path does not need Redis");
    assert!(
        within(Duration::from_secs(10), async || {
            metric(&app, "playpulse_invalidation_failed_total").await > failed_before
                && metric(&app, "playpulse_invalidation_pending_users").await >= 1.0
        })
        .await,
        "with Redis down the invalidation fails, is counted, and stays pending"
    );

    server.run().await;
    let mut redis = connect(&url).await;
    assert!(
        within(Duration::from_secs(10), async || !exists(&mut redis, &key)
            .await)
        .await,
        "{key} unlinked after Redis came back; redis log:\n{}",
        log_text(&server.dir.path().join("redis.log"))
    );
    assert!(
        exists(&mut redis, &control).await,
        "the restarted Redis loaded the dump"
    );
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        stats.contains("cmdstat_unlink:calls="),
        "the restarted Redis ran an UNLINK:\n{stats}"
    );
    assert!(
        within(Duration::from_secs(5), async || {
            metric(&app, "playpulse_invalidation_pending_users").await == 0.0
        })
        .await,
        "nothing left pending"
    );
    app.stop().await;
}

/// Freezes (SIGSTOP) or thaws (SIGCONT) a process: a hung Redis keeps its connections open but
/// answers nothing.
fn signal(process: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(process.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name}");
}

#[tokio::test]
async fn a_hung_redis_delays_invalidations_but_never_the_acknowledgements() {
    let Some(_) = testkit::engines::redis() else {
        return;
    };
    let server = ThrowawayRedis::start().await;
    let url = server.url();
    let prefix = unique_prefix();
    let app = spawn_app_on_redis(
        &url,
        &prefix,
        &[
            ("PLAYPULSE_INVALIDATION__WINDOW", "50ms"),
            ("PLAYPULSE_INVALIDATION__RETRY_BACKOFF", "50ms"),
            ("PLAYPULSE_INVALIDATION__MAX_BACKOFF", "300ms"),
        ],
    )
    .await;
    let mut redis = connect(&url).await;
    let user = fresh_user();
    let key = format!("{prefix}{}", wire::keys::recommendations(user));
    set_key(&mut redis, &key).await;
    // Warm up the app's connection, so that the hang hits a live connection.
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "Redis answers before the hang");

    let process = server.server.as_ref().expect("running");
    signal(process, "STOP");
    let failed_before = metric(&app, "playpulse_invalidation_failed_total").await;
    for _ in 0..5 {
        let response = app.post_events(&[taste_event(user, "start")]).await;
        assert_eq!(response.status(), 200, "acknowledged while Redis hangs");
    }
    let failing = within(Duration::from_secs(10), async || {
        metric(&app, "playpulse_invalidation_failed_total").await > failed_before
    })
    .await;
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    signal(process, "CONT");
    assert!(
        failing,
        "requests to the hung Redis time out and are counted"
    );
    assert_eq!(ready.status(), 503, "readiness reports the hung cache");

    assert!(
        within(Duration::from_secs(10), async || !exists(&mut redis, &key)
            .await)
        .await,
        "{key} unlinked once Redis answers again"
    );
    assert!(
        within(Duration::from_secs(5), async || {
            metric(&app, "playpulse_invalidation_pending_users").await == 0.0
        })
        .await,
        "the retry went through: nothing left pending"
    );
    app.stop().await;
}

#[tokio::test]
async fn invalidations_pending_at_shutdown_are_sent_before_the_app_stops() {
    let Some(url) = testkit::engines::redis() else {
        return;
    };
    let prefix = unique_prefix();
    // A window far longer than the test: only the shutdown flush can send it.
    let app = spawn_app_on_redis(&url, &prefix, &[("PLAYPULSE_INVALIDATION__WINDOW", "1h")]).await;
    let mut redis = connect(&url).await;
    let user = fresh_user();
    let key = format!("{prefix}{}", wire::keys::recommendations(user));
    set_key(&mut redis, &key).await;
    assert_eq!(
        app.post_events(&[taste_event(user, "start")])
            .await
            .status(),
        200
    );
    assert!(exists(&mut redis, &key).await, "still inside the window");
    app.stop().await;
    assert!(
        !exists(&mut redis, &key).await,
        "sent by the shutdown flush"
    );
}

#[tokio::test]
async fn the_service_starts_with_redis_down_and_readiness_says_so() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let app = spawn_app_on_redis(&url, "p:", &[]).await;
    let user = fresh_user();
    assert_eq!(
        app.post_events(&[taste_event(user, "start")])
            .await
            .status(),
        200,
        "the hot path does not wait for the cache"
    );
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["cache"], false, "{body}");
    assert_eq!(body["sink"], true, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn calls_to_an_unreachable_redis_fail_within_their_timeout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = RedisOptions {
        connect_timeout: Duration::from_millis(100),
        command_timeout: Duration::from_millis(300),
        ready_timeout: Duration::from_millis(100),
    };
    let cache = RedisCache::new(&format!("redis://127.0.0.1:{port}"), "p:", options)
        .expect("building does not connect");
    let started = Instant::now();
    assert!(!cache.ready().await);
    let error = cache
        .unlink(&["a".to_owned()])
        .await
        .expect_err("nothing answers");
    assert!(matches!(error, CacheError::Unavailable(_)), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "calls are bounded by their timeouts; took {:?}",
        started.elapsed()
    );
}

/// What every cache implementation must do, whatever is behind it.
async fn cache_contract(cache: &dyn Cache) {
    let hour = Duration::from_secs(3600);
    assert!(cache.ready().await);
    assert_eq!(cache.get("absent").await.unwrap(), None);
    cache.set("a", b"1", hour).await.unwrap();
    cache.set("b", b"2", hour).await.unwrap();
    cache.set("a", b"3", hour).await.unwrap();
    assert_eq!(cache.get("a").await.unwrap(), Some(b"3".to_vec()));
    cache
        .set("short", b"x", Duration::from_millis(50))
        .await
        .unwrap();
    assert!(
        within(Duration::from_secs(5), async || cache
            .get("short")
            .await
            .unwrap()
            .is_none())
        .await,
        "a value expires after its ttl"
    );
    cache.set("zero", b"x", Duration::ZERO).await.unwrap();
    assert_eq!(cache.get("zero").await.unwrap(), None);
    assert_eq!(cache.unlink(&[]).await.unwrap(), 0);
    let keys = ["a".to_owned(), "b".to_owned(), "never".to_owned()];
    assert_eq!(cache.unlink(&keys).await.unwrap(), 2);
    assert_eq!(cache.get("a").await.unwrap(), None);
    assert_eq!(cache.get("b").await.unwrap(), None);
    // Many keys in one call (several UNLINK commands in one round trip on Redis).
    let many: Vec<String> = (0..1000).map(|i| format!("many:{i}")).collect();
    for key in many.iter().step_by(2) {
        cache.set(key, b"v", hour).await.unwrap();
    }
    assert_eq!(cache.unlink(&many).await.unwrap(), 500);
}

#[tokio::test]
async fn the_in_process_cache_keeps_the_cache_contract() {
    cache_contract(&MemoryCache::new()).await;
}

#[tokio::test]
async fn postgres_keeps_the_cache_contract() {
    let Some(url) = testkit::engines::postgres() else {
        return;
    };
    let database = testkit::postgres::fresh_database(&url).await;
    let cache = cache::PostgresCache::connect(&database, 4, Duration::from_secs(5))
        .await
        .expect("the PostgreSQL cache connects");
    cache_contract(&cache).await;
}

#[tokio::test]
async fn redis_keeps_the_cache_contract_under_its_prefix() {
    let Some(url) = testkit::engines::redis() else {
        return;
    };
    let prefix = unique_prefix();
    let cache = RedisCache::new(&url, &prefix, RedisOptions::default()).unwrap();
    cache_contract(&cache).await;
    // Keys live under the prefix, and another prefix does not see them.
    cache
        .set("mine", b"v", Duration::from_secs(60))
        .await
        .unwrap();
    let mut redis = connect(&url).await;
    assert!(exists(&mut redis, &format!("{prefix}mine")).await);
    let other = RedisCache::new(&url, &unique_prefix(), RedisOptions::default()).unwrap();
    assert_eq!(other.get("mine").await.unwrap(), None);
}

#[tokio::test]
async fn on_the_embedded_default_an_invalidation_empties_the_in_process_cache() {
    let dir = tempfile::tempdir().unwrap();
    let overrides = Overrides {
        listen: None,
        data_dir: Some(dir.path().to_owned()),
    };
    let settings = Settings::load(None, std::iter::empty(), &overrides).unwrap();
    assert_eq!(settings.cache.kind, ingest::config::CacheKind::Memory);
    let service = playpulse::Service::start(&settings).await.unwrap();
    let state = service.state.clone();
    let user = fresh_user();
    let key = wire::keys::recommendations(user);
    let hour = Duration::from_secs(3600);
    state.cache.set(&key, b"cached", hour).await.unwrap();
    let other = wire::keys::recommendations(user + 1);
    state.cache.set(&other, b"cached", hour).await.unwrap();

    let body =
        serde_json::to_vec(&[taste_event(user, "start"), event(user + 1, now_ms())]).unwrap();
    let ack = ingest::http::ingest_body(
        &state,
        BodyFormat::JsonArray,
        BodyEncoding::Identity,
        body.into(),
        Instant::now(),
    )
    .await
    .expect("accepted");
    assert_eq!(ack.accepted, 2);
    assert!(
        within(Duration::from_secs(5), async || state
            .cache
            .get(&key)
            .await
            .unwrap()
            .is_none())
        .await,
        "the start event invalidated {key}"
    );
    assert!(
        state.cache.get(&other).await.unwrap().is_some(),
        "a heartbeat invalidates nothing"
    );
    drop(state);
    service.drain().await;
}
