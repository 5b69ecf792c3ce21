use crate::helpers::*;

#[tokio::test]
async fn health_and_readiness_answer_when_serving() {
    let app = spawn_app().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], true);
}

#[tokio::test]
async fn metrics_count_events_requests_and_batches() {
    let app = spawn_app().await;
    let user = fresh_user();
    let mut events = events_for(user, 4);
    events.push(serde_json::json!({"user_id": "nope"}));
    assert_eq!(app.post_events(&events).await.status(), 200);
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for expected in [
        "playpulse_events_accepted_total 4",
        "playpulse_events_rejected_total{reason=\"missing_field\"} 1",
        "playpulse_http_requests_total{status=\"200\"} 1",
        "playpulse_batch_events_count 1",
        "playpulse_sink_write_seconds_count 1",
        "playpulse_queue_depth_events 0",
        "playpulse_in_flight_bytes 0",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in\n{text}");
    }
}
