//! The run's report: a JSON file for machines (`--report`) and a text summary for people.
//!
//! Every rate is per second of wall time from a phase's start to its last answer, summed over
//! phases. `events_per_sec` counts events the server acknowledged (accepted in a 200 answer);
//! latency is from each request's intended send time to its 200 (open loop), or from its actual
//! send (closed loop).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ramp::RampReport;
use crate::run::PhaseResult;
use crate::settings::{RunSettings, TargetSettings};
use crate::stats::progress::thousands;
use crate::stats::{HistogramError, LatencyHistogram, LatencySummary, MissedSends, Sample};
use crate::workload::KindCounts;

/// Late sends beyond this share of all sends mean the generator could not keep its schedule.
const GENERATOR_LATE_SHARE: f64 = 0.01;
/// CPU use beyond this share of the generator's threads means it ran out of CPU.
const GENERATOR_CPU_SHARE: f64 = 0.9;
/// In closed loop, workers busy building requests more than this share of the time were the
/// limit, not the server.
const GENERATOR_BUSY_SHARE: f64 = 0.5;

/// Why a report cannot be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The file cannot be written or read.
    #[error("report {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The file is not a loadgen report.
    #[error("report {path} is not a loadgen report: {source}")]
    Format {
        path: String,
        source: serde_json::Error,
    },
    /// The histogram cannot be encoded.
    #[error(transparent)]
    Histogram(#[from] HistogramError),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    /// What was loaded: `http` (the service end to end) or `cassandra` (a baseline writer).
    pub target: String,
    pub settings: RunSettings,
    pub machine: Machine,
    /// When the run started, epoch ms.
    pub started_at_ms: i64,
    pub wall_seconds: f64,
    /// Acknowledged events per second.
    pub events_per_sec: f64,
    /// Acknowledged requests per second.
    pub requests_per_sec: f64,
    /// Events sent per second (acknowledged or not).
    pub sent_events_per_sec: f64,
    pub latency_ms: LatencySummary,
    /// Failed requests by kind (`status_503`, `connect`, `timeout`, `transport`, ...) and events
    /// rejected one by one (`rejected_events`).
    pub errors: BTreeMap<String, u64>,
    pub error_count: u64,
    /// Sends that left later than scheduled or never left (open loop); see `missed_sends_detail`.
    pub missed_sends: u64,
    pub missed_sends_detail: MissedSends,
    pub totals: Totals,
    pub generator_cpu_seconds: f64,
    pub generator: GeneratorVerdict,
    pub workload: WorkloadFacts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<SloVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<RampReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_log_events: Option<u64>,
    /// Events the truth file (`--truth`) counts: the acknowledged ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth_events: Option<u64>,
    /// Lines (minutes) of the truth file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth_minutes: Option<u64>,
    pub histogram: EncodedHistogram,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub os: String,
    pub arch: String,
}

impl Machine {
    pub fn this() -> Machine {
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub requests_sent: u64,
    pub requests_acked: u64,
    pub events_sent: u64,
    pub events_acked: u64,
    pub events_rejected: u64,
    /// Request bodies on the wire (after compression).
    pub body_bytes: u64,
    /// Request bodies before compression.
    pub raw_bytes: u64,
}

/// Whether the generator, not the server, set the pace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorVerdict {
    /// CPU seconds per wall second: how many cores the generator kept busy. For a ramp, this
    /// verdict covers the steps that passed (the ones that set the saturation point).
    pub cores_used: f64,
    pub threads: usize,
    /// Share of the workers' time spent building requests rather than waiting for answers.
    pub busy_share: f64,
    pub bottleneck: bool,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadFacts {
    pub viewers: u64,
    /// Measured on the model: what 1 M events/s means in concurrent viewers.
    pub events_per_viewer_per_sec: f64,
    /// Seconds of viewing per wall second at the planned rate (None with `--max`).
    pub planned_time_compression: Option<f64>,
    /// Seconds of viewing the run covered per wall second.
    pub effective_time_compression: f64,
    pub simulated_seconds: f64,
    /// `ts` of simulated time zero, epoch ms.
    pub ts_origin_ms: i64,
    /// Events whose `ts` was pulled back to `sent_at` (0 unless the audience was far too small).
    pub ts_clamped: u64,
    pub kinds: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloVerdict {
    pub p99_ms: f64,
    pub met: bool,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodedHistogram {
    /// What a recorded value means.
    pub unit: String,
    pub encoding: String,
    pub data: String,
}

impl EncodedHistogram {
    pub fn of(histogram: &LatencyHistogram) -> Result<EncodedHistogram, HistogramError> {
        Ok(EncodedHistogram {
            unit: "microseconds".to_owned(),
            encoding: "HdrHistogram V2 deflate, base64".to_owned(),
            data: histogram.encode()?,
        })
    }

    pub fn decode(&self) -> Result<LatencyHistogram, HistogramError> {
        LatencyHistogram::decode(&self.data)
    }
}

/// What the report is made of.
pub struct RunFacts<'a> {
    pub settings: &'a RunSettings,
    pub started_at_ms: i64,
    pub phases: &'a [PhaseResult],
    pub ramp: Option<RampReport>,
    pub kinds: KindCounts,
    pub simulated: Duration,
    pub events_per_viewer_per_sec: f64,
    pub planned_time_compression: Option<f64>,
    pub ts_origin_ms: i64,
    pub acked_log_events: Option<u64>,
    pub truth: Option<crate::run::TruthWritten>,
}

impl Report {
    pub fn build(facts: RunFacts<'_>) -> Result<Report, ReportError> {
        let settings = facts.settings;
        let mut all = Sample::default();
        let mut wall = Duration::ZERO;
        let mut cpu = Duration::ZERO;
        for phase in facts.phases {
            all.merge(&phase.sample)?;
            wall += phase.wall;
            cpu += phase.cpu;
        }
        let seconds = wall.as_secs_f64().max(1e-9);
        let counters = &all.counters;
        let latency = all.latency.summary();
        // A ramp drives the machine into saturation on purpose, where the generator starves for
        // CPU too: judge it over the steps that passed, which set the saturation point.
        let judged = match &facts.ramp {
            Some(ramp) if ramp.steps.iter().any(|step| step.passed) => {
                let mut passed = Sample::default();
                let mut passed_wall = Duration::ZERO;
                let mut passed_cpu = Duration::ZERO;
                for (phase, step) in facts.phases.iter().zip(&ramp.steps) {
                    if step.passed {
                        passed.merge(&phase.sample)?;
                        passed_wall += phase.wall;
                        passed_cpu += phase.cpu;
                    }
                }
                Some((passed, passed_cpu, passed_wall))
            }
            _ => None,
        };
        let (judged_sample, judged_cpu, judged_wall) = match &judged {
            Some((sample, cpu, wall)) => (sample, *cpu, *wall),
            None => (&all, cpu, wall),
        };
        let generator = judge_generator(
            judged_sample,
            judged_cpu,
            judged_wall,
            settings.threads,
            settings.load.is_open_loop(),
        );
        let slo = settings.slo_p99_ms.map(|p99_ms| {
            let mut reasons = Vec::new();
            match &facts.ramp {
                Some(ramp) => {
                    if ramp.saturation_events_per_sec.is_none() {
                        reasons.push("no step of the ramp met the SLO".to_owned());
                    }
                }
                None => {
                    if latency.count == 0 {
                        reasons.push("no request was acknowledged".to_owned());
                    } else if latency.p99 > p99_ms {
                        reasons.push(format!("p99 {:.2} ms > {p99_ms} ms", latency.p99));
                    }
                    if counters.error_count() > 0 {
                        reasons.push(format!("{} errors", counters.error_count()));
                    }
                }
            }
            SloVerdict {
                p99_ms,
                met: reasons.is_empty(),
                reasons,
            }
        });
        Ok(Report {
            tool: "loadgen".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            target: settings.target.name().to_owned(),
            settings: settings.clone(),
            machine: Machine::this(),
            started_at_ms: facts.started_at_ms,
            wall_seconds: wall.as_secs_f64(),
            events_per_sec: counters.events_acked as f64 / seconds,
            requests_per_sec: counters.requests_acked as f64 / seconds,
            sent_events_per_sec: counters.events_sent as f64 / seconds,
            latency_ms: latency,
            errors: counters.errors.clone(),
            error_count: counters.error_count(),
            missed_sends: counters.missed.total(),
            missed_sends_detail: counters.missed,
            totals: Totals {
                requests_sent: counters.requests_sent,
                requests_acked: counters.requests_acked,
                events_sent: counters.events_sent,
                events_acked: counters.events_acked,
                events_rejected: counters.events_rejected,
                body_bytes: counters.body_bytes,
                raw_bytes: counters.raw_bytes,
            },
            generator_cpu_seconds: cpu.as_secs_f64(),
            generator,
            workload: WorkloadFacts {
                viewers: settings.workload.viewers,
                events_per_viewer_per_sec: facts.events_per_viewer_per_sec,
                planned_time_compression: facts.planned_time_compression,
                effective_time_compression: facts.simulated.as_secs_f64() / seconds,
                simulated_seconds: facts.simulated.as_secs_f64(),
                ts_origin_ms: facts.ts_origin_ms,
                ts_clamped: counters.ts_clamped,
                kinds: facts.kinds.by_name(),
            },
            slo,
            ramp: facts.ramp,
            acked_log_events: facts.acked_log_events,
            truth_events: facts.truth.map(|truth| truth.events),
            truth_minutes: facts.truth.map(|truth| truth.minutes),
            histogram: EncodedHistogram::of(&all.latency)?,
        })
    }

    /// Whether the run met its SLO (true when it had none).
    pub fn passed(&self) -> bool {
        self.slo.as_ref().is_none_or(|slo| slo.met)
    }

    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        let text = serde_json::to_string_pretty(self).map_err(|source| ReportError::Format {
            path: path.display().to_string(),
            source,
        })?;
        std::fs::write(path, text + "\n").map_err(|source| ReportError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn read(path: &Path) -> Result<Report, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ReportError::Format {
            path: path.display().to_string(),
            source,
        })
    }

    /// The text summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let settings = &self.settings;
        let mode = match &settings.load {
            crate::settings::LoadShape::Rate { events_per_sec } => {
                format!("open loop at {} events/s", thousands(*events_per_sec))
            }
            crate::settings::LoadShape::Max => "closed loop (--max)".to_owned(),
            crate::settings::LoadShape::Ramp { .. } => "ramp".to_owned(),
        };
        let destination = match &settings.target {
            TargetSettings::Http {
                url,
                format,
                compression,
                ..
            } => format!(
                "http {url}: {mode}, batch {} ({}, compression {})",
                settings.batch,
                format.content_type(),
                compression.content_encoding().unwrap_or("none"),
            ),
            TargetSettings::Cassandra(cassandra) => format!(
                "cassandra {} keyspace {}: {mode}, mode {}, batch {}",
                cassandra.nodes.join(","),
                cassandra.keyspace,
                cassandra.mode.name(),
                settings.batch,
            ),
        };
        let _ = writeln!(
            out,
            "loadgen {destination}, {} connections, {} viewers, {:.1} s",
            settings.connections,
            thousands(self.workload.viewers as f64),
            self.wall_seconds,
        );
        let _ = writeln!(
            out,
            "  acknowledged  {} events/s, {} requests/s ({} events, {} sent)",
            thousands(self.events_per_sec),
            thousands(self.requests_per_sec),
            thousands(self.totals.events_acked as f64),
            thousands(self.totals.events_sent as f64),
        );
        let latency = &self.latency_ms;
        let _ = writeln!(
            out,
            "  latency       p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
            latency.p50, latency.p90, latency.p99, latency.p999, latency.max
        );
        let errors = if self.errors.is_empty() {
            "none".to_owned()
        } else {
            self.errors
                .iter()
                .map(|(kind, count)| format!("{kind} {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "  errors        {errors}");
        let missed = &self.missed_sends_detail;
        let _ = writeln!(
            out,
            "  missed sends  {} (generator late {}, connection busy {}, never sent {})",
            self.missed_sends, missed.generator_late, missed.connection_busy, missed.unsent
        );
        let generator = &self.generator;
        let _ = writeln!(
            out,
            "  generator     {:.2} CPU s = {:.2} cores of {} CPUs; busy {:.0}% of its time{}",
            self.generator_cpu_seconds,
            generator.cores_used,
            self.machine.cpus,
            generator.busy_share * 100.0,
            if generator.bottleneck {
                format!(
                    "\n  !! the generator was the bottleneck: {}",
                    generator.reasons.join("; ")
                )
            } else {
                "; not the bottleneck".to_owned()
            }
        );
        let workload = &self.workload;
        let _ = writeln!(
            out,
            "  workload      {:.3} events per viewer per second; {:.0} s of viewing in {:.0} s (compression {:.1}x)",
            workload.events_per_viewer_per_sec,
            workload.simulated_seconds,
            self.wall_seconds,
            workload.effective_time_compression,
        );
        if let Some(ramp) = &self.ramp {
            let _ = writeln!(out, "  ramp (SLO p99 <= {} ms):", ramp.slo_p99_ms);
            for step in &ramp.steps {
                let _ = writeln!(
                    out,
                    "    offered {:>11}  achieved {:>11}  p50 {:>8.2} ms  p99 {:>8.2} ms  errors {}  missed {} (generator late {})  {}",
                    thousands(step.target_events_per_sec),
                    thousands(step.achieved_events_per_sec),
                    step.latency_ms.p50,
                    step.latency_ms.p99,
                    step.errors,
                    step.missed_sends,
                    step.generator_late,
                    match &step.failed_because {
                        None => "ok".to_owned(),
                        Some(why) => format!("FAIL: {why}"),
                    }
                );
            }
            let _ = writeln!(
                out,
                "  saturation    {}",
                ramp.saturation_events_per_sec.map_or_else(
                    || "none: the first step already missed the SLO".to_owned(),
                    |rate| format!("{} events/s", thousands(rate))
                )
            );
        }
        if let Some(slo) = &self.slo {
            let _ = writeln!(
                out,
                "  SLO p99 <= {} ms: {}",
                slo.p99_ms,
                if slo.met {
                    "met".to_owned()
                } else {
                    format!("MISSED ({})", slo.reasons.join("; "))
                }
            );
        }
        if let Some(events) = self.acked_log_events {
            let _ = writeln!(
                out,
                "  acked log     {} events in {}",
                thousands(events as f64),
                settings
                    .acked_log
                    .as_ref()
                    .map_or_else(String::new, |path| path.display().to_string())
            );
        }
        if let (Some(events), Some(minutes)) = (self.truth_events, self.truth_minutes) {
            let _ = writeln!(
                out,
                "  truth         {} events, {} minutes in {}",
                thousands(events as f64),
                minutes,
                settings
                    .truth
                    .as_ref()
                    .map_or_else(String::new, |path| path.display().to_string())
            );
        }
        out
    }
}

/// Says whether the generator set the pace, and why.
pub fn judge_generator(
    all: &Sample,
    cpu: Duration,
    wall: Duration,
    threads: usize,
    open_loop: bool,
) -> GeneratorVerdict {
    let counters = &all.counters;
    let cores_used = cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9);
    let working = counters.preparing + counters.awaiting;
    let busy_share = counters.preparing.as_secs_f64() / working.as_secs_f64().max(1e-9);
    let mut reasons = Vec::new();
    let late = counters.missed.generator_late;
    if open_loop && late as f64 > GENERATOR_LATE_SHARE * counters.requests_sent.max(1) as f64 {
        reasons.push(format!(
            "{late} of {} sends started late on a free connection: it could not keep its \
             schedule (too slow, or short of CPU on a shared machine)",
            counters.requests_sent
        ));
    }
    if cores_used >= GENERATOR_CPU_SHARE * threads as f64 {
        reasons.push(format!(
            "it kept {cores_used:.2} cores busy with {threads} threads"
        ));
    }
    if !open_loop && busy_share > GENERATOR_BUSY_SHARE {
        reasons.push(format!(
            "workers spent {:.0}% of their time building requests, {:.0}% waiting for the server",
            busy_share * 100.0,
            (1.0 - busy_share) * 100.0
        ));
    }
    GeneratorVerdict {
        cores_used,
        threads,
        busy_share,
        bottleneck: !reasons.is_empty(),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::PhasePlan;
    use crate::settings::LoadShape;
    use crate::workload::WorkloadConfig;

    fn settings() -> RunSettings {
        RunSettings {
            target: TargetSettings::Http {
                url: "http://127.0.0.1:8080".into(),
                format: crate::http::BodyFormat::Ndjson,
                compression: crate::http::Compression::Zstd,
                api_key: None,
            },
            load: LoadShape::Rate {
                events_per_sec: 2_000.0,
            },
            duration: Duration::from_secs(2),
            batch: 100,
            connections: 2,
            threads: 2,
            timeout: Duration::from_secs(5),
            miss_slack: Duration::from_millis(5),
            workload: WorkloadConfig {
                seed: 3,
                viewers: 100,
                heartbeat: Duration::from_secs(10),
                catalog_titles: 50,
                zipf_exponent: 1.0,
                taste: crate::workload::Taste::default(),
            },
            requested_viewers: Some(100),
            requested_time_compression: None,
            slo_p99_ms: Some(10.0),
            acked_log: Some("acked.tsv".into()),
            truth: None,
        }
    }

    fn phase(latencies_ms: &[u64], errors: u64) -> PhaseResult {
        let mut sample = Sample::default();
        for latency in latencies_ms {
            sample.latency.record(Duration::from_millis(*latency));
            sample.counters.requests_sent += 1;
            sample.counters.requests_acked += 1;
            sample.counters.events_sent += 100;
            sample.counters.events_acked += 100;
        }
        if errors > 0 {
            sample.counters.error("status_503", errors);
        }
        sample.counters.preparing = Duration::from_millis(100);
        sample.counters.awaiting = Duration::from_millis(900);
        PhaseResult {
            plan: PhasePlan {
                label: String::new(),
                rate: Some(2_000.0),
                duration: Duration::from_secs(2),
            },
            wall: Duration::from_secs(2),
            sample,
            cpu: Duration::from_millis(300),
        }
    }

    fn report(phases: &[PhaseResult]) -> Report {
        let settings = settings();
        Report::build(RunFacts {
            settings: &settings,
            started_at_ms: 1_750_000_000_000,
            phases,
            ramp: None,
            kinds: KindCounts::default(),
            simulated: Duration::from_secs(200),
            events_per_viewer_per_sec: 0.11,
            planned_time_compression: Some(180.0),
            ts_origin_ms: 1_749_999_000_000,
            acked_log_events: Some(4_000),
            truth: None,
        })
        .unwrap()
    }

    #[test]
    fn a_cassandra_report_names_its_target_and_round_trips() {
        let mut settings = settings();
        settings.target = TargetSettings::Cassandra(crate::cassandra::tests::example());
        let phases = [phase(&[1, 2, 3], 0)];
        let report = Report::build(RunFacts {
            settings: &settings,
            started_at_ms: 1_750_000_000_000,
            phases: &phases,
            ramp: None,
            kinds: KindCounts::default(),
            simulated: Duration::from_secs(200),
            events_per_viewer_per_sec: 0.11,
            planned_time_compression: None,
            ts_origin_ms: 1_749_999_000_000,
            acked_log_events: None,
            truth: None,
        })
        .unwrap();
        assert_eq!(report.target, "cassandra");
        let json = serde_json::to_string(&report).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["settings"]["target"], "cassandra");
        assert_eq!(value["settings"]["mode"], "best");
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        assert!(report
            .summary()
            .starts_with("loadgen cassandra 127.0.0.1:9042 keyspace playpulse_loadgen"));
    }

    #[test]
    fn the_report_round_trips_through_json_with_its_histogram() {
        let report = report(&[phase(&[1, 2, 3, 40], 0)]);
        let json = serde_json::to_string_pretty(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        let histogram = back.histogram.decode().unwrap();
        assert_eq!(histogram.count(), 4);
        // The fields a reader relies on are at the top level.
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        for field in [
            "settings",
            "events_per_sec",
            "requests_per_sec",
            "latency_ms",
            "errors",
            "missed_sends",
            "generator_cpu_seconds",
            "histogram",
        ] {
            assert!(value.get(field).is_some(), "no {field}");
        }
        for quantile in ["p50", "p90", "p99", "p999", "max"] {
            assert!(value["latency_ms"].get(quantile).is_some(), "no {quantile}");
        }
    }

    #[test]
    fn rates_count_acknowledged_events_over_the_wall_time_of_all_phases() {
        let report = report(&[phase(&[1; 10], 0), phase(&[1; 30], 0)]);
        // 40 requests of 100 events in 4 s.
        assert_eq!(report.events_per_sec, 1_000.0);
        assert_eq!(report.requests_per_sec, 10.0);
        assert_eq!(report.generator_cpu_seconds, 0.6);
    }

    #[test]
    fn the_slo_is_missed_by_a_slow_p99_or_by_any_error() {
        assert!(report(&[phase(&[1; 100], 0)]).passed());
        let slow = report(&[phase(&[50; 100], 0)]);
        assert!(!slow.passed());
        assert!(slow.summary().contains("MISSED"));
        let failing = report(&[phase(&[1; 100], 2)]);
        assert!(!failing.passed());
        assert_eq!(failing.errors["status_503"], 2);
    }

    #[test]
    fn a_generator_that_starts_sends_late_on_free_connections_says_so() {
        let mut all = Sample::default();
        all.counters.requests_sent = 100;
        all.counters.missed.generator_late = 5;
        let verdict = judge_generator(
            &all,
            Duration::from_secs(1),
            Duration::from_secs(10),
            2,
            true,
        );
        assert!(verdict.bottleneck);
        assert!(verdict.reasons[0].contains("5 of 100"));
        all.counters.missed.generator_late = 0;
        let verdict = judge_generator(
            &all,
            Duration::from_secs(19),
            Duration::from_secs(10),
            2,
            true,
        );
        assert!(verdict.bottleneck, "1.9 cores of 2 threads");
        let verdict = judge_generator(
            &all,
            Duration::from_secs(5),
            Duration::from_secs(10),
            2,
            true,
        );
        assert!(!verdict.bottleneck);
    }
}
