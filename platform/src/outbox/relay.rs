use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::domain::now_ms;
use crate::projectors::{ProfileProjector, ProjectionError};
use crate::store::{CommandStore, StoreError};

/// Why one relay round failed (the events stay unpublished and are retried).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// How long an idle relay waits before looking again (commits wake it sooner).
    pub poll_interval: Duration,
    /// Events claimed per round.
    pub batch_size: i64,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            poll_interval: Duration::from_millis(200),
            batch_size: 256,
        }
    }
}

/// Publishes committed outbox events to the projector, at least once, in order per user; the
/// projections are idempotent, so the effect is exactly once.
pub struct Relay {
    store: Arc<dyn CommandStore>,
    projector: ProfileProjector,
    options: RelayOptions,
    wake: Arc<Notify>,
    published: AtomicU64,
    applied: AtomicU64,
    /// Commit-to-projected lag of recent events, ms (the last 100,000, for measurements).
    lags: Mutex<Vec<u32>>,
}

const MAX_LAGS: usize = 100_000;

impl Relay {
    pub fn new(
        store: Arc<dyn CommandStore>,
        projector: ProfileProjector,
        options: RelayOptions,
        wake: Arc<Notify>,
    ) -> Relay {
        Relay {
            store,
            projector,
            options,
            wake,
            published: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            lags: Mutex::new(Vec::new()),
        }
    }

    /// One round: claim, project, mark. Returns how many events were published.
    pub async fn run_once(&self) -> Result<usize, RelayError> {
        let batch = self.store.claim_outbox(self.options.batch_size).await?;
        let count = self.publish(batch.events()).await?;
        batch.mark_published(now_ms()).await?;
        Ok(count)
    }

    /// Fault injection: a round that crashes between publish and mark. The claimed events go
    /// back to the outbox (the batch is dropped unmarked) after their effects were applied.
    pub async fn run_once_then_crash_before_mark(&self) -> Result<usize, RelayError> {
        let batch = self.store.claim_outbox(self.options.batch_size).await?;
        let count = self.publish(batch.events()).await?;
        drop(batch);
        Ok(count)
    }

    async fn publish(&self, events: &[crate::outbox::OutboxEvent]) -> Result<usize, RelayError> {
        for event in events {
            if self.projector.project(event).await? {
                self.applied.fetch_add(1, Ordering::Relaxed);
            }
            let lag = (now_ms() - event.created_at).clamp(0, i64::from(u32::MAX)) as u32;
            let mut lags = self
                .lags
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if lags.len() < MAX_LAGS {
                lags.push(lag);
            }
        }
        self.published
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(events.len())
    }

    /// Events this relay published (a re-publish after a crash counts again).
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Events whose projection changed the read model.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// Commit-to-projected lags recorded so far, ms, sorted (then cleared).
    pub fn take_lags(&self) -> Vec<u32> {
        let mut lags = std::mem::take(
            &mut *self
                .lags
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        lags.sort_unstable();
        lags
    }

    /// Runs rounds until `stop` says so (or the handle is dropped): straight on while there is
    /// work, otherwise waiting for a commit's wake-up or the poll interval; failures back off up
    /// to 5 s.
    pub fn spawn(self: Arc<Self>) -> RelayHandle {
        let (stop, mut stopped) = watch::channel(false);
        let relay = self.clone();
        let task = tokio::spawn(async move {
            let mut backoff = relay.options.poll_interval;
            loop {
                if *stopped.borrow() {
                    break;
                }
                let wait = match relay.run_once().await {
                    Ok(count) if count > 0 => {
                        backoff = relay.options.poll_interval;
                        continue;
                    }
                    Ok(_) => relay.options.poll_interval,
                    Err(error) => {
                        tracing::warn!(%error, ?backoff, "outbox relay round failed; retrying");
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        backoff
                    }
                };
                tokio::select! {
                    // A dropped handle stops the relay too: `changed` would otherwise be ready at
                    // once, every time, and the loop would spin.
                    changed = stopped.changed() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                    () = relay.wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        });
        RelayHandle { stop, task }
    }
}

/// A running relay.
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RelayHandle {
    /// Stops after the round in progress.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
