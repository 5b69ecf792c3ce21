//! `POST /v1/playback-sessions` (with `auth.playback_tokens`; role admin): the platform's backend
//! asks for a token when a viewer presses play, and hands it to the player.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{ApiError, AppState};
use crate::tokens::{Claims, MAX_ORIGIN_BYTES};

/// A session request is a small JSON object.
const MAX_BODY_BYTES: usize = 4096;

/// The body: whom and what the token is for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    pub session_id: Uuid,
    pub user_id: u64,
    pub content_id: u64,
    /// The web origin whose pages will post the events; absent for native players.
    #[serde(default)]
    pub origin: Option<String>,
}

pub async fn create_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match issue(&state, &headers, body).await {
        Ok(answer) => answer,
        Err(error) => error.into_response(),
    }
}

async fn issue(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let Some(sessions) = &state.playback_tokens else {
        return Err(ApiError::BadRequest(
            "playback tokens are off (auth.playback_tokens)".to_owned(),
        ));
    };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(crate::codec::CodecError::UnsupportedContentType(
            "a playback session is created with application/json".to_owned(),
        )
        .into());
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "the body must be at most {MAX_BODY_BYTES} bytes of JSON"
            ))
        })?;
    let request: NewSession = serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::BadRequest(format!(
            "the body must be {{\"session_id\": UUID, \"user_id\": integer, \"content_id\": integer, \"origin\"?: text}} (line {}, column {})",
            error.line(),
            error.column()
        ))
    })?;
    if request.session_id.is_nil() {
        return Err(ApiError::BadRequest(
            "session_id must not be the nil UUID".to_owned(),
        ));
    }
    if let Some(origin) = &request.origin {
        let valid = origin.len() <= MAX_ORIGIN_BYTES
            && (origin.starts_with("https://") || origin.starts_with("http://"))
            && !origin.ends_with('/');
        if !valid {
            return Err(ApiError::BadRequest(format!(
                "origin must be a web origin like https://player.example.com (scheme and host, no path, at most {MAX_ORIGIN_BYTES} bytes)"
            )));
        }
    }
    let expires_at = crate::now_ms() + sessions.ttl.as_millis().min(i64::MAX as u128 / 2) as i64;
    let claims = Claims {
        session_id: request.session_id,
        user_id: request.user_id,
        content_id: request.content_id,
        expires_at,
        origin: request.origin,
    };
    let token = sessions.tokens.issue(&claims);
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "session_id": claims.session_id,
            "user_id": claims.user_id,
            "content_id": claims.content_id,
            "origin": claims.origin,
            "expires_at": expires_at,
            "playback_token": token,
        })),
    )
        .into_response())
}
