//! The platform's contract suite: every test runs against the embedded default (SQLite, local
//! read model, in-process cache) and against the real engines (PostgreSQL, Cassandra, Redis;
//! the local read model stands in for Cassandra when `PLAYPULSE_TEST_CASSANDRA` is unset).

mod helpers;

mod catalog;
mod commands;
mod http;
mod keys;
mod outbox;
mod recommendations;
mod reports;
mod schema;
