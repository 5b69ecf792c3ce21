use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn history_is_newest_first_with_inclusive_bounds_and_a_limit() {
    let app = spawn_app().await;
    let user = fresh_user();
    let base = now_ms() - 3_600_000;
    // Sent in shuffled order, across two requests.
    let tss = [
        base + 5_000,
        base + 1_000,
        base + 3_000,
        base + 2_000,
        base + 4_000,
    ];
    let events: Vec<Value> = tss.iter().map(|ts| event(user, *ts)).collect();
    assert_eq!(app.post_events(&events[..2]).await.status(), 200);
    assert_eq!(app.post_events(&events[2..]).await.status(), 200);

    let ts_of = |events: &[Value]| {
        events
            .iter()
            .map(|e| e["ts"].as_i64().unwrap() - base)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ts_of(&app.history(user, "").await),
        vec![5_000, 4_000, 3_000, 2_000, 1_000]
    );
    let range = format!("from={}&to={}", base + 2_000, base + 4_000);
    assert_eq!(
        ts_of(&app.history(user, &range).await),
        vec![4_000, 3_000, 2_000]
    );
    assert_eq!(
        ts_of(&app.history(user, &format!("{range}&limit=2")).await),
        vec![4_000, 3_000]
    );
    assert_eq!(ts_of(&app.history(user, "limit=1").await), vec![5_000]);
    let nothing = format!("from={}&to={}", base + 5_001, base + 9_000);
    assert!(app.history(user, &nothing).await.is_empty());
}

#[tokio::test]
async fn history_holds_only_the_users_own_events() {
    let app = spawn_app().await;
    let (alice, bob) = (fresh_user(), fresh_user());
    let mut events = events_for(alice, 3);
    events.extend(events_for(bob, 2));
    assert_eq!(app.post_events(&events).await.status(), 200);
    assert_eq!(app.history(alice, "").await.len(), 3);
    assert_eq!(app.history(bob, "").await.len(), 2);
    assert!(app.history(fresh_user(), "").await.is_empty());
}

#[tokio::test]
async fn history_spans_days_and_keeps_every_wire_field() {
    let app = spawn_app().await;
    let user = fresh_user();
    let day = 86_400_000;
    let now = now_ms();
    let mut full = event(user, now - 3 * day);
    full["duration_ms"] = 7_200_000.into();
    full["buffer_ms"] = 250.into();
    full["error_code"] = "E_DRM".into();
    full["cdn"] = "edge-7".into();
    full["app_version"] = "9.1.0".into();
    full["content_id"] = 99.into();
    full["kind"] = "error".into();
    let events = vec![
        event(user, now - 1_000),
        event(user, now - day),
        full.clone(),
    ];
    assert_eq!(app.post_events(&events).await.status(), 200);
    let stored = app.history(user, "").await;
    assert_eq!(stored.len(), 3);
    let oldest = &stored[2];
    for field in [
        "event_id",
        "session_id",
        "user_id",
        "content_id",
        "kind",
        "ts",
        "sent_at",
        "position_ms",
        "duration_ms",
        "bitrate_kbps",
        "buffer_ms",
        "error_code",
        "device",
        "cdn",
        "app_version",
        "country",
    ] {
        assert_eq!(oldest[field], full[field], "{field}");
    }
    assert!(oldest["received_at"].is_i64());
}

#[tokio::test]
async fn bad_history_parameters_get_400() {
    let app = spawn_app().await;
    for path in [
        "/v1/users/abc/history",
        "/v1/users/-4/history",
        "/v1/users/1/history?from=x",
        "/v1/users/1/history?from=10&to=5",
        "/v1/users/1/history?limit=0",
        "/v1/users/1/history?limit=100000",
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string(), "{path}");
    }
}
