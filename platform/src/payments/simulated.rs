use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{Charge, ChargeRequest, PaymentError, PaymentGateway};
use crate::domain::IdempotencyKey;

/// A gateway whose behaviour is chosen by the token, like a real provider's test cards:
/// `tok_visa` (and any other token) succeeds, `tok_chargeDeclined` declines, `tok_timeout`
/// charges but its answer never arrives in time (the caller sees [`PaymentError::Timeout`] and
/// must reconcile with [`PaymentGateway::find`]).
///
/// It lives in the process: charges are counted so that tests can prove "exactly one charge".
#[derive(Debug, Default)]
pub struct SimulatedGateway {
    charges: Mutex<HashMap<String, Result<Charge, PaymentError>>>,
    charges_made: AtomicU64,
    /// Charge ids refunded.
    refunded: Mutex<HashSet<String>>,
    /// Simulated time the gateway takes to answer.
    latency: Duration,
}

pub const TOKEN_DECLINED: &str = "tok_chargeDeclined";
pub const TOKEN_TIMEOUT: &str = "tok_timeout";

impl SimulatedGateway {
    pub fn new() -> SimulatedGateway {
        SimulatedGateway::default()
    }

    /// A gateway that takes `latency` to answer each charge (lets tests overlap requests).
    pub fn with_latency(latency: Duration) -> SimulatedGateway {
        SimulatedGateway {
            latency,
            ..SimulatedGateway::default()
        }
    }

    /// Charges actually made (money moved), over the gateway's life.
    pub fn charges_made(&self) -> u64 {
        self.charges_made.load(Ordering::Acquire)
    }

    /// Charges refunded (money given back), over the gateway's life.
    pub fn refunds_made(&self) -> u64 {
        self.refunded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Result<Charge, PaymentError>>> {
        // A panic while holding the lock leaves a consistent map (one insert): keep using it.
        self.charges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, PaymentError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let token = request.token.as_str();
        let outcome = {
            let mut charges = self.lock();
            let key = request.idempotency_key.as_str().to_owned();
            charges
                .entry(key)
                .or_insert_with(|| {
                    if token == TOKEN_DECLINED {
                        return Err(PaymentError::Declined("card declined".to_owned()));
                    }
                    let number = self.charges_made.fetch_add(1, Ordering::AcqRel) + 1;
                    Ok(Charge {
                        charge_id: format!("ch_sim_{number}_{}", uuid::Uuid::new_v4().simple()),
                        amount_cents: request.amount_cents,
                        currency: request.currency,
                    })
                })
                .clone()
        };
        if token == TOKEN_TIMEOUT {
            // The money moved, but the answer is lost on the way back.
            return Err(PaymentError::Timeout(Duration::from_secs(10)));
        }
        outcome
    }

    async fn find(&self, key: &IdempotencyKey) -> Result<Option<Charge>, PaymentError> {
        Ok(self
            .lock()
            .get(key.as_str())
            .and_then(|outcome| outcome.clone().ok()))
    }

    async fn refund(&self, charge: &Charge) -> Result<(), PaymentError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let made = self.lock().values().any(|outcome| {
            outcome
                .as_ref()
                .is_ok_and(|made| made.charge_id == charge.charge_id)
        });
        if !made {
            return Err(PaymentError::Unavailable(format!(
                "no charge {} to refund",
                charge.charge_id
            )));
        }
        self.refunded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(charge.charge_id.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Currency, PaymentToken};

    fn request(key: &str, token: &str) -> ChargeRequest {
        ChargeRequest {
            idempotency_key: IdempotencyKey::try_from(key).unwrap(),
            token: PaymentToken::try_from(token).unwrap(),
            amount_cents: 999,
            currency: Currency::try_from("EUR").unwrap(),
        }
    }

    #[tokio::test]
    async fn the_same_key_charges_once_however_often_it_is_sent() {
        let gateway = SimulatedGateway::new();
        let first = gateway.charge(&request("k1", "tok_visa")).await.unwrap();
        let second = gateway.charge(&request("k1", "tok_visa")).await.unwrap();
        assert_eq!(first, second);
        assert_eq!(gateway.charges_made(), 1);
    }

    #[tokio::test]
    async fn a_declined_card_charges_nothing() {
        let gateway = SimulatedGateway::new();
        let outcome = gateway.charge(&request("k2", TOKEN_DECLINED)).await;
        assert!(matches!(outcome, Err(PaymentError::Declined(_))));
        assert_eq!(gateway.charges_made(), 0);
        assert_eq!(
            gateway.find(&IdempotencyKey::try_from("k2").unwrap()).await,
            Ok(None)
        );
    }

    #[tokio::test]
    async fn a_refund_gives_a_charge_back_once_however_often_it_is_asked() {
        let gateway = SimulatedGateway::new();
        let charge = gateway.charge(&request("k4", "tok_visa")).await.unwrap();
        gateway.refund(&charge).await.unwrap();
        gateway.refund(&charge).await.unwrap();
        assert_eq!((gateway.charges_made(), gateway.refunds_made()), (1, 1));
        let never_made = Charge {
            charge_id: "ch_unknown".to_owned(),
            ..charge
        };
        assert!(gateway.refund(&never_made).await.is_err());
    }

    #[tokio::test]
    async fn a_timed_out_charge_is_found_by_its_key() {
        let gateway = SimulatedGateway::new();
        let outcome = gateway.charge(&request("k3", TOKEN_TIMEOUT)).await;
        assert!(matches!(outcome, Err(PaymentError::Timeout(_))));
        let found = gateway
            .find(&IdempotencyKey::try_from("k3").unwrap())
            .await
            .unwrap();
        assert_eq!(found.map(|charge| charge.amount_cents), Some(999));
        assert_eq!(gateway.charges_made(), 1);
    }
}
