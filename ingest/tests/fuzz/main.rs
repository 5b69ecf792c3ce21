//! Fuzz targets of what reads untrusted bytes: the request codec (any body a client sends) and
//! the block decoder (any bytes found on disk or in Cassandra, checksum and all).
//!
//! `cargo test -p ingest --test fuzz` runs each target on a bounded number of generated inputs
//! (what CI does); `cargo bolero test --engine libfuzzer -p ingest --test fuzz codec` (nightly,
//! `cargo install cargo-bolero`) fuzzes with coverage feedback for as long as asked.

use ingest::codec::{decode_events, BodyFormat, CodecError};
use wire::ValidationContext;

fn ctx() -> ValidationContext {
    ValidationContext {
        received_at: 1_700_000_000_000,
        max_future_ms: 86_400_000,
    }
}

/// Any bytes: never a panic; a body serde_json reads as an array gets one decision per element.
fn codec() {
    bolero::check!().for_each(|bytes: &[u8]| {
        let elements = serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(bytes);
        let decoded = decode_events(
            &mut bytes.to_vec(),
            BodyFormat::JsonArray,
            1000,
            &ctx(),
            None,
        );
        if let Ok(elements) = elements {
            match decoded {
                Ok(decoded) => assert_eq!(
                    decoded.events.len() + decoded.rejected.len(),
                    elements.len()
                ),
                Err(CodecError::TooManyEvents { .. }) => assert!(elements.len() > 1000),
                Err(error) => panic!("valid JSON refused: {error}"),
            }
        }
        let _ = decode_events(&mut bytes.to_vec(), BodyFormat::Ndjson, 1000, &ctx(), None);
    });
}

/// A real block with bytes changed and its checksum made right again: never a panic, never an
/// allocation the block's own size does not justify.
fn block_decoder() {
    bolero::check!()
        .with_type::<(u8, Vec<(u16, u8)>)>()
        .for_each(|(count, changes)| {
            let events: Vec<_> = (0..*count as u64 % 32 + 1)
                .map(|i| event(i % 4, i as i64))
                .collect();
            let mut block = ingest::sink::block::encode(&events).bytes;
            for (at, byte) in changes {
                let at = *at as usize % block.len();
                block[at] = *byte;
            }
            if block.len() > 8 {
                let crc = crc32fast::hash(&block[8..]);
                block[4..8].copy_from_slice(&crc.to_le_bytes());
            }
            let _ = ingest::sink::block::decode(&block);
        });
}

fn event(user: u64, n: i64) -> wire::PlaybackEvent {
    let raw = format!(
        r#"{{"event_id":"{}","session_id":"6f1c1d1e-2b1a-4c3d-9e8f-0a1b2c3d4e5f","user_id":{},"content_id":9,"kind":"heartbeat","ts":{},"position_ms":1000,"device":"tv"}}"#,
        uuid::Uuid::new_v4(),
        user + 1,
        1_699_999_000_000 + n
    );
    let element: wire::Element = serde_json::from_str(&raw).unwrap();
    wire::validate(&element, &ctx()).unwrap()
}

fn main() {
    // One process per target under libfuzzer; both in turn under `cargo test`.
    match std::env::args().nth(1).as_deref() {
        Some(name) if name.contains("block") => block_decoder(),
        Some(name) if name.contains("codec") => codec(),
        _ => {
            codec();
            block_decoder();
        }
    }
}
