//! The CQRS platform served by `playpulse serve`: its routes beside the ingest API, and the
//! ingest side path that feeds recommendations from durable playback events.

use serde_json::{json, Value};

use crate::helpers::{now_ms, spawn_app};

async fn post(
    app: &crate::helpers::TestApp,
    path: &str,
    body: Value,
    key: Option<&str>,
) -> (u16, Value) {
    let mut request = app.client.post(app.url(path)).json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn get(app: &crate::helpers::TestApp, path: &str) -> (u16, Option<String>, Value) {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, cache, response.json().await.unwrap_or(Value::Null))
}

async fn poll_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_service_subscribes_a_user_and_serves_the_profile_from_the_read_model() {
    let app = spawn_app().await;
    let (status, user) = post(
        &app,
        "/v1/users",
        json!({"email": "ada@example.com", "name": "Ada", "country": "GB"}),
        None,
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let (status, plan) = post(&app, "/v1/plans", json!({"name": "Basic", "price_cents": 799, "currency": "GBP", "period": "monthly", "available": true}), None).await;
    assert_eq!(status, 201, "{plan}");
    let body = json!({"user_id": user["id"], "plan_id": plan["id"], "payment_method": {"token": "tok_visa"}});
    let (status, subscription) = post(&app, "/v1/subscriptions", body, Some("wiring-1")).await;
    assert_eq!(status, 201, "{subscription}");
    let path = format!("/v1/users/{}", user["id"]);
    poll_until("the profile shows the subscription", async || {
        let (status, _, profile) = get(&app, &path).await;
        status == 200 && profile["subscription_active"] == json!(true)
    })
    .await;
    let (status, _, mrr) = get(&app, "/v1/reports/mrr").await;
    assert_eq!(
        (status, mrr["by_currency"][0]["mrr_cents"].as_i64()),
        (200, Some(799))
    );
    app.stop().await;
}

#[tokio::test]
async fn durable_playback_events_feed_recommendations() {
    let app = spawn_app().await;
    let start = |user: u64, content: u64| {
        let mut event = crate::helpers::event(user, now_ms() - 1_000);
        event["kind"] = json!("start");
        event["content_id"] = json!(content);
        event
    };
    // 2 and 3 watched 10 and 20; 4 to 7 watched 30 (it trends most); then 1 watched 10:
    // 1 is recommended 20, similar to what they watched, before 30. Two requests, in this
    // order: a refresh recomputes only the viewers who just watched, so the others' watches
    // must be in the graph before 1's.
    let others = [
        start(2, 10),
        start(2, 20),
        start(3, 10),
        start(3, 20),
        start(4, 30),
        start(5, 30),
        start(6, 30),
        start(7, 30),
    ];
    assert_eq!(app.post_events(&others).await.status(), 200);
    poll_until("the others' watches are in the graph", async || {
        let (_, _, similar) = get(&app, "/v1/titles/10/similar").await;
        similar["items"][0]["content_id"] == json!(20)
    })
    .await;
    let (status, _, similar) = get(&app, "/v1/titles/10/similar").await;
    assert_eq!(status, 200);
    assert_eq!(
        similar["items"][0]["viewers_in_common"],
        json!(2),
        "{similar}"
    );
    assert!(similar["age_ms"].as_i64().is_some(), "{similar}");
    assert_eq!(app.post_events(&[start(1, 10)]).await.status(), 200);
    poll_until("similar titles are recommended", async || {
        let (status, _, document) = get(&app, "/v1/users/1/recommendations").await;
        status == 200 && document["source"] == json!("similar_to_recent")
    })
    .await;
    let (_, cache, document) = get(&app, "/v1/users/1/recommendations").await;
    assert_eq!(cache.as_deref(), Some("hit"));
    assert_eq!(document["items"][0]["content_id"], json!(20), "{document}");
    assert_eq!(
        document["items"][1]["content_id"],
        json!(30),
        "trending fills in: {document}"
    );
    assert!(
        document["age_ms"].as_i64().is_some_and(|age| age >= 0),
        "{document}"
    );
    // A viewer the graph does not know gets what trends.
    let (_, _, stranger) = get(&app, "/v1/users/99/recommendations").await;
    assert_eq!(stranger["source"], json!("trending"), "{stranger}");
    assert_eq!(stranger["items"][0]["content_id"], json!(30), "{stranger}");
    let (status, _, refused) = get(&app, "/v1/titles/ten/similar").await;
    assert_eq!(status, 400, "{refused}");
    app.stop().await;
}

/// Accounts sharing a card and a device are a ring; one shared device alone links no one.
#[tokio::test]
async fn accounts_sharing_payment_methods_and_devices_are_listed_as_a_ring() {
    let app = spawn_app().await;
    let (_, plan) = post(&app, "/v1/plans", json!({"name": "Basic", "price_cents": 799, "currency": "GBP", "period": "monthly", "available": true}), None).await;
    let mut users = Vec::new();
    for (index, (token, device)) in [
        ("tok_ring", "phone-ring"),
        ("tok_ring", "phone-ring"),
        ("tok_ring", "phone-ring"),
        ("tok_honest", "phone-ring"),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, user) = post(
            &app,
            "/v1/users",
            json!({"email": format!("r{index}@example.com"), "name": "R", "country": "GB", "device_id": device}),
            None,
        )
        .await;
        assert_eq!(status, 201, "{user}");
        let body = json!({"user_id": user["id"], "plan_id": plan["id"], "payment_method": {"token": token}, "device_id": device});
        let (status, subscription) = post(
            &app,
            "/v1/subscriptions",
            body,
            Some(&format!("ring-{index}")),
        )
        .await;
        assert_eq!(status, 201, "{subscription}");
        users.push(user["id"].as_i64().unwrap());
    }
    poll_until("the ring is found", async || {
        let (_, _, rings) = get(&app, "/v1/fraud/rings").await;
        rings["total"] == json!(1) && rings["rings"][0]["size"] == json!(3)
    })
    .await;
    let (_, _, rings) = get(&app, "/v1/fraud/rings").await;
    let ring = &rings["rings"][0];
    assert_eq!(ring["accounts"], json!(users[..3]), "{rings}");
    let kinds: Vec<&str> = ring["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|identifier| identifier["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["payment_method", "device"], "{rings}");
    assert!(
        !rings.to_string().contains("tok_ring"),
        "never the token: {rings}"
    );
    let (status, _, risk) = get(&app, &format!("/v1/users/{}/risk", users[0])).await;
    assert_eq!(status, 200);
    assert_eq!(risk["ring_id"], json!(users[0]), "{risk}");
    assert!(risk["score"].as_f64().unwrap() > 0.6, "{risk}");
    assert_eq!(risk["links"].as_array().unwrap().len(), 2, "{risk}");
    let (_, _, honest) = get(&app, &format!("/v1/users/{}/risk", users[3])).await;
    assert_eq!(
        (honest["score"].as_f64(), &honest["ring_id"]),
        (Some(0.0), &Value::Null),
        "{honest}"
    );
    let (status, _, _) = get(&app, "/v1/users/0/risk").await;
    assert_eq!(status, 400);
    let (status, _, _) = get(&app, "/v1/fraud/rings?limit=0").await;
    assert_eq!(status, 400);
    let (status, user) = post(
        &app,
        "/v1/users",
        json!({"email": "bad@example.com", "name": "B", "country": "GB", "device_id": 7}),
        None,
    )
    .await;
    assert_eq!(status, 400, "{user}");
    app.stop().await;
}

/// Neo4j down (nothing listens on its port): events are still acknowledged, the service stays
/// ready with the graph reported degraded, and recommendations are still answered.
#[tokio::test]
async fn with_neo4j_down_the_service_stays_ready_and_answers() {
    let port = testkit::free_port().to_string();
    let uri = format!("127.0.0.1:{port}");
    let app = crate::helpers::spawn_app_with(&[
        ("PLAYPULSE_PLATFORM__GRAPH__KIND", "neo4j"),
        ("PLAYPULSE_PLATFORM__GRAPH__NEO4J_URI", uri.as_str()),
        ("PLAYPULSE_PLATFORM__GRAPH__REQUEST_TIMEOUT", "300ms"),
    ])
    .await;
    let started = std::time::Instant::now();
    let response = app.post_events(&[start_event(1, 10)]).await;
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "the graph is off the hot path"
    );
    let (status, _, ready) = get(&app, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(
        (ready["ready"].clone(), ready["graph"].clone()),
        (json!(true), json!("degraded")),
        "{ready}"
    );
    let (status, _, document) = get(&app, "/v1/users/1/recommendations").await;
    assert_eq!(status, 200, "{document}");
    assert!(document["source"].is_string(), "{document}");
    app.stop().await;
}

fn start_event(user: u64, content: u64) -> Value {
    let mut event = crate::helpers::event(user, now_ms() - 1_000);
    event["kind"] = json!("start");
    event["content_id"] = json!(content);
    event
}
