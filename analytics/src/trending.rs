//! Trending titles per country: "now", starts decayed exponentially with a half-life, and
//! "week", the starts of the last seven days (today and the six before, UTC). Fed by the
//! analytics side path with one increment per title, country and minute per flush; in process
//! ([`MemoryTrending`]) on the embedded default, in Redis ([`RedisTrending`]) at scale.
//!
//! A decayed score needs no rewrite as time passes: a start at minute `m` adds
//! `2^((m - epoch_start) / half_life)` to its title, and reading divides by the same at "now",
//! which keeps the order. The exponent is bounded by starting a new epoch every
//! [`EPOCH_HALF_LIVES`] half-lives; the first write of an epoch carries the previous one over.
//! Weights use the event's minute, not its arrival, so the lists are a pure function of the
//! stored starts and [`rebuild`] from the rollups gives the same lists as the live feed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use serde::Serialize;
use wire::CountryCode;

use crate::rollup::{Grouping, MINUTE_MS};
use crate::store::{AnalyticsError, RollupStore};

/// Half-lives per epoch: 2^64 stays far within f64.
pub const EPOCH_HALF_LIVES: f64 = 64.0;
const DAY_MS: i64 = 86_400_000;
/// Days in "this week".
pub const WEEK_DAYS: i64 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Now,
    Week,
}

impl Window {
    pub fn parse(text: &str) -> Option<Window> {
        match text {
            "now" => Some(Window::Now),
            "week" => Some(Window::Week),
            _ => None,
        }
    }
}

/// Starts of one title in one country (or none) and minute, coalesced over a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartCount {
    pub country: Option<CountryCode>,
    pub title: u64,
    pub minute: i64,
    pub count: u64,
}

/// One entry of a list: `score` is decayed starts (now) or starts (week).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    pub title: u64,
    pub score: f64,
}

/// The scoring both implementations share.
#[derive(Debug, Clone, Copy)]
pub struct Decay {
    pub half_life_ms: f64,
}

impl Decay {
    pub fn new(half_life: Duration) -> Decay {
        Decay {
            half_life_ms: (half_life.as_millis() as f64).max(1.0),
        }
    }

    fn epoch_ms(&self) -> f64 {
        self.half_life_ms * EPOCH_HALF_LIVES
    }

    pub fn epoch_of(&self, at_ms: i64) -> i64 {
        (at_ms as f64 / self.epoch_ms()).floor() as i64
    }

    /// What a start at `minute` adds in its epoch.
    pub fn weight(&self, minute: i64) -> f64 {
        let epoch_start = self.epoch_of(minute) as f64 * self.epoch_ms();
        ((minute as f64 - epoch_start) / self.half_life_ms).exp2()
    }

    /// Turns a score of `epoch` into decayed starts at `now_ms`.
    pub fn at(&self, epoch: i64, now_ms: i64) -> f64 {
        let epoch_start = epoch as f64 * self.epoch_ms();
        (-(now_ms as f64 - epoch_start) / self.half_life_ms).exp2()
    }

    /// The factor carrying epoch `e - 1`'s scores into epoch `e`.
    pub fn carry(&self) -> f64 {
        (-EPOCH_HALF_LIVES).exp2()
    }
}

pub fn day_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(DAY_MS)
}

#[async_trait]
pub trait TrendingStore: Send + Sync + 'static {
    async fn add(&self, starts: &[StartCount]) -> Result<(), AnalyticsError>;

    /// The top `limit` titles of `country` (`None`: every country together).
    async fn top(
        &self,
        country: Option<CountryCode>,
        window: Window,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<Trend>, AnalyticsError>;

    /// Whether the lists are whole: false once the store lost its data (a Redis restart
    /// without persistence, a flush), and until [`TrendingStore::mark_built`].
    async fn is_built(&self) -> Result<bool, AnalyticsError>;

    /// Drops every list (before a rebuild).
    async fn clear(&self) -> Result<(), AnalyticsError>;

    async fn mark_built(&self) -> Result<(), AnalyticsError>;
}

/// Refills the lists from the stored rollups of the last [`WEEK_DAYS`] days; what the side path
/// does when [`TrendingStore::is_built`] says false.
pub async fn rebuild(
    trending: &dyn TrendingStore,
    rollups: &dyn RollupStore,
    now_ms: i64,
) -> Result<usize, AnalyticsError> {
    trending.clear().await?;
    let from = (day_of(now_ms) - (WEEK_DAYS - 1)) * DAY_MS;
    let to = crate::rollup::minute_of(now_ms) + MINUTE_MS;
    let mut counts: HashMap<(Option<CountryCode>, u64, i64), u64> = HashMap::new();
    // A day at a time: a week of rows at once could be large.
    let mut start = from;
    while start <= to {
        let end = (start + DAY_MS - MINUTE_MS).min(to);
        for row in rollups.read(Grouping::TitleCountry, start, end).await? {
            if row.measures.starts == 0 {
                continue;
            }
            let Some(title) = row.key.dims.title else {
                continue;
            };
            *counts
                .entry((row.key.dims.country, title, row.key.minute))
                .or_default() += row.measures.starts;
        }
        start += DAY_MS;
    }
    let mut starts: Vec<StartCount> = counts
        .into_iter()
        .map(|((country, title, minute), count)| StartCount {
            country,
            title,
            minute,
            count,
        })
        .collect();
    starts.sort_by_key(|start| start.minute);
    trending.add(&starts).await?;
    trending.mark_built().await?;
    Ok(starts.len())
}

/// Sorts by score, highest first, ties to the lower title id, and keeps `limit`.
fn ranked(mut trends: Vec<Trend>, limit: usize) -> Vec<Trend> {
    trends.retain(|trend| trend.score > 0.0);
    trends.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.title.cmp(&b.title)));
    trends.truncate(limit);
    trends
}

type Scores = HashMap<u64, f64>;

/// The embedded default: the same lists in process.
pub struct MemoryTrending {
    decay: Decay,
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    /// (country, epoch) → scores; `None` is every country.
    now: HashMap<(Option<CountryCode>, i64), Scores>,
    /// (country, day) → starts.
    days: HashMap<(Option<CountryCode>, i64), Scores>,
    built: bool,
}

impl MemoryTrending {
    pub fn new(half_life: Duration) -> MemoryTrending {
        MemoryTrending {
            decay: Decay::new(half_life),
            state: Mutex::new(MemoryState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl TrendingStore for MemoryTrending {
    async fn add(&self, starts: &[StartCount]) -> Result<(), AnalyticsError> {
        let mut state = self.state();
        for start in starts {
            let epoch = self.decay.epoch_of(start.minute);
            for country in countries_of(start.country) {
                if !state.now.contains_key(&(country, epoch)) {
                    let carried: Scores = state
                        .now
                        .get(&(country, epoch - 1))
                        .map(|old| {
                            old.iter()
                                .map(|(title, score)| (*title, score * self.decay.carry()))
                                .collect()
                        })
                        .unwrap_or_default();
                    state.now.insert((country, epoch), carried);
                }
                let weight = self.decay.weight(start.minute) * start.count as f64;
                *state
                    .now
                    .entry((country, epoch))
                    .or_default()
                    .entry(start.title)
                    .or_default() += weight;
                *state
                    .days
                    .entry((country, day_of(start.minute)))
                    .or_default()
                    .entry(start.title)
                    .or_default() += start.count as f64;
            }
        }
        let newest_day = state.days.keys().map(|(_, day)| *day).max().unwrap_or(0);
        state
            .days
            .retain(|(_, day), _| *day > newest_day - WEEK_DAYS - 1);
        Ok(())
    }

    async fn top(
        &self,
        country: Option<CountryCode>,
        window: Window,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<Trend>, AnalyticsError> {
        let state = self.state();
        let trends = match window {
            Window::Now => {
                let epoch = self.decay.epoch_of(now_ms);
                let mut scores: Scores = HashMap::new();
                // The current epoch, or (before its first write) the last one carried over.
                for (offset, factor) in [(0, 1.0), (1, self.decay.carry())] {
                    if let Some(found) = state.now.get(&(country, epoch - offset)) {
                        for (title, score) in found {
                            *scores.entry(*title).or_default() += score * factor;
                        }
                        break;
                    }
                }
                let scale = self.decay.at(epoch, now_ms);
                scores
                    .into_iter()
                    .map(|(title, score)| Trend {
                        title,
                        score: score * scale,
                    })
                    .collect()
            }
            Window::Week => {
                let today = day_of(now_ms);
                let mut scores: Scores = HashMap::new();
                for day in today - (WEEK_DAYS - 1)..=today {
                    for (title, count) in state.days.get(&(country, day)).into_iter().flatten() {
                        *scores.entry(*title).or_default() += count;
                    }
                }
                scores
                    .into_iter()
                    .map(|(title, score)| Trend { title, score })
                    .collect()
            }
        };
        Ok(ranked(trends, limit))
    }

    async fn is_built(&self) -> Result<bool, AnalyticsError> {
        Ok(self.state().built)
    }

    async fn clear(&self) -> Result<(), AnalyticsError> {
        *self.state() = MemoryState::default();
        Ok(())
    }

    async fn mark_built(&self) -> Result<(), AnalyticsError> {
        self.state().built = true;
        Ok(())
    }
}

/// A start counts in its country's lists and in the list of every country.
fn countries_of(country: Option<CountryCode>) -> impl Iterator<Item = Option<CountryCode>> {
    [Some(None), country.map(Some)].into_iter().flatten()
}

fn country_key(country: Option<CountryCode>) -> String {
    country.map_or_else(|| "all".to_owned(), |code| code.to_string())
}

/// Trending in Redis. Keys (all under `prefix`):
/// - `trending:now:{country}:{epoch}`: a sorted set of title → score in that epoch (TTL two
///   epochs);
/// - `trending:day:{country}:{day}`: title → starts that day (TTL eight days);
/// - `trending:week:{country}`: the union of the last seven days, cached for
///   [`WEEK_CACHE`], so that a read is one ZREVRANGE;
/// - `trending:built`: present while the lists are whole.
pub struct RedisTrending {
    connection: ConnectionManager,
    decay: Decay,
    prefix: String,
}

/// How long the union of a week is reused: a week's list moves slowly.
pub const WEEK_CACHE: Duration = Duration::from_secs(5);

fn redis_error(error: redis::RedisError) -> AnalyticsError {
    AnalyticsError::Unavailable(format!("redis: {error}"))
}

impl RedisTrending {
    pub fn new(connection: ConnectionManager, half_life: Duration, prefix: &str) -> RedisTrending {
        RedisTrending {
            connection,
            decay: Decay::new(half_life),
            prefix: prefix.to_owned(),
        }
    }

    fn now_key(&self, country: Option<CountryCode>, epoch: i64) -> String {
        format!(
            "{}trending:now:{}:{epoch}",
            self.prefix,
            country_key(country)
        )
    }

    fn day_key(&self, country: Option<CountryCode>, day: i64) -> String {
        format!("{}trending:day:{}:{day}", self.prefix, country_key(country))
    }

    fn week_key(&self, country: Option<CountryCode>) -> String {
        format!("{}trending:week:{}", self.prefix, country_key(country))
    }

    fn built_key(&self) -> String {
        format!("{}trending:built", self.prefix)
    }

    fn epoch_ttl_seconds(&self) -> i64 {
        ((self.decay.epoch_ms() * 2.0) / 1000.0).ceil() as i64
    }
}

fn parse_trends(raw: Vec<(String, f64)>, scale: f64) -> Vec<Trend> {
    raw.into_iter()
        .filter_map(|(title, score)| {
            Some(Trend {
                title: title.parse().ok()?,
                score: score * scale,
            })
        })
        .collect()
}

#[async_trait]
impl TrendingStore for RedisTrending {
    async fn add(&self, starts: &[StartCount]) -> Result<(), AnalyticsError> {
        if starts.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection.clone();
        // The first write of an epoch carries the previous epoch over, once (SET NX decides).
        let mut epochs: Vec<(Option<CountryCode>, i64)> = starts
            .iter()
            .flat_map(|start| {
                let epoch = self.decay.epoch_of(start.minute);
                countries_of(start.country).map(move |country| (country, epoch))
            })
            .collect();
        epochs.sort_unstable();
        epochs.dedup();
        let mut probe = redis::pipe();
        for (country, epoch) in &epochs {
            probe
                .cmd("SET")
                .arg(format!("{}:carried", self.now_key(*country, *epoch)))
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(self.epoch_ttl_seconds());
        }
        let fresh: Vec<Option<String>> = probe
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let mut pipe = redis::pipe();
        for ((country, epoch), fresh) in epochs.iter().zip(fresh) {
            if fresh.is_some() {
                let key = self.now_key(*country, *epoch);
                pipe.cmd("ZUNIONSTORE")
                    .arg(&key)
                    .arg(2)
                    .arg(&key)
                    .arg(self.now_key(*country, epoch - 1))
                    .arg("WEIGHTS")
                    .arg(1)
                    .arg(self.decay.carry())
                    .ignore();
                pipe.expire(&key, self.epoch_ttl_seconds()).ignore();
            }
        }
        let mut days = Vec::new();
        for start in starts {
            let epoch = self.decay.epoch_of(start.minute);
            let weight = self.decay.weight(start.minute) * start.count as f64;
            for country in countries_of(start.country) {
                pipe.zincr(self.now_key(country, epoch), start.title, weight)
                    .ignore();
                let day_key = self.day_key(country, day_of(start.minute));
                pipe.zincr(&day_key, start.title, start.count).ignore();
                days.push(day_key);
            }
        }
        days.sort_unstable();
        days.dedup();
        for day in days {
            pipe.expire(day, (WEEK_DAYS + 1) * 86_400).ignore();
        }
        pipe.query_async::<()>(&mut connection)
            .await
            .map_err(redis_error)
    }

    async fn top(
        &self,
        country: Option<CountryCode>,
        window: Window,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<Trend>, AnalyticsError> {
        let mut connection = self.connection.clone();
        let stop = limit.max(1) as isize - 1;
        match window {
            Window::Now => {
                let epoch = self.decay.epoch_of(now_ms);
                for (offset, factor) in [(0i64, 1.0), (1, self.decay.carry())] {
                    let key = self.now_key(country, epoch - offset);
                    let raw: Vec<(String, f64)> = redis::cmd("ZREVRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(stop)
                        .arg("WITHSCORES")
                        .query_async(&mut connection)
                        .await
                        .map_err(redis_error)?;
                    if !raw.is_empty() {
                        let scale = self.decay.at(epoch, now_ms) * factor;
                        return Ok(ranked(parse_trends(raw, scale), limit));
                    }
                }
                Ok(Vec::new())
            }
            Window::Week => {
                let key = self.week_key(country);
                let exists: bool = redis::cmd("EXISTS")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
                    .map_err(redis_error)?;
                if !exists {
                    let today = day_of(now_ms);
                    let days: Vec<String> = (today - (WEEK_DAYS - 1)..=today)
                        .map(|day| self.day_key(country, day))
                        .collect();
                    redis::pipe()
                        .cmd("ZUNIONSTORE")
                        .arg(&key)
                        .arg(days.len())
                        .arg(&days)
                        .ignore()
                        .cmd("PEXPIRE")
                        .arg(&key)
                        .arg(WEEK_CACHE.as_millis() as u64)
                        .ignore()
                        .query_async::<()>(&mut connection)
                        .await
                        .map_err(redis_error)?;
                }
                let raw: Vec<(String, f64)> = redis::cmd("ZREVRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(stop)
                    .arg("WITHSCORES")
                    .query_async(&mut connection)
                    .await
                    .map_err(redis_error)?;
                Ok(ranked(parse_trends(raw, 1.0), limit))
            }
        }
    }

    async fn is_built(&self) -> Result<bool, AnalyticsError> {
        let mut connection = self.connection.clone();
        redis::cmd("EXISTS")
            .arg(self.built_key())
            .query_async(&mut connection)
            .await
            .map_err(redis_error)
    }

    async fn clear(&self) -> Result<(), AnalyticsError> {
        let mut connection = self.connection.clone();
        let pattern = format!("{}trending:*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .map_err(redis_error)?;
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<()>(&mut connection)
                    .await
                    .map_err(redis_error)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn mark_built(&self) -> Result<(), AnalyticsError> {
        let mut connection = self.connection.clone();
        redis::cmd("SET")
            .arg(self.built_key())
            .arg(1)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)
    }
}
