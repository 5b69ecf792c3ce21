use std::fmt;

use super::{echo, InvalidValue};

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

/// A currency as an active ISO 4217 alphabetic code, any case on input, stored upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

/// ISO 4217 list one's active currencies, sorted (for a binary search). Left out on purpose,
/// because no plan is priced in them: funds (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW),
/// precious metals (XAU, XAG, XPD, XPT), units of account (XBA..XBD, XDR, XSU, XUA), the test
/// code XTS and XXX ("no currency"); and withdrawn codes (HRK, SLL, ZWL, ...). ANG stays during
/// its transition to XCG.
const ACTIVE_CURRENCIES: [&str; 157] = [
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VED", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW",
    "ZWG",
];

impl TryFrom<&str> for Currency {
    type Error = InvalidValue;

    fn try_from(text: &str) -> Result<Currency, InvalidValue> {
        let refused = || {
            InvalidValue::new(format!(
                "`{}` is not an active ISO 4217 currency code (e.g. EUR)",
                echo(text)
            ))
        };
        let [a, b, c] = <[u8; 3]>::try_from(text.as_bytes()).map_err(|_| refused())?;
        let code = [a, b, c].map(|byte| byte.to_ascii_uppercase());
        let known = std::str::from_utf8(&code)
            .ok()
            .is_some_and(|code| ACTIVE_CURRENCIES.binary_search(&code).is_ok());
        if !known {
            return Err(refused());
        }
        Ok(Currency(code))
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
                "`{}` is not a plan period: monthly or yearly",
                echo(other)
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
    fn the_currency_table_is_sorted_upper_case_and_without_duplicates() {
        assert!(ACTIVE_CURRENCIES.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(ACTIVE_CURRENCIES
            .iter()
            .all(|code| code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())));
    }

    #[test]
    fn negative_prices_are_refused_and_zero_is_free() {
        assert!(PriceCents::try_from(-1).is_err());
        assert_eq!(PriceCents::try_from(0).unwrap().get(), 0);
        assert!(PriceCents::try_from(MAX_PRICE_CENTS + 1).is_err());
    }

    #[test]
    fn currencies_are_active_iso_4217_codes_kept_upper_case() {
        assert_eq!(Currency::try_from("eur").unwrap().as_str(), "EUR");
        assert_eq!(Currency::try_from("JPY").unwrap().as_str(), "JPY");
        for bad in [
            "", "EU", "EURO", "E1R", "ABC", "XXX", "XTS", "xts", "HRK", "XAU", "ÉUR",
        ] {
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
