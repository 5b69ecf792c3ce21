//! `bench history`: how a history read costs as the store grows. Fills a store (the settings'
//! sink and layout: the embedded default, or a profile) with `--events` events of `--viewers`
//! viewers written straight to the sink in batches, stores what it holds in memory, then times
//! `GET /v1/users/{id}/history?limit=N` for random viewers, through the sink (target: p99 <= 10
//! ms; run at two sizes for the growth).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use ingest::sink::HistoryQuery;
use ingest::telemetry::Metrics;
use serde_json::json;
use uuid::Uuid;
use wire::{CountryCode, EventKind, PlaybackEvent};

use crate::report::{self, LatencyMs, Outcome};

const TARGET_P99_MS: f64 = 10.0;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Events to store before reading.
    #[arg(long, default_value_t = 5_000_000)]
    events: u64,
    /// Viewers they belong to (uniformly).
    #[arg(long, default_value_t = 100_000)]
    viewers: u64,
    /// History reads to time.
    #[arg(long, default_value_t = 2_000)]
    queries: u64,
    /// Events per read (`limit`).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Events per batch written.
    #[arg(long, default_value_t = 8_192)]
    batch: usize,
    /// Store here instead of a temporary directory (embedded sink).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A configuration profile layered over the defaults (PLAYPULSE_* variables apply too).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// A small, fast, seeded generator: the same store and queries on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Events of random viewers, a few hours of heartbeats back from `now`.
fn batch(rng: &mut Rng, size: usize, viewers: u64, now: i64) -> Vec<PlaybackEvent> {
    (0..size)
        .map(|_| {
            let user_id = 1 + rng.next() % viewers;
            let age_ms = (rng.next() % (6 * 3_600_000)) as i64;
            PlaybackEvent {
                event_id: Uuid::from_u64_pair(rng.next(), rng.next()),
                session_id: Uuid::from_u64_pair(user_id, 7),
                user_id,
                content_id: rng.next() % 5_000,
                kind: EventKind::Heartbeat,
                ts: now - age_ms,
                sent_at: Some(now - age_ms + 20),
                received_at: now,
                position_ms: rng.next() % 7_200_000,
                duration_ms: Some(7_200_000),
                bitrate_kbps: Some(1_000 + (rng.next() % 8) as u32 * 500),
                buffer_ms: None,
                played_ms: None,
                startup_ms: None,
                before_start: None,
                fatal: None,
                error_code: None,
                device: Some("tv".into()),
                cdn: Some("edge-1".into()),
                app_version: Some("7.4.2".into()),
                country: CountryCode::parse("FR"),
            }
        })
        .collect()
}

pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let (_temporary, data_dir, settings) =
        crate::pipeline::run_settings(args.data_dir.as_deref(), args.config.as_deref())?;
    // PostgreSQL has one layout: a row per event.
    let layout = match settings.sink.kind {
        ingest::config::SinkKind::Embedded => settings.embedded.layout,
        ingest::config::SinkKind::Cassandra => settings.cassandra.layout,
        ingest::config::SinkKind::Postgres => event_cql::HistoryLayout::Rows,
    };
    let sink = playpulse::service::build_sink(&settings, &Arc::new(Metrics::default())).await?;
    eprintln!(
        "history: {} events of {} viewers into {:?} ({:?} layout), then {} reads of limit {}",
        args.events, args.viewers, settings.sink.kind, layout, args.queries, args.limit
    );

    let now = ingest::now_ms();
    let shards = settings.pipeline.shards.get();
    let (fill_started, fill_cpu) = (Instant::now(), report::cpu_seconds());
    let mut written = 0u64;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    while written < args.events {
        // One batch in flight per shard, as the batchers keep them.
        let mut writes = Vec::with_capacity(shards);
        for shard in 0..shards {
            let size = (args.events - written).min(args.batch as u64) as usize;
            if size == 0 {
                break;
            }
            written += size as u64;
            let events = Arc::new(batch(&mut rng, size, args.viewers, now));
            let sink = sink.clone();
            writes.push(tokio::spawn(async move { sink.write(shard, events).await }));
        }
        for write in writes {
            write.await??;
        }
    }
    // What the layout holds in memory goes to the store, as at shutdown.
    sink.shutdown().await;
    let fill_seconds = fill_started.elapsed().as_secs_f64();
    let fill_cpu = report::cpu_seconds() - fill_cpu;
    let disk = report::bytes_on_disk(&data_dir);
    eprintln!(
        "  filled: {:.0} events/s, {:.2} µs CPU/event, {:.1} bytes/event on disk here",
        written as f64 / fill_seconds,
        fill_cpu * 1e6 / written as f64,
        disk as f64 / written as f64
    );

    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut returned = 0usize;
    let mut query_rng = Rng(0x2545_f491_4f6c_dd1d);
    let read_cpu = report::cpu_seconds();
    for _ in 0..args.queries {
        let user_id = 1 + query_rng.next() % args.viewers;
        let started = Instant::now();
        let events = sink
            .history(HistoryQuery {
                user_id,
                from_ms: i64::MIN,
                to_ms: i64::MAX,
                limit: args.limit,
            })
            .await?;
        latency.record((started.elapsed().as_micros() as u64).max(1))?;
        returned += events.len();
    }
    let read_cpu = report::cpu_seconds() - read_cpu;
    let reads = LatencyMs::from_micros(&latency);
    let per_read = returned as f64 / args.queries.max(1) as f64;
    println!(
        "history ({:?}, {:?} layout, {} events, {} viewers): limit={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.1} events per answer; {:.0} µs CPU per read",
        settings.sink.kind,
        layout,
        written,
        args.viewers,
        args.limit,
        reads.p50,
        reads.p99,
        reads.max,
        per_read,
        read_cpu * 1e6 / args.queries.max(1) as f64,
    );
    let met = reads.p99 <= TARGET_P99_MS;
    drop(sink);
    let outcome = Outcome {
        json: json!({
            "scenario": "history",
            "target": "history",
            "target_rule": "history limit=100 p99 <= 10 ms",
            "target_met": met,
            "sink": format!("{:?}", settings.sink.kind),
            "layout": format!("{layout:?}"),
            "events": written,
            "viewers": args.viewers,
            "limit": args.limit,
            "queries": args.queries,
            "read_latency_ms": reads,
            "events_per_answer": per_read,
            "read_cpu_us": read_cpu * 1e6 / args.queries.max(1) as f64,
            "fill_events_per_sec": written as f64 / fill_seconds,
            "fill_cpu_us_per_event": fill_cpu * 1e6 / written as f64,
            "bytes_per_event_on_disk": disk as f64 / written as f64,
            "peak_rss_bytes": report::peak_rss_bytes(),
            "machine": {"cpus": std::thread::available_parallelism().map_or(1, |n| n.get())},
        }),
        met,
    };
    outcome.write(args.json.as_deref())?;
    Ok(outcome)
}
