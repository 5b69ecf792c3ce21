//! The analytics side path, measured: (1) its cost to ingest over HTTP, off vs on, alternated
//! (ABBA), with Redis commands per event when the live state is in Redis; (2) accuracy: an
//! audience through the service with `loadgen --truth`, every metric of every minute compared
//! with the truth; the live view's lag and trending's latency sampled during that run; (3)
//! `GET /v1/analytics/qoe` over a day at minute resolution, on a day of seeded rollups.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use analytics::measures::Measures;
use analytics::rollup::{CellKey, Dims, Grouping, RollupRow, MINUTE_MS};
use analytics::store::RollupStore;
use serde_json::{json, Value};

use crate::abba::{alternate, Load};
use crate::report::Outcome;
use crate::server::{self, Server};
use crate::Common;

const MAX_COST: f64 = 0.10;
const MAX_QOE_DAY_P99_MS: f64 = 50.0;
const MAX_LIVE_LAG_P99_S: f64 = 10.0;
const MAX_TRENDING_P99_MS: f64 = 5.0;
/// Unique viewers are a HyperLogLog estimate: within three standard errors (or 1 viewer).
const DISTINCT_TOLERANCE: f64 = 3.0 * analytics::distinct::STANDARD_ERROR;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Length of each measured run.
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Where trending and live sessions live: memory (embedded default) or redis.
    #[arg(long, default_value = "memory")]
    live: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Events per second of the accuracy run (open loop).
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// GETs of the day query per kind.
    #[arg(long, default_value_t = 200)]
    queries: usize,
}

fn env(args: &Args, round: usize, on: bool) -> Vec<(&'static str, String)> {
    vec![
        ("PLAYPULSE_ANALYTICS__ENABLED", on.to_string()),
        ("PLAYPULSE_ANALYTICS__LIVE", format!("\"{}\"", args.live)),
        ("PLAYPULSE_REDIS__URL", args.redis_url.clone()),
        (
            "PLAYPULSE_REDIS__KEY_PREFIX",
            format!("benchanalytics{round}{on}:"),
        ),
    ]
}

async fn redis_commands(url: &str) -> Option<u64> {
    let mut connection = analytics::redis_connection(url, Duration::from_secs(2)).ok()?;
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut connection)
        .await
        .ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("total_commands_processed:"))
        .and_then(|value| value.trim().parse().ok())
}

fn percentile(samples: &mut [f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    Some(samples[rank - 1])
}

pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let bin = server::build_binaries()?;
    let work = tempfile::tempdir()?;
    let redis_live = args.live == "redis";

    // 1. Cost, ABBA.
    let load = Load {
        duration: args.common.duration,
        batch: args.batch,
        connections: args.connections,
        caught_up_counter: Some("playpulse_analytics_events_flushed_total"),
    };
    let runtime = tokio::runtime::Handle::current();
    let mut redis_per_event = Vec::new();
    let runs = tokio::task::block_in_place(|| {
        let before = std::cell::Cell::new(0u64);
        alternate(
            &bin,
            work.path(),
            "analytics",
            args.rounds,
            &load,
            |round, on| {
                if redis_live {
                    before.set(
                        runtime
                            .block_on(redis_commands(&args.redis_url))
                            .unwrap_or(0),
                    );
                }
                env(&args, round, on)
            },
            |server, on| {
                if on && redis_live {
                    let after = runtime
                        .block_on(redis_commands(&args.redis_url))
                        .unwrap_or(0);
                    let events = crate::invalidation::counter(
                        &server.metrics(),
                        "playpulse_events_accepted_total",
                    );
                    if events > 0.0 {
                        redis_per_event.push((after - before.get()) as f64 / events);
                    }
                }
            },
        )
    })?;
    let cost = runs.cost();
    println!(
        "analytics ({} live state): off {:.0} events/s, on {:.0} events/s: cost {:.1}% (target <= {:.0}%)",
        args.live,
        runs.mean_rate(false),
        runs.mean_rate(true),
        cost * 100.0,
        MAX_COST * 100.0
    );
    println!(
        "  off: {};  on: {}",
        runs.mean_cpu(false),
        runs.mean_cpu(true)
    );
    let redis_commands_per_event = (!redis_per_event.is_empty())
        .then(|| redis_per_event.iter().sum::<f64>() / redis_per_event.len() as f64);
    if let Some(per_event) = redis_commands_per_event {
        println!("  Redis commands per event (all side paths on, INFO total_commands_processed): {per_event:.3}");
    }

    // 2. Accuracy against loadgen's truth, with the live view and trending sampled meanwhile.
    let data_dir = work.path().join("accuracy");
    let server = Server::start(&bin, &data_dir, &env(&args, 99, true))?;
    let truth_path = work.path().join("truth.ndjson");
    let client = reqwest::Client::new();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (client, url, sampling) = (client.clone(), server.url.clone(), sampling.clone());
        tokio::spawn(async move {
            let (mut lags, mut trending) = (Vec::new(), Vec::new());
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Ok(response) = client.get(format!("{url}/v1/analytics/live")).send().await {
                    if let Ok(live) = response.json::<Value>().await {
                        if let Some(lag) = live["lag_ms"].as_f64() {
                            lags.push(lag / 1000.0);
                        }
                    }
                }
                let started = Instant::now();
                let ok = client
                    .get(format!("{url}/v1/trending?country=US&window=now"))
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success());
                if ok {
                    trending.push(started.elapsed().as_secs_f64() * 1000.0);
                }
            }
            (lags, trending)
        })
    };
    let loadgen_args: Vec<String> = [
        "http",
        "--url",
        &server.url,
        "--rate",
        &args.rate.to_string(),
        "--duration",
        &format!("{}s", args.common.duration.as_secs().max(1)),
        "--batch",
        &args.batch.to_string(),
        "--seed",
        "11",
        "--truth",
        &truth_path.display().to_string(),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let report_path = work.path().join("accuracy.json");
    let report =
        tokio::task::block_in_place(|| server::run_loadgen(&bin, &loadgen_args, &report_path))?;
    // The live view right after the load: the lag the last events see.
    tokio::time::sleep(Duration::from_millis(100)).await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let (mut lags, mut trending_ms) = sampler.await?;
    let truth = loadgen::truth::read_ndjson(&truth_path)?;
    let total_events: u64 = truth.iter().map(|minute| minute.events).sum();
    let (Some(first), Some(last)) = (truth.first(), truth.last()) else {
        anyhow::bail!("the accuracy run acknowledged no events");
    };
    let qoe_url = format!(
        "{}/v1/analytics/qoe?from={}&to={}&resolution=minute",
        server.url,
        first.minute,
        last.minute + MINUTE_MS - 1
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let answer: Value = client.get(&qoe_url).send().await?.json().await?;
        if answer["totals"]["events"].as_u64() == Some(total_events) || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut mismatches = Vec::new();
    let points = answer["series"][0]["points"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut worst_percentile_error: f64 = 0.0;
    let mut worst_distinct_error: f64 = 0.0;
    for minute in &truth {
        let Some(point) = points
            .iter()
            .find(|point| point["t"].as_i64() == Some(minute.minute))
        else {
            mismatches.push(format!("minute {}: missing", minute.minute));
            continue;
        };
        for (name, expected) in [
            ("events", minute.events),
            ("views", minute.views),
            ("playing_time_ms", minute.playing_ms),
            ("rebuffer_ms", minute.rebuffer_ms),
            ("rebuffers", minute.rebuffers),
            ("exits_before_start", minute.exits_before_start),
            ("startup_failures", minute.startup_failures),
            ("playback_failures", minute.playback_failures),
        ] {
            if point[name].as_u64() != Some(expected) {
                mismatches.push(format!(
                    "minute {} {name}: {} vs truth {expected}",
                    minute.minute, point[name]
                ));
            }
        }
        let viewers = point["unique_viewers"].as_f64().unwrap_or(-1.0);
        let distinct_error =
            (viewers - minute.unique_viewers as f64).abs() / (minute.unique_viewers.max(1) as f64);
        worst_distinct_error = worst_distinct_error.max(distinct_error);
        if distinct_error > DISTINCT_TOLERANCE
            && (viewers - minute.unique_viewers as f64).abs() > 1.0
        {
            mismatches.push(format!(
                "minute {} unique viewers {viewers} vs {}",
                minute.minute, minute.unique_viewers
            ));
        }
        for (name, q) in [("startup_time_p50_ms", 0.5), ("startup_time_p95_ms", 0.95)] {
            let (Some(estimate), Some(exact)) = (point[name].as_f64(), minute.startup_quantile(q))
            else {
                continue;
            };
            let error = (estimate - f64::from(exact)).abs() / f64::from(exact).max(1.0);
            worst_percentile_error = worst_percentile_error.max(error);
            if error > analytics::sketch::RELATIVE_ERROR + 1e-9 {
                mismatches.push(format!(
                    "minute {} {name}: {estimate} vs exact {exact}",
                    minute.minute
                ));
            }
        }
        if let (Some(estimate), Some(exact)) = (
            point["average_bitrate_kbps"].as_f64(),
            minute.average_bitrate_kbps(),
        ) {
            if (estimate - exact).abs() > 1e-6 * exact {
                mismatches.push(format!(
                    "minute {} average bitrate {estimate} vs {exact}",
                    minute.minute
                ));
            }
        }
    }
    drop(server);
    let lag_p99 = percentile(&mut lags, 0.99);
    let trending_p99 = percentile(&mut trending_ms, 0.99);
    println!(
        "  accuracy: {} minutes, {} events at {:.0} events/s: {} mismatches; worst startup percentile error {:.3}% (stated {:.0}%), worst unique-viewer error {:.2}% (3 standard errors: {:.1}%)",
        truth.len(),
        total_events,
        report.events_per_sec,
        mismatches.len(),
        worst_percentile_error * 100.0,
        analytics::sketch::RELATIVE_ERROR * 100.0,
        worst_distinct_error * 100.0,
        DISTINCT_TOLERANCE * 100.0
    );
    for mismatch in mismatches.iter().take(10) {
        println!("    {mismatch}");
    }
    println!(
        "  live view lag p99 {:?} s over {} samples (target <= {MAX_LIVE_LAG_P99_S} s); trending p99 {:?} ms over {} samples (target <= {MAX_TRENDING_P99_MS} ms)",
        lag_p99,
        lags.len(),
        trending_p99,
        trending_ms.len()
    );

    // 3. A day of rollups, queried at minute resolution.
    let day_dir = work.path().join("day");
    let seeded = seed_day(&day_dir).await?;
    let server = Server::start(&bin, &day_dir, &env(&args, 98, true))?;
    let now = now_ms();
    let from = now - 86_400_000;
    let mut day_p99 = Vec::new();
    for by in ["", "&by=country", "&by=device", "&by=title&limit=10"] {
        let url = format!(
            "{}/v1/analytics/qoe?from={from}&to={now}&resolution=minute{by}",
            server.url
        );
        let mut times = Vec::with_capacity(args.queries);
        for _ in 0..args.queries {
            let started = Instant::now();
            let response = client.get(&url).send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "{url}: {}",
                response.status()
            );
            let body: Value = response.json().await?;
            anyhow::ensure!(
                body["totals"]["views"].as_u64().unwrap_or(0) > 0,
                "{url}: no views"
            );
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let p50 = percentile(&mut times, 0.5).unwrap_or(f64::INFINITY);
        let p99 = percentile(&mut times, 0.99).unwrap_or(f64::INFINITY);
        println!("  qoe over a day at minute resolution{by}: p50 {p50:.1} ms, p99 {p99:.1} ms (target p99 <= {MAX_QOE_DAY_P99_MS} ms; {seeded} seeded rows)");
        day_p99.push(json!({"by": by, "p50_ms": p50, "p99_ms": p99}));
    }
    drop(server);
    let worst_day_p99 = day_p99
        .iter()
        .filter_map(|entry| entry["p99_ms"].as_f64())
        .fold(0.0, f64::max);
    let met = cost <= MAX_COST
        && mismatches.is_empty()
        && worst_day_p99 <= MAX_QOE_DAY_P99_MS
        && lag_p99.is_some_and(|lag| lag <= MAX_LIVE_LAG_P99_S)
        && trending_p99.is_some_and(|p99| p99 <= MAX_TRENDING_P99_MS);
    let outcome = Outcome {
        json: json!({
            "scenario": "analytics",
            "live": args.live,
            "events_per_sec_off": runs.mean_rate(false),
            "events_per_sec_on": runs.mean_rate(true),
            "runs_off": runs.rates[0],
            "runs_on": runs.rates[1],
            "cpu_us_per_event_off": runs.mean_cpu(false),
            "cpu_us_per_event_on": runs.mean_cpu(true),
            "throughput_cost": cost,
            "target_max_cost": MAX_COST,
            "redis_commands_per_event": redis_commands_per_event,
            "accuracy_minutes": truth.len(),
            "accuracy_events": total_events,
            "accuracy_mismatches": mismatches,
            "worst_startup_percentile_error": worst_percentile_error,
            "worst_unique_viewer_error": worst_distinct_error,
            "live_lag_p99_seconds": lag_p99,
            "trending_p99_ms": trending_p99,
            "qoe_day_minute": day_p99,
            "target_met": met,
        }),
        met,
    };
    outcome.write(args.common.json.as_deref())?;
    Ok(outcome)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Distinct seeded cells (each row clones one: building every row's own would take minutes).
const SEED_CELLS: u64 = 200;

/// A cell of 50 starts by 50 viewers, with startup times, playing time and bitrates.
fn seeded_cell(seed: u64, now: i64) -> Measures {
    let mut measures = Measures::default();
    for i in 0..50u64 {
        let user_id = seed * 1_000 + i;
        let event = wire::PlaybackEvent {
            startup_ms: Some((500 + (seed * 37 + i * 13) % 4_000) as u32),
            played_ms: Some(30_000),
            bitrate_kbps: Some(3_000 + (i % 5) as u32 * 500),
            ..crate::body::start_event(uuid::Uuid::from_u128(1), user_id, seed, now, now)
        };
        measures.record(&event);
    }
    measures
}

/// Writes a day of minutes into the embedded rollup store under `data_dir`: per minute the whole
/// audience, 20 countries, 6 devices, 4 CDNs and 200 titles, each cell with 50 views.
async fn seed_day(data_dir: &Path) -> anyhow::Result<usize> {
    let store = analytics::store::sqlite::SqliteRollups::open(
        &data_dir.join("analytics").join("rollups.sqlite"),
    )
    .await?;
    let countries = [
        "US", "GB", "DE", "FR", "ES", "IT", "BR", "MX", "JP", "KR", "IN", "CA", "AU", "SE", "NL",
        "PL", "TR", "AR", "ZA", "NG",
    ];
    let devices = ["tv", "mobile", "web", "console", "tablet", "set_top_box"];
    let cdns = ["akamai", "fastly", "cloudfront", "own"];
    let now = now_ms();
    let first = analytics::rollup::minute_of(now - 86_400_000);
    let mut rows = Vec::new();
    let mut written = 0;
    let cells: Vec<Measures> = (0..SEED_CELLS).map(|seed| seeded_cell(seed, now)).collect();
    let cell = |seed: u64| cells[(seed % SEED_CELLS) as usize].clone();

    for minute in 0..1_440i64 {
        let at = first + minute * MINUTE_MS;
        let key = |grouping: Grouping, dims: Dims| CellKey {
            grouping,
            minute: at,
            dims,
        };
        let mut push = |key: CellKey, seed: u64| {
            rows.push(RollupRow {
                key,
                writer: "seed".to_owned(),
                measures: cell(seed),
            });
        };
        push(key(Grouping::All, Dims::default()), minute as u64);
        for (i, code) in countries.iter().enumerate() {
            push(
                key(
                    Grouping::By(analytics::rollup::Dimension::Country),
                    Dims {
                        country: wire::CountryCode::parse(code),
                        ..Dims::default()
                    },
                ),
                i as u64,
            );
        }
        for (i, device) in devices.iter().enumerate() {
            push(
                key(
                    Grouping::By(analytics::rollup::Dimension::Device),
                    Dims {
                        device: Some((*device).into()),
                        ..Dims::default()
                    },
                ),
                i as u64,
            );
        }
        for (i, cdn) in cdns.iter().enumerate() {
            push(
                key(
                    Grouping::By(analytics::rollup::Dimension::Cdn),
                    Dims {
                        cdn: Some((*cdn).into()),
                        ..Dims::default()
                    },
                ),
                i as u64,
            );
        }
        for title in 0..200u64 {
            push(
                key(
                    Grouping::By(analytics::rollup::Dimension::Title),
                    Dims {
                        title: Some(title),
                        ..Dims::default()
                    },
                ),
                title,
            );
        }
        if rows.len() >= 20_000 {
            store.write(&rows).await?;
            written += rows.len();
            rows.clear();
        }
    }
    store.write(&rows).await?;
    written += rows.len();
    Ok(written)
}
