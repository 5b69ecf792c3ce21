//! Integration tests of the ingest service: the application on a free port, over real HTTP, on
//! the embedded store; the sink contract suite; the crash test against the real binary.

mod cassandra_sink;
mod cluster;
mod crash;
mod events;
mod health;
mod helpers;
mod history;
mod platform;
mod redis_invalidation;
mod shutdown;
mod sink_contract;
