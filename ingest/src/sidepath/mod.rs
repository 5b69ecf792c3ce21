//! Side paths: work that follows a durable write and never slows it (cache invalidation now;
//! later the graph and the content rollups).

pub mod invalidation;

use wire::PlaybackEvent;

/// Told about every batch once it is durable. Runs on the batcher's task: it must only record
/// what to do (a set insert, a channel send) and return, never wait on I/O.
pub trait DurableListener: Send + Sync + 'static {
    fn on_durable(&self, events: &[PlaybackEvent]);
}
