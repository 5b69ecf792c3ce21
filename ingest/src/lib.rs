//! PlayPulse ingest, a library: the hot path reads top to bottom:
//! [`http`] (request) -> [`codec`] (decompress, parse, validate) -> [`pipeline`] (admission,
//! batching, writes) -> [`sink`] (durable) -> acknowledgement -> [`sidepath`] (listeners of
//! durable batches, never on the request's path). The service that wires it to the platform and
//! serves it is the `playpulse` crate.

pub mod codec;
pub mod config;
pub mod http;
pub mod pipeline;
pub mod sidepath;
pub mod sink;
pub mod telemetry;
pub mod tokens;

/// The server clock, epoch ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
