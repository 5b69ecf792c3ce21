//! What every route gets at the edge, in one place: one JSON shape for every error answer
//! (axum's own 404, 405, 413 and 415 are empty or plain text), bounded bodies for the routes
//! that read theirs whole, and compressed answers for clients that accept them.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde_json::json;
use tower_http::compression::CompressionLayer;

/// An error answer in the service's one shape: `{"error": "..."}`.
pub fn error_answer(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Wraps the whole router: JSON errors everywhere and gzip for clients that ask.
pub fn wrap(router: Router) -> Router {
    router
        .fallback(not_found)
        .layer(middleware::map_response(json_errors))
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .no_br()
                .no_deflate()
                .no_zstd(),
        )
}

async fn not_found() -> Response {
    error_answer(StatusCode::NOT_FOUND, "no such route")
}

/// Turns an error answer that is not JSON (from axum's routing and extractors) into the
/// service's shape, keeping its status and headers (`Allow`, `Retry-After`). The dashboard's
/// login page (HTML, for a person) is left as it is.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_error = status.is_client_error() || status.is_server_error();
    let answered_as = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let ours = answered_as.starts_with("application/json") || answered_as.starts_with("text/html");
    if !is_error || ours {
        return response;
    }
    let message = match status {
        StatusCode::NOT_FOUND => "no such route".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "this route does not take that method".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_owned(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported content type".to_owned(),
        other => other
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&json!({ "error": message })).unwrap_or_default();
    Response::from_parts(parts, Body::from(body))
}

/// How a route that reads its body whole may receive it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// Reads each request's body whole, within `limits`, before the route sees it: a body too
/// large is a 413 and one that does not arrive in time a 408, both as JSON.
pub fn bounded_bodies(router: Router, limits: BodyLimits) -> Router {
    router.layer(middleware::from_fn_with_state(limits, read_whole_body))
}

async fn read_whole_body(
    State(limits): State<BodyLimits>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    let too_large = || {
        error_answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {} bytes", limits.max_bytes),
        )
    };
    if declared.is_some_and(|length| length > limits.max_bytes) {
        return too_large();
    }
    let limited = http_body_util::Limited::new(body, limits.max_bytes);
    let collected: Bytes = match tokio::time::timeout(limits.timeout, limited.collect()).await {
        Err(_) => {
            return error_answer(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time (server.body_timeout)",
            )
        }
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => return too_large(),
        Ok(Err(_)) => {
            return error_answer(StatusCode::BAD_REQUEST, "could not read the request body")
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    next.run(Request::from_parts(parts, Body::from(collected)))
        .await
}
