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

/// The service takes traffic: started, not draining, and its sink answers. Degradable
/// dependencies are reported beside it (`"graph": "degraded"`) without changing the answer.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let serving = state.ready.load(Ordering::Acquire);
    let (sink_ready, cache_ready, degradable) = tokio::join!(
        state.sink.ready(),
        state.cache.ready(),
        futures::future::join_all(state.degradable.iter().map(|dependency| dependency.ready()))
    );
    let ready = serving && sink_ready && cache_ready;
    let mut degraded = Vec::new();
    let mut dependencies = serde_json::Map::new();
    for (dependency, up) in state.degradable.iter().zip(degradable) {
        if !up {
            degraded.push(dependency.name());
        }
        let status = if up { "ok" } else { "degraded" };
        dependencies.insert(dependency.name().to_owned(), status.into());
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json({
            let mut answer = serde_json::json!({
                "ready": ready,
                "serving": serving,
                "sink": sink_ready,
                "cache": cache_ready,
                "degraded": degraded,
            });
            if let Some(object) = answer.as_object_mut() {
                object.extend(dependencies);
            }
            answer
        }),
    )
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.metrics.render();
    for source in &state.metric_sources {
        source.render(&mut text);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
