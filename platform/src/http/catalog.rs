//! The catalog's routes: titles (commands and their read model) and search.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use search::{CountryCode, Cursor, Filters, SearchError, SearchRequest, MAX_LIMIT};
use serde_json::json;

use super::input::{empty_or_json, Body};
use super::{ApiError, PlatformState};
use crate::catalog::input::{genre, language, maturity, title_from, title_id, title_json};
use crate::catalog::CatalogError;
use crate::domain::{echo, today};

pub(super) async fn create_title(
    State(state): State<PlatformState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = Body::from_request(&headers, &body)?;
    let id = match body.get("id") {
        None => None,
        Some(value) => Some(title_id("id", Some(value), None)?),
    };
    let title = title_from(&body, id.unwrap_or(0))?;
    let entry = state.catalog.create(id, &title).await?;
    Ok((StatusCode::CREATED, Json(title_json(&entry))).into_response())
}

pub(super) async fn get_title(
    State(state): State<PlatformState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = title_id("title_id", None, Some(&id))?;
    let entry = state.catalog.title(id).await?;
    Ok(Json(title_json(&entry)).into_response())
}

pub(super) async fn replace_title(
    State(state): State<PlatformState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = title_id("title_id", None, Some(&id))?;
    let body = Body::from_request(&headers, &body)?;
    if let Some(value) = body.get("id") {
        if title_id("id", Some(value), None)? != id {
            return Err(ApiError::field(
                "id",
                "must be the id in the path (or left out)",
            ));
        }
    }
    let title = title_from(&body, id)?;
    let entry = state.catalog.replace(&title).await?;
    Ok(Json(title_json(&entry)).into_response())
}

pub(super) async fn delete_title(
    State(state): State<PlatformState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    empty_or_json(&headers, &body)?;
    let id = title_id("title_id", None, Some(&id))?;
    let entry = state.catalog.delete(id).await?;
    Ok(Json(json!({ "id": id, "deleted": true, "version": entry.version })).into_response())
}

fn parameter<'a>(query: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    query
        .get(name)
        .map(|value| value.trim())
        .filter(|value| !value.is_empty())
}

fn year(query: &HashMap<String, String>, name: &str) -> Result<Option<u16>, ApiError> {
    parameter(query, name)
        .map(|text| {
            text.parse::<u16>()
                .ok()
                .filter(|year| (1870..=2100).contains(year))
                .ok_or_else(|| {
                    ApiError::field(
                        name,
                        format!("`{}` is not a year from 1870 to 2100", echo(text)),
                    )
                })
        })
        .transpose()
}

/// `GET /v1/search` as a request to the index.
fn search_request(query: &HashMap<String, String>) -> Result<SearchRequest, ApiError> {
    let q = query.get("q").map(String::as_str).unwrap_or("");
    if q.len() > search::query::MAX_QUERY_BYTES {
        return Err(ApiError::field(
            "q",
            format!("at most {} bytes", search::query::MAX_QUERY_BYTES),
        ));
    }
    let checked = |name: &str, check: fn(&str) -> Result<String, String>| {
        parameter(query, name)
            .map(|text| check(text).map_err(|message| ApiError::field(name, message)))
            .transpose()
    };
    let year_from = year(query, "year_from")?;
    let year_to = year(query, "year_to")?;
    if let (Some(from), Some(to)) = (year_from, year_to) {
        if to < from {
            return Err(ApiError::field("year_to", "must not be before `year_from`"));
        }
    }
    let country = parameter(query, "country")
        .map(|text| {
            CountryCode::parse(text).ok_or_else(|| {
                ApiError::field(
                    "country",
                    format!("`{}` is not an ISO 3166-1 alpha-2 code", echo(text)),
                )
            })
        })
        .transpose()?;
    let mut ratings = Vec::new();
    for text in parameter(query, "maturity").unwrap_or("").split(',') {
        if text.trim().is_empty() {
            continue;
        }
        let rating = maturity(text).ok_or_else(|| {
            ApiError::field(
                "maturity",
                format!(
                    "`{}` is not a rating ({})",
                    echo(text),
                    crate::catalog::input::MATURITY_RATINGS.join(", ")
                ),
            )
        })?;
        if !ratings.iter().any(|known| known == rating) {
            ratings.push(rating.to_owned());
        }
    }
    let limit = match parameter(query, "limit") {
        None => 20,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| {
                ApiError::field("limit", format!("must be an integer from 1 to {MAX_LIMIT}"))
            })?,
    };
    let facets = match parameter(query, "facets") {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => return Err(ApiError::field("facets", "must be true or false")),
    };
    let after = parameter(query, "after")
        .map(|text| Cursor::decode(text).map_err(|error| refusal(&error)))
        .transpose()?;
    Ok(SearchRequest {
        q: q.to_owned(),
        filters: Filters {
            genre: checked("genre", genre)?,
            year_from,
            year_to,
            language: checked("language", language)?,
            country,
            maturity: ratings,
        },
        limit,
        after,
        facets,
        today: today(),
    })
}

/// A search the index refused as asked: a 400, naming `after` when the cursor was the cause
/// (the search port's messages say `after: ...` then).
fn refusal(error: &SearchError) -> ApiError {
    let message = error.to_string();
    match message.strip_prefix("after: ") {
        Some(rest) => ApiError::field("after", rest),
        None => ApiError::BadRequest(message),
    }
}

pub(super) async fn search(
    State(state): State<PlatformState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let request = search_request(&query)?;
    match state.catalog.search(&request).await {
        Ok(response) => Ok(Json(response).into_response()),
        Err(CatalogError::Search(error @ SearchError::BadRequest(_))) => Err(refusal(&error)),
        Err(error) => Err(error.into()),
    }
}

/// Rebuilds the search index from the command store and switches to it (admin).
pub(super) async fn reindex(
    State(state): State<PlatformState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    empty_or_json(&headers, &body)?;
    let report =
        crate::catalog::reindex::reindex(state.catalog.store(), state.catalog.index()).await?;
    Ok(Json(report).into_response())
}
