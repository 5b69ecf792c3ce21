//! The HTTP API: routes, shared state, and the one place errors become statuses ([`error`]).

mod error;
mod events;
mod health;
mod history;
mod sessions;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;
pub use events::{ingest_body, Ack, RejectedEvent};
pub use sessions::NewSession;

use crate::config::ServerSettings;
use crate::pipeline::Pipeline;
use crate::sink::EventSink;
use crate::telemetry::{Metrics, MetricsSource};
use crate::tokens::PlaybackTokens;
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
    /// With `auth.playback_tokens`: every event must carry its session's token.
    pub playback_tokens: Option<PlaybackSessions>,
    /// Dependencies whose failure degrades some answers without making the service unready
    /// (the graph: recommendations are then served stale, with their age).
    pub degradable: Vec<Arc<dyn Degradable>>,
    /// Counters of the rest of the service, rendered by `/metrics` after the ingest path's.
    pub metric_sources: Vec<Arc<dyn MetricsSource>>,
}

/// A dependency `/readyz` reports as `ok` or `degraded`, never as a reason to refuse traffic.
#[async_trait::async_trait]
pub trait Degradable: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn ready(&self) -> bool;
}

/// How playback tokens are issued and checked.
#[derive(Clone)]
pub struct PlaybackSessions {
    pub tokens: Arc<PlaybackTokens>,
    /// How long an issued token is valid.
    pub ttl: std::time::Duration,
}

pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    if state.playback_tokens.is_some() {
        router = router.route("/v1/playback-sessions", post(sessions::create_session));
    }
    router
        .route("/v1/events", post(events::post_events))
        .route("/v1/users/{user_id}/history", get(history::get_history))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        // Bodies are bounded by our own limit, after decompression (see `events`).
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
