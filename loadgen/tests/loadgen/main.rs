//! Integration tests: the `loadgen` binary against a real PlayPulse server, started in process on
//! a free port with its own data directory.

mod cassandra_run;
mod helpers;
mod http_run;
