//! `GET /v1/users/{user_id}/history?from=MS&to=MS&limit=N`: newest first, bounds inclusive.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use wire::WireEvent;

use super::{ApiError, AppState};
use crate::sink::HistoryQuery;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 10_000;

pub async fn get_history(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Vec<WireEvent>>, ApiError> {
    let query = parse_query(&user_id, &params)?;
    let events = state.sink.history(query).await?;
    Ok(Json(
        events.iter().map(wire::PlaybackEvent::to_wire).collect(),
    ))
}

fn parse_query(user_id: &str, params: &HashMap<String, String>) -> Result<HistoryQuery, ApiError> {
    let user_id = user_id.parse::<u64>().map_err(|_| {
        ApiError::BadRequest(format!(
            "user_id must be a non-negative integer, got {}",
            wire::echo(user_id)
        ))
    })?;
    let number = |name: &str, default: i64| -> Result<i64, ApiError> {
        params.get(name).map_or(Ok(default), |text| {
            text.parse::<i64>().map_err(|_| {
                ApiError::BadRequest(format!(
                    "`{name}` must be epoch milliseconds, got {}",
                    wire::echo(text)
                ))
            })
        })
    };
    let from_ms = number("from", i64::MIN)?;
    let to_ms = number("to", i64::MAX)?;
    if from_ms > to_ms {
        return Err(ApiError::BadRequest(format!(
            "`from` ({from_ms}) is after `to` ({to_ms})"
        )));
    }
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "`limit` must be between 1 and {MAX_LIMIT}, got {}",
                    wire::echo(text)
                ))
            })?,
    };
    Ok(HistoryQuery {
        user_id,
        from_ms,
        to_ms,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_cover_all_time_and_a_hundred_events() {
        let query = parse_query("7", &params(&[])).unwrap();
        assert_eq!(
            (query.user_id, query.from_ms, query.to_ms, query.limit),
            (7, i64::MIN, i64::MAX, 100)
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        for (user, pairs, word) in [
            ("x", vec![], "user_id"),
            ("-1", vec![], "user_id"),
            ("1", vec![("from", "yesterday")], "from"),
            ("1", vec![("to", "1.5")], "to"),
            ("1", vec![("from", "5"), ("to", "4")], "after"),
            ("1", vec![("limit", "0")], "limit"),
            ("1", vec![("limit", "10001")], "limit"),
        ] {
            let error = parse_query(user, &params(&pairs)).unwrap_err().to_string();
            assert!(error.contains(word), "{error}");
        }
    }
}
