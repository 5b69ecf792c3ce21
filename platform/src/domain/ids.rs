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

/// A payment method token from the client's payment form (`tok_visa`, ...): an opaque gateway
/// token, never a card number. Anything shaped like a PAN is refused before it can be stored
/// or logged (PCI DSS keeps card numbers out of systems that are not meant to hold them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PaymentToken(String);

impl TryFrom<&str> for PaymentToken {
    type Error = InvalidValue;

    fn try_from(text: &str) -> Result<PaymentToken, InvalidValue> {
        // Checked first: a spaced-out card number is not visible ASCII either, and it deserves
        // the message that says what is wrong.
        if looks_like_a_card_number(text) {
            return Err(InvalidValue::new(
                "looks like a card number: send the payment gateway's token, never the card number",
            ));
        }
        if text.is_empty() || text.len() > 128 || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidValue::new(
                "must be 1 to 128 visible ASCII characters",
            ));
        }
        Ok(PaymentToken(text.to_owned()))
    }
}

/// 13 to 19 digits, perhaps grouped by spaces or dashes, that pass the Luhn check: the shape
/// of a primary account number (ISO/IEC 7812).
fn looks_like_a_card_number(text: &str) -> bool {
    let text = text.trim();
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b' ' || b == b'-')
    {
        return false;
    }
    let digits: Vec<u32> = text
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
        .collect();
    (13..=19).contains(&digits.len()) && passes_luhn(&digits)
}

fn passes_luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(position, &digit)| {
            // Every second digit from the right counts double, its two digits summed.
            let doubled = digit * 2;
            match position % 2 {
                1 if doubled > 9 => doubled - 9,
                1 => doubled,
                _ => digit,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

impl PaymentToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What identifies the payment method without being it: the SHA-256 (hex) of the token,
    /// the identifier the graph links accounts by. The token itself never leaves the
    /// command side.
    pub fn fingerprint(&self) -> String {
        crate::domain::sha256_hex(format!("payment-method:{}", self.0).as_bytes())
    }
}

/// The device an account acted from (the player's install id, a browser fingerprint): opaque,
/// 1 to 128 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceId(String);

impl TryFrom<&str> for DeviceId {
    type Error = InvalidValue;

    fn try_from(text: &str) -> Result<DeviceId, InvalidValue> {
        if text.is_empty() || text.len() > 128 || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidValue::new(
                "must be 1 to 128 visible ASCII characters",
            ));
        }
        Ok(DeviceId(text.to_owned()))
    }
}

impl DeviceId {
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

    #[test]
    fn card_numbers_are_refused_as_payment_tokens_however_they_are_grouped() {
        for pan in [
            "4242424242424242",
            "4242 4242 4242 4242",
            "4242-4242-4242-4242",
            "378282246310005",
            "6011111111111117",
            " 5555555555554444 ",
            "4222222222222",
        ] {
            let refused = PaymentToken::try_from(pan).unwrap_err();
            assert!(refused.0.contains("card number"), "{pan:?}: {refused}");
            assert!(
                !refused.0.contains("4242"),
                "the refusal does not echo the number"
            );
        }
    }

    #[test]
    fn opaque_tokens_and_digit_strings_that_fail_luhn_are_not_card_numbers() {
        for token in [
            "tok_visa",
            "tok_1N3T00LkdIwHu7ixt44h1F8k",
            "4242424242424241",
            "123456789012",
        ] {
            assert!(PaymentToken::try_from(token).is_ok(), "{token:?}");
        }
        assert!(
            PaymentToken::try_from("4242424242424242424242").is_ok(),
            "too long for a PAN"
        );
    }

    proptest! {
        #[test]
        fn an_id_parses_exactly_when_positive(id in any::<i64>()) {
            prop_assert_eq!(UserId::try_from(id).is_ok(), id > 0);
        }
    }
}
