//! The command store port: users, plans, subscriptions, payments, idempotency keys, API keys
//! and the transactional outbox, under ACID. PostgreSQL at scale ([`PostgresStore`]), SQLite on the
//! embedded default ([`SqliteStore`]); both run the same SQL ([`common`]) except for their DDL and
//! the way the outbox is claimed. See `store.md` for the invariants.

pub mod catalog;
mod common;
mod postgres;
mod sqlite;

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::domain::{
    rfc3339, Currency, Email, IdempotencyKey, Millis, Name, PlanId, PlanPeriod, PriceCents,
    SubscriptionId, UserId,
};
use crate::keys::{ApiKey, Role};
use crate::outbox::OutboxEvent;
use crate::payments::Charge;

/// Why the command store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness rule refused the write (e.g. an email already taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database failed or could not be reached.
    #[error("command store: {context}: {source}")]
    Database {
        context: &'static str,
        source: sqlx::Error,
    },
    /// A stored value cannot be read back (a bug or a manual edit).
    #[error("command store holds a bad value: {0}")]
    Corrupt(String),
    /// The user already has an active subscription to the plan (the one-active-per-plan
    /// index refused a second one).
    #[error("user {user_id} already has an active subscription to plan {plan_id}")]
    AlreadySubscribed { user_id: i64, plan_id: i64 },
}

impl StoreError {
    pub(crate) fn database(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| match &source {
            sqlx::Error::Database(error) if error.is_unique_violation() => {
                StoreError::Conflict(format!("{context}: {}", error.message()))
            }
            _ => StoreError::Database { context, source },
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub name: Name,
    pub country: crate::domain::CountryCode,
    /// The device the account was created from, if the client said.
    pub device: Option<crate::domain::DeviceId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub country: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct NewPlan {
    pub name: Name,
    pub price: PriceCents,
    pub currency: Currency,
    pub period: PlanPeriod,
    pub available: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub id: PlanId,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub period: PlanPeriod,
    pub available: bool,
    pub created_at: Millis,
}

/// What a successful charge turns into, in one transaction.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub user_id: UserId,
    pub plan_id: PlanId,
    pub charge: Charge,
    pub idempotency_key: IdempotencyKey,
    /// The payment method's fingerprint (never its token).
    pub payment_fingerprint: String,
    /// The device the subscription was paid from, if the client said.
    pub device: Option<crate::domain::DeviceId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub user_id: UserId,
    pub plan_id: PlanId,
    pub payment_id: i64,
    /// `active` or `cancelled`.
    pub status: String,
    pub created_at: Millis,
    pub cancelled_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: i64,
    pub user_id: UserId,
    pub subscription_id: Option<i64>,
    pub amount_cents: i64,
    pub currency: String,
    pub charge_id: String,
    pub status: String,
    pub created_at: Millis,
}

/// The JSON the API shows for a subscription. The store keeps it as the idempotent response,
/// so it lives here, next to the record, rather than in the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SubscriptionView {
    pub id: i64,
    pub user_id: i64,
    pub plan_id: i64,
    pub payment_id: i64,
    pub status: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<String>,
}

impl Subscription {
    pub fn view(&self) -> SubscriptionView {
        SubscriptionView {
            id: self.id.get(),
            user_id: self.user_id.get(),
            plan_id: self.plan_id.get(),
            payment_id: self.payment_id,
            status: self.status.clone(),
            created_at: rfc3339(self.created_at),
            cancelled_at: self.cancelled_at.map(rfc3339),
        }
    }
}

/// The outcome kept under an idempotency key, replayed to a retry. Kept as the command's
/// outcome (`created`, `declined`, ...) rather than an HTTP status: statuses are the HTTP
/// layer's business, mapped in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub outcome: String,
    pub body: String,
}

/// What the store says about an idempotency key when a request arrives with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new (or its first holder vanished past the lease): this request owns it.
    Started { takeover: bool },
    /// A request with this key and this body already finished: replay its response.
    Replay(StoredResponse),
    /// A request with this key is still running.
    InProgress,
    /// The key was used with a different body.
    Mismatch,
}

/// One row of the MRR report, before the money is computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanCount {
    pub plan_id: PlanId,
    pub plan_name: String,
    pub currency: String,
    pub period: PlanPeriod,
    pub price_cents: i64,
    pub active_subscriptions: i64,
}

/// Users with an active subscription at the start and end of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChurnCounts {
    pub active_at_start: i64,
    pub churned: i64,
    pub active_at_end: i64,
}

/// Events claimed by one relay: published, then marked; dropping the batch unmarked hands the
/// events back (the transaction rolls back / the relay lock is released).
#[async_trait]
pub trait OutboxBatch: Send {
    fn events(&self) -> &[OutboxEvent];

    async fn mark_published(self: Box<Self>, now: Millis) -> Result<(), StoreError>;
}

/// The catalog's methods ([`catalog::CatalogStore`]) come with every command store.
#[async_trait]
pub trait CommandStore: catalog::CatalogStore + Send + Sync + 'static {
    /// Creates a user and its `UserCreated` outbox event in one transaction.
    async fn create_user(&self, user: &NewUser, now: Millis) -> Result<User, StoreError>;
    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError>;

    async fn create_plan(&self, plan: &NewPlan, now: Millis) -> Result<Plan, StoreError>;
    async fn plan(&self, id: PlanId) -> Result<Option<Plan>, StoreError>;
    async fn plans(&self) -> Result<Vec<Plan>, StoreError>;

    /// Claims `key` for a request whose canonical body is `fingerprint`. A `running` claim older
    /// than `lease` is taken over (its holder crashed).
    async fn claim_key(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
        now: Millis,
        lease: Duration,
    ) -> Result<Claim, StoreError>;
    /// Keeps the final response of a request that created nothing (404, 409, 402).
    async fn finish_key(
        &self,
        key: &IdempotencyKey,
        response: &StoredResponse,
    ) -> Result<(), StoreError>;
    /// Lets go of a key whose request failed for a passing reason, so that a retry runs again.
    async fn release_key(&self, key: &IdempotencyKey) -> Result<(), StoreError>;
    /// Forgets finished keys created before `before` (kept at least 24 h by the caller).
    async fn purge_keys(&self, before: Millis) -> Result<u64, StoreError>;

    /// Whether `user` has an active subscription to `plan` (checked before charging).
    async fn has_active_subscription(&self, user: UserId, plan: PlanId)
        -> Result<bool, StoreError>;
    /// Subscription, payment, `SubscriptionCreated` outbox event and the key's response: one
    /// transaction. [`StoreError::AlreadySubscribed`] (and nothing written) when the user
    /// already has an active subscription to the plan, however concurrent the requests.
    async fn create_subscription(
        &self,
        new: &NewSubscription,
        amount_cents: i64,
        currency: &str,
        now: Millis,
    ) -> Result<Subscription, StoreError>;
    /// Cancels an active subscription (with its `SubscriptionCancelled` event, one transaction);
    /// cancelling a cancelled one returns it unchanged. `None`: no such subscription.
    async fn cancel_subscription(
        &self,
        id: SubscriptionId,
        now: Millis,
    ) -> Result<Option<Subscription>, StoreError>;
    async fn subscriptions_of(&self, user: UserId) -> Result<Vec<Subscription>, StoreError>;
    async fn payments_of(&self, user: UserId) -> Result<Vec<Payment>, StoreError>;

    /// Claims up to `limit` unpublished events, at most one per user (the oldest), so that
    /// events of one user are published in order even with several relays.
    async fn claim_outbox(&self, limit: i64) -> Result<Box<dyn OutboxBatch>, StoreError>;
    /// Events not yet published (for tests and readiness).
    async fn outbox_pending(&self) -> Result<i64, StoreError>;

    /// Active subscriptions per plan at `at`.
    async fn plan_counts(&self, at: Millis) -> Result<Vec<PlanCount>, StoreError>;
    /// Distinct users with an active subscription at `at`.
    async fn active_users(&self, at: Millis) -> Result<i64, StoreError>;
    async fn churn(&self, from: Millis, to: Millis) -> Result<ChurnCounts, StoreError>;

    /// Keeps a new API key: its SHA-256 (`hash_hex`), never the key. [`StoreError::Conflict`]
    /// when an active key already has `name`.
    async fn create_api_key(
        &self,
        name: &str,
        role: Role,
        prefix: &str,
        hash_hex: &str,
        now: Millis,
    ) -> Result<ApiKey, StoreError>;
    /// The active (not revoked) key with this hash.
    async fn api_key_by_hash(&self, hash_hex: &str) -> Result<Option<ApiKey>, StoreError>;
    /// Every key, revoked ones included, oldest first.
    async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError>;
    /// Revokes the active key named `name_or_prefix`, or else the one active key with that
    /// prefix ([`StoreError::Conflict`] if several share it); `None` when no key matches.
    async fn revoke_api_key(
        &self,
        name_or_prefix: &str,
        now: Millis,
    ) -> Result<Option<ApiKey>, StoreError>;

    async fn ready(&self) -> bool;
}
