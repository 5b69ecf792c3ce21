//! Recommendations from the graph, refreshed off the request path. The graph feeder tells the
//! refresher which users and titles each write changed; a round follows (at most every
//! `refresh_interval`, and every `full_refresh_interval` regardless) that:
//!
//! 1. recomputes the top-K similar titles of the changed titles (their neighbourhoods
//!    changed), and of every title each `full_refresh_interval`, into memory;
//! 2. recomputes the changed users' lists through those neighbours ([`super::ranking`]),
//!    writes them to the read model, then bumps their refresh epochs and hands them to the
//!    invalidation (never before the write: see [`super::RefreshEpochs`]).
//!
//! Requests read the read model (through the cache) and the in-memory similar titles; the graph
//! is never on their path. When the graph fails, the changed users and titles stay marked
//! (bounded) and the next round tries again; what is served meanwhile says its age.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use cache::Cache;
use graph::similarity::{top_similar, Similar, SimilarityOptions};
use graph::{GraphError, GraphStore, GraphUpdate};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ranking::{rank, RankingOptions};
use super::RefreshEpochs;
use crate::domain::{now_ms, Millis};
use crate::readmodel::{ReadModel, ReadModelError, RecommendationList};

/// Told which users' recommendations were just refreshed, after the read-model write: the
/// moment their cached answers may be dropped, never before. Runs on the refresher's task: it
/// must only record what to do and return.
pub trait RefreshListener: Send + Sync + 'static {
    fn refreshed(&self, users: &[u64]);
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefresherOptions {
    pub refresh_interval: Duration,
    pub full_refresh_interval: Duration,
    pub similarity: SimilarityOptions,
    pub ranking: RankingOptions,
    /// Watches read per user (the latest; `ranking.recent` of them are scored, all exclude).
    pub watches_read: usize,
    /// How far back `trending` looks.
    pub trending_window: Duration,
    /// Users and titles marked changed at most; beyond, marks are dropped (counted) until a
    /// round catches up. Their lists then wait for their next watch or the full refresh.
    pub max_marked: usize,
    /// Titles and users one graph query asks about at once.
    pub batch: usize,
    /// Users whose lists one round recomputes at most (the rest stay marked for the next):
    /// bounds the refresher's share of the machine under heavy playback.
    pub max_users_per_round: usize,
}

/// How long a computed trending list is reused.
const TRENDING_REUSE: Duration = Duration::from_secs(1);

/// The longest wait between rounds while the graph fails.
const MAX_RETRY_SPACING: Duration = Duration::from_secs(10);

impl Default for RefresherOptions {
    fn default() -> Self {
        RefresherOptions {
            refresh_interval: Duration::from_millis(250),
            full_refresh_interval: Duration::from_secs(300),
            similarity: SimilarityOptions::default(),
            ranking: RankingOptions::default(),
            watches_read: 100,
            trending_window: Duration::from_secs(900),
            max_marked: 200_000,
            batch: 500,
            max_users_per_round: 5_000,
        }
    }
}

/// Similar titles of one title, and when they were computed.
#[derive(Debug, Clone)]
pub struct SimilarTitles {
    pub titles: Arc<[Similar]>,
    pub computed_at: Millis,
}

/// What a refresh round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundStats {
    pub titles: usize,
    pub users: usize,
    pub full: bool,
}

/// Plays started per title, per minute of wall clock.
#[derive(Default)]
struct Trending {
    minutes: VecDeque<(i64, HashMap<u64, u64>)>,
}

impl Trending {
    fn add(&mut self, update: &GraphUpdate, minute: i64, window_minutes: i64) {
        if self.minutes.back().is_none_or(|(at, _)| *at != minute) {
            self.minutes.push_back((minute, HashMap::new()));
        }
        if let Some((_, counts)) = self.minutes.back_mut() {
            for watch in update.watches.iter().filter(|watch| watch.plays > 0) {
                *counts.entry(watch.title).or_default() += watch.plays;
            }
        }
        while self
            .minutes
            .front()
            .is_some_and(|(at, _)| *at <= minute - window_minutes)
        {
            self.minutes.pop_front();
        }
    }

    /// (title, plays in the window), most first.
    fn top(&self, limit: usize, minute: i64, window_minutes: i64) -> Vec<(u64, f64)> {
        let mut totals: HashMap<u64, u64> = HashMap::new();
        for (at, counts) in &self.minutes {
            if *at > minute - window_minutes {
                for (&title, &plays) in counts {
                    *totals.entry(title).or_default() += plays;
                }
            }
        }
        let mut ranked: Vec<(u64, u64)> = totals.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked
            .into_iter()
            .take(limit)
            .map(|(title, plays)| (title, plays as f64))
            .collect()
    }
}

/// A computed trending list: when, what, for how many titles asked.
struct TrendingSnapshot {
    at: std::time::Instant,
    top: Vec<(u64, f64)>,
    asked: usize,
}

#[derive(Default)]
struct Marked {
    users: BTreeSet<u64>,
    titles: BTreeSet<u64>,
}

#[derive(Default)]
struct Counters {
    rounds: AtomicU64,
    failed_rounds: AtomicU64,
    refreshed_users: AtomicU64,
    dropped_marks: AtomicU64,
    last_success: AtomicU64,
}

/// What the refresher did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefresherStats {
    pub rounds: u64,
    pub failed_rounds: u64,
    pub refreshed_users: u64,
    pub dropped_marks: u64,
    /// When a round last succeeded, epoch ms (0: never).
    pub last_success: Millis,
    pub similar_titles: usize,
}

pub struct GraphRecommender {
    graph: Arc<dyn GraphStore>,
    read_model: Arc<dyn ReadModel>,
    epochs: Arc<RefreshEpochs>,
    options: RefresherOptions,
    similar: RwLock<HashMap<u64, SimilarTitles>>,
    /// (title, viewers), most first.
    popular: RwLock<Vec<(u64, f64)>>,
    trending: Mutex<Trending>,
    /// The last `trending_now`.
    trending_cache: Mutex<Option<TrendingSnapshot>>,
    marked: Mutex<Marked>,
    last_full: Mutex<Option<tokio::time::Instant>>,
    /// One round at a time (the task's, or a caller's `refresh_now`).
    round: tokio::sync::Mutex<()>,
    /// Something was marked: the task runs a round (after its spacing).
    wake: tokio::sync::Notify,
    after_refresh: OnceLock<Arc<dyn RefreshListener>>,
    cache: Option<Arc<dyn Cache>>,
    counters: Counters,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why a round failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
}

impl GraphRecommender {
    /// After each round, the refreshed users' `recommendations:{id}` are unlinked in `cache`,
    /// unless [`GraphRecommender::notify_after_refresh`] hands them to another side path.
    pub fn new(
        graph: Arc<dyn GraphStore>,
        read_model: Arc<dyn ReadModel>,
        cache: Option<Arc<dyn Cache>>,
        epochs: Arc<RefreshEpochs>,
        options: RefresherOptions,
    ) -> GraphRecommender {
        GraphRecommender {
            graph,
            read_model,
            epochs,
            options,
            similar: RwLock::default(),
            popular: RwLock::default(),
            trending: Mutex::default(),
            trending_cache: Mutex::default(),
            marked: Mutex::default(),
            last_full: Mutex::new(None),
            round: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
            after_refresh: OnceLock::new(),
            cache,
            counters: Counters::default(),
        }
    }

    /// Hands refreshed users to `listener` (e.g. ingest's coalescing invalidation side path)
    /// instead of unlinking their keys itself. Set once, before refreshes run; false if set.
    pub fn notify_after_refresh(&self, listener: Arc<dyn RefreshListener>) -> bool {
        self.after_refresh.set(listener).is_ok()
    }

    /// What each refresh bumps (the recommendation service reads them: see [`RefreshEpochs`]).
    pub fn epochs(&self) -> &Arc<RefreshEpochs> {
        &self.epochs
    }

    /// How similar titles are computed (answers name their measure).
    pub fn similarity(&self) -> &SimilarityOptions {
        &self.options.similarity
    }

    pub fn graph(&self) -> &Arc<dyn GraphStore> {
        &self.graph
    }

    /// A title's similar titles, from memory; `None` until a refresh computed them.
    pub fn similar_to(&self, title: u64) -> Option<SimilarTitles> {
        self.similar
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&title)
            .cloned()
    }

    /// The list of a user the read model has nothing for: trending, or popular, from memory.
    pub fn fallback(&self, limit: usize) -> RecommendationList {
        let options = RankingOptions {
            limit,
            ..self.options.ranking.clone()
        };
        let (source, items) = rank(
            &[],
            |_| None,
            &self.trending_now(limit),
            &self.popular_now(),
            &options,
        );
        RecommendationList {
            source: source.as_str().to_owned(),
            computed_at: now_ms(),
            items,
        }
    }

    fn popular_now(&self) -> Vec<(u64, f64)> {
        self.popular
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn window_minutes(&self) -> i64 {
        (self.options.trending_window.as_secs() / 60).max(1) as i64
    }

    /// What trends, computed at most once a second and once per graph write: every cold
    /// request asks, and summing the window's minutes over a large catalog costs a millisecond.
    fn trending_now(&self, limit: usize) -> Vec<(u64, f64)> {
        let mut cached = lock(&self.trending_cache);
        let fresh = cached.as_ref().is_some_and(|snapshot| {
            snapshot.at.elapsed() < TRENDING_REUSE && snapshot.asked >= limit
        });
        if !fresh {
            let top = lock(&self.trending).top(limit, now_ms() / 60_000, self.window_minutes());
            *cached = Some(TrendingSnapshot {
                at: std::time::Instant::now(),
                top,
                asked: limit,
            });
        }
        cached
            .as_ref()
            .map(|snapshot| snapshot.top.iter().take(limit).copied().collect())
            .unwrap_or_default()
    }

    pub fn stats(&self) -> RefresherStats {
        let counters = &self.counters;
        RefresherStats {
            rounds: counters.rounds.load(Ordering::Relaxed),
            failed_rounds: counters.failed_rounds.load(Ordering::Relaxed),
            refreshed_users: counters.refreshed_users.load(Ordering::Relaxed),
            dropped_marks: counters.dropped_marks.load(Ordering::Relaxed),
            last_success: counters.last_success.load(Ordering::Relaxed) as Millis,
            similar_titles: self
                .similar
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .len(),
        }
    }

    /// Marks `users` and `titles` changed (bounded by `max_marked`).
    pub fn mark(&self, users: &[u64], titles: &[u64]) {
        let max = self.options.max_marked.max(1);
        let mut marked = lock(&self.marked);
        let mut dropped = 0;
        for &user in users {
            if marked.users.len() < max || marked.users.contains(&user) {
                marked.users.insert(user);
            } else {
                dropped += 1;
            }
        }
        for &title in titles {
            if marked.titles.len() < max || marked.titles.contains(&title) {
                marked.titles.insert(title);
            } else {
                dropped += 1;
            }
        }
        let anything = !marked.users.is_empty() || !marked.titles.is_empty();
        drop(marked);
        if anything {
            self.wake.notify_one();
        }
        if dropped > 0 {
            self.counters
                .dropped_marks
                .fetch_add(dropped, Ordering::Relaxed);
        }
    }

    /// Starts the periodic rounds; they stop with the returned task.
    pub fn start(self: &Arc<Self>) -> RefresherTask {
        let (stop, mut stopped) = watch::channel(false);
        let refresher = self.clone();
        let task = tokio::spawn(async move {
            let options = &refresher.options;
            let mut spacing = options.refresh_interval;
            loop {
                // A round when something was marked, or when the full refresh is due.
                let full_due_in = lock(&refresher.last_full).map_or(Duration::ZERO, |at| {
                    options.full_refresh_interval.saturating_sub(at.elapsed())
                });
                tokio::select! {
                    _ = stopped.changed() => return,
                    _ = refresher.wake.notified() => {}
                    _ = tokio::time::sleep(full_due_in) => {}
                }
                match refresher.refresh_now().await {
                    Ok(_) => spacing = options.refresh_interval,
                    Err(error) => {
                        let failures = refresher.counters.failed_rounds.load(Ordering::Relaxed);
                        if failures == 1 || failures.is_multiple_of(60) {
                            tracing::warn!(%error, failures, "cannot refresh recommendations from the graph; serving what was computed, with its age");
                        }
                        // The graph is down or overloaded: retry less and less often.
                        spacing =
                            (spacing * 2).min(MAX_RETRY_SPACING.max(options.refresh_interval));
                    }
                }
                // Rounds at most every `spacing`: marks in between coalesce into the next one.
                tokio::select! {
                    _ = stopped.changed() => return,
                    _ = tokio::time::sleep(spacing) => {}
                }
            }
        });
        RefresherTask { stop, task }
    }

    /// One round now: the marked titles (or all of them when a full refresh is due), then the
    /// marked users. What a failed round took stays marked.
    pub async fn refresh_now(&self) -> Result<RoundStats, RefreshError> {
        let _one_round = self.round.lock().await;
        self.counters.rounds.fetch_add(1, Ordering::Relaxed);
        let (users, titles, more) = {
            let mut marked = lock(&self.marked);
            let mut users = BTreeSet::new();
            while users.len() < self.options.max_users_per_round.max(1) {
                match marked.users.pop_first() {
                    Some(user) => users.insert(user),
                    None => break,
                };
            }
            (
                users,
                std::mem::take(&mut marked.titles),
                !marked.users.is_empty(),
            )
        };
        if more {
            // The rest wait for the next round, right after this one's spacing.
            self.wake.notify_one();
        }
        let full_due = lock(&self.last_full)
            .is_none_or(|at| at.elapsed() >= self.options.full_refresh_interval);
        let result = self.round(&users, &titles, full_due).await;
        match &result {
            Ok(_) => {
                if full_due {
                    *lock(&self.last_full) = Some(tokio::time::Instant::now());
                }
                self.counters
                    .last_success
                    .store(now_ms().max(0) as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.failed_rounds.fetch_add(1, Ordering::Relaxed);
                let users: Vec<u64> = users.into_iter().collect();
                let titles: Vec<u64> = titles.into_iter().collect();
                self.mark(&users, &titles);
            }
        }
        result
    }

    async fn round(
        &self,
        users: &BTreeSet<u64>,
        titles: &BTreeSet<u64>,
        full: bool,
    ) -> Result<RoundStats, RefreshError> {
        let titles: Vec<u64> = if full {
            let all = self.graph.titles().await?;
            let popular: Vec<(u64, f64)> = all
                .iter()
                .take(self.options.ranking.limit.max(100))
                .map(|title| (title.title, title.viewers as f64))
                .collect();
            *self
                .popular
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = popular;
            all.into_iter().map(|title| title.title).collect()
        } else {
            titles.iter().copied().collect()
        };
        if !titles.is_empty() {
            let viewers = self.graph.viewer_count().await?;
            let computed_at = now_ms();
            for chunk in titles.chunks(self.options.batch.max(1)) {
                let co = self
                    .graph
                    .co_watched(chunk, self.options.similarity.max_viewer_titles)
                    .await?;
                let lists = top_similar(&co, viewers, &self.options.similarity);
                let mut similar = self
                    .similar
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                for &title in chunk {
                    let list = lists.get(&title).cloned().unwrap_or_default();
                    similar.insert(
                        title,
                        SimilarTitles {
                            titles: list.into(),
                            computed_at,
                        },
                    );
                }
            }
        }
        let users: Vec<u64> = users.iter().copied().collect();
        for chunk in users.chunks(self.options.batch.max(1)) {
            self.refresh_users(chunk).await?;
        }
        Ok(RoundStats {
            titles: titles.len(),
            users: users.len(),
            full,
        })
    }

    async fn refresh_users(&self, users: &[u64]) -> Result<(), RefreshError> {
        let watches = self
            .graph
            .watches_of(users, self.options.watches_read)
            .await?;
        let trending = self.trending_now(self.options.ranking.limit);
        let popular = self.popular_now();
        let computed_at = now_ms();
        let lists: Vec<(u64, RecommendationList)> = {
            let similar = self
                .similar
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            watches
                .iter()
                .map(|(user, watches)| {
                    let (source, items) = rank(
                        watches,
                        |title| similar.get(&title).map(|found| found.titles.clone()),
                        &trending,
                        &popular,
                        &self.options.ranking,
                    );
                    (
                        *user,
                        RecommendationList {
                            source: source.as_str().to_owned(),
                            computed_at,
                            items,
                        },
                    )
                })
                .collect()
        };
        // The read model first, for every user; the epochs and the invalidation after.
        self.read_model.put_recommendations(&lists).await?;
        for &user in users {
            self.epochs.bump(user);
        }
        self.counters
            .refreshed_users
            .fetch_add(users.len() as u64, Ordering::Relaxed);
        if let Some(listener) = self.after_refresh.get() {
            listener.refreshed(users);
        } else if let Some(cache) = &self.cache {
            let keys: Vec<String> = users
                .iter()
                .map(|user| wire::keys::recommendations(*user))
                .collect();
            if let Err(error) = cache.unlink(&keys).await {
                tracing::warn!(%error, "cannot invalidate recommendations after a refresh; the TTL bounds staleness");
            }
        }
        Ok(())
    }
}

impl GraphRecommender {
    /// What the graph feeder wrote: its users and titles are marked changed, its plays trend.
    pub fn heard(&self, update: &GraphUpdate) {
        let users: Vec<u64> = update
            .watches
            .iter()
            .map(|watch| watch.user)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let titles: Vec<u64> = update
            .watches
            .iter()
            .map(|watch| watch.title)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.mark(&users, &titles);
        lock(&self.trending).add(update, now_ms() / 60_000, self.window_minutes());
        // New plays: the next ask recomputes (at most once per feeder write, not per request).
        *lock(&self.trending_cache) = None;
    }
}

/// The refresher's periodic task.
pub struct RefresherTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RefresherTask {
    /// Stops after the round in progress.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
