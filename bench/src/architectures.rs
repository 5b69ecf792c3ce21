//! Why hybrid? One mixed workload on three architectures, on this machine, in one run: the
//! embedded default, PostgreSQL alone (`config/postgres-only.toml`) and the hybrid stack
//! (`config/cluster.toml`: Cassandra, Redis, Neo4j, OpenSearch and PostgreSQL).
//!
//! For each, a fresh `playpulse serve` (release) is seeded (plans, accounts, viewing history),
//! then:
//! 1. **Ramp**: `loadgen http --ramp` raises the event rate step by step until a step misses the
//!    SLO (p99 acknowledgement <= `--slo-p99-ms`), while history and recommendation reads run
//!    open loop beside it. Every process's CPU is sampled each second: the processes that were
//!    busiest in the first failing step are where the architecture saturates.
//! 2. **Hold** at the saturation rate for `--duration`: acknowledgement p99 (loadgen), history
//!    and recommendation read p99, subscriptions per second (closed loop, each with its own
//!    Idempotency-Key), and CPU per event per process (the service and each engine).
//! 3. **Disk**: bytes per event of the viewing history as stored (embedded: its files;
//!    PostgreSQL: `pg_total_relation_size` of the partitions; Cassandra: SSTables after flush
//!    and major compaction, which needs JMX: `CASSANDRA_JMX_PORT=7199 engines/up cassandra`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::report::{bytes_on_disk, Outcome};
use crate::server::{self, Server};
use crate::Common;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Architecture {
    /// One process, no servers.
    Embedded,
    /// `config/postgres-only.toml`.
    Postgres,
    /// `config/cluster.toml`.
    Hybrid,
}

impl Architecture {
    fn name(self) -> &'static str {
        match self {
            Architecture::Embedded => "embedded",
            Architecture::Postgres => "postgres-only",
            Architecture::Hybrid => "hybrid",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The hold at the saturation rate.
    #[command(flatten)]
    common: Common,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "embedded,postgres,hybrid"
    )]
    architectures: Vec<Architecture>,
    #[arg(long, default_value_t = 20_000.0)]
    ramp_start: f64,
    #[arg(long, default_value_t = 20_000.0)]
    ramp_step: f64,
    #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
    step_duration: Duration,
    #[arg(long, default_value_t = 50.0)]
    slo_p99_ms: f64,
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// History reads per second (open loop), `limit=100`, of seeded viewers.
    #[arg(long, default_value_t = 50)]
    history_reads: u64,
    /// Recommendation reads per second (open loop).
    #[arg(long, default_value_t = 50)]
    recommendation_reads: u64,
    /// Subscribing clients during the hold (closed loop).
    #[arg(long, default_value_t = 2)]
    subscribers: usize,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/playpulse")]
    postgres: String,
    #[arg(long, default_value = "127.0.0.1:9042")]
    cassandra: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    #[arg(long, default_value = "127.0.0.1:7687")]
    neo4j: String,
    #[arg(long, default_value = "http://127.0.0.1:9200")]
    opensearch: String,
    /// Where `engines/up` keeps its pid files and data.
    #[arg(long, default_value = ".engines", env = "ENGINES_DIR")]
    engines_dir: PathBuf,
    #[arg(long, default_value = "engines/nodetool")]
    nodetool: PathBuf,
}

/// Seeded viewers (history and recommendation reads), accounts and plans (subscriptions).
const SEEDED_VIEWERS: u64 = 1_000;
const EVENTS_PER_VIEWER: u64 = 20;
const FIRST_VIEWER: u64 = 7_000_000_000;
const ACCOUNTS: usize = 100;
const PLANS: usize = 40;

fn profile(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config")
        .join(name)
        .display()
        .to_string()
}

/// A process whose CPU is counted: the service, or an engine.
#[derive(Clone)]
struct Counted {
    name: String,
    pid: u32,
    /// PostgreSQL: a backend per connection, children of the postmaster.
    with_children: bool,
}

fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// CPU seconds of `pid` (and, with children, of its live children and the reaped ones).
fn cpu_seconds(process: &Counted) -> f64 {
    let ticks = |fields: &[String], index: usize| {
        fields
            .get(index)
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let Some(own) = stat_fields(process.pid) else {
        return 0.0;
    };
    // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let mut total = ticks(&own, 11) + ticks(&own, 12);
    if process.with_children {
        total += ticks(&own, 13) + ticks(&own, 14);
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.filter_map(Result::ok) {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                if let Some(fields) = stat_fields(pid) {
                    if fields.get(1).and_then(|ppid| ppid.parse::<u32>().ok()) == Some(process.pid)
                    {
                        total += ticks(&fields, 11) + ticks(&fields, 12);
                    }
                }
            }
        }
    }
    total / 100.0
}

fn engine(args: &Args, name: &str) -> anyhow::Result<Counted> {
    let file = args.engines_dir.join("run").join(format!("{name}.pid"));
    let pid = std::fs::read_to_string(&file)
        .with_context(|| {
            format!(
                "{name} is not running ({} missing): engines/up {name}",
                file.display()
            )
        })?
        .trim()
        .parse()
        .with_context(|| format!("{} holds no pid", file.display()))?;
    Ok(Counted {
        name: name.to_owned(),
        pid,
        with_children: name == "postgres",
    })
}

/// Samples every process's CPU seconds once a second until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Instant, Vec<f64>)>>,
}

impl Sampler {
    fn start(processes: Vec<Counted>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stopping.load(Relaxed) {
                samples.push((Instant::now(), processes.iter().map(cpu_seconds).collect()));
                std::thread::sleep(Duration::from_secs(1));
            }
            samples.push((Instant::now(), processes.iter().map(cpu_seconds).collect()));
            samples
        });
        Sampler { stop, thread }
    }

    fn finish(self) -> Vec<(Instant, Vec<f64>)> {
        self.stop.store(true, Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// Cores each process used between two instants, from the samples nearest them.
fn cores_between(samples: &[(Instant, Vec<f64>)], from: Instant, to: Instant) -> Vec<f64> {
    let nearest = |at: Instant| {
        samples
            .iter()
            .min_by_key(|(when, _)| if *when > at { *when - at } else { at - *when })
            .cloned()
    };
    match (nearest(from), nearest(to)) {
        (Some((start, before)), Some((end, after))) if end > start => {
            let seconds = (end - start).as_secs_f64();
            before
                .iter()
                .zip(&after)
                .map(|(b, a)| (a - b) / seconds)
                .collect()
        }
        _ => Vec::new(),
    }
}

/// What an architecture needs: the server's settings, the engines to count, what to clean up.
struct Prepared {
    env: Vec<(&'static str, String)>,
    engines: Vec<Counted>,
    database: Option<String>,
    keyspaces: Vec<String>,
}

async fn fresh_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let admin = sqlx::PgPool::connect(admin_url)
        .await
        .context("PostgreSQL does not answer (engines/up postgres)")?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await?;
    admin.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url, |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

async fn drop_database(admin_url: &str, url: &str) {
    let Some((_, name)) = url.rsplit_once('/') else {
        return;
    };
    if let Ok(admin) = sqlx::PgPool::connect(admin_url).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&admin)
            .await;
        admin.close().await;
    }
}

async fn prepare(
    args: &Args,
    architecture: Architecture,
    run: &str,
    bin: &Path,
) -> anyhow::Result<Prepared> {
    let mut env = vec![("PLAYPULSE_AUTH__ENABLED", "false".to_owned())];
    Ok(match architecture {
        Architecture::Embedded => Prepared {
            env,
            engines: Vec::new(),
            database: None,
            keyspaces: Vec::new(),
        },
        Architecture::Postgres => {
            let database = fresh_database(&args.postgres, &format!("pp_bench_pg_{run}")).await?;
            env.extend([
                ("PLAYPULSE_CONFIG", profile("postgres-only.toml")),
                ("PLAYPULSE_POSTGRES__URL", database.clone()),
                (
                    "PLAYPULSE_PLATFORM__COMMANDS__POSTGRES_URL",
                    database.clone(),
                ),
            ]);
            Prepared {
                env,
                engines: vec![engine(args, "postgres")?],
                database: Some(database),
                keyspaces: Vec::new(),
            }
        }
        Architecture::Hybrid => {
            let database = fresh_database(&args.postgres, &format!("pp_bench_hy_{run}")).await?;
            let keyspace = format!("pp_bench_{run}");
            let read_model = format!("pp_bench_{run}_rm");
            let rollups = format!("pp_bench_{run}_qoe");
            env.extend([
                ("PLAYPULSE_CONFIG", profile("cluster.toml")),
                (
                    "PLAYPULSE_CASSANDRA__NODES",
                    format!("[\"{}\"]", args.cassandra),
                ),
                ("PLAYPULSE_CASSANDRA__KEYSPACE", keyspace.clone()),
                (
                    "PLAYPULSE_PLATFORM__READ_MODEL__KEYSPACE",
                    read_model.clone(),
                ),
                ("PLAYPULSE_ANALYTICS__KEYSPACE", rollups.clone()),
                (
                    "PLAYPULSE_ANALYTICS__OPENSEARCH_URL",
                    args.opensearch.clone(),
                ),
                (
                    "PLAYPULSE_ANALYTICS__OPENSEARCH_INDEX",
                    format!("ppbench-qoe-{run}"),
                ),
                (
                    "PLAYPULSE_PLATFORM__COMMANDS__POSTGRES_URL",
                    database.clone(),
                ),
                ("PLAYPULSE_REDIS__URL", args.redis.clone()),
                ("PLAYPULSE_REDIS__KEY_PREFIX", format!("ppbench{run}:")),
                ("PLAYPULSE_PLATFORM__GRAPH__NEO4J_URI", args.neo4j.clone()),
                (
                    "PLAYPULSE_PLATFORM__GRAPH__NEO4J_LABEL_PREFIX",
                    format!("b{run}"),
                ),
                (
                    "PLAYPULSE_PLATFORM__SEARCH__OPENSEARCH_URL",
                    args.opensearch.clone(),
                ),
                ("PLAYPULSE_PLATFORM__SEARCH__ALIAS", format!("ppbench{run}")),
            ]);
            let status = std::process::Command::new(bin.join("playpulse"))
                .args(["schema", "apply"])
                .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
                .status()
                .context("cannot run playpulse schema apply")?;
            anyhow::ensure!(
                status.success(),
                "playpulse schema apply failed (is Cassandra up?)"
            );
            let engines = ["postgres", "cassandra", "redis", "neo4j", "opensearch"]
                .iter()
                .map(|name| engine(args, name))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Prepared {
                env,
                engines,
                database: Some(database),
                keyspaces: vec![keyspace, read_model, rollups],
            }
        }
    })
}

/// Plans and accounts to subscribe, and viewers with a history to read.
async fn seed(client: &reqwest::Client, url: &str) -> anyhow::Result<(Vec<i64>, Vec<i64>)> {
    let mut plans = Vec::new();
    for index in 0..PLANS {
        let plan: Value = client
            .post(format!("{url}/v1/plans"))
            .json(
                &json!({"name": format!("Plan {index}"), "price_cents": 999, "currency": "EUR",
                "period": "monthly", "available": true}),
            )
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        plans.push(plan["id"].as_i64().context("a plan id")?);
    }
    let mut accounts = Vec::new();
    for index in 0..ACCOUNTS {
        let user: Value = client
            .post(format!("{url}/v1/users"))
            .json(
                &json!({"email": format!("bench{index}@example.com"), "name": "Bench",
                "country": "FR"}),
            )
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        accounts.push(user["id"].as_i64().context("a user id")?);
    }
    let now = ingest::now_ms();
    let events: Vec<Value> = (0..SEEDED_VIEWERS * EVENTS_PER_VIEWER)
        .map(|index| {
            let viewer = FIRST_VIEWER + index % SEEDED_VIEWERS;
            let nth = index / SEEDED_VIEWERS;
            json!({"event_id": uuid::Uuid::new_v4(), "session_id": uuid::Uuid::new_v4(),
                "user_id": viewer, "content_id": 1 + (index * 7919) % 500,
                "kind": if nth.is_multiple_of(4) { "start" } else { "heartbeat" },
                "ts": now - 3_600_000 + index as i64, "position_ms": nth * 10_000})
        })
        .collect();
    for chunk in events.chunks(1000) {
        client
            .post(format!("{url}/v1/events"))
            .json(chunk)
            .send()
            .await?
            .error_for_status()?;
    }
    Ok((plans, accounts))
}

/// Latencies of one kind of request, and its failures.
#[derive(Clone)]
struct Latencies {
    histogram: Arc<Mutex<Histogram<u64>>>,
    errors: Arc<AtomicU64>,
}

impl Latencies {
    fn new() -> Latencies {
        Latencies {
            histogram: Arc::new(Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            )),
            errors: Arc::new(AtomicU64::new(0)),
        }
    }

    fn record(&self, elapsed: Duration, ok: bool) {
        if ok {
            if let Ok(mut histogram) = self.histogram.lock() {
                let _ = histogram.record(elapsed.as_micros().max(1) as u64);
            }
        } else {
            self.errors.fetch_add(1, Relaxed);
        }
    }

    fn summary(&self) -> Value {
        let histogram = self.histogram.lock().map(|h| h.clone()).ok();
        let ms = |q: f64| {
            histogram
                .as_ref()
                .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
        };
        json!({
            "count": histogram.as_ref().map_or(0, |h| h.len()),
            "errors": self.errors.load(Relaxed),
            "p50_ms": ms(0.5),
            "p99_ms": ms(0.99),
        })
    }
}

/// Reads `path_of(n)` open loop at `per_second` until `stop`.
fn open_loop_reads(
    client: reqwest::Client,
    per_second: u64,
    stop: Arc<AtomicBool>,
    latencies: Latencies,
    path_of: impl Fn(u64) -> String + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if per_second == 0 {
            return;
        }
        let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second as f64));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
        let mut sequence = 0u64;
        while !stop.load(Relaxed) {
            every.tick().await;
            sequence += 1;
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                latencies.record(Duration::ZERO, false);
                continue;
            };
            let (client, target, latencies) =
                (client.clone(), path_of(sequence), latencies.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let ok = match client.get(&target).send().await {
                    Ok(answer) => answer.status().is_success() && answer.bytes().await.is_ok(),
                    Err(_) => false,
                };
                latencies.record(started.elapsed(), ok);
                drop(permit);
            });
        }
    })
}

/// Subscribes (account, plan) pairs in turn, closed loop, each with its own Idempotency-Key.
fn subscribers(
    client: &reqwest::Client,
    url: &str,
    workers: usize,
    pairs: Arc<Vec<(i64, i64)>>,
    stop: Arc<AtomicBool>,
    latencies: Latencies,
) -> Vec<tokio::task::JoinHandle<()>> {
    let next = Arc::new(AtomicUsize::new(0));
    (0..workers)
        .map(|_| {
            let (client, url, pairs, stop, latencies, next) = (
                client.clone(),
                url.to_owned(),
                pairs.clone(),
                stop.clone(),
                latencies.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Relaxed) {
                    let Some(&(user, plan)) = pairs.get(next.fetch_add(1, Relaxed)) else {
                        return;
                    };
                    let started = Instant::now();
                    let ok = client
                        .post(format!("{url}/v1/subscriptions"))
                        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                        .json(&json!({"user_id": user, "plan_id": plan,
                            "payment_method": {"token": "tok_visa"}}))
                        .send()
                        .await
                        .is_ok_and(|answer| answer.status() == 201);
                    latencies.record(started.elapsed(), ok);
                }
            })
        })
        .collect()
}

fn loadgen_args(args: &Args, url: &str, shape: &[String]) -> Vec<String> {
    let mut all: Vec<String> = [
        "http",
        "--url",
        url,
        "--batch",
        &args.batch.to_string(),
        "--connections",
        &args.connections.to_string(),
        "--seed",
        "17",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    all.extend(shape.iter().cloned());
    all
}

/// Bytes per event of the viewing history as stored.
async fn history_bytes_per_event(
    args: &Args,
    architecture: Architecture,
    events: f64,
    data_dir: &Path,
    prepared: &Prepared,
) -> (Option<f64>, String) {
    if events <= 0.0 {
        return (None, "no events".into());
    }
    match architecture {
        Architecture::Embedded => {
            // The store's segments and chunks; not the platform's or the rollups' files.
            let aside = bytes_on_disk(&data_dir.join("platform"))
                + bytes_on_disk(&data_dir.join("analytics"));
            let bytes = bytes_on_disk(data_dir).saturating_sub(aside);
            (
                Some(bytes as f64 / events),
                "segments and chunk index on disk".into(),
            )
        }
        Architecture::Postgres => {
            let Some(url) = &prepared.database else {
                return (None, "no database".into());
            };
            let measured = async {
                let pool = sqlx::PgPool::connect(url).await?;
                let (bytes, rows): (i64, i64) = sqlx::query_as(
                    "SELECT (SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::int8 \
                     FROM pg_inherits WHERE inhparent = 'playback_events'::regclass), \
                     (SELECT count(*) FROM playback_events)",
                )
                .fetch_one(&pool)
                .await?;
                pool.close().await;
                Ok::<_, sqlx::Error>((bytes, rows))
            };
            match measured.await {
                Ok((bytes, rows)) => (
                    Some(bytes as f64 / rows.max(1) as f64),
                    format!("pg_total_relation_size of the partitions (heap, TOAST, primary key) / {rows} rows"),
                ),
                Err(error) => (None, format!("not measured: {error}")),
            }
        }
        Architecture::Hybrid => {
            // The packed layout's chunks are written when they close: shutdown closes them.
            let keyspace = &prepared.keyspaces[0];
            let data = args.engines_dir.join("cassandra").join("data");
            match tokio::task::block_in_place(|| {
                crate::cassandra::measure_storage(&args.nodetool, &data, keyspace, events as u64)
            }) {
                Ok(storage) => (
                    Some(storage.history_bytes_per_event),
                    "SSTables of the history tables after flush and major compaction, one replica".into(),
                ),
                Err(error) => (None, format!("not measured (needs JMX: CASSANDRA_JMX_PORT=7199 engines/up cassandra): {error:#}")),
            }
        }
    }
}

async fn run_one(
    args: &Args,
    bin: &Path,
    work: &Path,
    architecture: Architecture,
) -> anyhow::Result<Value> {
    let run = format!("{}{}", std::process::id(), ingest::now_ms() % 1_000_000);
    let prepared = prepare(args, architecture, &run, bin).await?;
    let data_dir = work.join(architecture.name());
    let server = Server::start(bin, &data_dir, &prepared.env)?;
    let client = reqwest::Client::new();
    eprintln!("{}: seeding", architecture.name());
    let (plans, accounts) = seed(&client, &server.url).await?;
    let mut counted = vec![Counted {
        name: "playpulse".into(),
        pid: server.pid(),
        with_children: false,
    }];
    counted.extend(prepared.engines.iter().cloned());
    let names: Vec<String> = counted.iter().map(|process| process.name.clone()).collect();

    let reads = |stop: &Arc<AtomicBool>, history: &Latencies, recommendations: &Latencies| {
        let url = server.url.clone();
        let history_task = open_loop_reads(
            client.clone(),
            args.history_reads,
            stop.clone(),
            history.clone(),
            move |n| {
                format!(
                    "{url}/v1/users/{}/history?limit=100",
                    FIRST_VIEWER + n * 7 % SEEDED_VIEWERS
                )
            },
        );
        let url = server.url.clone();
        let recommendation_task = open_loop_reads(
            client.clone(),
            args.recommendation_reads,
            stop.clone(),
            recommendations.clone(),
            move |n| {
                format!(
                    "{url}/v1/users/{}/recommendations",
                    FIRST_VIEWER + n * 13 % SEEDED_VIEWERS
                )
            },
        );
        [history_task, recommendation_task]
    };

    // 1. The ramp, reads beside it.
    eprintln!("{}: ramp", architecture.name());
    let stop = Arc::new(AtomicBool::new(false));
    let (ramp_history, ramp_recommendations) = (Latencies::new(), Latencies::new());
    let ramp_reads = reads(&stop, &ramp_history, &ramp_recommendations);
    let sampler = Sampler::start(counted.clone());
    let ramp_started = Instant::now();
    let shape: Vec<String> = [
        "--ramp",
        "--rate",
        &args.ramp_start.to_string(),
        "--ramp-step",
        &args.ramp_step.to_string(),
        "--step-duration",
        &format!("{}s", args.step_duration.as_secs().max(1)),
        "--slo-p99-ms",
        &args.slo_p99_ms.to_string(),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let report_path = work.join(format!("{}-ramp.json", architecture.name()));
    let ramp = tokio::task::block_in_place(|| {
        server::run_loadgen(bin, &loadgen_args(args, &server.url, &shape), &report_path)
    })?;
    let samples = sampler.finish();
    stop.store(true, Relaxed);
    for task in ramp_reads {
        let _ = task.await;
    }
    let steps = ramp
        .ramp
        .as_ref()
        .map(|ramp| ramp.steps.clone())
        .unwrap_or_default();
    let saturation = ramp
        .ramp
        .as_ref()
        .and_then(|ramp| ramp.saturation_events_per_sec);
    // The first failing step (or the last one): where the machine ran out.
    let failing = steps
        .iter()
        .position(|step| !step.passed)
        .unwrap_or(steps.len().saturating_sub(1));
    let step = args.step_duration;
    let from = ramp_started + step * failing as u32;
    let saturated_cores = cores_between(&samples, from, from + step);
    let busiest = names
        .iter()
        .zip(&saturated_cores)
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(name, cores)| format!("{name} ({cores:.2} cores)"))
        .unwrap_or_default();

    // 2. The hold at the saturation rate, reads and subscriptions beside it.
    let hold_rate = saturation.unwrap_or(args.ramp_start / 2.0);
    eprintln!("{}: hold at {hold_rate:.0} events/s", architecture.name());
    let stop = Arc::new(AtomicBool::new(false));
    let (history, recommendations, subscriptions) =
        (Latencies::new(), Latencies::new(), Latencies::new());
    let hold_reads = reads(&stop, &history, &recommendations);
    let pairs: Arc<Vec<(i64, i64)>> = Arc::new(
        plans
            .iter()
            .flat_map(|plan| accounts.iter().map(move |user| (*user, *plan)))
            .collect(),
    );
    let subscribing = subscribers(
        &client,
        &server.url,
        args.subscribers,
        pairs,
        stop.clone(),
        subscriptions.clone(),
    );
    let before: Vec<f64> = counted.iter().map(cpu_seconds).collect();
    let hold_started = Instant::now();
    let shape: Vec<String> = [
        "--rate",
        &hold_rate.to_string(),
        "--duration",
        &format!("{}s", args.common.duration.as_secs().max(1)),
        "--slo-p99-ms",
        &args.slo_p99_ms.to_string(),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let report_path = work.join(format!("{}-hold.json", architecture.name()));
    let hold = tokio::task::block_in_place(|| {
        server::run_loadgen(bin, &loadgen_args(args, &server.url, &shape), &report_path)
    })?;
    let hold_seconds = hold_started.elapsed().as_secs_f64();
    let after: Vec<f64> = counted.iter().map(cpu_seconds).collect();
    stop.store(true, Relaxed);
    for task in hold_reads.into_iter().chain(subscribing) {
        let _ = task.await;
    }
    let events = hold.totals.events_acked.max(1) as f64;
    let mut per_event = BTreeMap::new();
    let mut cores = BTreeMap::new();
    for ((name, b), a) in names.iter().zip(&before).zip(&after) {
        per_event.insert(name.clone(), (a - b) * 1e6 / events);
        cores.insert(name.clone(), (a - b) / hold_seconds);
    }
    let total_us: f64 = per_event.values().sum();
    let subscription_summary = subscriptions.summary();
    let subscriptions_per_s = subscription_summary["count"].as_f64().unwrap_or(0.0) / hold_seconds;

    // 3. Bytes on disk, once the server has written what it held (chunks close at shutdown).
    let accepted =
        crate::invalidation::counter(&server.metrics(), "playpulse_events_accepted_total");
    drop(server);
    let (bytes_per_event, bytes_how) =
        history_bytes_per_event(args, architecture, accepted, &data_dir, &prepared).await;

    if let Some(database) = &prepared.database {
        drop_database(&args.postgres, database).await;
    }
    if !prepared.keyspaces.is_empty() {
        crate::cassandra::drop_keyspaces(&args.cassandra, &prepared.keyspaces).await;
    }

    let answer = json!({
        "architecture": architecture.name(),
        "saturation_events_per_s": saturation,
        "ramp": steps.iter().map(|step| json!({
            "offered": step.target_events_per_sec, "achieved": step.achieved_events_per_sec,
            "p99_ms": step.latency_ms.p99, "passed": step.passed,
        })).collect::<Vec<_>>(),
        "saturates_at": { "busiest": busiest, "cores": names.iter().cloned().zip(saturated_cores.iter().copied()).collect::<BTreeMap<_, _>>() },
        "ramp_reads": { "history": ramp_history.summary(), "recommendations": ramp_recommendations.summary() },
        "hold": {
            "offered_events_per_s": hold_rate,
            "events_per_s": hold.events_per_sec,
            "ack_p99_ms": hold.latency_ms.p99,
            "errors": hold.error_count,
            "history": history.summary(),
            "recommendations": recommendations.summary(),
            "subscriptions": subscription_summary,
            "subscriptions_per_s": subscriptions_per_s,
            "cpu_us_per_event": per_event,
            "cpu_us_per_event_total": total_us,
            "cores": cores,
        },
        "history_bytes_per_event": bytes_per_event,
        "history_bytes_how": bytes_how,
    });
    print_one(&answer);
    Ok(answer)
}

fn print_one(answer: &Value) {
    let hold = &answer["hold"];
    let ms = |value: &Value| value.as_f64().map_or("-".to_owned(), |v| format!("{v:.1}"));
    println!(
        "{:<14} saturation {:>9} events/s at p99 <= SLO; held {:>8.0} events/s, ack p99 {} ms; history p99 {} ms; recommendations p99 {} ms; {:.1} subscriptions/s; {:.2} µs CPU/event in all {}; {} bytes/event; saturates at {}",
        answer["architecture"].as_str().unwrap_or(""),
        answer["saturation_events_per_s"].as_f64().map_or("none".to_owned(), |v| format!("{v:.0}")),
        hold["events_per_s"].as_f64().unwrap_or(0.0),
        ms(&hold["ack_p99_ms"]),
        ms(&hold["history"]["p99_ms"]),
        ms(&hold["recommendations"]["p99_ms"]),
        hold["subscriptions_per_s"].as_f64().unwrap_or(0.0),
        hold["cpu_us_per_event_total"].as_f64().unwrap_or(0.0),
        hold["cpu_us_per_event"],
        answer["history_bytes_per_event"].as_f64().map_or("-".to_owned(), |v| format!("{v:.1}")),
        answer["saturates_at"]["busiest"].as_str().unwrap_or(""),
    );
}

pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let bin = server::build_binaries()?;
    let work = tempfile::tempdir()?;
    let mut results = Vec::new();
    for architecture in &args.architectures {
        results.push(run_one(&args, &bin, work.path(), *architecture).await?);
    }
    let met = results
        .iter()
        .all(|result| !result["saturation_events_per_s"].is_null());
    let outcome = Outcome {
        json: json!({
            "slo_p99_ms": args.slo_p99_ms,
            "machine_cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "architectures": results,
        }),
        met,
    };
    outcome.write(args.common.json.as_deref())?;
    Ok(outcome)
}
