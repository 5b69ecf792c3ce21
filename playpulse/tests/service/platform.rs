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
    // 2 watched 10 and 20; then 1 watched 10: 1 is recommended 20. Two requests, in this
    // order: the users may fall in different shards, and a refresh recomputes only the viewer
    // who just watched, so 2's views must be recorded before 1's refresh.
    let response = app.post_events(&[start(2, 10), start(2, 20)]).await;
    assert_eq!(response.status(), 200);
    let response = app.post_events(&[start(1, 10)]).await;
    assert_eq!(response.status(), 200);
    poll_until("co-watched titles are recommended", async || {
        let (status, _, document) = get(&app, "/v1/users/1/recommendations").await;
        status == 200 && document["items"][0]["content_id"] == json!(20)
    })
    .await;
    let (_, cache, _) = get(&app, "/v1/users/1/recommendations").await;
    assert_eq!(cache.as_deref(), Some("hit"));
    app.stop().await;
}
