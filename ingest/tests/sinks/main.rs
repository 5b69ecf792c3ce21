//! The event sink contract suite, on the embedded store and on a real Cassandra, and the
//! Cassandra sink's own tests.

mod cassandra;
mod contract;
