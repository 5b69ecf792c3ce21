//! Stepping the rate up to find where the server saturates.

use serde::{Deserialize, Serialize};

use crate::stats::LatencySummary;

/// A step passes only if the server took (almost) all of the offered load: an open-loop run that
/// falls behind shows it in latency too, but a step that ends with sends never made must not
/// pass on the latency of the ones that were.
pub const KEEP_UP_FRACTION: f64 = 0.95;

/// Late sends on free connections beyond this share of a step's sends mean the generator, not
/// only the server, may have set that step's latency.
pub const GENERATOR_LATE_SHARE: f64 = 0.01;

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepMeasurement {
    /// The offered rate, events/s.
    pub target_events_per_sec: f64,
    pub achieved_events_per_sec: f64,
    pub latency_ms: LatencySummary,
    pub errors: u64,
    pub missed_sends: u64,
    /// Sends that started late although their connection was free.
    pub generator_late: u64,
    pub requests_sent: u64,
}

/// One step of the curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RampStep {
    /// The offered rate, events/s.
    pub target_events_per_sec: f64,
    /// Events acknowledged per second of the step.
    pub achieved_events_per_sec: f64,
    pub latency_ms: LatencySummary,
    pub errors: u64,
    pub missed_sends: u64,
    #[serde(default)]
    pub generator_late: u64,
    pub passed: bool,
    /// Why the step failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_because: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RampReport {
    pub slo_p99_ms: f64,
    pub keep_up_fraction: f64,
    pub steps: Vec<RampStep>,
    /// The highest offered rate whose step passed; None if none did.
    pub saturation_events_per_sec: Option<f64>,
}

/// Judges a step against the SLO: p99 within it, no errors, and the offered rate achieved.
pub fn judge_step(measured: StepMeasurement, slo_p99_ms: f64) -> RampStep {
    let StepMeasurement {
        target_events_per_sec,
        achieved_events_per_sec,
        latency_ms,
        errors,
        missed_sends,
        generator_late,
        requests_sent,
    } = measured;
    let mut reasons = Vec::new();
    if latency_ms.count == 0 {
        reasons.push("no request was acknowledged".to_owned());
    } else if latency_ms.p99 > slo_p99_ms {
        reasons.push(format!(
            "p99 {:.1} ms > SLO {slo_p99_ms} ms",
            latency_ms.p99
        ));
    }
    if errors > 0 {
        reasons.push(format!("{errors} errors"));
    }
    if achieved_events_per_sec < KEEP_UP_FRACTION * target_events_per_sec {
        reasons.push(format!(
            "achieved {achieved_events_per_sec:.0} events/s < {:.0}% of the offered {target_events_per_sec:.0}",
            KEEP_UP_FRACTION * 100.0
        ));
    }
    let passed = reasons.is_empty();
    if !passed && generator_late as f64 > GENERATOR_LATE_SHARE * requests_sent.max(1) as f64 {
        reasons.push(format!(
            "the generator started {generator_late} of {requests_sent} sends late on a free \
             connection, so it may share the blame"
        ));
    }
    RampStep {
        target_events_per_sec,
        achieved_events_per_sec,
        latency_ms,
        errors,
        missed_sends,
        generator_late,
        passed,
        failed_because: (!reasons.is_empty()).then(|| reasons.join("; ")),
    }
}

/// The highest offered rate that passed.
pub fn saturation_point(steps: &[RampStep]) -> Option<f64> {
    steps
        .iter()
        .filter(|step| step.passed)
        .map(|step| step.target_events_per_sec)
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(target: f64, achieved: f64, p99: f64, errors: u64) -> RampStep {
        judge_step(
            StepMeasurement {
                target_events_per_sec: target,
                achieved_events_per_sec: achieved,
                latency_ms: latency(p99),
                errors,
                missed_sends: 0,
                generator_late: 0,
                requests_sent: 100,
            },
            50.0,
        )
    }

    fn latency(p99: f64) -> LatencySummary {
        LatencySummary {
            p50: p99 / 4.0,
            p99,
            count: 100,
            ..LatencySummary::default()
        }
    }

    #[test]
    fn a_step_passes_within_the_slo_without_errors_at_the_offered_rate() {
        assert!(step(1_000.0, 990.0, 20.0, 0).passed);
    }

    #[test]
    fn a_step_fails_on_latency_errors_or_falling_behind_and_says_why() {
        let slow = step(1_000.0, 1_000.0, 80.0, 0);
        assert!(!slow.passed);
        assert!(slow.failed_because.unwrap().contains("p99 80.0 ms"));
        assert!(!step(1_000.0, 1_000.0, 10.0, 3).passed);
        let behind = step(1_000.0, 800.0, 10.0, 0);
        assert!(behind.failed_because.unwrap().contains("achieved 800"));
    }

    #[test]
    fn a_failed_step_says_when_the_generator_was_late_too() {
        let judged = judge_step(
            StepMeasurement {
                target_events_per_sec: 1_000.0,
                achieved_events_per_sec: 1_000.0,
                latency_ms: latency(80.0),
                errors: 0,
                missed_sends: 9,
                generator_late: 5,
                requests_sent: 100,
            },
            50.0,
        );
        assert!(!judged.passed);
        assert!(judged
            .failed_because
            .unwrap()
            .contains("5 of 100 sends late"));
    }

    #[test]
    fn the_saturation_point_is_the_highest_passing_rate() {
        let steps = vec![
            step(1_000.0, 1_000.0, 5.0, 0),
            step(2_000.0, 2_000.0, 9.0, 0),
            step(3_000.0, 2_500.0, 300.0, 0),
        ];
        assert_eq!(saturation_point(&steps), Some(2_000.0));
        assert_eq!(saturation_point(&steps[2..]), None);
    }
}
