//! End to end on PostgreSQL alone: the server on `config/postgres-only.toml` (events in the
//! partitioned `playback_events`, commands and read models in PostgreSQL, the cache in an
//! unlogged table). Clients post events and commands; history, profiles and recommendations
//! come back through the API, and each lives where the profile says.

use std::time::Duration;

use playpulse::{Overrides, Settings};
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_only_profile_keeps_everything_in_postgresql() {
    let Some(postgres) = testkit::engines::postgres() else {
        return;
    };
    let database = testkit::postgres::fresh_database(&postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let profile =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/postgres-only.toml");
    let env = [
        ("PLAYPULSE_POSTGRES__URL", database.clone()),
        (
            "PLAYPULSE_PLATFORM__COMMANDS__POSTGRES_URL",
            database.clone(),
        ),
    ];
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(dir.path().to_owned()),
    };
    let env = env
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()));
    let settings =
        Settings::load(Some(&profile), env, &overrides).expect("the postgres-only profile loads");
    assert_eq!(settings.sink.kind, ingest::config::SinkKind::Postgres);
    assert_eq!(settings.cache.kind, ingest::config::CacheKind::Postgres);
    let keys = platform::open_api_keys(&settings.platform())
        .await
        .expect("the key store (PostgreSQL) opens");
    let (admin, _) = keys
        .create(platform::keys::Role::Admin, "backend")
        .await
        .unwrap();
    let app = spawn_settings(settings, dir).await;
    let base = app.url("");
    let client = app.client.clone();
    let ready: Value = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["commands"], "ok", "{ready}");

    // Events: durable in PostgreSQL, read back through the API.
    let user = fresh_user();
    let events = events_for(user, 5);
    let ack = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(&admin)
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(ack.status(), 200);
    let history: Vec<Value> = client
        .get(format!("{base}/v1/users/{user}/history"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut sent = ids(&events);
    let mut stored = ids(&history);
    sent.sort();
    stored.sort();
    assert_eq!(stored, sent);

    // Commands and the profile read model, served through the cache.
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&admin)
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(&body)
            .send()
    };
    let created: Value = post(
        "/v1/users",
        json!({"email": "pg@example.com", "name": "Pat", "country": "SE"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let user_id = created["id"].as_i64().expect("a user id");
    let plan: Value = post(
        "/v1/plans",
        json!({"name": "Basic", "price_cents": 499, "currency": "SEK", "period": "monthly",
            "available": true}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let subscribed = post(
        "/v1/subscriptions",
        json!({"user_id": user_id, "plan_id": plan["id"], "payment_method": {"token": "tok_visa"}}),
    )
    .await
    .unwrap();
    assert_eq!(subscribed.status(), 201);
    let active = eventually(Duration::from_secs(20), || {
        let (client, base, admin) = (client.clone(), base.clone(), admin.clone());
        async move {
            let Ok(answer) = client
                .get(format!("{base}/v1/users/{user_id}"))
                .bearer_auth(&admin)
                .send()
                .await
            else {
                return false;
            };
            let profile: Value = answer.json().await.unwrap_or_default();
            profile["subscription_active"] == true
        }
    })
    .await;
    assert!(active, "the profile read model shows the subscription");
    // Served from the cache (the PostgreSQL table) once filled; a projection that lands
    // meanwhile drops the key, so ask until a read hits.
    let hit = eventually(Duration::from_secs(20), || {
        let (client, base, admin) = (client.clone(), base.clone(), admin.clone());
        async move {
            client
                .get(format!("{base}/v1/users/{user_id}"))
                .bearer_auth(&admin)
                .send()
                .await
                .is_ok_and(|answer| answer.headers()["x-cache"] == "hit")
        }
    })
    .await;
    assert!(hit, "the profile is served from the cache");
    let recommendations = client
        .get(format!("{base}/v1/users/{user}/recommendations"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(recommendations.status(), 200);

    // Each in PostgreSQL, where the profile says.
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert!(count("SELECT count(*) FROM playback_events").await >= 5);
    assert!(count("SELECT count(*) FROM cache_entries").await >= 1);
    assert_eq!(
        count("SELECT count(*) FROM read_model.user_profile").await,
        1
    );
    assert_eq!(count("SELECT count(*) FROM users").await, 1);
    pool.close().await;

    app.stop().await;
}
