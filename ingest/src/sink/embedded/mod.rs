//! The embedded store: a local, crash-safe time-series store with the partitions and keys of
//! the Cassandra table, for running PlayPulse as one process with no servers.
//!
//! See `store.md` beside this file for the layout on disk and what an acknowledgement means.

mod chunks;
mod segment;
mod sink;
mod store;

pub use chunks::EmbeddedChunks;
pub use sink::{open_packed, EmbeddedSink};
pub use store::{log_position, EventStore, StoreOptions, StoreStats};
