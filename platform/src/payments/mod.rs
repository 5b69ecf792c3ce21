//! The payment gateway port and the simulated gateway that ships with PlayPulse.
//!
//! Every charge carries the subscription request's idempotency key, and a gateway keeps at most
//! one charge per key (as real providers do with their own `Idempotency-Key`). That is what makes
//! a timeout safe: the caller asks the gateway what became of the key ([`PaymentGateway::find`])
//! before charging again, and even a blind retry cannot charge twice. A charge the platform
//! cannot use (the user won a race for the same plan under another key) is refunded.

mod simulated;

use std::time::Duration;

use async_trait::async_trait;

pub use simulated::SimulatedGateway;

use crate::domain::{Currency, IdempotencyKey, PaymentToken};

/// A charge request.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    pub idempotency_key: IdempotencyKey,
    pub token: PaymentToken,
    pub amount_cents: i64,
    pub currency: Currency,
}

/// A charge the gateway made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The gateway's own id for it (`ch_...`).
    pub charge_id: String,
    pub amount_cents: i64,
    pub currency: Currency,
}

/// Why a charge did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PaymentError {
    /// The card was declined: nothing was charged.
    #[error("payment declined: {0}")]
    Declined(String),
    /// The gateway's answer did not arrive in time: the charge may or may not have happened.
    #[error("payment gateway timed out after {0:?}")]
    Timeout(Duration),
    /// The gateway could not be reached or failed: nothing was charged.
    #[error("payment gateway unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// Charges once per idempotency key: a second call with the same key returns the first
    /// charge (or the first decline) without charging again.
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, PaymentError>;

    /// What became of a key: the charge if one was made, `None` if none was.
    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Charge>, PaymentError>;

    /// Gives a charge's money back, in full. Idempotent: refunding a refunded charge is a
    /// success that moves nothing.
    async fn refund(&self, charge: &Charge) -> Result<(), PaymentError>;
}
