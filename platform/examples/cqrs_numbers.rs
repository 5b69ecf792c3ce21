//! Measures the CQRS side on the real engines (or the embedded default): subscriptions per
//! second through the full transaction with its outbox event, outbox lag (commit to read model
//! updated and cache invalidated), and recommendations latency from the cache and from the read
//! model. Prints one JSON object.
//!
//!   engines/up postgres cassandra redis
//!   cargo run --release -p platform --example cqrs_numbers -- engines 10
//!   cargo run --release -p platform --example cqrs_numbers -- embedded 10

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cache::{Cache, MemoryCache, RedisCache, RedisOptions};
use platform::commands::{CommandOptions, Commands, Subscribe};
use platform::domain::*;
use platform::outbox::{Relay, RelayOptions};
use platform::payments::SimulatedGateway;
use platform::projectors::ProfileProjector;
use platform::readmodel::*;
use platform::recommendations::RecommendationService;
use platform::store::*;
use tokio::sync::Notify;

const USERS: usize = 2_000;
const WORKERS: usize = 32;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("engines", String::as_str).to_owned();
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let dir = tempfile::tempdir()?;
    let (store, read_model, cache): (Arc<dyn CommandStore>, Arc<dyn ReadModel>, Arc<dyn Cache>) =
        if mode == "engines" {
            let admin_url = std::env::var("PLAYPULSE_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/playpulse".into());
            let database = format!("pp_bench_{run}");
            let admin = sqlx::PgPool::connect(&admin_url).await?;
            sqlx::query(&format!("CREATE DATABASE {database}"))
                .execute(&admin)
                .await?;
            let base = admin_url
                .rsplit_once('/')
                .map_or(admin_url.as_str(), |(b, _)| b);
            let store = PostgresStore::connect(&format!("{base}/{database}"), 40).await?;
            let read_model = CassandraReadModel::connect(&CassandraReadModelConfig {
                nodes: vec![std::env::var("PLAYPULSE_TEST_CASSANDRA")
                    .unwrap_or_else(|_| "127.0.0.1:9042".into())],
                keyspace: format!("pp_bench_{run}"),
                replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
                local_datacenter: "datacenter1".into(),
                request_timeout: Duration::from_secs(5),
            })
            .await?;
            let cache = RedisCache::new(
                &std::env::var("PLAYPULSE_TEST_REDIS")
                    .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
                &format!("pp_bench_{run}:"),
                RedisOptions::default(),
            )?;
            (Arc::new(store), Arc::new(read_model), Arc::new(cache))
        } else {
            (
                Arc::new(SqliteStore::open(&dir.path().join("c.sqlite")).await?),
                Arc::new(LocalReadModel::open(&dir.path().join("r.sqlite")).await?),
                Arc::new(MemoryCache::new()),
            )
        };
    let committed = Arc::new(Notify::new());
    let commands = Commands::new(
        store.clone(),
        Arc::new(SimulatedGateway::new()),
        CommandOptions::default(),
        committed.clone(),
    );
    let plan = commands
        .create_plan(NewPlan {
            name: Name::try_from("Bench".to_owned()).unwrap(),
            price: PriceCents::try_from(999).unwrap(),
            currency: Currency::try_from("EUR").unwrap(),
            period: PlanPeriod::Monthly,
            available: true,
        })
        .await?;
    let mut users = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let user = commands
            .create_user(NewUser {
                email: Email::try_from(format!("u{i}@bench.example")).unwrap(),
                name: Name::try_from("Bench".to_owned()).unwrap(),
                country: parse_country("FR").unwrap(),
                device: None,
            })
            .await?;
        users.push(user.id);
    }
    let relay = Arc::new(Relay::new(
        store.clone(),
        ProfileProjector::new(read_model.clone(), cache.clone()),
        RelayOptions {
            poll_interval: Duration::from_millis(50),
            batch_size: 256,
        },
        committed,
    ));
    // Project the UserCreated events first, so that lag counts subscriptions only.
    while store.outbox_pending().await? > 0 {
        relay.run_once().await?;
    }
    relay.take_lags();
    let relay_task = relay.clone().spawn();

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers = (0..WORKERS).map(|worker| {
        let (commands, users) = (commands.clone(), users.clone());
        tokio::spawn(async move {
            let mut done = 0u64;
            let mut i = worker;
            while Instant::now() < deadline {
                let request = Subscribe {
                    user_id: users[i % users.len()],
                    plan_id: plan.id,
                    token: PaymentToken::try_from("tok_visa").unwrap(),
                    device: None,
                };
                let key =
                    IdempotencyKey::try_from(uuid::Uuid::new_v4().to_string().as_str()).unwrap();
                commands.subscribe(&key, &request).await.expect("subscribe");
                done += 1;
                i += WORKERS;
            }
            done
        })
    });
    let mut subscriptions = 0;
    for worker in futures::future::join_all(workers).await {
        subscriptions += worker?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let drain_started = Instant::now();
    while store.outbox_pending().await? > 0 {
        anyhow::ensure!(
            drain_started.elapsed() < Duration::from_secs(120),
            "outbox does not drain"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay_task.stop().await;
    let lags: Vec<f64> = relay.take_lags().into_iter().map(f64::from).collect();

    // Recommendations: give 200 users a viewing history, compute their read model rows.
    let mut views = Vec::new();
    for user in 0..200u64 {
        for k in 0..5u64 {
            views.push((1_000_000 + user, (user * 7 + k * 13) % 60));
        }
    }
    read_model.record_views(&views).await?;
    for user in 0..200u64 {
        let items =
            platform::recommendations::co_watched(read_model.as_ref(), 1_000_000 + user, 20)
                .await?;
        let list = platform::readmodel::RecommendationList {
            source: "co_watched".to_owned(),
            computed_at: platform::domain::now_ms(),
            items,
        };
        read_model
            .put_recommendations(&[(1_000_000 + user, list)])
            .await?;
    }
    let recommender = std::sync::Arc::new(platform::recommendations::GraphRecommender::new(
        std::sync::Arc::new(graph::MemoryGraph::new()),
        read_model.clone(),
        Some(cache.clone()),
        Default::default(),
        Default::default(),
    ));
    let service = RecommendationService::new(
        read_model.clone(),
        recommender,
        cache.clone(),
        Duration::from_secs(3600),
        20,
    );
    let (mut from_cache, mut from_read_model) = (Vec::new(), Vec::new());
    for round in 0..10 {
        for user in 0..200u64 {
            let user = 1_000_000 + user;
            cache
                .unlink(&[wire::keys::recommendations(user)])
                .await
                .context("unlink")?;
            let t = Instant::now();
            let (_, status) = service.get(user).await?;
            from_read_model.push(t.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(status.as_str() == "miss" || round > 0);
            let t = Instant::now();
            let (_, status) = service.get(user).await?;
            from_cache.push(t.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(status.as_str() == "hit", "second read hits");
        }
    }
    from_cache.sort_by(f64::total_cmp);
    from_read_model.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "mode": mode,
            "workers": WORKERS,
            "seconds": elapsed,
            "subscriptions": subscriptions,
            "subscriptions_per_second": subscriptions as f64 / elapsed,
            "outbox_lag_ms": { "events": lags.len(), "p50": percentile(&lags, 0.5), "p99": percentile(&lags, 0.99), "max": lags.last() },
            "recommendations_ms": {
                "requests_each": from_cache.len(),
                "cache_hit": { "p50": percentile(&from_cache, 0.5), "p99": percentile(&from_cache, 0.99) },
                "read_model": { "p50": percentile(&from_read_model, 0.5), "p99": percentile(&from_read_model, 0.99) },
            },
        })
    );
    Ok(())
}
