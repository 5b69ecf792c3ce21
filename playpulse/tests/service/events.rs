use std::io::Write;

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn a_good_batch_is_acknowledged_and_stored() {
    let app = spawn_app().await;
    let user = fresh_user();
    let events = events_for(user, 5);
    let response = app.post_events(&events).await;
    assert_eq!(response.status(), 200);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(ack, json!({"accepted": 5, "rejected": []}));
    let stored = app.history(user, "").await;
    assert_eq!(ids(&stored), ids(&events), "newest first, as sent");
    assert!(stored[0]["received_at"].as_i64().unwrap() >= events[0]["sent_at"].as_i64().unwrap());
    assert_eq!(stored[0]["device"], "tv");
    assert_eq!(stored[0]["kind"], "heartbeat");
}

#[tokio::test]
async fn in_a_mixed_batch_bad_events_are_rejected_alone_and_good_ones_stored() {
    let app = spawn_app().await;
    let user = fresh_user();
    let good = events_for(user, 3);
    let mut missing_ts = event(user, now_ms());
    missing_ts.as_object_mut().unwrap().remove("ts");
    let bad_kind = {
        let mut event = event(user, now_ms());
        event["kind"] = json!("rewind");
        event
    };
    let body = vec![
        good[0].clone(),
        missing_ts,
        good[1].clone(),
        bad_kind,
        json!(17),
        good[2].clone(),
    ];
    let response = app.post_events(&body).await;
    assert_eq!(response.status(), 200);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(ack["accepted"], 3);
    let rejected = ack["rejected"].as_array().unwrap();
    let indexes: Vec<i64> = rejected
        .iter()
        .map(|r| r["index"].as_i64().unwrap())
        .collect();
    assert_eq!(indexes, vec![1, 3, 4]);
    assert!(rejected[0]["error"].as_str().unwrap().contains("`ts`"));
    assert!(rejected[1]["error"].as_str().unwrap().contains("kind"));
    assert!(rejected[2]["error"].as_str().unwrap().contains("object"));
    assert_eq!(app.history(user, "").await.len(), 3);
}

#[tokio::test]
async fn ndjson_bodies_are_accepted() {
    let app = spawn_app().await;
    let user = fresh_user();
    let events = events_for(user, 4);
    let body: String = events.iter().map(|event| format!("{event}\n")).collect();
    let response = app
        .post_body(
            body.into_bytes(),
            &[("content-type", "application/x-ndjson")],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["accepted"], 4);
    assert_eq!(app.history(user, "").await.len(), 4);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn gzip_and_zstd_bodies_are_accepted() {
    let app = spawn_app().await;
    let user = fresh_user();
    let first = events_for(user, 3);
    let gz = gzip(&serde_json::to_vec(&first).unwrap());
    let response = app
        .post_body(
            gz,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);

    let second: Vec<Value> = (0..3)
        .map(|i| event(user, now_ms() - 100_000 - i))
        .collect();
    let ndjson: String = second.iter().map(|event| format!("{event}\n")).collect();
    let zst = zstd::bulk::compress(ndjson.as_bytes(), 3).unwrap();
    let response = app
        .post_body(
            zst,
            &[
                ("content-type", "application/x-ndjson"),
                ("content-encoding", "zstd"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.history(user, "").await.len(), 6);
}

async fn assert_refused(app: &TestApp, body: Vec<u8>, headers: &[(&str, &str)], status: u16) {
    let response = app.post_body(body, headers).await;
    assert_eq!(response.status(), status);
    let error: Value = response.json().await.unwrap();
    assert!(
        !error["error"].as_str().unwrap().is_empty(),
        "a refusal says why"
    );
}

#[tokio::test]
async fn bodies_that_are_not_json_get_400_and_nothing_is_stored() {
    let app = spawn_app().await;
    let user = fresh_user();
    let good = serde_json::to_string(&events_for(user, 2)).unwrap();
    let json = [("content-type", "application/json")];
    let truncated = good.as_bytes()[..good.len() - 10].to_vec();
    assert_refused(&app, truncated, &json, 400).await;
    assert_refused(&app, b"\x00\x01garbage".to_vec(), &json, 400).await;
    assert_refused(&app, b"".to_vec(), &json, 400).await;
    assert_refused(&app, br#"{"not":"an array"}"#.to_vec(), &json, 400).await;
    // Unclosed nesting is not JSON; closed, it is valid JSON and rejects its event alone.
    assert_refused(&app, "[".repeat(100_000).into_bytes(), &json, 400).await;
    let nested = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
    let response = app.post_body(nested.into_bytes(), &json).await;
    assert_eq!(response.status(), 200);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(ack["accepted"], 0);
    assert_eq!(ack["rejected"][0]["index"], 0);
    let ndjson_with_a_broken_line = format!("{}\n{{\"user_id\": \n", events_for(user, 1)[0]);
    assert_refused(
        &app,
        ndjson_with_a_broken_line.into_bytes(),
        &[("content-type", "application/x-ndjson")],
        400,
    )
    .await;
    assert_refused(
        &app,
        b"not gzip".to_vec(),
        &[("content-encoding", "gzip")],
        400,
    )
    .await;
    assert!(app.history(user, "").await.is_empty());
}

#[tokio::test]
async fn oversized_bodies_and_too_many_events_get_413_and_nothing_is_stored() {
    let app = spawn_app().await;
    let user = fresh_user();
    let json = [("content-type", "application/json")];

    let mut big = serde_json::to_string(&events_for(user, 1)).unwrap();
    big.insert_str(1, &format!("{{\"pad\":\"{}\"}},", "x".repeat(9 << 20)));
    assert_refused(&app, big.into_bytes(), &json, 413).await;

    let many: Vec<Value> = (0..10_001).map(|i| event(user, now_ms() - i)).collect();
    assert_refused(&app, serde_json::to_vec(&many).unwrap(), &json, 413).await;
    assert!(app.history(user, "").await.is_empty());
}

#[tokio::test]
async fn a_decompression_bomb_is_refused_without_inflating_it() {
    let app = spawn_app().await;
    let user = fresh_user();
    // 1 GiB of spaces, then real events: a few hundred KiB compressed.
    let mut plain = serde_json::to_string(&events_for(user, 1))
        .unwrap()
        .into_bytes();
    plain.splice(1..1, std::iter::repeat_n(b' ', 1 << 30));
    let bomb = zstd::bulk::compress(&plain, 3).unwrap();
    drop(plain);
    assert!(bomb.len() < 1 << 20);
    let started = std::time::Instant::now();
    assert_refused(
        &app,
        bomb,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "zstd"),
        ],
        413,
    )
    .await;
    // Inflating a whole GiB would take seconds and a GiB of memory; stopping at 8 MiB does not.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    let gz_bomb = gzip(&vec![b' '; 64 << 20]);
    assert_refused(&app, gz_bomb, &[("content-encoding", "gzip")], 413).await;
    assert!(app.history(user, "").await.is_empty());
}

#[tokio::test]
async fn unknown_content_types_and_encodings_get_415() {
    let app = spawn_app().await;
    let user = fresh_user();
    let body = serde_json::to_vec(&events_for(user, 1)).unwrap();
    assert_refused(&app, body.clone(), &[("content-type", "text/plain")], 415).await;
    assert_refused(
        &app,
        body.clone(),
        &[("content-type", "application/x-www-form-urlencoded")],
        415,
    )
    .await;
    assert_refused(
        &app,
        body,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "br"),
        ],
        415,
    )
    .await;
    assert!(app.history(user, "").await.is_empty());
}

#[tokio::test]
async fn duplicate_event_ids_are_stored_once() {
    let app = spawn_app().await;
    let user = fresh_user();
    let events = events_for(user, 3);
    let twice_in_one_request: Vec<Value> = events.iter().chain(events.iter()).cloned().collect();
    let response = app.post_events(&twice_in_one_request).await;
    assert_eq!(response.status(), 200);
    // A client retry of the same request, and another retry of one event.
    assert_eq!(app.post_events(&events).await.status(), 200);
    assert_eq!(app.post_events(&events[1..2]).await.status(), 200);
    let stored = app.history(user, "").await;
    assert_eq!(ids(&stored), ids(&events));
}

#[tokio::test]
async fn an_overloaded_server_answers_503_with_retry_after_and_recovers() {
    // A 1 MiB admission budget and a 1 ms deadline: concurrent large requests cannot all fit.
    let app = spawn_app_with(&[
        ("PLAYPULSE_SERVER__MAX_BODY_BYTES", "1048576"),
        ("PLAYPULSE_PIPELINE__MAX_IN_FLIGHT_BYTES", "1048576"),
        ("PLAYPULSE_SERVER__REQUEST_TIMEOUT", "1ms"),
    ])
    .await;
    let body = serde_json::to_vec(
        &(0..3_000)
            .map(|i| event(fresh_user(), now_ms() - i))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(body.len() > 512 << 10 && body.len() < 1 << 20);
    let requests =
        (0..16).map(|_| app.post_body(body.clone(), &[("content-type", "application/json")]));
    let responses = futures::future::join_all(requests).await;
    let overloaded: Vec<_> = responses
        .iter()
        .filter(|response| response.status() == 503)
        .collect();
    assert!(!overloaded.is_empty(), "some requests must be shed");
    assert!(overloaded
        .iter()
        .all(|response| response.headers().contains_key("retry-after")));
    for response in &responses {
        assert!(
            [200, 503].contains(&response.status().as_u16()),
            "{}",
            response.status()
        );
    }
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("playpulse_http_requests_total{status=\"503\"}"));
}

#[tokio::test]
async fn events_stored_by_one_server_are_there_after_a_restart() {
    let app = spawn_app().await;
    let user = fresh_user();
    let events = events_for(user, 10);
    assert_eq!(app.post_events(&events).await.status(), 200);
    let dir = app.stop().await;
    let app = spawn_app_in(dir, &[]).await;
    assert_eq!(ids(&app.history(user, "").await), ids(&events));
    // And writes go on after the restart.
    let more = vec![event(user, now_ms())];
    assert_eq!(app.post_events(&more).await.status(), 200);
    assert_eq!(app.history(user, "").await.len(), 11);
}
