//! Domain types: every value a command carries, parsed once at the edge (`TryFrom`) so that the
//! rest of the platform never sees an unchecked email, price or period.

mod ids;
mod money;
mod text;

pub use ids::{DeviceId, IdempotencyKey, PaymentToken, PlanId, SubscriptionId, UserId};
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
            "`{}` is not an ISO 3166-1 alpha-2 country code",
            echo(text)
        ))
    })
}

/// SHA-256 of `bytes`, as 64 lower-case hex digits (what the stores keep instead of a secret
/// or a request body).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    hex
}

/// Epoch milliseconds now.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as Millis)
        .unwrap_or(0)
}

/// The first instant the API accepts: 1970-01-01T00:00:00Z (timestamps are never negative).
pub const MIN_INSTANT: Millis = 0;
/// The last instant the API accepts: 9999-12-31T23:59:59.999Z (RFC 3339 has four-digit years).
pub const MAX_INSTANT: Millis = 253_402_300_799_999;

const MILLIS_PER_DAY: i64 = 86_400_000;

/// A timestamp as RFC 3339 with milliseconds, the way the API shows it. Total: an instant
/// outside years 0000..=9999 (which no validated input yields) is written with ISO 8601's
/// expanded, signed year (`+10000-01-01T00:00:00.000Z`) rather than panicking.
pub fn rfc3339(at: Millis) -> String {
    let days = at.div_euclid(MILLIS_PER_DAY);
    let in_day = at.rem_euclid(MILLIS_PER_DAY);
    let (year, month, day) = search::day::civil_from_days(days);
    let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (second, millis) = (in_day / 1_000 % 60, in_day % 1_000);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+05}")
    };
    format!("{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
}

/// A timestamp from a query string: RFC 3339 (`2025-01-31T00:00:00Z`) or epoch milliseconds,
/// between [`MIN_INSTANT`] and [`MAX_INSTANT`].
pub fn parse_instant(text: &str) -> Result<Millis, InvalidValue> {
    let out_of_range =
        || InvalidValue::new("must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z");
    if let Ok(millis) = text.parse::<i64>() {
        return if (MIN_INSTANT..=MAX_INSTANT).contains(&millis) {
            Ok(millis)
        } else {
            Err(out_of_range())
        };
    }
    let at = humantime::parse_rfc3339_weak(text).map_err(|_| {
        InvalidValue::new(format!(
            "`{}` is neither RFC 3339 (2025-01-31T00:00:00Z) nor epoch milliseconds, from 1970 to 9999",
            echo(text)
        ))
    })?;
    let since_epoch = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| out_of_range())?;
    Millis::try_from(since_epoch.as_millis())
        .ok()
        .filter(|millis| *millis <= MAX_INSTANT)
        .ok_or_else(out_of_range)
}

/// A date (`YYYY-MM-DD`, from 1970 to 9999) as days since 1970-01-01.
pub fn parse_date(text: &str) -> Result<i32, InvalidValue> {
    search::day::parse(text).ok_or_else(|| {
        InvalidValue::new(format!(
            "`{}` is not a date YYYY-MM-DD from 1970-01-01 to 9999-12-31",
            echo(text)
        ))
    })
}

/// Days since 1970-01-01 as `YYYY-MM-DD`.
pub fn date_of_day(day: i32) -> String {
    search::day::format(day)
}

/// Today, as days since 1970-01-01 (UTC).
pub fn today() -> i32 {
    (now_ms().div_euclid(MILLIS_PER_DAY)) as i32
}

/// The longest piece of client input an error message repeats.
pub const MAX_ECHO_CHARS: usize = 64;

/// Client input as an error message may quote it: at most [`MAX_ECHO_CHARS`] characters, then
/// an ellipsis, so that a refusal never mirrors an unbounded body back.
pub fn echo(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
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
        assert_eq!(rfc3339(MAX_INSTANT), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn instants_past_year_9999_or_before_1970_are_refused() {
        assert_eq!(parse_instant("253402300799999").unwrap(), MAX_INSTANT);
        assert!(parse_instant("253402300800000").is_err());
        assert!(parse_instant("-1").is_err());
        assert!(parse_instant(&i64::MAX.to_string()).is_err());
        assert!(parse_instant("1969-12-31T23:59:59Z").is_err());
        assert_eq!(
            parse_instant("9999-12-31T23:59:59Z").unwrap(),
            MAX_INSTANT - 999
        );
    }

    #[test]
    fn instants_outside_four_digit_years_render_with_an_expanded_year() {
        assert_eq!(rfc3339(MAX_INSTANT + 1), "+10000-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert!(rfc3339(i64::MIN).starts_with('-'));
        assert!(rfc3339(i64::MAX).starts_with('+'));
    }

    #[test]
    fn sha256_is_written_as_lower_case_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn echoed_input_is_cut_at_64_characters() {
        assert_eq!(echo("short"), "short");
        let long = "é".repeat(100);
        let echoed = echo(&long);
        assert_eq!(echoed.chars().count(), MAX_ECHO_CHARS + 1);
        assert!(echoed.ends_with('…'));
    }

    proptest::proptest! {
        #[test]
        fn rfc3339_never_panics_on_any_i64(at in proptest::num::i64::ANY) {
            let text = rfc3339(at);
            proptest::prop_assert!(text.ends_with('Z'));
        }

        #[test]
        fn rfc3339_agrees_with_humantime_and_parses_back_over_the_supported_range(
            at in MIN_INSTANT..=MAX_INSTANT
        ) {
            let expected = humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(at as u64),
            )
            .to_string();
            let text = rfc3339(at);
            proptest::prop_assert_eq!(&text, &expected);
            proptest::prop_assert_eq!(parse_instant(&text).unwrap(), at);
        }
    }

    #[test]
    fn only_assigned_countries_parse() {
        assert_eq!(parse_country("fr").unwrap().as_str(), "FR");
        assert!(parse_country("XX").is_err());
    }
}
