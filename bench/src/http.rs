//! HTTP end to end on loopback: `loadgen` against `playpulse serve`, both on this machine.
//! A ramp finds the saturation point (the highest rate whose p99 stays under the SLO with no
//! errors), then a steady run at 80% of it measures the acknowledgement latency there.

use serde_json::json;

use crate::report::{self, CpuPerEvent, Outcome};
use crate::server::{self, Server};
use crate::Common;

const TARGET_EVENTS_PER_SEC: f64 = 500_000.0;
const TARGET_P99_MS: f64 = 50.0;
/// The server's CPU per event at 80% of saturation, with loadgen's audience.
const TARGET_SERVER_US_PER_EVENT: f64 = 1.5;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Length of the steady run at 80% of saturation.
    #[command(flatten)]
    common: Common,
    /// First rate of the ramp, events/s.
    #[arg(long, default_value_t = 100_000.0)]
    start_rate: f64,
    /// Rate added at each step.
    #[arg(long, default_value_t = 100_000.0)]
    ramp_step: f64,
    #[arg(long, default_value_t = 8)]
    ramp_steps: usize,
    #[arg(long, default_value = "10s")]
    step_duration: String,
    /// Events per request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    #[arg(long, default_value_t = 8)]
    connections: usize,
}

pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let bin = server::build_binaries()?;
    let work = tempfile::tempdir()?;
    let data_dir = work.path().join("data");
    let server = Server::start(&bin, &data_dir, &[])?;
    let server_cpu_at_start = server.cpu_seconds();
    let common_args = |extra: &[String]| -> Vec<String> {
        let mut all = vec![
            "http".to_owned(),
            "--url".to_owned(),
            server.url.clone(),
            "--batch".to_owned(),
            args.batch.to_string(),
            "--connections".to_owned(),
            args.connections.to_string(),
            "--slo-p99-ms".to_owned(),
            TARGET_P99_MS.to_string(),
        ];
        all.extend_from_slice(extra);
        all
    };

    eprintln!(
        "http: ramp from {} events/s by {} per step",
        args.start_rate, args.ramp_step
    );
    let ramp_args = common_args(&[
        "--ramp".to_owned(),
        "--rate".to_owned(),
        args.start_rate.to_string(),
        "--ramp-step".to_owned(),
        args.ramp_step.to_string(),
        "--ramp-steps".to_owned(),
        args.ramp_steps.to_string(),
        "--step-duration".to_owned(),
        args.step_duration.clone(),
    ]);
    let ramp = server::run_loadgen(&bin, &ramp_args, &work.path().join("ramp.json"))?;
    let ramp_cpu = CpuPerEvent::of(
        server.cpu_seconds() - server_cpu_at_start,
        ramp.generator_cpu_seconds,
        ramp.totals.events_acked,
    );
    let ramp_report = ramp.ramp.as_ref();
    let saturation = ramp_report
        .and_then(|ramp| ramp.saturation_events_per_sec)
        .unwrap_or(0.0);
    let curve: Vec<_> = ramp_report
        .map(|ramp| {
            ramp.steps
                .iter()
                .map(|step| {
                    json!({
                        "target_events_per_sec": step.target_events_per_sec,
                        "achieved_events_per_sec": step.achieved_events_per_sec,
                        "p50_ms": step.latency_ms.p50,
                        "p99_ms": step.latency_ms.p99,
                        "errors": step.errors,
                        "passed": step.passed,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    for point in &curve {
        eprintln!("    {point}");
    }

    let steady_rate = (saturation * 0.8).max(args.start_rate * 0.5);
    eprintln!("http: steady run at {steady_rate:.0} events/s (80% of saturation {saturation:.0})");
    let server_cpu_before = server.cpu_seconds();
    let steady_args = common_args(&[
        "--rate".to_owned(),
        steady_rate.to_string(),
        "--duration".to_owned(),
        format!("{}s", args.common.duration.as_secs().max(1)),
    ]);
    let steady = server::run_loadgen(&bin, &steady_args, &work.path().join("steady.json"))?;
    let server_cpu = server.cpu_seconds() - server_cpu_before;
    let steady_cpu = CpuPerEvent::of(
        server_cpu,
        steady.generator_cpu_seconds,
        steady.totals.events_acked,
    );
    let peak_rss = server.peak_rss_bytes();
    drop(server);
    let disk = report::bytes_on_disk(&data_dir);
    let events_stored = ramp.totals.events_acked + steady.totals.events_acked;

    let p99 = steady.latency_ms.p99;
    let met = saturation >= TARGET_EVENTS_PER_SEC
        && p99 <= TARGET_P99_MS
        && steady_cpu.server_us <= TARGET_SERVER_US_PER_EVENT
        && steady.error_count == 0;
    println!("http: saturation {saturation:.0} events/s (target {TARGET_EVENTS_PER_SEC:.0})");
    println!(
        "  at 80% ({steady_rate:.0} offered, {:.0} acknowledged): p50 {:.2} ms  p99 {:.2} ms (target {TARGET_P99_MS})  p99.9 {:.2} ms  errors {}",
        steady.events_per_sec, steady.latency_ms.p50, p99, steady.latency_ms.p999, steady.error_count
    );
    println!(
        "  server: peak RSS {} MiB, {:.2} cores at 80%;  generator {:.2} cores{}",
        peak_rss >> 20,
        server_cpu / steady.wall_seconds.max(1e-9),
        steady.generator.cores_used,
        if steady.generator.bottleneck {
            " (the generator was the bottleneck)"
        } else {
            ""
        }
    );
    println!("  at 80%: {steady_cpu} (server target {TARGET_SERVER_US_PER_EVENT});  over the ramp: {ramp_cpu}");
    println!(
        "  {disk} bytes on disk for {events_stored} events = {:.1} bytes/event",
        disk as f64 / events_stored.max(1) as f64
    );

    let outcome = Outcome {
        json: json!({
            "scenario": "http",
            "events_per_sec": saturation,
            "target_events_per_sec": TARGET_EVENTS_PER_SEC,
            "target_p99_ms_at_80_percent": TARGET_P99_MS,
            "target_server_cpu_us_per_event": TARGET_SERVER_US_PER_EVENT,
            "target_met": met,
            "saturation_events_per_sec": saturation,
            // As a loadgen ramp report says it, so `loadgen plan --report` takes it as a rate at
            // the SLO.
            "target": "http",
            "ramp": {"saturation_events_per_sec": saturation, "slo_p99_ms": TARGET_P99_MS},
            "curve": curve,
            "steady": {
                "offered_events_per_sec": steady_rate,
                "events_per_sec": steady.events_per_sec,
                "latency_ms": steady.latency_ms,
                "errors": steady.errors,
                "missed_sends": steady.missed_sends,
                "generator": steady.generator,
                "cpu_us_per_event": steady_cpu,
            },
            "ramp_cpu_us_per_event": ramp_cpu,
            "server_peak_rss_bytes": peak_rss,
            "server_cores_at_80_percent": server_cpu / steady.wall_seconds.max(1e-9),
            "bytes_on_disk": disk,
            "bytes_per_event": disk as f64 / events_stored.max(1) as f64,
            "settings": {
                "batch": args.batch,
                "connections": args.connections,
                "step_duration": args.step_duration,
            },
        }),
        met,
    };
    outcome.write(args.common.json.as_deref())?;
    Ok(outcome)
}
