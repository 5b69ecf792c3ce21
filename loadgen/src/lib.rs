//! PlayPulse `loadgen`: a realistic audience posting playback events to `ingest`, measured
//! honestly (open loop, latency from the intended send time, HdrHistogram), a no-loss verifier,
//! and a capacity planner.
//!
//! The run reads top to bottom as [`workload`] (who sends what) -> [`schedule`] (when) ->
//! [`http`] (how) -> [`stats`] (what it took) -> [`report`]; [`verify`] and [`plan`] work on what
//! a run leaves behind.

pub mod workload;
