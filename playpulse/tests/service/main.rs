//! Integration tests of the service as shipped: the application on a free port, over real HTTP
//! (on the embedded default, and on the real engines), the platform wired beside ingest,
//! shutdown, and the crash test against the real binary.

mod access;
mod analytics;
mod cassandra_outage;
mod cluster;
mod crash;
mod events;
mod health;
mod helpers;
mod history;
mod hostile;
mod ops;
mod platform;
mod postgres_only;
mod redis_invalidation;
mod shutdown;
