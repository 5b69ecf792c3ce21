//! End to end on the real stack: the server on `config/cluster.toml` (events in Cassandra, the
//! recommendation cache in Redis, the graph on Neo4j, search on OpenSearch), clients post,
//! history through the API matches what was sent, the viewers' cache keys are gone, and a title
//! created with an admin key is found by search.

use std::collections::HashSet;
use std::time::Duration;

use event_cql::WriteMode;
use playpulse::{Application, Overrides, Settings};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::helpers::*;
use crate::redis_invalidation::{connect, exists, set_key, taste_event, unique_prefix};
use testkit::cassandra::TestKeyspace;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_profile_stores_in_cassandra_and_invalidates_redis() {
    let (Some(cassandra), Some(redis_url), Some(neo4j), Some(opensearch)) = (
        testkit::engines::cassandra(),
        testkit::engines::redis(),
        testkit::engines::neo4j(),
        testkit::engines::opensearch(),
    ) else {
        return;
    };
    let keyspace = TestKeyspace::create(
        &cassandra,
        Duration::from_secs(86_400),
        WriteMode::PartitionBatches,
    )
    .await;
    let prefix = unique_prefix();
    let alias = testkit::unique_name("pptest");
    let profile = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/cluster.toml");
    let env = [
        ("PLAYPULSE_CASSANDRA__NODES", format!("[\"{cassandra}\"]")),
        (
            "PLAYPULSE_CASSANDRA__KEYSPACE",
            keyspace.config.keyspace.clone(),
        ),
        ("PLAYPULSE_REDIS__URL", redis_url.clone()),
        ("PLAYPULSE_REDIS__KEY_PREFIX", prefix.clone()),
        ("PLAYPULSE_PLATFORM__GRAPH__NEO4J_URI", neo4j),
        (
            "PLAYPULSE_PLATFORM__GRAPH__NEO4J_LABEL_PREFIX",
            testkit::unique_name("t"),
        ),
        (
            "PLAYPULSE_PLATFORM__SEARCH__OPENSEARCH_URL",
            opensearch.clone(),
        ),
        ("PLAYPULSE_PLATFORM__SEARCH__ALIAS", alias.clone()),
    ];
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: None,
    };
    let env = env
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()));
    let settings =
        Settings::load(Some(&profile), env, &overrides).expect("the cluster profile loads");
    assert_eq!(settings.sink.kind, ingest::config::SinkKind::Cassandra);
    assert!(settings.auth.enabled, "the cluster profile turns auth on");
    let api_keys = platform::open_api_keys(&settings.platform())
        .await
        .expect("the key store (PostgreSQL) opens");
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (ingest_key, _) = api_keys
        .create(platform::keys::Role::Ingest, &format!("players-{run}"))
        .await
        .unwrap();
    let (read_key, _) = api_keys
        .create(platform::keys::Role::Read, &format!("history-{run}"))
        .await
        .unwrap();
    let (admin_key, _) = api_keys
        .create(platform::keys::Role::Admin, &format!("catalog-{run}"))
        .await
        .unwrap();
    let app = Application::build(settings)
        .await
        .expect("the service starts on the cluster profile");
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "ready on Cassandra and Redis");
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["graph"], "ok", "the graph on Neo4j answers: {ready}");
    assert_eq!(ready["search"], "ok", "OpenSearch answers: {ready}");

    // The profile's command store outlives the run: an id and a word of this run's own.
    let title_id = u64::from_str_radix(&run[..15], 16).unwrap() | 1;
    let word = format!("heist{}", &run[..8]);
    let title = serde_json::json!({
        "id": title_id, "title": format!("The Cluster {word}"), "year": 2024, "maturity": "PG-13"
    });
    let created = client
        .post(format!("{base}/v1/titles"))
        .bearer_auth(&admin_key)
        .json(&title)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let refused = client
        .post(format!("{base}/v1/titles"))
        .bearer_auth(&read_key)
        .json(&title)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403, "titles are written by admins");
    let found = eventually(Duration::from_secs(20), || {
        let (client, base, read_key) = (client.clone(), base.clone(), read_key.clone());
        let query = format!("{base}/v1/search?q=cluster%20{}", &word[..7]);
        async move {
            let Ok(answer) = client.get(query).bearer_auth(&read_key).send().await else {
                return false;
            };
            let answer: Value = answer.json().await.unwrap_or_default();
            answer["hits"][0]["id"] == title_id
        }
    })
    .await;
    assert!(found, "the title is searchable on OpenSearch");

    let mut redis = connect(&redis_url).await;
    let users: Vec<u64> = (0..5).map(|_| fresh_user()).collect();
    for user in &users {
        set_key(
            &mut redis,
            &format!("{prefix}{}", wire::keys::recommendations(*user)),
        )
        .await;
        set_key(
            &mut redis,
            &format!("{prefix}{}", wire::keys::user_profile(*user)),
        )
        .await;
    }
    let mut sent: Vec<Value> = Vec::new();
    for user in &users {
        let mut events = events_for(*user, 20);
        events.push(taste_event(*user, "start"));
        let response = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(&ingest_key)
            .json(&events)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let ack: Value = response.json().await.unwrap();
        assert_eq!(ack["accepted"], 21);
        sent.extend(events);
    }

    for user in &users {
        let url = format!("{base}/v1/users/{user}/history?limit=1000");
        let stored: Vec<Value> = client
            .get(url)
            .bearer_auth(&read_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut expected: Vec<&Value> = sent
            .iter()
            .filter(|event| event["user_id"] == *user)
            .collect();
        expected.sort_by(|a, b| {
            let key = |event: &Value| {
                (
                    event["ts"].as_i64().unwrap(),
                    event["event_id"].as_str().unwrap().to_owned(),
                )
            };
            key(b).cmp(&key(a))
        });
        assert_eq!(stored.len(), expected.len(), "user {user}");
        for (got, want) in stored.iter().zip(&expected) {
            for field in [
                "event_id",
                "session_id",
                "user_id",
                "content_id",
                "kind",
                "ts",
                "position_ms",
                "device",
                "country",
            ] {
                assert_eq!(got[field], want[field], "{field} of user {user}");
            }
        }
        let ids: HashSet<&str> = stored
            .iter()
            .map(|event| event["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), stored.len(), "each event once");
    }

    let keys: Vec<String> = users
        .iter()
        .flat_map(|user| {
            [
                wire::keys::recommendations(*user),
                wire::keys::user_profile(*user),
            ]
        })
        .map(|key| format!("{prefix}{key}"))
        .collect();
    let gone = eventually(Duration::from_secs(5), || {
        let keys = keys.clone();
        let url = redis_url.clone();
        async move {
            let mut redis = connect(&url).await;
            for key in &keys {
                if exists(&mut redis, key).await {
                    return false;
                }
            }
            true
        }
    })
    .await;
    assert!(
        gone,
        "the viewers' recommendation and profile keys are unlinked"
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    api_keys.revoke(&format!("players-{run}")).await.unwrap();
    api_keys.revoke(&format!("history-{run}")).await.unwrap();
    api_keys.revoke(&format!("catalog-{run}")).await.unwrap();
    let _ = reqwest::Client::new()
        .delete(format!("{opensearch}/{alias}-*"))
        .send()
        .await;
    keyspace.drop_keyspace().await;
}
