//! The SQL both stores run, written once: PostgreSQL and SQLite agree on `$n` parameters,
//! `RETURNING`, `ON CONFLICT`, CTEs and 64-bit integers, so only the DDL and the outbox claim
//! differ. A macro rather than generics: sqlx's executor bounds over two databases would hide
//! the queries behind a wall of trait bounds.

use sqlx::Row;

use super::{Payment, Plan, PlanCount, StoreError, Subscription, User};
use crate::domain::{PlanId, PlanPeriod, SubscriptionId, UserId};
use crate::keys::{ApiKey, Role};
use crate::outbox::{EventKind, OutboxEvent};

pub(super) const USER_COLUMNS: &str = "id, email, name, country, created_at";
pub(super) const PLAN_COLUMNS: &str =
    "id, name, price_cents, currency, period, available, created_at";
pub(super) const SUBSCRIPTION_COLUMNS: &str =
    "id, user_id, plan_id, payment_id, status, created_at, cancelled_at";
pub(super) const OUTBOX_COLUMNS: &str =
    "seq, event_id, user_id, version, kind, payload, created_at";
pub(super) const API_KEY_COLUMNS: &str = "id, name, role, prefix, created_at, revoked_at";

/// At most one active subscription per user and plan: the last guard behind the command's
/// check, for requests that race past it. Created after the tables, once no duplicates
/// remain (see [`DUPLICATE_ACTIVE_SUBSCRIPTIONS`]); the same DDL on both engines.
pub(super) const ONE_ACTIVE_SUBSCRIPTION_PER_PLAN: &str =
    "CREATE UNIQUE INDEX IF NOT EXISTS subscriptions_one_active_per_plan \
     ON subscriptions (user_id, plan_id) WHERE status = 'active'";

/// A database from before the index may hold what it forbids: found first, so that opening
/// it fails with a message an operator can act on rather than a bare constraint error.
pub(super) const DUPLICATE_ACTIVE_SUBSCRIPTIONS: &str =
    "SELECT user_id, plan_id, COUNT(*) AS active FROM subscriptions WHERE status = 'active' \
     GROUP BY user_id, plan_id HAVING COUNT(*) > 1 ORDER BY user_id, plan_id LIMIT 1";

/// The refusal for the row [`DUPLICATE_ACTIVE_SUBSCRIPTIONS`] found, from its columns as each
/// engine's row reads them.
pub(super) fn duplicate_subscriptions(
    column: impl Fn(&str) -> Result<i64, sqlx::Error>,
) -> StoreError {
    match (column("user_id"), column("plan_id"), column("active")) {
        (Ok(user_id), Ok(plan_id), Ok(active)) => StoreError::Corrupt(format!(
            "user {user_id} holds {active} active subscriptions to plan {plan_id}: cancel all \
             but one (and refund them) before this version can open the store"
        )),
        (Err(error), _, _) | (_, Err(error), _) | (_, _, Err(error)) => {
            StoreError::database("duplicate subscriptions")(error)
        }
    }
}

fn corrupt(what: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |error| StoreError::Corrupt(format!("{what}: {error}"))
}

fn id<T: TryFrom<i64>>(value: i64, what: &str) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value}")))
}

pub(super) fn user_from<R: Row>(row: &R) -> Result<User, StoreError>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    Ok(User {
        id: id::<UserId>(row.try_get("id").map_err(corrupt("user id"))?, "user id")?,
        email: row.try_get("email").map_err(corrupt("email"))?,
        name: row.try_get("name").map_err(corrupt("name"))?,
        country: row.try_get("country").map_err(corrupt("country"))?,
        created_at: row.try_get("created_at").map_err(corrupt("created_at"))?,
    })
}

pub(super) fn plan_from<R: Row>(row: &R) -> Result<Plan, StoreError>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let period: String = row.try_get("period").map_err(corrupt("period"))?;
    Ok(Plan {
        id: id::<PlanId>(row.try_get("id").map_err(corrupt("plan id"))?, "plan id")?,
        name: row.try_get("name").map_err(corrupt("plan name"))?,
        price_cents: row.try_get("price_cents").map_err(corrupt("price_cents"))?,
        currency: row.try_get("currency").map_err(corrupt("currency"))?,
        period: PlanPeriod::try_from(period.as_str())
            .map_err(|_| StoreError::Corrupt(format!("plan period {period}")))?,
        available: row.try_get("available").map_err(corrupt("available"))?,
        created_at: row.try_get("created_at").map_err(corrupt("created_at"))?,
    })
}

pub(super) fn subscription_from<R: Row>(row: &R) -> Result<Subscription, StoreError>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    Ok(Subscription {
        id: id::<SubscriptionId>(
            row.try_get("id").map_err(corrupt("subscription id"))?,
            "subscription id",
        )?,
        user_id: id::<UserId>(
            row.try_get("user_id").map_err(corrupt("user_id"))?,
            "user id",
        )?,
        plan_id: id::<PlanId>(
            row.try_get("plan_id").map_err(corrupt("plan_id"))?,
            "plan id",
        )?,
        payment_id: row.try_get("payment_id").map_err(corrupt("payment_id"))?,
        status: row.try_get("status").map_err(corrupt("status"))?,
        created_at: row.try_get("created_at").map_err(corrupt("created_at"))?,
        cancelled_at: row
            .try_get("cancelled_at")
            .map_err(corrupt("cancelled_at"))?,
    })
}

pub(super) fn payment_from<R: Row>(row: &R) -> Result<Payment, StoreError>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    Ok(Payment {
        id: row.try_get("id").map_err(corrupt("payment id"))?,
        user_id: id::<UserId>(
            row.try_get("user_id").map_err(corrupt("user_id"))?,
            "user id",
        )?,
        subscription_id: row
            .try_get("subscription_id")
            .map_err(corrupt("subscription_id"))?,
        amount_cents: row
            .try_get("amount_cents")
            .map_err(corrupt("amount_cents"))?,
        currency: row.try_get("currency").map_err(corrupt("currency"))?,
        charge_id: row.try_get("charge_id").map_err(corrupt("charge_id"))?,
        status: row.try_get("status").map_err(corrupt("payment status"))?,
        created_at: row.try_get("created_at").map_err(corrupt("created_at"))?,
    })
}

pub(super) fn api_key_from<R: Row>(row: &R) -> Result<ApiKey, StoreError>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let role: String = row.try_get("role").map_err(corrupt("role"))?;
    Ok(ApiKey {
        id: row.try_get("id").map_err(corrupt("api key id"))?,
        name: row.try_get("name").map_err(corrupt("api key name"))?,
        role: role
            .parse::<Role>()
            .map_err(|_| StoreError::Corrupt(format!("api key role {role}")))?,
        prefix: row.try_get("prefix").map_err(corrupt("api key prefix"))?,
        created_at: row.try_get("created_at").map_err(corrupt("created_at"))?,
        revoked_at: row.try_get("revoked_at").map_err(corrupt("revoked_at"))?,
    })
}

pub(super) fn outbox_from<R: Row>(row: &R) -> Result<OutboxEvent, StoreError>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let event_id: String = row.try_get("event_id").map_err(corrupt("event_id"))?;
    let kind: String = row.try_get("kind").map_err(corrupt("kind"))?;
    let payload: String = row.try_get("payload").map_err(corrupt("payload"))?;
    let payload = serde_json::from_str::<crate::outbox::Payload>(&payload)
        .map_err(|error| StoreError::Corrupt(format!("event payload: {error}")))?;
    Ok(OutboxEvent {
        seq: row.try_get("seq").map_err(corrupt("seq"))?,
        event_id: event_id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("event id {event_id}")))?,
        user_id: id::<UserId>(
            row.try_get("user_id").map_err(corrupt("user_id"))?,
            "user id",
        )?,
        version: row.try_get("version").map_err(corrupt("version"))?,
        kind: EventKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("event kind {kind}")))?,
        profile: payload.profile,
        identifiers: payload.identifiers,
        created_at: row.try_get("created_at").map_err(corrupt("created_at"))?,
    })
}

pub(super) fn plan_count_from<R: Row>(row: &R) -> Result<PlanCount, StoreError>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let period: String = row.try_get("period").map_err(corrupt("period"))?;
    Ok(PlanCount {
        plan_id: id::<PlanId>(row.try_get("id").map_err(corrupt("plan id"))?, "plan id")?,
        plan_name: row.try_get("name").map_err(corrupt("plan name"))?,
        currency: row.try_get("currency").map_err(corrupt("currency"))?,
        period: PlanPeriod::try_from(period.as_str())
            .map_err(|_| StoreError::Corrupt(format!("plan period {period}")))?,
        price_cents: row.try_get("price_cents").map_err(corrupt("price_cents"))?,
        active_subscriptions: row.try_get("active").map_err(corrupt("active"))?,
    })
}

/// Active at `$1`: started by then and not cancelled by then.
pub(super) const ACTIVE_AT: &str =
    "s.created_at <= $1 AND (s.cancelled_at IS NULL OR s.cancelled_at > $1)";

/// Implements [`super::CommandStore`] for a store with a `pool` field and two inherent methods:
/// `write_lock()` (SQLite's one writer; nothing on PostgreSQL) and `claim_outbox_batch(limit)`.
macro_rules! command_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::CommandStore for $store {
            async fn create_user(
                &self,
                user: &$crate::store::NewUser,
                now: $crate::domain::Millis,
            ) -> Result<$crate::store::User, $crate::store::StoreError> {
                use $crate::store::StoreError;
                let _writer = self.write_lock().await;
                let mut tx = self.pool.begin().await.map_err(StoreError::database("begin"))?;
                let row = sqlx::query(&format!(
                    "INSERT INTO users (email, name, country, version, created_at) \
                     VALUES ($1, $2, $3, 1, $4) RETURNING {}",
                    $crate::store::common::USER_COLUMNS
                ))
                .bind(user.email.as_str())
                .bind(user.name.as_str())
                .bind(user.country.as_str())
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::database("insert user (email taken?)"))?;
                let created = $crate::store::common::user_from(&row)?;
                let profile = $crate::readmodel::UserProfile {
                    user_id: created.id.get(),
                    email: created.email.clone(),
                    name: created.name.clone(),
                    country: created.country.clone(),
                    subscription_active: false,
                    plan_id: None,
                    subscription_id: None,
                    subscription_date: None,
                    version: 1,
                };
                let identifiers = $crate::outbox::AccountIdentifiers {
                    payment_method: None,
                    device: user.device.as_ref().map(|device| device.as_str().to_owned()),
                };
                insert_event(&mut tx, $crate::outbox::EventKind::UserCreated, &profile, identifiers, now).await?;
                tx.commit().await.map_err(StoreError::database("commit user"))?;
                Ok(created)
            }

            async fn user(
                &self,
                id: $crate::domain::UserId,
            ) -> Result<Option<$crate::store::User>, $crate::store::StoreError> {
                let row = sqlx::query(&format!(
                    "SELECT {} FROM users WHERE id = $1",
                    $crate::store::common::USER_COLUMNS
                ))
                .bind(id.get())
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("read user"))?;
                row.as_ref().map($crate::store::common::user_from).transpose()
            }

            async fn create_plan(
                &self,
                plan: &$crate::store::NewPlan,
                now: $crate::domain::Millis,
            ) -> Result<$crate::store::Plan, $crate::store::StoreError> {
                let _writer = self.write_lock().await;
                let row = sqlx::query(&format!(
                    "INSERT INTO plans (name, price_cents, currency, period, available, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {}",
                    $crate::store::common::PLAN_COLUMNS
                ))
                .bind(plan.name.as_str())
                .bind(plan.price.get())
                .bind(plan.currency.as_str())
                .bind(plan.period.as_str())
                .bind(plan.available)
                .bind(now)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("insert plan"))?;
                $crate::store::common::plan_from(&row)
            }

            async fn plan(
                &self,
                id: $crate::domain::PlanId,
            ) -> Result<Option<$crate::store::Plan>, $crate::store::StoreError> {
                let row = sqlx::query(&format!(
                    "SELECT {} FROM plans WHERE id = $1",
                    $crate::store::common::PLAN_COLUMNS
                ))
                .bind(id.get())
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("read plan"))?;
                row.as_ref().map($crate::store::common::plan_from).transpose()
            }

            async fn plans(&self) -> Result<Vec<$crate::store::Plan>, $crate::store::StoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT {} FROM plans ORDER BY id",
                    $crate::store::common::PLAN_COLUMNS
                ))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("list plans"))?;
                rows.iter().map($crate::store::common::plan_from).collect()
            }

            async fn claim_key(
                &self,
                key: &$crate::domain::IdempotencyKey,
                fingerprint: &str,
                now: $crate::domain::Millis,
                lease: std::time::Duration,
            ) -> Result<$crate::store::Claim, $crate::store::StoreError> {
                use sqlx::Row;
                use $crate::store::{Claim, StoreError, StoredResponse};
                let _writer = self.write_lock().await;
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_keys (key, fingerprint, state, started_at, created_at) \
                     VALUES ($1, $2, 'running', $3, $3) ON CONFLICT (key) DO NOTHING",
                )
                .bind(key.as_str())
                .bind(fingerprint)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(StoreError::database("claim idempotency key"))?
                .rows_affected();
                if inserted == 1 {
                    return Ok(Claim::Started { takeover: false });
                }
                let row = sqlx::query(
                    "SELECT fingerprint, state, outcome, body, started_at FROM idempotency_keys WHERE key = $1",
                )
                .bind(key.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::database("read idempotency key"))?;
                let Some(row) = row else {
                    // Released between our insert and this read: the client may simply retry.
                    return Ok(Claim::InProgress);
                };
                let stored: String = row.try_get("fingerprint").map_err(StoreError::database("fingerprint"))?;
                if stored != fingerprint {
                    return Ok(Claim::Mismatch);
                }
                let state: String = row.try_get("state").map_err(StoreError::database("state"))?;
                if state == "done" {
                    let outcome: Option<String> = row.try_get("outcome").map_err(StoreError::database("outcome"))?;
                    let body: Option<String> = row.try_get("body").map_err(StoreError::database("body"))?;
                    return Ok(Claim::Replay(StoredResponse {
                        outcome: outcome.unwrap_or_default(),
                        body: body.unwrap_or_default(),
                    }));
                }
                let started_at: i64 = row.try_get("started_at").map_err(StoreError::database("started_at"))?;
                let abandoned_before = now - lease.as_millis() as i64;
                if started_at >= abandoned_before {
                    return Ok(Claim::InProgress);
                }
                // Its holder crashed: take over, unless another request just did.
                let taken = sqlx::query(
                    "UPDATE idempotency_keys SET started_at = $1 \
                     WHERE key = $2 AND state = 'running' AND started_at = $3",
                )
                .bind(now)
                .bind(key.as_str())
                .bind(started_at)
                .execute(&self.pool)
                .await
                .map_err(StoreError::database("take over idempotency key"))?
                .rows_affected();
                Ok(if taken == 1 { Claim::Started { takeover: true } } else { Claim::InProgress })
            }

            async fn finish_key(
                &self,
                key: &$crate::domain::IdempotencyKey,
                response: &$crate::store::StoredResponse,
            ) -> Result<(), $crate::store::StoreError> {
                let _writer = self.write_lock().await;
                sqlx::query(
                    "UPDATE idempotency_keys SET state = 'done', outcome = $1, body = $2 WHERE key = $3",
                )
                .bind(&response.outcome)
                .bind(&response.body)
                .bind(key.as_str())
                .execute(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("finish idempotency key"))?;
                Ok(())
            }

            async fn release_key(
                &self,
                key: &$crate::domain::IdempotencyKey,
            ) -> Result<(), $crate::store::StoreError> {
                let _writer = self.write_lock().await;
                sqlx::query("DELETE FROM idempotency_keys WHERE key = $1 AND state = 'running'")
                    .bind(key.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::store::StoreError::database("release idempotency key"))?;
                Ok(())
            }

            async fn purge_keys(
                &self,
                before: $crate::domain::Millis,
            ) -> Result<u64, $crate::store::StoreError> {
                let _writer = self.write_lock().await;
                let purged = sqlx::query(
                    "DELETE FROM idempotency_keys WHERE state = 'done' AND created_at < $1",
                )
                .bind(before)
                .execute(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("purge idempotency keys"))?
                .rows_affected();
                Ok(purged)
            }

            async fn has_active_subscription(
                &self,
                user: $crate::domain::UserId,
                plan: $crate::domain::PlanId,
            ) -> Result<bool, $crate::store::StoreError> {
                let row = sqlx::query(
                    "SELECT 1 AS found FROM subscriptions \
                     WHERE user_id = $1 AND plan_id = $2 AND status = 'active' LIMIT 1",
                )
                .bind(user.get())
                .bind(plan.get())
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("read active subscription"))?;
                Ok(row.is_some())
            }

            async fn create_subscription(
                &self,
                new: &$crate::store::NewSubscription,
                amount_cents: i64,
                currency: &str,
                now: $crate::domain::Millis,
            ) -> Result<$crate::store::Subscription, $crate::store::StoreError> {
                use sqlx::Row;
                use $crate::store::StoreError;
                let _writer = self.write_lock().await;
                let mut tx = self.pool.begin().await.map_err(StoreError::database("begin"))?;
                let payment_id: i64 = sqlx::query(
                    "INSERT INTO payments (user_id, amount_cents, currency, charge_id, idempotency_key, status, created_at) \
                     VALUES ($1, $2, $3, $4, $5, 'succeeded', $6) RETURNING id",
                )
                .bind(new.user_id.get())
                .bind(amount_cents)
                .bind(currency)
                .bind(&new.charge.charge_id)
                .bind(new.idempotency_key.as_str())
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::database("insert payment"))?
                .try_get("id")
                .map_err(StoreError::database("payment id"))?;
                let row = sqlx::query(&format!(
                    "INSERT INTO subscriptions (user_id, plan_id, payment_id, status, created_at) \
                     VALUES ($1, $2, $3, 'active', $4) RETURNING {}",
                    $crate::store::common::SUBSCRIPTION_COLUMNS
                ))
                .bind(new.user_id.get())
                .bind(new.plan_id.get())
                .bind(payment_id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                // The payment is new, so the one unique rule this insert can break is one
                // active subscription per user and plan. The transaction rolls back (dropped).
                .map_err(|error| match StoreError::database("insert subscription")(error) {
                    StoreError::Conflict(_) => StoreError::AlreadySubscribed {
                        user_id: new.user_id.get(),
                        plan_id: new.plan_id.get(),
                    },
                    other => other,
                })?;
                let subscription = $crate::store::common::subscription_from(&row)?;
                let profile = profile_after_change(&mut tx, new.user_id).await?;
                let identifiers = $crate::outbox::AccountIdentifiers {
                    payment_method: Some(new.payment_fingerprint.clone()),
                    device: new.device.as_ref().map(|device| device.as_str().to_owned()),
                };
                insert_event(&mut tx, $crate::outbox::EventKind::SubscriptionCreated, &profile, identifiers, now).await?;
                let body = serde_json::to_string(&subscription.view())
                    .map_err(|error| StoreError::Corrupt(error.to_string()))?;
                sqlx::query(
                    "UPDATE idempotency_keys SET state = 'done', outcome = 'created', body = $1 WHERE key = $2",
                )
                .bind(body)
                .bind(new.idempotency_key.as_str())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::database("finish idempotency key"))?;
                tx.commit().await.map_err(StoreError::database("commit subscription"))?;
                Ok(subscription)
            }

            async fn cancel_subscription(
                &self,
                id: $crate::domain::SubscriptionId,
                now: $crate::domain::Millis,
            ) -> Result<Option<$crate::store::Subscription>, $crate::store::StoreError> {
                use $crate::store::StoreError;
                let _writer = self.write_lock().await;
                let mut tx = self.pool.begin().await.map_err(StoreError::database("begin"))?;
                let cancelled = sqlx::query(&format!(
                    "UPDATE subscriptions SET status = 'cancelled', cancelled_at = $1 \
                     WHERE id = $2 AND status = 'active' RETURNING {}",
                    $crate::store::common::SUBSCRIPTION_COLUMNS
                ))
                .bind(now)
                .bind(id.get())
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::database("cancel subscription"))?;
                let Some(row) = cancelled else {
                    // Already cancelled (nothing to do, no event) or no such subscription.
                    let existing = sqlx::query(&format!(
                        "SELECT {} FROM subscriptions WHERE id = $1",
                        $crate::store::common::SUBSCRIPTION_COLUMNS
                    ))
                    .bind(id.get())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::database("read subscription"))?;
                    return existing.as_ref().map($crate::store::common::subscription_from).transpose();
                };
                let subscription = $crate::store::common::subscription_from(&row)?;
                let profile = profile_after_change(&mut tx, subscription.user_id).await?;
                insert_event(&mut tx, $crate::outbox::EventKind::SubscriptionCancelled, &profile, Default::default(), now).await?;
                tx.commit().await.map_err(StoreError::database("commit cancellation"))?;
                Ok(Some(subscription))
            }

            async fn subscriptions_of(
                &self,
                user: $crate::domain::UserId,
            ) -> Result<Vec<$crate::store::Subscription>, $crate::store::StoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT {} FROM subscriptions WHERE user_id = $1 ORDER BY created_at, id",
                    $crate::store::common::SUBSCRIPTION_COLUMNS
                ))
                .bind(user.get())
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("list subscriptions"))?;
                rows.iter().map($crate::store::common::subscription_from).collect()
            }

            async fn payments_of(
                &self,
                user: $crate::domain::UserId,
            ) -> Result<Vec<$crate::store::Payment>, $crate::store::StoreError> {
                let rows = sqlx::query(
                    "SELECT p.id, p.user_id, s.id AS subscription_id, p.amount_cents, p.currency, \
                            p.charge_id, p.status, p.created_at \
                     FROM payments p LEFT JOIN subscriptions s ON s.payment_id = p.id \
                     WHERE p.user_id = $1 ORDER BY p.created_at, p.id",
                )
                .bind(user.get())
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("list payments"))?;
                rows.iter().map($crate::store::common::payment_from).collect()
            }

            async fn claim_outbox(
                &self,
                limit: i64,
            ) -> Result<Box<dyn $crate::store::OutboxBatch>, $crate::store::StoreError> {
                self.claim_outbox_batch(limit).await
            }

            async fn outbox_pending(&self) -> Result<i64, $crate::store::StoreError> {
                use sqlx::Row;
                sqlx::query("SELECT COUNT(*) AS pending FROM outbox WHERE published_at IS NULL")
                    .fetch_one(&self.pool)
                    .await
                    .and_then(|row| row.try_get("pending"))
                    .map_err($crate::store::StoreError::database("count outbox"))
            }

            async fn plan_counts(
                &self,
                at: $crate::domain::Millis,
            ) -> Result<Vec<$crate::store::PlanCount>, $crate::store::StoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT p.id, p.name, p.currency, p.period, p.price_cents, COUNT(s.id) AS active \
                     FROM subscriptions s JOIN plans p ON p.id = s.plan_id \
                     WHERE {} \
                     GROUP BY p.id, p.name, p.currency, p.period, p.price_cents \
                     ORDER BY p.currency, p.id",
                    $crate::store::common::ACTIVE_AT
                ))
                .bind(at)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("plan counts"))?;
                rows.iter().map($crate::store::common::plan_count_from).collect()
            }

            async fn active_users(
                &self,
                at: $crate::domain::Millis,
            ) -> Result<i64, $crate::store::StoreError> {
                use sqlx::Row;
                sqlx::query(&format!(
                    "SELECT COUNT(DISTINCT s.user_id) AS users FROM subscriptions s WHERE {}",
                    $crate::store::common::ACTIVE_AT
                ))
                .bind(at)
                .fetch_one(&self.pool)
                .await
                .and_then(|row| row.try_get("users"))
                .map_err($crate::store::StoreError::database("active users"))
            }

            async fn churn(
                &self,
                from: $crate::domain::Millis,
                to: $crate::domain::Millis,
            ) -> Result<$crate::store::ChurnCounts, $crate::store::StoreError> {
                use sqlx::Row;
                let row = sqlx::query(
                    "WITH at_start AS ( \
                         SELECT DISTINCT user_id FROM subscriptions \
                         WHERE created_at <= $1 AND (cancelled_at IS NULL OR cancelled_at > $1)), \
                     at_end AS ( \
                         SELECT DISTINCT user_id FROM subscriptions \
                         WHERE created_at <= $2 AND (cancelled_at IS NULL OR cancelled_at > $2)) \
                     SELECT (SELECT COUNT(*) FROM at_start) AS active_at_start, \
                            (SELECT COUNT(*) FROM at_start a \
                             WHERE NOT EXISTS (SELECT 1 FROM at_end e WHERE e.user_id = a.user_id)) AS churned, \
                            (SELECT COUNT(*) FROM at_end) AS active_at_end",
                )
                .bind(from)
                .bind(to)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("churn"))?;
                let get = |name: &'static str| -> Result<i64, $crate::store::StoreError> {
                    row.try_get(name).map_err($crate::store::StoreError::database("churn row"))
                };
                Ok($crate::store::ChurnCounts {
                    active_at_start: get("active_at_start")?,
                    churned: get("churned")?,
                    active_at_end: get("active_at_end")?,
                })
            }

            async fn create_api_key(
                &self,
                name: &str,
                role: $crate::keys::Role,
                prefix: &str,
                hash_hex: &str,
                now: $crate::domain::Millis,
            ) -> Result<$crate::keys::ApiKey, $crate::store::StoreError> {
                let _writer = self.write_lock().await;
                let row = sqlx::query(&format!(
                    "INSERT INTO api_keys (name, role, prefix, hash, created_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING {}",
                    $crate::store::common::API_KEY_COLUMNS
                ))
                .bind(name)
                .bind(role.as_str())
                .bind(prefix)
                .bind(hash_hex)
                .bind(now)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("insert api key (name taken?)"))?;
                $crate::store::common::api_key_from(&row)
            }

            async fn api_key_by_hash(
                &self,
                hash_hex: &str,
            ) -> Result<Option<$crate::keys::ApiKey>, $crate::store::StoreError> {
                let row = sqlx::query(&format!(
                    "SELECT {} FROM api_keys WHERE hash = $1 AND revoked_at IS NULL",
                    $crate::store::common::API_KEY_COLUMNS
                ))
                .bind(hash_hex)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("read api key"))?;
                row.as_ref().map($crate::store::common::api_key_from).transpose()
            }

            async fn api_keys(
                &self,
            ) -> Result<Vec<$crate::keys::ApiKey>, $crate::store::StoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT {} FROM api_keys ORDER BY id",
                    $crate::store::common::API_KEY_COLUMNS
                ))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::StoreError::database("list api keys"))?;
                rows.iter().map($crate::store::common::api_key_from).collect()
            }

            async fn revoke_api_key(
                &self,
                name_or_prefix: &str,
                now: $crate::domain::Millis,
            ) -> Result<Option<$crate::keys::ApiKey>, $crate::store::StoreError> {
                use sqlx::Row;
                use $crate::store::StoreError;
                let _writer = self.write_lock().await;
                // A name is unique among active keys; a prefix only very likely so.
                let mut ids: Vec<i64> = sqlx::query(
                    "SELECT id FROM api_keys WHERE name = $1 AND revoked_at IS NULL",
                )
                .bind(name_or_prefix)
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::database("find api key by name"))?
                .iter()
                .map(|row| row.try_get("id"))
                .collect::<Result<_, _>>()
                .map_err(StoreError::database("api key id"))?;
                if ids.is_empty() {
                    ids = sqlx::query(
                        "SELECT id FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL",
                    )
                    .bind(name_or_prefix)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(StoreError::database("find api key by prefix"))?
                    .iter()
                    .map(|row| row.try_get("id"))
                    .collect::<Result<_, _>>()
                    .map_err(StoreError::database("api key id"))?;
                }
                let id = match ids.as_slice() {
                    [] => return Ok(None),
                    [id] => *id,
                    several => {
                        return Err(StoreError::Conflict(format!(
                            "{} active keys have the prefix `{}`: revoke by name",
                            several.len(),
                            $crate::domain::echo(name_or_prefix)
                        )))
                    }
                };
                // Conditional: a concurrent revoke of the same key leaves this one `None`.
                let row = sqlx::query(&format!(
                    "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
                     RETURNING {}",
                    $crate::store::common::API_KEY_COLUMNS
                ))
                .bind(now)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::database("revoke api key"))?;
                row.as_ref().map($crate::store::common::api_key_from).transpose()
            }

            async fn ready(&self) -> bool {
                sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
            }
        }

        impl $store {
            /// Fingerprints kept in clear by older versions (the canonical body, payment token
            /// included) become their SHA-256, as new ones are written: their retries still
            /// match, and the tokens are gone. Compare-and-set per row, so that processes
            /// starting together cannot clash.
            async fn hash_plaintext_fingerprints(&self) -> Result<u64, $crate::store::StoreError> {
                use sqlx::Row;
                use $crate::store::StoreError;
                let _writer = self.write_lock().await;
                let rows = sqlx::query(
                    "SELECT key, fingerprint FROM idempotency_keys WHERE fingerprint LIKE 'user_id=%'",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::database("read plaintext fingerprints"))?;
                let mut hashed = 0;
                for row in &rows {
                    let key: String = row.try_get("key").map_err(StoreError::database("key"))?;
                    let plain: String =
                        row.try_get("fingerprint").map_err(StoreError::database("fingerprint"))?;
                    hashed += sqlx::query(
                        "UPDATE idempotency_keys SET fingerprint = $1 WHERE key = $2 AND fingerprint = $3",
                    )
                    .bind($crate::domain::sha256_hex(plain.as_bytes()))
                    .bind(&key)
                    .bind(&plain)
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::database("hash plaintext fingerprint"))?
                    .rows_affected();
                }
                Ok(hashed)
            }
        }

        /// Bumps the user's version (which also locks the user's row until commit, so two
        /// changes of one user are serialized) and reads the profile the change leaves.
        async fn profile_after_change(
            tx: &mut sqlx::Transaction<'static, <$store as $crate::store::common::Backend>::Db>,
            user: $crate::domain::UserId,
        ) -> Result<$crate::readmodel::UserProfile, $crate::store::StoreError> {
            use sqlx::Row;
            use $crate::store::StoreError;
            let row = sqlx::query(
                "UPDATE users SET version = version + 1 WHERE id = $1 \
                 RETURNING email, name, country, version",
            )
            .bind(user.get())
            .fetch_one(&mut **tx)
            .await
            .map_err(StoreError::database("bump user version"))?;
            let field = |name: &'static str| -> Result<String, StoreError> {
                row.try_get(name).map_err(StoreError::database("user row"))
            };
            let version: i64 = row.try_get("version").map_err(StoreError::database("version"))?;
            let active = sqlx::query(
                "SELECT id, plan_id, created_at FROM subscriptions \
                 WHERE user_id = $1 AND status = 'active' ORDER BY created_at DESC, id DESC LIMIT 1",
            )
            .bind(user.get())
            .fetch_optional(&mut **tx)
            .await
            .map_err(StoreError::database("read active subscription"))?;
            let (subscription_id, plan_id, subscription_date) = match &active {
                Some(row) => (
                    Some(row.try_get::<i64, _>("id").map_err(StoreError::database("id"))?),
                    Some(row.try_get::<i64, _>("plan_id").map_err(StoreError::database("plan_id"))?),
                    Some(row.try_get::<i64, _>("created_at").map_err(StoreError::database("created_at"))?),
                ),
                None => (None, None, None),
            };
            Ok($crate::readmodel::UserProfile {
                user_id: user.get(),
                email: field("email")?,
                name: field("name")?,
                country: field("country")?,
                subscription_active: active.is_some(),
                plan_id,
                subscription_id,
                subscription_date,
                version,
            })
        }

        async fn insert_event(
            tx: &mut sqlx::Transaction<'static, <$store as $crate::store::common::Backend>::Db>,
            kind: $crate::outbox::EventKind,
            profile: &$crate::readmodel::UserProfile,
            identifiers: $crate::outbox::AccountIdentifiers,
            now: $crate::domain::Millis,
        ) -> Result<(), $crate::store::StoreError> {
            let payload = serde_json::to_string(&$crate::outbox::Payload {
                profile: profile.clone(),
                identifiers,
            })
                .map_err(|error| $crate::store::StoreError::Corrupt(error.to_string()))?;
            sqlx::query(
                "INSERT INTO outbox (event_id, user_id, version, kind, payload, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(profile.user_id)
            .bind(profile.version)
            .bind(kind.as_str())
            .bind(payload)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err($crate::store::StoreError::database("insert outbox event"))?;
            Ok(())
        }
    };
}

pub(super) use command_store;

/// Which sqlx database a store runs on (names the transaction type in the shared code).
pub(super) trait Backend {
    type Db: sqlx::Database;
}
