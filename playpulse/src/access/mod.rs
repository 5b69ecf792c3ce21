//! Who may do what, how often, from which web pages: API keys and roles ([`policy`]), rate
//! limits per client address and per key ([`limits`]), and CORS for browser players, as layers
//! around the routes. In order, outermost first: CORS (a preflight is answered before anything
//! else), the address's limit, the key and its role, the key's limit, and the beacon's
//! `text/plain` body read as JSON.

pub mod limits;
pub mod policy;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use platform::keys::{ApiKeys, Role};
use serde::Deserialize;
use tower_http::cors::{AllowOrigin, CorsLayer};

use self::limits::{Limited, RateLimitSettings, RateLimits};
use self::policy::Required;
use crate::edge::error_answer;

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Off (the embedded default): every route is open, and the server listens on loopback
    /// addresses only unless `allow_anonymous_remote`.
    pub enabled: bool,
    pub allow_anonymous_remote: bool,
    /// Events of a session must carry the token `POST /v1/playback-sessions` issued for it.
    pub playback_tokens: bool,
    /// The HMAC-SHA256 key of playback tokens (at least 32 bytes when tokens are on).
    pub playback_token_secret: String,
    /// How long a playback token is valid.
    #[serde(with = "humantime_serde")]
    pub playback_token_ttl: Duration,
}

/// `[cors]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins (`https://player.example.com`) whose pages may call the API; empty: none.
    pub allowed_origins: Vec<String>,
    /// How long a browser may keep a preflight's answer.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

/// What the access layers need.
#[derive(Clone)]
struct Access {
    /// `None`: auth is off.
    keys: Option<ApiKeys>,
    limits: Option<Arc<RateLimits>>,
    beacon_origins: Arc<[HeaderValue]>,
}

/// Wraps `router` with the access layers the settings ask for.
pub fn wrap(
    router: Router,
    keys: Option<ApiKeys>,
    rate_limits: &RateLimitSettings,
    cors: &CorsSettings,
) -> anyhow::Result<Router> {
    let origins = cors
        .allowed_origins
        .iter()
        .map(|origin| {
            HeaderValue::from_str(origin.trim_end_matches('/'))
                .map_err(|_| anyhow::anyhow!("cors.allowed_origins: `{origin}` is not an origin"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let access = Access {
        keys,
        limits: rate_limits.enabled.then(|| RateLimits::new(rate_limits)),
        beacon_origins: origins.clone().into(),
    };
    let mut router = router.layer(middleware::from_fn_with_state(access, admit));
    if !origins.is_empty() {
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::CONTENT_ENCODING,
                    header::AUTHORIZATION,
                    header::HeaderName::from_static("idempotency-key"),
                ])
                .expose_headers([
                    header::RETRY_AFTER,
                    header::HeaderName::from_static("ratelimit-limit"),
                    header::HeaderName::from_static("ratelimit-remaining"),
                    header::HeaderName::from_static("ratelimit-reset"),
                ])
                .max_age(cors.max_age),
        );
    }
    Ok(router)
}

async fn admit(State(access): State<Access>, mut request: Request, next: Next) -> Response {
    let required = policy::required(request.method(), request.uri().path());
    if required == Required::Public {
        return next.run(request).await;
    }
    if let Some(limits) = &access.limits {
        let address = client_address(&request);
        if let Err(limited) = limits.check_address(address) {
            return too_many(limited);
        }
    }
    if let (Some(keys), Required::Role(needed)) = (&access.keys, required) {
        // A person opening the dashboard is shown the login form, not a JSON 401.
        let to_login = is_dashboard(&request);
        let Some(presented) = presented_key(&request) else {
            if to_login {
                return see_login();
            }
            return unauthorized("this route needs an API key: send `Authorization: Bearer KEY`");
        };
        let key = match keys.authenticate(&presented).await {
            Ok(Some(key)) => key,
            Ok(None) if to_login => return see_login(),
            Ok(None) => return unauthorized("unknown or revoked API key"),
            Err(error) => {
                tracing::warn!(%error, "cannot check an API key");
                let mut answer = error_answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cannot check the API key now: retry later",
                );
                answer
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return answer;
            }
        };
        if !policy::allows(key.role, needed) {
            return error_answer(
                StatusCode::FORBIDDEN,
                format!(
                    "a key of role `{}` may not do this: it needs role `{}`",
                    key.role, needed
                ),
            );
        }
        if let Some(limits) = &access.limits {
            if let Err(limited) = limits.check_key(key.id, key.role) {
                return too_many(limited);
            }
        }
    }
    if required == Required::Role(Role::Ingest) {
        read_beacon_as_json(&mut request, &access.beacon_origins);
    }
    next.run(request).await
}

fn client_address(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip())
}

fn is_dashboard(request: &Request) -> bool {
    matches!(*request.method(), Method::GET | Method::HEAD)
        && request.uri().path().trim_end_matches('/') == "/ops"
}

fn see_login() -> Response {
    let mut answer = StatusCode::SEE_OTHER.into_response();
    answer
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/ops/login"));
    answer
}

/// `Authorization: Bearer KEY`; on `GET` and `HEAD`, the dashboard's login cookie; for
/// `POST /v1/events` also `?key=KEY` (a browser's `navigator.sendBeacon` cannot set headers;
/// only the ingest route takes it, so a read or admin key is not put in URLs that end up in
/// logs). The cookie is never taken on other methods, so a page elsewhere cannot make a
/// logged-in browser post a command (it is `SameSite=Strict` besides).
fn presented_key(request: &Request) -> Option<String> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let text = value.to_str().ok()?;
        let (scheme, key) = text.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| key.trim().to_owned());
    }
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return request
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|cookies| cookies.split(';'))
            .find_map(|cookie| {
                let (name, value) = cookie.trim().split_once('=')?;
                (name == crate::ops::KEY_COOKIE).then(|| value.to_owned())
            });
    }
    if request.method() != Method::POST || request.uri().path() != "/v1/events" {
        return None;
    }
    request
        .uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))
        .map(str::to_owned)
}

/// `navigator.sendBeacon` posts a string as `text/plain`, the one type a page may send
/// cross-origin without a preflight: from an allowed origin, such a body is read as the JSON it
/// holds. From anywhere else it stays `text/plain` and gets a 415.
fn read_beacon_as_json(request: &mut Request, allowed: &[HeaderValue]) {
    let headers = request.headers();
    let is_text = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/plain"));
    let from_allowed = headers
        .get(header::ORIGIN)
        .is_some_and(|origin| allowed.contains(origin));
    if is_text && from_allowed {
        request.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
}

fn unauthorized(message: &str) -> Response {
    let mut answer = error_answer(StatusCode::UNAUTHORIZED, message);
    answer.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"playpulse\""),
    );
    answer
}

/// 429 with when to retry and the limit passed (the IETF RateLimit header fields).
fn too_many(limited: Limited) -> Response {
    let (what, limit, retry_after) = match limited {
        Limited::ClientAddress { limit, retry_after } => {
            ("this client address", limit, retry_after)
        }
        Limited::Key { limit, retry_after } => ("this API key", limit, retry_after),
    };
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut answer = error_answer(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "rate limit of {what} passed ({} requests/s, burst {}): retry in {seconds} s",
            limit.per_second, limit.burst
        ),
    );
    let headers = answer.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    headers.insert("ratelimit-limit", HeaderValue::from(limit.burst.get()));
    headers.insert("ratelimit-remaining", HeaderValue::from_static("0"));
    headers.insert("ratelimit-reset", HeaderValue::from(seconds));
    answer
}
