//! A title as the API takes it and shows it: every field checked, every refusal naming its
//! field (`availability[2].until`), dates as `YYYY-MM-DD`.

use search::{Availability, CountryCode, Title};
use serde_json::{json, Value};

use crate::domain::{date_of_day, echo, parse_date, rfc3339};
use crate::http::{ApiError, Body};
use crate::store::catalog::CatalogEntry;

const MAX_TITLE_CHARS: usize = 300;
const MAX_SYNOPSIS_CHARS: usize = 5_000;
const MAX_NAME_CHARS: usize = 200;
const MAX_NAMES: usize = 200;
const MAX_GENRES: usize = 20;
const MAX_LANGUAGES: usize = 50;
const MAX_WINDOWS: usize = 500;
const YEARS: std::ops::RangeInclusive<i64> = 1870..=2100;
const MAX_RUNTIME_MINUTES: i64 = 100_000;

/// The ratings a title may carry (MPA and US TV), and `NR` for not rated.
pub const MATURITY_RATINGS: [&str; 12] = [
    "G", "PG", "PG-13", "R", "NC-17", "NR", "TV-Y", "TV-Y7", "TV-G", "TV-PG", "TV-14", "TV-MA",
];

/// A rating as the index keeps it (upper case), if it is one.
pub fn maturity(text: &str) -> Option<&'static str> {
    MATURITY_RATINGS
        .iter()
        .find(|rating| rating.eq_ignore_ascii_case(text.trim()))
        .copied()
}

/// A genre as the index keeps it: a lower-case slug.
pub fn genre(text: &str) -> Result<String, String> {
    let slug = text.trim().to_ascii_lowercase();
    let valid = !slug.is_empty()
        && slug.len() <= 40
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(slug)
    } else {
        Err(format!(
            "`{}` is not a genre (1 to 40 of a-z, 0-9 and -)",
            echo(text)
        ))
    }
}

/// An ISO 639-1 language code, lower case.
pub fn language(text: &str) -> Result<String, String> {
    let code = text.trim().to_ascii_lowercase();
    if code.len() == 2 && code.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(code)
    } else {
        Err(format!(
            "`{}` is not an ISO 639-1 language code (two letters)",
            echo(text)
        ))
    }
}

fn text(value: &Value, field: &str, max_chars: usize, required: bool) -> Result<String, ApiError> {
    let text = value
        .as_str()
        .ok_or_else(|| ApiError::field(field, "must be a string"))?
        .trim();
    if required && text.is_empty() {
        return Err(ApiError::field(field, "must not be empty"));
    }
    if text.chars().count() > max_chars {
        return Err(ApiError::field(
            field,
            format!("at most {max_chars} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(ApiError::field(field, "must not hold control characters"));
    }
    Ok(text.to_owned())
}

fn array<'a>(body: &'a Body, field: &str, max: usize) -> Result<&'a [Value], ApiError> {
    match body.get(field) {
        None => Ok(&[]),
        Some(Value::Array(items)) if items.len() <= max => Ok(items),
        Some(Value::Array(_)) => Err(ApiError::field(field, format!("at most {max} entries"))),
        Some(_) => Err(ApiError::field(field, "must be an array")),
    }
}

fn strings(
    body: &Body,
    field: &str,
    max: usize,
    each: impl Fn(&Value, &str) -> Result<String, ApiError>,
) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for (at, item) in array(body, field, max)?.iter().enumerate() {
        let value = each(item, &format!("{field}[{at}]"))?;
        if !out.contains(&value) {
            out.push(value);
        }
    }
    Ok(out)
}

fn checked(
    check: fn(&str) -> Result<String, String>,
) -> impl Fn(&Value, &str) -> Result<String, ApiError> {
    move |value, field| {
        let text = value
            .as_str()
            .ok_or_else(|| ApiError::field(field, "must be a string"))?;
        check(text).map_err(|message| ApiError::field(field, message))
    }
}

fn integer(
    body: &Body,
    field: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ApiError> {
    let value = body.integer(field)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::field(
            field,
            format!("must be from {} to {}", range.start(), range.end()),
        ))
    }
}

fn windows(body: &Body) -> Result<Vec<Availability>, ApiError> {
    let mut windows = Vec::new();
    for (at, item) in array(body, "availability", MAX_WINDOWS)?.iter().enumerate() {
        let field = |name: &str| format!("availability[{at}].{name}");
        let Value::Object(window) = item else {
            return Err(ApiError::field(
                &format!("availability[{at}]"),
                "must be an object",
            ));
        };
        let string = |name: &str| -> Result<Option<&str>, ApiError> {
            match window.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text)),
                Some(_) => Err(ApiError::field(&field(name), "must be a string")),
            }
        };
        let country =
            string("country")?.ok_or_else(|| ApiError::field(&field("country"), "is required"))?;
        let country = CountryCode::parse(country).ok_or_else(|| {
            ApiError::field(
                &field("country"),
                format!("`{}` is not an ISO 3166-1 alpha-2 code", echo(country)),
            )
        })?;
        let date = |name: &str, text: &str| {
            parse_date(text).map_err(|error| ApiError::field(&field(name), error.0))
        };
        let from = string("from")?.ok_or_else(|| ApiError::field(&field("from"), "is required"))?;
        let from = date("from", from)?;
        let until = string("until")?
            .map(|text| date("until", text))
            .transpose()?;
        if until.is_some_and(|until| until < from) {
            return Err(ApiError::field(
                &field("until"),
                "must not be before `from`",
            ));
        }
        windows.push(Availability {
            country,
            from,
            until,
        });
    }
    Ok(windows)
}

/// The title a `POST` or `PUT` body describes, under `id`.
pub fn title_from(body: &Body, id: u64) -> Result<Title, ApiError> {
    let required = |field: &str| {
        body.get(field)
            .ok_or_else(|| ApiError::field(field, "is required"))
    };
    let name = |value: &Value, field: &str| text(value, field, MAX_NAME_CHARS, true);
    let maturity_text = body.string("maturity")?;
    let rating = maturity(maturity_text).ok_or_else(|| {
        ApiError::field(
            "maturity",
            format!("must be one of {}", MATURITY_RATINGS.join(", ")),
        )
    })?;
    Ok(Title {
        id,
        title: text(required("title")?, "title", MAX_TITLE_CHARS, true)?,
        original_title: body
            .get("original_title")
            .map(|value| text(value, "original_title", MAX_TITLE_CHARS, false))
            .transpose()?
            .filter(|original| !original.is_empty()),
        synopsis: body
            .get("synopsis")
            .map(|value| text(value, "synopsis", MAX_SYNOPSIS_CHARS, false))
            .transpose()?
            .unwrap_or_default(),
        genres: strings(body, "genres", MAX_GENRES, checked(genre))?,
        year: integer(body, "year", YEARS)? as u16,
        runtime_minutes: match body.get("runtime_minutes") {
            None => 0,
            Some(_) => integer(body, "runtime_minutes", 0..=MAX_RUNTIME_MINUTES)? as u32,
        },
        maturity: rating.to_owned(),
        cast: strings(body, "cast", MAX_NAMES, name)?,
        crew: strings(body, "crew", MAX_NAMES, name)?,
        audio_languages: strings(body, "audio_languages", MAX_LANGUAGES, checked(language))?,
        subtitle_languages: strings(body, "subtitle_languages", MAX_LANGUAGES, checked(language))?,
        availability: windows(body)?,
    })
}

/// A title id: a positive 63-bit integer (from a body or a path).
pub fn title_id(field: &str, value: Option<&Value>, text: Option<&str>) -> Result<u64, ApiError> {
    let refused = || ApiError::field(field, format!("must be an integer from 1 to {}", i64::MAX));
    let id = match (value, text) {
        (Some(value), _) => value.as_i64().ok_or_else(refused)?,
        (None, Some(text)) => text.parse::<i64>().map_err(|_| {
            ApiError::field(
                field,
                format!("`{}` is not a title id (a positive integer)", echo(text)),
            )
        })?,
        (None, None) => return Err(refused()),
    };
    u64::try_from(id)
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(refused)
}

/// A title as the API shows it.
pub fn title_json(entry: &CatalogEntry) -> Value {
    let title = &entry.title;
    let availability: Vec<Value> = title
        .availability
        .iter()
        .map(|window| {
            json!({
                "country": window.country.as_str(),
                "from": date_of_day(window.from),
                "until": window.until.map(date_of_day),
            })
        })
        .collect();
    json!({
        "id": title.id,
        "title": title.title,
        "original_title": title.original_title,
        "synopsis": title.synopsis,
        "genres": title.genres,
        "year": title.year,
        "runtime_minutes": title.runtime_minutes,
        "maturity": title.maturity,
        "cast": title.cast,
        "crew": title.crew,
        "audio_languages": title.audio_languages,
        "subtitle_languages": title.subtitle_languages,
        "availability": availability,
        "version": entry.version,
        "updated_at": rfc3339(entry.updated_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<Title, String> {
        let body = Body::parse(body.to_string().as_bytes()).map_err(|e| e.to_string())?;
        title_from(&body, 1).map_err(|e| e.to_string())
    }

    fn minimal() -> Value {
        json!({"title": "Heat", "year": 1995, "maturity": "r"})
    }

    #[test]
    fn a_minimal_title_is_normalized() {
        let title = parse(minimal()).unwrap();
        assert_eq!(title.maturity, "R");
        assert!(title.genres.is_empty() && title.availability.is_empty());
    }

    #[test]
    fn every_refusal_names_its_field() {
        let cases = [
            ("title", json!(null)),
            ("title", json!("  ")),
            ("title", json!("x".repeat(301))),
            ("year", json!(1800)),
            ("year", json!("1995")),
            ("maturity", json!("XXX")),
            ("genres", json!("drama")),
            ("genres[1]", json!(["drama", "Sci Fi"])),
            ("audio_languages[0]", json!(["eng"])),
            ("cast[0]", json!([""])),
            ("runtime_minutes", json!(-1)),
            (
                "availability[0].country",
                json!([{"country": "USA", "from": "2024-01-01"}]),
            ),
            (
                "availability[0].from",
                json!([{"country": "US", "from": "2024-13-01"}]),
            ),
            ("availability[0].from", json!([{"country": "US"}])),
            (
                "availability[0].until",
                json!([{"country": "US", "from": "2024-02-01", "until": "2024-01-01"}]),
            ),
            ("availability[0]", json!(["US"])),
        ];
        for (field, value) in cases {
            let mut body = minimal();
            let key = field.split(['[', '.']).next().unwrap();
            body[key] = value;
            let error = parse(body).unwrap_err();
            assert!(error.starts_with(field), "{field}: {error}");
        }
    }

    #[test]
    fn dates_round_trip() {
        let mut body = minimal();
        body["availability"] = json!([{"country": "fr", "from": "2024-02-29", "until": null}]);
        let title = parse(body).unwrap();
        assert_eq!(date_of_day(title.availability[0].from), "2024-02-29");
        assert_eq!(title.availability[0].country.as_str(), "FR");
    }
}
