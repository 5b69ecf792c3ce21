//! One batcher per shard: collects requests' events into batches that close on events, bytes or
//! linger (from the first event), writes them to the sink with a bounded number in flight, and
//! answers every request that contributed once its events are durable.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use wire::PlaybackEvent;

use crate::sidepath::DurableListener;
use crate::sink::{EventSink, SinkError};
use crate::telemetry::Metrics;

/// A request's events for one shard, and where to send the outcome.
pub struct Work {
    pub events: Vec<PlaybackEvent>,
    pub done: oneshot::Sender<Result<(), SinkError>>,
}

#[derive(Debug, Clone, Copy)]
pub struct BatcherLimits {
    pub max_events: usize,
    pub max_bytes: usize,
    pub linger: Duration,
    pub max_in_flight: usize,
}

struct Batch {
    events: Vec<PlaybackEvent>,
    bytes: usize,
    waiters: Vec<oneshot::Sender<Result<(), SinkError>>>,
}

impl Batch {
    fn add(&mut self, work: Work) {
        self.bytes += work
            .events
            .iter()
            .map(PlaybackEvent::approx_size)
            .sum::<usize>();
        if self.events.is_empty() {
            self.events = work.events;
        } else {
            self.events.extend(work.events);
        }
        self.waiters.push(work.done);
    }

    fn is_full(&self, limits: &BatcherLimits) -> bool {
        self.events.len() >= limits.max_events || self.bytes >= limits.max_bytes
    }
}

pub struct Batcher {
    shard: usize,
    queue: flume::Receiver<Work>,
    sink: Arc<dyn EventSink>,
    listeners: Arc<[Arc<dyn DurableListener>]>,
    limits: BatcherLimits,
    metrics: Arc<Metrics>,
}

impl Batcher {
    pub fn new(
        shard: usize,
        queue: flume::Receiver<Work>,
        sink: Arc<dyn EventSink>,
        listeners: Arc<[Arc<dyn DurableListener>]>,
        limits: BatcherLimits,
        metrics: Arc<Metrics>,
    ) -> Batcher {
        Batcher {
            shard,
            queue,
            sink,
            listeners,
            limits,
            metrics,
        }
    }

    /// Runs until every sender is gone and the queue is empty, then waits for writes in flight.
    pub async fn run(self) {
        let in_flight = Arc::new(Semaphore::new(self.limits.max_in_flight));
        let mut writes = JoinSet::new();
        while let Some(batch) = self.next_batch().await {
            let permit = in_flight
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let (sink, metrics, shard) = (self.sink.clone(), self.metrics.clone(), self.shard);
            let listeners = self.listeners.clone();
            writes.spawn(async move {
                write_batch(shard, batch, sink.as_ref(), &listeners, &metrics).await;
                drop(permit);
            });
            while writes.try_join_next().is_some() {}
        }
        while writes.join_next().await.is_some() {}
    }

    /// The next batch, or `None` when the pipeline is closed and drained.
    async fn next_batch(&self) -> Option<Batch> {
        let first = self.queue.recv_async().await.ok()?;
        let mut batch = Batch {
            events: Vec::new(),
            bytes: 0,
            waiters: Vec::new(),
        };
        batch.add(first);
        let close_at = Instant::now() + self.limits.linger;
        while !batch.is_full(&self.limits) {
            match self.queue.try_recv() {
                Ok(work) => {
                    batch.add(work);
                    continue;
                }
                Err(flume::TryRecvError::Disconnected) => break,
                Err(flume::TryRecvError::Empty) => {}
            }
            match tokio::time::timeout_at(close_at, self.queue.recv_async()).await {
                Ok(Ok(work)) => batch.add(work),
                Ok(Err(_)) | Err(_) => break,
            }
        }
        Some(batch)
    }
}

async fn write_batch(
    shard: usize,
    batch: Batch,
    sink: &dyn EventSink,
    listeners: &[Arc<dyn DurableListener>],
    metrics: &Metrics,
) {
    let count = batch.events.len();
    let events = Arc::new(batch.events);
    let started = Instant::now();
    let result = sink.write(shard, events.clone()).await;
    match &result {
        Ok(()) => {
            metrics.batch_written(count, started.elapsed());
            for listener in listeners {
                listener.on_durable(&events);
            }
        }
        Err(error) => {
            metrics.batch_failed(started.elapsed());
            tracing::warn!(shard, events = count, %error, "batch write failed");
        }
    }
    metrics.queue_depth_add(-(count as i64));
    for waiter in batch.waiters {
        // A request that gave up (deadline passed) has dropped its receiver; nothing to tell.
        let _ = waiter.send(result.clone());
    }
}
