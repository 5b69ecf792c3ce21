use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{eventually, Backend};

both_backends!(
    bad_input_gets_a_400_naming_the_field,
    the_whole_flow_works_over_http_with_idempotency_and_cache_headers,
);

struct Server {
    addr: SocketAddr,
    client: reqwest::Client,
    _platform: platform::Platform,
}

impl Server {
    async fn start(backend: &Backend) -> Server {
        let platform = platform::Platform::assemble(
            &backend.settings,
            backend.store.clone(),
            backend.read_model.clone(),
            backend.cache.clone(),
            backend.gateway.clone(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = platform.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Server {
            addr,
            client: reqwest::Client::new(),
            _platform: platform,
        }
    }

    async fn post(&self, path: &str, body: Value, key: Option<&str>) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("http://{}{path}", self.addr))
            .json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Option<String>, Value) {
        let response = self
            .client
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let cache = response
            .headers()
            .get("x-cache")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, cache, response.json().await.unwrap_or(Value::Null))
    }
}

async fn bad_input_gets_a_400_naming_the_field(backend: Backend) {
    let server = Server::start(&backend).await;
    let user = json!({"email": "ada@example.com", "name": "Ada", "country": "FR"});
    let plan = json!({"name": "Basic", "price_cents": 999, "currency": "EUR", "period": "monthly", "available": true});
    let with = |base: &Value, field: &str, value: Value| {
        let mut body = base.clone();
        match value {
            Value::Null => {
                body.as_object_mut().unwrap().remove(field);
            }
            value => {
                body[field] = value;
            }
        }
        body
    };
    let cases = [
        (
            "/v1/users",
            with(&user, "email", json!("not-an-email")),
            "email",
        ),
        ("/v1/users", with(&user, "email", Value::Null), "email"),
        ("/v1/users", with(&user, "country", json!("XX")), "country"),
        ("/v1/users", with(&user, "name", json!(42)), "name"),
        (
            "/v1/plans",
            with(&plan, "price_cents", json!(-1)),
            "price_cents",
        ),
        (
            "/v1/plans",
            with(&plan, "price_cents", json!("ten")),
            "price_cents",
        ),
        (
            "/v1/plans",
            with(&plan, "period", json!("weekly")),
            "period",
        ),
        (
            "/v1/plans",
            with(&plan, "currency", json!("EURO")),
            "currency",
        ),
        (
            "/v1/plans",
            with(&plan, "available", Value::Null),
            "available",
        ),
    ];
    for (path, body, field) in cases {
        let (status, error) = server.post(path, body.clone(), None).await;
        assert_eq!(status, 400, "{path} {body}");
        assert_eq!(error["field"], field, "{path} {body}: {error}");
    }
    let subscription = json!({"user_id": 1, "plan_id": 1, "payment_method": {"token": "tok_visa"}});
    let (status, error) = server
        .post("/v1/subscriptions", subscription.clone(), None)
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("Idempotency-Key"))
    );
    let (status, error) = server
        .post(
            "/v1/subscriptions",
            json!({"user_id": 1, "plan_id": 1}),
            Some("k"),
        )
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("payment_method"))
    );
    let (status, error) = server
        .post(
            "/v1/subscriptions",
            json!({"user_id": "x", "plan_id": 1, "payment_method": {"token": "t"}}),
            Some("k"),
        )
        .await;
    assert_eq!((status, error["field"].as_str()), (400, Some("user_id")));
    let (status, _, error) = server.get("/v1/users/abc").await;
    assert_eq!((status, error["field"].as_str()), (400, Some("user_id")));
    let (status, _, error) = server.get("/v1/reports/churn?from=yesterday").await;
    assert_eq!((status, error["field"].as_str()), (400, Some("from")));
}

async fn the_whole_flow_works_over_http_with_idempotency_and_cache_headers(backend: Backend) {
    let server = Server::start(&backend).await;
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let (status, user) = server
        .post(
            "/v1/users",
            json!({"email": email, "name": "Ada", "country": "fr"}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let (status, _) = server
        .post(
            "/v1/users",
            json!({"email": email, "name": "Ada", "country": "FR"}),
            None,
        )
        .await;
    assert_eq!(status, 409, "an email is one user");
    let (status, plan) = server
        .post("/v1/plans", json!({"name": "Premium", "price_cents": 1299, "currency": "eur", "period": "monthly", "available": true}), None)
        .await;
    assert_eq!((status, plan["currency"].as_str()), (201, Some("EUR")));
    let body = json!({"user_id": user["id"], "plan_id": plan["id"], "payment_method": {"token": "tok_visa"}});
    let key = uuid::Uuid::new_v4().to_string();
    let (status, first) = server
        .post("/v1/subscriptions", body.clone(), Some(&key))
        .await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = server
        .post("/v1/subscriptions", body.clone(), Some(&key))
        .await;
    assert_eq!(
        (status, &again),
        (201, &first),
        "same key, same body: same response"
    );
    let mut other = body.clone();
    other["payment_method"]["token"] = json!("tok_mastercard");
    let (status, _) = server.post("/v1/subscriptions", other, Some(&key)).await;
    assert_eq!(status, 422);
    let declined = json!({"user_id": user["id"], "plan_id": plan["id"], "payment_method": {"token": "tok_chargeDeclined"}});
    let (status, _) = server
        .post("/v1/subscriptions", declined, Some("declined-key"))
        .await;
    assert_eq!(status, 402);
    let ghost = json!({"user_id": i64::MAX, "plan_id": plan["id"], "payment_method": {"token": "tok_visa"}});
    let (status, _) = server
        .post("/v1/subscriptions", ghost, Some("ghost-key"))
        .await;
    assert_eq!(status, 404);
    assert_eq!(backend.gateway.charges_made(), 1);

    let profile_path = format!("/v1/users/{}", user["id"]);
    eventually("the profile shows the subscription", || async {
        let (status, _, profile) = server.get(&profile_path).await;
        status == 200 && profile["subscription_active"] == json!(true)
    })
    .await;
    let (_, cache, profile) = server.get(&profile_path).await;
    assert_eq!(cache.as_deref(), Some("hit"));
    assert_eq!(profile["plan_id"], plan["id"]);

    let (status, subscriptions) = server
        .get(&format!("/v1/users/{}/subscriptions", user["id"]))
        .await
        .into_status_body();
    assert_eq!(
        (status, subscriptions.as_array().map(Vec::len)),
        (200, Some(1))
    );
    let (status, payments) = server
        .get(&format!("/v1/users/{}/payments", user["id"]))
        .await
        .into_status_body();
    assert_eq!(
        (status, payments[0]["amount_cents"].as_i64()),
        (200, Some(1299))
    );

    let recommendations = format!("/v1/users/{}/recommendations", user["id"]);
    let (status, cache, _) = server.get(&recommendations).await;
    assert_eq!((status, cache.as_deref()), (200, Some("miss")));
    let (_, cache, _) = server.get(&recommendations).await;
    assert_eq!(cache.as_deref(), Some("hit"));

    let (status, _, mrr) = server.get("/v1/reports/mrr").await;
    assert_eq!(status, 200);
    assert!(mrr["by_currency"]
        .as_array()
        .unwrap()
        .iter()
        .any(|row| row["currency"] == "EUR"));
    let (status, _, _) = server
        .get("/v1/reports/active-subscribers?at=2030-01-01T00:00:00Z")
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = server
        .get("/v1/reports/churn?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z")
        .await;
    assert_eq!(status, 200);

    let cancel = format!("/v1/subscriptions/{}/cancel", first["id"]);
    let (status, cancelled) = server.post(&cancel, json!({}), None).await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled"))
    );
    eventually("the profile shows the cancellation", || async {
        let (_, _, profile) = server.get(&profile_path).await;
        profile["subscription_active"] == json!(false)
    })
    .await;
}

trait StatusBody {
    fn into_status_body(self) -> (u16, Value);
}

impl StatusBody for (u16, Option<String>, Value) {
    fn into_status_body(self) -> (u16, Value) {
        (self.0, self.2)
    }
}
