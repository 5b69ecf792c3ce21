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
use crate::pipeline::AdmissionPermit;
use crate::tokens::TokenCheck;

/// A body's buffer starts at most this large, and grows as its bytes are admitted.
const FIRST_BUFFER_BYTES: usize = 64 << 10;

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
    let limit = state.server.max_body_bytes.get();
    let declared = declared_length(headers)?;
    if declared.is_some_and(|length| length > limit) {
        return Err(CodecError::BodyTooLarge { limit }.into());
    }
    // The body's bytes take room from the admission budget as they arrive, so that slow or
    // large uploads cannot hold more memory than the budget allows.
    let mut permit = state.pipeline.empty_permit();
    let raw = read_body(
        body,
        limit,
        declared,
        &mut permit,
        started + state.server.body_timeout,
        started + state.server.request_timeout,
    )
    .await?;
    let origin = header_text(headers, header::ORIGIN)?.map(str::to_owned);
    ingest_body_with(state, format, encoding, raw, started, permit, origin).await
}

/// Everything after the body is read: decompress, admit, parse and validate, write, acknowledge.
pub async fn ingest_body(
    state: &AppState,
    format: BodyFormat,
    encoding: BodyEncoding,
    raw: bytes::Bytes,
    started: Instant,
) -> Result<Ack, ApiError> {
    let permit = state
        .pipeline
        .admit(raw.len(), started + state.server.request_timeout)
        .await?;
    ingest_body_with(state, format, encoding, raw, started, permit, None).await
}

async fn ingest_body_with(
    state: &AppState,
    format: BodyFormat,
    encoding: BodyEncoding,
    raw: bytes::Bytes,
    started: Instant,
    mut permit: AdmissionPermit,
    origin: Option<String>,
) -> Result<Ack, ApiError> {
    let server = &state.server;
    let deadline = started + server.request_timeout;
    let limit = server.max_body_bytes.get();
    let plain = match encoding {
        BodyEncoding::Identity => Vec::from(raw),
        _ => {
            // Inflated bytes count too, before they are produced (a small body can inflate to
            // the limit): decompression reserves room as it goes, on the blocking pool.
            let runtime = tokio::runtime::Handle::current();
            let compressed = raw.len();
            let (plain, returned) = tokio::task::spawn_blocking(move || {
                let plain = codec::decompress(&raw, encoding, limit, |inflated| {
                    permit
                        .grow_to_blocking(&runtime, compressed + inflated, deadline)
                        .map_err(ApiError::from)
                });
                (plain, permit)
            })
            .await
            .map_err(|error| ApiError::Internal(format!("decompression task failed: {error}")))?;
            permit = returned;
            plain?
        }
    };
    permit.grow_to(plain.len(), deadline).await?;

    let ctx = ValidationContext {
        received_at: crate::now_ms(),
        max_future_ms: server.max_clock_skew.as_millis().min(i64::MAX as u128) as i64,
    };
    let max_events = server.max_events_per_request.get();
    let tokens = state
        .playback_tokens
        .as_ref()
        .map(|sessions| sessions.tokens.clone());
    let Decoded { events, rejected } = off_the_runtime(plain.len(), move || {
        let mut plain = plain;
        let check = tokens.as_deref().map(|tokens| TokenCheck {
            tokens,
            origin: origin.as_deref(),
        });
        codec::decode_events(&mut plain, format, max_events, &ctx, check)
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

/// The Content-Length header, when the client sent one.
fn declared_length(headers: &HeaderMap) -> Result<Option<usize>, ApiError> {
    header_text(headers, header::CONTENT_LENGTH)?
        .map(|text| {
            text.trim()
                .parse::<usize>()
                .map_err(|_| ApiError::BadRequest("header content-length is not a number".into()))
        })
        .transpose()
}

/// Reads the body frame by frame, each frame's bytes admitted before the next is read; refuses
/// it as soon as it passes `limit` bytes, and when it has not all arrived by `body_deadline`.
async fn read_body(
    body: Body,
    limit: usize,
    declared: Option<usize>,
    permit: &mut AdmissionPermit,
    body_deadline: Instant,
    admission_deadline: Instant,
) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;

    let mut body = body;
    // Memory follows the bytes admitted, not what a header declares: a client declaring 8 MiB
    // and sending a byte a second must not get 8 MiB reserved for it.
    let mut buffer = bytes::BytesMut::with_capacity(declared.unwrap_or(0).min(FIRST_BUFFER_BYTES));
    loop {
        let frame = match tokio::time::timeout_at(body_deadline, body.frame()).await {
            Err(_) => return Err(ApiError::BodyTimeout),
            Ok(None) => break,
            Ok(Some(Err(error))) => return Err(ApiError::BodyRead(error.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if buffer.len() + data.len() > limit {
            return Err(CodecError::BodyTooLarge { limit }.into());
        }
        permit
            .grow_to(
                buffer.len() + data.len(),
                admission_deadline.min(body_deadline),
            )
            .await?;
        if buffer.capacity() - buffer.len() < data.len() {
            // Grow towards the declared length by doubling, never past it.
            let wanted = (buffer.len() * 2).max(buffer.len() + data.len()).min(
                declared
                    .unwrap_or(usize::MAX)
                    .max(buffer.len() + data.len()),
            );
            buffer.reserve(wanted - buffer.len());
        }
        buffer.extend_from_slice(&data);
    }
    Ok(buffer.freeze())
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
