//! Domain types: every value a command carries, parsed once at the edge (`TryFrom`) so that the
//! rest of the platform never sees an unchecked email, price or period.

mod ids;
mod money;
mod text;

pub use ids::{IdempotencyKey, PaymentToken, PlanId, SubscriptionId, UserId};
pub use money::{Currency, PlanPeriod, PriceCents};
pub use text::{Email, Name};
pub use wire::CountryCode;

/// Epoch milliseconds: every timestamp the platform stores (the same clock on both stores).
pub type Millis = i64;

/// Why a value was refused; the caller names the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

impl InvalidValue {
    pub fn new(reason: impl Into<String>) -> InvalidValue {
        InvalidValue(reason.into())
    }
}

/// Parses a country (ISO 3166-1 alpha-2, assigned codes only).
pub fn parse_country(text: &str) -> Result<CountryCode, InvalidValue> {
    CountryCode::parse(text).ok_or_else(|| {
        InvalidValue::new(format!(
            "`{text}` is not an ISO 3166-1 alpha-2 country code"
        ))
    })
}

/// Epoch milliseconds now.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as Millis)
        .unwrap_or(0)
}

/// A timestamp as RFC 3339 with milliseconds, the way the API shows it.
pub fn rfc3339(at: Millis) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

/// A timestamp from a query string: RFC 3339 (`2025-01-31T00:00:00Z`) or epoch milliseconds.
pub fn parse_instant(text: &str) -> Result<Millis, InvalidValue> {
    if let Ok(millis) = text.parse::<i64>() {
        return Ok(millis);
    }
    let at = humantime::parse_rfc3339_weak(text).map_err(|_| {
        InvalidValue::new(format!(
            "`{text}` is neither RFC 3339 (2025-01-31T00:00:00Z) nor epoch milliseconds"
        ))
    })?;
    let since_epoch = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| InvalidValue::new("must not be before 1970"))?;
    Ok(since_epoch.as_millis() as Millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_parse_from_rfc3339_and_from_epoch_millis_alike() {
        assert_eq!(parse_instant("1970-01-01T00:00:01Z").unwrap(), 1_000);
        assert_eq!(parse_instant("1500").unwrap(), 1_500);
        assert!(parse_instant("yesterday").is_err());
    }

    #[test]
    fn timestamps_render_as_rfc3339_with_millis() {
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn only_assigned_countries_parse() {
        assert_eq!(parse_country("fr").unwrap().as_str(), "FR");
        assert!(parse_country("XX").is_err());
    }
}
