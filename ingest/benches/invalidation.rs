//! What the invalidation side path costs the hot path: `Invalidator::on_durable`, which every
//! batcher calls after each durable batch, per event. The flusher runs meanwhile (window 200 ms,
//! the in-process cache), as in the service, so the set is swapped out under the recorders.

use std::sync::Arc;

use cache::MemoryCache;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ingest::config::InvalidationSettings;
use ingest::sidepath::invalidation;
use ingest::sidepath::DurableListener;
use ingest::telemetry::Metrics;
use wire::{EventKind, PlaybackEvent};

/// Events per batch, the pipeline's default `batch_max_events`.
const BATCH: usize = 8192;
const VIEWERS: u64 = 1_000_000;

fn event(user_id: u64, kind: EventKind) -> PlaybackEvent {
    PlaybackEvent {
        kind,
        ..testkit::event(user_id, 0)
    }
}

/// Batches whose users are spread over `VIEWERS`; one event in `taste_every` is a `start`.
fn batches(taste_every: usize) -> Vec<Vec<PlaybackEvent>> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..64)
        .map(|_| {
            (0..BATCH)
                .map(|i| {
                    // xorshift: cheap, and no two batches share their users' order.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let kind = if i % taste_every == 0 {
                        EventKind::Start
                    } else {
                        EventKind::Heartbeat
                    };
                    event(state % VIEWERS, kind)
                })
                .collect()
        })
        .collect()
}

fn on_durable(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let settings = InvalidationSettings::default();
    let (invalidator, _task) = runtime.block_on(async {
        invalidation::start(
            &settings,
            Arc::new(MemoryCache::new()),
            Arc::new(Metrics::default()),
        )
    });
    let mut group = c.benchmark_group("invalidation_on_durable_8192_events");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, taste_every) in [("start_1_in_50", 50), ("every_event_a_start", 1)] {
        let batches = batches(taste_every);
        let mut next = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                next = (next + 1) % batches.len();
                invalidator.on_durable(&batches[next]);
            })
        });
    }
    group.finish();
    drop(invalidator);
}

criterion_group!(benches, on_durable);
criterion_main!(benches);
