//! The hot path after parsing: admission -> routing to a shard -> batching -> sink write ->
//! acknowledgement. See `pipeline.md` beside this file for queue sizes and what an ack means.

mod admission;
mod batcher;

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wire::PlaybackEvent;

pub use admission::{Admission, AdmissionPermit};
use batcher::{Batcher, BatcherLimits, Work};

use crate::config::PipelineSettings;
use crate::sidepath::DurableListener;
use crate::sink::{EventSink, SinkError};
use crate::telemetry::Metrics;

/// Why events were not made durable.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The admission budget stayed full past the request's deadline.
    #[error("overloaded: no room for the request before its deadline")]
    Overloaded,
    /// The sink did not confirm the write before the request's deadline.
    #[error("timed out waiting for the store to confirm the write")]
    TimedOut,
    /// The sink refused or failed the write.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The pipeline is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// The entry to the hot path; cheap to clone. Dropping every clone lets the batchers drain and
/// stop (see [`PipelineWorkers::drain`]).
#[derive(Clone)]
pub struct Pipeline {
    shards: Arc<[flume::Sender<Work>]>,
    admission: Admission,
    metrics: Arc<Metrics>,
}

/// The batcher tasks, awaited at shutdown.
pub struct PipelineWorkers {
    batchers: Vec<JoinHandle<()>>,
}

impl PipelineWorkers {
    /// Waits until every batcher has written what it holds (after every [`Pipeline`] is dropped).
    pub async fn drain(self) {
        for batcher in self.batchers {
            let _ = batcher.await;
        }
    }
}

/// Spreads users over shards; a user's events always go to the same shard.
fn shard_of(user_id: u64, shards: usize) -> usize {
    ((user_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % shards as u64) as usize
}

impl Pipeline {
    /// Starts one batcher per shard; `listeners` hear of every batch once it is durable.
    pub fn start(
        settings: &PipelineSettings,
        sink: Arc<dyn EventSink>,
        listeners: Vec<Arc<dyn DurableListener>>,
        metrics: Arc<Metrics>,
    ) -> (Pipeline, PipelineWorkers) {
        let listeners: Arc<[Arc<dyn DurableListener>]> = listeners.into();
        let limits = BatcherLimits {
            max_events: settings.batch_max_events.get(),
            max_bytes: settings.batch_max_bytes.get(),
            linger: settings.linger,
            max_in_flight: settings.max_in_flight_batches.get(),
        };
        let mut senders = Vec::new();
        let mut batchers = Vec::new();
        for shard in 0..settings.shards.get() {
            // Unbounded in count, bounded in bytes: only admitted requests reach these queues,
            // so the admission budget is what bounds them (the full-queue policy is "shed at
            // admission", never block after it).
            let (sender, receiver) = flume::unbounded();
            senders.push(sender);
            let batcher = Batcher::new(
                shard,
                receiver,
                sink.clone(),
                listeners.clone(),
                limits,
                metrics.clone(),
            );
            batchers.push(tokio::spawn(batcher.run()));
        }
        let pipeline = Pipeline {
            shards: senders.into(),
            admission: Admission::new(settings.max_in_flight_bytes.get(), metrics.clone()),
            metrics,
        };
        (pipeline, PipelineWorkers { batchers })
    }

    /// Reserves room for a request of `bytes` bytes, waiting at most until `deadline`.
    pub async fn admit(
        &self,
        bytes: usize,
        deadline: Instant,
    ) -> Result<AdmissionPermit, PipelineError> {
        self.admission.acquire(bytes, deadline).await
    }

    /// Room that grows as a request body is read ([`AdmissionPermit::grow_to`]).
    pub fn empty_permit(&self) -> AdmissionPermit {
        self.admission.empty()
    }

    /// Routes events to their shards and waits until all are durable (or the deadline passes).
    /// Call with an [`AdmissionPermit`] held.
    pub async fn write(
        &self,
        events: Vec<PlaybackEvent>,
        deadline: Instant,
    ) -> Result<(), PipelineError> {
        if events.is_empty() {
            return Ok(());
        }
        let shard_count = self.shards.len();
        let count = events.len();
        let mut parts: Vec<Vec<PlaybackEvent>> = (0..shard_count).map(|_| Vec::new()).collect();
        if shard_count == 1 {
            parts[0] = events;
        } else {
            let per_shard = count / shard_count + 1;
            for part in &mut parts {
                part.reserve(per_shard);
            }
            for event in events {
                parts[shard_of(event.user_id, shard_count)].push(event);
            }
        }
        self.metrics.queue_depth_add(count as i64);
        let mut acks = Vec::with_capacity(shard_count);
        for (shard, events) in parts
            .into_iter()
            .enumerate()
            .filter(|(_, part)| !part.is_empty())
        {
            let (done, ack) = oneshot::channel();
            if self.shards[shard].send(Work { events, done }).is_err() {
                return Err(PipelineError::ShuttingDown);
            }
            acks.push(ack);
        }
        for ack in acks {
            match tokio::time::timeout_at(deadline, ack).await {
                Ok(Ok(result)) => result?,
                Ok(Err(_)) => return Err(PipelineError::ShuttingDown),
                Err(_) => return Err(PipelineError::TimedOut),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_spread_over_all_shards() {
        let mut counts = [0usize; 4];
        for user in 0..10_000u64 {
            counts[shard_of(user, 4)] += 1;
        }
        assert!(
            counts.iter().all(|count| (2_000..3_000).contains(count)),
            "{counts:?}"
        );
    }
}
