//! The operator dashboard's routes over real HTTP: the page and its assets, the login cookie and
//! what it may (GET) and may not (POST) open, and the numbers it reads. The page itself, its
//! script and its tiles against `/metrics`, are tested in headless Chromium
//! (`playpulse/tests/browser`).

use platform::keys::Role;
use serde_json::Value;

use crate::helpers::*;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn without_auth_the_page_and_its_assets_are_served_whole() {
    let app = spawn_app().await;
    let page = app.client.get(app.url("/ops")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    for needed in [
        "data-tile=\"accepted_rate\"",
        "data-tile=\"ack_p99\"",
        "data-port=\"sink\"",
        "data-port=\"graph\"",
        "data-port=\"analytics\"",
        "/ops/assets/uPlot.iife.min.js",
        "/ops/assets/ops.js",
    ] {
        assert!(html.contains(needed), "the page has {needed}");
    }
    // Nothing is fetched from elsewhere.
    assert!(!html.contains("http://") && !html.contains("https://"));
    // Auth is off: no login form to go to.
    let login = no_redirects()
        .get(app.url("/ops/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    assert_eq!(login.headers()["location"], "/ops");

    for (asset, kind) in [
        ("uPlot.iife.min.js", "text/javascript"),
        ("uPlot.min.css", "text/css"),
        ("ops.js", "text/javascript"),
        ("ops.css", "text/css"),
    ] {
        let answer = app
            .client
            .get(app.url(&format!("/ops/assets/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{asset}");
        assert!(answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
        assert!(!answer.bytes().await.unwrap().is_empty());
    }
    let missing = app
        .client
        .get(app.url("/ops/assets/../Cargo.toml"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let missing = app
        .client
        .get(app.url("/ops/assets/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert!(body["error"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn readiness_and_metrics_cover_every_port_the_page_shows() {
    let app = spawn_app().await;
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["sink"], true);
    assert_eq!(ready["cache"], true);
    for port in ["commands", "graph", "search", "analytics"] {
        assert_eq!(ready[port], "ok", "{port} in {ready}");
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
    for name in [
        "playpulse_events_accepted_total",
        "playpulse_recommendations_last_refresh_timestamp_seconds",
        "playpulse_outbox_published_total",
        "playpulse_analytics_events_total",
    ] {
        assert!(
            metrics.lines().any(|line| line.starts_with(name)),
            "{name} in /metrics"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn with_auth_an_admin_logs_in_once_and_the_cookie_only_reads() {
    let app = spawn_app_with(&[("PLAYPULSE_AUTH__ENABLED", "true")]).await;
    let admin = create_key(&app, Role::Admin, "operator").await;
    let read = create_key(&app, Role::Read, "grafana").await;
    let client = no_redirects();

    // A person without a key is sent to the form; a script gets the usual 401.
    let page = client.get(app.url("/ops")).send().await.unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/ops/login");
    let form = client.get(app.url("/ops/login")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert!(form.text().await.unwrap().contains("name=\"key\""));
    assert_eq!(
        client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // The static files need no key.
    assert_eq!(
        client
            .get(app.url("/ops/assets/ops.js"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A bearer key opens the page directly.
    assert_eq!(
        client
            .get(app.url("/ops"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Wrong keys get the form again, with the reason.
    for (key, status, reason) in [
        ("pp_nope", 401, "Unknown or revoked"),
        (read.as_str(), 403, "needs role `admin`"),
    ] {
        let refused = client
            .post(app.url("/ops/login"))
            .form(&[("key", key)])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), status, "{key}");
        assert!(refused.headers().get("set-cookie").is_none());
        let page = refused.text().await.unwrap();
        assert!(page.contains(reason), "{page}");
    }

    let login = client
        .post(app.url("/ops/login"))
        .form(&[("key", admin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    assert_eq!(login.headers()["location"], "/ops");
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_owned();

    // The cookie reads what the page reads.
    for path in ["/ops", "/metrics", "/v1/analytics/live", "/v1/trending"] {
        let answer = client
            .get(app.url(path))
            .header("cookie", &pair)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }
    // It never stands for a key on a command: a page elsewhere cannot post as the operator.
    let command = client
        .post(app.url("/v1/plans"))
        .header("cookie", &pair)
        .json(
            &serde_json::json!({"name": "Sneaky", "price_cents": 1, "currency": "EUR",
            "period": "monthly", "available": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(command.status(), 401);

    let logout = client
        .post(app.url("/ops/logout"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 303);
    assert!(logout.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    app.stop().await;
}

#[tokio::test]
async fn a_hostile_login_gets_a_clear_answer() {
    let app = spawn_app_with(&[("PLAYPULSE_AUTH__ENABLED", "true")]).await;
    let client = no_redirects();
    let huge = "k".repeat(64 << 10);
    for body in [
        "".to_owned(),
        "key=%ZZ".to_owned(),
        "nokey=1".to_owned(),
        format!("key={huge}"),
        "key=pp_%0d%0aSet-Cookie:%20x=y".to_owned(),
    ] {
        let answer = client
            .post(app.url("/ops/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        assert!(
            [400, 401, 413, 415, 422].contains(&status),
            "{status} for {}",
            &body[..body.len().min(40)]
        );
        assert!(answer.headers().get("set-cookie").is_none());
    }
    app.stop().await;
}
