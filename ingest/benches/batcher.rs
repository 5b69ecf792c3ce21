//! The batcher machinery alone, per event: `Pipeline::admit` + `Pipeline::write` of 1,000-event
//! requests with the default pipeline settings (batches of 8,192 events, linger 2 ms, 2 batches
//! in flight per shard), with a sink that only counts. What it measures is what sits between
//! parsing and storage: admission, routing to shards, the flume queues, batch closing, and the
//! ack fan-out back to every request; not parsing (see `codec`), not the store.
//!
//! Several requests are kept in flight by as many tasks on a 2-thread tokio runtime. Events are
//! cloned out of templates before each timed chunk, so the clone is not measured (the service
//! gets its vectors from the parser). With 8 requests in flight a shard never gathers 8,192
//! events, so every batch closes on linger and the figure is bounded by it; with 32 in flight
//! batches close on events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ingest::config::PipelineSettings;
use ingest::pipeline::Pipeline;
use ingest::sink::{EventSink, HistoryQuery, SinkError};
use ingest::telemetry::Metrics;
use tokio::runtime::Runtime;
use tokio::time::Instant;
use wire::{CountryCode, EventKind, PlaybackEvent};

const EVENTS: usize = 1000;
/// What `admit` is asked for per request: the size of the 1,000-event JSON body `bench pipeline`
/// posts.
const BODY_BYTES: usize = 334_000;
/// Requests cloned before, and written in, one timed chunk.
const CHUNK: usize = 256;
/// Distinct request templates (distinct users and event ids).
const TEMPLATES: usize = 16;

/// A sink that makes nothing durable: it counts events and acknowledges at once.
#[derive(Default)]
struct CountingSink {
    events: AtomicU64,
}

#[async_trait]
impl EventSink for CountingSink {
    async fn write(&self, _lane: usize, events: Arc<Vec<PlaybackEvent>>) -> Result<(), SinkError> {
        self.events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn history(&self, _query: HistoryQuery) -> Result<Vec<PlaybackEvent>, SinkError> {
        Ok(Vec::new())
    }

    async fn ready(&self) -> bool {
        true
    }
}

/// Requests of `EVENTS` heartbeats from viewers spread over 100,000 users (so every shard gets
/// work), shaped like `codec`'s bodies.
fn templates() -> Vec<Vec<PlaybackEvent>> {
    let now = ingest::now_ms();
    let country = CountryCode::parse("US");
    (0..TEMPLATES as u64)
        .map(|request| {
            (0..EVENTS as u64)
                .map(|i| {
                    let n = request * EVENTS as u64 + i;
                    PlaybackEvent {
                        event_id: uuid::Uuid::from_u128(
                            0x1b4e_28ba_2fa1_41d2_883f_0016_d3cc_0000 + n as u128,
                        ),
                        session_id: uuid::Uuid::from_u128(
                            0x6f1c_1d1e_2b1a_4c3d_9e8f_0a1b_2c3d_0000 + (n / 10) as u128,
                        ),
                        user_id: 1_000_000 + n * 7919 % 100_000,
                        content_id: n % 977,
                        kind: EventKind::Heartbeat,
                        ts: now - 60_000 + i as i64,
                        sent_at: Some(now),
                        received_at: now,
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
                        cdn: Some(format!("edge-{}", i % 12).as_str().into()),
                        app_version: Some("7.4.2".into()),
                        country,
                    }
                })
                .collect()
        })
        .collect()
}

/// Writes `requests` through the pipeline from `in_flight` tasks, each with one request in
/// flight at a time; returns the time from the first admit to the last ack.
fn write_all(
    runtime: &Runtime,
    pipeline: &Pipeline,
    requests: Vec<Vec<PlaybackEvent>>,
    in_flight: usize,
) -> Duration {
    let mut lanes: Vec<Vec<Vec<PlaybackEvent>>> = (0..in_flight).map(|_| Vec::new()).collect();
    for (index, request) in requests.into_iter().enumerate() {
        lanes[index % in_flight].push(request);
    }
    runtime.block_on(async {
        let started = Instant::now();
        let clients: Vec<_> = lanes
            .into_iter()
            .map(|lane| {
                let pipeline = pipeline.clone();
                tokio::spawn(async move {
                    for events in lane {
                        let deadline = Instant::now() + Duration::from_secs(10);
                        let _permit = pipeline.admit(BODY_BYTES, deadline).await.unwrap();
                        pipeline.write(events, deadline).await.unwrap();
                    }
                })
            })
            .collect();
        for client in clients {
            client.await.unwrap();
        }
        started.elapsed()
    })
}

fn admit_and_write(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let templates = templates();
    let mut group = c.benchmark_group("pipeline_write_1000_events");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(5));
    for shards in [1usize, 2] {
        for in_flight in [8usize, 32] {
            let settings = PipelineSettings {
                shards: shards.try_into().unwrap(),
                ..PipelineSettings::default()
            };
            let sink = Arc::new(CountingSink::default());
            let (pipeline, workers) = runtime.block_on(async {
                Pipeline::start(
                    &settings,
                    sink.clone(),
                    Vec::new(),
                    Arc::new(Metrics::default()),
                )
            });
            let name = format!("shards_{shards}/in_flight_{in_flight}");
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let before = sink.events.load(Ordering::Relaxed);
                    let mut elapsed = Duration::ZERO;
                    let mut left = iters as usize;
                    let mut next = 0;
                    while left > 0 {
                        let count = left.min(CHUNK);
                        let requests: Vec<Vec<PlaybackEvent>> = (0..count)
                            .map(|i| templates[(next + i) % TEMPLATES].clone())
                            .collect();
                        next += count;
                        elapsed += write_all(&runtime, &pipeline, requests, in_flight);
                        left -= count;
                    }
                    let written = sink.events.load(Ordering::Relaxed) - before;
                    assert_eq!(
                        written,
                        iters * EVENTS as u64,
                        "every event reached the sink"
                    );
                    elapsed
                })
            });
            drop(pipeline);
            runtime.block_on(workers.drain());
        }
    }
    group.finish();
}

criterion_group!(benches, admit_and_write);
criterion_main!(benches);
