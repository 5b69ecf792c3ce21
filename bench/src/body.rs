//! Request bodies for in-process scenarios: realistic events (~250 bytes each), generated once
//! as templates; every use stamps fresh event ids into a copy, so no two events repeat.

use std::fmt::Write as _;

use uuid::Uuid;
use wire::{EventKind, PlaybackEvent, WireEvent};

/// A JSON array body and where each event id sits in it.
pub struct BodyTemplate {
    pub bytes: Vec<u8>,
    id_offsets: Vec<usize>,
    pub events: usize,
}

const DEVICES: [&str; 5] = ["tv", "mobile", "web", "console", "tablet"];
const COUNTRIES: [&str; 6] = ["US", "BR", "FR", "DE", "JP", "IN"];

/// A small deterministic PRNG (splitmix64): templates are the same from run to run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

impl BodyTemplate {
    /// `events` heartbeats from `viewers` viewers, as the JSON array a player batch would be.
    pub fn generate(seed: u64, events: usize, viewers: u64, now_ms: i64) -> BodyTemplate {
        let mut rng = Rng(seed);
        let wire_events: Vec<WireEvent> = (0..events)
            .map(|i| {
                let user_id = rng.below(viewers);
                let ts = now_ms - 60_000 + (i as i64 % 60_000);
                WireEvent {
                    event_id: uuid::Uuid::from_u128(
                        rng.next() as u128 | ((rng.next() as u128) << 64),
                    )
                    .to_string(),
                    session_id: uuid::Uuid::from_u128(user_id as u128 * 7919 + 1).to_string(),
                    user_id,
                    content_id: rng.below(20_000),
                    kind: if i % 50 == 0 {
                        EventKind::Start
                    } else {
                        EventKind::Heartbeat
                    },
                    ts,
                    sent_at: Some(now_ms - 60_000 + 60_000),
                    position_ms: rng.below(7_200_000),
                    duration_ms: Some(7_200_000),
                    bitrate_kbps: Some([1_500, 3_000, 4_500, 8_000][rng.below(4) as usize]),
                    buffer_ms: None,
                    played_ms: None,
                    startup_ms: None,
                    before_start: None,
                    fatal: None,
                    error_code: None,
                    device: Some(DEVICES[rng.below(5) as usize].to_owned()),
                    cdn: Some(format!("edge-{}", rng.below(12))),
                    app_version: Some("7.4.2".to_owned()),
                    country: Some(COUNTRIES[rng.below(6) as usize].to_owned()),
                    received_at: None,
                }
            })
            .collect();
        let bytes = serde_json::to_vec(&wire_events).expect("events serialize");
        let needle = b"\"event_id\":\"";
        let id_offsets = bytes
            .windows(needle.len())
            .enumerate()
            .filter(|(_, window)| *window == needle)
            .map(|(at, _)| at + needle.len())
            .collect::<Vec<_>>();
        debug_assert_eq!(id_offsets.len(), events);
        BodyTemplate {
            bytes,
            id_offsets,
            events,
        }
    }

    /// A copy whose event ids start with `sequence` (12 hex digits), unique per use.
    pub fn stamp(&self, sequence: u64) -> Vec<u8> {
        let mut body = self.bytes.clone();
        let mut hex = String::with_capacity(16);
        for (index, offset) in self.id_offsets.iter().enumerate() {
            hex.clear();
            let _ = write!(
                hex,
                "{:08x}",
                (sequence.wrapping_mul(self.events as u64) + index as u64) as u32
            );
            body[*offset..*offset + 8].copy_from_slice(hex.as_bytes());
        }
        body
    }
}

/// A bare `start` (only the required fields, session id = event id), as the simplest player
/// sends it.
pub fn start_event(
    event_id: Uuid,
    user_id: u64,
    content_id: u64,
    ts: i64,
    received_at: i64,
) -> PlaybackEvent {
    PlaybackEvent {
        event_id,
        session_id: event_id,
        user_id,
        content_id,
        kind: EventKind::Start,
        ts,
        sent_at: None,
        received_at,
        position_ms: 0,
        duration_ms: None,
        bitrate_kbps: None,
        buffer_ms: None,
        played_ms: None,
        startup_ms: None,
        before_start: None,
        fatal: None,
        error_code: None,
        device: None,
        cdn: None,
        app_version: None,
        country: None,
    }
}
