//! The Cassandra sink: playback events in the `viewing_history` table of
//! `event-cql/schema.cql`, written with the `scylla` driver. See `cassandra.md` beside this file
//! for the write modes, what an acknowledgement means, and how history is read. The schema,
//! statements, row bindings and batch grouping are the `event_cql` crate's, shared with
//! `loadgen cassandra`.
//!
//! - `service.rs`: the I/O: bounded rows in flight, retries with backoff.
//! - `sink.rs`: the rows layout: batches -> requests per write mode; history; readiness.
//! - `chunks.rs`: the packed layout's store (log, chunks, checkpoints), on the rows sink's
//!   session and service.
//! - `error.rs`: how a Cassandra error reaches clients (503 or 500).

mod chunks;
mod error;
mod service;
mod sink;

pub use chunks::CassandraChunks;
pub use service::{RequestStats, RetryPolicy};
pub use sink::CassandraSink;
