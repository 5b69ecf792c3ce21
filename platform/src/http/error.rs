//! The one place where the platform's errors become HTTP statuses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::catalog::CatalogError;
use crate::commands::CommandError;
use crate::readmodel::ReadModelError;
use crate::store::StoreError;

/// An error answer: a status and a JSON body `{"error": ..., "field": ...}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// Bad input; `field` names the offending field when there is one.
    #[error("{field}: {message}")]
    BadField { field: String, message: String },
    /// A body that is not a JSON object, or a missing header.
    #[error("{0}")]
    BadRequest(String),
    /// A body sent as something other than `application/json`: refused so that a web page
    /// cannot post a command with a plain HTML form (a "simple" cross-site request that no
    /// CORS preflight stops).
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::BadField {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadField { .. } | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Command(error) => match error {
                CommandError::UserNotFound(_)
                | CommandError::PlanNotFound(_)
                | CommandError::SubscriptionNotFound(_) => StatusCode::NOT_FOUND,
                CommandError::PlanUnavailable(_)
                | CommandError::AlreadySubscribed { .. }
                | CommandError::EmailTaken
                | CommandError::KeyInProgress => StatusCode::CONFLICT,
                CommandError::KeyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
                CommandError::Declined(_) => StatusCode::PAYMENT_REQUIRED,
                CommandError::PaymentUnknown | CommandError::RefundPending => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                CommandError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
            ApiError::Store(StoreError::Conflict(_) | StoreError::AlreadySubscribed { .. }) => {
                StatusCode::CONFLICT
            }
            ApiError::Store(_) | ApiError::ReadModel(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Catalog(error) => match error {
                CatalogError::NotFound(_) => StatusCode::NOT_FOUND,
                CatalogError::Exists(_) | CatalogError::Store(StoreError::Conflict(_)) => {
                    StatusCode::CONFLICT
                }
                CatalogError::Search(search::SearchError::BadRequest(_)) => StatusCode::BAD_REQUEST,
                CatalogError::Search(search::SearchError::Protocol(_)) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, %status, "platform request failed");
        }
        let body = match &self {
            ApiError::BadField { field, message } => {
                json!({ "error": format!("{field}: {message}"), "field": field })
            }
            other => json!({ "error": other.to_string() }),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}
