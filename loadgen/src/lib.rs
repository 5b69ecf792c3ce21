//! PlayPulse `loadgen`: a realistic audience posting playback events to `ingest`, measured
//! honestly (open loop, latency from the intended send time, HdrHistogram), a no-loss verifier,
//! and a capacity planner.
//!
//! A run reads top to bottom as [`workload`] (who sends what) -> [`schedule`] (when) ->
//! [`target`] (where: [`http`] to the service, or [`cassandra`] directly, as a baseline) ->
//! [`run`] (workers and phases) -> [`stats`] (what it took) -> [`report`]; [`verify`] and
//! [`plan`] work on what a run leaves behind; [`truth`] is the QoE a run's acknowledged events
//! add up to, per minute.

pub mod acked;
pub mod cassandra;
pub mod cpu;
pub mod http;
pub mod plan;
pub mod ramp;
pub mod report;
pub mod run;
pub mod schedule;
pub mod settings;
pub mod stats;
pub mod target;
pub mod truth;
pub mod verify;
pub mod workload;
