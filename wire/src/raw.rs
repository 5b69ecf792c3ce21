//! Lenient reading of events: every field is read as whatever JSON value it holds, so that a bad
//! field rejects its own event with a reason instead of failing the whole request.
//!
//! Works with any serde deserializer that supports `deserialize_any` (simd-json, serde_json).
//! Nesting is counted here, so an absurdly nested body fails fast instead of overflowing a stack.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::limits::MAX_NESTING;

/// A JSON value as read for one field.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Str(Cow<'a, str>),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Bool(bool),
    Null,
    /// An object or an array (skipped, never a valid field value in v1).
    Nested(&'static str),
}

impl Scalar<'_> {
    /// The JSON type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Scalar::Str(_) => "a string",
            Scalar::Unsigned(_) | Scalar::Signed(_) => "an integer",
            Scalar::Float(_) => "a number with a fraction",
            Scalar::Bool(_) => "a boolean",
            Scalar::Null => "null",
            Scalar::Nested(kind) => kind,
        }
    }
}

/// An event's known fields, each as read; unknown fields are skipped (forward compatibility).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawEvent<'a> {
    pub event_id: Option<Scalar<'a>>,
    pub session_id: Option<Scalar<'a>>,
    pub user_id: Option<Scalar<'a>>,
    pub content_id: Option<Scalar<'a>>,
    pub kind: Option<Scalar<'a>>,
    pub ts: Option<Scalar<'a>>,
    pub sent_at: Option<Scalar<'a>>,
    pub position_ms: Option<Scalar<'a>>,
    pub duration_ms: Option<Scalar<'a>>,
    pub bitrate_kbps: Option<Scalar<'a>>,
    pub buffer_ms: Option<Scalar<'a>>,
    pub error_code: Option<Scalar<'a>>,
    pub device: Option<Scalar<'a>>,
    pub cdn: Option<Scalar<'a>>,
    pub app_version: Option<Scalar<'a>>,
    pub country: Option<Scalar<'a>>,
    /// Bytes of keys and values, unknown fields included (an approximation of its JSON size).
    pub approx_bytes: usize,
    /// The first known field that appeared twice.
    pub duplicate_field: Option<&'static str>,
}

/// One element of a request: an event object, or something else that gets rejected on its own.
// Not boxed: elements sit in one Vec per request, and a Box would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Element<'a> {
    Event(RawEvent<'a>),
    NotAnObject(&'static str),
}

impl<'de> de::Deserialize<'de> for Element<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ElementSeed { depth: 1 }.deserialize(deserializer)
    }
}

/// Reads one element at a given nesting depth.
pub struct ElementSeed {
    pub depth: u32,
}

impl<'de> DeserializeSeed<'de> for ElementSeed {
    type Value = Element<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let value = deserializer.deserialize_any(ValueVisitor { depth: self.depth })?;
        Ok(match value.0 {
            Value::Object(event) => Element::Event(*event),
            Value::Scalar(scalar) => Element::NotAnObject(scalar.type_name()),
        })
    }
}

enum Value<'a> {
    Object(Box<RawEvent<'a>>),
    Scalar(Scalar<'a>),
}

/// A value and the bytes it took.
struct Sized<'a>(Value<'a>, usize);

/// Reads any value; objects at the element level become events, deeper ones are skipped.
struct ValueVisitor {
    depth: u32,
}

impl ValueVisitor {
    fn check_depth<E: de::Error>(&self) -> Result<(), E> {
        if self.depth > MAX_NESTING {
            return Err(E::custom(format!(
                "nesting deeper than {MAX_NESTING} levels"
            )));
        }
        Ok(())
    }

    fn scalar<'a>(scalar: Scalar<'a>, bytes: usize) -> Sized<'a> {
        Sized(Value::Scalar(scalar), bytes)
    }
}

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Sized<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Self::scalar(Scalar::Str(Cow::Borrowed(v)), v.len() + 2))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Self::scalar(
            Scalar::Str(Cow::Owned(v.to_owned())),
            v.len() + 2,
        ))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        let bytes = v.len() + 2;
        Ok(Self::scalar(Scalar::Str(Cow::Owned(v)), bytes))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Self::scalar(Scalar::Unsigned(v), 8))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        let scalar = u64::try_from(v).map_or(Scalar::Signed(v), Scalar::Unsigned);
        Ok(Self::scalar(scalar, 8))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Self::scalar(Scalar::Float(v), 8))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Self::scalar(Scalar::Bool(v), 5))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Self::scalar(Scalar::Null, 4))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Self::scalar(Scalar::Null, 4))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.check_depth()?;
        let mut bytes = 2;
        while let Some(Sized(_, item_bytes)) = seq.next_element_seed(self.deeper())? {
            bytes += item_bytes + 1;
        }
        Ok(Self::scalar(Scalar::Nested("an array"), bytes))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        self.check_depth()?;
        // Only an element (depth 1) is an event; objects inside fields are skipped.
        if self.depth > 1 {
            let mut bytes = 2;
            while let Some(FieldKey(_, key_bytes)) = map.next_key_seed(KeySeed)? {
                let Sized(_, value_bytes) = map.next_value_seed(self.deeper())?;
                bytes += key_bytes + value_bytes + 2;
            }
            return Ok(Self::scalar(Scalar::Nested("an object"), bytes));
        }
        let mut event = RawEvent {
            approx_bytes: 2,
            ..RawEvent::default()
        };
        while let Some(FieldKey(field, key_bytes)) = map.next_key_seed(KeySeed)? {
            let Sized(value, value_bytes) = map.next_value_seed(self.deeper())?;
            event.approx_bytes += key_bytes + value_bytes + 2;
            let scalar = match value {
                Value::Scalar(scalar) => scalar,
                Value::Object(_) => Scalar::Nested("an object"),
            };
            let Some(slot) = event.slot(field) else {
                continue;
            };
            if slot.replace(scalar).is_some() && event.duplicate_field.is_none() {
                event.duplicate_field = field.name();
            }
        }
        Ok(Sized(Value::Object(Box::new(event)), 0))
    }
}

impl ValueVisitor {
    fn deeper(&self) -> ValueSeed {
        ValueSeed {
            depth: self.depth + 1,
        }
    }
}

struct ValueSeed {
    depth: u32,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Sized<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor { depth: self.depth })
    }
}

/// The known fields of v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    EventId,
    SessionId,
    UserId,
    ContentId,
    Kind,
    Ts,
    SentAt,
    PositionMs,
    DurationMs,
    BitrateKbps,
    BufferMs,
    ErrorCode,
    Device,
    Cdn,
    AppVersion,
    Country,
    Unknown,
}

impl Field {
    fn from_name(name: &str) -> Field {
        match name {
            "event_id" => Field::EventId,
            "session_id" => Field::SessionId,
            "user_id" => Field::UserId,
            "content_id" => Field::ContentId,
            "kind" => Field::Kind,
            "ts" => Field::Ts,
            "sent_at" => Field::SentAt,
            "position_ms" => Field::PositionMs,
            "duration_ms" => Field::DurationMs,
            "bitrate_kbps" => Field::BitrateKbps,
            "buffer_ms" => Field::BufferMs,
            "error_code" => Field::ErrorCode,
            "device" => Field::Device,
            "cdn" => Field::Cdn,
            "app_version" => Field::AppVersion,
            "country" => Field::Country,
            _ => Field::Unknown,
        }
    }

    fn name(self) -> Option<&'static str> {
        Some(match self {
            Field::EventId => "event_id",
            Field::SessionId => "session_id",
            Field::UserId => "user_id",
            Field::ContentId => "content_id",
            Field::Kind => "kind",
            Field::Ts => "ts",
            Field::SentAt => "sent_at",
            Field::PositionMs => "position_ms",
            Field::DurationMs => "duration_ms",
            Field::BitrateKbps => "bitrate_kbps",
            Field::BufferMs => "buffer_ms",
            Field::ErrorCode => "error_code",
            Field::Device => "device",
            Field::Cdn => "cdn",
            Field::AppVersion => "app_version",
            Field::Country => "country",
            Field::Unknown => return None,
        })
    }
}

impl<'a> RawEvent<'a> {
    fn slot(&mut self, field: Field) -> Option<&mut Option<Scalar<'a>>> {
        Some(match field {
            Field::EventId => &mut self.event_id,
            Field::SessionId => &mut self.session_id,
            Field::UserId => &mut self.user_id,
            Field::ContentId => &mut self.content_id,
            Field::Kind => &mut self.kind,
            Field::Ts => &mut self.ts,
            Field::SentAt => &mut self.sent_at,
            Field::PositionMs => &mut self.position_ms,
            Field::DurationMs => &mut self.duration_ms,
            Field::BitrateKbps => &mut self.bitrate_kbps,
            Field::BufferMs => &mut self.buffer_ms,
            Field::ErrorCode => &mut self.error_code,
            Field::Device => &mut self.device,
            Field::Cdn => &mut self.cdn,
            Field::AppVersion => &mut self.app_version,
            Field::Country => &mut self.country,
            Field::Unknown => return None,
        })
    }
}

/// A field name and the bytes it took.
struct FieldKey(Field, usize);

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = FieldKey;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = FieldKey;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(FieldKey(Field::from_name(v), v.len() + 2))
    }
}

/// The elements of a JSON array body, at most `max` of them kept.
#[derive(Debug, Default)]
pub struct Elements<'a> {
    pub items: Vec<Element<'a>>,
    /// How many elements the array held beyond `max` (they are read, checked and dropped).
    pub overflow: usize,
}

/// Reads a JSON array of elements; anything but an array is an error of the whole body.
pub struct ElementsSeed {
    pub max: usize,
}

impl<'de> DeserializeSeed<'de> for ElementsSeed {
    type Value = Elements<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ElementsSeed {
    type Value = Elements<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut elements = Elements {
            items: Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max)),
            overflow: 0,
        };
        while elements.items.len() < self.max {
            match seq.next_element_seed(ElementSeed { depth: 1 })? {
                Some(element) => elements.items.push(element),
                None => return Ok(elements),
            }
        }
        while seq.next_element_seed(ValueSeed { depth: 1 })?.is_some() {
            elements.overflow += 1;
        }
        Ok(elements)
    }
}
