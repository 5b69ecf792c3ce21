//! The platform's HTTP API: commands (users, plans, subscriptions), queries (profile,
//! recommendations) and billing reports.

mod catalog;
mod error;
mod input;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

pub use error::ApiError;

pub(crate) use self::input::Body;
use self::input::{empty_or_json, named, path_id};
use crate::commands::{Commands, Subscribe, Subscribed};
use crate::domain::{
    echo, now_ms, parse_country, parse_instant, rfc3339, Currency, DeviceId, Email, IdempotencyKey,
    Name, PaymentToken, PlanId, PlanPeriod, PriceCents, SubscriptionId, UserId,
};
use crate::readmodel::ReadModel;
use crate::recommendations::RecommendationService;
use crate::store::{NewPlan, NewUser, Payment, Plan, User};

/// What the handlers reach.
#[derive(Clone)]
pub struct PlatformState {
    pub commands: Commands,
    pub read_model: Arc<dyn ReadModel>,
    pub cache: Arc<dyn cache::Cache>,
    pub recommendations: Arc<RecommendationService>,
    pub fraud: Arc<crate::fraud::FraudRings>,
    pub catalog: crate::catalog::Catalog,
    pub profile_ttl: std::time::Duration,
}

/// The routes; `{user_id}` is spelled as ingest spells it, so both routers merge.
pub fn router(state: PlatformState) -> Router {
    Router::new()
        .route("/v1/users", post(create_user))
        .route("/v1/users/{user_id}", get(get_profile))
        .route("/v1/users/{user_id}/subscriptions", get(list_subscriptions))
        .route("/v1/users/{user_id}/payments", get(list_payments))
        .route(
            "/v1/users/{user_id}/recommendations",
            get(get_recommendations),
        )
        .route("/v1/users/{user_id}/risk", get(get_risk))
        .route("/v1/titles", post(catalog::create_title))
        .route(
            "/v1/titles/{title_id}",
            get(catalog::get_title)
                .put(catalog::replace_title)
                .delete(catalog::delete_title),
        )
        .route("/v1/titles/{title_id}/similar", get(get_similar))
        .route("/v1/search", get(catalog::search))
        .route("/v1/search/reindex", post(catalog::reindex))
        .route("/v1/fraud/rings", get(list_rings))
        .route("/v1/plans", post(create_plan).get(list_plans))
        .route("/v1/subscriptions", post(subscribe))
        .route("/v1/subscriptions/{subscription_id}/cancel", post(cancel))
        .route("/v1/reports/mrr", get(report_mrr))
        .route("/v1/reports/active-subscribers", get(report_active))
        .route("/v1/reports/churn", get(report_churn))
        .with_state(state)
}

/// The optional `device_id` of a command: the device the account acts from.
fn device_id(body: &Body) -> Result<Option<DeviceId>, ApiError> {
    body.optional_string("device_id")?
        .map(|text| named("device_id", DeviceId::try_from(text)))
        .transpose()
}

fn user_json(user: &User) -> serde_json::Value {
    json!({
        "id": user.id.get(),
        "email": user.email,
        "name": user.name,
        "country": user.country,
        "created_at": rfc3339(user.created_at),
    })
}

fn plan_json(plan: &Plan) -> serde_json::Value {
    json!({
        "id": plan.id.get(),
        "name": plan.name,
        "price_cents": plan.price_cents,
        "currency": plan.currency,
        "period": plan.period,
        "available": plan.available,
        "created_at": rfc3339(plan.created_at),
    })
}

fn payment_json(payment: &Payment) -> serde_json::Value {
    json!({
        "id": payment.id,
        "user_id": payment.user_id.get(),
        "subscription_id": payment.subscription_id,
        "amount_cents": payment.amount_cents,
        "currency": payment.currency,
        "charge_id": payment.charge_id,
        "status": payment.status,
        "created_at": rfc3339(payment.created_at),
    })
}

async fn create_user(
    State(state): State<PlatformState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = Body::from_request(&headers, &body)?;
    let user = NewUser {
        email: named("email", Email::try_from(body.string("email")?.to_owned()))?,
        name: named("name", Name::try_from(body.string("name")?.to_owned()))?,
        country: named("country", parse_country(body.string("country")?))?,
        device: device_id(&body)?,
    };
    let created = state.commands.create_user(user).await?;
    Ok((StatusCode::CREATED, Json(user_json(&created))).into_response())
}

/// The profile read model, cache-aside on `user_profile:{id}`.
async fn get_profile(
    State(state): State<PlatformState>,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    let user: UserId = path_id("user_id", &user_id)?;
    let key = wire::keys::user_profile(user.get() as u64);
    if let Ok(Some(bytes)) = state.cache.get(&key).await {
        return Ok(json_bytes(bytes, "hit"));
    }
    let profile = state
        .read_model
        .profile(user)
        .await?
        .ok_or(crate::commands::CommandError::UserNotFound(user.get()))?;
    let document = json!({
        "id": profile.user_id,
        "email": profile.email,
        "name": profile.name,
        "country": profile.country,
        "subscription_active": profile.subscription_active,
        "plan_id": profile.plan_id,
        "subscription_id": profile.subscription_id,
        "subscription_date": profile.subscription_date.map(rfc3339),
        "version": profile.version,
    });
    let bytes = serde_json::to_vec(&document).unwrap_or_default();
    if let Err(error) = state.cache.set(&key, &bytes, state.profile_ttl).await {
        tracing::warn!(%error, "cannot fill the profile cache");
    } else if let Ok(Some(newer)) = state.read_model.profile(user).await {
        // The projector may have applied a newer version and dropped the key between the read
        // above and the fill: then the fill is stale, and would stay for profile_ttl. Seen on
        // the PostgreSQL-only profile, where the cache is a round trip away.
        if newer.version > profile.version {
            let _ = state.cache.unlink(std::slice::from_ref(&key)).await;
        }
    }
    Ok(json_bytes(bytes, "miss"))
}

fn json_bytes(bytes: Vec<u8>, cache: &'static str) -> Response {
    (
        [("content-type", "application/json"), ("x-cache", cache)],
        bytes,
    )
        .into_response()
}

async fn list_subscriptions(
    State(state): State<PlatformState>,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    let user: UserId = path_id("user_id", &user_id)?;
    let subscriptions = state.commands.subscriptions_of(user).await?;
    let views: Vec<_> = subscriptions.iter().map(|s| s.view()).collect();
    Ok(Json(views).into_response())
}

async fn list_payments(
    State(state): State<PlatformState>,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    let user: UserId = path_id("user_id", &user_id)?;
    let payments = state.commands.payments_of(user).await?;
    Ok(Json(payments.iter().map(payment_json).collect::<Vec<_>>()).into_response())
}

async fn get_recommendations(
    State(state): State<PlatformState>,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    let user: UserId = path_id("user_id", &user_id)?;
    let (bytes, status) = state.recommendations.get(user.get() as u64).await?;
    Ok(json_bytes(bytes.as_ref().clone(), status.as_str()))
}

/// `?limit=`: 1 to `max`, `default` when absent.
fn limit(query: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, ApiError> {
    match query.get("limit") {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
            _ => Err(ApiError::field(
                "limit",
                format!("must be an integer from 1 to {max}"),
            )),
        },
    }
}

/// When something computed off the request path was computed, and how old it is now
/// (`null` both when it never was).
fn computed(at: i64) -> (serde_json::Value, serde_json::Value) {
    if at <= 0 {
        return (serde_json::Value::Null, serde_json::Value::Null);
    }
    (json!(rfc3339(at)), json!((now_ms() - at).max(0)))
}

fn identifier_json(identifier: &graph::Identifier) -> serde_json::Value {
    match identifier {
        graph::Identifier::PaymentMethod(fingerprint) => {
            json!({ "kind": "payment_method", "id": fingerprint })
        }
        graph::Identifier::Device(device) => json!({ "kind": "device", "id": device }),
    }
}

/// Titles similar to a title (co-watched, normalized for popularity), from memory; a title
/// no refresh has seen yet has none.
async fn get_similar(
    State(state): State<PlatformState>,
    Path(title_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let title = title_id.parse::<u64>().map_err(|_| {
        ApiError::field(
            "title_id",
            format!(
                "`{}` is not a title id (an unsigned integer)",
                echo(&title_id)
            ),
        )
    })?;
    let limit = limit(&query, 10, 100)?;
    let similar = state.recommendations.recommender().similar_to(title);
    let (titles, at) = match &similar {
        Some(similar) => (&similar.titles[..], similar.computed_at),
        None => (&[][..], 0),
    };
    let (computed_at, age_ms) = computed(at);
    let items: Vec<serde_json::Value> = titles
        .iter()
        .take(limit)
        .map(|similar| {
            json!({
                "content_id": similar.title,
                "score": similar.score,
                "viewers_in_common": similar.together,
            })
        })
        .collect();
    let measure = match state.recommendations.recommender().similarity().measure {
        graph::similarity::Measure::Cosine => "cosine",
        graph::similarity::Measure::Jaccard => "jaccard",
    };
    Ok(Json(json!({
        "content_id": title,
        "source": "co_watching",
        "measure": measure,
        "computed_at": computed_at,
        "age_ms": age_ms,
        "items": items,
    }))
    .into_response())
}

fn link_json(link: &graph::SharedIdentifiers) -> serde_json::Value {
    json!({
        "accounts": [link.user, link.other],
        "identifiers": link.identifiers.iter().map(identifier_json).collect::<Vec<_>>(),
    })
}

/// Fraud rings, largest first, as last computed.
async fn list_rings(
    State(state): State<PlatformState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = limit(&query, 100, 1_000)?;
    let index = state.fraud.index();
    let (computed_at, age_ms) = computed(index.computed_at);
    let rings: Vec<serde_json::Value> = index
        .rings
        .iter()
        .take(limit)
        .map(|ring| {
            json!({
                "ring_id": ring.id,
                "size": ring.accounts.len(),
                "accounts": ring.accounts,
                "identifiers": ring.identifiers.iter().map(identifier_json).collect::<Vec<_>>(),
                "links": ring.links.iter().map(link_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({
        "computed_at": computed_at,
        "age_ms": age_ms,
        "total": index.rings.len(),
        "rings": rings,
    }))
    .into_response())
}

/// An account's fraud risk: 0 outside every ring.
async fn get_risk(
    State(state): State<PlatformState>,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    let user: UserId = path_id("user_id", &user_id)?;
    let risk = state.fraud.risk(user.get() as u64);
    let (computed_at, age_ms) = computed(risk.computed_at);
    Ok(Json(json!({
        "user_id": risk.user,
        "score": risk.score,
        "ring_id": risk.ring,
        "ring_size": risk.ring_accounts,
        "links": risk.links.iter().map(link_json).collect::<Vec<_>>(),
        "computed_at": computed_at,
        "age_ms": age_ms,
    }))
    .into_response())
}

async fn create_plan(
    State(state): State<PlatformState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = Body::from_request(&headers, &body)?;
    let plan = NewPlan {
        name: named("name", Name::try_from(body.string("name")?.to_owned()))?,
        price: named(
            "price_cents",
            PriceCents::try_from(body.integer("price_cents")?),
        )?,
        currency: named("currency", Currency::try_from(body.string("currency")?))?,
        period: named("period", PlanPeriod::try_from(body.string("period")?))?,
        available: body.boolean("available")?,
    };
    let created = state.commands.create_plan(plan).await?;
    Ok((StatusCode::CREATED, Json(plan_json(&created))).into_response())
}

async fn list_plans(State(state): State<PlatformState>) -> Result<Response, ApiError> {
    let plans = state.commands.plans().await?;
    Ok(Json(plans.iter().map(plan_json).collect::<Vec<_>>()).into_response())
}

async fn subscribe(
    State(state): State<PlatformState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // The media type first: a cross-site form post is refused before its headers are read.
    let body = Body::from_request(&headers, &body)?;
    let key = headers
        .get("idempotency-key")
        .ok_or_else(|| ApiError::field("Idempotency-Key", "header is required"))?
        .to_str()
        .map_err(|_| ApiError::field("Idempotency-Key", "must be visible ASCII"))?;
    let key = named("Idempotency-Key", IdempotencyKey::try_from(key))?;
    let payment_method = body.object("payment_method")?;
    let request = Subscribe {
        user_id: named("user_id", UserId::try_from(body.integer("user_id")?))?,
        plan_id: named("plan_id", PlanId::try_from(body.integer("plan_id")?))?,
        token: named(
            "payment_method.token",
            PaymentToken::try_from(payment_method.string("token").map_err(|_| {
                ApiError::field("payment_method.token", "is required and must be a string")
            })?),
        )?,
        device: device_id(&body)?,
    };
    let (status, view, replayed) = match state.commands.subscribe(&key, &request).await? {
        Subscribed::Created(view) => (StatusCode::CREATED, view, "false"),
        Subscribed::Replayed(view) => (StatusCode::CREATED, view, "true"),
    };
    Ok((status, [("idempotent-replayed", replayed)], Json(view)).into_response())
}

async fn cancel(
    State(state): State<PlatformState>,
    Path(subscription_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    empty_or_json(&headers, &body)?;
    let id: SubscriptionId = path_id("subscription_id", &subscription_id)?;
    let cancelled = state.commands.cancel(id).await?;
    Ok(Json(cancelled.view()).into_response())
}

fn instant(query: &HashMap<String, String>, field: &str) -> Result<Option<i64>, ApiError> {
    query
        .get(field)
        .map(|text| named(field, parse_instant(text)))
        .transpose()
}

async fn report_mrr(
    State(state): State<PlatformState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let at = instant(&query, "at")?.unwrap_or_else(now_ms);
    let report = crate::reports::mrr(state.commands.store().as_ref(), at).await?;
    Ok(Json(report).into_response())
}

async fn report_active(
    State(state): State<PlatformState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let at = instant(&query, "at")?.unwrap_or_else(now_ms);
    let report = crate::reports::active_subscribers(state.commands.store().as_ref(), at).await?;
    Ok(Json(report).into_response())
}

async fn report_churn(
    State(state): State<PlatformState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let from = instant(&query, "from")?.ok_or_else(|| ApiError::field("from", "is required"))?;
    let to = instant(&query, "to")?.unwrap_or_else(now_ms);
    if to < from {
        return Err(ApiError::field("to", "must not be before `from`"));
    }
    let report = crate::reports::churn(state.commands.store().as_ref(), from, to).await?;
    Ok(Json(report).into_response())
}
