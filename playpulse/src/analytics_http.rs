//! The analytics routes: QoE over a span, the live view, trending titles, a viewer's live
//! sessions and where they left each title.
//!
//! - `GET /v1/analytics/qoe?from=MS&to=MS&by=title|country|device|cdn&resolution=minute|hour|day`
//!   `&title=&country=&device=&cdn=&limit=N`
//! - `GET /v1/analytics/live?worst=title,country,device,cdn`
//! - `GET /v1/trending?country=CC&window=now|week&limit=N`
//! - `GET /v1/users/{user_id}/sessions`, `GET /v1/users/{user_id}/continue-watching?limit=N`

use std::collections::HashMap;
use std::sync::Arc;

use analytics::query::{self, Filters, QoeQuery, Resolution};
use analytics::rollup::Dimension;
use analytics::sessions::{continue_from_history, LiveSession, Resume};
use analytics::sidepath::AnalyticsSinks;
use analytics::store::AnalyticsError;
use analytics::trending::Window;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ingest::sink::{EventSink, HistoryQuery};
use serde_json::{json, Value};
use wire::CountryCode;

/// What the routes reach.
#[derive(Clone)]
pub struct AnalyticsApi {
    pub sinks: AnalyticsSinks,
    /// The viewing history: "continue watching" is rebuilt from it.
    pub history: Arc<dyn EventSink>,
}

const DEFAULT_SPAN_MS: i64 = 3_600_000;
const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 100;
/// Events of history read to rebuild "continue watching".
const HISTORY_EVENTS: usize = 10_000;

pub fn router(api: AnalyticsApi) -> Router {
    Router::new()
        .route("/v1/analytics/qoe", get(get_qoe))
        .route("/v1/analytics/live", get(get_live))
        .route("/v1/trending", get(get_trending))
        .route("/v1/users/{user_id}/sessions", get(get_sessions))
        .route("/v1/users/{user_id}/continue-watching", get(get_continue))
        .with_state(api)
}

/// How an analytics failure answers: a bad parameter is the client's (400), an engine down 503.
struct Failure(StatusCode, String);

impl From<AnalyticsError> for Failure {
    fn from(error: AnalyticsError) -> Failure {
        let status = match &error {
            AnalyticsError::Invalid(_) => StatusCode::BAD_REQUEST,
            AnalyticsError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AnalyticsError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(status, error.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(json!({"error": self.1}))).into_response();
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

fn bad(message: String) -> Failure {
    Failure(StatusCode::BAD_REQUEST, message)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

type Params = HashMap<String, String>;

fn epoch_ms(params: &Params, name: &str, default: i64) -> Result<i64, Failure> {
    params.get(name).map_or(Ok(default), |text| {
        text.parse::<i64>()
            .ok()
            .filter(|value| *value >= 0)
            .ok_or_else(|| {
                bad(format!(
                    "`{name}` must be epoch milliseconds, got {}",
                    wire::echo(text)
                ))
            })
    })
}

fn limit(params: &Params, default: usize, max: usize) -> Result<usize, Failure> {
    params.get("limit").map_or(Ok(default), |text| {
        text.parse::<usize>()
            .ok()
            .filter(|limit| (1..=max).contains(limit))
            .ok_or_else(|| {
                bad(format!(
                    "`limit` must be between 1 and {max}, got {}",
                    wire::echo(text)
                ))
            })
    })
}

fn country(params: &Params) -> Result<Option<CountryCode>, Failure> {
    params
        .get("country")
        .filter(|text| !text.is_empty())
        .map(|text| {
            CountryCode::parse(text).ok_or_else(|| {
                bad(format!(
                    "`country` must be an ISO 3166-1 alpha-2 code, got {}",
                    wire::echo(text)
                ))
            })
        })
        .transpose()
}

fn user_id(text: &str) -> Result<u64, Failure> {
    text.parse::<u64>().map_err(|_| {
        bad(format!(
            "user_id must be a non-negative integer, got {}",
            wire::echo(text)
        ))
    })
}

async fn get_qoe(
    State(api): State<AnalyticsApi>,
    Query(params): Query<Params>,
) -> Result<Json<query::QoeAnswer>, Failure> {
    let now = now_ms();
    let to_ms = epoch_ms(&params, "to", now)?;
    let from_ms = epoch_ms(
        &params,
        "from",
        to_ms.saturating_sub(DEFAULT_SPAN_MS).max(0),
    )?;
    if from_ms > to_ms {
        return Err(bad(format!("`from` ({from_ms}) is after `to` ({to_ms})")));
    }
    let by = params
        .get("by")
        .map(|text| {
            Dimension::parse(text).ok_or_else(|| {
                bad(format!(
                    "`by` must be title, country, device or cdn, got {}",
                    wire::echo(text)
                ))
            })
        })
        .transpose()?;
    let resolution = params
        .get("resolution")
        .map(|text| {
            Resolution::parse(text).ok_or_else(|| {
                bad(format!(
                    "`resolution` must be minute, hour or day, got {}",
                    wire::echo(text)
                ))
            })
        })
        .transpose()?
        .unwrap_or(Resolution::Minute);
    let filter = |name: &str| -> Result<Option<String>, Failure> {
        match params.get(name) {
            None => Ok(None),
            Some(text) if text.is_empty() || text.len() > 64 => Err(bad(format!(
                "`{name}` must be 1 to 64 bytes, got {}",
                wire::echo(text)
            ))),
            Some(text) => Ok(Some(text.clone())),
        }
    };
    if let Some(title) = params.get("title") {
        if title.parse::<u64>().is_err() && title != analytics::rollup::UNKNOWN {
            return Err(bad(format!(
                "`title` must be a title id, got {}",
                wire::echo(title)
            )));
        }
    }
    let country_filter = match params.get("country") {
        Some(text) if text == analytics::rollup::UNKNOWN => Some(text.clone()),
        _ => country(&params)?.map(|code| code.to_string()),
    };
    let query = QoeQuery {
        from_ms,
        to_ms,
        by,
        filters: Filters {
            title: filter("title")?,
            country: country_filter,
            device: filter("device")?,
            cdn: filter("cdn")?,
        },
        resolution,
        limit: limit(&params, DEFAULT_LIMIT, query::MAX_SERIES)?,
    };
    Ok(Json(query::qoe(api.sinks.rollups.as_ref(), &query).await?))
}

async fn get_live(
    State(api): State<AnalyticsApi>,
    Query(params): Query<Params>,
) -> Result<Json<query::LiveAnswer>, Failure> {
    // `worst=device,country,cdn`: rank only these (a ranking of titles reads most of the rows).
    let worst_of = match params.get("worst") {
        None => Dimension::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .filter(|name| !name.is_empty())
            .map(|name| {
                Dimension::parse(name).ok_or_else(|| {
                    bad(format!(
                        "`worst` lists title, country, device or cdn, got {}",
                        wire::echo(name)
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(Json(
        query::live(
            api.sinks.rollups.as_ref(),
            api.sinks.sessions.as_ref(),
            now_ms(),
            &worst_of,
        )
        .await?,
    ))
}

async fn get_trending(
    State(api): State<AnalyticsApi>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, Failure> {
    let country = country(&params)?;
    let window = params
        .get("window")
        .map(|text| {
            Window::parse(text).ok_or_else(|| {
                bad(format!(
                    "`window` must be now or week, got {}",
                    wire::echo(text)
                ))
            })
        })
        .transpose()?
        .unwrap_or(Window::Now);
    let limit = limit(&params, DEFAULT_LIMIT, MAX_LIMIT)?;
    let titles = api
        .sinks
        .trending
        .top(country, window, now_ms(), limit)
        .await?;
    Ok(Json(json!({
        "country": country.map(|code| code.to_string()),
        "window": window,
        "titles": titles,
    })))
}

async fn get_sessions(
    State(api): State<AnalyticsApi>,
    Path(user): Path<String>,
) -> Result<Json<Vec<LiveSession>>, Failure> {
    let user = user_id(&user)?;
    Ok(Json(api.sinks.sessions.of_user(user, now_ms()).await?))
}

async fn get_continue(
    State(api): State<AnalyticsApi>,
    Path(user): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Vec<Resume>>, Failure> {
    let user = user_id(&user)?;
    let limit = limit(&params, 20, MAX_LIMIT)?;
    let mut list = match api.sinks.sessions.continue_watching(user).await? {
        Some(list) => list,
        None => {
            // Not known whole (expired, or never built): from the history, then kept.
            let events = api
                .history
                .history(HistoryQuery {
                    user_id: user,
                    from_ms: i64::MIN,
                    to_ms: i64::MAX,
                    limit: HISTORY_EVENTS,
                })
                .await
                .map_err(|error| Failure(StatusCode::SERVICE_UNAVAILABLE, error.to_string()))?;
            let rebuilt = continue_from_history(&events);
            api.sinks.sessions.remember_continue(user, &rebuilt).await?;
            match api.sinks.sessions.continue_watching(user).await? {
                Some(list) => list,
                None => rebuilt,
            }
        }
    };
    list.truncate(limit);
    Ok(Json(list))
}
