//! The command side: each command checks its input's meaning against the store, moves money
//! through the gateway, and commits its change with the outbox event in one transaction.
//! See `../store/store.md` for the transactions and the idempotency keys.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::domain::{
    now_ms, sha256_hex, DeviceId, IdempotencyKey, PaymentToken, PlanId, SubscriptionId, UserId,
};
use crate::payments::{Charge, ChargeRequest, PaymentError, PaymentGateway};
use crate::store::{
    Claim, CommandStore, NewPlan, NewSubscription, NewUser, Payment, Plan, StoreError,
    StoredResponse, Subscription, SubscriptionView, User,
};

/// Why a command was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No user with this id.
    #[error("user {0} not found")]
    UserNotFound(i64),
    /// No plan with this id.
    #[error("plan {0} not found")]
    PlanNotFound(i64),
    /// The plan exists but is not available for new subscriptions.
    #[error("plan {0} is not available")]
    PlanUnavailable(i64),
    /// No subscription with this id.
    #[error("subscription {0} not found")]
    SubscriptionNotFound(i64),
    /// The user already has an active subscription to the plan: nothing was charged (or the
    /// charge of a request that lost the race to another was refunded).
    #[error("user {user_id} already has an active subscription to plan {plan_id}")]
    AlreadySubscribed { user_id: i64, plan_id: i64 },
    /// The request lost a race to another subscription of the same user to the same plan
    /// after its charge, and the refund did not go through yet. The key stays claimed: once
    /// its lease is over, a retry with the same key finds the charge and refunds it.
    #[error("already subscribed; the refund of this request's charge is pending: retry with the same Idempotency-Key")]
    RefundPending,
    /// The email address belongs to another user.
    #[error("email already registered")]
    EmailTaken,
    /// The payment was declined; nothing was created.
    #[error("payment declined: {0}")]
    Declined(String),
    /// The gateway did not say whether it charged, even after reconciling; nothing was
    /// created, and a retry with the same key reconciles first (it cannot charge twice).
    #[error("payment outcome unknown; retry with the same Idempotency-Key")]
    PaymentUnknown,
    /// A request with this idempotency key is still running.
    #[error("a request with this Idempotency-Key is in progress")]
    KeyInProgress,
    /// The idempotency key was used with a different request body.
    #[error("this Idempotency-Key was used with a different request")]
    KeyMismatch,
    /// The command store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> Self {
        CommandError::Store(error)
    }
}

impl CommandError {
    /// The outcome kept under an idempotency key: final answers are replayed to retries,
    /// passing failures are not (the key is released).
    fn final_outcome(&self) -> Option<StoredResponse> {
        let (outcome, body) = match self {
            CommandError::UserNotFound(id) => ("user_not_found", id.to_string()),
            CommandError::PlanNotFound(id) => ("plan_not_found", id.to_string()),
            CommandError::PlanUnavailable(id) => ("plan_unavailable", id.to_string()),
            CommandError::AlreadySubscribed { user_id, plan_id } => {
                ("already_subscribed", format!("{user_id}:{plan_id}"))
            }
            CommandError::Declined(reason) => ("declined", reason.clone()),
            _ => return None,
        };
        Some(StoredResponse {
            outcome: outcome.to_owned(),
            body,
        })
    }

    fn from_outcome(stored: &StoredResponse) -> CommandError {
        let id = || stored.body.parse().unwrap_or_default();
        match stored.outcome.as_str() {
            "user_not_found" => CommandError::UserNotFound(id()),
            "plan_not_found" => CommandError::PlanNotFound(id()),
            "plan_unavailable" => CommandError::PlanUnavailable(id()),
            "declined" => CommandError::Declined(stored.body.clone()),
            "already_subscribed" => {
                let (user_id, plan_id) = stored.body.split_once(':').unwrap_or_default();
                CommandError::AlreadySubscribed {
                    user_id: user_id.parse().unwrap_or_default(),
                    plan_id: plan_id.parse().unwrap_or_default(),
                }
            }
            other => CommandError::Store(StoreError::Corrupt(format!(
                "idempotency outcome `{other}`"
            ))),
        }
    }
}

/// `POST /v1/subscriptions`, parsed.
#[derive(Debug, Clone)]
pub struct Subscribe {
    pub user_id: UserId,
    pub plan_id: PlanId,
    pub token: PaymentToken,
    /// The device the client pays from, if it says (not part of the request's fingerprint:
    /// a retry from another device is the same request).
    pub device: Option<DeviceId>,
}

impl Subscribe {
    /// The request as the idempotency key remembers it: same key with another fingerprint is
    /// another request (422). The SHA-256 (hex) of the canonical body, so that the key's row
    /// never holds the payment token itself. The canonical body is the form fingerprints were
    /// kept in before they were hashed, so that the stores can hash old rows in place and their
    /// retries still replay.
    pub fn fingerprint(&self) -> String {
        let canonical = format!(
            "user_id={};plan_id={};token={}",
            self.user_id,
            self.plan_id,
            self.token.as_str()
        );
        sha256_hex(canonical.as_bytes())
    }
}

#[derive(Debug, Clone)]
pub struct CommandOptions {
    /// How long one charge may take before it counts as timed out.
    pub charge_timeout: Duration,
    /// Charge attempts (each after reconciling) before answering "outcome unknown".
    pub charge_attempts: u32,
    /// A `running` idempotency key older than this belongs to a crashed request: taken over.
    pub key_lease: Duration,
}

impl Default for CommandOptions {
    fn default() -> Self {
        CommandOptions {
            charge_timeout: Duration::from_secs(10),
            charge_attempts: 3,
            key_lease: Duration::from_secs(60),
        }
    }
}

/// A subscription request's answer: new, or replayed from its idempotency key.
#[derive(Debug)]
pub enum Subscribed {
    Created(SubscriptionView),
    Replayed(SubscriptionView),
}

#[derive(Clone)]
pub struct Commands {
    store: Arc<dyn CommandStore>,
    gateway: Arc<dyn PaymentGateway>,
    options: CommandOptions,
    /// Wakes the outbox relay after a commit (it also polls).
    committed: Arc<Notify>,
}

impl Commands {
    pub fn new(
        store: Arc<dyn CommandStore>,
        gateway: Arc<dyn PaymentGateway>,
        options: CommandOptions,
        committed: Arc<Notify>,
    ) -> Commands {
        Commands {
            store,
            gateway,
            options,
            committed,
        }
    }

    pub fn store(&self) -> &Arc<dyn CommandStore> {
        &self.store
    }

    pub async fn create_user(&self, user: NewUser) -> Result<User, CommandError> {
        let created =
            self.store
                .create_user(&user, now_ms())
                .await
                .map_err(|error| match error {
                    StoreError::Conflict(_) => CommandError::EmailTaken,
                    other => CommandError::Store(other),
                })?;
        self.committed.notify_one();
        Ok(created)
    }

    pub async fn user(&self, id: UserId) -> Result<User, CommandError> {
        self.store
            .user(id)
            .await?
            .ok_or(CommandError::UserNotFound(id.get()))
    }

    pub async fn create_plan(&self, plan: NewPlan) -> Result<Plan, CommandError> {
        Ok(self.store.create_plan(&plan, now_ms()).await?)
    }

    pub async fn plans(&self) -> Result<Vec<Plan>, CommandError> {
        Ok(self.store.plans().await?)
    }

    /// Subscribes under an idempotency key: one charge and one subscription per key, however
    /// many times and however concurrently the request is sent.
    pub async fn subscribe(
        &self,
        key: &IdempotencyKey,
        request: &Subscribe,
    ) -> Result<Subscribed, CommandError> {
        let claim = self
            .store
            .claim_key(
                key,
                &request.fingerprint(),
                now_ms(),
                self.options.key_lease,
            )
            .await?;
        let takeover = match claim {
            Claim::Started { takeover } => takeover,
            Claim::InProgress => return Err(CommandError::KeyInProgress),
            Claim::Mismatch => return Err(CommandError::KeyMismatch),
            Claim::Replay(stored) if stored.outcome == "created" => {
                let view = serde_json::from_str(&stored.body).map_err(|error| {
                    StoreError::Corrupt(format!("stored subscription: {error}"))
                })?;
                return Ok(Subscribed::Replayed(view));
            }
            Claim::Replay(stored) => return Err(CommandError::from_outcome(&stored)),
        };
        let outcome = self.subscribe_claimed(key, request, takeover).await;
        match &outcome {
            // The transaction that created the subscription also finished the key.
            Ok(_) => self.committed.notify_one(),
            // The key's holder left a charge to refund: the lease hands the key to a retry.
            Err(CommandError::RefundPending) => {}
            Err(error) => match error.final_outcome() {
                Some(stored) => self.store.finish_key(key, &stored).await?,
                None => {
                    if let Err(release) = self.store.release_key(key).await {
                        // The lease still frees it later.
                        tracing::warn!(error = %release, "cannot release idempotency key");
                    }
                }
            },
        }
        outcome.map(|subscription| Subscribed::Created(subscription.view()))
    }

    async fn subscribe_claimed(
        &self,
        key: &IdempotencyKey,
        request: &Subscribe,
        takeover: bool,
    ) -> Result<Subscription, CommandError> {
        if self.store.user(request.user_id).await?.is_none() {
            return Err(CommandError::UserNotFound(request.user_id.get()));
        }
        let plan = self
            .store
            .plan(request.plan_id)
            .await?
            .ok_or(CommandError::PlanNotFound(request.plan_id.get()))?;
        if !plan.available {
            return Err(CommandError::PlanUnavailable(plan.id.get()));
        }
        let already_subscribed = CommandError::AlreadySubscribed {
            user_id: request.user_id.get(),
            plan_id: request.plan_id.get(),
        };
        if self
            .store
            .has_active_subscription(request.user_id, request.plan_id)
            .await?
        {
            // Refused before charging. A crashed holder of this key may have charged already:
            // its key was still running, so no subscription holds that charge; give it back.
            if takeover {
                match self.gateway.find(key).await {
                    Ok(Some(charge)) => self.refund(&charge).await?,
                    Ok(None) => {}
                    Err(error) => {
                        // Unknown whether there is money to give back: keep the key for a retry.
                        tracing::warn!(%error, "cannot look up a taken-over key's charge");
                        return Err(CommandError::RefundPending);
                    }
                }
            }
            return Err(already_subscribed);
        }
        let currency = crate::domain::Currency::try_from(plan.currency.as_str())
            .map_err(|_| StoreError::Corrupt(format!("plan currency {}", plan.currency)))?;
        let charge = self
            .charge_once(
                &ChargeRequest {
                    idempotency_key: key.clone(),
                    token: request.token.clone(),
                    amount_cents: plan.price_cents,
                    currency,
                },
                takeover,
            )
            .await?;
        let new = NewSubscription {
            user_id: request.user_id,
            plan_id: request.plan_id,
            charge,
            idempotency_key: key.clone(),
            payment_fingerprint: request.token.fingerprint(),
            device: request.device.clone(),
        };
        match self
            .store
            .create_subscription(&new, plan.price_cents, &plan.currency, now_ms())
            .await
        {
            Err(StoreError::AlreadySubscribed { .. }) => {
                // Another request for the same user and plan committed between our check and
                // our transaction: this charge buys nothing.
                self.refund(&new.charge).await?;
                Err(already_subscribed)
            }
            outcome => Ok(outcome?),
        }
    }

    /// Refunds a charge no subscription holds, with the same attempts and timeout as a charge;
    /// [`CommandError::RefundPending`] when the gateway never confirms.
    async fn refund(&self, charge: &Charge) -> Result<(), CommandError> {
        for attempt in 1..=self.options.charge_attempts.max(1) {
            let outcome =
                tokio::time::timeout(self.options.charge_timeout, self.gateway.refund(charge))
                    .await
                    .unwrap_or(Err(PaymentError::Timeout(self.options.charge_timeout)));
            match outcome {
                Ok(()) => {
                    tracing::info!(charge_id = %charge.charge_id, "refunded the charge of a duplicate subscription");
                    return Ok(());
                }
                Err(error) => {
                    tracing::warn!(%error, attempt, charge_id = %charge.charge_id, "refund failed")
                }
            }
        }
        tracing::error!(charge_id = %charge.charge_id, "refund not confirmed; a retry of the key after its lease refunds it");
        Err(CommandError::RefundPending)
    }

    /// Charges, reconciling with the gateway by idempotency key after every timeout (and first
    /// of all when taking over a crashed request's key), so that money moves at most once.
    async fn charge_once(
        &self,
        request: &ChargeRequest,
        reconcile_first: bool,
    ) -> Result<Charge, CommandError> {
        if reconcile_first {
            if let Ok(Some(charge)) = self.gateway.find(&request.idempotency_key).await {
                return Ok(charge);
            }
        }
        for attempt in 1..=self.options.charge_attempts.max(1) {
            let outcome =
                tokio::time::timeout(self.options.charge_timeout, self.gateway.charge(request))
                    .await
                    .unwrap_or(Err(PaymentError::Timeout(self.options.charge_timeout)));
            match outcome {
                Ok(charge) => return Ok(charge),
                Err(PaymentError::Declined(reason)) => return Err(CommandError::Declined(reason)),
                Err(error) => {
                    tracing::warn!(%error, attempt, "charge unanswered; reconciling by idempotency key");
                    match self.gateway.find(&request.idempotency_key).await {
                        Ok(Some(charge)) => return Ok(charge),
                        Ok(None) => {}
                        Err(error) => tracing::warn!(%error, "cannot reconcile the charge"),
                    }
                }
            }
        }
        Err(CommandError::PaymentUnknown)
    }

    pub async fn cancel(&self, id: SubscriptionId) -> Result<Subscription, CommandError> {
        let cancelled = self
            .store
            .cancel_subscription(id, now_ms())
            .await?
            .ok_or(CommandError::SubscriptionNotFound(id.get()))?;
        self.committed.notify_one();
        Ok(cancelled)
    }

    pub async fn subscriptions_of(&self, user: UserId) -> Result<Vec<Subscription>, CommandError> {
        self.user(user).await?;
        Ok(self.store.subscriptions_of(user).await?)
    }

    pub async fn payments_of(&self, user: UserId) -> Result<Vec<Payment>, CommandError> {
        self.user(user).await?;
        Ok(self.store.payments_of(user).await?)
    }
}
