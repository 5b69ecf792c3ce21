//! Keys and roles, rate limits, CORS and the beacon, over real HTTP.

use std::process::Command;
use std::time::Duration;

use platform::keys::Role;
use playpulse::{Overrides, Settings};
use serde_json::Value;

use crate::helpers::*;

async fn get(app: &TestApp, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

async fn post_events_with(app: &TestApp, path: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(path))
        .json(&events_for(fresh_user(), 2));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

async fn error_of(response: reqwest::Response) -> String {
    let body: Value = response.json().await.expect("a JSON error");
    body["error"].as_str().expect("an error text").to_owned()
}

#[tokio::test]
async fn keys_and_roles_decide_who_may_do_what() {
    let app = spawn_app_with(&[("PLAYPULSE_AUTH__ENABLED", "true")]).await;
    let ingest = create_key(&app, Role::Ingest, "players").await;
    let read = create_key(&app, Role::Read, "dashboard").await;
    let admin = create_key(&app, Role::Admin, "backend").await;
    let user = fresh_user();
    let history = format!("/v1/users/{user}/history");

    // Probes stay open.
    assert_eq!(get(&app, "/healthz", None).await.status(), 200);

    let missing = post_events_with(&app, "/v1/events", None).await;
    assert_eq!(missing.status(), 401);
    assert!(missing.headers().contains_key("www-authenticate"));
    assert!(error_of(missing).await.contains("API key"));
    let unknown = post_events_with(&app, "/v1/events", Some("pp_not-a-real-key")).await;
    assert_eq!(unknown.status(), 401);

    assert_eq!(
        post_events_with(&app, "/v1/events", Some(&ingest))
            .await
            .status(),
        200
    );
    assert_eq!(
        post_events_with(&app, &format!("/v1/events?key={ingest}"), None)
            .await
            .status(),
        200,
        "the beacon's ?key="
    );
    let forbidden = get(&app, &history, Some(&ingest)).await;
    assert_eq!(forbidden.status(), 403);
    assert!(error_of(forbidden).await.contains("read"));
    assert_eq!(
        get(&app, &format!("{history}?key={read}"), None)
            .await
            .status(),
        401,
        "?key= is only taken by POST /v1/events"
    );

    assert_eq!(get(&app, &history, Some(&read)).await.status(), 200);
    assert_eq!(
        post_events_with(&app, "/v1/events", Some(&read))
            .await
            .status(),
        403
    );
    assert_eq!(
        get(&app, "/v1/reports/mrr", Some(&read)).await.status(),
        403
    );

    assert_eq!(get(&app, &history, Some(&admin)).await.status(), 200);
    assert_eq!(
        get(&app, "/v1/reports/mrr", Some(&admin)).await.status(),
        200
    );
    assert_eq!(
        post_events_with(&app, "/v1/events", Some(&admin))
            .await
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_key_stops_working() {
    let app = spawn_app_with(&[("PLAYPULSE_AUTH__ENABLED", "true")]).await;
    let key = create_key(&app, Role::Read, "soon-revoked").await;
    assert_eq!(get(&app, "/v1/plans", Some(&key)).await.status(), 200);
    let keys = platform::open_api_keys(&settings_of(&app).platform())
        .await
        .unwrap();
    assert!(keys.revoke("soon-revoked").await.unwrap().is_some());
    let refused = eventually(Duration::from_secs(15), || async {
        get(&app, "/v1/plans", Some(&key)).await.status() == 401
    })
    .await;
    assert!(refused, "a revoked key still works");
    app.stop().await;
}

#[tokio::test]
async fn a_client_address_past_its_limit_gets_429_with_when_to_retry() {
    let app = spawn_app_with(&[(
        "PLAYPULSE_RATE_LIMITS__PER_CLIENT_IP",
        "{ per_second = 1, burst = 5 }",
    )])
    .await;
    let mut limited = None;
    for _ in 0..20 {
        let response = post_events_with(&app, "/v1/events", None).await;
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), 200);
    }
    let limited = limited.expect("a flood is limited");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(limited.headers()["ratelimit-limit"], "5");
    assert_eq!(limited.headers()["ratelimit-remaining"], "0");
    assert!(error_of(limited).await.contains("client address"));
    // Probes are not limited.
    assert_eq!(get(&app, "/healthz", None).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_key_past_its_role_limit_gets_429() {
    let app = spawn_app_with(&[
        ("PLAYPULSE_AUTH__ENABLED", "true"),
        (
            "PLAYPULSE_RATE_LIMITS__READ",
            "{ per_second = 1, burst = 2 }",
        ),
    ])
    .await;
    let read = create_key(&app, Role::Read, "greedy").await;
    let admin = create_key(&app, Role::Admin, "backend").await;
    let statuses: Vec<u16> = futures::future::join_all(
        (0..5).map(|_| async { get(&app, "/v1/plans", Some(&read)).await.status().as_u16() }),
    )
    .await;
    assert!(statuses.contains(&429), "{statuses:?}");
    let limited = get(&app, "/v1/plans", Some(&read)).await;
    assert_eq!(limited.status(), 429);
    assert!(error_of(limited).await.contains("API key"));
    // Another key, another bucket.
    assert_eq!(get(&app, "/v1/plans", Some(&admin)).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn browser_players_get_cors_preflights_cached_and_beacons_read_as_json() {
    let origin = "https://player.example.com";
    let app = spawn_app_with(&[(
        "PLAYPULSE_CORS__ALLOWED_ORIGINS",
        "[\"https://player.example.com\"]",
    )])
    .await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/v1/events"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], origin);
    assert_eq!(preflight.headers()["access-control-max-age"], "7200");

    let elsewhere = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/v1/events"))
        .header("origin", "https://evil.example.net")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(!elsewhere
        .headers()
        .contains_key("access-control-allow-origin"));

    let user = fresh_user();
    let beacon = |origin: Option<&str>| {
        let mut request = app
            .client
            .post(app.url("/v1/events"))
            .header("content-type", "text/plain;charset=UTF-8")
            .body(serde_json::to_vec(&events_for(user, 3)).unwrap());
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let sent = beacon(Some(origin)).await.unwrap();
    assert_eq!(sent.status(), 200);
    assert_eq!(sent.headers()["access-control-allow-origin"], origin);
    assert_eq!(
        beacon(Some("https://evil.example.net"))
            .await
            .unwrap()
            .status(),
        415
    );
    assert_eq!(beacon(None).await.unwrap().status(), 415);
    assert_eq!(app.history(user, "limit=10").await.len(), 3);
    app.stop().await;
}

#[test]
fn without_auth_the_server_refuses_to_listen_beyond_loopback() {
    let remote = Overrides {
        listen: Some("0.0.0.0:0".parse().unwrap()),
        data_dir: None,
    };
    let error = Settings::load(None, std::iter::empty(), &remote)
        .expect_err("anonymous and remote is refused");
    assert!(error.to_string().contains("auth"), "{error}");
    let allowed = [(
        "PLAYPULSE_AUTH__ALLOW_ANONYMOUS_REMOTE".to_owned(),
        "true".to_owned(),
    )];
    assert!(Settings::load(None, allowed, &remote).is_ok());
    let with_auth = [("PLAYPULSE_AUTH__ENABLED".to_owned(), "true".to_owned())];
    assert!(Settings::load(None, with_auth, &remote).is_ok());
}

#[test]
fn the_keys_command_prints_a_key_once_lists_and_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let playpulse = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_playpulse"))
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .expect("playpulse runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, key, _) = playpulse(&["keys", "create", "--role", "ingest", "--name", "players"]);
    assert!(ok);
    let key = key.trim();
    assert!(key.starts_with("pp_") && key.len() > 40, "{key}");
    let (ok, list, _) = playpulse(&["keys", "list"]);
    assert!(ok);
    assert!(
        list.contains("players") && list.contains("ingest"),
        "{list}"
    );
    assert!(!list.contains(key), "the list shows a secret");
    let (ok, _, error) = playpulse(&["keys", "create", "--role", "nobody", "--name", "x"]);
    assert!(!ok && error.contains("nobody"), "{error}");
    let (ok, _, _) = playpulse(&["keys", "revoke", "players"]);
    assert!(ok);
    let (ok, _, _) = playpulse(&["keys", "create", "--role", "read", "--name", "dashboard"]);
    assert!(ok);
    let (ok, _, _) = playpulse(&["keys", "revoke", "--name", "dashboard"]);
    assert!(ok, "revoke also takes --name");
    let (ok, _, error) = playpulse(&["keys", "revoke", "players"]);
    assert!(!ok && error.contains("players"), "{error}");
    let (_, list, _) = playpulse(&["keys", "list"]);
    assert!(!list.lines().nth(1).unwrap_or("").ends_with(" -"), "{list}");
}

#[tokio::test]
async fn with_playback_tokens_only_events_carrying_their_sessions_token_are_stored() {
    let app = spawn_app_with(&[
        ("PLAYPULSE_AUTH__ENABLED", "true"),
        ("PLAYPULSE_AUTH__PLAYBACK_TOKENS", "true"),
        (
            "PLAYPULSE_AUTH__PLAYBACK_TOKEN_SECRET",
            "a test secret of at least thirty-two bytes",
        ),
    ])
    .await;
    let admin = create_key(&app, Role::Admin, "backend").await;
    let ingest = create_key(&app, Role::Ingest, "players").await;
    let read = create_key(&app, Role::Read, "history").await;
    let origin = "https://player.example.com";
    let user = fresh_user();
    let template = events_for(user, 1).remove(0);
    let session = template["session_id"].as_str().unwrap().to_owned();
    let content = template["content_id"].as_u64().unwrap();

    let ask = |key: &str| {
        app.client
            .post(app.url("/v1/playback-sessions"))
            .bearer_auth(key)
            .json(&serde_json::json!({
                "session_id": session, "user_id": user, "content_id": content, "origin": origin
            }))
            .send()
    };
    assert_eq!(
        ask(&ingest).await.unwrap().status(),
        403,
        "issuing is for admins"
    );
    let issued = ask(&admin).await.unwrap();
    assert_eq!(issued.status(), 201);
    let issued: Value = issued.json().await.unwrap();
    let token = issued["playback_token"].as_str().unwrap().to_owned();

    let with = |token: Option<&str>, change: &dyn Fn(&mut Value)| {
        let mut event = events_for(user, 1).remove(0);
        if let Some(token) = token {
            event["playback_token"] = Value::from(token);
        }
        change(&mut event);
        event
    };
    let mut forged = token.clone();
    forged.insert(5, 'x');
    let events = vec![
        with(Some(&token), &|_| {}),
        with(None, &|_| {}),
        with(Some(&forged), &|_| {}),
        with(Some(&token), &|event| {
            event["user_id"] = Value::from(user + 1)
        }),
        with(Some(&token), &|event| {
            event["session_id"] = Value::from(uuid::Uuid::new_v4().to_string())
        }),
        with(Some(&token), &|_| {}),
    ];
    let post = |origin: &str| {
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(&ingest)
            .header("origin", origin)
            .json(&events)
            .send()
    };
    let ack: Value = post(origin).await.unwrap().json().await.unwrap();
    assert_eq!(ack["accepted"], 2, "{ack}");
    let reasons: Vec<&str> = ack["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rejected| rejected["error"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 4);
    for (reason, expected) in
        reasons
            .iter()
            .zip(["missing", "not a token", "another user", "another session"])
    {
        assert!(
            reason.contains("playback_token") && reason.contains(expected),
            "{reason}"
        );
    }
    // From another origin, the token does not work at all.
    let ack: Value = post("https://evil.example.net")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ack["accepted"], 0, "{ack}");

    let stored = app
        .client
        .get(app.url(&format!("/v1/users/{user}/history?limit=100")))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    let stored: Vec<Value> = stored.json().await.unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored
        .iter()
        .all(|event| event.get("playback_token").is_none()));

    let metrics = get(&app, "/metrics", Some(&read))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("playpulse_events_rejected_total{reason=\"playback_token\"} 10"),
        "{metrics}"
    );
    app.stop().await;
}
