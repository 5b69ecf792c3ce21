//! The Cassandra write modes, measured: the same events, in batches as the pipeline forms them,
//! written through `CassandraSink` directly (no HTTP, no parsing) once per write mode, into a
//! keyspace of its own that is dropped afterwards. Reports rows/s and CPU per row of this
//! process and of the Cassandra server (its pid file under `ENGINES_DIR`).
//!
//! Goal: the best mode reaches `--target` rows/s (default 50,000: the low end of a small node's
//! single-row insert rate in docs/DESIGN.md, with the client on the same 2 cores).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use event_cql::WriteMode;
use event_cql::{self as cassandra, CassandraConfig};
use hdrhistogram::Histogram;
use ingest::sink::cassandra::CassandraSink;
use ingest::sink::EventSink;
use ingest::telemetry::Metrics;
use playpulse::Settings;
use serde_json::json;
use tokio::task::JoinSet;
use uuid::Uuid;
use wire::{CountryCode, EventKind, PlaybackEvent};

use crate::report::{self, LatencyMs, Outcome};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Events written per mode.
    #[arg(long, default_value_t = 300_000)]
    events: usize,
    /// Events per batch handed to the sink (the pipeline's batch_max_events).
    #[arg(long, default_value_t = 8192)]
    batch: usize,
    /// Batches in the sink at once (pipeline shards x max_in_flight_batches).
    #[arg(long, default_value_t = 4)]
    concurrent_batches: usize,
    /// Distinct viewers.
    #[arg(long, default_value_t = 30_000)]
    viewers: u64,
    /// Events of one viewer in one batch (a few heartbeats of one partition).
    #[arg(long, default_value_t = 3)]
    events_per_partition: usize,
    /// Write modes to measure, in this order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "concurrent-inserts,partition-batches,replica-batches"
    )]
    modes: Vec<Mode>,
    /// Times to measure every mode, interleaved (A B C A B C ...), so load from elsewhere on
    /// the machine falls on all modes alike; each mode reports its median round.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Connections the driver opens to the node.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Rows per batch at most (partition and replica batches).
    #[arg(long)]
    max_batch_rows: Option<usize>,
    /// The best mode must reach this many rows/s.
    #[arg(long, default_value_t = 50_000.0)]
    target: f64,
    /// A configuration profile ([cassandra] nodes, consistency, max_in_flight_rows, ...).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The Cassandra server's pid file, for its CPU time.
    #[arg(
        long,
        default_value = ".engines/run/cassandra.pid",
        env = "CASSANDRA_PID_FILE"
    )]
    cassandra_pid_file: PathBuf,
    /// Write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    ConcurrentInserts,
    PartitionBatches,
    ReplicaBatches,
}

impl Mode {
    fn write_mode(self) -> WriteMode {
        match self {
            Mode::ConcurrentInserts => WriteMode::ConcurrentInserts,
            Mode::PartitionBatches => WriteMode::PartitionBatches,
            Mode::ReplicaBatches => WriteMode::ReplicaBatches,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::ConcurrentInserts => "concurrent_inserts",
            Mode::PartitionBatches => "partition_batches",
            Mode::ReplicaBatches => "replica_batches",
        }
    }
}

/// A splitmix64 generator: the same events every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

const DEVICES: [&str; 5] = ["tv", "ios", "android", "web", "console"];
const CDNS: [&str; 3] = ["edge-a", "edge-b", "edge-c"];
const COUNTRIES: [&str; 6] = ["US", "GB", "DE", "JP", "BR", "IN"];

/// Batches like the pipeline's: each holds `batch / events_per_partition` viewers picked at
/// random, each with a few consecutive heartbeats, all within the last hour.
fn generate(args: &Args, seed: u64) -> Vec<Arc<Vec<PlaybackEvent>>> {
    let mut rng = Rng(seed);
    let now = ingest::now_ms();
    let per_partition = args.events_per_partition.max(1);
    let mut batches = Vec::new();
    let mut made = 0;
    while made < args.events {
        let size = args.batch.min(args.events - made);
        let mut batch = Vec::with_capacity(size);
        while batch.len() < size {
            let user_id = 1 + rng.below(args.viewers);
            let session_id = Uuid::from_u64_pair(user_id, rng.next());
            let content_id = rng.below(50_000);
            let start = now - 3_600_000 + rng.below(3_000_000) as i64;
            let device = DEVICES[rng.below(DEVICES.len() as u64) as usize];
            for i in 0..per_partition.min(size - batch.len()) {
                let ts = start + 10_000 * i as i64;
                batch.push(PlaybackEvent {
                    event_id: Uuid::from_u64_pair(rng.next(), rng.next()),
                    session_id,
                    user_id,
                    content_id,
                    kind: EventKind::Heartbeat,
                    ts,
                    sent_at: Some(ts + 50),
                    received_at: ts + 120,
                    position_ms: 60_000 + 10_000 * i as u64,
                    duration_ms: Some(5_400_000),
                    bitrate_kbps: Some(4_500),
                    buffer_ms: None,
                    played_ms: None,
                    startup_ms: None,
                    before_start: None,
                    fatal: None,
                    error_code: None,
                    device: Some(device.into()),
                    cdn: Some(CDNS[(user_id % 3) as usize].into()),
                    app_version: Some("5.2.1".into()),
                    country: CountryCode::parse(COUNTRIES[(user_id % 6) as usize]),
                });
            }
        }
        made += batch.len();
        batches.push(Arc::new(batch));
    }
    batches
}

/// One event per viewer: writes every viewer's day row before the clock starts, as a running
/// service has (it rewrites a day row once an hour, not once per batch).
fn warm_up_batches(args: &Args) -> Vec<Arc<Vec<PlaybackEvent>>> {
    let now = ingest::now_ms();
    let events: Vec<PlaybackEvent> = (1..=args.viewers)
        .map(|user_id| {
            crate::body::start_event(
                Uuid::from_u64_pair(user_id, 0),
                user_id,
                1,
                now - 3_700_000,
                now,
            )
        })
        .collect();
    events
        .chunks(args.batch.max(1))
        .map(|chunk| Arc::new(chunk.to_vec()))
        .collect()
}

/// The round of `mode` with the median rows/s (the lower middle one for an even count).
fn median_round(rounds: &[serde_json::Value], mode: &str) -> serde_json::Value {
    let mut of_mode: Vec<&serde_json::Value> = rounds
        .iter()
        .filter(|round| round["mode"] == mode)
        .collect();
    of_mode.sort_by(|a, b| {
        a["rows_per_sec"]
            .as_f64()
            .partial_cmp(&b["rows_per_sec"].as_f64())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    of_mode
        .get(of_mode.len().saturating_sub(1) / 2)
        .map_or(serde_json::Value::Null, |round| (*round).clone())
}

/// Writes the batches with `concurrent` in the sink at once; returns batch latencies (µs) and
/// the number of failed batches.
async fn write_all(
    sink: &Arc<CassandraSink>,
    batches: &[Arc<Vec<PlaybackEvent>>],
    concurrent: usize,
) -> (Histogram<u64>, u64) {
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds");
    let mut failed = 0;
    let mut running = JoinSet::new();
    let mut record = |joined: Result<(Duration, bool), tokio::task::JoinError>| match joined {
        Ok((took, ok)) => {
            let _ = latency.record(took.as_micros() as u64);
            if !ok {
                failed += 1;
            }
        }
        Err(_) => failed += 1,
    };
    for (lane, batch) in batches.iter().enumerate() {
        if running.len() >= concurrent.max(1) {
            if let Some(joined) = running.join_next().await {
                record(joined);
            }
        }
        let (sink, batch) = (sink.clone(), batch.clone());
        running.spawn(async move {
            let started = Instant::now();
            let result = sink.write(lane % 2, batch).await;
            if let Err(error) = &result {
                eprintln!("  batch failed: {error}");
            }
            (started.elapsed(), result.is_ok())
        });
    }
    while let Some(joined) = running.join_next().await {
        record(joined);
    }
    (latency, failed)
}

pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let settings = Settings::load(
        args.config.as_deref(),
        std::env::vars(),
        &Default::default(),
    )?;
    let mut base = CassandraConfig::from_settings(&settings.cassandra, settings.sink.retention)?;
    base.keyspace = format!("pp_bench_{}", &Uuid::new_v4().simple().to_string()[..12]);
    base.connections_per_node = args.connections.max(1);
    if let Some(rows) = args.max_batch_rows {
        base.batch_limits.max_rows = rows.max(1);
    }
    let (session, _report) = cassandra::apply_schema(&base)
        .await
        .with_context(|| format!("cannot apply the schema on {}", base.nodes.join(",")))?;
    let cassandra_stat = report::pid_stat_path(&args.cassandra_pid_file);
    if cassandra_stat.is_none() {
        eprintln!(
            "cassandra-writes: no live pid in {} (set --cassandra-pid-file): server CPU not measured",
            args.cassandra_pid_file.display()
        );
    }
    let batches = generate(&args, 0x5eed);
    let events: usize = batches.iter().map(|batch| batch.len()).sum();
    eprintln!(
        "cassandra-writes: {events} events per mode in batches of {}, {} batches at once, {} viewers, {} events per partition per batch; keyspace {}, consistency {:?}, {} requests in flight, {} connection(s)",
        args.batch,
        args.concurrent_batches,
        args.viewers,
        args.events_per_partition,
        base.keyspace,
        base.consistency,
        base.max_in_flight_rows,
        base.connections_per_node,
    );

    let mut rounds = Vec::new();
    for round in 0..args.rounds.max(1) {
        for mode in &args.modes {
            let mut config = base.clone();
            config.write_mode = mode.write_mode();
            let sink = Arc::new(
                CassandraSink::with_session(session.clone(), config, Arc::new(Metrics::default()))
                    .await?,
            );
            // Not timed: day rows for every viewer, and the node's JIT warmed for this mode.
            let (_, warm_up_failed) =
                write_all(&sink, &warm_up_batches(&args), args.concurrent_batches).await;
            anyhow::ensure!(warm_up_failed == 0, "the warm-up writes failed");

            let requests_before = sink.request_stats();
            let client_before = report::cpu_seconds();
            let server_before = cassandra_stat.as_deref().and_then(report::cpu_seconds_of);
            let load_before = report::load_average();
            let started = Instant::now();
            let (latency, failed) = write_all(&sink, &batches, args.concurrent_batches).await;
            let seconds = started.elapsed().as_secs_f64();
            let client_cpu = report::cpu_seconds() - client_before;
            let server_cpu = match (
                server_before,
                cassandra_stat.as_deref().and_then(report::cpu_seconds_of),
            ) {
                (Some(before), Some(after)) => Some(after - before),
                _ => None,
            };
            let requests = sink.request_stats();
            let attempts = requests.attempts - requests_before.attempts;
            let retries = requests.retries - requests_before.retries;
            let rows_per_sec = events as f64 / seconds;
            let per_row_us = |cpu: f64| cpu * 1e6 / events as f64;
            let latency = LatencyMs::from_micros(&latency);
            println!(
            "{round} {:<19} {:>9.0} rows/s  client {:>5.1} µs/row  server {:>6} µs/row  {:>6} requests ({:.1} rows each), {retries} retries, {failed} failed batches;  batch ms p50 {:.1} p99 {:.1};  load {:.1}",
            mode.name(),
            rows_per_sec,
            per_row_us(client_cpu),
            server_cpu.map_or("?".into(), |cpu| format!("{:.1}", per_row_us(cpu))),
            attempts,
            events as f64 / attempts.max(1) as f64,
            latency.p50,
            latency.p99,
            report::load_average().unwrap_or(0.0),
        );
            rounds.push(json!({
                "round": round,
                "mode": mode.name(),
                "rows": events,
                "seconds": seconds,
                "rows_per_sec": rows_per_sec,
                "client_cpu_seconds": client_cpu,
                "client_cpu_us_per_row": per_row_us(client_cpu),
                "server_cpu_seconds": server_cpu,
                "server_cpu_us_per_row": server_cpu.map(per_row_us),
                "requests": attempts,
                "rows_per_request": events as f64 / attempts.max(1) as f64,
                "retries": retries,
                "failed_batches": failed,
                "batch_latency_ms": latency,
                "load_average_1m": [load_before, report::load_average()],
            }));
        }
    }
    let results: Vec<serde_json::Value> = args
        .modes
        .iter()
        .map(|mode| median_round(&rounds, mode.name()))
        .collect();
    if args.rounds > 1 {
        println!("median round of each mode:");
        for result in &results {
            println!(
                "  {:<19} {:>9.0} rows/s  client {:>5.1} µs/row  server {:>6} µs/row",
                result["mode"].as_str().unwrap_or("?"),
                result["rows_per_sec"].as_f64().unwrap_or(0.0),
                result["client_cpu_us_per_row"].as_f64().unwrap_or(0.0),
                result["server_cpu_us_per_row"]
                    .as_f64()
                    .map_or("?".into(), |us| format!("{us:.1}")),
            );
        }
    }
    if let Err(error) = cassandra::drop_keyspace(&session, &base.keyspace).await {
        eprintln!(
            "cassandra-writes: cannot drop keyspace {}: {error}",
            base.keyspace
        );
    }

    let best = results
        .iter()
        .filter(|result| result["failed_batches"] == 0)
        .max_by(|a, b| {
            a["rows_per_sec"]
                .as_f64()
                .partial_cmp(&b["rows_per_sec"].as_f64())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .cloned();
    let best_rate = best
        .as_ref()
        .and_then(|best| best["rows_per_sec"].as_f64())
        .unwrap_or(0.0);
    let met = best_rate >= args.target;
    println!(
        "best: {} at {best_rate:.0} rows/s (target {:.0})",
        best.as_ref()
            .map_or("none", |best| best["mode"].as_str().unwrap_or("?")),
        args.target
    );
    let outcome = Outcome {
        json: json!({
            "scenario": "cassandra-writes",
            "events_per_sec": best_rate,
            "best_mode": best.as_ref().map(|best| best["mode"].clone()),
            "target_rows_per_sec": args.target,
            "target_met": met,
            "modes": results,
            "rounds": rounds,
            "settings": {
                "events_per_mode": events,
                "rounds": args.rounds.max(1),
                "batch": args.batch,
                "concurrent_batches": args.concurrent_batches,
                "viewers": args.viewers,
                "events_per_partition": args.events_per_partition,
                "nodes": base.nodes,
                "consistency": format!("{:?}", base.consistency),
                "max_in_flight_rows": base.max_in_flight_rows,
                "connections_per_node": base.connections_per_node,
                "max_batch_rows": base.batch_limits.max_rows,
                "max_multi_partition_batch_bytes": base.batch_limits.max_multi_partition_bytes,
                "request_timeout_ms": base.request_timeout.as_millis() as u64,
                "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            },
        }),
        met,
    };
    outcome.write(args.json.as_deref())?;
    Ok(outcome)
}
