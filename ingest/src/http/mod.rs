//! The HTTP API: routes, shared state, and the one place errors become statuses ([`error`]).

mod error;
mod events;
mod health;
mod history;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;
pub use events::{ingest_body, Ack, RejectedEvent};

use crate::config::ServerSettings;
use crate::pipeline::Pipeline;
use crate::sink::EventSink;
use crate::telemetry::Metrics;
use cache::Cache;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pipeline: Pipeline,
    pub sink: Arc<dyn EventSink>,
    pub cache: Arc<dyn Cache>,
    pub metrics: Arc<Metrics>,
    pub server: Arc<ServerSettings>,
    /// False while starting and while draining.
    pub ready: Arc<AtomicBool>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(events::post_events))
        .route("/v1/users/{user_id}/history", get(history::get_history))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        // Bodies are bounded by our own limit, after decompression (see `events`).
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
