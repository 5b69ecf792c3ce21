use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{eventually, Backend};

both_backends!(
    bad_input_gets_a_400_naming_the_field,
    the_whole_flow_works_over_http_with_idempotency_and_cache_headers,
    report_instants_outside_years_1970_to_9999_get_a_400_naming_the_parameter,
    commands_refuse_bodies_not_sent_as_json_with_a_415,
    error_texts_quote_no_parser_internals_and_at_most_64_characters_of_input,
    a_card_number_as_payment_token_is_refused_before_anything_is_kept_or_charged,
    a_second_subscription_to_the_same_plan_is_a_409_without_a_charge,
);

pub(crate) struct Server {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub platform: platform::Platform,
}

impl Server {
    pub async fn start(backend: &Backend) -> Server {
        let platform = backend.platform();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = platform.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Server {
            addr,
            client: reqwest::Client::new(),
            platform,
        }
    }

    /// Any method, with a JSON body or none; the status and the JSON answer.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("http://{}{path}", self.addr));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
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

    /// A POST with exactly this body and these headers (no JSON content type added).
    async fn post_raw(
        &self,
        path: &str,
        body: &'static str,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("http://{}{path}", self.addr))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
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
            with(&plan, "currency", json!("ABC")),
            "currency",
        ),
        (
            "/v1/plans",
            with(&plan, "currency", json!("XXX")),
            "currency",
        ),
        (
            "/v1/plans",
            with(&plan, "currency", json!("XTS")),
            "currency",
        ),
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
    let (_, other_plan) = server
        .post("/v1/plans", json!({"name": "Basic", "price_cents": 599, "currency": "EUR", "period": "monthly", "available": true}), None)
        .await;
    let declined = json!({"user_id": user["id"], "plan_id": other_plan["id"], "payment_method": {"token": "tok_chargeDeclined"}});
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

async fn report_instants_outside_years_1970_to_9999_get_a_400_naming_the_parameter(
    backend: Backend,
) {
    let server = Server::start(&backend).await;
    let cases = [
        ("/v1/reports/mrr?at=253402300800000", "at"),
        ("/v1/reports/mrr?at=9223372036854775807", "at"),
        ("/v1/reports/mrr?at=-1", "at"),
        ("/v1/reports/active-subscribers?at=253402300800000", "at"),
        ("/v1/reports/churn?from=253402300800000", "from"),
        ("/v1/reports/churn?from=0&to=253402300800000", "to"),
        ("/v1/reports/churn?from=1969-12-31T23:59:59Z", "from"),
    ];
    for (path, field) in cases {
        let (status, _, error) = server.get(path).await;
        assert_eq!(
            (status, error["field"].as_str()),
            (400, Some(field)),
            "{path}: {error}"
        );
        assert!(
            error["error"]
                .as_str()
                .is_some_and(|text| text.contains("9999")),
            "{error}"
        );
    }
    // The edges of the range are fine.
    let (status, _, mrr) = server.get("/v1/reports/mrr?at=253402300799999").await;
    assert_eq!(
        (status, mrr["at"].as_str()),
        (200, Some("9999-12-31T23:59:59.999Z"))
    );
    let (status, _, _) = server
        .get("/v1/reports/churn?from=0&to=9999-12-31T23:59:59Z")
        .await;
    assert_eq!(status, 200);
}

async fn commands_refuse_bodies_not_sent_as_json_with_a_415(backend: Backend) {
    let server = Server::start(&backend).await;
    let user = r#"{"email": "csrf@example.com", "name": "Ada", "country": "FR"}"#;
    let plan = r#"{"name": "Basic", "price_cents": 999, "currency": "EUR", "period": "monthly", "available": true}"#;
    let subscription = r#"{"user_id": 1, "plan_id": 1, "payment_method": {"token": "tok_visa"}}"#;
    // What an HTML form on another site can send without a CORS preflight, or no type at all.
    let forms: [&[(&str, &str)]; 4] = [
        &[("content-type", "text/plain")],
        &[("content-type", "application/x-www-form-urlencoded")],
        &[("content-type", "multipart/form-data; boundary=x")],
        &[],
    ];
    for headers in forms {
        for (path, body) in [
            ("/v1/users", user),
            ("/v1/plans", plan),
            ("/v1/subscriptions", subscription),
        ] {
            let mut headers = headers.to_vec();
            headers.push(("idempotency-key", "csrf-key"));
            let (status, error) = server.post_raw(path, body, &headers).await;
            assert_eq!(status, 415, "{path} {headers:?}: {error}");
            assert!(error["error"]
                .as_str()
                .is_some_and(|text| text.contains("application/json")));
        }
        let (status, _) = server
            .post_raw("/v1/subscriptions/1/cancel", "{}", headers)
            .await;
        assert_eq!(status, 415, "cancel with a body {headers:?}");
    }
    assert!(
        backend.store.plans().await.unwrap().is_empty(),
        "nothing was created"
    );
    assert_eq!(backend.gateway.charges_made(), 0);
    // JSON with parameters is JSON; a cancel without a body needs no content type.
    let json = [("content-type", "application/json; charset=utf-8")];
    let (status, created) = server.post_raw("/v1/users", user, &json).await;
    assert_eq!(status, 201, "{created}");
    let (status, created) = server.post_raw("/v1/plans", plan, &json).await;
    assert_eq!(status, 201, "{created}");
    let (status, error) = server
        .post_raw("/v1/subscriptions/999/cancel", "", &[])
        .await;
    assert_eq!(status, 404, "past the media type check: {error}");
    let (status, _) = server
        .post_raw(
            "/v1/subscriptions/999/cancel",
            "",
            &[("content-type", "text/plain")],
        )
        .await;
    assert_eq!(
        status, 415,
        "a declared non-JSON type is refused even when empty"
    );
}

async fn error_texts_quote_no_parser_internals_and_at_most_64_characters_of_input(
    backend: Backend,
) {
    let server = Server::start(&backend).await;
    let json = [("content-type", "application/json")];
    let (status, error) = server
        .post_raw("/v1/users", r#"{"email": tok_4242424242424242}"#, &json)
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        error["error"],
        "the body is not valid JSON (line 1, column 12)"
    );
    let (status, error) = server.post_raw("/v1/users", r#"{"email": "#, &json).await;
    assert_eq!(status, 400);
    let text = error["error"].as_str().unwrap();
    assert!(
        text.starts_with("the body is not valid JSON (line 1, column "),
        "{text}"
    );
    let long = "9".repeat(5_000) + "x";
    let (status, _, error) = server.get(&format!("/v1/users/{long}")).await;
    assert_eq!((status, error["field"].as_str()), (400, Some("user_id")));
    let text = error["error"].as_str().unwrap();
    assert!(text.len() < 200 && text.contains('…'), "{text}");
    let long_country = "Z".repeat(5_000);
    let (status, error) = server
        .post(
            "/v1/users",
            json!({"email": "a@example.com", "name": "Ada", "country": long_country}),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().len() < 200, "{error}");
    let (status, _, error) = server
        .get(&format!("/v1/reports/mrr?at={}", "y".repeat(5_000)))
        .await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().len() < 200, "{error}");
}

async fn a_card_number_as_payment_token_is_refused_before_anything_is_kept_or_charged(
    backend: Backend,
) {
    let server = Server::start(&backend).await;
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let (_, user) = server
        .post(
            "/v1/users",
            json!({"email": email, "name": "Ada", "country": "FR"}),
            None,
        )
        .await;
    let (_, plan) = server
        .post("/v1/plans", json!({"name": "Premium", "price_cents": 1299, "currency": "EUR", "period": "monthly", "available": true}), None)
        .await;
    let key = uuid::Uuid::new_v4().to_string();
    for pan in [
        "4242424242424242",
        "4242 4242 4242 4242",
        "5555-5555-5555-4444",
    ] {
        let body =
            json!({"user_id": user["id"], "plan_id": plan["id"], "payment_method": {"token": pan}});
        let (status, error) = server.post("/v1/subscriptions", body, Some(&key)).await;
        assert_eq!(
            (status, error["field"].as_str()),
            (400, Some("payment_method.token"))
        );
        assert!(!error.to_string().contains("4444") && !error.to_string().contains("4242"));
    }
    assert_eq!(backend.gateway.charges_made(), 0);
    let kept = backend
        .raw_strings("SELECT key FROM idempotency_keys")
        .await;
    assert!(
        kept.is_empty(),
        "[{}] no key was claimed: {kept:?}",
        backend.name
    );
    // The key is still free for the real request.
    let body = json!({"user_id": user["id"], "plan_id": plan["id"], "payment_method": {"token": "tok_visa"}});
    let (status, created) = server.post("/v1/subscriptions", body, Some(&key)).await;
    assert_eq!(status, 201, "{created}");
}

async fn a_second_subscription_to_the_same_plan_is_a_409_without_a_charge(backend: Backend) {
    let server = Server::start(&backend).await;
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let (_, user) = server
        .post(
            "/v1/users",
            json!({"email": email, "name": "Ada", "country": "FR"}),
            None,
        )
        .await;
    let (_, plan) = server
        .post("/v1/plans", json!({"name": "Premium", "price_cents": 1299, "currency": "EUR", "period": "monthly", "available": true}), None)
        .await;
    let body = json!({"user_id": user["id"], "plan_id": plan["id"], "payment_method": {"token": "tok_visa"}});
    let (status, _) = server
        .post("/v1/subscriptions", body.clone(), Some("first-key"))
        .await;
    assert_eq!(status, 201);
    let (status, error) = server
        .post("/v1/subscriptions", body, Some("second-key"))
        .await;
    assert_eq!(status, 409, "{error}");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|text| text.contains("already has an active subscription")),
        "{error}"
    );
    assert_eq!(backend.gateway.charges_made(), 1);
}

trait StatusBody {
    fn into_status_body(self) -> (u16, Value);
}

impl StatusBody for (u16, Option<String>, Value) {
    fn into_status_body(self) -> (u16, Value) {
        (self.0, self.2)
    }
}
