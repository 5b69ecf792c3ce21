//! Validation of a leniently read event into the domain type: one rule per field, each failure a
//! reason a person can act on.

use uuid::Uuid;

use crate::limits::{
    MAX_ERROR_CODE_BYTES, MAX_EVENT_BYTES, MAX_LABEL_BYTES, MAX_PLAYED_MS, MAX_STARTUP_MS,
};
use crate::raw::{RawEvent, Scalar, Shape};
use crate::{CountryCode, Element, EventKind, PlaybackEvent, SmolStr};

/// Why one event was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The element is not a JSON object.
    #[error("an event must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// A required field is absent or null.
    #[error("missing required field `{0}`")]
    Missing(&'static str),
    /// A field holds the wrong JSON type.
    #[error("field `{field}` must be {expected}, got {got}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        got: &'static str,
    },
    /// A field has the right type but a value outside its rule.
    #[error("field `{field}` {rule}")]
    Invalid { field: &'static str, rule: String },
    /// A text field is longer than its limit.
    #[error("field `{field}` is longer than {max} bytes")]
    TooLong { field: &'static str, max: usize },
    /// The event as a whole is larger than the per-event limit.
    #[error("event is larger than {max} bytes")]
    TooLarge { max: usize },
    /// A field appears twice in the same object.
    #[error("field `{0}` appears more than once")]
    DuplicateField(&'static str),
    /// Valid JSON holding a value that cannot be read faithfully (a number beyond 64 bits, a
    /// lone surrogate escape, nesting past the limit); the text says which field.
    #[error("{0}")]
    Unreadable(String),
    /// With playback tokens on: the event's token does not let it in (the reason says why).
    #[error("playback_token {0}")]
    PlaybackToken(String),
}

impl EventError {
    /// A short, bounded label for metrics.
    pub fn reason_code(&self) -> &'static str {
        match self {
            EventError::NotAnObject(_) => "not_an_object",
            EventError::Missing(_) => "missing_field",
            EventError::WrongType { .. } => "wrong_type",
            EventError::Invalid { .. } => "invalid_value",
            EventError::TooLong { .. } => "too_long",
            EventError::TooLarge { .. } => "too_large",
            EventError::DuplicateField(_) => "duplicate_field",
            EventError::Unreadable(_) => "unreadable_value",
            EventError::PlaybackToken(_) => "playback_token",
        }
    }
}

/// What validation needs from the server side.
#[derive(Debug, Clone, Copy)]
pub struct ValidationContext {
    /// Server clock when the request arrived, epoch ms.
    pub received_at: i64,
    /// How far ahead of `received_at` a (skew-corrected) `ts` may be.
    pub max_future_ms: i64,
}

/// Validates one element of a request into a domain event.
pub fn validate(
    element: &Element<'_>,
    ctx: &ValidationContext,
) -> Result<PlaybackEvent, EventError> {
    match element {
        Element::Event(raw) => validate_read(Shape::Event, raw, ctx),
        Element::NotAnObject(kind) => {
            validate_read(Shape::NotAnObject(kind), &RawEvent::default(), ctx)
        }
    }
}

/// Validates an element read in place by [`crate::ElementSeed`].
pub fn validate_read(
    shape: Shape,
    raw: &RawEvent<'_>,
    ctx: &ValidationContext,
) -> Result<PlaybackEvent, EventError> {
    if let Shape::NotAnObject(kind) = shape {
        return Err(EventError::NotAnObject(kind));
    }
    if raw.approx_bytes > MAX_EVENT_BYTES {
        return Err(EventError::TooLarge {
            max: MAX_EVENT_BYTES,
        });
    }
    if let Some(field) = raw.duplicate_field {
        return Err(EventError::DuplicateField(field));
    }
    validate_fields(raw, ctx)
}

fn validate_fields(
    raw: &RawEvent<'_>,
    ctx: &ValidationContext,
) -> Result<PlaybackEvent, EventError> {
    let event_id = uuid("event_id", required("event_id", &raw.event_id)?)?;
    let session_id = uuid("session_id", required("session_id", &raw.session_id)?)?;
    let user_id = unsigned("user_id", required("user_id", &raw.user_id)?)?;
    let content_id = unsigned("content_id", required("content_id", &raw.content_id)?)?;
    let kind = event_kind(required("kind", &raw.kind)?)?;
    let ts = epoch_ms("ts", required("ts", &raw.ts)?)?;
    let sent_at = optional(&raw.sent_at)
        .map(|value| epoch_ms("sent_at", value))
        .transpose()?;
    let position_ms = unsigned("position_ms", required("position_ms", &raw.position_ms)?)?;
    let duration_ms = optional(&raw.duration_ms)
        .map(|value| unsigned("duration_ms", value))
        .transpose()?;
    let bitrate_kbps = optional(&raw.bitrate_kbps)
        .map(|value| unsigned_u32("bitrate_kbps", value))
        .transpose()?;
    let buffer_ms = optional(&raw.buffer_ms)
        .map(|value| unsigned_u32("buffer_ms", value))
        .transpose()?;
    let played_ms = optional(&raw.played_ms)
        .map(|value| at_most("played_ms", value, MAX_PLAYED_MS))
        .transpose()?;
    let startup_ms = optional(&raw.startup_ms)
        .map(|value| at_most("startup_ms", value, MAX_STARTUP_MS))
        .transpose()?;
    let before_start = optional(&raw.before_start)
        .map(|value| boolean("before_start", value))
        .transpose()?;
    let fatal = optional(&raw.fatal)
        .map(|value| boolean("fatal", value))
        .transpose()?;
    only_on(
        "startup_ms",
        startup_ms.is_some(),
        kind,
        &[EventKind::Start],
    )?;
    only_on(
        "before_start",
        before_start.is_some(),
        kind,
        &[EventKind::Stop, EventKind::Error],
    )?;
    only_on("fatal", fatal.is_some(), kind, &[EventKind::Error])?;
    let error_code = optional_text("error_code", &raw.error_code, MAX_ERROR_CODE_BYTES)?;
    let device = optional_text("device", &raw.device, MAX_LABEL_BYTES)?;
    let cdn = optional_text("cdn", &raw.cdn, MAX_LABEL_BYTES)?;
    let app_version = optional_text("app_version", &raw.app_version, MAX_LABEL_BYTES)?;
    let country = optional(&raw.country).map(country).transpose()?;

    check_clocks(ts, sent_at, ctx)?;
    Ok(PlaybackEvent {
        event_id,
        session_id,
        user_id,
        content_id,
        kind,
        ts,
        sent_at,
        received_at: ctx.received_at,
        position_ms,
        duration_ms,
        bitrate_kbps,
        buffer_ms,
        played_ms,
        startup_ms,
        before_start,
        fatal,
        error_code,
        device,
        cdn,
        app_version,
        country,
    })
}

/// An event happens before its request is sent, and not far in the future once the client's
/// clock skew (`received_at - sent_at`, when `sent_at` is given) is taken out.
fn check_clocks(ts: i64, sent_at: Option<i64>, ctx: &ValidationContext) -> Result<(), EventError> {
    if let Some(sent_at) = sent_at {
        if ts > sent_at {
            return Err(EventError::Invalid {
                field: "ts",
                rule: format!("({ts}) must not be after `sent_at` ({sent_at})"),
            });
        }
    }
    let skew = sent_at.map_or(0, |sent_at| ctx.received_at.saturating_sub(sent_at));
    let corrected_ts = ts.saturating_add(skew);
    if corrected_ts > ctx.received_at.saturating_add(ctx.max_future_ms) {
        return Err(EventError::Invalid {
            field: "ts",
            rule: format!(
                "({ts}) is more than {} s ahead of the server clock",
                ctx.max_future_ms / 1000
            ),
        });
    }
    Ok(())
}

fn optional<'r, 'a>(value: &'r Option<Scalar<'a>>) -> Option<&'r Scalar<'a>> {
    value.as_ref().filter(|value| **value != Scalar::Null)
}

fn required<'r, 'a>(
    field: &'static str,
    value: &'r Option<Scalar<'a>>,
) -> Result<&'r Scalar<'a>, EventError> {
    optional(value).ok_or(EventError::Missing(field))
}

fn wrong_type(field: &'static str, expected: &'static str, got: &Scalar<'_>) -> EventError {
    EventError::WrongType {
        field,
        expected,
        got: got.type_name(),
    }
}

fn text<'r>(field: &'static str, value: &'r Scalar<'_>) -> Result<&'r str, EventError> {
    match value {
        Scalar::Str(text) => Ok(text),
        other => Err(wrong_type(field, "a string", other)),
    }
}

fn uuid(field: &'static str, value: &Scalar<'_>) -> Result<Uuid, EventError> {
    let text = text(field, value)?;
    let id = Uuid::try_parse(text).map_err(|_| EventError::Invalid {
        field,
        rule: format!(
            "must be a UUID like 1b4e28ba-2fa1-11d2-883f-0016d3cca427, got {}",
            echo(text)
        ),
    })?;
    if id.is_nil() {
        return Err(EventError::Invalid {
            field,
            rule: "must not be the nil UUID".to_owned(),
        });
    }
    Ok(id)
}

fn unsigned(field: &'static str, value: &Scalar<'_>) -> Result<u64, EventError> {
    match value {
        Scalar::Unsigned(number) => Ok(*number),
        Scalar::Signed(number) => Err(EventError::Invalid {
            field,
            rule: format!("must not be negative, got {number}"),
        }),
        other => Err(wrong_type(field, "a non-negative integer", other)),
    }
}

fn unsigned_u32(field: &'static str, value: &Scalar<'_>) -> Result<u32, EventError> {
    let number = unsigned(field, value)?;
    u32::try_from(number).map_err(|_| EventError::Invalid {
        field,
        rule: format!("must be at most {}, got {number}", u32::MAX),
    })
}

fn at_most(field: &'static str, value: &Scalar<'_>, max: u32) -> Result<u32, EventError> {
    let number = unsigned(field, value)?;
    u32::try_from(number)
        .ok()
        .filter(|number| *number <= max)
        .ok_or_else(|| EventError::Invalid {
            field,
            rule: format!("must be at most {max}, got {number}"),
        })
}

fn boolean(field: &'static str, value: &Scalar<'_>) -> Result<bool, EventError> {
    match value {
        Scalar::Bool(flag) => Ok(*flag),
        other => Err(wrong_type(field, "true or false", other)),
    }
}

/// A QoE field that only means something on some kinds is refused on the others, so that a
/// client's mistake shows at once instead of skewing a metric.
fn only_on(
    field: &'static str,
    present: bool,
    kind: EventKind,
    kinds: &[EventKind],
) -> Result<(), EventError> {
    if !present || kinds.contains(&kind) {
        return Ok(());
    }
    let names: Vec<&str> = kinds.iter().map(|kind| kind.as_str()).collect();
    Err(EventError::Invalid {
        field,
        rule: format!(
            "is only allowed on {} events, not on {kind}",
            names.join(" and ")
        ),
    })
}

fn epoch_ms(field: &'static str, value: &Scalar<'_>) -> Result<i64, EventError> {
    let number = unsigned(field, value)?;
    i64::try_from(number).map_err(|_| EventError::Invalid {
        field,
        rule: format!("must be epoch milliseconds, got {number}"),
    })
}

/// Client text quoted in a reason, at most [`MAX_ECHO_CHARS`] characters of it: an answer must
/// not grow with what a client sends.
pub fn echo(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
    }
}

/// How much of a bad value a rejection quotes.
pub const MAX_ECHO_CHARS: usize = 40;

fn event_kind(value: &Scalar<'_>) -> Result<EventKind, EventError> {
    let name = text("kind", value)?;
    EventKind::parse(name).ok_or_else(|| EventError::Invalid {
        field: "kind",
        rule: format!(
            "must be one of start, heartbeat, pause, resume, seek, buffer_start, buffer_end, \
             bitrate_change, error, stop, complete; got {}",
            echo(name)
        ),
    })
}

fn optional_text(
    field: &'static str,
    value: &Option<Scalar<'_>>,
    max: usize,
) -> Result<Option<SmolStr>, EventError> {
    let Some(value) = optional(value) else {
        return Ok(None);
    };
    let text = text(field, value)?;
    if text.len() > max {
        return Err(EventError::TooLong { field, max });
    }
    Ok(Some(SmolStr::new(text)))
}

fn country(value: &Scalar<'_>) -> Result<CountryCode, EventError> {
    let code = text("country", value)?;
    CountryCode::parse(code).ok_or_else(|| EventError::Invalid {
        field: "country",
        rule: format!(
            "must be an ISO 3166-1 alpha-2 code such as \"US\", got {}",
            echo(code)
        ),
    })
}
