use std::fmt;

use super::InvalidValue;

/// A price in the currency's minor unit (cents): never negative, at most 10^9 (ten million
/// units), so sums over millions of subscriptions stay far inside an i64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PriceCents(i64);

pub const MAX_PRICE_CENTS: i64 = 1_000_000_000;

impl TryFrom<i64> for PriceCents {
    type Error = InvalidValue;

    fn try_from(cents: i64) -> Result<PriceCents, InvalidValue> {
        if cents < 0 {
            return Err(InvalidValue::new("must not be negative"));
        }
        if cents > MAX_PRICE_CENTS {
            return Err(InvalidValue::new(format!(
                "must be at most {MAX_PRICE_CENTS}"
            )));
        }
        Ok(PriceCents(cents))
    }
}

impl PriceCents {
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A currency as an ISO 4217 alphabetic code (three letters), stored upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl TryFrom<&str> for Currency {
    type Error = InvalidValue;

    fn try_from(text: &str) -> Result<Currency, InvalidValue> {
        let bytes = text.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return Err(InvalidValue::new(format!(
                "`{text}` is not an ISO 4217 code (three letters, e.g. EUR)"
            )));
        }
        Ok(Currency([
            bytes[0].to_ascii_uppercase(),
            bytes[1].to_ascii_uppercase(),
            bytes[2].to_ascii_uppercase(),
        ]))
    }
}

impl Currency {
    pub fn as_str(&self) -> &str {
        // Three ASCII letters, checked by `try_from`.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How often a plan bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanPeriod {
    Monthly,
    Yearly,
}

impl TryFrom<&str> for PlanPeriod {
    type Error = InvalidValue;

    fn try_from(text: &str) -> Result<PlanPeriod, InvalidValue> {
        match text {
            "monthly" => Ok(PlanPeriod::Monthly),
            "yearly" => Ok(PlanPeriod::Yearly),
            other => Err(InvalidValue::new(format!(
                "`{other}` is not a plan period: monthly or yearly"
            ))),
        }
    }
}

impl PlanPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanPeriod::Monthly => "monthly",
            PlanPeriod::Yearly => "yearly",
        }
    }

    /// Billing periods in a month, as a fraction: monthly revenue of `count` subscriptions at
    /// `price` cents, rounded half up to a cent once per plan (not per subscription, so that
    /// the report adds up to what a spreadsheet would compute).
    pub fn monthly_cents(self, price: i64, count: i64) -> i64 {
        match self {
            PlanPeriod::Monthly => price * count,
            PlanPeriod::Yearly => (price * count + 6) / 12,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_prices_are_refused_and_zero_is_free() {
        assert!(PriceCents::try_from(-1).is_err());
        assert_eq!(PriceCents::try_from(0).unwrap().get(), 0);
        assert!(PriceCents::try_from(MAX_PRICE_CENTS + 1).is_err());
    }

    #[test]
    fn currencies_are_three_letters_kept_upper_case() {
        assert_eq!(Currency::try_from("eur").unwrap().as_str(), "EUR");
        for bad in ["", "EU", "EURO", "E1R"] {
            assert!(Currency::try_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_monthly_and_yearly_are_periods() {
        assert_eq!(PlanPeriod::try_from("yearly").unwrap(), PlanPeriod::Yearly);
        assert!(PlanPeriod::try_from("weekly").is_err());
        assert!(PlanPeriod::try_from("Monthly").is_err());
    }

    #[test]
    fn yearly_plans_count_a_twelfth_of_their_price_per_month() {
        assert_eq!(PlanPeriod::Yearly.monthly_cents(12_000, 3), 3_000);
        assert_eq!(PlanPeriod::Yearly.monthly_cents(9_999, 1), 833);
        assert_eq!(PlanPeriod::Monthly.monthly_cents(999, 2), 1_998);
    }
}
