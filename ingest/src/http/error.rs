use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::codec::CodecError;
use crate::pipeline::PipelineError;
use crate::sink::SinkError;

/// Every way a request can fail; [`IntoResponse`] below is the only mapping to HTTP statuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The body could not be decoded (415, 413 or 400 by kind).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The pipeline could not make the events durable in time (503) or at all.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A query or path parameter is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// The body could not be read from the connection.
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    /// The body did not arrive whole within `server.body_timeout` (408).
    #[error("the request body did not arrive in time (server.body_timeout)")]
    BodyTimeout,
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<SinkError> for ApiError {
    fn from(error: SinkError) -> ApiError {
        ApiError::Pipeline(PipelineError::Sink(error))
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Codec(
                CodecError::UnsupportedContentType(_) | CodecError::UnsupportedEncoding(_),
            ) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Codec(CodecError::BodyTooLarge { .. } | CodecError::TooManyEvents { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::Codec(CodecError::Malformed(_))
            | ApiError::BadRequest(_)
            | ApiError::BodyRead(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Pipeline(
                PipelineError::Overloaded
                | PipelineError::TimedOut
                | PipelineError::ShuttingDown
                | PipelineError::Sink(SinkError::Unavailable(_)),
            ) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Pipeline(PipelineError::Sink(SinkError::Failed(_)))
            | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: &str = "1";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "request failed");
        }
        let mut response = (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}
