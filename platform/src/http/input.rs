//! Reading JSON bodies field by field, so that every refusal names its field (serde's own
//! messages name a line and column, or only the first missing field).

use serde_json::{Map, Value};

use super::ApiError;
use crate::domain::InvalidValue;

pub struct Body(Map<String, Value>);

impl Body {
    pub fn parse(bytes: &[u8]) -> Result<Body, ApiError> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Body(map)),
            Ok(_) => Err(ApiError::BadRequest(
                "the body must be a JSON object".to_owned(),
            )),
            Err(error) => Err(ApiError::BadRequest(format!(
                "the body is not valid JSON: {error}"
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

    pub fn object(&self, field: &str) -> Result<Body, ApiError> {
        match self.required(field)? {
            Value::Object(map) => Ok(Body(map.clone())),
            _ => Err(ApiError::field(field, "must be an object")),
        }
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
        .map_err(|_| ApiError::field(field, format!("`{text}` is not an integer")))?;
    named(field, T::try_from(number))
}
