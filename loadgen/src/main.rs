//! `loadgen`: load PlayPulse with a realistic audience, check that nothing acknowledged was lost,
//! and plan the cluster. See README.md beside this crate.
//!
//! Exit codes: 0 success; 1 the tool failed; 2 bad usage; 3 the run missed its SLO (or had
//! errors while an SLO was set), or `verify` found lost, doubled or unreadable events.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use loadgen::cassandra::{CassandraMode, CassandraTargetSettings};
use loadgen::http::{BodyFormat, Compression};
use loadgen::plan::{self, Input, PlanInputs};
use loadgen::settings::{ApiKey, LoadShape, RunSettings, SettingsError, TargetSettings};
use loadgen::verify::{self, VerifySettings};
use loadgen::workload::clock::size_audience;
use loadgen::workload::{events_per_viewer_per_sec, Taste, WorkloadConfig};

/// The run finished but missed what it was asked to prove.
const EXIT_CHECK_FAILED: u8 = 3;

#[derive(Parser)]
#[command(
    name = "loadgen",
    version,
    about = "PlayPulse load generator, no-loss verifier and capacity planner"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Post playback events of a simulated audience to `POST /v1/events`.
    Http(Box<HttpArgs>),
    /// Write the same audience's events straight to Cassandra, with the service's schema: the
    /// baselines (`--mode per-event` and `--mode best`) the service is compared against.
    Cassandra(Box<CassandraArgs>),
    /// Check through the history API that every acknowledged event is stored exactly once.
    Verify(VerifyArgs),
    /// Nodes and disk for a target rate and history, from measured reports.
    Plan(PlanArgs),
    /// Write request bodies of the same audience to files, for a cheap outside generator
    /// (`bench/wrk/`): the events loadgen posts, without loadgen's cost per event.
    Bodies(BodiesArgs),
    /// The synthetic catalog of the same audience's titles (deterministic by `--seed`): posted
    /// to `POST /v1/titles` of `--target`, or written as one JSON body per line to `--out`.
    Catalog(CatalogArgs),
}

#[derive(Args)]
struct CatalogArgs {
    /// The service to post the titles to (needs an admin key when auth is on).
    #[arg(long, value_name = "URL", required_unless_present = "out")]
    target: Option<String>,
    /// A file to write the bodies to, one per line, instead.
    #[arg(long, value_name = "FILE", conflicts_with = "target")]
    out: Option<PathBuf>,
    /// An admin API key, sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "PLAYPULSE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Titles to write, the most watched first (at most the catalog's size).
    #[arg(long)]
    titles: Option<usize>,
    #[command(flatten)]
    audience: AudienceArgs,
}

#[derive(Args)]
struct BodiesArgs {
    /// Directory to write `body-000.json`, `body-001.json`, ... into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Bodies to write.
    #[arg(long, default_value_t = 64)]
    count: usize,
    /// Events per body (at most 10000).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    #[arg(long, value_enum, default_value = "json")]
    format: BodyFormat,
    /// Concurrent viewers of the audience.
    #[arg(long, default_value_t = 100_000)]
    viewers: u64,
    #[command(flatten)]
    audience: AudienceArgs,
}

/// Who the audience watches and how: the same for every command that generates events.
#[derive(Args)]
struct AudienceArgs {
    /// Heartbeat interval of a playing session.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Titles in the catalog.
    #[arg(long, default_value_t = 10_000)]
    catalog: usize,
    /// Zipf exponent of title popularity.
    #[arg(long, default_value_t = 1.0)]
    zipf_s: f64,
    /// The same seed gives the same events (ids, users, sessions, order).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Taste segments of viewers (0: no taste); segment s prefers the genres g with
    /// g % segments == s.
    #[arg(long, default_value_t = Taste::default().segments)]
    segments: u32,
    /// Genres of the catalog's titles (by a hash of the title id).
    #[arg(long, default_value_t = Taste::default().genres)]
    genres: u32,
    /// How often a new session picks a title of the viewer's preferred genres.
    #[arg(long, default_value_t = Taste::default().loyalty)]
    loyalty: f64,
}

impl AudienceArgs {
    /// The workload of `viewers` viewers, checked.
    fn workload(&self, viewers: u64) -> anyhow::Result<WorkloadConfig> {
        let workload = WorkloadConfig {
            seed: self.seed,
            viewers,
            heartbeat: self.heartbeat,
            catalog_titles: self.catalog,
            zipf_exponent: self.zipf_s,
            taste: Taste {
                segments: self.segments,
                genres: self.genres,
                loyalty: self.loyalty,
            },
        };
        workload.validate()?;
        workload.catalog()?;
        Ok(workload)
    }
}

#[derive(Args)]
struct HttpArgs {
    /// Base URL of the server.
    #[arg(long, value_name = "URL")]
    url: String,
    #[arg(long, value_enum, default_value = "json")]
    format: BodyFormat,
    #[arg(long, value_enum, default_value = "none")]
    compression: Compression,
    /// Events per request (at most 10000).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Log every acknowledged event (event_id, user_id, ts) here, for `loadgen verify`.
    #[arg(long, value_name = "FILE")]
    acked_log: Option<PathBuf>,
    /// Write the ground truth of the QoE here at the end of the run: per minute of `ts`, what
    /// the events the service accepted add up to (views, unique viewers, playing and rebuffer
    /// time, rebuffers, exits before start, startup and playback failures, bitrate x played
    /// time, every startup time), from loadgen's own records, as NDJSON sorted by minute. Events
    /// of failed requests and events a 200 answer rejects are left out.
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
    /// An `ingest` API key, when the server has auth on.
    #[arg(long, env = "PLAYPULSE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args)]
struct CassandraArgs {
    /// Contact points, HOST:PORT (repeat or separate with commas).
    #[arg(long, value_name = "HOST:PORT", value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    /// `per-event`: one INSERT awaited at a time per connection; `best`: replica-set UNLOGGED
    /// batches, all of a request's at once.
    #[arg(long, value_enum)]
    mode: CassandraMode,
    /// Keyspace to write (created with the sink's schema if missing; left in place after).
    #[arg(long, default_value = "playpulse_loadgen")]
    keyspace: String,
    /// Replication of the keyspace if it is created, as CQL.
    #[arg(
        long,
        default_value = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )]
    replication: String,
    #[arg(long, default_value = "datacenter1")]
    local_datacenter: String,
    /// Write consistency: one, quorum, local_quorum, all, ...
    #[arg(long, default_value = "local_quorum")]
    consistency: String,
    /// Rows expire after this (USING TTL).
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// Events per request [default: 1 with per-event (a request is one INSERT), 1000 with
    /// best]. With per-event, a request of N events is N INSERTs, one after another.
    #[arg(long)]
    batch: Option<usize>,
    /// Connections the driver opens to each node.
    #[arg(long, default_value_t = 1)]
    driver_connections: usize,
    /// Rows in one UNLOGGED batch at most (best).
    #[arg(long, default_value_t = 256)]
    max_batch_rows: usize,
    #[command(flatten)]
    load: LoadArgs,
}

/// How much load, for how long, from which audience: the same for every target.
#[derive(Args)]
struct LoadArgs {
    /// Open loop: events per second, sent in batches at fixed intervals (the start rate of a
    /// ramp).
    #[arg(long, value_name = "EVENTS_PER_S")]
    rate: Option<f64>,
    /// Closed loop: each connection sends again as soon as it is answered.
    #[arg(long, conflicts_with_all = ["rate", "ramp"])]
    max: bool,
    /// How long to run (a ramp uses --step-duration per step).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Concurrent senders (keep-alive connections for HTTP), one worker each, each with one
    /// request in flight.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Generator runtime threads [default: the number of CPUs].
    #[arg(long)]
    threads: Option<usize>,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// A send starting up to this late still counts as on time.
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration)]
    miss_slack: Duration,
    /// Concurrent viewers [default: 100000, or what --rate and --time-compression imply].
    #[arg(long)]
    viewers: Option<u64>,
    /// Seconds of viewing per second of wall time (with --rate; sizes the audience).
    #[arg(long)]
    time_compression: Option<f64>,
    #[command(flatten)]
    audience: AudienceArgs,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Exit with code 3 when p99 exceeds this (or any request failed).
    #[arg(long, value_name = "MS")]
    slo_p99_ms: Option<f64>,
    /// Step the rate up from --rate to find the saturation point (needs --slo-p99-ms).
    #[arg(long, requires = "rate")]
    ramp: bool,
    /// Events/s added per step [default: --rate].
    #[arg(long, requires = "ramp")]
    ramp_step: Option<f64>,
    /// Number of steps [default: until the first step that misses the SLO, at most 64].
    #[arg(long, requires = "ramp")]
    ramp_steps: Option<u32>,
    /// Length of each ramp step.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    step_duration: Duration,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct VerifyArgs {
    /// The log written by `loadgen http --acked-log`.
    #[arg(long, value_name = "FILE")]
    acked_log: PathBuf,
    /// Base URL of the server.
    #[arg(long, value_name = "URL")]
    url: String,
    /// Users checked at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Lost or doubled events listed at most.
    #[arg(long, default_value_t = 50)]
    max_listed: usize,
    /// Write the outcome as JSON here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// A `read` API key, when the server has auth on.
    #[arg(long, env = "PLAYPULSE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

#[derive(Args)]
struct PlanArgs {
    /// A report (repeatable): `loadgen http` or `bench pipeline|http` for the ingest rate (the
    /// lowest at the SLO is used), `loadgen cassandra` or `bench cassandra` for the Cassandra
    /// rows/s per node (the highest) and bytes per event on disk.
    #[arg(long = "report", value_name = "FILE")]
    reports: Vec<PathBuf>,
    /// Target rate.
    #[arg(long, default_value_t = 1_000_000.0)]
    events_per_sec: f64,
    /// How long events are kept.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// History to keep, one copy on disk after compaction (e.g. 100PB).
    #[arg(long, default_value = "100PB")]
    history_bytes: String,
    #[arg(long, default_value_t = 3)]
    replication_factor: u32,
    /// Share of each node's capacity kept free.
    #[arg(long, default_value_t = 0.3)]
    headroom: f64,
    /// Overrides the reports' rate.
    #[arg(long)]
    ingest_events_per_sec_per_node: Option<f64>,
    /// Replica rows/s one Cassandra node takes at the SLO [default: from Cassandra reports, else
    /// 50000, docs/DESIGN.md's low anchor].
    #[arg(long)]
    cassandra_rows_per_sec_per_node: Option<f64>,
    /// Events packed into one row (1: a row per event).
    #[arg(long, default_value_t = 1.0)]
    events_per_row: f64,
    /// Bytes per event on disk per replica after compaction [default: from a bench cassandra
    /// report, else 80, docs/DESIGN.md's target].
    #[arg(long)]
    bytes_per_event: Option<f64>,
    /// [default: from the reports' workload, else 0.1 (a heartbeat every 10 s)].
    #[arg(long)]
    events_per_viewer_per_sec: Option<f64>,
    /// Data disk per Cassandra node.
    #[arg(long, default_value = "4TB")]
    disk_per_node: String,
    /// Fullest a data disk may get (room for compaction).
    #[arg(long, default_value_t = 0.5)]
    max_disk_fill: f64,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let outcome = match cli.command {
        Command::Http(args) => run_http(*args),
        Command::Cassandra(args) => run_cassandra(*args),
        Command::Verify(args) => run_verify(args),
        Command::Bodies(args) => run_bodies(args),
        Command::Catalog(args) => run_catalog(args),
        Command::Plan(args) => {
            let plan_matches = matches
                .subcommand_matches("plan")
                .expect("the plan subcommand was parsed");
            run_plan(args, plan_matches)
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_CHECK_FAILED),
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the audience's first `count x batch` events as bodies: their simulated time laid out
/// to end now, `sent_at` now (the server takes bodies reposted later, their events just older).
/// `loadgen catalog`: the synthetic catalog, posted or written.
fn run_catalog(args: CatalogArgs) -> anyhow::Result<bool> {
    use loadgen::workload::catalog::{api_body, SyntheticCatalog};
    let workload = args.audience.workload(1)?;
    let catalog = Arc::new(SyntheticCatalog::new(workload.seed, workload.catalog()?));
    let count = args.titles.unwrap_or(catalog.len()).min(catalog.len());
    if let Some(out) = &args.out {
        use std::io::Write;
        let file = std::fs::File::create(out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        let mut file = std::io::BufWriter::new(file);
        for rank in 0..count {
            writeln!(file, "{}", api_body(&catalog.title(rank)))?;
        }
        file.flush()?;
        eprintln!("loadgen: {count} titles written to {}", out.display());
        return Ok(true);
    }
    let target = args.target.unwrap_or_default();
    let url = format!("{}/v1/titles", target.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (posted, failed) = runtime.block_on(async {
        use futures::stream::{self, StreamExt};
        let client = reqwest::Client::new();
        let results: Vec<bool> = stream::iter(0..count)
            .map(|rank| {
                let (client, url, catalog, key) = (
                    client.clone(),
                    url.clone(),
                    catalog.clone(),
                    args.api_key.clone(),
                );
                async move {
                    let mut request = client.post(&url).json(&api_body(&catalog.title(rank)));
                    if let Some(key) = key {
                        request = request.bearer_auth(key);
                    }
                    match request.send().await {
                        // 409: the title is there already (a second run).
                        Ok(response) => response.status().is_success() || response.status() == 409,
                        Err(_) => false,
                    }
                }
            })
            .buffer_unordered(args.concurrency.max(1))
            .collect()
            .await;
        let posted = results.iter().filter(|ok| **ok).count();
        (posted, results.len() - posted)
    });
    eprintln!("loadgen: {posted} titles posted to {url}, {failed} failed");
    Ok(failed == 0)
}

fn run_bodies(args: BodiesArgs) -> anyhow::Result<bool> {
    if args.count == 0 || args.batch == 0 || args.batch > loadgen::settings::MAX_BATCH {
        anyhow::bail!(
            "--count must be at least 1 and --batch between 1 and {}",
            loadgen::settings::MAX_BATCH
        );
    }
    let workload = args.audience.workload(args.viewers)?;
    let catalog = Arc::new(workload.catalog()?);
    let events = args.count.saturating_mul(args.batch);
    // Two passes over the same seed, so memory holds one body, not all of them: the first
    // finds how much simulated time the events span, the second writes them.
    let mut audience = loadgen::workload::Audience::whole(&workload, catalog.clone());
    for _ in 0..events {
        audience.next_event();
    }
    let now = loadgen::run::wall_clock_ms();
    let axis = loadgen::workload::clock::TimeAxis::ending_at(
        now,
        Duration::from_millis(audience.simulated_ms()),
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut audience = loadgen::workload::Audience::whole(&workload, catalog);
    let mut raw = Vec::new();
    for index in 0..args.count {
        let mut body = loadgen::http::BodyWriter::new(&mut raw, args.format);
        for draft in (0..args.batch).filter_map(|_| audience.next_event()) {
            body.push(&draft, axis.ts(draft.at_ms).min(now), Some(now));
        }
        body.finish();
        let path = args.out.join(format!("body-{index:03}.json"));
        std::fs::write(&path, &raw).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!(
        "loadgen bodies: {} x {} events ({} viewers) in {}",
        args.count,
        args.batch,
        args.viewers,
        args.out.display()
    );
    Ok(true)
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs the load against the service; Ok(false) when the SLO was missed.
fn run_http(args: HttpArgs) -> anyhow::Result<bool> {
    let target = TargetSettings::Http {
        url: args.url,
        format: args.format,
        compression: args.compression,
        api_key: args.api_key.map(ApiKey),
    };
    let outputs = RunOutputs {
        acked_log: args.acked_log,
        truth: args.truth,
    };
    run_load(target, args.batch, outputs, args.load)
}

/// Runs the load straight into Cassandra; Ok(false) when the SLO was missed.
fn run_cassandra(args: CassandraArgs) -> anyhow::Result<bool> {
    let batch = args.batch.unwrap_or(match args.mode {
        CassandraMode::PerEvent => 1,
        CassandraMode::Best => 1000,
    });
    let ttl_seconds = event_cql::ttl_seconds(args.retention)?;
    let target = TargetSettings::Cassandra(CassandraTargetSettings {
        nodes: args.nodes,
        keyspace: args.keyspace,
        mode: args.mode,
        replication: args.replication,
        local_datacenter: args.local_datacenter,
        consistency: args.consistency,
        ttl_seconds,
        driver_connections: args.driver_connections,
        max_batch_rows: args.max_batch_rows,
    });
    run_load(target, batch, RunOutputs::default(), args.load)
}

/// Files a run writes about what was acknowledged, besides its report.
#[derive(Default)]
struct RunOutputs {
    acked_log: Option<PathBuf>,
    truth: Option<PathBuf>,
}

fn run_load(
    target: TargetSettings,
    batch: usize,
    outputs: RunOutputs,
    args: LoadArgs,
) -> anyhow::Result<bool> {
    let load = match (args.rate, args.max, args.ramp) {
        (Some(rate), false, true) => LoadShape::Ramp {
            start_events_per_sec: rate,
            step_events_per_sec: args.ramp_step.unwrap_or(rate),
            steps: args.ramp_steps,
            step_duration: args.step_duration,
        },
        (Some(rate), false, false) => LoadShape::Rate {
            events_per_sec: rate,
        },
        (None, true, false) => LoadShape::Max,
        _ => return Err(SettingsError::RateOrMax.into()),
    };
    let mut workload = args.audience.workload(1)?;
    let per_viewer = events_per_viewer_per_sec(&workload)?;
    let audience = size_audience(
        load.rate_of_step(0),
        args.viewers,
        args.time_compression,
        per_viewer,
    )?;
    workload.viewers = audience.viewers;
    let threads = args.threads.unwrap_or_else(cpus);
    let settings = RunSettings {
        target,
        load,
        duration: args.duration,
        batch,
        connections: args.connections,
        threads,
        timeout: args.timeout,
        miss_slack: args.miss_slack,
        workload,
        requested_viewers: args.viewers,
        requested_time_compression: args.time_compression,
        slo_p99_ms: args.slo_p99_ms,
        acked_log: outputs.acked_log,
        truth: outputs.truth,
    };
    settings.validate()?;
    let report = runtime(threads)?.block_on(loadgen::run::run_load(
        &settings,
        per_viewer,
        audience.time_compression,
        !args.quiet,
    ))?;
    print!("{}", report.summary());
    if let Some(path) = &args.report {
        report.write(path)?;
        println!("  report        {}", path.display());
    }
    Ok(report.passed())
}

fn run_verify(args: VerifyArgs) -> anyhow::Result<bool> {
    let settings = VerifySettings {
        url: args.url,
        acked_log: args.acked_log,
        concurrency: args.concurrency,
        timeout: args.timeout,
        show_progress: !args.quiet,
        api_key: args.api_key.map(ApiKey),
    };
    let outcome = runtime(cpus())?.block_on(verify::verify(&settings))?;
    print!("{}", outcome.summary(args.max_listed));
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&outcome)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(outcome.passed())
}

fn run_plan(args: PlanArgs, matches: &ArgMatches) -> anyhow::Result<bool> {
    let measurements = args
        .reports
        .iter()
        .map(|path| plan::read_measurement(path))
        .collect::<Result<Vec<_>, _>>()?;
    let flag = |name: &str| format!("given: --{name}");
    let ingest = match args.ingest_events_per_sec_per_node {
        Some(rate) => Input::new(rate, "events/s", flag("ingest-events-per-sec-per-node")),
        None => plan::ingest_rate_from(&measurements).ok_or(plan::PlanError::NoIngestRate)?,
    };
    let per_viewer = match args.events_per_viewer_per_sec {
        Some(rate) => Input::new(rate, "events/s", flag("events-per-viewer-per-sec")),
        None => measurements
            .iter()
            .find_map(|m| {
                m.events_per_viewer_per_sec.map(|rate| {
                    Input::new(
                        rate,
                        "events/s",
                        format!("measured: the workload model of {}", m.path.display()),
                    )
                })
            })
            .unwrap_or_else(|| {
                Input::new(
                    plan::DEFAULT_EVENTS_PER_VIEWER_PER_SEC,
                    "events/s",
                    "assumed: a heartbeat every 10 s (docs/DESIGN.md)",
                )
            }),
    };
    let rows_per_node = match args.cassandra_rows_per_sec_per_node {
        Some(rate) => Input::new(rate, "rows/s", flag("cassandra-rows-per-sec-per-node")),
        None => plan::cassandra_rate_from(&measurements).unwrap_or_else(|| {
            Input::new(
                plan::DEFAULT_CASSANDRA_ROWS_PER_SEC_PER_NODE,
                "rows/s",
                "assumed: low end of docs/DESIGN.md's 50-150k single-row inserts/s per small node; measure with loadgen cassandra or bench cassandra",
            )
        }),
    };
    let bytes_per_event = match args.bytes_per_event {
        Some(bytes) => Input::new(bytes, "bytes", flag("bytes-per-event")),
        None => plan::bytes_per_event_from(&measurements).unwrap_or_else(|| {
            Input::new(
                plan::DEFAULT_BYTES_PER_EVENT,
                "bytes",
                "assumed: docs/DESIGN.md's target per Cassandra replica after compaction; measure with bench cassandra",
            )
        }),
    };
    // Says whether a number came from the command line or is the documented default.
    let given_or_default = |name: &str, default: &str| {
        let id = name.replace('-', "_");
        if matches.value_source(&id) == Some(ValueSource::CommandLine) {
            flag(name)
        } else {
            format!("default: {default}")
        }
    };
    let inputs = PlanInputs {
        events_per_sec: Input::new(
            args.events_per_sec,
            "events/s",
            given_or_default("events-per-sec", "docs/DESIGN.md's requirement"),
        ),
        retention_seconds: Input::new(
            args.retention.as_secs_f64(),
            "seconds",
            given_or_default("retention", "the embedded store's default retention"),
        ),
        history_bytes: Input::new(
            plan::parse_bytes(&args.history_bytes)?,
            "bytes",
            given_or_default("history-bytes", "docs/DESIGN.md's requirement"),
        ),
        replication_factor: Input::new(
            f64::from(args.replication_factor),
            "",
            given_or_default("replication-factor", "the usual production RF"),
        ),
        headroom: Input::new(
            args.headroom,
            "",
            given_or_default("headroom", "room for peaks and a lost node"),
        ),
        ingest_events_per_sec_per_node: ingest,
        cassandra_rows_per_sec_per_node: rows_per_node,
        events_per_row: Input::new(
            args.events_per_row,
            "",
            given_or_default("events-per-row", "one row per event, the first cut"),
        ),
        bytes_per_event,
        events_per_viewer_per_sec: per_viewer,
        disk_bytes_per_node: Input::new(
            plan::parse_bytes(&args.disk_per_node)?,
            "bytes",
            given_or_default("disk-per-node", "assumed common data disk"),
        ),
        max_disk_fill: Input::new(
            args.max_disk_fill,
            "",
            given_or_default(
                "max-disk-fill",
                "half free for compaction (size-tiered rule)",
            ),
        ),
    };
    let plan = plan::compute(inputs)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", plan.text());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
