//! The Cassandra path against its baselines, on the same node in one run, each into a keyspace
//! of its own with the same `viewing_history` table:
//!
//! 1. `pipeline`: the service's hot path in process (parse + validate + batch + the Cassandra
//!    sink in its default write mode), fed JSON bodies as the HTTP handler is;
//! 2. `http`: the same over HTTP: `loadgen http` against `playpulse serve` on the Cassandra
//!    sink, both on this machine;
//! 3. `loadgen cassandra --mode best`: the fastest raw writer we built with the driver;
//! 4. `loadgen cassandra --mode per-event`: one INSERT awaited at a time per connection;
//! 5. latte (`bench/latte/viewing_history.rn`): the fastest public Cassandra load tool.
//!
//! Every writer runs closed loop for `--duration`. Reports rows/s, the ratios between them,
//! CPU per row of each client and of the Cassandra server, then flushes and major-compacts the
//! service's and the pipeline's keyspaces through `engines/nodetool` and reports bytes per event
//! on disk, and the peak RSS of this process, of the service and of the server.
//!
//! Target (docs/DESIGN.md): the service's rows/s >= latte's against the same node in the same run,
//! "while doing HTTP, parsing and batching too": judged on `http`.

mod chunk_sweep;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use event_cql::{self as cassandra, CassandraConfig, HistoryLayout};
use ingest::config::SinkKind;
use playpulse::{Overrides, Settings};
use serde_json::json;
use uuid::Uuid;

use crate::body::BodyTemplate;
use crate::latte::{self, LatteRun};
use crate::pipeline::{self, Driven};
use crate::report::{self, LatencyMs, Outcome};
use crate::server;
use crate::Common;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Each writer first runs this long unmeasured, into its own keyspace: the node's JIT,
    /// caches and connection pools warm for it, as latte's `--warmup` does.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Times to measure every writer, interleaved (A B C D A B C D ...), so load from
    /// elsewhere on the machine falls on all alike; each reports its median round.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// The Cassandra node every writer uses.
    #[arg(long, default_value = "127.0.0.1:9042")]
    node: String,
    /// Pipeline: requests in flight at once (in-process clients).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Pipeline and `best`: events per request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Distinct viewers (partitions are per viewer and day).
    #[arg(long, default_value_t = 100_000)]
    viewers: u64,
    /// `best`: workers, each with one request in flight.
    #[arg(long, default_value_t = 8)]
    best_connections: usize,
    /// `per-event`: workers, each awaiting one INSERT at a time.
    #[arg(long, default_value_t = 128)]
    per_event_connections: usize,
    /// latte: threads, and requests in flight per thread.
    #[arg(long, default_value_t = 2)]
    latte_threads: usize,
    #[arg(long, default_value_t = 128)]
    latte_concurrency: usize,
    /// Measure without latte (it is not installed, say); the target is then not judged.
    #[arg(long)]
    skip_latte: bool,
    /// Keep the keyspaces afterwards (to look at the SSTables).
    #[arg(long)]
    keep_keyspaces: bool,
    /// The Cassandra server's pid file, for its CPU time and RSS.
    #[arg(
        long,
        default_value = ".engines/run/cassandra.pid",
        env = "CASSANDRA_PID_FILE"
    )]
    cassandra_pid_file: PathBuf,
    /// The node's data directory (`data_file_directories`), for bytes on disk.
    #[arg(long, default_value = ".engines/cassandra/data")]
    cassandra_data_dir: PathBuf,
    /// nodetool, for flush and compaction (needs the node started with CASSANDRA_JMX_PORT).
    #[arg(long, default_value = "engines/nodetool")]
    nodetool: PathBuf,
    /// Also sweep the packed layout's chunk size: `playpulse serve` with `chunks.max_events` at
    /// each of these (e.g. 1,10,100,1000), few viewers, chunks closing by size.
    #[arg(long, value_delimiter = ',')]
    chunk_sweep: Vec<usize>,
    /// Viewers of the sweep's load (few: chunks of 1,000 events need 1,000 events a viewer).
    #[arg(long, default_value_t = 1_000)]
    sweep_viewers: u64,
    /// The latte workload.
    #[arg(long, default_value = "bench/latte/viewing_history.rn")]
    latte_workload: PathBuf,
}

/// One writer's figures.
#[derive(Clone)]
struct Writer {
    name: &'static str,
    rows: u64,
    seconds: f64,
    errors: u64,
    /// What "latency" is for this writer (a request is not the same thing for each).
    latency_of: &'static str,
    latency: LatencyMs,
    client_cpu_seconds: Option<f64>,
    server_cpu_seconds: Option<f64>,
    /// What the first error said (by kind, for loadgen).
    first_error: Option<String>,
}

impl Writer {
    fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.seconds.max(1e-9)
    }

    fn us_per_row(&self, cpu: Option<f64>) -> Option<f64> {
        cpu.map(|cpu| cpu * 1e6 / self.rows.max(1) as f64)
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "rows": self.rows,
            "seconds": self.seconds,
            "rows_per_sec": self.rows_per_sec(),
            "errors": self.errors,
            "first_error": self.first_error,
            "latency_of": self.latency_of,
            "latency_ms": self.latency,
            "client_cpu_seconds": self.client_cpu_seconds,
            "client_cpu_us_per_row": self.us_per_row(self.client_cpu_seconds),
            "server_cpu_seconds": self.server_cpu_seconds,
            "server_cpu_us_per_row": self.us_per_row(self.server_cpu_seconds),
        })
    }

    fn print(&self) {
        let us = |cpu: Option<f64>| {
            self.us_per_row(cpu)
                .map_or("?".to_owned(), |us| format!("{us:.1}"))
        };
        println!(
            "  {:<10} {:>9.0} rows/s  {:>9} rows  errors {:<4} client {:>6} µs/row  server {:>6} µs/row  {} p50 {:.2} ms p99 {:.2} ms",
            self.name,
            self.rows_per_sec(),
            self.rows,
            self.errors,
            us(self.client_cpu_seconds),
            us(self.server_cpu_seconds),
            self.latency_of,
            self.latency.p50,
            self.latency.p99,
        );
    }
}

/// The Cassandra server's CPU seconds between two reads.
struct ServerCpu(Option<String>);

impl ServerCpu {
    fn now(&self) -> Option<f64> {
        self.0.as_deref().and_then(report::cpu_seconds_of)
    }
}

fn keyspace(run: &str, writer: &str) -> String {
    format!("pp_bench_{run}_{writer}")
}

pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let run_id = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let server = ServerCpu(report::pid_stat_path(&args.cassandra_pid_file));
    if server.0.is_none() {
        eprintln!(
            "cassandra: no live pid in {} (--cassandra-pid-file): server CPU and RSS not measured",
            args.cassandra_pid_file.display()
        );
    }
    // Fail before measuring anything when a tool is missing.
    nodetool(&args.nodetool, &["version"]).context(
        "nodetool cannot reach the node: start it with JMX, e.g. \
         `engines/down cassandra; CASSANDRA_JMX_PORT=7199 engines/up cassandra`",
    )?;
    if !args.skip_latte {
        latte::find_latte()?;
    }
    let bin = server::build_binaries()?;
    let duration = args.common.duration;
    println!(
        "cassandra: node {}, {:?} per writer, closed loop, {} viewers, load average {:.1}",
        args.node,
        duration,
        args.viewers,
        report::load_average().unwrap_or(0.0)
    );
    let names: Vec<&'static str> = [
        "pipeline-rows",
        "pipeline-chunks",
        "http-rows",
        "http-chunks",
        "best",
        "per-event",
        "latte",
    ]
    .into_iter()
    .filter(|name| !(args.skip_latte && *name == "latte"))
    .collect();
    let keyspaces: Vec<String> = names
        .iter()
        .map(|name| keyspace(&run_id, &name.replace('-', "_")))
        .collect();
    let pipeline = PipelineUnderTest::start(&args, &keyspaces[0], HistoryLayout::Rows).await?;
    let pipeline_chunks =
        PipelineUnderTest::start(&args, &keyspaces[1], HistoryLayout::Chunks).await?;
    let service = ServiceUnderTest::start(&args, &bin, &keyspaces[2], HistoryLayout::Rows).await?;
    let service_chunks =
        ServiceUnderTest::start(&args, &bin, &keyspaces[3], HistoryLayout::Chunks).await?;
    let mut rounds: Vec<Writer> = Vec::new();
    for round in 0..args.rounds.max(1) {
        // Every writer warms up once, in the first round, unmeasured.
        let warmup = if round == 0 {
            args.warmup
        } else {
            Duration::ZERO
        };
        for (name, keyspace) in names.iter().zip(&keyspaces) {
            let writer = match *name {
                "pipeline-rows" => pipeline.measure(&args, warmup, &server).await?,
                "pipeline-chunks" => pipeline_chunks.measure(&args, warmup, &server).await?,
                "http-rows" => service.measure(&args, &bin, warmup, &server).await?,
                "http-chunks" => service_chunks.measure(&args, &bin, warmup, &server).await?,
                "best" | "per-event" => {
                    run_loadgen(&args, &bin, name, keyspace, warmup, &server).await?
                }
                _ => run_latte(&args, keyspace, warmup, &server).await?,
            };
            print!("  round {} ", round + 1);
            writer.print();
            rounds.push(writer);
        }
    }
    let peak_rss = report::peak_rss_bytes();
    // Every row the pipeline's keyspace holds: warm-up and all rounds.
    let pipeline_rows = pipeline
        .rows_written
        .load(std::sync::atomic::Ordering::Relaxed);
    let service_rows = service
        .rows_written
        .load(std::sync::atomic::Ordering::Relaxed);
    let chunk_rows = service_chunks
        .rows_written
        .load(std::sync::atomic::Ordering::Relaxed);
    let service_peak_rss = service.server.peak_rss_bytes();
    let chunks_peak_rss = service_chunks.server.peak_rss_bytes();
    pipeline.stop().await;
    pipeline_chunks.stop().await;
    drop(service);
    // Its open chunks are written at shutdown: stop it before the storage is measured.
    drop(service_chunks);
    let writers: Vec<Writer> = names
        .iter()
        .filter_map(|name| median_round(&rounds, name))
        .collect();
    if args.rounds > 1 {
        println!("median round of each writer:");
        for writer in &writers {
            writer.print();
        }
    }
    // loadgen's audience (distinct sessions, positions, bitrates) is the realistic content;
    // the pipeline's 16 body templates, fresh ids aside, compress better than real traffic.
    let storage = measure_storage(
        &args.nodetool,
        &args.cassandra_data_dir,
        &keyspaces[2],
        service_rows,
    )?;
    let chunk_storage = measure_storage(
        &args.nodetool,
        &args.cassandra_data_dir,
        &keyspaces[3],
        chunk_rows,
    )?;
    let template_storage = measure_storage(
        &args.nodetool,
        &args.cassandra_data_dir,
        &keyspaces[0],
        pipeline_rows,
    )?;

    let server_peak_rss = server.0.as_deref().and_then(report::peak_rss_of);
    if !args.chunk_sweep.is_empty() {
        println!(
            "events per chunk (packed layout over HTTP, {} viewers):",
            args.sweep_viewers
        );
    }
    let sweep = chunk_sweep::run(&args, &bin, &run_id, &server, &args.chunk_sweep).await?;
    if !args.keep_keyspaces {
        let mut dropped = keyspaces.clone();
        dropped.extend(
            args.chunk_sweep
                .iter()
                .map(|size| keyspace(&run_id, &format!("sweep_{size}"))),
        );
        drop_keyspaces(&args.node, &dropped).await;
    }

    let rate = |name: &str| {
        writers
            .iter()
            .find(|writer| writer.name == name)
            .map(Writer::rows_per_sec)
    };
    let ratio = |of: &str, to: &str| rate(of).zip(rate(to)).map(|(a, b)| a / b.max(1e-9));
    let fastest = writers.iter().map(Writer::rows_per_sec).fold(0.0, f64::max);
    for of in [
        "http-rows",
        "http-chunks",
        "pipeline-rows",
        "pipeline-chunks",
    ] {
        println!(
            "  {of} / latte {}  {of} / best {}  {of} / per-event {}",
            show_ratio(ratio(of, "latte")),
            show_ratio(ratio(of, "best")),
            show_ratio(ratio(of, "per-event")),
        );
    }
    println!(
        "  on disk after flush + major compaction, loadgen's audience (http): {:.1} bytes/event in viewing_history ({} bytes, {} SSTable files, {} rows; {:.1} with the viewing_days index)",
        storage.history_bytes_per_event,
        storage.history_bytes,
        storage.history_files,
        storage.rows,
        storage.keyspace_bytes_per_event,
    );
    println!(
        "  http-chunks on disk after flush + major compaction: {:.1} bytes/event in viewing_chunks ({} bytes, {} SSTable files, {} events; {:.1} with the log and indexes)",
        chunk_storage.history_bytes_per_event,
        chunk_storage.history_bytes,
        chunk_storage.history_files,
        chunk_storage.rows,
        chunk_storage.keyspace_bytes_per_event,
    );
    println!(
        "  the pipeline's body templates: {:.1} bytes/event ({} rows)",
        template_storage.history_bytes_per_event, template_storage.rows,
    );
    println!(
        "  peak RSS: bench (in-process pipelines + clients) {} MiB; playpulse serve {} MiB (rows), {} MiB (chunks); Cassandra {}",
        peak_rss >> 20,
        service_peak_rss >> 20,
        chunks_peak_rss >> 20,
        server_peak_rss.map_or("?".to_owned(), |bytes| format!("{} MiB", bytes >> 20)),
    );

    let errors: u64 = writers.iter().map(|writer| writer.errors).sum();
    let service_errors = writers
        .iter()
        .filter(|writer| writer.name.starts_with("http"))
        .map(|writer| writer.errors)
        .sum::<u64>();
    let met =
        ratio("http-chunks", "latte").is_some_and(|ratio| ratio >= 10.0) && service_errors == 0;
    let outcome = Outcome {
        json: json!({
            "scenario": "cassandra",
            "target": "cassandra",
            "events_per_sec": rate("http-chunks"),
            "target_rule": "the service over HTTP on the chunk layout writes >= 10x latte's rows/s against the same node in the same run",
            "target_met": met,
            // Events a node takes per second, every replica write counted: with chunks an
            // event is a fraction of a row, so the fastest writer of either layout says it.
            "cassandra_rows_per_sec_per_node": fastest,
            "bytes_per_event_on_disk": chunk_storage.history_bytes_per_event.min(storage.history_bytes_per_event),
            "ratios": {
                "http_chunks_to_latte": ratio("http-chunks", "latte"),
                "http_chunks_to_http_rows": ratio("http-chunks", "http-rows"),
                "http_chunks_to_best": ratio("http-chunks", "best"),
                "http_rows_to_latte": ratio("http-rows", "latte"),
                "http_rows_to_best": ratio("http-rows", "best"),
                "http_rows_to_per_event": ratio("http-rows", "per-event"),
                "pipeline_chunks_to_pipeline_rows": ratio("pipeline-chunks", "pipeline-rows"),
                "pipeline_rows_to_latte": ratio("pipeline-rows", "latte"),
                "pipeline_rows_to_best": ratio("pipeline-rows", "best"),
                "best_to_latte": ratio("best", "latte"),
            },
            "writers": writers.iter().map(|writer| (writer.name.to_owned(), writer.json())).collect::<serde_json::Map<_, _>>(),
            "storage": {
                "history_bytes": storage.history_bytes,
                "history_sstable_files": storage.history_files,
                "history_data_db_bytes": storage.history_data_bytes,
                "bytes_per_event_on_disk": storage.history_bytes_per_event,
                "data_db_bytes_per_event": storage.history_data_bytes as f64 / storage.rows.max(1) as f64,
                "keyspace_bytes": storage.keyspace_bytes,
                "keyspace_bytes_per_event": storage.keyspace_bytes_per_event,
                "rows": storage.rows,
                "of": "loadgen's audience, written by the service over HTTP",
                "chunks_bytes_per_event_on_disk": chunk_storage.history_bytes_per_event,
                "chunks_keyspace_bytes_per_event": chunk_storage.keyspace_bytes_per_event,
                "chunks_events": chunk_storage.rows,
                "pipeline_templates_bytes_per_event": template_storage.history_bytes_per_event,
                "pipeline_templates_rows": template_storage.rows,
            },
            "chunk_sweep": sweep.iter().map(chunk_sweep::SweepPoint::json).collect::<Vec<_>>(),
            "peak_rss_bytes": peak_rss,
            "service_peak_rss_bytes": service_peak_rss,
            "service_chunks_peak_rss_bytes": chunks_peak_rss,
            "cassandra_peak_rss_bytes": server_peak_rss,
            "errors": errors,
            "machine": {"cpus": std::thread::available_parallelism().map_or(1, |n| n.get())},
            "load_average_1m": report::load_average(),
            "settings": {
                "node": args.node,
                "duration_s": duration.as_secs_f64(),
                "viewers": args.viewers,
                "pipeline_concurrency": args.concurrency,
                "batch": args.batch,
                "best_connections": args.best_connections,
                "per_event_connections": args.per_event_connections,
                "latte_threads": args.latte_threads,
                "latte_concurrency": args.latte_concurrency,
            },
        }),
        met,
    };
    outcome.write(args.common.json.as_deref())?;
    Ok(outcome)
}

fn show_ratio(ratio: Option<f64>) -> String {
    ratio.map_or("-".to_owned(), |ratio| format!("{ratio:.2}x"))
}

/// The round of `name` with the median rows/s (the lower middle one for an even count).
fn median_round(rounds: &[Writer], name: &str) -> Option<Writer> {
    let mut of_name: Vec<&Writer> = rounds.iter().filter(|writer| writer.name == name).collect();
    of_name.sort_by(|a, b| a.rows_per_sec().total_cmp(&b.rows_per_sec()));
    of_name
        .get(of_name.len().saturating_sub(1) / 2)
        .map(|writer| (*writer).clone())
}

/// Creates `keyspace` with the sink's schema on the node.
async fn apply_schema(args: &Args, keyspace: &str) -> anyhow::Result<()> {
    schema_session(args, keyspace).await.map(|_| ())
}

/// Applies the schema to `keyspace` and returns the session that did.
async fn schema_session(
    args: &Args,
    keyspace: &str,
) -> anyhow::Result<std::sync::Arc<scylla::client::session::Session>> {
    let mut settings = Settings::load(None, std::iter::empty(), &Overrides::default())?;
    settings.cassandra.nodes = vec![args.node.clone()];
    settings.cassandra.keyspace = keyspace.to_owned();
    let config = CassandraConfig::from_settings(&settings.cassandra, settings.sink.retention)?;
    let (session, _) = cassandra::apply_schema(&config)
        .await
        .with_context(|| format!("cannot apply the schema on {}", args.node))?;
    Ok(session)
}

/// The setting's word for a layout.
fn layout_name(layout: HistoryLayout) -> &'static str {
    match layout {
        HistoryLayout::Rows => "rows",
        HistoryLayout::Chunks => "chunks",
    }
}

/// `playpulse serve` on the Cassandra sink, loaded by `loadgen http`, kept across rounds.
struct ServiceUnderTest {
    name: &'static str,
    server: server::Server,
    /// Acknowledged events of every run, warm-ups included: the rows its keyspace holds.
    rows_written: std::sync::atomic::AtomicU64,
    _data_dir: tempfile::TempDir,
}

impl ServiceUnderTest {
    async fn start(
        args: &Args,
        bin: &Path,
        keyspace: &str,
        layout: HistoryLayout,
    ) -> anyhow::Result<ServiceUnderTest> {
        apply_schema(args, keyspace).await?;
        let data_dir = tempfile::tempdir().context("cannot make a temporary directory")?;
        let env = [
            ("PLAYPULSE_SINK__KIND", "\"cassandra\"".to_owned()),
            ("PLAYPULSE_CASSANDRA__NODES", format!("[\"{}\"]", args.node)),
            ("PLAYPULSE_CASSANDRA__KEYSPACE", format!("\"{keyspace}\"")),
            (
                "PLAYPULSE_CASSANDRA__LAYOUT",
                layout_name(layout).to_owned(),
            ),
            // As for the pipeline: only the write path counts here.
            ("PLAYPULSE_INVALIDATION__ENABLED", "false".to_owned()),
            (
                "PLAYPULSE_PLATFORM__RECOMMENDATIONS__RECORD_VIEWS",
                "false".to_owned(),
            ),
        ];
        let server = server::Server::start(bin, data_dir.path(), &env)?;
        eprintln!(
            "http: playpulse serve on Cassandra at {}, keyspace {keyspace}",
            server.url
        );
        Ok(ServiceUnderTest {
            name: if layout == HistoryLayout::Chunks {
                "http-chunks"
            } else {
                "http-rows"
            },
            server,
            rows_written: Default::default(),
            _data_dir: data_dir,
        })
    }

    async fn measure(
        &self,
        args: &Args,
        bin: &Path,
        warmup: Duration,
        server: &ServerCpu,
    ) -> anyhow::Result<Writer> {
        let load = ClosedLoop::new(
            bin,
            vec![
                "http".to_owned(),
                "--url".to_owned(),
                self.server.url.clone(),
            ],
            args.concurrency,
            args.batch,
            args.viewers,
        )?;
        let written = |report: &loadgen::report::Report| {
            self.rows_written.fetch_add(
                report.totals.events_acked,
                std::sync::atomic::Ordering::Relaxed,
            )
        };
        if !warmup.is_zero() {
            written(&load.run(warmup).await?);
        }
        let service_before = self.server.cpu_seconds();
        let server_before = server.now();
        let report = load.run(args.common.duration).await?;
        written(&report);
        let server_after = server.now();
        let service_cpu = self.server.cpu_seconds() - service_before;
        Ok(Writer {
            name: self.name,
            rows: report.totals.events_acked,
            seconds: report.wall_seconds,
            errors: report.error_count,
            latency_of: "request of --batch events, 200",
            latency: report_latency(&report),
            // Everything that is not Cassandra: the service and the generator.
            client_cpu_seconds: Some(service_cpu + report.generator_cpu_seconds),
            server_cpu_seconds: server_before.zip(server_after).map(|(a, b)| b - a),
            first_error: report.errors.keys().next().cloned(),
        })
    }
}

/// `loadgen <target...> --max` for a while, as a separate process: one closed-loop load.
struct ClosedLoop {
    bin: PathBuf,
    /// The subcommand and its target flags, e.g. `http --url URL`.
    target: Vec<String>,
    connections: usize,
    batch: usize,
    viewers: u64,
    report: tempfile::NamedTempFile,
}

impl ClosedLoop {
    fn new(
        bin: &Path,
        target: Vec<String>,
        connections: usize,
        batch: usize,
        viewers: u64,
    ) -> anyhow::Result<ClosedLoop> {
        Ok(ClosedLoop {
            bin: bin.to_owned(),
            target,
            connections,
            batch,
            // Every worker needs a viewer of its own.
            viewers: viewers.max(connections as u64),
            report: tempfile::NamedTempFile::new()?,
        })
    }

    async fn run(&self, duration: Duration) -> anyhow::Result<loadgen::report::Report> {
        let mut args = self.target.clone();
        args.extend([
            "--max".to_owned(),
            "--duration".to_owned(),
            format!("{}ms", duration.as_millis()),
            "--connections".to_owned(),
            self.connections.to_string(),
            "--batch".to_owned(),
            self.batch.to_string(),
            "--viewers".to_owned(),
            self.viewers.to_string(),
            "--quiet".to_owned(),
        ]);
        let (bin, report) = (self.bin.clone(), self.report.path().to_owned());
        tokio::task::spawn_blocking(move || server::run_loadgen(&bin, &args, &report)).await?
    }
}

fn report_latency(report: &loadgen::report::Report) -> LatencyMs {
    let latency = &report.latency_ms;
    LatencyMs {
        p50: latency.p50,
        p90: latency.p90,
        p99: latency.p99,
        p999: latency.p999,
        max: latency.max,
    }
}

/// The service's hot path on the Cassandra sink, in process, kept across rounds.
struct PipelineUnderTest {
    name: &'static str,
    service: playpulse::Service,
    /// Acknowledged events of every drive, warm-ups included: the rows its keyspace holds.
    rows_written: std::sync::atomic::AtomicU64,
    templates: Arc<Vec<BodyTemplate>>,
    _data_dir: tempfile::TempDir,
}

impl PipelineUnderTest {
    async fn start(
        args: &Args,
        keyspace: &str,
        layout: HistoryLayout,
    ) -> anyhow::Result<PipelineUnderTest> {
        let data_dir = tempfile::tempdir().context("cannot make a temporary directory")?;
        let overrides = Overrides {
            listen: None,
            data_dir: Some(data_dir.path().to_owned()),
        };
        let mut settings = Settings::load(None, std::env::vars(), &overrides)?;
        settings.sink.kind = SinkKind::Cassandra;
        settings.cassandra.nodes = vec![args.node.clone()];
        settings.cassandra.keyspace = keyspace.to_owned();
        settings.cassandra.layout = layout;
        // Its own log: the service's node must not replay this one's.
        settings.cassandra.node_id = format!("bench-{keyspace}");
        // The side paths are measured by `bench invalidation`; here only the write path counts.
        settings.invalidation.enabled = false;
        settings.platform.graph.feed_playback = false;
        apply_schema(args, keyspace).await?;
        let service = playpulse::Service::start(&settings).await?;
        eprintln!(
            "pipeline on Cassandra: {} clients, {} events per request, write mode {:?}, keyspace {keyspace}",
            args.concurrency, args.batch, settings.cassandra.write_mode
        );
        Ok(PipelineUnderTest {
            name: if layout == HistoryLayout::Chunks {
                "pipeline-chunks"
            } else {
                "pipeline-rows"
            },
            service,
            rows_written: Default::default(),
            templates: pipeline::templates(args.batch, args.viewers),
            _data_dir: data_dir,
        })
    }

    async fn measure(
        &self,
        args: &Args,
        warmup: Duration,
        server: &ServerCpu,
    ) -> anyhow::Result<Writer> {
        let drive = |duration| {
            pipeline::drive(
                &self.service.state,
                self.templates.clone(),
                args.concurrency,
                duration,
            )
        };
        let written = |events: u64| {
            self.rows_written
                .fetch_add(events, std::sync::atomic::Ordering::Relaxed)
        };
        if !warmup.is_zero() {
            written(drive(warmup).await?.events);
        }
        let server_before = server.now();
        let Driven {
            events,
            seconds,
            cpu_seconds,
            latency,
            errors,
            first_error,
        } = drive(args.common.duration).await?;
        let server_after = server.now();
        written(events);
        Ok(Writer {
            name: self.name,
            rows: events,
            seconds,
            errors,
            latency_of: "request of --batch events, ack",
            latency: LatencyMs::from_micros(&latency),
            client_cpu_seconds: Some(cpu_seconds),
            server_cpu_seconds: server_before.zip(server_after).map(|(a, b)| b - a),
            first_error,
        })
    }

    async fn stop(self) {
        self.service.drain().await;
    }
}

/// `loadgen cassandra --mode best|per-event`, as a separate process.
async fn run_loadgen(
    args: &Args,
    bin: &Path,
    mode: &'static str,
    keyspace: &str,
    warmup: Duration,
    server: &ServerCpu,
) -> anyhow::Result<Writer> {
    let (connections, batch) = match mode {
        "best" => (args.best_connections, args.batch),
        _ => (args.per_event_connections, 1),
    };
    let target = [
        "cassandra",
        "--nodes",
        &args.node,
        "--mode",
        mode,
        "--keyspace",
        keyspace,
    ];
    let load = ClosedLoop::new(
        bin,
        target.iter().map(|arg| arg.to_string()).collect(),
        connections,
        batch,
        args.viewers,
    )?;
    if !warmup.is_zero() {
        load.run(warmup).await?;
    }
    let server_before = server.now();
    let report = load.run(args.common.duration).await?;
    let server_after = server.now();
    Ok(Writer {
        name: mode,
        rows: report.totals.events_acked,
        seconds: report.wall_seconds,
        errors: report.error_count,
        latency_of: if mode == "best" {
            "request of --batch events, all batches written"
        } else {
            "one INSERT"
        },
        latency: report_latency(&report),
        client_cpu_seconds: Some(report.generator_cpu_seconds),
        server_cpu_seconds: server_before.zip(server_after).map(|(a, b)| b - a),
        first_error: report.errors.keys().next().cloned(),
    })
}

async fn run_latte(
    args: &Args,
    keyspace: &str,
    warmup: Duration,
    server: &ServerCpu,
) -> anyhow::Result<Writer> {
    let report_dir = tempfile::tempdir()?;
    let run = LatteRun {
        node: args.node.clone(),
        duration: args.common.duration,
        // Warmed by a run of its own below, so that the server's CPU is read around the
        // measured run alone.
        warmup: Duration::ZERO,
        threads: args.latte_threads,
        concurrency: args.latte_concurrency,
        connections: 1,
        rate: None,
        keyspace: keyspace.to_owned(),
        viewers: args.viewers,
        workload: args.latte_workload.clone(),
        report: report_dir.path().join("latte.json"),
    };
    eprintln!(
        "latte: {} threads x {} in flight, keyspace {keyspace}",
        run.threads, run.concurrency
    );
    if !warmup.is_zero() {
        latte::run(&LatteRun {
            duration: warmup,
            ..run.clone()
        })
        .await?;
    }
    let server_before = server.now();
    let result = latte::run(&run).await?;
    let server_after = server.now();
    Ok(Writer {
        name: "latte",
        rows: result.rows,
        seconds: result.seconds,
        errors: result.errors,
        latency_of: "one INSERT",
        latency: result.latency_ms,
        client_cpu_seconds: result.cpu_seconds,
        server_cpu_seconds: server_before.zip(server_after).map(|(a, b)| b - a),
        first_error: result.error_messages.first().cloned(),
    })
}

/// Runs nodetool to its end; its output when it fails.
fn nodetool(nodetool: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(nodetool)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", nodetool.display()))?;
    if !output.status.success() {
        bail!(
            "{} {} failed: {}{}",
            nodetool.display(),
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub(crate) struct Storage {
    pub(crate) rows: u64,
    history_bytes: u64,
    history_data_bytes: u64,
    history_files: usize,
    pub(crate) history_bytes_per_event: f64,
    keyspace_bytes: u64,
    keyspace_bytes_per_event: f64,
}

/// Flushes and major-compacts the keyspace, then sums its SSTables (every component: data,
/// index, filter, statistics, ...), one replica's worth.
pub(crate) fn measure_storage(
    nodetool_path: &Path,
    data_dir: &Path,
    keyspace: &str,
    rows: u64,
) -> anyhow::Result<Storage> {
    nodetool(nodetool_path, &["flush", keyspace])?;
    nodetool(nodetool_path, &["compact", keyspace])?;
    let keyspace_dir = data_dir.join(keyspace);
    let mut history = (0u64, 0u64, 0usize);
    let mut keyspace_bytes = 0;
    let tables = std::fs::read_dir(&keyspace_dir)
        .with_context(|| format!("cannot list {}", keyspace_dir.display()))?;
    for table in tables.filter_map(Result::ok) {
        let name = table.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(table.path())?.filter_map(Result::ok) {
            let meta = file.metadata()?;
            if !meta.is_file() {
                continue; // snapshots/, backups/
            }
            keyspace_bytes += meta.len();
            let history_table = [cassandra::HISTORY_TABLE, cassandra::chunks::CHUNKS_TABLE]
                .iter()
                .any(|table| name.starts_with(&format!("{table}-")));
            if history_table {
                history.0 += meta.len();
                history.2 += 1;
                if file.file_name().to_string_lossy().ends_with("-Data.db") {
                    history.1 += meta.len();
                }
            }
        }
    }
    let per_event = |bytes: u64| bytes as f64 / rows.max(1) as f64;
    Ok(Storage {
        rows,
        history_bytes: history.0,
        history_data_bytes: history.1,
        history_files: history.2,
        history_bytes_per_event: per_event(history.0),
        keyspace_bytes,
        keyspace_bytes_per_event: per_event(keyspace_bytes),
    })
}

pub(crate) async fn drop_keyspaces(node: &str, keyspaces: &[String]) {
    let settings = match Settings::load(None, std::iter::empty(), &Overrides::default()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("cassandra: keyspaces {keyspaces:?} left in place: {error}");
            return;
        }
    };
    let mut settings = settings;
    settings.cassandra.nodes = vec![node.to_owned()];
    let session = match CassandraConfig::from_settings(&settings.cassandra, settings.sink.retention)
    {
        Ok(config) => config.connect().await,
        Err(error) => Err(error),
    };
    match session {
        Ok(session) => {
            for keyspace in keyspaces {
                if let Err(error) = cassandra::drop_keyspace(&session, keyspace).await {
                    eprintln!("cassandra: cannot drop keyspace {keyspace}: {error}");
                }
            }
        }
        Err(error) => eprintln!("cassandra: keyspaces {keyspaces:?} left in place: {error}"),
    }
}
