//! PlayPulse analytics: quality of experience per minute, trending titles and live sessions.
//!
//! - [`measures`]: what a rollup cell keeps of the events (exact counts and sums, a
//!   [`sketch::Sketch`] per distribution, a [`distinct::Distinct`] for unique viewers) and the
//!   QoE metrics derived from it (definitions: `src/qoe.md`).
//! - [`rollup`]: cells keyed by minute and dimensions, and their groupings.
//! - [`store`]: the rollup store port, on SQLite (embedded) and Cassandra, one contract.

pub mod distinct;
pub mod measures;
pub mod rollup;
pub mod sketch;
pub mod store;
