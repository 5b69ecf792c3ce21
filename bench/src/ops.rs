//! The operator dashboard's cost to the service it watches. A browser with `/ops` open asks for
//! the page and its assets once, then every `ops::REFRESH` for what the page's script reads
//! (`/metrics`, `/readyz`, the live QoE view and trending titles, at once). This measures the
//! server CPU of a refresh on a server that holds a saturated run's state, and sets it against
//! the CPU the same server burns at saturation: the share of its CPU one open tab takes.
//! Measured between loads rather than as a throughput difference under load, since a cost
//! well under 1% is below the run-to-run noise of a saturated run.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::report::Outcome;
use crate::server::{self, Server};
use crate::Common;

const MAX_COST: f64 = 0.01;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Length of the saturated run.
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Refreshes measured.
    #[arg(long, default_value_t = 500)]
    refreshes: usize,
    /// Page loads (the page and its four assets) measured.
    #[arg(long, default_value_t = 100)]
    page_loads: usize,
}

/// What the page's script asks for on each refresh.
const REFRESH_PATHS: [&str; 4] = [
    "/metrics",
    "/readyz",
    "/v1/analytics/live?worst=device,country,cdn",
    "/v1/trending?window=now&limit=10",
];
const PAGE_PATHS: [&str; 5] = [
    "/ops",
    "/ops/assets/uPlot.iife.min.js",
    "/ops/assets/uPlot.min.css",
    "/ops/assets/ops.js",
    "/ops/assets/ops.css",
];

/// Fetches `paths` at once, as the page does, and checks each answered 200.
async fn fetch_all(client: &reqwest::Client, url: &str, paths: &[&str]) -> anyhow::Result<()> {
    let mut fetches = tokio::task::JoinSet::new();
    for path in paths {
        let (client, target) = (client.clone(), format!("{url}{path}"));
        fetches.spawn(async move {
            let answer = client.get(&target).send().await?;
            let status = answer.status();
            answer.bytes().await?;
            anyhow::ensure!(status == 200, "{target} answered {status}");
            Ok(())
        });
    }
    while let Some(fetched) = fetches.join_next().await {
        fetched??;
    }
    Ok(())
}

/// Server CPU seconds per repetition of `paths`, fetched together `repetitions` times.
async fn cpu_per_fetch(
    server: &Server,
    client: &reqwest::Client,
    paths: &[&str],
    repetitions: usize,
) -> anyhow::Result<f64> {
    let before = server.cpu_seconds();
    for _ in 0..repetitions {
        fetch_all(client, &server.url, paths).await?;
    }
    Ok((server.cpu_seconds() - before) / repetitions.max(1) as f64)
}

/// `loadgen http` against `url` for `--duration`, in this shape (`--max`, `--rate R`).
fn load_args(args: &Args, url: &str, shape: &[&str]) -> Vec<String> {
    let duration = format!("{}s", args.common.duration.as_secs().max(1));
    let (batch, connections) = (args.batch.to_string(), args.connections.to_string());
    let mut all = vec!["http", "--url", url, "--duration", &duration];
    all.extend(["--batch", &batch, "--connections", &connections]);
    all.extend(shape);
    all.into_iter().map(str::to_owned).collect()
}

pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let bin = server::build_binaries()?;
    let work = tempfile::tempdir()?;
    let server = Server::start(&bin, &work.path().join("data"), &[])?;
    let client = reqwest::Client::new();

    // 1. Saturation: what the server burns when it takes all it can.
    let cpu_before = server.cpu_seconds();
    let started = Instant::now();
    let loadgen_args = load_args(&args, &server.url, &["--max"]);
    let report_path = work.path().join("saturation.json");
    let report =
        tokio::task::block_in_place(|| server::run_loadgen(&bin, &loadgen_args, &report_path))?;
    let saturated_cores = (server.cpu_seconds() - cpu_before) / started.elapsed().as_secs_f64();
    let rate = report.events_per_sec;
    println!(
        "saturation: {rate:.0} events/s, server CPU {saturated_cores:.2} cores ({:.2} µs/event)",
        saturated_cores * 1e6 / rate.max(1.0)
    );
    // 2. State for the page to read: `--max` runs the audience's clock ahead of the wall
    // clock, so an open-loop run at half the saturated rate puts events in the live view's
    // minutes (its QoE, its worst values, trending and concurrent viewers).
    let half = format!("{:.0}", (rate / 2.0).max(1000.0));
    let fill_args = load_args(&args, &server.url, &["--rate", &half]);
    let fill_path = work.path().join("fill.json");
    tokio::task::block_in_place(|| server::run_loadgen(&bin, &fill_args, &fill_path))?;
    // Let the side paths settle so their flushes do not count as the dashboard's.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // 3. The page, then its refreshes.
    // The rollups of the fill are flushed behind the saturated run's: wait for them.
    let deadline = Instant::now() + Duration::from_secs(120);
    let live_minutes = loop {
        let live: serde_json::Value = client
            .get(format!("{}/v1/analytics/live", server.url))
            .send()
            .await?
            .json()
            .await?;
        let minutes = live["minutes"].as_array().map_or(0, Vec::len);
        if minutes > 0 {
            break minutes;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the live view holds no minute 120 s after the fill: nothing to measure"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    // And for the flusher to go quiet again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    fetch_all(&client, &server.url, &REFRESH_PATHS).await?;
    let idle = {
        let before = server.cpu_seconds();
        let window = Duration::from_secs(5);
        tokio::time::sleep(window).await;
        (server.cpu_seconds() - before) / window.as_secs_f64()
    };
    let page_cpu = cpu_per_fetch(&server, &client, &PAGE_PATHS, args.page_loads).await?;
    let started = Instant::now();
    let refresh_cpu = cpu_per_fetch(&server, &client, &REFRESH_PATHS, args.refreshes).await?;
    let refresh_elapsed = started.elapsed().as_secs_f64() / args.refreshes.max(1) as f64;
    // The idle server's own timers ran during the refreshes too: not the dashboard's.
    let refresh_cpu = (refresh_cpu - idle * refresh_elapsed).max(0.0);
    // What the page does not ask for: the live view with its title ranking.
    let with_titles = cpu_per_fetch(&server, &client, &["/v1/analytics/live"], 20).await?;
    let interval = playpulse::ops::REFRESH.as_secs_f64();
    let cost = refresh_cpu / interval / saturated_cores.max(f64::EPSILON);
    println!(
        "one refresh: {:.3} ms of server CPU ({:.2} ms answered); the page and assets once: {:.3} ms",
        refresh_cpu * 1e3,
        refresh_elapsed * 1e3,
        page_cpu * 1e3
    );
    println!(
        "the live view with its title ranking (not asked by the page): {:.1} ms of server CPU a call",
        with_titles * 1e3
    );
    println!(
        "one open tab, refreshing every {interval:.0} s: {:.3}% of the server's CPU at saturation (target < {:.0}%)",
        cost * 100.0,
        MAX_COST * 100.0
    );
    let json = json!({
        "saturation": {
            "events_per_s": rate,
            "server_cores": saturated_cores,
            "server_us_per_event": saturated_cores * 1e6 / rate.max(1.0),
        },
        "idle_server_cores": idle,
        "refresh": {
            "paths": REFRESH_PATHS,
            "interval_s": interval,
            "server_cpu_ms": refresh_cpu * 1e3,
            "answered_ms": refresh_elapsed * 1e3,
        },
        "page_load_server_cpu_ms": page_cpu * 1e3,
        "live_minutes_held": live_minutes,
        "live_with_titles_server_cpu_ms": with_titles * 1e3,
        "cost_of_one_tab": cost,
        "target": MAX_COST,
    });
    let outcome = Outcome {
        json,
        met: cost < MAX_COST,
    };
    outcome.write(args.common.json.as_deref())?;
    Ok(outcome)
}
