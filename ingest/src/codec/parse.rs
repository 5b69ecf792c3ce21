use std::ops::Range;

use serde::de::DeserializeSeed;
use wire::{
    validate_read, ElementSeed, EventError, PlaybackEvent, RawEvent, Scalar, Shape,
    ValidationContext,
};

use super::scan::{self, Scanned};
use super::tape;
use super::{BodyFormat, CodecError};
use crate::tokens::TokenCheck;

/// One event rejected on its own: its position in the request and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub index: usize,
    pub error: EventError,
}

/// The events of one request: the valid ones in order, and the rejected ones.
#[derive(Debug, Default)]
pub struct Decoded {
    pub events: Vec<PlaybackEvent>,
    pub rejected: Vec<Rejection>,
}

/// Parses (with simd-json, in place: `body` is rewritten) and validates a request body. Each
/// event is validated as soon as it is parsed.
///
/// Any body that is valid JSON (RFC 8259) gets per-event decisions: when simd-json refuses the
/// body, or would change its text (a lone surrogate escape), the strict scanner ([`scan`])
/// decides whether it is JSON at all, and each element is then read alone, a value that cannot
/// be represented rejecting its own event with a reason.
pub fn decode_events(
    body: &mut [u8],
    format: BodyFormat,
    max_events: usize,
    ctx: &ValidationContext,
    tokens: Option<TokenCheck<'_>>,
) -> Result<Decoded, CodecError> {
    let checks = Checks { ctx, tokens };
    // simd-json unescapes strings in place even when it then fails: a body with escapes is
    // kept as sent for the slow path (players rarely send any).
    let escaped = memchr::memchr(b'\\', body).is_some();
    let lone_surrogate = escaped && scan::has_lone_surrogate(body);
    let original = escaped.then(|| body.to_vec());
    match format {
        BodyFormat::JsonArray => {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Err(CodecError::Malformed(
                    "empty body: expected a JSON array of events".to_owned(),
                ));
            }
            if !lone_surrogate {
                let mut decoded = Decoded::default();
                if let Some(result) = parse_array(body, max_events, checks, &mut decoded) {
                    return result.map(|()| decoded);
                }
            }
            let pristine = original.as_deref().unwrap_or(body);
            read_array_alone(pristine, max_events, checks)
        }
        BodyFormat::Ndjson => {
            let pristine = original.as_deref();
            parse_lines(body, pristine, lone_surrogate, max_events, checks)
        }
    }
}

/// What decides on each event read: its own validity, and its playback token when tokens
/// are on.
#[derive(Clone, Copy)]
struct Checks<'a> {
    ctx: &'a ValidationContext,
    tokens: Option<TokenCheck<'a>>,
}

impl Checks<'_> {
    fn accept(&self, shape: Shape, raw: &RawEvent<'_>) -> Result<PlaybackEvent, EventError> {
        let event = validate_read(shape, raw, self.ctx)?;
        if let Some(check) = &self.tokens {
            let token = match &raw.playback_token {
                None | Some(Scalar::Null) => None,
                Some(Scalar::Str(token)) => Some(token.as_ref()),
                Some(_) => return Err(EventError::PlaybackToken("must be a string".to_owned())),
            };
            check
                .tokens
                .check(token, &event, check.origin, self.ctx.received_at)
                .map_err(|error| EventError::PlaybackToken(error.to_string()))?;
        }
        Ok(event)
    }
}

/// Events and rejections in request order.
fn each_into<'d>(
    decoded: &'d mut Decoded,
    checks: Checks<'d>,
) -> impl FnMut(Shape, &RawEvent<'_>) + 'd {
    let mut index = 0;
    move |shape: Shape, raw: &RawEvent<'_>| {
        match checks.accept(shape, raw) {
            Ok(event) => decoded.events.push(event),
            Err(error) => decoded.rejected.push(Rejection { index, error }),
        }
        index += 1;
    }
}

/// The fast path: the body's tape read straight into events; `None` when simd-json refused
/// the body or the tape reader leaves it to the slow path.
fn parse_array(
    body: &mut [u8],
    max_events: usize,
    checks: Checks<'_>,
    decoded: &mut Decoded,
) -> Option<Result<(), CodecError>> {
    tape::with_buffers(body.len(), |buffers| {
        let tape = simd_json::Deserializer::from_slice_with_buffers(body, buffers)
            .ok()?
            .into_tape();
        let Some(&simd_json::Node::Array { len, .. }) = tape.0.first() else {
            return None;
        };
        decoded.events.reserve(len.min(max_events));
        match tape::read_elements(&tape.0, max_events, each_into(decoded, checks))? {
            tape::Elements::TooMany => Some(Err(CodecError::TooManyEvents { limit: max_events })),
            tape::Elements::Read(_) => Some(Ok(())),
        }
    })
}

/// The slow path of an array body: scanned, then each element read on its own.
fn read_array_alone(
    doc: &[u8],
    max_events: usize,
    checks: Checks<'_>,
) -> Result<Decoded, CodecError> {
    let elements = match scan::scan_array(doc) {
        Err(not_json) => return Err(CodecError::Malformed(format!("not valid JSON: {not_json}"))),
        Ok(Scanned::NotAnArray) => {
            return Err(CodecError::Malformed(
                "expected a JSON array of events".to_owned(),
            ))
        }
        Ok(Scanned::Array(elements)) => elements,
    };
    if elements.len() > max_events {
        return Err(CodecError::TooManyEvents { limit: max_events });
    }
    let mut decoded = Decoded::default();
    let mut scratch = Vec::new();
    for (index, element) in elements.iter().enumerate() {
        let read = read_alone(
            doc,
            element.range.clone(),
            element.anomaly.as_ref(),
            &mut scratch,
            checks,
        );
        match read {
            Ok(event) => decoded.events.push(event),
            Err(error) => decoded.rejected.push(Rejection { index, error }),
        }
    }
    Ok(decoded)
}

/// Reads one element of `doc` that the scanner found to be valid JSON.
fn read_alone(
    doc: &[u8],
    range: Range<usize>,
    anomaly: Option<&scan::Anomaly>,
    scratch: &mut Vec<u8>,
    checks: Checks<'_>,
) -> Result<PlaybackEvent, EventError> {
    let element = &doc[range];
    if let Some(anomaly) = anomaly {
        if element.first() != Some(&b'{') {
            return Err(EventError::NotAnObject(json_type(element)));
        }
        let holder = match &anomaly.field {
            Some(key) => format!(
                "field {}",
                wire::echo(&String::from_utf8_lossy(&doc[key.clone()]))
            ),
            None => "the event".to_owned(),
        };
        return Err(EventError::Unreadable(format!(
            "{holder} {}",
            anomaly.kind.describe()
        )));
    }
    scratch.clear();
    scratch.extend_from_slice(element);
    let mut event = RawEvent::default();
    let mut deserializer = simd_json::Deserializer::from_slice(scratch).map_err(unreadable)?;
    let shape = ElementSeed {
        depth: 1,
        event: &mut event,
    }
    .deserialize(&mut deserializer)
    .map_err(unreadable)?;
    checks.accept(shape, &event)
}

/// An element simd-json could not read although it is valid JSON: our own limits (nesting)
/// name themselves; anything else is said without the parser's internals.
fn unreadable(error: simd_json::Error) -> EventError {
    EventError::Unreadable(match error.error() {
        simd_json::ErrorType::Serde(reason) => format!("the event holds {reason}"),
        _ => "the event holds a value this service cannot read".to_owned(),
    })
}

fn json_type(value: &[u8]) -> &'static str {
    match value.first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn parse_lines(
    body: &mut [u8],
    pristine: Option<&[u8]>,
    lone_surrogate: bool,
    max_events: usize,
    checks: Checks<'_>,
) -> Result<Decoded, CodecError> {
    let mut decoded = Decoded::default();
    let mut scratch = Vec::new();
    let mut offset = 0;
    for (line_number, line) in body.split_mut(|byte| *byte == b'\n').enumerate() {
        let line_range = offset..offset + line.len();
        offset += line.len() + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let index = decoded.events.len() + decoded.rejected.len();
        if index == max_events {
            return Err(CodecError::TooManyEvents { limit: max_events });
        }
        let as_sent = pristine.map_or(&*line, |body| &body[line_range.clone()]);
        let fast = !(lone_surrogate && scan::has_lone_surrogate(as_sent));
        if fast {
            let read = tape::with_buffers(line.len(), |buffers| {
                let tape = simd_json::Deserializer::from_slice_with_buffers(line, buffers)
                    .ok()?
                    .into_tape();
                let mut accepted = None;
                let mut event = RawEvent::default();
                let next = tape::read_element(&tape.0, 0, &mut event, &mut |shape, event| {
                    accepted = Some(checks.accept(shape, event));
                })?;
                // One value per line; anything after it is the slow path's to judge.
                (next == tape.0.len()).then_some(accepted).flatten()
            });
            if let Some(accepted) = read {
                match accepted {
                    Ok(valid) => decoded.events.push(valid),
                    Err(error) => decoded.rejected.push(Rejection { index, error }),
                }
                continue;
            }
        }
        // The slow path, on the line as sent (simd-json may have rewritten `line`).
        let as_sent = pristine.map_or_else(|| line.to_vec(), |body| body[line_range].to_vec());
        let anomaly = scan::scan_value(&as_sent).map_err(|not_json| {
            CodecError::Malformed(format!(
                "line {} is not valid JSON: {not_json}",
                line_number + 1
            ))
        })?;
        let whole = 0..as_sent.len();
        match read_alone(&as_sent, whole, anomaly.as_ref(), &mut scratch, checks) {
            Ok(valid) => decoded.events.push(valid),
            Err(error) => decoded.rejected.push(Rejection { index, error }),
        }
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn ctx() -> ValidationContext {
        ValidationContext {
            received_at: NOW,
            max_future_ms: 86_400_000,
        }
    }

    fn event(user: u64, id: &str) -> String {
        format!(
            r#"{{"event_id":"{id}","session_id":"6f1c1d1e-2b1a-4c3d-9e8f-0a1b2c3d4e5f","user_id":{user},"content_id":9,"kind":"heartbeat","ts":{ts},"position_ms":1000}}"#,
            ts = NOW - 1000
        )
    }

    const ID1: &str = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
    const ID2: &str = "2b4e28ba-2fa1-41d2-883f-0016d3cca427";

    fn decode(body: &str, format: BodyFormat) -> Result<Decoded, CodecError> {
        decode_events(&mut body.as_bytes().to_vec(), format, 10, &ctx(), None)
    }

    #[test]
    fn a_json_array_of_good_events_decodes() {
        let body = format!("[{},{}]", event(1, ID1), event(2, ID2));
        let decoded = decode(&body, BodyFormat::JsonArray).unwrap();
        assert_eq!(decoded.events.len(), 2);
        assert!(decoded.rejected.is_empty());
        assert_eq!(decoded.events[1].user_id, 2);
        assert_eq!(decoded.events[0].received_at, NOW);
    }

    #[test]
    fn a_bad_event_is_rejected_alone_with_its_index() {
        let body = format!("[{}, 42, {}]", event(1, ID1), event(2, "nope"));
        let decoded = decode(&body, BodyFormat::JsonArray).unwrap();
        assert_eq!(decoded.events.len(), 1);
        assert_eq!(decoded.rejected.len(), 2);
        assert_eq!(decoded.rejected[0].index, 1);
        assert_eq!(
            decoded.rejected[0].error,
            EventError::NotAnObject("an integer")
        );
        assert_eq!(decoded.rejected[1].index, 2);
        assert!(decoded.rejected[1].error.to_string().contains("event_id"));
    }

    #[test]
    fn ndjson_lines_decode_and_blank_lines_are_skipped() {
        let body = format!("{}\n\n{}\n", event(1, ID1), event(2, ID2));
        let decoded = decode(&body, BodyFormat::Ndjson).unwrap();
        assert_eq!(decoded.events.len(), 2);
    }

    #[test]
    fn a_broken_ndjson_line_fails_the_body_and_names_the_line() {
        let body = format!("{}\n{{\"user_id\":", event(1, ID1));
        let error = decode(&body, BodyFormat::Ndjson).unwrap_err();
        assert!(
            matches!(&error, CodecError::Malformed(message) if message.contains("line 2")),
            "{error}"
        );
    }

    #[test]
    fn bodies_that_are_not_json_arrays_are_malformed() {
        for body in [
            "",
            "   ",
            "garbage",
            "[{\"a\":1}",
            "{\"user_id\":1}",
            "[1,2]]",
            "[] []",
            "\"x\"",
        ] {
            let result = decode(body, BodyFormat::JsonArray);
            assert!(
                matches!(result, Err(CodecError::Malformed(_))),
                "{body:?}: {result:?}"
            );
        }
    }

    #[test]
    fn absurd_nesting_rejects_its_event_alone_not_the_body_and_never_crashes() {
        for depth in [40, 10_000, 1_000_000] {
            let body = format!(
                "[{}{}, {}]",
                "[".repeat(depth),
                "]".repeat(depth),
                event(1, ID1)
            );
            let decoded = decode(&body, BodyFormat::JsonArray).unwrap();
            assert_eq!(decoded.events.len(), 1, "depth {depth}");
            assert_eq!(decoded.rejected[0].index, 0);
            let nested_field = format!(
                "[{{\"x\":{}1{}}},{}]",
                "{\"a\":".repeat(depth),
                "}".repeat(depth),
                event(1, ID1)
            );
            let decoded = decode(&nested_field, BodyFormat::JsonArray).unwrap();
            assert_eq!(decoded.events.len(), 1, "field depth {depth}");
            assert!(
                decoded.rejected[0].error.to_string().contains("nesting"),
                "{:?}",
                decoded.rejected
            );
        }
        // Unclosed, it is not JSON at all.
        let unclosed = "[".repeat(100_000);
        assert!(matches!(
            decode(&unclosed, BodyFormat::JsonArray),
            Err(CodecError::Malformed(_))
        ));
    }

    /// Valid JSON that simd-json refuses or would change: each such value rejects its own event,
    /// named, and the good events of the batch are kept.
    #[test]
    fn unrepresentable_values_reject_their_event_alone() {
        for (field, value) in [
            ("user_id", "18446744073709551616"),
            ("user_id", "1000000000000000000000000000000"),
            ("position_ms", "-9223372036854775809"),
            ("ts", &"9".repeat(400)),
            ("duration_ms", "1e400"),
            ("device", r#""\ud800""#),
            ("device", r#""\udc00x""#),
            ("ext", r#"{"deep":[1e999]}"#),
        ] {
            let bad = event(7, ID2).replacen('{', &format!(r#"{{"{field}":{value},"#), 1);
            let body = format!("[{},{bad},{}]", event(1, ID1), event(2, ID1));
            for format in [BodyFormat::JsonArray, BodyFormat::Ndjson] {
                let body = match format {
                    BodyFormat::JsonArray => body.clone(),
                    BodyFormat::Ndjson => [event(1, ID1), bad.clone(), event(2, ID1)].join("\n"),
                };
                let decoded = decode(&body, format)
                    .unwrap_or_else(|error| panic!("{field}={value} {format:?}: {error}"));
                assert_eq!(decoded.events.len(), 2, "{field}={value} {format:?}");
                assert_eq!(decoded.rejected.len(), 1);
                assert_eq!(decoded.rejected[0].index, 1);
                let reason = decoded.rejected[0].error.to_string();
                assert!(reason.contains(field), "{reason}");
                assert!(reason.len() < 200, "{reason}");
            }
        }
    }

    #[test]
    fn a_surrogate_pair_is_text_and_kept_as_sent() {
        let body = format!(
            "[{}]",
            event(1, ID1).replacen('{', r#"{"device":"tv\ud83d\ude00","#, 1)
        );
        let decoded = decode(&body, BodyFormat::JsonArray).unwrap();
        assert_eq!(decoded.events[0].device.as_deref(), Some("tv\u{1f600}"));
    }

    #[test]
    fn a_rejection_quotes_at_most_a_bounded_piece_of_the_value() {
        let long = "x".repeat(100_000);
        let body = format!("[{}]", event(1, &long));
        let decoded = decode(&body, BodyFormat::JsonArray).unwrap();
        let reason = decoded.rejected[0].error.to_string();
        assert!(reason.len() < 300, "{} bytes", reason.len());
    }

    #[test]
    fn malformed_bodies_say_where_without_parser_internals() {
        let error = decode("[1, 2 3]", BodyFormat::JsonArray).unwrap_err();
        assert_eq!(
            error.to_string(),
            "malformed body: not valid JSON: expected `,` or `]` after an element at byte 6"
        );
    }

    #[test]
    fn moderate_nesting_in_unknown_fields_is_ignored() {
        let body = format!(
            "[{}]",
            event(1, ID1).replacen('{', r#"{"ext":{"a":[1,{"b":null}]},"#, 1)
        );
        let decoded = decode(&body, BodyFormat::JsonArray).unwrap();
        assert_eq!(decoded.events.len(), 1, "{:?}", decoded.rejected);
    }

    #[test]
    fn more_events_than_the_limit_are_refused() {
        let events: Vec<String> = (0..11).map(|user| event(user, ID1)).collect();
        let body = format!("[{}]", events.join(","));
        assert_eq!(
            decode(&body, BodyFormat::JsonArray).unwrap_err(),
            CodecError::TooManyEvents { limit: 10 }
        );
        assert_eq!(
            decode(&events.join("\n"), BodyFormat::Ndjson).unwrap_err(),
            CodecError::TooManyEvents { limit: 10 }
        );
    }

    #[test]
    fn an_empty_array_is_an_empty_batch() {
        let decoded = decode("[]", BodyFormat::JsonArray).unwrap();
        assert!(decoded.events.is_empty() && decoded.rejected.is_empty());
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let body = format!(
            "[{}]",
            event(1, ID1).replacen('{', r#"{"device":"t\u0076","#, 1)
        );
        let decoded = decode(&body, BodyFormat::JsonArray).unwrap();
        assert_eq!(decoded.events[0].device.as_deref(), Some("tv"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode_events(&mut bytes.clone(), BodyFormat::JsonArray, 100, &ctx(), None);
            let _ = decode_events(&mut bytes.clone(), BodyFormat::Ndjson, 100, &ctx(), None);
        }

        #[test]
        fn arbitrary_json_values_never_panic(value in arb_json()) {
            let text = serde_json::to_string(&value).unwrap();
            let _ = decode_events(&mut text.clone().into_bytes(), BodyFormat::JsonArray, 100, &ctx(), None);
            let _ = decode_events(&mut text.into_bytes(), BodyFormat::Ndjson, 100, &ctx(), None);
        }

        /// Any JSON array, whatever its numbers, escapes and unknown fields, gets one decision
        /// per element, never a refusal of the whole body; and the codec agrees with serde_json
        /// on what is JSON at all.
        #[test]
        fn every_valid_json_array_gets_per_event_decisions(text in arb_json_array_text()) {
            let elements = serde_json::from_str::<Vec<serde::de::IgnoredAny>>(&text);
            let decoded = decode_events(&mut text.clone().into_bytes(), BodyFormat::JsonArray, 1000, &ctx(), None);
            match (elements, decoded) {
                (Ok(elements), Ok(decoded)) => {
                    proptest::prop_assert_eq!(decoded.events.len() + decoded.rejected.len(), elements.len());
                }
                (Err(_), Err(_)) => {}
                (expected, got) => proptest::prop_assert!(false, "{text}: serde_json {expected:?}, codec {got:?}"),
            }
        }

        #[test]
        fn arbitrary_text_is_json_to_the_codec_exactly_when_it_is_to_serde_json(text in arb_almost_json()) {
            let serde = serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
            let scanner = scan::scan_value(text.as_bytes()).is_ok();
            proptest::prop_assert_eq!(serde, scanner, "{}", text);
        }
    }

    /// JSON array text with the values serde_json cannot build: huge and tiny numbers, every
    /// escape (lone surrogates excepted: serde_json refuses those, RFC 8259 does not), duplicate
    /// keys, deep unknown fields.
    fn arb_json_array_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let number = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            "-?[1-9][0-9]{19,60}",
            "-?[1-9][0-9]{0,3}(\\.[0-9]{1,20})?[eE][+-]?[0-9]{1,4}",
            "-?0\\.[0-9]{1,30}",
        ];
        let string = proptest::collection::vec(
            prop_oneof![
                "[a-z ]{1,4}".prop_map(|s| s),
                Just("\\\"".to_owned()),
                Just("\\\\".to_owned()),
                Just("\\/".to_owned()),
                Just("\\b\\f\\n\\r\\t".to_owned()),
                Just("\\u0000".to_owned()),
                Just("\\u00e9".to_owned()),
                Just("\\ud83d\\ude00".to_owned()),
                Just("é😀".to_owned()),
            ],
            0..4,
        )
        .prop_map(|parts| format!("\"{}\"", parts.concat()));
        let key = prop_oneof![
            Just("\"user_id\"".to_owned()),
            Just("\"ts\"".to_owned()),
            Just("\"kind\"".to_owned()),
            Just("\"event_id\"".to_owned()),
            Just("\"device\"".to_owned()),
            string.clone(),
        ];
        let leaf = prop_oneof![
            number,
            string,
            Just("true".to_owned()),
            Just("null".to_owned()),
        ];
        let value = leaf.prop_recursive(6, 64, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                proptest::collection::vec((key.clone(), inner), 0..6).prop_map(|members| {
                    let members: Vec<String> = members
                        .into_iter()
                        .map(|(k, v)| format!("{k} : {v}"))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        });
        proptest::collection::vec(value, 0..8)
            .prop_map(|items| format!("[ {} ]", items.join(" ,\n")))
    }

    /// Mostly-JSON text with the usual mistakes sprinkled in.
    fn arb_almost_json() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![
                Just("[".to_owned()),
                Just("]".to_owned()),
                Just("{".to_owned()),
                Just("}".to_owned()),
                Just(",".to_owned()),
                Just(":".to_owned()),
                Just("\"a\"".to_owned()),
                Just("\"\\u12\"".to_owned()),
                Just("\"\\x\"".to_owned()),
                Just("\"\t\"".to_owned()),
                Just("1".to_owned()),
                Just("-0.5e3".to_owned()),
                Just("01".to_owned()),
                Just("1.".to_owned()),
                Just("true".to_owned()),
                Just("nul".to_owned()),
                Just(" ".to_owned()),
            ],
            1..12,
        )
        .prop_map(|parts| parts.concat())
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            "[a-z_]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
                proptest::collection::hash_map(
                    prop_oneof![
                        Just("user_id".to_owned()),
                        Just("ts".to_owned()),
                        Just("kind".to_owned()),
                        Just("event_id".to_owned()),
                        "[a-z]{1,6}"
                    ],
                    inner,
                    0..8
                )
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }
}
