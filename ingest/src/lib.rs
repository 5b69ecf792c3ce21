//! PlayPulse ingest. The hot path reads top to bottom:
//! [`http`] (request) -> [`codec`] (decompress, parse, validate) -> [`pipeline`] (admission,
//! batching, writes) -> [`sink`] (durable) -> acknowledgement -> [`sidepath`] (cache
//! invalidation, never on the request's path).

pub mod app;
/// The cache port (its own crate, shared with the CQRS platform).
pub use cache;
pub mod codec;
pub mod config;
pub mod http;
pub mod pipeline;
pub mod sidepath;
pub mod sink;
pub mod telemetry;

pub use app::Application;

/// The server clock, epoch ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
