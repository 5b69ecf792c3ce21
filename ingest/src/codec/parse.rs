use serde::de::DeserializeSeed;
use wire::{
    validate_read, ElementSeed, ElementsSeed, EventError, PlaybackEvent, RawEvent, Shape,
    ValidationContext,
};

use super::{BodyFormat, CodecError};

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
pub fn decode_events(
    body: &mut [u8],
    format: BodyFormat,
    max_events: usize,
    ctx: &ValidationContext,
) -> Result<Decoded, CodecError> {
    let mut decoded = Decoded::default();
    let mut index = 0;
    let mut each = |shape: Shape, raw: &RawEvent<'_>| {
        match validate_read(shape, raw, ctx) {
            Ok(event) => decoded.events.push(event),
            Err(error) => decoded.rejected.push(Rejection { index, error }),
        }
        index += 1;
    };
    match format {
        BodyFormat::JsonArray => parse_array(body, max_events, &mut each)?,
        BodyFormat::Ndjson => parse_lines(body, max_events, &mut each)?,
    }
    Ok(decoded)
}

fn malformed(error: simd_json::Error) -> CodecError {
    CodecError::Malformed(format!("not valid JSON: {error}"))
}

fn parse_array<'a>(
    body: &'a mut [u8],
    max_events: usize,
    each: &mut impl FnMut(Shape, &RawEvent<'a>),
) -> Result<(), CodecError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(CodecError::Malformed(
            "empty body: expected a JSON array of events".to_owned(),
        ));
    }
    let mut deserializer = simd_json::Deserializer::from_slice(body).map_err(malformed)?;
    let count = ElementsSeed {
        max: max_events,
        each,
    }
    .deserialize(&mut deserializer)
    .map_err(|error| match error.error() {
        simd_json::ErrorType::ExpectedArray => {
            CodecError::Malformed("expected a JSON array of events".to_owned())
        }
        _ => malformed(error),
    })?;
    if count.overflow > 0 {
        return Err(CodecError::TooManyEvents { limit: max_events });
    }
    Ok(())
}

fn parse_lines<'a>(
    body: &'a mut [u8],
    max_events: usize,
    each: &mut impl FnMut(Shape, &RawEvent<'a>),
) -> Result<(), CodecError> {
    let mut buffers = simd_json::Buffers::default();
    let mut taken = 0;
    let mut event = RawEvent::default();
    for (line_number, line) in body.split_mut(|byte| *byte == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if taken == max_events {
            return Err(CodecError::TooManyEvents { limit: max_events });
        }
        let mut deserializer = simd_json::Deserializer::from_slice_with_buffers(line, &mut buffers)
            .map_err(|error| line_error(line_number, error))?;
        let seed = ElementSeed {
            depth: 1,
            event: &mut event,
        };
        let shape = seed
            .deserialize(&mut deserializer)
            .map_err(|error| line_error(line_number, error))?;
        each(shape, &event);
        taken += 1;
    }
    Ok(())
}

fn line_error(line_number: usize, error: simd_json::Error) -> CodecError {
    CodecError::Malformed(format!(
        "line {} is not valid JSON: {error}",
        line_number + 1
    ))
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
        decode_events(&mut body.as_bytes().to_vec(), format, 10, &ctx())
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
    fn absurd_nesting_is_malformed_not_a_crash() {
        for depth in [40, 10_000, 1_000_000] {
            let body = format!("[{}{}]", "[".repeat(depth), "]".repeat(depth));
            let result = decode(&body, BodyFormat::JsonArray);
            assert!(
                matches!(result, Err(CodecError::Malformed(_))),
                "depth {depth}"
            );
            let nested_field = format!(
                "[{{\"x\":{}{}}}]",
                "{\"a\":".repeat(depth),
                "}".repeat(depth)
            );
            let result = decode(&nested_field, BodyFormat::JsonArray);
            assert!(
                matches!(result, Err(CodecError::Malformed(_))),
                "field depth {depth}"
            );
        }
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
            let _ = decode_events(&mut bytes.clone(), BodyFormat::JsonArray, 100, &ctx());
            let _ = decode_events(&mut bytes.clone(), BodyFormat::Ndjson, 100, &ctx());
        }

        #[test]
        fn arbitrary_json_values_never_panic(value in arb_json()) {
            let text = serde_json::to_string(&value).unwrap();
            let _ = decode_events(&mut text.clone().into_bytes(), BodyFormat::JsonArray, 100, &ctx());
            let _ = decode_events(&mut text.into_bytes(), BodyFormat::Ndjson, 100, &ctx());
        }
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
