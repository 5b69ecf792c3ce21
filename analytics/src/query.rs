//! Reading QoE back: a span, an optional dimension to break it down by, filters and a
//! resolution give series and totals ([`qoe`]); the live view gives the last minutes of the
//! whole audience and the dimension values hurting it most ([`live`]). Hours and days are
//! merges of the stored minutes, so every resolution agrees with every other.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::measures::{Measures, Qoe};
use crate::rollup::{minute_of, Dimension, Dims, Grouping, RollupRow, MINUTE_MS, UNKNOWN};
use crate::sessions::SessionStore;
use crate::store::{AnalyticsError, RollupStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    Minute,
    Hour,
    Day,
}

impl Resolution {
    pub fn parse(text: &str) -> Option<Resolution> {
        match text {
            "minute" => Some(Resolution::Minute),
            "hour" => Some(Resolution::Hour),
            "day" => Some(Resolution::Day),
            _ => None,
        }
    }

    pub fn millis(self) -> i64 {
        match self {
            Resolution::Minute => MINUTE_MS,
            Resolution::Hour => 60 * MINUTE_MS,
            Resolution::Day => 24 * 60 * MINUTE_MS,
        }
    }
}

/// Most points a series may have: a day of minutes, a quarter of hours, ten years of days.
pub const MAX_POINTS: i64 = 4_000;
/// Most series (dimension values) an answer carries, the ones with the most views.
pub const MAX_SERIES: usize = 100;

/// Values a dimension must have (`unknown` for "not sent").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub title: Option<String>,
    pub country: Option<String>,
    pub device: Option<String>,
    pub cdn: Option<String>,
}

impl Filters {
    fn of(&self, dimension: Dimension) -> Option<&str> {
        match dimension {
            Dimension::Title => self.title.as_deref(),
            Dimension::Country => self.country.as_deref(),
            Dimension::Device => self.device.as_deref(),
            Dimension::Cdn => self.cdn.as_deref(),
        }
    }

    fn dimensions(&self) -> Vec<Dimension> {
        Dimension::ALL
            .into_iter()
            .filter(|dimension| self.of(*dimension).is_some())
            .collect()
    }

    fn admit(&self, dims: &Dims) -> bool {
        Dimension::ALL.into_iter().all(|dimension| {
            self.of(dimension)
                .is_none_or(|wanted| dims.value(dimension).eq_ignore_ascii_case(wanted))
        })
    }
}

#[derive(Debug, Clone)]
pub struct QoeQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub by: Option<Dimension>,
    pub filters: Filters,
    pub resolution: Resolution,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// The bucket's start, epoch ms.
    pub t: i64,
    #[serde(flatten)]
    pub qoe: Qoe,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// The dimension's value (`null` without `by`).
    pub key: Option<String>,
    pub totals: Qoe,
    pub points: Vec<Point>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QoeAnswer {
    pub from: i64,
    pub to: i64,
    pub by: Option<Dimension>,
    pub resolution: Resolution,
    /// Which stored grouping answered (`all`, one dimension, or `full` for several filters).
    pub grouping: &'static str,
    pub totals: Qoe,
    pub series: Vec<Series>,
}

impl Serialize for Dimension {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The smallest grouping that holds what the query needs.
fn grouping_for(by: Option<Dimension>, filters: &Filters) -> Grouping {
    let mut needed = filters.dimensions();
    needed.extend(by);
    needed.sort();
    needed.dedup();
    match needed.as_slice() {
        [] => Grouping::All,
        [only] => Grouping::By(*only),
        [Dimension::Title, Dimension::Country] => Grouping::TitleCountry,
        _ => Grouping::Full,
    }
}

/// Checks a query's bounds; the message names the parameter.
pub fn check(query: &QoeQuery) -> Result<(), AnalyticsError> {
    if query.from_ms < 0 || query.to_ms < query.from_ms {
        return Err(AnalyticsError::Invalid(
            "`from` and `to` must be epoch ms with from <= to".to_owned(),
        ));
    }
    let step = query.resolution.millis();
    let points = (query.to_ms - query.from_ms) / step + 1;
    if points > MAX_POINTS {
        return Err(AnalyticsError::Invalid(format!(
            "`from`..`to` holds {points} points at `resolution` {:?}; at most {MAX_POINTS}: \
             use a coarser resolution or a shorter span",
            query.resolution
        )));
    }
    Ok(())
}

pub async fn qoe(store: &dyn RollupStore, query: &QoeQuery) -> Result<QoeAnswer, AnalyticsError> {
    check(query)?;
    let grouping = grouping_for(query.by, &query.filters);
    let step = query.resolution.millis();
    let rows = store
        .read(grouping, minute_of(query.from_ms), minute_of(query.to_ms))
        .await?;
    let mut series: HashMap<Option<String>, BTreeMap<i64, Measures>> = HashMap::new();
    let mut overall = Measures::default();
    for row in rows.iter().filter(|row| query.filters.admit(&row.key.dims)) {
        let key = query.by.map(|by| row.key.dims.value(by));
        let bucket = row.key.minute.div_euclid(step) * step;
        series
            .entry(key)
            .or_default()
            .entry(bucket)
            .or_default()
            .merge(&row.measures);
        overall.merge(&row.measures);
    }
    let mut answered: Vec<Series> = series
        .into_iter()
        .map(|(key, buckets)| {
            let mut totals = Measures::default();
            let points = buckets
                .into_iter()
                .map(|(t, measures)| {
                    totals.merge(&measures);
                    Point {
                        t,
                        qoe: measures.qoe(),
                    }
                })
                .collect();
            Series {
                key,
                totals: totals.qoe(),
                points,
            }
        })
        .collect();
    answered.sort_by(|a, b| {
        b.totals
            .views
            .cmp(&a.totals.views)
            .then(b.totals.events.cmp(&a.totals.events))
            .then(a.key.cmp(&b.key))
    });
    answered.truncate(query.limit.clamp(1, MAX_SERIES));
    Ok(QoeAnswer {
        from: query.from_ms,
        to: query.to_ms,
        by: query.by,
        resolution: query.resolution,
        grouping: grouping.as_str(),
        totals: overall.qoe(),
        series: answered,
    })
}

/// Minutes the live view shows.
pub const LIVE_MINUTES: i64 = 15;
/// Minutes the ranking of dimensions looks at.
pub const IMPACT_MINUTES: i64 = 5;
/// Values ranked per dimension.
pub const IMPACT_TOP: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Impact {
    pub value: String,
    /// Failed or abandoned starts, playback failures and stalls in the last minutes.
    pub negative_impact: u64,
    #[serde(flatten)]
    pub qoe: Qoe,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveAnswer {
    pub now: i64,
    pub concurrent_viewers: u64,
    /// `now` minus the newest arrival the rollups hold (`null` before any).
    pub lag_ms: Option<i64>,
    pub minutes: Vec<Point>,
    /// Per dimension, the values that hurt the audience most over the last minutes, worst
    /// first.
    pub worst: BTreeMap<&'static str, Vec<Impact>>,
}

/// The live view; `worst_of` names the dimensions whose worst values are ranked (titles are
/// most of the rows a ranking reads: a dashboard refreshing every few seconds leaves them out).
pub async fn live(
    store: &dyn RollupStore,
    sessions: &dyn SessionStore,
    now_ms: i64,
    worst_of: &[Dimension],
) -> Result<LiveAnswer, AnalyticsError> {
    let this_minute = minute_of(now_ms);
    let rows = store
        .read(
            Grouping::All,
            this_minute - (LIVE_MINUTES - 1) * MINUTE_MS,
            this_minute,
        )
        .await?;
    let mut minutes: BTreeMap<i64, Measures> = BTreeMap::new();
    for row in &rows {
        minutes
            .entry(row.key.minute)
            .or_default()
            .merge(&row.measures);
    }
    let newest = minutes
        .values()
        .map(|m| m.last_received_at)
        .max()
        .filter(|at| *at > 0);
    let mut worst = BTreeMap::new();
    for &dimension in worst_of {
        let rows = store
            .read(
                Grouping::By(dimension),
                this_minute - (IMPACT_MINUTES - 1) * MINUTE_MS,
                this_minute,
            )
            .await?;
        worst.insert(dimension.as_str(), rank(&rows, dimension));
    }
    Ok(LiveAnswer {
        now: now_ms,
        concurrent_viewers: sessions.concurrent(now_ms).await?,
        lag_ms: newest.map(|at| (now_ms - at).max(0)),
        minutes: minutes
            .into_iter()
            .map(|(t, measures)| Point {
                t,
                qoe: measures.qoe(),
            })
            .collect(),
        worst,
    })
}

fn rank(rows: &[RollupRow], dimension: Dimension) -> Vec<Impact> {
    let mut values: HashMap<String, Measures> = HashMap::new();
    for row in rows {
        values
            .entry(row.key.dims.value(dimension))
            .or_default()
            .merge(&row.measures);
    }
    let mut ranked: Vec<Impact> = values
        .into_iter()
        .filter(|(_, measures)| measures.negative_impact() > 0)
        .map(|(value, measures)| Impact {
            negative_impact: measures.negative_impact(),
            qoe: measures.qoe(),
            value,
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.negative_impact
            .cmp(&a.negative_impact)
            .then_with(|| (a.value == UNKNOWN).cmp(&(b.value == UNKNOWN)))
            .then_with(|| a.value.cmp(&b.value))
    });
    ranked.truncate(IMPACT_TOP);
    ranked
}
