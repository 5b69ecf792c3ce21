//! The event sink contract suite, on both layouts (rows, chunks) of both stores (the embedded
//! store, a real Cassandra) and on a real PostgreSQL; the Cassandra and PostgreSQL sinks' own
//! tests; the packed layout's own cases.

mod cassandra;
mod contract;
mod packed;
mod postgres;
