//! The side path that feeds the graph: durable playback events and account facts, coalesced
//! per (user, title) and per identity link, written in batches every `flush_interval`. It never
//! delays its callers: [`GraphFeeder::record_playback`] only filters and queues (a full queue
//! drops the batch, counted). While the graph is down, what is pending is kept and retried
//! with a growing backoff; it is bounded by `max_pending` entries, beyond which new ones are
//! dropped, counted. Watches merge, so keeping a (user, title) that is already pending costs
//! nothing more.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wire::{EventKind, PlaybackEvent};

use crate::{GraphStore, GraphUpdate, IdentityLink, Watch};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedOptions {
    /// How long updates coalesce before a write.
    pub flush_interval: Duration,
    /// (user, title) pairs and identity links held at most, written or not.
    pub max_pending: usize,
    /// Batches queued between the callers and the feeder's task.
    pub queue_batches: usize,
    /// The longest wait between two attempts while the graph fails.
    pub max_backoff: Duration,
}

impl Default for FeedOptions {
    fn default() -> Self {
        FeedOptions {
            flush_interval: Duration::from_millis(100),
            max_pending: 200_000,
            queue_batches: 1_024,
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Told which users and titles a write changed, after the graph holds it. Runs on the
/// feeder's task: it must only note what to do and return.
pub trait FlushListener: Send + Sync + 'static {
    fn flushed(&self, update: &GraphUpdate);
}

/// What the feeder did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedStats {
    /// Watches and identity links the graph holds, as written (after coalescing).
    pub written: u64,
    /// Writes that failed (and were retried).
    pub failed_writes: u64,
    /// Batches dropped because the queue was full.
    pub dropped_batches: u64,
    /// Updates dropped because `max_pending` were already held.
    pub dropped_updates: u64,
    /// Updates held now, not yet written.
    pub pending: u64,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    failed_writes: AtomicU64,
    dropped_batches: AtomicU64,
    dropped_updates: AtomicU64,
    pending: AtomicU64,
}

enum Facts {
    Watches(Vec<Watch>),
    Identities(Vec<IdentityLink>),
}

#[derive(Clone)]
pub struct GraphFeeder {
    queue: mpsc::Sender<Facts>,
    counters: Arc<Counters>,
    after_flush: Arc<OnceLock<Arc<dyn FlushListener>>>,
}

/// The feeder's task.
pub struct FeederTask {
    task: JoinHandle<()>,
}

impl FeederTask {
    /// Waits for the last write (after every feeder clone is dropped).
    pub async fn finished(self) {
        let _ = self.task.await;
    }
}

/// What a playback event says of a watch, if anything: starts count plays, completes mark it
/// finished, pauses and stops carry the position reached. Heartbeats and quality events (most
/// of the traffic) say nothing the graph keeps.
pub fn watch_of(event: &PlaybackEvent) -> Option<Watch> {
    let (plays, completed) = match event.kind {
        EventKind::Start => (1, false),
        EventKind::Complete => (0, true),
        EventKind::Pause | EventKind::Stop => (0, false),
        _ => return None,
    };
    Some(Watch {
        user: event.user_id,
        title: event.content_id,
        plays,
        watch_ms: event.position_ms,
        completed,
        last_ts: event.ts,
    })
}

impl GraphFeeder {
    /// Starts the feeder's task on `graph`; it ends once every clone is dropped, after a last
    /// write of what it holds (a few attempts, then dropped, counted).
    pub fn start(graph: Arc<dyn GraphStore>, options: FeedOptions) -> (GraphFeeder, FeederTask) {
        let (queue, facts) = mpsc::channel(options.queue_batches.max(1));
        let counters = Arc::new(Counters::default());
        let after_flush: Arc<OnceLock<Arc<dyn FlushListener>>> = Arc::new(OnceLock::new());
        let task = tokio::spawn(run(
            facts,
            graph,
            options,
            counters.clone(),
            after_flush.clone(),
        ));
        (
            GraphFeeder {
                queue,
                counters,
                after_flush,
            },
            FeederTask { task },
        )
    }

    /// Queues what `events` say of watches (see [`watch_of`]): never waits.
    pub fn record_playback(&self, events: &[PlaybackEvent]) {
        let watches: Vec<Watch> = events.iter().filter_map(watch_of).collect();
        if !watches.is_empty() {
            self.send(Facts::Watches(watches));
        }
    }

    /// Queues account facts (payment methods, devices): never waits.
    pub fn record_identities(&self, links: Vec<IdentityLink>) {
        if !links.is_empty() {
            self.send(Facts::Identities(links));
        }
    }

    fn send(&self, facts: Facts) {
        send(&self.queue, &self.counters, facts);
    }

    /// A handle that feeds account facts without keeping the feeder alive: for parts that
    /// outlive the side paths (the outbox relay), so that the feeder still ends with them.
    pub fn downgrade(&self) -> WeakGraphFeeder {
        WeakGraphFeeder {
            queue: self.queue.downgrade(),
            counters: self.counters.clone(),
        }
    }

    /// Hands every write's users and titles to `listener`. Set once, before facts flow; false
    /// if already set.
    pub fn notify_after_flush(&self, listener: Arc<dyn FlushListener>) -> bool {
        self.after_flush.set(listener).is_ok()
    }

    pub fn stats(&self) -> FeedStats {
        let counters = &self.counters;
        FeedStats {
            written: counters.written.load(Ordering::Relaxed),
            failed_writes: counters.failed_writes.load(Ordering::Relaxed),
            dropped_batches: counters.dropped_batches.load(Ordering::Relaxed),
            dropped_updates: counters.dropped_updates.load(Ordering::Relaxed),
            pending: counters.pending.load(Ordering::Relaxed),
        }
    }
}

fn send(queue: &mpsc::Sender<Facts>, counters: &Counters, facts: Facts) {
    if queue.try_send(facts).is_err() {
        counters.dropped_batches.fetch_add(1, Ordering::Relaxed);
    }
}

/// See [`GraphFeeder::downgrade`].
#[derive(Clone)]
pub struct WeakGraphFeeder {
    queue: mpsc::WeakSender<Facts>,
    counters: Arc<Counters>,
}

impl WeakGraphFeeder {
    /// [`GraphFeeder::record_identities`]; once the feeder has ended, nothing.
    pub fn record_identities(&self, links: Vec<IdentityLink>) {
        if let (Some(queue), false) = (self.queue.upgrade(), links.is_empty()) {
            send(&queue, &self.counters, Facts::Identities(links));
        }
    }
}

/// Updates held, coalesced.
#[derive(Default)]
struct Pending {
    watches: HashMap<(u64, u64), Watch>,
    identities: BTreeSet<IdentityLink>,
}

impl Pending {
    fn len(&self) -> usize {
        self.watches.len() + self.identities.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Merges `facts`; what would grow past `max` is dropped and returned as a count.
    fn merge(&mut self, facts: Facts, max: usize) -> u64 {
        let mut dropped = 0;
        match facts {
            Facts::Watches(watches) => {
                for watch in watches {
                    let full = self.len() >= max;
                    match self.watches.get_mut(&(watch.user, watch.title)) {
                        Some(held) => held.merge(&watch),
                        None if full => dropped += 1,
                        None => {
                            self.watches.insert((watch.user, watch.title), watch);
                        }
                    }
                }
            }
            Facts::Identities(links) => {
                for link in links {
                    if self.len() >= max && !self.identities.contains(&link) {
                        dropped += 1;
                    } else {
                        self.identities.insert(link);
                    }
                }
            }
        }
        dropped
    }

    /// Puts back an update whose write failed, under newer facts.
    fn restore(&mut self, update: GraphUpdate, max: usize) -> u64 {
        self.merge(Facts::Watches(update.watches), max)
            + self.merge(Facts::Identities(update.identities), max)
    }

    fn take(&mut self) -> GraphUpdate {
        let mut watches: Vec<Watch> = self.watches.drain().map(|(_, watch)| watch).collect();
        watches.sort_by_key(|watch| (watch.user, watch.title));
        GraphUpdate {
            watches,
            identities: std::mem::take(&mut self.identities).into_iter().collect(),
        }
    }
}

/// Attempts at the last write, once the callers are gone.
const FINAL_ATTEMPTS: u32 = 3;

async fn run(
    mut facts: mpsc::Receiver<Facts>,
    graph: Arc<dyn GraphStore>,
    options: FeedOptions,
    counters: Arc<Counters>,
    after_flush: Arc<OnceLock<Arc<dyn FlushListener>>>,
) {
    let max = options.max_pending.max(1);
    let mut pending = Pending::default();
    let mut open = true;
    let mut backoff = options.flush_interval;
    let mut next_write = Instant::now() + options.flush_interval;
    let mut final_attempts = 0;
    let note = |pending: &Pending, dropped: u64| {
        counters
            .dropped_updates
            .fetch_add(dropped, Ordering::Relaxed);
        counters
            .pending
            .store(pending.len() as u64, Ordering::Relaxed);
    };
    loop {
        if open {
            tokio::select! {
                received = facts.recv() => match received {
                    Some(received) => {
                        let dropped = pending.merge(received, max);
                        note(&pending, dropped);
                        continue;
                    }
                    None => open = false,
                },
                _ = tokio::time::sleep_until(next_write), if !pending.is_empty() => {}
            }
        }
        if pending.is_empty() {
            if open {
                continue;
            }
            return;
        }
        let update = pending.take();
        let written = (update.watches.len() + update.identities.len()) as u64;
        let result = {
            // Facts keep arriving while the write is in flight: merge them meanwhile, so that
            // a slow or failing graph does not back the queue up into dropped batches.
            let write = graph.apply(&update);
            tokio::pin!(write);
            loop {
                tokio::select! {
                    result = &mut write => break result,
                    received = facts.recv(), if open => match received {
                        Some(received) => {
                            let dropped = pending.merge(received, max);
                            note(&pending, dropped);
                        }
                        None => open = false,
                    },
                }
            }
        };
        match result {
            Ok(()) => {
                counters.written.fetch_add(written, Ordering::Relaxed);
                backoff = options.flush_interval;
                next_write = Instant::now() + options.flush_interval;
                if let Some(listener) = after_flush.get() {
                    listener.flushed(&update);
                }
                note(&pending, 0);
            }
            Err(error) => {
                let failures = counters.failed_writes.fetch_add(1, Ordering::Relaxed) + 1;
                // The first failure, then one in a hundred: an outage must not flood the log.
                if failures == 1 || failures.is_multiple_of(100) {
                    tracing::warn!(%error, failures, held = written, "cannot write to the graph; keeping the updates and retrying");
                }
                let dropped = pending.restore(update, max);
                note(&pending, dropped);
                if !open {
                    final_attempts += 1;
                    if final_attempts >= FINAL_ATTEMPTS {
                        let lost = pending.len() as u64;
                        pending = Pending::default();
                        note(&pending, lost);
                        tracing::warn!(lost, "the graph is still failing at shutdown; dropping what it was not given");
                        return;
                    }
                }
                backoff = (backoff * 2).min(options.max_backoff.max(options.flush_interval));
                next_write = Instant::now() + backoff;
                if !open {
                    tokio::time::sleep_until(next_write).await;
                }
            }
        }
    }
}
