//! `POST /v1/events`: the hot path from request to acknowledgement.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tokio::time::Instant;
use wire::ValidationContext;

use super::{ApiError, AppState};
use crate::codec::{self, BodyEncoding, BodyFormat, CodecError, Decoded};

/// Bodies at least this large are decoded on the blocking pool: async code must not hold a
/// worker thread for more than about half a millisecond.
const INLINE_DECODE_MAX_BYTES: usize = 64 << 10;

/// The 200 answer.
#[derive(Debug, Serialize)]
pub struct Ack {
    pub accepted: usize,
    pub rejected: Vec<RejectedEvent>,
}

#[derive(Debug, Serialize)]
pub struct RejectedEvent {
    pub index: usize,
    pub error: String,
}

pub async fn post_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let response = match ingest(&state, &headers, body, started).await {
        Ok(ack) => (StatusCode::OK, Json(ack)).into_response(),
        Err(error) => error.into_response(),
    };
    state
        .metrics
        .request_answered(response.status().as_u16(), started.elapsed());
    response
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Result<Option<&str>, ApiError> {
    headers
        .get(&name)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| ApiError::BadRequest(format!("header {name} is not text")))
        })
        .transpose()
}

async fn ingest(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> Result<Ack, ApiError> {
    let format = BodyFormat::from_content_type(header_text(headers, header::CONTENT_TYPE)?)?;
    let encoding =
        BodyEncoding::from_content_encoding(header_text(headers, header::CONTENT_ENCODING)?)?;
    let raw = read_body(body, state.server.max_body_bytes.get()).await?;
    ingest_body(state, format, encoding, raw, started).await
}

/// Everything after the body is read: decompress, admit, parse and validate, write, acknowledge.
pub async fn ingest_body(
    state: &AppState,
    format: BodyFormat,
    encoding: BodyEncoding,
    raw: bytes::Bytes,
    started: Instant,
) -> Result<Ack, ApiError> {
    let server = &state.server;
    let deadline = started + server.request_timeout;
    let limit = server.max_body_bytes.get();
    let plain = match encoding {
        BodyEncoding::Identity => Vec::from(raw),
        _ => off_the_runtime(raw.len(), move || codec::decompress(&raw, encoding, limit)).await??,
    };

    // Room is taken before parsing: under overload, shed before spending CPU on the body.
    let permit = state.pipeline.admit(plain.len(), deadline).await?;
    let ctx = ValidationContext {
        received_at: crate::now_ms(),
        max_future_ms: server.max_clock_skew.as_millis().min(i64::MAX as u128) as i64,
    };
    let max_events = server.max_events_per_request.get();
    let Decoded { events, rejected } = off_the_runtime(plain.len(), move || {
        let mut plain = plain;
        codec::decode_events(&mut plain, format, max_events, &ctx)
    })
    .await??;

    for rejection in &rejected {
        state.metrics.event_rejected(rejection.error.reason_code());
    }
    let accepted = events.len();
    state.pipeline.write(events, deadline).await?;
    state.metrics.events_accepted(accepted);
    drop(permit);
    Ok(Ack {
        accepted,
        rejected: rejected
            .into_iter()
            .map(|rejection| RejectedEvent {
                index: rejection.index,
                error: rejection.error.to_string(),
            })
            .collect(),
    })
}

/// Reads the body, refusing it as soon as it passes `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let too_large = std::error::Error::source(&error)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::Codec(CodecError::BodyTooLarge { limit })
        } else {
            ApiError::BodyRead(error.to_string())
        }
    })
}

/// Runs CPU work inline when small, on the blocking pool when large.
async fn off_the_runtime<T: Send + 'static>(
    bytes: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    if bytes < INLINE_DECODE_MAX_BYTES {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ApiError::Internal(format!("decoding task failed: {error}")))
}
