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
    pub played_ms: Option<Scalar<'a>>,
    pub startup_ms: Option<Scalar<'a>>,
    pub before_start: Option<Scalar<'a>>,
    pub fatal: Option<Scalar<'a>>,
    pub error_code: Option<Scalar<'a>>,
    pub device: Option<Scalar<'a>>,
    pub cdn: Option<Scalar<'a>>,
    pub app_version: Option<Scalar<'a>>,
    pub country: Option<Scalar<'a>>,
    /// The session's playback token (checked with `auth.playback_tokens`, never stored).
    pub playback_token: Option<Scalar<'a>>,
    /// Bytes of keys and values, unknown fields included (an approximation of its JSON size).
    pub approx_bytes: usize,
    /// The first known field that appeared twice.
    pub duplicate_field: Option<&'static str>,
}

/// One element of a request: an event object, or something else that gets rejected on its own.
// Not boxed: an owned element is for tests and tools; the hot path reads in place (`ElementSeed`).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Element<'a> {
    Event(RawEvent<'a>),
    NotAnObject(&'static str),
}

impl<'de> de::Deserialize<'de> for Element<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut event = RawEvent::default();
        let shape = ElementSeed {
            depth: 1,
            event: &mut event,
        }
        .deserialize(deserializer)?;
        Ok(match shape {
            Shape::Event => Element::Event(event),
            Shape::NotAnObject(kind) => Element::NotAnObject(kind),
        })
    }
}

/// What an element turned out to be; an event's fields are in the caller's [`RawEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Event,
    NotAnObject(&'static str),
}

/// Reads one element into `event` (reset first), in place: a RawEvent is a few hundred bytes,
/// and moving one through every layer of a deserializer costs more than parsing it.
pub struct ElementSeed<'s, 'de> {
    pub depth: u32,
    pub event: &'s mut RawEvent<'de>,
}

impl<'de> DeserializeSeed<'de> for ElementSeed<'_, 'de> {
    type Value = Shape;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        *self.event = RawEvent::default();
        let read = deserializer.deserialize_any(ValueVisitor {
            depth: self.depth,
            event: Some(self.event),
        })?;
        Ok(match read.0 {
            Scalar::Nested(EVENT) => Shape::Event,
            other => Shape::NotAnObject(other.type_name()),
        })
    }
}

/// Marks an object that was read into the caller's event.
const EVENT: &str = "an event";

/// A value read and the bytes it took.
struct Read<'a>(Scalar<'a>, usize);

/// Reads any value. An object at the element level is read into `event`; deeper objects and
/// arrays are skipped (counted for size and depth).
struct ValueVisitor<'s, 'de> {
    depth: u32,
    event: Option<&'s mut RawEvent<'de>>,
}

impl<'de> ValueVisitor<'_, 'de> {
    fn check_depth<E: de::Error>(&self) -> Result<(), E> {
        if self.depth > MAX_NESTING {
            return Err(E::custom(format!(
                "nesting deeper than {MAX_NESTING} levels"
            )));
        }
        Ok(())
    }

    fn deeper(&self) -> ValueSeed {
        ValueSeed {
            depth: self.depth + 1,
        }
    }
}

impl<'de> Visitor<'de> for ValueVisitor<'_, 'de> {
    type Value = Read<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Read(Scalar::Str(Cow::Borrowed(v)), v.len() + 2))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Read(Scalar::Str(Cow::Owned(v.to_owned())), v.len() + 2))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        let bytes = v.len() + 2;
        Ok(Read(Scalar::Str(Cow::Owned(v)), bytes))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Read(Scalar::Unsigned(v), 8))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        let scalar = u64::try_from(v).map_or(Scalar::Signed(v), Scalar::Unsigned);
        Ok(Read(scalar, 8))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Read(Scalar::Float(v), 8))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Read(Scalar::Bool(v), 5))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Read(Scalar::Null, 4))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Read(Scalar::Null, 4))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.check_depth()?;
        let mut bytes = 2;
        while let Some(Read(_, item_bytes)) = seq.next_element_seed(self.deeper())? {
            bytes += item_bytes + 1;
        }
        Ok(Read(Scalar::Nested("an array"), bytes))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        self.check_depth()?;
        let deeper = self.deeper();
        // Only an element has a slot to fill; objects inside fields are skipped.
        let Some(event) = self.event else {
            let mut bytes = 2;
            while let Some(FieldKey(_, key_bytes)) = map.next_key_seed(KeySeed)? {
                let Read(_, value_bytes) = map.next_value_seed(deeper.clone())?;
                bytes += key_bytes + value_bytes + 2;
            }
            return Ok(Read(Scalar::Nested("an object"), bytes));
        };
        event.approx_bytes = 2;
        while let Some(FieldKey(field, key_bytes)) = map.next_key_seed(KeySeed)? {
            let Read(scalar, value_bytes) = map.next_value_seed(deeper.clone())?;
            event.record_field(field, scalar, key_bytes + value_bytes + 2);
        }
        Ok(Read(Scalar::Nested(EVENT), event.approx_bytes))
    }
}

#[derive(Clone)]
struct ValueSeed {
    depth: u32,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Read<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor {
            depth: self.depth,
            event: None,
        })
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
    PlayedMs,
    StartupMs,
    BeforeStart,
    Fatal,
    ErrorCode,
    Device,
    Cdn,
    AppVersion,
    Country,
    PlaybackToken,
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
            "played_ms" => Field::PlayedMs,
            "startup_ms" => Field::StartupMs,
            "before_start" => Field::BeforeStart,
            "fatal" => Field::Fatal,
            "error_code" => Field::ErrorCode,
            "device" => Field::Device,
            "cdn" => Field::Cdn,
            "app_version" => Field::AppVersion,
            "country" => Field::Country,
            "playback_token" => Field::PlaybackToken,
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
            Field::PlayedMs => "played_ms",
            Field::StartupMs => "startup_ms",
            Field::BeforeStart => "before_start",
            Field::Fatal => "fatal",
            Field::ErrorCode => "error_code",
            Field::Device => "device",
            Field::Cdn => "cdn",
            Field::AppVersion => "app_version",
            Field::Country => "country",
            Field::PlaybackToken => "playback_token",
            Field::Unknown => return None,
        })
    }
}

impl<'a> RawEvent<'a> {
    /// Records one field as read, for readers other than serde's (simd-json's tape):
    /// `name` as sent, `value_bytes` what the value took (a string: its length plus quotes;
    /// a number: 8; `true`/`false`: 5; `null`: 4; a nested value: what it holds).
    pub fn record(&mut self, name: &str, value: Scalar<'a>, value_bytes: usize) {
        self.record_field(
            Field::from_name(name),
            value,
            name.len() + 2 + value_bytes + 2,
        );
    }

    /// One piece of code for every reader: the size, the slot, the first duplicate.
    fn record_field(&mut self, field: Field, value: Scalar<'a>, bytes: usize) {
        self.approx_bytes += bytes;
        let Some(slot) = self.slot(field) else {
            return;
        };
        if slot.replace(value).is_some() && self.duplicate_field.is_none() {
            self.duplicate_field = field.name();
        }
    }

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
            Field::PlayedMs => &mut self.played_ms,
            Field::StartupMs => &mut self.startup_ms,
            Field::BeforeStart => &mut self.before_start,
            Field::Fatal => &mut self.fatal,
            Field::ErrorCode => &mut self.error_code,
            Field::Device => &mut self.device,
            Field::Cdn => &mut self.cdn,
            Field::AppVersion => &mut self.app_version,
            Field::Country => &mut self.country,
            Field::PlaybackToken => &mut self.playback_token,
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

/// How many elements a JSON array body held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ElementCount {
    /// Elements handed to the callback (at most `max`).
    pub taken: usize,
    /// Elements beyond `max` (read, checked for nesting, and dropped).
    pub overflow: usize,
}

/// Reads a JSON array of elements, handing each to `each` as soon as it is read, from one
/// scratch [`RawEvent`] reused in place; anything but an array is an error of the whole body.
pub struct ElementsSeed<F> {
    pub max: usize,
    pub each: F,
}

impl<'de, F: FnMut(Shape, &RawEvent<'de>)> DeserializeSeed<'de> for ElementsSeed<F> {
    type Value = ElementCount;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Shape, &RawEvent<'de>)> Visitor<'de> for ElementsSeed<F> {
    type Value = ElementCount;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut count = ElementCount::default();
        let mut event = RawEvent::default();
        while count.taken < self.max {
            let seed = ElementSeed {
                depth: 1,
                event: &mut event,
            };
            match seq.next_element_seed(seed)? {
                Some(shape) => {
                    (self.each)(shape, &event);
                    count.taken += 1;
                }
                None => return Ok(count),
            }
        }
        while seq.next_element_seed(ValueSeed { depth: 1 })?.is_some() {
            count.overflow += 1;
        }
        Ok(count)
    }
}
