//! The operator dashboard, `GET /ops`: one server-rendered page ([`page`]) and its vendored
//! assets, compiled into the binary (nothing is fetched from elsewhere). The page's script reads
//! the service's own answers, `/metrics`, `/readyz`, `/v1/analytics/live` and `/v1/trending`,
//! every [`REFRESH`] while its tab is visible: there is no second set of counters, and a hidden
//! tab costs nothing.
//!
//! With `auth.enabled` the page needs an admin key. A browser cannot send `Authorization` when
//! it follows a link, so `/ops/login` takes the key in a form and keeps it in an `HttpOnly`,
//! `SameSite=Strict` cookie that the access layer reads on `GET` and `HEAD` only (a page
//! elsewhere cannot make it post a command).

mod page;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use platform::keys::{ApiKeys, Role};
use serde::Deserialize;

pub use page::{PageFacts, Port};

/// How often the page refreshes while its tab is visible.
pub const REFRESH: Duration = Duration::from_secs(2);

/// The cookie `/ops/login` sets; the access layer takes it as the key of `GET` requests.
pub const KEY_COOKIE: &str = "playpulse_key";

/// How long the login cookie lasts.
const COOKIE_MAX_AGE: Duration = Duration::from_secs(12 * 3600);

#[derive(Clone)]
struct Ops {
    facts: Arc<PageFacts>,
    /// `None`: auth is off, the page is open.
    keys: Option<ApiKeys>,
}

pub fn router(facts: PageFacts, keys: Option<ApiKeys>) -> Router {
    Router::new()
        .route("/ops", get(dashboard))
        .route("/ops/login", get(login_form).post(login))
        .route("/ops/logout", post(logout))
        .route("/ops/assets/{name}", get(asset))
        .with_state(Ops {
            facts: Arc::new(facts),
            keys,
        })
}

async fn dashboard(State(ops): State<Ops>) -> Html<String> {
    Html(page::dashboard(&ops.facts, ops.keys.is_some()).into_string())
}

async fn login_form(State(ops): State<Ops>) -> Response {
    if ops.keys.is_none() {
        return see_other("/ops", None);
    }
    Html(page::login(None).into_string()).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    key: String,
}

async fn login(State(ops): State<Ops>, Form(form): Form<LoginForm>) -> Response {
    let Some(keys) = &ops.keys else {
        return see_other("/ops", None);
    };
    let key = form.key.trim();
    let refuse = |status: StatusCode, why: &str| {
        (status, Html(page::login(Some(why)).into_string())).into_response()
    };
    // `authenticate` takes only the shape `create` hands out (`pp_` and URL-safe base64), so
    // a key it finds can go in a cookie as it is.
    match keys.authenticate(key).await {
        Ok(Some(found)) if found.role == Role::Admin => {
            let cookie = format!(
                "{KEY_COOKIE}={key}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict",
                COOKIE_MAX_AGE.as_secs()
            );
            see_other("/ops", Some(cookie))
        }
        Ok(Some(found)) => refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "A key of role `{}` may not open the dashboard: it needs role `admin`.",
                found.role
            ),
        ),
        Ok(None) => refuse(StatusCode::UNAUTHORIZED, "Unknown or revoked API key."),
        Err(error) => {
            tracing::warn!(%error, "cannot check an API key");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "The key cannot be checked now (the command store does not answer): retry later.",
            )
        }
    }
}

async fn logout() -> Response {
    let expired = format!("{KEY_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
    see_other("/ops/login", Some(expired))
}

fn see_other(location: &'static str, cookie: Option<String>) -> Response {
    let mut answer = StatusCode::SEE_OTHER.into_response();
    let headers = answer.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static(location));
    if let Some(value) = cookie.and_then(|cookie| HeaderValue::from_str(&cookie).ok()) {
        headers.insert(header::SET_COOKIE, value);
    }
    answer
}

/// The vendored files: uPlot (MIT, `assets/uPlot.LICENSE`) and the page's own style and
/// script.
const ASSETS: [(&str, &str, &str); 4] = [
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("assets/uPlot.min.css"),
    ),
    (
        "ops.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/ops.js"),
    ),
    (
        "ops.css",
        "text/css; charset=utf-8",
        include_str!("assets/ops.css"),
    ),
];

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                // They change only with the binary.
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *body,
        )
            .into_response(),
        None => crate::edge::error_answer(StatusCode::NOT_FOUND, "no such asset"),
    }
}
