//! Reading JSON bodies field by field, so that every refusal names its field (serde's own
//! messages name a line and column, or only the first missing field).

use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use serde_json::{Map, Value};

use super::ApiError;
use crate::domain::{echo, InvalidValue};

pub struct Body(Map<String, Value>);

impl Body {
    /// The body of a command: `Content-Type: application/json` (parameters such as `charset`
    /// allowed), then a JSON object.
    pub fn from_request(headers: &HeaderMap, bytes: &[u8]) -> Result<Body, ApiError> {
        require_json(headers)?;
        Body::parse(bytes)
    }

    pub fn parse(bytes: &[u8]) -> Result<Body, ApiError> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Body(map)),
            Ok(_) => Err(ApiError::BadRequest(
                "the body must be a JSON object".to_owned(),
            )),
            // serde's own message names its internals and may quote the input: only where.
            Err(error) => Err(ApiError::BadRequest(format!(
                "the body is not valid JSON (line {}, column {})",
                error.line(),
                error.column()
            ))),
        }
    }

    fn required(&self, field: &str) -> Result<&Value, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Err(ApiError::field(field, "is required")),
            Some(value) => Ok(value),
        }
    }

    pub fn string(&self, field: &str) -> Result<&str, ApiError> {
        self.required(field)?
            .as_str()
            .ok_or_else(|| ApiError::field(field, "must be a string"))
    }

    pub fn integer(&self, field: &str) -> Result<i64, ApiError> {
        self.required(field)?
            .as_i64()
            .ok_or_else(|| ApiError::field(field, "must be an integer"))
    }

    pub fn boolean(&self, field: &str) -> Result<bool, ApiError> {
        self.required(field)?
            .as_bool()
            .ok_or_else(|| ApiError::field(field, "must be true or false"))
    }

    /// A string field that may be absent (or null).
    pub fn optional_string(&self, field: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_str()
                .map(Some)
                .ok_or_else(|| ApiError::field(field, "must be a string")),
        }
    }

    /// A field that may be absent (null counts as absent).
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|value| !value.is_null())
    }

    pub fn object(&self, field: &str) -> Result<Body, ApiError> {
        match self.required(field)? {
            Value::Object(map) => Ok(Body(map.clone())),
            _ => Err(ApiError::field(field, "must be an object")),
        }
    }
}

/// A command that takes no body: an empty one may come without a content type; anything
/// else must be declared JSON like every other command's body.
pub fn empty_or_json(headers: &HeaderMap, bytes: &[u8]) -> Result<(), ApiError> {
    if bytes.is_empty() && !headers.contains_key(CONTENT_TYPE) {
        return Ok(());
    }
    require_json(headers)
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = || {
        ApiError::UnsupportedMediaType(
            "the body must be sent as Content-Type: application/json".to_owned(),
        )
    };
    let value = headers.get(CONTENT_TYPE).ok_or_else(refused)?;
    let essence = value
        .to_str()
        .map_err(|_| refused())?
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(refused())
    }
}

/// Attaches the field name to a domain refusal.
pub fn named<T>(field: &str, parsed: Result<T, InvalidValue>) -> Result<T, ApiError> {
    parsed.map_err(|error| ApiError::field(field, error.0))
}

/// A path segment that must be a positive id.
pub fn path_id<T: TryFrom<i64, Error = InvalidValue>>(
    field: &str,
    text: &str,
) -> Result<T, ApiError> {
    let number = text
        .parse::<i64>()
        .map_err(|_| ApiError::field(field, format!("`{}` is not an integer", echo(text))))?;
    named(field, T::try_from(number))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_content_type(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, value.parse().unwrap());
        headers
    }

    #[test]
    fn only_application_json_with_or_without_parameters_is_a_command_body() {
        for accepted in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/json ;charset=UTF-8",
        ] {
            assert!(
                require_json(&with_content_type(accepted)).is_ok(),
                "{accepted}"
            );
        }
        for refused in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "application/json-seq",
            "",
        ] {
            assert!(
                matches!(
                    require_json(&with_content_type(refused)),
                    Err(ApiError::UnsupportedMediaType(_))
                ),
                "{refused}"
            );
        }
        assert!(
            require_json(&HeaderMap::new()).is_err(),
            "no content type at all"
        );
    }

    #[test]
    fn a_bodiless_command_needs_no_content_type_but_a_body_does() {
        assert!(empty_or_json(&HeaderMap::new(), b"").is_ok());
        assert!(empty_or_json(&HeaderMap::new(), b"{}").is_err());
        assert!(empty_or_json(&with_content_type("text/plain"), b"").is_err());
        assert!(empty_or_json(&with_content_type("application/json"), b"{}").is_ok());
    }

    fn refusal(bytes: &[u8]) -> String {
        match Body::parse(bytes) {
            Err(error) => error.to_string(),
            Ok(_) => panic!("{bytes:?} parsed"),
        }
    }

    #[test]
    fn a_body_that_is_not_json_gets_a_stable_message_with_only_its_position() {
        assert_eq!(
            refusal(b"{\"a\": nope-4242424242424242}"),
            "the body is not valid JSON (line 1, column 8)"
        );
        let message = refusal(b"{\"email\": \"unterminated");
        assert!(message.starts_with("the body is not valid JSON (line 1, column "));
        assert!(!message.contains("unterminated") && !message.contains("EOF"));
        assert_eq!(refusal(b"[1, 2]"), "the body must be a JSON object");
    }

    #[test]
    fn a_path_id_that_is_not_an_integer_is_echoed_at_most_64_characters() {
        let long = "9".repeat(10_000) + "x";
        let Err(error) = path_id::<crate::domain::UserId>("user_id", &long) else {
            panic!("parsed");
        };
        let message = error.to_string();
        assert!(message.len() < 120, "{message}");
        assert!(message.contains('…'));
    }
}
