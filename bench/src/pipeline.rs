//! The in-process pipeline scenario: exactly what `POST /v1/events` does after reading a body
//! (admission, simd-json parse, validation, sharded batching, fsync'd embedded write,
//! acknowledgement), driven by concurrent in-process clients, without HTTP framing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use ingest::codec::{BodyEncoding, BodyFormat};
use ingest::http::AppState;
use playpulse::{Overrides, Settings};
use serde_json::json;
use tokio::time::Instant;

use crate::body::BodyTemplate;
use crate::report::{self, LatencyMs, Outcome};
use crate::Common;

/// Issue 12's target: the in-process cost down to <= 1.2 µs per event on two cores.
const TARGET_EVENTS_PER_SEC: f64 = 1_500_000.0;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Requests in flight at once (in-process clients).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Events per request body.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Distinct viewers the events come from.
    #[arg(long, default_value_t = 1_000_000)]
    viewers: u64,
    /// Where the embedded store writes (default: a temporary directory, deleted after).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A configuration profile layered over the defaults (PLAYPULSE_* variables apply too).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// The settings of an in-process run: `config` over the defaults, PLAYPULSE_* variables, the
/// data in `data_dir` or else in a temporary directory that lives as long as the returned guard.
pub fn run_settings(
    data_dir: Option<&Path>,
    config: Option<&Path>,
) -> anyhow::Result<(tempfile::TempDir, PathBuf, Settings)> {
    let temporary = tempfile::tempdir().context("cannot make a temporary directory")?;
    let data_dir = data_dir.map_or_else(|| temporary.path().to_owned(), Path::to_owned);
    let overrides = Overrides {
        listen: None,
        data_dir: Some(data_dir.clone()),
    };
    let settings = Settings::load(config, std::env::vars(), &overrides)?;
    Ok((temporary, data_dir, settings))
}

pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let (_temporary, data_dir, settings) =
        run_settings(args.data_dir.as_deref(), args.config.as_deref())?;
    let service = playpulse::Service::start(&settings).await?;

    let templates = templates(args.batch, args.viewers);
    let body_bytes = templates[0].bytes.len();
    eprintln!(
        "pipeline: {} clients, {} events ({} B) per request, {} shards, fsync {}, {:?}",
        args.concurrency,
        args.batch,
        body_bytes,
        settings.pipeline.shards.get(),
        settings.embedded.fsync,
        args.common.duration
    );

    let driven = drive(
        &service.state,
        templates,
        args.concurrency,
        args.common.duration,
    )
    .await?;
    service.drain().await;
    let Driven {
        events,
        seconds: elapsed,
        cpu_seconds: cpu,
        latency,
        errors,
        ..
    } = driven;

    let events_per_sec = events as f64 / elapsed;
    let disk = report::bytes_on_disk(&data_dir);
    let bytes_per_event = disk as f64 / events.max(1) as f64;
    let latency = LatencyMs::from_micros(&latency);
    let peak_rss = report::peak_rss_bytes();
    println!("pipeline: {events} events in {elapsed:.1} s = {events_per_sec:.0} events/s (target {TARGET_EVENTS_PER_SEC:.0})");
    println!(
        "  ack latency ms: p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2};  errors {errors}",
        latency.p50, latency.p99, latency.p999, latency.max
    );
    println!("  peak RSS {} MiB;  {disk} bytes on disk = {bytes_per_event:.1} bytes/event;  CPU {cpu:.1} s ({:.2} cores, {:.2} µs per event, the generator's body stamping included)", peak_rss >> 20, cpu / elapsed, cpu * 1e6 / events.max(1) as f64);

    let met = events_per_sec >= TARGET_EVENTS_PER_SEC && errors == 0;
    let outcome = Outcome {
        json: json!({
            "scenario": "pipeline",
            "target": "pipeline",
            "events_per_sec": events_per_sec,
            "target_events_per_sec": TARGET_EVENTS_PER_SEC,
            "target_met": met,
            "events": events,
            "seconds": elapsed,
            "errors": errors,
            "ack_latency_ms": latency,
            "peak_rss_bytes": peak_rss,
            "bytes_on_disk": disk,
            "bytes_per_event": bytes_per_event,
            "cpu_seconds": cpu,
            "cpu_us_per_event": cpu * 1e6 / events.max(1) as f64,
            "settings": {
                "concurrency": args.concurrency,
                "events_per_request": args.batch,
                "request_bytes": body_bytes,
                "viewers": args.viewers,
                "shards": settings.pipeline.shards.get(),
                "batch_max_events": settings.pipeline.batch_max_events.get(),
                "linger_ms": settings.pipeline.linger.as_millis() as u64,
                "fsync": settings.embedded.fsync,
            },
        }),
        met,
    };
    outcome.write(args.common.json.as_deref())?;
    Ok(outcome)
}

/// Request bodies: 16 templates of `batch` events from `viewers` viewers, stamped with fresh
/// ids at every use.
pub fn templates(batch: usize, viewers: u64) -> Arc<Vec<BodyTemplate>> {
    let now = ingest::now_ms();
    Arc::new(
        (0..16)
            .map(|seed| BodyTemplate::generate(seed, batch, viewers, now))
            .collect(),
    )
}

/// What [`drive`] measured.
pub struct Driven {
    /// Events acknowledged.
    pub events: u64,
    pub seconds: f64,
    /// CPU of this whole process meanwhile (service and clients).
    pub cpu_seconds: f64,
    /// Acknowledgement latency, microseconds.
    pub latency: Histogram<u64>,
    /// Requests that failed.
    pub errors: u64,
    /// What the first failure said.
    pub first_error: Option<String>,
}

/// `concurrency` in-process clients post bodies through `ingest_body` (exactly what the HTTP
/// handler does after reading a body) for `duration`; a progress line every 5 s.
pub async fn drive(
    state: &AppState,
    templates: Arc<Vec<BodyTemplate>>,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Driven> {
    let sequence = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = report::cpu_seconds();
    let started = Instant::now();
    let clients: Vec<_> = (0..concurrency)
        .map(|client| {
            let (state, templates, sequence, acked, stop) = (
                state.clone(),
                templates.clone(),
                sequence.clone(),
                acked.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut latency =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
                let mut errors = 0u64;
                let mut first_error = None;
                while !stop.load(Relaxed) {
                    let use_number = sequence.fetch_add(1, Relaxed);
                    let template = &templates[(use_number as usize + client) % templates.len()];
                    let body = bytes::Bytes::from(template.stamp(use_number));
                    let sent = Instant::now();
                    let result = ingest::http::ingest_body(
                        &state,
                        BodyFormat::JsonArray,
                        BodyEncoding::Identity,
                        body,
                        sent,
                    )
                    .await;
                    match result {
                        Ok(ack) => {
                            acked.fetch_add(ack.accepted as u64, Relaxed);
                            let _ = latency.record(sent.elapsed().as_micros() as u64);
                        }
                        Err(error) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| error.to_string());
                        }
                    }
                }
                (latency, errors, first_error)
            })
        })
        .collect();

    let mut last = (Instant::now(), 0u64);
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(5).min(duration.saturating_sub(started.elapsed())))
            .await;
        let (now, total) = (Instant::now(), acked.load(Relaxed));
        let rate = (total - last.1) as f64 / (now - last.0).as_secs_f64();
        eprintln!(
            "  {:>5.1}s  {:>10.0} events/s  rss {} MiB",
            started.elapsed().as_secs_f64(),
            rate,
            report::peak_rss_bytes() >> 20
        );
        last = (now, total);
    }
    stop.store(true, Relaxed);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    let mut first_error = None;
    for client in clients {
        let (histogram, client_errors, client_first_error) = client.await?;
        latency.add(histogram)?;
        errors += client_errors;
        first_error = first_error.or(client_first_error);
    }
    if let Some(error) = &first_error {
        eprintln!("  {errors} requests failed; the first: {error}");
    }
    Ok(Driven {
        events: acked.load(Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: report::cpu_seconds() - cpu_before,
        latency,
        errors,
        first_error,
    })
}
