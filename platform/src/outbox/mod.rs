//! The transactional outbox: events written in the same transaction as the change they describe
//! (so an event exists if and only if its transaction committed), and the relay that publishes
//! them to the projectors. See `outbox.md`.

mod relay;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use relay::{Relay, RelayHandle, RelayOptions};

use crate::domain::{Millis, UserId};
use crate::readmodel::UserProfile;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    UserCreated,
    SubscriptionCreated,
    SubscriptionCancelled,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::UserCreated => "UserCreated",
            EventKind::SubscriptionCreated => "SubscriptionCreated",
            EventKind::SubscriptionCancelled => "SubscriptionCancelled",
        }
    }

    pub fn parse(text: &str) -> Option<EventKind> {
        match text {
            "UserCreated" => Some(EventKind::UserCreated),
            "SubscriptionCreated" => Some(EventKind::SubscriptionCreated),
            "SubscriptionCancelled" => Some(EventKind::SubscriptionCancelled),
            _ => None,
        }
    }
}

/// One committed event. It carries the user's profile as the transaction left it, stamped with
/// the user's version: applying it is "keep the newer version", which is idempotent and does
/// not care whether an older event is applied again later.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// Position in the outbox (commit order within one user).
    pub seq: i64,
    pub event_id: Uuid,
    pub user_id: UserId,
    /// The user's version after this event: 1 for `UserCreated`, +1 per later change.
    pub version: i64,
    pub kind: EventKind,
    pub profile: UserProfile,
    /// What the account used in this change, for the graph's fraud rings.
    pub identifiers: AccountIdentifiers,
    pub created_at: Millis,
}

/// Identifiers an account used in a change: the payment method's fingerprint (a subscription
/// paid) and the device (when the client named it). Never a payment token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountIdentifiers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// An event's stored payload: the profile, and the identifiers beside it (absent from
/// payloads written before the graph read them: none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Payload {
    #[serde(flatten)]
    pub profile: UserProfile,
    #[serde(default)]
    pub identifiers: AccountIdentifiers,
}
