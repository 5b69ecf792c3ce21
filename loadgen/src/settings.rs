//! The settings of a run (against the service over HTTP, or Cassandra directly), validated, as
//! the report records them.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cassandra::CassandraTargetSettings;
use crate::http::{BodyFormat, Compression};
use crate::workload::{duration_ms, WorkloadConfig};

/// Most events in one request: the server's default `max_events_per_request`.
pub const MAX_BATCH: usize = 10_000;
/// A ramp without `--ramp-steps` stops at its first failing step, or after this many.
pub const MAX_RAMP_STEPS: u32 = 64;

/// Why the settings cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The batch is empty or larger than a request may be.
    #[error("--batch must be between 1 and {MAX_BATCH} (the server's limit per request), got {0}")]
    Batch(usize),
    /// No connections.
    #[error("--connections must be at least 1")]
    Connections,
    /// Fewer viewers than connections would leave a connection without events.
    #[error("--viewers ({viewers}) must be at least --connections ({connections})")]
    FewerViewersThanConnections { viewers: u64, connections: usize },
    /// A rate that is not a positive number.
    #[error("{flag} must be a positive number of events per second, got {value}")]
    Rate { flag: &'static str, value: f64 },
    /// A zero duration.
    #[error("{0} must be longer than zero")]
    ZeroDuration(&'static str),
    /// An SLO that is not a positive number.
    #[error("--slo-p99-ms must be a positive number, got {0}")]
    Slo(f64),
    /// A ramp needs an SLO to know where it saturates.
    #[error("--ramp needs --slo-p99-ms: the saturation point is the highest rate that meets it")]
    RampWithoutSlo,
    /// Neither or both of --rate and --max.
    #[error("give exactly one of --rate EVENTS_PER_S or --max")]
    RateOrMax,
    /// A Cassandra target setting that cannot be used; names its flag.
    #[error("{flag} {message}")]
    Cassandra { flag: &'static str, message: String },
}

/// How hard to push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum LoadShape {
    /// Open loop at a fixed rate.
    Rate { events_per_sec: f64 },
    /// Closed loop: each connection sends again as soon as it is answered.
    Max,
    /// Open loop, rate stepped up from `start` by `step` every `step_duration`.
    Ramp {
        start_events_per_sec: f64,
        step_events_per_sec: f64,
        /// None: until the first step that misses the SLO (at most [`MAX_RAMP_STEPS`]).
        steps: Option<u32>,
        #[serde(rename = "step_duration_ms", with = "duration_ms")]
        step_duration: Duration,
    },
}

impl LoadShape {
    /// The rate of step `index` of a ramp (the one rate otherwise; None with `--max`).
    pub fn rate_of_step(&self, index: u32) -> Option<f64> {
        match self {
            LoadShape::Rate { events_per_sec } => Some(*events_per_sec),
            LoadShape::Max => None,
            LoadShape::Ramp {
                start_events_per_sec,
                step_events_per_sec,
                ..
            } => Some(start_events_per_sec + f64::from(index) * step_events_per_sec),
        }
    }

    /// The most steps the run may take.
    pub fn max_steps(&self) -> u32 {
        match self {
            LoadShape::Ramp { steps, .. } => steps.unwrap_or(MAX_RAMP_STEPS),
            _ => 1,
        }
    }

    pub fn is_open_loop(&self) -> bool {
        !matches!(self, LoadShape::Max)
    }
}

/// Where the load goes.
/// An API key, sent as `Authorization: Bearer`; its Debug does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "snake_case")]
pub enum TargetSettings {
    /// `POST /v1/events` of a PlayPulse server.
    Http {
        /// Base URL of the server, e.g. `http://127.0.0.1:8080`.
        url: String,
        format: BodyFormat,
        compression: Compression,
        /// The server's API key, when it has auth on; never written to a report.
        #[serde(skip, default)]
        api_key: Option<ApiKey>,
    },
    /// Cassandra's `viewing_history` table, written directly (a baseline).
    Cassandra(CassandraTargetSettings),
}

impl TargetSettings {
    /// `http` or `cassandra`: the report's `target`.
    pub fn name(&self) -> &'static str {
        match self {
            TargetSettings::Http { .. } => "http",
            TargetSettings::Cassandra(_) => "cassandra",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    #[serde(flatten)]
    pub target: TargetSettings,
    pub load: LoadShape,
    /// Length of a `--rate` or `--max` run (a ramp uses its step duration).
    #[serde(rename = "duration_ms", with = "duration_ms")]
    pub duration: Duration,
    pub batch: usize,
    pub connections: usize,
    /// Worker threads of the generator's runtime.
    pub threads: usize,
    #[serde(rename = "timeout_ms", with = "duration_ms")]
    pub timeout: Duration,
    /// How late a send may start and still count as on time.
    #[serde(rename = "miss_slack_ms", with = "duration_ms")]
    pub miss_slack: Duration,
    /// The audience as run (viewers resolved from the rate when not given).
    pub workload: WorkloadConfig,
    /// What the command line asked for, before the rate decided the rest.
    pub requested_viewers: Option<u64>,
    pub requested_time_compression: Option<f64>,
    pub slo_p99_ms: Option<f64>,
    pub acked_log: Option<PathBuf>,
    /// Where to write the truth: the QoE of the acknowledged events, per minute
    /// ([`crate::truth`]). Absent from reports written before it existed.
    #[serde(default)]
    pub truth: Option<PathBuf>,
}

impl RunSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return Err(SettingsError::Batch(self.batch));
        }
        if self.connections == 0 {
            return Err(SettingsError::Connections);
        }
        if let TargetSettings::Cassandra(cassandra) = &self.target {
            cassandra.validate()?;
        }
        if self.workload.viewers < self.connections as u64 {
            return Err(SettingsError::FewerViewersThanConnections {
                viewers: self.workload.viewers,
                connections: self.connections,
            });
        }
        if let Some(slo) = self.slo_p99_ms {
            if !(slo.is_finite() && slo > 0.0) {
                return Err(SettingsError::Slo(slo));
            }
        }
        let positive = |flag: &'static str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(SettingsError::Rate { flag, value })
            }
        };
        match &self.load {
            LoadShape::Rate { events_per_sec } => positive("--rate", *events_per_sec)?,
            LoadShape::Max => {}
            LoadShape::Ramp {
                start_events_per_sec,
                step_events_per_sec,
                step_duration,
                ..
            } => {
                positive("--rate", *start_events_per_sec)?;
                positive("--ramp-step", *step_events_per_sec)?;
                if step_duration.is_zero() {
                    return Err(SettingsError::ZeroDuration("--step-duration"));
                }
                if self.slo_p99_ms.is_none() {
                    return Err(SettingsError::RampWithoutSlo);
                }
            }
        }
        if self.duration.is_zero() {
            return Err(SettingsError::ZeroDuration("--duration"));
        }
        Ok(())
    }

    /// How long one phase lasts.
    pub fn phase_duration(&self) -> Duration {
        match &self.load {
            LoadShape::Ramp { step_duration, .. } => *step_duration,
            _ => self.duration,
        }
    }

    /// The most events the run may send, to lay out its simulated time.
    pub fn planned_events(&self, assumed_max_rate: f64) -> f64 {
        let seconds = self.phase_duration().as_secs_f64();
        (0..self.load.max_steps())
            .map(|step| self.load.rate_of_step(step).unwrap_or(assumed_max_rate) * seconds)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn example() -> RunSettings {
        RunSettings {
            target: TargetSettings::Http {
                url: "http://127.0.0.1:8080".into(),
                format: BodyFormat::Json,
                compression: Compression::None,
                api_key: None,
            },
            load: LoadShape::Rate {
                events_per_sec: 10_000.0,
            },
            duration: Duration::from_secs(10),
            batch: 1_000,
            connections: 8,
            threads: 2,
            timeout: Duration::from_secs(10),
            miss_slack: Duration::from_millis(5),
            workload: WorkloadConfig {
                seed: 1,
                viewers: 1_000,
                heartbeat: Duration::from_secs(10),
                catalog_titles: 10_000,
                zipf_exponent: 1.0,
                taste: crate::workload::Taste::default(),
            },
            requested_viewers: None,
            requested_time_compression: None,
            slo_p99_ms: None,
            acked_log: None,
            truth: None,
        }
    }

    #[test]
    fn sensible_settings_pass() {
        assert_eq!(example().validate(), Ok(()));
    }

    #[test]
    fn bad_settings_name_their_flag() {
        let mut settings = example();
        settings.batch = 10_001;
        assert!(settings
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--batch"));
        let mut settings = example();
        settings.workload.viewers = 3;
        assert!(settings
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--viewers"));
        let mut settings = example();
        settings.load = LoadShape::Ramp {
            start_events_per_sec: 1_000.0,
            step_events_per_sec: 1_000.0,
            steps: None,
            step_duration: Duration::from_secs(5),
        };
        assert_eq!(settings.validate(), Err(SettingsError::RampWithoutSlo));
    }

    #[test]
    fn a_ramp_steps_its_rate_up_and_plans_for_every_step() {
        let mut settings = example();
        settings.slo_p99_ms = Some(50.0);
        settings.load = LoadShape::Ramp {
            start_events_per_sec: 1_000.0,
            step_events_per_sec: 500.0,
            steps: Some(3),
            step_duration: Duration::from_secs(2),
        };
        assert_eq!(settings.load.rate_of_step(2), Some(2_000.0));
        // (1,000 + 1,500 + 2,000) events/s for 2 s each.
        assert_eq!(settings.planned_events(0.0), 9_000.0);
    }
}
