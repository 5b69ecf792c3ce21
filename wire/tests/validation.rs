//! Every field rule of the wire format, each with a bad value; and properties of good events.

use proptest::prelude::*;
use serde_json::{json, Value};
use wire::{validate, Element, EventError, EventKind, ValidationContext, WireEvent};

const NOW: i64 = 1_764_000_000_000;

fn ctx() -> ValidationContext {
    ValidationContext {
        received_at: NOW,
        max_future_ms: 86_400_000,
    }
}

fn good() -> Value {
    json!({
        "event_id": "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
        "session_id": "6f1c1d1e-2b1a-4c3d-9e8f-0a1b2c3d4e5f",
        "user_id": 42,
        "content_id": 7,
        "kind": "start",
        "ts": NOW - 5_000,
        "sent_at": NOW - 1_000,
        "position_ms": 0,
        "duration_ms": 3_600_000,
        "bitrate_kbps": 4500,
        "buffer_ms": 120,
        "error_code": "E42",
        "device": "tv",
        "cdn": "edge-1",
        "app_version": "5.2.1",
        "country": "FR"
    })
}

fn check(value: &Value) -> Result<wire::PlaybackEvent, EventError> {
    let text = serde_json::to_string(value).unwrap();
    let element: Element = serde_json::from_str(&text).unwrap();
    validate(&element, &ctx())
}

fn with(field: &str, value: Value) -> Value {
    let mut event = good();
    event[field] = value;
    event
}

fn without(field: &str) -> Value {
    let mut event = good();
    event.as_object_mut().unwrap().remove(field);
    event
}

fn rejected_for(event: Value, field: &str) {
    let error = check(&event).expect_err(&format!("{event} should be rejected"));
    assert!(
        error.to_string().contains(field),
        "`{error}` should name `{field}`"
    );
}

#[test]
fn a_complete_event_is_accepted_with_every_field() {
    let event = check(&good()).unwrap();
    assert_eq!(event.user_id, 42);
    assert_eq!(event.kind, EventKind::Start);
    assert_eq!(event.sent_at, Some(NOW - 1_000));
    assert_eq!(event.received_at, NOW);
    assert_eq!(event.country.unwrap().as_str(), "FR");
    assert_eq!(event.device.as_deref(), Some("tv"));
}

#[test]
fn optional_fields_may_be_absent_or_null() {
    let mut event = good();
    for field in [
        "sent_at",
        "duration_ms",
        "bitrate_kbps",
        "buffer_ms",
        "error_code",
        "device",
        "cdn",
        "app_version",
        "country",
    ] {
        event.as_object_mut().unwrap().remove(field);
    }
    assert!(check(&event).is_ok());
    assert!(check(&with("country", Value::Null))
        .unwrap()
        .country
        .is_none());
}

#[test]
fn unknown_fields_are_ignored() {
    let event = with(
        "player",
        json!({"name": "x", "features": [1, 2, {"deep": true}]}),
    );
    assert!(check(&event).is_ok());
}

#[test]
fn each_required_field_missing_or_null_is_named() {
    for field in [
        "event_id",
        "session_id",
        "user_id",
        "content_id",
        "kind",
        "ts",
        "position_ms",
    ] {
        assert_eq!(
            check(&without(field)).unwrap_err(),
            EventError::Missing(field)
        );
        assert_eq!(
            check(&with(field, Value::Null)).unwrap_err(),
            EventError::Missing(field)
        );
    }
}

#[test]
fn event_id_and_session_id_must_be_uuids() {
    for field in ["event_id", "session_id"] {
        rejected_for(with(field, json!("not-a-uuid")), field);
        rejected_for(with(field, json!(12)), field);
        rejected_for(
            with(field, json!("00000000-0000-0000-0000-000000000000")),
            field,
        );
        rejected_for(
            with(field, json!("1b4e28ba-2fa1-41d2-883f-0016d3cca42")),
            field,
        );
    }
}

#[test]
fn ids_and_positions_must_be_non_negative_integers() {
    for field in ["user_id", "content_id", "position_ms", "duration_ms"] {
        rejected_for(with(field, json!(-1)), field);
        rejected_for(with(field, json!("42")), field);
        rejected_for(with(field, json!(1.5)), field);
        rejected_for(with(field, json!(true)), field);
        rejected_for(with(field, json!([1])), field);
    }
    assert_eq!(
        check(&with("user_id", json!(u64::MAX))).unwrap().user_id,
        u64::MAX
    );
}

#[test]
fn bitrate_and_buffer_must_fit_in_u32() {
    for field in ["bitrate_kbps", "buffer_ms"] {
        rejected_for(with(field, json!(u32::MAX as u64 + 1)), field);
        rejected_for(with(field, json!(-5)), field);
        rejected_for(with(field, json!("fast")), field);
        assert!(check(&with(field, json!(u32::MAX))).is_ok());
    }
}

#[test]
fn kind_must_be_one_of_the_eleven() {
    rejected_for(with("kind", json!("play")), "kind");
    rejected_for(with("kind", json!("START")), "kind");
    rejected_for(with("kind", json!(1)), "kind");
    for kind in EventKind::ALL {
        let event = with("kind", json!(kind.as_str()));
        assert_eq!(check(&event).unwrap().kind, kind);
    }
}

#[test]
fn ts_must_be_epoch_ms_not_negative_nor_far_in_the_future() {
    rejected_for(with("ts", json!(-1)), "ts");
    rejected_for(with("ts", json!("yesterday")), "ts");
    rejected_for(with("ts", json!(1.7e12)), "ts");
    rejected_for(with("ts", json!(u64::MAX)), "ts");
    let mut far_future = without("sent_at");
    far_future["ts"] = json!(NOW + 2 * 86_400_000);
    rejected_for(far_future, "ts");
}

#[test]
fn ts_must_not_be_after_sent_at() {
    let mut event = good();
    event["ts"] = json!(NOW - 1_000);
    event["sent_at"] = json!(NOW - 2_000);
    rejected_for(event, "sent_at");
    rejected_for(with("sent_at", json!("now")), "sent_at");
    rejected_for(with("sent_at", json!(-3)), "sent_at");
}

#[test]
fn a_client_clock_ahead_is_corrected_by_sent_at() {
    // The client's clock runs two days ahead; sent_at shows it, so ts is plausible.
    let skew = 2 * 86_400_000;
    let mut event = good();
    event["ts"] = json!(NOW + skew - 5_000);
    event["sent_at"] = json!(NOW + skew - 10);
    let accepted = check(&event).unwrap();
    assert_eq!(
        accepted.ts,
        NOW + skew - 5_000,
        "the client's ts is kept as sent"
    );
}

#[test]
fn texts_have_their_byte_limits() {
    rejected_for(with("error_code", json!("e".repeat(65))), "error_code");
    assert!(check(&with("error_code", json!("e".repeat(64)))).is_ok());
    for field in ["device", "cdn", "app_version"] {
        rejected_for(with(field, json!("d".repeat(33))), field);
        rejected_for(with(field, json!(5)), field);
        assert!(check(&with(field, json!("d".repeat(32)))).is_ok());
    }
    // Bytes, not characters: 11 four-byte characters are 44 bytes.
    rejected_for(with("device", json!("🎬".repeat(11))), "device");
}

#[test]
fn country_must_be_an_assigned_alpha_2_code() {
    for bad in [json!("USA"), json!("XX"), json!("U"), json!(1), json!("")] {
        rejected_for(with("country", bad), "country");
    }
    assert_eq!(
        check(&with("country", json!("de")))
            .unwrap()
            .country
            .unwrap()
            .as_str(),
        "DE"
    );
}

#[test]
fn a_duplicated_field_is_rejected() {
    let text = serde_json::to_string(&good())
        .unwrap()
        .replacen('{', r#"{"user_id":1,"#, 1);
    let element: Element = serde_json::from_str(&text).unwrap();
    assert_eq!(
        validate(&element, &ctx()).unwrap_err(),
        EventError::DuplicateField("user_id")
    );
}

#[test]
fn an_oversized_event_is_rejected() {
    let event = with("padding", json!("x".repeat(5_000)));
    assert!(matches!(
        check(&event).unwrap_err(),
        EventError::TooLarge { .. }
    ));
}

#[test]
fn something_other_than_an_object_is_rejected() {
    for value in [json!(1), json!("event"), json!([1, 2]), Value::Null] {
        let text = serde_json::to_string(&value).unwrap();
        let element: Element = serde_json::from_str(&text).unwrap();
        assert!(
            matches!(validate(&element, &ctx()), Err(EventError::NotAnObject(_))),
            "{value}"
        );
    }
}

#[test]
fn reason_codes_are_short_labels() {
    assert_eq!(EventError::Missing("ts").reason_code(), "missing_field");
    assert_eq!(
        check(&with("ts", json!("x"))).unwrap_err().reason_code(),
        "wrong_type"
    );
}

fn arb_event() -> impl Strategy<Value = WireEvent> {
    (
        any::<u128>().prop_filter("not nil", |id| *id != 0),
        any::<u128>().prop_filter("not nil", |id| *id != 0),
        any::<u64>(),
        any::<u64>(),
        prop::sample::select(EventKind::ALL.to_vec()),
        0i64..NOW,
        any::<u64>(),
        prop::option::of(any::<u32>()),
        prop::option::of("[a-z0-9.]{0,32}"),
        prop::option::of(prop::sample::select(vec!["US", "FR", "JP", "BR"])),
    )
        .prop_map(
            |(
                event_id,
                session_id,
                user_id,
                content_id,
                kind,
                ts,
                position_ms,
                bitrate,
                device,
                country,
            )| WireEvent {
                event_id: uuid::Uuid::from_u128(event_id).to_string(),
                session_id: uuid::Uuid::from_u128(session_id).to_string(),
                user_id,
                content_id,
                kind,
                ts,
                sent_at: Some(NOW),
                position_ms,
                duration_ms: None,
                bitrate_kbps: bitrate,
                buffer_ms: None,
                played_ms: None,
                startup_ms: None,
                before_start: None,
                fatal: None,
                error_code: None,
                device,
                cdn: None,
                app_version: None,
                country: country.map(str::to_owned),
                received_at: None,
            },
        )
}

proptest! {
    #[test]
    fn every_well_formed_event_validates_and_round_trips(event in arb_event()) {
        let text = serde_json::to_string(&event).unwrap();
        let element: Element = serde_json::from_str(&text).unwrap();
        let valid = validate(&element, &ctx()).unwrap();
        let mut back = valid.to_wire();
        prop_assert_eq!(back.received_at, Some(NOW));
        back.received_at = None;
        prop_assert_eq!(back, event);
    }

    #[test]
    fn any_integer_in_a_text_field_is_a_type_error(number in any::<i64>()) {
        let error = check(&with("device", json!(number))).unwrap_err();
        prop_assert_eq!(error.reason_code(), "wrong_type");
    }
}

#[test]
fn qoe_fields_are_read_on_the_kinds_they_belong_to() {
    let mut start = with("startup_ms", json!(850));
    start["played_ms"] = json!(0);
    let event = check(&start).unwrap();
    assert_eq!(event.startup_ms, Some(850));
    assert_eq!(event.played_ms, Some(0));

    let mut exit = with("kind", json!("stop"));
    exit["before_start"] = json!(true);
    assert_eq!(check(&exit).unwrap().before_start, Some(true));

    let mut error = with("kind", json!("error"));
    error["before_start"] = json!(false);
    error["fatal"] = json!(false);
    let event = check(&error).unwrap();
    assert_eq!(
        (event.before_start, event.fatal),
        (Some(false), Some(false))
    );

    let heartbeat = with("kind", json!("heartbeat"));
    let event = check(&heartbeat).unwrap();
    assert_eq!(
        (event.startup_ms, event.before_start, event.fatal),
        (None, None, None)
    );
}

#[test]
fn qoe_fields_are_refused_out_of_range_or_on_the_wrong_kind() {
    rejected_for(with("startup_ms", json!(600_001)), "startup_ms");
    rejected_for(with("startup_ms", json!(-1)), "startup_ms");
    rejected_for(with("played_ms", json!(86_400_001u64)), "played_ms");
    rejected_for(with("played_ms", json!("10")), "played_ms");
    rejected_for(with("before_start", json!(true)), "before_start");
    rejected_for(with("fatal", json!(true)), "fatal");
    let mut heartbeat = with("kind", json!("heartbeat"));
    heartbeat["startup_ms"] = json!(10);
    rejected_for(heartbeat, "startup_ms");
    let mut error = with("kind", json!("error"));
    error["fatal"] = json!("yes");
    rejected_for(error, "fatal");
    let mut stop = with("kind", json!("stop"));
    stop["before_start"] = json!(1);
    rejected_for(stop, "before_start");
}
