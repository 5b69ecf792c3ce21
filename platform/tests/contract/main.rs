//! The platform's contract suite: every test runs against the embedded default (SQLite, local
//! read model, in-process cache) and against the real engines (PostgreSQL, Cassandra, Redis).

mod helpers;

mod commands;
mod http;
mod outbox;
mod recommendations;
mod reports;
