use std::fmt;

use super::InvalidValue;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(i64);

        impl TryFrom<i64> for $name {
            type Error = InvalidValue;

            fn try_from(id: i64) -> Result<$name, InvalidValue> {
                if id <= 0 {
                    return Err(InvalidValue::new("must be a positive integer"));
                }
                Ok($name(id))
            }
        }

        impl $name {
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A user, as the command store numbers them (also the `user_id` of playback events).
    UserId
);
id_type!(
    /// A plan.
    PlanId
);
id_type!(
    /// A subscription.
    SubscriptionId
);

/// The client's `Idempotency-Key`: 1 to 255 visible ASCII characters (a UUID, typically).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl TryFrom<&str> for IdempotencyKey {
    type Error = InvalidValue;

    fn try_from(text: &str) -> Result<IdempotencyKey, InvalidValue> {
        if text.is_empty() || text.len() > 255 {
            return Err(InvalidValue::new("must be 1 to 255 characters"));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidValue::new("must be visible ASCII characters"));
        }
        Ok(IdempotencyKey(text.to_owned()))
    }
}

impl IdempotencyKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A payment method token from the client's payment form (`tok_visa`, ...); never a card number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PaymentToken(String);

impl TryFrom<&str> for PaymentToken {
    type Error = InvalidValue;

    fn try_from(text: &str) -> Result<PaymentToken, InvalidValue> {
        if text.is_empty() || text.len() > 128 || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidValue::new(
                "must be 1 to 128 visible ASCII characters",
            ));
        }
        Ok(PaymentToken(text.to_owned()))
    }
}

impl PaymentToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_are_positive() {
        assert!(UserId::try_from(0).is_err());
        assert!(PlanId::try_from(-3).is_err());
        assert_eq!(SubscriptionId::try_from(7).unwrap().get(), 7);
    }

    #[test]
    fn idempotency_keys_are_visible_ascii_up_to_255_bytes() {
        assert!(IdempotencyKey::try_from("7c1e-42").is_ok());
        assert!(IdempotencyKey::try_from("").is_err());
        assert!(IdempotencyKey::try_from("has space").is_err());
        assert!(IdempotencyKey::try_from("k".repeat(256).as_str()).is_err());
    }

    proptest! {
        #[test]
        fn an_id_parses_exactly_when_positive(id in any::<i64>()) {
            prop_assert_eq!(UserId::try_from(id).is_ok(), id > 0);
        }
    }
}
