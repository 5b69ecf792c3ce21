//! latte (crates.io `latte-cli` 0.29, <https://github.com/pkolaczk/latte>): an outside reference
//! for `bench cassandra`. It writes the sink's `viewing_history` rows with the workload
//! `bench/latte/viewing_history.rn` (the table of `event-cql/schema.cql`, the sink's insert, one
//! row per cycle) against the same node, and its figures are read back from its JSON report.
//!
//! [`run`] runs `latte schema` (creates the keyspace and table if missing), then `latte run`,
//! and parses the report. The keyspace is NOT dropped here: the caller names a keyspace of its
//! own and drops it when done, e.g. with `event_cql::drop_keyspace` on the
//! session it already has (`latte schema` cannot be trusted to drop: see below).
//!
//! Things about latte 0.29 the code relies on (checked against its source and a real run):
//! - A `-P name=value` value is a Rune expression, so a text parameter needs quotes:
//!   `-P keyspace="ks"`; a bare `ks` fails to compile ("No local variable `ks`", exit 128).
//! - `latte run` writes its report where `-o FILE` says (else a generated `latte-….json` in the
//!   working directory), and every command writes a log file (`latte-….log` in the working
//!   directory unless `--log-file`, a flag that goes before the subcommand).
//! - Its defaults match the sink's: consistency LOCAL_QUORUM, one connection per node. It
//!   retries timeouts and overloads 3 times (100 ms to 5 s backoff); request timeout 5 s.
//! - A query error never stops a script: `ctx.execute*` always returns Ok. In `latte run` the
//!   error is counted (`result.error_count`, the first few messages in `result.errors`) and the
//!   cycle still counts as done. In `latte schema` it is lost altogether: a failed CREATE still
//!   prints "Schema created successfully", logs nothing and exits 0. The `prepare` of
//!   `latte run` then fails on the missing table, which does stop latte (exit 255).
//! - `--concurrency` is per thread: requests in flight = threads x concurrency.
//! - Latencies in the report are milliseconds; `percentiles` at the top level lists which
//!   percentile each entry of a latency's `percentiles` array is.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use tokio::process::Command;

use crate::report::LatencyMs;

/// One latte run of `bench/latte/viewing_history.rn`.
#[derive(Debug, Clone)]
pub struct LatteRun {
    /// A Cassandra node, `host` or `host:port`.
    pub node: String,
    /// How long to measure (after the warm-up).
    pub duration: Duration,
    /// Not measured, run first (latte's `--warmup`); zero for none.
    pub warmup: Duration,
    /// latte's worker threads.
    pub threads: usize,
    /// Requests in flight per thread (latte's `--concurrency` is per thread).
    pub concurrency: usize,
    /// Connections to the node (latte's `--connections`, per node).
    pub connections: usize,
    /// Cycles (rows) per second; `None`: as fast as it goes.
    pub rate: Option<f64>,
    /// Created if missing, never dropped here. Letters, digits and `_`, 48 at most.
    pub keyspace: String,
    /// Distinct user_ids the rows spread over (the workload's `viewers`).
    pub viewers: u64,
    /// `bench/latte/viewing_history.rn`.
    pub workload: PathBuf,
    /// Where latte writes its JSON report; its logs go beside it (`.schema.log`, `.run.log`).
    pub report: PathBuf,
}

/// latte's figures for the measured part of a run. One row per cycle, one request per row.
#[derive(Debug, serde::Serialize)]
pub struct LatteResult {
    /// Rows (cycles) per second, as latte measured it. Cycles whose insert failed count too
    /// (latte counts them done): look at `errors`.
    pub rows_per_sec: f64,
    /// latte's error margin of `rows_per_sec` (its std. error x 3.29), when it gives one.
    pub rows_per_sec_margin: Option<f64>,
    pub rows: u64,
    pub seconds: f64,
    pub requests: u64,
    /// Failed requests, after latte's own retries (timeouts and overloads, `--retries` 3).
    pub errors: u64,
    /// The first few distinct error messages.
    pub error_messages: Vec<String>,
    pub retries: u64,
    /// Request latency (a retried request counts once, from its first attempt).
    pub latency_ms: LatencyMs,
    /// CPU time of the latte process during the measured part, if reported.
    pub cpu_seconds: Option<f64>,
}

/// latte's binary: on `PATH`, else `$CARGO_HOME/bin` (default `~/.cargo/bin`).
pub fn find_latte() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .map(|cargo| cargo.join("bin"));
    on_path
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join("latte"))
        .find(|candidate| candidate.is_file())
        .context(
            "latte is not installed (not on PATH, nor in ~/.cargo/bin): install it with \
             `cargo install latte-cli --locked` (0.29; a few minutes to build)",
        )
}

/// Runs `latte schema`, then `latte run`, and reads the report.
pub async fn run(run: &LatteRun) -> anyhow::Result<LatteResult> {
    check_keyspace_name(&run.keyspace)?;
    anyhow::ensure!(
        run.threads > 0 && run.concurrency > 0 && run.connections > 0,
        "latte needs at least one thread, one request in flight and one connection"
    );
    anyhow::ensure!(
        run.workload.is_file(),
        "no latte workload at {}",
        run.workload.display()
    );
    let latte = find_latte()?;
    let workload = std::path::absolute(&run.workload)?;
    let report = std::path::absolute(&run.report)?;
    // A stale report must not pass for this run's.
    match std::fs::remove_file(&report) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("cannot remove {}", report.display()))
        }
        _ => {}
    }
    let log = |step: &str| report.with_extension(format!("{step}.log"));
    let params = [
        "-P".to_owned(),
        format!("keyspace=\"{}\"", run.keyspace),
        "-P".to_owned(),
        format!("viewers={}", run.viewers.max(1)),
    ];

    let mut schema = Command::new(&latte);
    schema
        .arg("--log-file")
        .arg(log("schema"))
        .arg("schema")
        .arg(&workload)
        .args(&params)
        .arg(&run.node);
    // DDL waits for schema agreement; a minute is plenty on any node that answers.
    execute(schema, Duration::from_secs(120), "latte schema").await?;

    let mut measure = Command::new(&latte);
    measure
        .arg("--log-file")
        .arg(log("run"))
        .arg("run")
        .arg(&workload)
        .args(&params)
        .arg("--duration")
        .arg(interval(run.duration))
        .arg("--warmup")
        .arg(interval(run.warmup))
        .arg("--threads")
        .arg(run.threads.to_string())
        .arg("--concurrency")
        .arg(run.concurrency.to_string())
        .arg("--connections")
        .arg(run.connections.to_string())
        .arg("--quiet")
        .arg("--output")
        .arg(&report);
    if let Some(rate) = run.rate {
        measure.arg("--rate").arg(rate.to_string());
    }
    measure.arg(&run.node);
    let limit = run.warmup + run.duration + Duration::from_secs(120);
    execute(measure, limit, "latte run").await?;
    read_report(&report)
}

/// A latte report (`latte run -o FILE`), as a [`LatteResult`].
pub fn read_report(path: &Path) -> anyhow::Result<LatteResult> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the latte report {}", path.display()))?;
    parse_report(&text).with_context(|| format!("latte report {}", path.display()))
}

/// Keyspace names go into CQL and a Rune expression unquoted: keep them plain.
fn check_keyspace_name(keyspace: &str) -> anyhow::Result<()> {
    let plain = keyspace
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && keyspace.len() <= 48
        && keyspace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    anyhow::ensure!(
        plain,
        "keyspace `{keyspace}`: a letter, then letters, digits or `_`, 48 at most"
    );
    Ok(())
}

/// A latte `--duration`/`--warmup`: a bare number would be a count of cycles, so always a time
/// with its unit; zero is `0` (no cycles).
fn interval(duration: Duration) -> String {
    if duration.is_zero() {
        "0".to_owned()
    } else {
        format!("{}ms", duration.as_millis().max(1))
    }
}

/// Runs a latte command to its end, within `limit`; its output is shown if it fails.
async fn execute(mut command: Command, limit: Duration, what: &str) -> anyhow::Result<()> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    let output = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(output) => output.with_context(|| format!("{what} failed"))?,
        // Dropping the future kills latte (kill_on_drop).
        Err(_) => bail!("{what} did not finish within {limit:?}; killed"),
    };
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The parts of latte's `Report` (src/report/mod.rs) used here.
#[derive(Deserialize)]
struct Report {
    /// Which percentile each entry of a latency's `percentiles` is: 0, 1, 2, 5, ... 99.9,
    /// 99.99, 100.
    percentiles: Vec<f64>,
    result: Stats,
}

/// latte's `BenchmarkStats` (src/stats/mod.rs).
#[derive(Deserialize)]
struct Stats {
    elapsed_time_s: f64,
    cpu_time_s: Option<f64>,
    cycle_count: u64,
    request_count: u64,
    request_retry_count: u64,
    errors: Vec<String>,
    error_count: u64,
    cycle_throughput: Mean,
    cycle_latency: Latency,
    request_latency: Option<Latency>,
}

#[derive(Deserialize)]
struct Mean {
    value: f64,
    std_err: Option<f64>,
}

/// latte's `LatencyDistribution`, in milliseconds.
#[derive(Deserialize)]
struct Latency {
    percentiles: Vec<Mean>,
}

/// latte's factor from standard error to the error margin it prints (99.9% confidence).
const LATTE_ERROR_MARGIN: f64 = 3.29;

fn parse_report(text: &str) -> anyhow::Result<LatteResult> {
    let report: Report = serde_json::from_str(text).context("not a latte 0.29 report")?;
    let stats = &report.result;
    // Requests, unless latte recorded none (a script that sent nothing): then whole cycles.
    let latency = stats
        .request_latency
        .as_ref()
        .unwrap_or(&stats.cycle_latency);
    let at = |percentile: f64| -> anyhow::Result<f64> {
        let index = report
            .percentiles
            .iter()
            .position(|p| (p - percentile).abs() < 1e-3)
            .with_context(|| format!("no p{percentile} in the report"))?;
        latency
            .percentiles
            .get(index)
            .map(|mean| mean.value)
            .with_context(|| format!("no p{percentile} latency in the report"))
    };
    Ok(LatteResult {
        rows_per_sec: stats.cycle_throughput.value,
        rows_per_sec_margin: stats
            .cycle_throughput
            .std_err
            .map(|err| err * LATTE_ERROR_MARGIN),
        rows: stats.cycle_count,
        seconds: stats.elapsed_time_s,
        requests: stats.request_count,
        errors: stats.error_count,
        error_messages: stats.errors.clone(),
        retries: stats.request_retry_count,
        latency_ms: LatencyMs {
            p50: at(50.0)?,
            p90: at(90.0)?,
            p99: at(99.0)?,
            p999: at(99.9)?,
            max: at(100.0)?,
        },
        cpu_seconds: stats.cpu_time_s,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A real report: `latte run bench/latte/viewing_history.rn --warmup 10s --duration 20s
    /// --threads 1 --concurrency 64 -q -o ...` against Cassandra 5.0.9 on this 2-core machine
    /// (a compiler running beside it), with the per-second `log` emptied and the base64
    /// `histogram`s removed.
    const FIXTURE: &str = include_str!("../tests/fixtures/latte-report.json");

    #[test]
    fn reads_a_real_latte_report() {
        let result = parse_report(FIXTURE).expect("the fixture parses");
        assert!(result.rows > 100_000, "{result:?}");
        assert_eq!(result.requests, result.rows, "one insert per cycle");
        assert_eq!(result.errors, 0);
        assert!(result.error_messages.is_empty());
        assert_eq!(result.retries, 0);
        assert!((19.0..22.0).contains(&result.seconds), "{result:?}");
        let computed = result.rows as f64 / result.seconds;
        assert!(
            (result.rows_per_sec - computed).abs() / computed < 0.02,
            "{result:?}"
        );
        assert!(result
            .rows_per_sec_margin
            .is_some_and(|margin| margin > 0.0));
        let latency = &result.latency_ms;
        assert!(
            0.0 < latency.p50
                && latency.p50 <= latency.p90
                && latency.p90 <= latency.p99
                && latency.p99 <= latency.p999
                && latency.p999 <= latency.max,
            "{latency:?}"
        );
        assert!(result.cpu_seconds.is_some_and(|cpu| cpu > 0.0));
    }

    #[test]
    fn a_report_file_is_read_and_garbage_is_refused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("report.json");
        std::fs::write(&path, FIXTURE).expect("written");
        assert_eq!(
            format!("{:?}", read_report(&path).expect("parses")),
            format!("{:?}", parse_report(FIXTURE).expect("parses"))
        );
        std::fs::write(&path, "{\"conf\": {}}").expect("written");
        assert!(read_report(&path).is_err());
        assert!(read_report(&dir.path().join("missing.json")).is_err());
    }

    #[test]
    fn keyspace_names_and_intervals() {
        assert!(check_keyspace_name("latte_playpulse_1").is_ok());
        for bad in ["", "1abc", "a-b", "a\"; DROP", &"k".repeat(49)] {
            assert!(check_keyspace_name(bad).is_err(), "{bad}");
        }
        assert_eq!(interval(Duration::ZERO), "0");
        assert_eq!(interval(Duration::from_secs(20)), "20000ms");
        assert_eq!(interval(Duration::from_micros(10)), "1ms");
    }

    /// latte against a real node: `PLAYPULSE_TEST_LATTE=1` and `PLAYPULSE_TEST_CASSANDRA`
    /// (e.g. 127.0.0.1:9042, `engines/up cassandra`), and latte installed; skipped otherwise,
    /// as it takes ~15 s and needs the outside tool. Writes for 2 s into a keyspace of its own,
    /// checks that latte's table is the one `playpulse schema apply` makes (columns, types,
    /// key, clustering order, compaction, TTL: compared in `system_schema` with a keyspace
    /// made by the sink's own schema code), then drops both keyspaces.
    #[test]
    fn runs_latte_against_a_node() {
        let wanted = std::env::var("PLAYPULSE_TEST_LATTE").is_ok_and(|on| on == "1");
        let (true, Ok(node)) = (wanted, std::env::var("PLAYPULSE_TEST_CASSANDRA")) else {
            eprintln!("skipped: set PLAYPULSE_TEST_LATTE=1 and PLAYPULSE_TEST_CASSANDRA");
            return;
        };
        if let Err(error) = find_latte() {
            eprintln!("skipped: {error:#}");
            return;
        }
        let dir = tempfile::tempdir().expect("a temp dir");
        let keyspace = format!(
            "latte_test_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let reference = format!("{keyspace}_ref");
        let latte_run = LatteRun {
            node: node.clone(),
            duration: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
            threads: 1,
            concurrency: 16,
            connections: 1,
            rate: Some(2_000.0),
            keyspace: keyspace.clone(),
            viewers: 1_000,
            workload: Path::new(env!("CARGO_MANIFEST_DIR")).join("latte/viewing_history.rn"),
            report: dir.path().join("report.json"),
        };
        let config = |keyspace: &str| {
            let mut settings = playpulse::Settings::defaults();
            settings.cassandra.nodes = vec![node.clone()];
            settings.cassandra.keyspace = keyspace.to_owned();
            event_cql::CassandraConfig::from_settings(&settings.cassandra, settings.sink.retention)
                .expect("valid settings")
        };
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async {
            let outcome = run(&latte_run).await;
            let (session, _) = event_cql::apply_schema(&config(&reference))
                .await
                .expect("the sink's schema applies");
            // `viewing_history` as `system_schema` describes it, `keyspace_name` left out.
            let mut shapes = Vec::new();
            for shaped in [&reference, &keyspace] {
                let columns = "SELECT column_name, type, kind, clustering_order, position \
                    FROM system_schema.columns \
                    WHERE keyspace_name = ? AND table_name = 'viewing_history'";
                let mut columns: Vec<(String, String, String, String, i32)> = session
                    .query_unpaged(columns, (shaped,))
                    .await
                    .expect("system_schema.columns")
                    .into_rows_result()
                    .expect("rows")
                    .rows()
                    .expect("typed rows")
                    .collect::<Result<_, _>>()
                    .expect("decoded");
                columns.sort();
                let options = "SELECT compaction, default_time_to_live, gc_grace_seconds \
                    FROM system_schema.tables \
                    WHERE keyspace_name = ? AND table_name = 'viewing_history'";
                let options: Vec<(BTreeMap<String, String>, i32, i32)> = session
                    .query_unpaged(options, (shaped,))
                    .await
                    .expect("system_schema.tables")
                    .into_rows_result()
                    .expect("rows")
                    .rows()
                    .expect("typed rows")
                    .collect::<Result<_, _>>()
                    .expect("decoded");
                shapes.push((columns, options));
            }
            for dropped in [&keyspace, &reference] {
                event_cql::drop_keyspace(&session, dropped)
                    .await
                    .expect("drops the keyspace");
            }
            assert_eq!(shapes[0].0.len(), 18, "{shapes:?}");
            assert_eq!(shapes[0].1.len(), 1, "{shapes:?}");
            assert_eq!(
                shapes[1], shapes[0],
                "latte's table (right) differs from ours (left)"
            );
            let result = outcome.expect("latte runs");
            assert_eq!(result.errors, 0, "{result:?}");
            // ~2,000 rows/s for 2 s.
            assert!((2_000..6_000).contains(&result.rows), "{result:?}");
            assert!(latte_run.report.with_extension("run.log").is_file());
        });
    }
}
