//! `bench cassandra --chunk-sweep 1,10,100,1000`: the packed layout with chunks of N events,
//! each point its own keyspace and `playpulse serve`: events/s over HTTP, Cassandra CPU per
//! event, bytes per event on disk and what that makes in MB/s, and history `limit=100` p99
//! read back from stored chunks by a restarted server. Few viewers (`--sweep-viewers`) and a
//! long chunk age, so that chunks close by size.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use super::{keyspace, measure_storage, schema_session, Args, ClosedLoop, ServerCpu};
use crate::report::LatencyMs;
use crate::server;

/// One point of the sweep.
pub struct SweepPoint {
    pub max_events: usize,
    pub events_per_sec: f64,
    pub cassandra_cpu_us_per_event: Option<f64>,
    pub bytes_per_event: f64,
    pub history: LatencyMs,
}

impl SweepPoint {
    pub fn json(&self) -> serde_json::Value {
        json!({
            "max_events": self.max_events,
            "events_per_sec": self.events_per_sec,
            "cassandra_cpu_us_per_event": self.cassandra_cpu_us_per_event,
            "bytes_per_event_on_disk": self.bytes_per_event,
            "disk_mb_per_sec": self.events_per_sec * self.bytes_per_event / 1e6,
            "history_limit_100_ms": self.history,
        })
    }

    pub fn print(&self) {
        println!(
            "  chunks of {:>5}: {:>9.0} events/s  Cassandra {:>6.1} µs/event  {:>5.1} bytes/event ({:.1} MB/s to disk)  history limit=100 p50 {:.2} ms p99 {:.2} ms",
            self.max_events,
            self.events_per_sec,
            self.cassandra_cpu_us_per_event.unwrap_or(f64::NAN),
            self.bytes_per_event,
            self.events_per_sec * self.bytes_per_event / 1e6,
            self.history.p50,
            self.history.p99,
        );
    }
}

fn env_for(args: &Args, keyspace: &str, max_events: usize) -> Vec<(&'static str, String)> {
    vec![
        ("PLAYPULSE_SINK__KIND", "\"cassandra\"".to_owned()),
        ("PLAYPULSE_CASSANDRA__NODES", format!("[\"{}\"]", args.node)),
        ("PLAYPULSE_CASSANDRA__KEYSPACE", format!("\"{keyspace}\"")),
        ("PLAYPULSE_CASSANDRA__LAYOUT", "chunks".to_owned()),
        (
            "PLAYPULSE_CASSANDRA__NODE_ID",
            format!("sweep-{max_events}"),
        ),
        ("PLAYPULSE_CHUNKS__MAX_EVENTS", max_events.to_string()),
        // Chunks close by size, not age, within a run.
        ("PLAYPULSE_CHUNKS__MAX_AGE", "\"10m\"".to_owned()),
        ("PLAYPULSE_INVALIDATION__ENABLED", "false".to_owned()),
        (
            "PLAYPULSE_PLATFORM__RECOMMENDATIONS__RECORD_VIEWS",
            "false".to_owned(),
        ),
    ]
}

/// One GET, on a connection of its own; the time to the whole answer.
fn get(addr: &str, path: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    anyhow::ensure!(
        answer.starts_with(b"HTTP/1.1 200"),
        "GET {path}: {}",
        String::from_utf8_lossy(&answer[..answer.len().min(80)])
    );
    Ok(started.elapsed())
}

pub async fn run(
    args: &Args,
    bin: &Path,
    run_id: &str,
    cassandra: &ServerCpu,
    sizes: &[usize],
) -> anyhow::Result<Vec<SweepPoint>> {
    let mut points = Vec::new();
    for &max_events in sizes {
        let keyspace = keyspace(run_id, &format!("sweep_{max_events}"));
        let session = schema_session(args, &keyspace).await?;
        let env = env_for(args, &keyspace, max_events);
        let data_dir = tempfile::tempdir()?;
        let service = server::Server::start(bin, data_dir.path(), &env)?;
        let load = ClosedLoop::new(
            bin,
            vec!["http".to_owned(), "--url".to_owned(), service.url.clone()],
            args.concurrency,
            args.batch,
            args.sweep_viewers,
        )?;
        let mut total_events = 0;
        if !args.warmup.is_zero() {
            total_events += load.run(args.warmup).await?.totals.events_acked;
        }
        let before = cassandra.now();
        let report = load.run(args.common.duration).await?;
        let after = cassandra.now();
        let events = report.totals.events_acked;
        total_events += events;
        // Stop it (its open chunks are stored), then read back through a fresh server.
        drop(service);
        let reader = server::Server::start(bin, data_dir.path(), &env)?;
        let addr = reader.url.trim_start_matches("http://").to_owned();
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let viewers = session
            .query_unpaged(
                format!("SELECT user_id FROM {keyspace}.viewing_days LIMIT 200"),
                (),
            )
            .await?
            .into_rows_result()?
            .rows::<(i64,)>()?
            .filter_map(Result::ok)
            .map(|(user,)| user as u64)
            .collect::<Vec<u64>>();
        for user in viewers {
            let path = format!("/v1/users/{user}/history?limit=100");
            let addr = addr.clone();
            let took = tokio::task::spawn_blocking(move || get(&addr, &path)).await??;
            latency.record((took.as_micros() as u64).max(1))?;
        }
        drop(reader);
        let stored = measure_storage(
            &args.nodetool,
            &args.cassandra_data_dir,
            &keyspace,
            total_events.max(1),
        )?;
        let point = SweepPoint {
            max_events,
            events_per_sec: events as f64 / report.wall_seconds.max(1e-9),
            cassandra_cpu_us_per_event: before
                .zip(after)
                .map(|(a, b)| (b - a) * 1e6 / events.max(1) as f64),
            bytes_per_event: stored.history_bytes_per_event,
            history: LatencyMs::from_micros(&latency),
        };
        point.print();
        points.push(point);
    }
    Ok(points)
}
