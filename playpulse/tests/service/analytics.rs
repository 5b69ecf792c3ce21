//! The analytics routes on the embedded default: QoE rollups, the live view, trending, live
//! sessions and continue-watching, fed by events posted over HTTP.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

fn qoe_event(user: u64, session: &str, title: u64, kind: &str, ts: i64, extra: Value) -> Value {
    let mut event = json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "session_id": session,
        "user_id": user,
        "content_id": title,
        "kind": kind,
        "ts": ts,
        "position_ms": 60_000,
        "device": "tv",
        "cdn": "edge-a",
        "country": "SE",
    });
    if let (Some(event), Some(extra)) = (event.as_object_mut(), extra.as_object()) {
        event.extend(extra.clone());
    }
    event
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn posted_events_show_in_qoe_live_trending_sessions_and_continue_watching() {
    let app = spawn_app().await;
    let (alice, bob) = (fresh_user(), fresh_user());
    let title = 900_000 + alice % 1_000;
    let now = now_ms();
    let (s1, s2) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let events = vec![
        qoe_event(
            alice,
            &s1,
            title,
            "start",
            now - 20_000,
            json!({"startup_ms": 1_200}),
        ),
        qoe_event(
            alice,
            &s1,
            title,
            "heartbeat",
            now - 10_000,
            json!({"played_ms": 10_000, "bitrate_kbps": 4_000}),
        ),
        qoe_event(
            alice,
            &s1,
            title,
            "buffer_start",
            now - 9_000,
            json!({"played_ms": 1_000, "bitrate_kbps": 4_000}),
        ),
        qoe_event(
            alice,
            &s1,
            title,
            "buffer_end",
            now - 8_000,
            json!({"buffer_ms": 1_000, "position_ms": 71_000}),
        ),
        qoe_event(
            bob,
            &s2,
            title,
            "stop",
            now - 5_000,
            json!({"before_start": true}),
        ),
    ];
    let answer = app.post_events(&events).await;
    assert_eq!(answer.status(), 200);

    let from = now - 60_000;
    let path = format!("/v1/analytics/qoe?from={from}&to={now}&by=title&title={title}");
    let rolled_up = eventually(Duration::from_secs(20), || async {
        let (status, body) = get(&app, &path).await;
        status == 200 && body["totals"]["events"] == 5
    })
    .await;
    let (_, qoe) = get(&app, &path).await;
    assert!(rolled_up, "{qoe}");
    let totals = &qoe["totals"];
    assert_eq!(totals["views"], 2);
    assert_eq!(totals["unique_viewers"], 2);
    assert_eq!(totals["exits_before_start"], 1);
    assert_eq!(totals["playing_time_ms"], 11_000);
    assert_eq!(totals["rebuffers"], 1);
    let rebuffering = totals["rebuffer_percentage"].as_f64().unwrap();
    assert!((rebuffering - 100.0 / 12.0).abs() < 1e-9, "{rebuffering}");
    let startup = totals["startup_time_p50_ms"].as_f64().unwrap();
    assert!((startup - 1_200.0).abs() <= 12.0, "{startup}");
    assert_eq!(qoe["series"][0]["key"], title.to_string());

    let title_text = title.to_string();
    let (status, live) = get(&app, "/v1/analytics/live").await;
    assert_eq!(status, 200, "{live}");
    assert!(live["concurrent_viewers"].as_u64().unwrap() >= 1, "{live}");
    assert!(live["lag_ms"].as_i64().is_some(), "{live}");
    assert!(live["worst"]["title"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["value"] == title_text.as_str()));

    let week = "/v1/trending?country=se&window=week&limit=100";
    let trended = eventually(Duration::from_secs(20), || async {
        let (status, body) = get(&app, week).await;
        status == 200
            && body["titles"]
                .as_array()
                .is_some_and(|titles| titles.iter().any(|t| t["title"] == title))
    })
    .await;
    let (_, trending) = get(&app, week).await;
    assert!(trended, "{trending}");
    assert_eq!(trending["country"], "SE");
    let (status, now_list) = get(&app, "/v1/trending?country=SE").await;
    assert_eq!(status, 200);
    assert_eq!(now_list["window"], "now");

    let (status, sessions) = get(&app, &format!("/v1/users/{alice}/sessions")).await;
    assert_eq!(status, 200);
    assert_eq!(sessions[0]["session_id"], s1.as_str(), "{sessions}");
    assert_eq!(sessions[0]["state"], "playing");
    assert_eq!(sessions[0]["position_ms"], 71_000);
    let (_, bob_sessions) = get(&app, &format!("/v1/users/{bob}/sessions")).await;
    assert_eq!(
        bob_sessions,
        json!([]),
        "an exit before start is not a live session"
    );

    let (status, resume) = get(&app, &format!("/v1/users/{alice}/continue-watching")).await;
    assert_eq!(status, 200);
    assert_eq!(resume[0]["title"], title);
    assert_eq!(resume[0]["position_ms"], 71_000);

    // A restart loses the in-process sessions; continue-watching comes back from the history.
    let dir = app.stop().await;
    let app = spawn_app_in(dir, &[]).await;
    let (status, resume) = get(&app, &format!("/v1/users/{alice}/continue-watching")).await;
    assert_eq!(status, 200);
    assert_eq!(resume[0]["title"], title, "{resume}");
    assert_eq!(resume[0]["position_ms"], 71_000);
    // And the rollups were kept.
    let (_, qoe) = get(&app, &path).await;
    assert_eq!(qoe["totals"]["events"], 5, "{qoe}");
}

#[tokio::test]
async fn bad_analytics_parameters_are_refused_with_a_reason() {
    let app = spawn_app().await;
    for path in [
        "/v1/analytics/qoe?from=abc",
        "/v1/analytics/qoe?from=10&to=5",
        "/v1/analytics/qoe?by=planet",
        "/v1/analytics/qoe?resolution=second",
        "/v1/analytics/qoe?from=0&to=999999999999&resolution=minute",
        "/v1/analytics/qoe?country=XX",
        "/v1/analytics/qoe?title=abc",
        "/v1/analytics/qoe?limit=0",
        "/v1/trending?window=month",
        "/v1/trending?country=1234",
        "/v1/trending?limit=100000",
        "/v1/users/abc/sessions",
        "/v1/users/-1/continue-watching",
    ] {
        let (status, body) = get(&app, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
    }
    let (status, body) = get(&app, "/v1/analytics/qoe").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["totals"]["views"], 0);
}

#[tokio::test]
async fn qoe_fields_on_the_wrong_kind_reject_only_their_event() {
    let app = spawn_app().await;
    let user = fresh_user();
    let session = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    let events = vec![
        qoe_event(
            user,
            &session,
            5,
            "heartbeat",
            now,
            json!({"startup_ms": 10}),
        ),
        qoe_event(user, &session, 5, "start", now, json!({"startup_ms": 10})),
    ];
    let answer: Value = app.post_events(&events).await.json().await.unwrap();
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(answer["rejected"][0]["index"], 0);
    assert!(answer["rejected"][0]["error"]
        .as_str()
        .unwrap()
        .contains("startup_ms"));
}
