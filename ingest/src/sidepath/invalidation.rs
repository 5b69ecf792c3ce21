//! Recommendation cache invalidation, the first side path: after a batch is durable, each viewer
//! with a `start` or `complete` in it gets their cache keys (`invalidation.keys`) unlinked,
//! coalesced per user over `invalidation.window`, pipelined, and retried while the cache is down.
//! Bounds, timing and guarantees: `invalidation.md` beside this file.
//!
//! Two halves: [`Invalidator`], which the batchers call (a set insert, nothing else), and one
//! background task that turns the pending set into UNLINK requests.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wire::PlaybackEvent;

use super::DurableListener;
use crate::config::InvalidationSettings;
use crate::telemetry::Metrics;
use cache::{Cache, CacheError};

/// Shards of the pending set: the batchers record into different shards most of the time, so
/// they rarely wait on each other or on the flusher's swap.
const PENDING_SHARDS: usize = 16;

/// Keys per `Cache::unlink` call. A very large pending set (a spike, or a long Redis outage) goes
/// out as several requests of this size, so no single request outlives the cache's timeout.
const KEYS_PER_REQUEST: usize = 8192;

/// How long the last flush at shutdown may take; what it cannot send is lost (see the note).
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// Users waiting for an invalidation, each with the instant its first unsent durable write
/// happened. Bounded by `max` entries, counting users taken out for a request that has not
/// been confirmed yet, so memory stays bounded while the cache is down.
struct PendingSet {
    shards: Box<[Mutex<HashMap<u64, Instant>>]>,
    /// Entries in the shards plus users taken out and not yet confirmed sent.
    entries: AtomicUsize,
    max: usize,
}

/// What recording a user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recorded {
    /// The user was not pending and now is.
    Added,
    /// The user was already pending: the coming UNLINK covers this write too.
    Coalesced,
    /// The set is full: this user's invalidation is dropped (and counted).
    Dropped,
}

impl PendingSet {
    fn new(max: usize) -> PendingSet {
        PendingSet {
            shards: (0..PENDING_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            entries: AtomicUsize::new(0),
            max,
        }
    }

    fn shard(&self, user_id: u64) -> MutexGuard<'_, HashMap<u64, Instant>> {
        // Multiplicative hashing spreads consecutive ids; the pipeline routes with the same
        // constant but takes other bits, so one batcher's users still cover every shard.
        let index = (user_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % PENDING_SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, user_id: u64, durable_at: Instant) -> Recorded {
        match self.shard(user_id).entry(user_id) {
            Entry::Occupied(_) => Recorded::Coalesced,
            Entry::Vacant(entry) => {
                // Reserve the room before inserting: the bound holds exactly with several
                // batchers recording at once.
                if self.entries.fetch_add(1, Ordering::AcqRel) >= self.max {
                    self.entries.fetch_sub(1, Ordering::AcqRel);
                    return Recorded::Dropped;
                }
                entry.insert(durable_at);
                Recorded::Added
            }
        }
    }

    /// Swaps every shard out (each lock held for a pointer swap only) and returns their users.
    /// They stay counted in `entries` until [`PendingSet::sent`] or [`PendingSet::restore`].
    fn take(&self) -> Vec<(u64, Instant)> {
        let mut taken = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            let users = std::mem::take(&mut *shard.lock().unwrap_or_else(PoisonError::into_inner));
            taken.extend(users);
        }
        taken
    }

    /// Taken users whose keys the cache confirmed unlinked.
    fn sent(&self, users: usize) {
        let before = self.entries.fetch_sub(users, Ordering::AcqRel);
        debug_assert!(before >= users, "more users sent than were pending");
    }

    /// Puts taken users back after a failed request. A user recorded again in the meantime is
    /// pending twice: the two merge into one entry with the earlier instant, so the lag still
    /// counts from the first unsent write and nothing is lost.
    fn restore(&self, users: &[(u64, Instant)]) {
        for &(user_id, durable_at) in users {
            match self.shard(user_id).entry(user_id) {
                Entry::Occupied(mut entry) => {
                    if durable_at < *entry.get() {
                        entry.insert(durable_at);
                    }
                    self.entries.fetch_sub(1, Ordering::AcqRel);
                }
                Entry::Vacant(entry) => {
                    entry.insert(durable_at);
                }
            }
        }
    }

    fn len(&self) -> usize {
        self.entries.load(Ordering::Acquire)
    }
}

/// The batchers' half: records which users need an invalidation and wakes the flusher.
///
/// The background task ends when the last `Invalidator` is dropped (the pipeline has drained):
/// it sends what is still pending one last time, within a bound, and returns.
pub struct Invalidator {
    pending: Arc<PendingSet>,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// Never sent on: its drop is what tells the flusher that no more users will come.
    _alive: mpsc::Sender<()>,
}

impl DurableListener for Invalidator {
    fn on_durable(&self, events: &[PlaybackEvent]) {
        let users = events
            .iter()
            .filter(|event| event.kind.changes_taste())
            .map(|event| event.user_id);
        self.enqueue_users(users);
    }
}

impl Invalidator {
    /// Queues users for invalidation now: for a side path that must run first (the view
    /// recorder refreshes the recommendations read model, then hands its users here).
    pub fn enqueue_users(&self, users: impl IntoIterator<Item = u64>) {
        let durable_at = Instant::now();
        let (mut added, mut dropped) = (0usize, 0usize);
        for user_id in users {
            match self.pending.record(user_id, durable_at) {
                Recorded::Added => added += 1,
                Recorded::Coalesced => {}
                Recorded::Dropped => dropped += 1,
            }
        }
        if dropped > 0 {
            self.metrics.invalidation_dropped(dropped);
        }
        if added > 0 {
            self.metrics.invalidation_pending_set(self.pending.len());
            self.wake.notify_one();
        }
    }
}

/// The background task, awaited at shutdown after the pipeline has drained.
pub struct InvalidationTask {
    join: JoinHandle<()>,
}

impl InvalidationTask {
    /// Waits for the task's last flush; it starts once every [`Invalidator`] is dropped.
    pub async fn finished(self) {
        if let Err(error) = self.join.await {
            tracing::error!(%error, "invalidation task failed");
        }
    }
}

/// Starts the side path: the listener for the pipeline, and its background task.
pub fn start(
    settings: &InvalidationSettings,
    cache: Arc<dyn Cache>,
    metrics: Arc<Metrics>,
) -> (Arc<Invalidator>, InvalidationTask) {
    let pending = Arc::new(PendingSet::new(settings.max_pending_users.get()));
    let wake = Arc::new(Notify::new());
    let (alive, recorders_gone) = mpsc::channel(1);
    let flusher = Flusher::new(pending.clone(), cache, &settings.keys, metrics.clone());
    let task = FlushLoop {
        flusher,
        wake: wake.clone(),
        recorders_gone,
        window: settings.window,
        backoff: Backoff::new(settings.retry_backoff, settings.max_backoff),
    };
    let join = tokio::spawn(task.run());
    let invalidator = Invalidator {
        pending,
        wake,
        metrics,
        _alive: alive,
    };
    (Arc::new(invalidator), InvalidationTask { join })
}

/// Why a flush stopped before sending every pending user.
#[derive(Debug, thiserror::Error)]
#[error("{users_left} users still pending: {source}")]
struct FlushError {
    /// Users put back into the pending set.
    users_left: usize,
    source: CacheError,
}

/// Turns the pending set into UNLINK requests.
struct Flusher {
    pending: Arc<PendingSet>,
    cache: Arc<dyn Cache>,
    patterns: Vec<String>,
    users_per_request: usize,
    metrics: Arc<Metrics>,
}

impl Flusher {
    fn new(
        pending: Arc<PendingSet>,
        cache: Arc<dyn Cache>,
        patterns: &[String],
        metrics: Arc<Metrics>,
    ) -> Flusher {
        let users_per_request = (KEYS_PER_REQUEST / patterns.len().max(1)).max(1);
        Flusher {
            pending,
            cache,
            patterns: patterns.to_vec(),
            users_per_request,
            metrics,
        }
    }

    /// Sends every pending user's keys, a request per `users_per_request` users; returns how
    /// many users were sent. On the first failure the users not sent go back to the pending set.
    async fn flush(&self) -> Result<usize, FlushError> {
        let users = self.pending.take();
        let mut sent = 0;
        let mut keys = Vec::with_capacity(self.users_per_request * self.patterns.len());
        for group in users.chunks(self.users_per_request) {
            keys.clear();
            for &(user_id, _) in group {
                keys.extend(
                    self.patterns
                        .iter()
                        .map(|pattern| wire::keys::expand(pattern, user_id)),
                );
            }
            if let Err(source) = self.cache.unlink(&keys).await {
                let left = &users[sent..];
                self.pending.restore(left);
                self.metrics.invalidation_failed();
                self.metrics.invalidation_pending_set(self.pending.len());
                return Err(FlushError {
                    users_left: left.len(),
                    source,
                });
            }
            let done = Instant::now();
            self.pending.sent(group.len());
            self.metrics.invalidation_sent(
                keys.len(),
                group
                    .iter()
                    .map(|&(_, durable_at)| done.saturating_duration_since(durable_at)),
            );
            sent += group.len();
        }
        self.metrics.invalidation_pending_set(self.pending.len());
        Ok(sent)
    }
}

/// Exponential backoff between failed flushes: `initial`, doubling, at most `max`.
#[derive(Debug, Clone)]
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Backoff {
        let max = max.max(initial);
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(self.max);
        delay
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }
}

struct FlushLoop {
    flusher: Flusher,
    wake: Arc<Notify>,
    /// Yields `None` once every [`Invalidator`] is dropped.
    recorders_gone: mpsc::Receiver<()>,
    window: Duration,
    backoff: Backoff,
}

impl FlushLoop {
    async fn run(mut self) {
        while self.serve_one_window().await {}
        let left = self.flusher.pending.len();
        if left > 0 {
            match tokio::time::timeout(FINAL_FLUSH_TIMEOUT, self.flusher.flush()).await {
                Ok(Ok(users)) => tracing::info!(users, "invalidation: sent what was pending"),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "invalidation: cache unreachable at shutdown; pending invalidations are lost (cache TTLs bound their staleness)")
                }
                Err(_) => {
                    tracing::warn!(users = left, timeout = ?FINAL_FLUSH_TIMEOUT, "invalidation: last flush timed out; pending invalidations are lost")
                }
            }
        }
    }

    /// Waits for a first pending user, lets the window fill, sends, and retries until the cache
    /// takes it. Returns false once the recorders are gone (the last flush is left to `run`).
    async fn serve_one_window(&mut self) -> bool {
        tokio::select! {
            () = self.wake.notified() => {}
            _ = self.recorders_gone.recv() => return false,
        }
        // The window starts at the first pending write: everything a user does within it
        // becomes one UNLINK of their keys.
        tokio::select! {
            () = tokio::time::sleep(self.window) => {}
            _ = self.recorders_gone.recv() => return false,
        }
        let mut failures = 0u32;
        loop {
            match self.flusher.flush().await {
                Ok(users) => {
                    if failures > 0 {
                        tracing::info!(
                            failures,
                            users,
                            "invalidation: cache reachable again, pending invalidations sent"
                        );
                    }
                    self.backoff.reset();
                    return true;
                }
                Err(error) => {
                    failures += 1;
                    let delay = self.backoff.next_delay();
                    tracing::warn!(%error, failures, retry_in = ?delay, "invalidation: cache unreachable; users stay pending");
                    // Users recorded while waiting join the next attempt.
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = self.recorders_gone.recv() => return false,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;
    use std::sync::atomic::AtomicBool;

    use async_trait::async_trait;
    use wire::EventKind;

    use super::*;
    use cache::MemoryCache;

    /// The in-process cache, with a switch that makes it refuse like an unreachable Redis, and
    /// a count of unlink requests. (The real outage, a Redis stopped and started again, is in
    /// the integration tests.)
    #[derive(Default)]
    struct SwitchableCache {
        inner: MemoryCache,
        down: AtomicBool,
        /// Goes down once this many unlink requests were answered (0: never on its own).
        down_after: AtomicUsize,
        unlink_requests: AtomicUsize,
    }

    #[async_trait]
    impl Cache for SwitchableCache {
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
            self.inner.get(key).await
        }

        async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
            self.inner.set(key, value, ttl).await
        }

        async fn unlink(&self, keys: &[String]) -> Result<u64, CacheError> {
            let requests = self.unlink_requests.fetch_add(1, Ordering::Relaxed) + 1;
            if self.down.load(Ordering::Relaxed) {
                return Err(CacheError::Unavailable("switched off".into()));
            }
            if requests == self.down_after.load(Ordering::Relaxed) {
                self.down.store(true, Ordering::Relaxed);
            }
            self.inner.unlink(keys).await
        }

        async fn ready(&self) -> bool {
            !self.down.load(Ordering::Relaxed)
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn event(user_id: u64, kind: EventKind) -> PlaybackEvent {
        PlaybackEvent {
            kind,
            ..testkit::event(user_id, 0)
        }
    }

    fn settings(max_pending_users: usize) -> InvalidationSettings {
        InvalidationSettings {
            enabled: true,
            window: Duration::from_millis(20),
            keys: vec![
                "recommendations:{user_id}".to_owned(),
                "user_profile:{user_id}".to_owned(),
            ],
            max_pending_users: NonZeroUsize::new(max_pending_users).unwrap(),
            retry_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        }
    }

    /// The recording half and a flusher over the same pending set, without the background task,
    /// so that a test decides when a flush happens.
    fn parts(
        max_pending_users: usize,
        cache: Arc<dyn Cache>,
    ) -> (Invalidator, Flusher, Arc<Metrics>) {
        let settings = settings(max_pending_users);
        let metrics = Arc::new(Metrics::default());
        let pending = Arc::new(PendingSet::new(max_pending_users));
        let (alive, _gone) = mpsc::channel(1);
        let flusher = Flusher::new(pending.clone(), cache, &settings.keys, metrics.clone());
        let invalidator = Invalidator {
            pending,
            wake: Arc::new(Notify::new()),
            metrics: metrics.clone(),
            _alive: alive,
        };
        (invalidator, flusher, metrics)
    }

    fn metric(metrics: &Metrics, name: &str) -> f64 {
        let text = metrics.render();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    async fn cached(cache: &dyn Cache, users: &[u64]) {
        for &user in users {
            cache
                .set(&wire::keys::recommendations(user), b"recs", HOUR)
                .await
                .unwrap();
            cache
                .set(&wire::keys::user_profile(user), b"profile", HOUR)
                .await
                .unwrap();
        }
    }

    async fn is_cached(cache: &dyn Cache, user: u64) -> bool {
        cache
            .get(&wire::keys::recommendations(user))
            .await
            .unwrap()
            .is_some()
    }

    #[tokio::test]
    async fn a_burst_for_one_user_becomes_one_unlink_of_their_keys() {
        let cache = Arc::new(SwitchableCache::default());
        cached(cache.as_ref(), &[7]).await;
        let (invalidator, flusher, metrics) = parts(100, cache.clone());
        for _ in 0..50 {
            invalidator.on_durable(&[event(7, EventKind::Start), event(7, EventKind::Complete)]);
        }
        assert_eq!(flusher.flush().await.unwrap(), 1);
        assert_eq!(cache.unlink_requests.load(Ordering::Relaxed), 1);
        assert!(!is_cached(cache.as_ref(), 7).await);
        assert_eq!(cache.get("user_profile:7").await.unwrap(), None);
        assert_eq!(metric(&metrics, "playpulse_invalidation_sent_total"), 2.0);
        assert_eq!(
            metric(&metrics, "playpulse_invalidation_lag_seconds_count"),
            1.0
        );
        assert_eq!(
            metric(&metrics, "playpulse_invalidation_pending_users"),
            0.0
        );
    }

    #[tokio::test]
    async fn only_events_that_change_taste_invalidate() {
        let cache = Arc::new(SwitchableCache::default());
        cached(cache.as_ref(), &[1, 2, 3]).await;
        let (invalidator, flusher, _metrics) = parts(100, cache.clone());
        invalidator.on_durable(&[
            event(1, EventKind::Heartbeat),
            event(1, EventKind::Pause),
            event(2, EventKind::Start),
            event(3, EventKind::Complete),
        ]);
        assert_eq!(flusher.flush().await.unwrap(), 2);
        assert!(is_cached(cache.as_ref(), 1).await);
        assert!(!is_cached(cache.as_ref(), 2).await);
        assert!(!is_cached(cache.as_ref(), 3).await);
    }

    #[tokio::test]
    async fn a_flush_with_nothing_pending_sends_nothing() {
        let cache = Arc::new(SwitchableCache::default());
        let (invalidator, flusher, _metrics) = parts(100, cache.clone());
        invalidator.on_durable(&[event(1, EventKind::Heartbeat)]);
        assert_eq!(flusher.flush().await.unwrap(), 0);
        assert_eq!(cache.unlink_requests.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_pending_set_is_bounded_and_counts_what_it_drops() {
        let cache = Arc::new(SwitchableCache::default());
        let (invalidator, _flusher, metrics) = parts(3, cache);
        let events: Vec<_> = (1..=5).map(|user| event(user, EventKind::Start)).collect();
        invalidator.on_durable(&events);
        // A user already pending still coalesces when the set is full.
        invalidator.on_durable(&[event(1, EventKind::Start)]);
        assert_eq!(invalidator.pending.len(), 3);
        assert_eq!(
            metric(&metrics, "playpulse_invalidation_dropped_total"),
            2.0
        );
        assert_eq!(
            metric(&metrics, "playpulse_invalidation_pending_users"),
            3.0
        );
    }

    #[tokio::test]
    async fn a_failed_flush_keeps_every_user_pending_and_the_next_one_sends_them() {
        let cache = Arc::new(SwitchableCache::default());
        cached(cache.as_ref(), &[1, 2, 3]).await;
        let (invalidator, flusher, metrics) = parts(100, cache.clone());
        invalidator.on_durable(&[event(1, EventKind::Start), event(2, EventKind::Start)]);
        cache.down.store(true, Ordering::Relaxed);
        let error = flusher.flush().await.expect_err("the cache is down");
        assert_eq!(error.users_left, 2);
        assert_eq!(invalidator.pending.len(), 2);
        assert_eq!(metric(&metrics, "playpulse_invalidation_failed_total"), 1.0);
        // Writes while the cache is down join the users already waiting.
        invalidator.on_durable(&[event(2, EventKind::Start), event(3, EventKind::Complete)]);
        assert_eq!(invalidator.pending.len(), 3);
        cache.down.store(false, Ordering::Relaxed);
        assert_eq!(flusher.flush().await.unwrap(), 3);
        for user in 1..=3 {
            assert!(!is_cached(cache.as_ref(), user).await, "user {user}");
        }
        assert_eq!(invalidator.pending.len(), 0);
        assert_eq!(
            metric(&metrics, "playpulse_invalidation_lag_seconds_count"),
            3.0
        );
    }

    #[test]
    fn a_user_recorded_again_during_a_failed_request_is_pending_once_from_the_first_write() {
        let pending = PendingSet::new(10);
        let first = Instant::now();
        let later = first + Duration::from_secs(1);
        assert_eq!(pending.record(9, first), Recorded::Added);
        let taken = pending.take();
        // While the request is out, user 9 writes again: pending twice, counted twice.
        assert_eq!(pending.record(9, later), Recorded::Added);
        assert_eq!(pending.len(), 2);
        pending.restore(&taken);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending.take(), vec![(9, first)]);
    }

    #[test]
    fn users_taken_for_a_request_still_count_against_the_bound() {
        let pending = PendingSet::new(2);
        let now = Instant::now();
        pending.record(1, now);
        pending.record(2, now);
        let taken = pending.take();
        assert_eq!(pending.record(3, now), Recorded::Dropped);
        pending.sent(taken.len());
        assert_eq!(pending.record(3, now), Recorded::Added);
    }

    #[tokio::test]
    async fn a_large_pending_set_goes_out_in_requests_of_bounded_size() {
        let cache = Arc::new(SwitchableCache::default());
        let (invalidator, flusher, metrics) = parts(1_000_000, cache.clone());
        let users = KEYS_PER_REQUEST as u64; // two keys each: two requests' worth
        let events: Vec<_> = (0..users)
            .map(|user| event(user, EventKind::Start))
            .collect();
        invalidator.on_durable(&events);
        assert_eq!(flusher.flush().await.unwrap(), users as usize);
        assert_eq!(cache.unlink_requests.load(Ordering::Relaxed), 2);
        assert_eq!(
            metric(&metrics, "playpulse_invalidation_sent_total"),
            2.0 * users as f64
        );
    }

    #[tokio::test]
    async fn when_a_request_fails_midway_only_the_unsent_users_stay_pending() {
        let cache = Arc::new(SwitchableCache::default());
        let (invalidator, flusher, _metrics) = parts(1_000_000, cache.clone());
        let users = 3 * flusher.users_per_request;
        let events: Vec<_> = (0..users as u64)
            .map(|user| event(user, EventKind::Start))
            .collect();
        invalidator.on_durable(&events);
        cache.down_after.store(1, Ordering::Relaxed);
        let error = flusher.flush().await.expect_err("the second request fails");
        assert_eq!(error.users_left, users - flusher.users_per_request);
        assert_eq!(invalidator.pending.len(), users - flusher.users_per_request);
    }

    #[test]
    fn backoff_doubles_up_to_its_maximum_and_starts_over_after_a_success() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<_> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    /// Polls `check` every few milliseconds until it holds or `deadline` passes.
    async fn within(deadline: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            if check().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        check().await
    }

    #[tokio::test]
    async fn the_task_sends_after_the_window_and_retries_until_the_cache_is_back() {
        let cache = Arc::new(SwitchableCache::default());
        cached(cache.as_ref(), &[1, 2]).await;
        let metrics = Arc::new(Metrics::default());
        let (invalidator, task) = start(&settings(100), cache.clone(), metrics.clone());
        invalidator.on_durable(&[event(1, EventKind::Start)]);
        assert!(
            within(Duration::from_secs(5), async || !is_cached(
                cache.as_ref(),
                1
            )
            .await)
            .await,
            "user 1 invalidated"
        );

        cache.down.store(true, Ordering::Relaxed);
        invalidator.on_durable(&[event(2, EventKind::Complete)]);
        assert!(
            within(Duration::from_secs(5), async || {
                metric(&metrics, "playpulse_invalidation_failed_total") >= 2.0
            })
            .await,
            "the task retries while the cache is down"
        );
        assert!(is_cached(cache.as_ref(), 2).await);
        cache.down.store(false, Ordering::Relaxed);
        assert!(
            within(Duration::from_secs(5), async || !is_cached(
                cache.as_ref(),
                2
            )
            .await)
            .await,
            "user 2 invalidated once the cache is back"
        );

        drop(invalidator);
        tokio::time::timeout(Duration::from_secs(5), task.finished())
            .await
            .expect("the task ends once the recorders are gone");
    }

    #[tokio::test]
    async fn dropping_the_recorders_sends_what_is_pending_and_ends_the_task() {
        let cache = Arc::new(SwitchableCache::default());
        cached(cache.as_ref(), &[5]).await;
        let mut settings = settings(100);
        settings.window = HOUR;
        let (invalidator, task) = start(&settings, cache.clone(), Arc::new(Metrics::default()));
        invalidator.on_durable(&[event(5, EventKind::Start)]);
        drop(invalidator);
        tokio::time::timeout(Duration::from_secs(5), task.finished())
            .await
            .expect("the task does not wait out its window at shutdown");
        assert!(!is_cached(cache.as_ref(), 5).await);
    }

    #[tokio::test]
    async fn shutdown_with_the_cache_down_is_bounded() {
        let cache = Arc::new(SwitchableCache::default());
        cache.down.store(true, Ordering::Relaxed);
        let (invalidator, task) =
            start(&settings(100), cache.clone(), Arc::new(Metrics::default()));
        invalidator.on_durable(&[event(5, EventKind::Start)]);
        drop(invalidator);
        tokio::time::timeout(
            FINAL_FLUSH_TIMEOUT + Duration::from_secs(2),
            task.finished(),
        )
        .await
        .expect("the task gives up within its bound");
    }
}
