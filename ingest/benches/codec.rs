//! Micro-benchmarks of the hot path's CPU stages, per event: parsing (simd-json's tape read
//! straight into events, as the service does, against serde's walk of the same tape with the
//! lenient reader as the service did before, serde_json driving that reader, and simd-json's
//! tape alone), validation on its own (fields already read, turned into domain events), and
//! the block codec (sort, delta rows, zstd) on a batch of loadgen-like events.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ingest::codec::{decode_events, BodyFormat};
use serde::de::DeserializeSeed;
use wire::{validate_read, ElementsSeed, ValidationContext, WireEvent};

const EVENTS: usize = 1000;

fn body() -> Vec<u8> {
    let now = ingest::now_ms();
    let events: Vec<WireEvent> = (0..EVENTS as u64)
        .map(|i| WireEvent {
            event_id: uuid::Uuid::from_u128(0x1b4e_28ba_2fa1_41d2_883f_0016_d3cc_0000 + i as u128)
                .to_string(),
            session_id: uuid::Uuid::from_u128(
                0x6f1c_1d1e_2b1a_4c3d_9e8f_0a1b_2c3d_0000 + (i / 10) as u128,
            )
            .to_string(),
            user_id: 1_000_000 + i * 7919 % 100_000,
            content_id: i % 977,
            kind: wire::EventKind::Heartbeat,
            ts: now - 60_000 + i as i64,
            sent_at: Some(now),
            position_ms: 1_000 * i,
            duration_ms: Some(7_200_000),
            bitrate_kbps: Some(4_500),
            buffer_ms: None,
            played_ms: None,
            startup_ms: None,
            before_start: None,
            fatal: None,
            error_code: None,
            device: Some("tv".into()),
            cdn: Some(format!("edge-{}", i % 12)),
            app_version: Some("7.4.2".into()),
            country: Some("US".into()),
            received_at: None,
        })
        .collect();
    serde_json::to_vec(&events).unwrap()
}

fn ctx() -> ValidationContext {
    ValidationContext {
        received_at: ingest::now_ms(),
        max_future_ms: 86_400_000,
    }
}

/// The valid events of a body, read by serde driving `wire`'s lenient reader (the service's
/// parser before the tape reader).
fn lenient_validated<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    ctx: &ValidationContext,
) -> Vec<wire::PlaybackEvent> {
    let mut events = Vec::with_capacity(EVENTS);
    ElementsSeed {
        max: 10_000,
        each: |shape, raw: &wire::RawEvent<'_>| {
            if let Ok(event) = validate_read(shape, raw, ctx) {
                events.push(event);
            }
        },
    }
    .deserialize(deserializer)
    .unwrap();
    events
}

fn parsing(c: &mut Criterion) {
    let body = body();
    let ctx = ctx();
    let mut group = c.benchmark_group("decode_1000_events");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("simd_json_lenient_validated", |b| {
        b.iter_batched_ref(
            || body.clone(),
            |body| decode_events(body, BodyFormat::JsonArray, 10_000, &ctx, None).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("simd_json_serde_walk_validated", |b| {
        b.iter_batched_ref(
            || body.clone(),
            |body| {
                let mut deserializer = simd_json::Deserializer::from_slice(body).unwrap();
                lenient_validated(&mut deserializer, &ctx)
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("serde_json_lenient_validated", |b| {
        b.iter_batched_ref(
            || body.clone(),
            |body| {
                let mut deserializer = serde_json::Deserializer::from_slice(body);
                let events = lenient_validated(&mut deserializer, &ctx);
                deserializer.end().unwrap();
                events
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("simd_json_parse_only_to_tape", |b| {
        b.iter_batched_ref(
            || body.clone(),
            |body| simd_json::to_tape(body).map(|tape| tape.0.len()).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn validation(c: &mut Criterion) {
    let body = body();
    let ctx = ctx();
    // Read once: what remains per iteration is `validate` of every element.
    let elements: Vec<wire::Element<'_>> = serde_json::from_slice(&body).unwrap();
    assert_eq!(elements.len(), EVENTS);
    let mut group = c.benchmark_group("validate_1000_events");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("validate", |b| {
        b.iter(|| {
            elements
                .iter()
                .filter(|element| wire::validate(element, &ctx).is_ok())
                .count()
        })
    });
    group.finish();
}

fn block_codec(c: &mut Criterion) {
    let body = body();
    let decoded = decode_events(
        &mut body.clone(),
        BodyFormat::JsonArray,
        10_000,
        &ctx(),
        None,
    )
    .unwrap()
    .events;
    let bytes_per_event = ingest::sink::block::encode(&decoded).bytes.len() as f64 / EVENTS as f64;
    let mut group = c.benchmark_group("block_codec_1000_events");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function(
        format!("encode ({bytes_per_event:.1} bytes per event)"),
        |b| b.iter(|| ingest::sink::block::encode(&decoded).bytes.len()),
    );
    let block = ingest::sink::block::encode(&decoded).bytes;
    group.bench_function("decode", |b| {
        b.iter(|| {
            ingest::sink::block::decode(&block)
                .map(|rows| rows.len())
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, parsing, validation, block_codec);
criterion_main!(benches);
