use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::AppState;

/// The process is up.
pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The service takes traffic: started, not draining, and its sink answers.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let serving = state.ready.load(Ordering::Acquire);
    let (sink_ready, cache_ready) = tokio::join!(state.sink.ready(), state.cache.ready());
    let ready = serving && sink_ready && cache_ready;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({
            "ready": ready,
            "serving": serving,
            "sink": sink_ready,
            "cache": cache_ready,
        })),
    )
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
