//! The fast path's reader: events read straight off simd-json's tape (the nodes its stage 2
//! writes), with no serde visitor layers between the tape and the fields, and with a thread's
//! parse buffers kept from request to request.
//!
//! It reads exactly what the lenient serde reader (`wire::ElementSeed`) reads, field by field
//! and byte count by byte count (tested side by side below); where that reader would fail the
//! whole body (nesting past the limit, not an array), this one answers `None` and the slow path
//! decides, as it did before.

use std::borrow::Cow;
use std::cell::RefCell;

use simd_json::{Buffers, Node, StaticNode};
use wire::limits::MAX_NESTING;
use wire::{RawEvent, Scalar, Shape};

/// A thread keeps its parse buffers (grown to the largest body it parsed) for bodies up to this
/// size; a larger body gets buffers of its own, freed after it, so an idle thread never holds
/// more than a few MiB.
const KEPT_BUFFERS_FOR_BYTES: usize = 1 << 20;

thread_local! {
    static BUFFERS: RefCell<Option<Buffers>> = const { RefCell::new(None) };
}

/// Runs `parse` with this thread's buffers (or fresh ones for a large input).
pub(super) fn with_buffers<R>(input_len: usize, parse: impl FnOnce(&mut Buffers) -> R) -> R {
    if input_len > KEPT_BUFFERS_FOR_BYTES {
        return parse(&mut Buffers::new(input_len));
    }
    let mut buffers = BUFFERS
        .with(|kept| kept.borrow_mut().take())
        .unwrap_or_else(|| Buffers::new(input_len));
    let result = parse(&mut buffers);
    BUFFERS.with(|kept| *kept.borrow_mut() = Some(buffers));
    result
}

/// How many elements the array held, or more than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Elements {
    Read(usize),
    TooMany,
}

/// Reads an array of elements off `tape`, handing each to `each` in order; `None` when the
/// tape is not an array or holds nesting past the limit.
pub(super) fn read_elements<'t>(
    tape: &[Node<'t>],
    max: usize,
    mut each: impl FnMut(Shape, &RawEvent<'t>),
) -> Option<Elements> {
    let &Node::Array { len, .. } = tape.first()? else {
        return None;
    };
    if len > max {
        // The serde reader would have read on to check the rest for nesting; the answer is
        // the same: the request is refused whole.
        return Some(Elements::TooMany);
    }
    let mut event = RawEvent::default();
    let mut at = 1;
    for _ in 0..len {
        at = read_element(tape, at, &mut event, &mut each)?;
    }
    Some(Elements::Read(len))
}

/// Reads one element (an event object, or a value rejected as not one) at `at` into `event`;
/// answers where the next element starts.
pub(super) fn read_element<'t>(
    tape: &[Node<'t>],
    at: usize,
    event: &mut RawEvent<'t>,
    each: &mut impl FnMut(Shape, &RawEvent<'t>),
) -> Option<usize> {
    *event = RawEvent::default();
    let &Node::Object { len, .. } = tape.get(at)? else {
        let (value, next) = read_value(tape, at, 1)?;
        each(Shape::NotAnObject(value.scalar.type_name()), event);
        return Some(next);
    };
    event.approx_bytes = 2;
    let mut next = at + 1;
    for _ in 0..len {
        let Node::String(name) = *tape.get(next)? else {
            return None;
        };
        let (value, after) = read_value(tape, next + 1, 2)?;
        event.record(name, value.scalar, value.bytes);
        next = after;
    }
    each(Shape::Event, event);
    Some(next)
}

/// A value and the bytes it is counted for (as `wire`'s reader counts them).
struct Value<'t> {
    scalar: Scalar<'t>,
    bytes: usize,
}

/// Reads the value at `at`, `depth` levels down (an element is at 1); answers where the next
/// value starts. Objects and arrays are walked for their size and depth, never kept.
fn read_value<'t>(tape: &[Node<'t>], at: usize, depth: u32) -> Option<(Value<'t>, usize)> {
    let scalar = match *tape.get(at)? {
        Node::String(text) => {
            let bytes = text.len() + 2;
            let scalar = Scalar::Str(Cow::Borrowed(text));
            return Some((Value { scalar, bytes }, at + 1));
        }
        Node::Static(StaticNode::U64(value)) => Scalar::Unsigned(value),
        Node::Static(StaticNode::I64(value)) => {
            u64::try_from(value).map_or(Scalar::Signed(value), Scalar::Unsigned)
        }
        Node::Static(StaticNode::F64(value)) => Scalar::Float(value),
        Node::Static(StaticNode::Bool(value)) => {
            return Some((Value::of(Scalar::Bool(value), 5), at + 1));
        }
        Node::Static(StaticNode::Null) => return Some((Value::of(Scalar::Null, 4), at + 1)),
        Node::Array { len, .. } => {
            if depth > MAX_NESTING {
                return None;
            }
            let (mut bytes, mut next) = (2, at + 1);
            for _ in 0..len {
                let (item, after) = read_value(tape, next, depth + 1)?;
                bytes += item.bytes + 1;
                next = after;
            }
            return Some((Value::of(Scalar::Nested("an array"), bytes), next));
        }
        Node::Object { len, .. } => {
            if depth > MAX_NESTING {
                return None;
            }
            let (mut bytes, mut next) = (2, at + 1);
            for _ in 0..len {
                let Node::String(name) = *tape.get(next)? else {
                    return None;
                };
                let (value, after) = read_value(tape, next + 1, depth + 1)?;
                bytes += name.len() + 2 + value.bytes + 2;
                next = after;
            }
            return Some((Value::of(Scalar::Nested("an object"), bytes), next));
        }
    };
    Some((Value::of(scalar, 8), at + 1))
}

impl<'t> Value<'t> {
    fn of(scalar: Scalar<'t>, bytes: usize) -> Value<'t> {
        Value { scalar, bytes }
    }
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeSeed;
    use wire::ElementsSeed;

    use super::*;

    /// The elements of a body as one reader read them; `None` when it left the body alone.
    type Read = Option<Vec<(Shape, RawEvent<'static>)>>;

    /// Every element as the tape reader reads it, and as the serde reader does.
    fn both_ways(json: &str) -> (Read, Read) {
        let owned = |shape: Shape, event: &RawEvent<'_>| (shape, own(event));
        let mut input = json.as_bytes().to_vec();
        let tape = with_buffers(input.len(), |buffers| {
            let tape = simd_json::Deserializer::from_slice_with_buffers(&mut input, buffers)
                .ok()?
                .into_tape();
            let mut read = Vec::new();
            read_elements(&tape.0, usize::MAX, |shape, event| {
                read.push(owned(shape, event))
            })?;
            Some(read)
        });
        let mut input = json.as_bytes().to_vec();
        let serde = simd_json::Deserializer::from_slice(&mut input)
            .ok()
            .and_then(|mut de| {
                let mut read = Vec::new();
                ElementsSeed {
                    max: usize::MAX,
                    each: |shape, event: &RawEvent<'_>| read.push(owned(shape, event)),
                }
                .deserialize(&mut de)
                .ok()?;
                Some(read)
            });
        (tape, serde)
    }

    fn own(event: &RawEvent<'_>) -> RawEvent<'static> {
        let own = |field: &Option<Scalar<'_>>| {
            field.as_ref().map(|scalar| match scalar {
                Scalar::Str(text) => Scalar::Str(Cow::Owned(text.to_string())),
                Scalar::Unsigned(v) => Scalar::Unsigned(*v),
                Scalar::Signed(v) => Scalar::Signed(*v),
                Scalar::Float(v) => Scalar::Float(*v),
                Scalar::Bool(v) => Scalar::Bool(*v),
                Scalar::Null => Scalar::Null,
                Scalar::Nested(kind) => Scalar::Nested(kind),
            })
        };
        RawEvent {
            event_id: own(&event.event_id),
            session_id: own(&event.session_id),
            user_id: own(&event.user_id),
            content_id: own(&event.content_id),
            kind: own(&event.kind),
            ts: own(&event.ts),
            sent_at: own(&event.sent_at),
            position_ms: own(&event.position_ms),
            duration_ms: own(&event.duration_ms),
            bitrate_kbps: own(&event.bitrate_kbps),
            buffer_ms: own(&event.buffer_ms),
            played_ms: own(&event.played_ms),
            startup_ms: own(&event.startup_ms),
            before_start: own(&event.before_start),
            fatal: own(&event.fatal),
            error_code: own(&event.error_code),
            device: own(&event.device),
            cdn: own(&event.cdn),
            app_version: own(&event.app_version),
            country: own(&event.country),
            playback_token: own(&event.playback_token),
            approx_bytes: event.approx_bytes,
            duplicate_field: event.duplicate_field,
        }
    }

    fn agree(json: &str) -> Read {
        let (tape, serde) = both_ways(json);
        assert_eq!(tape, serde, "{json}");
        tape
    }

    #[test]
    fn the_tape_reads_what_serde_reads() {
        let read = agree(
            r#"[{"event_id":"a","user_id":7,"ts":-3,"position_ms":1.5,"device":null,
                 "cdn":true,"extra":{"x":[1,{"y":"z"}],"w":[]},"kind":"start","kind":"stop"},
                42, "text", [1,[2]], null, false, -1, 2.5, {}]"#,
        )
        .expect("valid");
        assert_eq!(read.len(), 9);
        let (shape, event) = &read[0];
        assert_eq!(*shape, Shape::Event);
        assert_eq!(event.user_id, Some(Scalar::Unsigned(7)));
        assert_eq!(event.ts, Some(Scalar::Signed(-3)));
        assert_eq!(event.kind, Some(Scalar::Str("stop".into())));
        assert_eq!(event.duplicate_field, Some("kind"));
        assert_eq!(read[1].0, Shape::NotAnObject("an integer"));
        assert_eq!(read[3].0, Shape::NotAnObject("an array"));
        assert_eq!(read[8].0, Shape::Event);
    }

    #[test]
    fn nesting_past_the_limit_is_left_to_the_slow_path() {
        let deep = |levels: usize| {
            format!(
                r#"[{{"user_id":1,"extra":{}1{}}}]"#,
                "[".repeat(levels),
                "]".repeat(levels)
            )
        };
        for levels in [30, 31, 32, 33] {
            agree(&deep(levels));
        }
        assert!(agree(&deep(31)).is_some());
        assert!(agree(&deep(32)).is_none());
        assert!(agree("[[[[1]]]]").is_some());
    }

    #[test]
    fn anything_but_an_array_is_left_to_the_slow_path() {
        assert_eq!(agree(r#"{"user_id":1}"#), None);
        assert_eq!(agree("17"), None);
    }

    #[test]
    fn more_elements_than_allowed_refuse_the_body() {
        let mut input = b"[{},{},{}]".to_vec();
        let tape = simd_json::to_tape(&mut input).unwrap();
        assert_eq!(
            read_elements(&tape.0, 2, |_, _| {}),
            Some(Elements::TooMany)
        );
        assert_eq!(
            read_elements(&tape.0, 3, |_, _| {}),
            Some(Elements::Read(3))
        );
    }

    proptest::proptest! {
        /// Any JSON made of the fields and the odd values players send reads the same both ways.
        #[test]
        fn any_body_reads_the_same_both_ways(
            elements in proptest::collection::vec(element(), 0..6)
        ) {
            agree(&format!("[{}]", elements.join(",")));
        }
    }

    fn element() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let name = prop::sample::select(vec![
            "event_id", "user_id", "ts", "kind", "device", "country", "unknown", "",
        ]);
        let value = prop_oneof![
            any::<u64>().prop_map(|v| v.to_string()),
            any::<i64>().prop_map(|v| v.to_string()),
            (-1e6f64..1e6).prop_map(|v| format!("{v:.3}")),
            "[a-z0-9 é]{0,8}".prop_map(|v| format!("{v:?}")),
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just(r#"{"a":[1,2,{"b":null}]}"#.to_owned()),
            Just("[]".to_owned()),
        ];
        prop_oneof![
            prop::collection::vec((name, value.clone()), 0..8).prop_map(|fields| {
                let fields: Vec<String> =
                    fields.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
            value,
        ]
    }
}
