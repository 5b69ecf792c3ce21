//! Rollup cells: one per minute and combination of title, country, device and CDN, plus the
//! same minute grouped by each dimension alone and by nothing (the whole audience), so that a
//! query by one dimension reads one row per value and minute instead of the cross product.

use std::fmt;

use wire::{CountryCode, PlaybackEvent, SmolStr};

pub const MINUTE_MS: i64 = 60_000;

/// The start of the minute `ts` falls in (epoch ms, UTC).
pub fn minute_of(ts: i64) -> i64 {
    ts.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// A dimension an audience is sliced by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    Title,
    Country,
    Device,
    Cdn,
}

impl Dimension {
    pub const ALL: [Dimension; 4] = [
        Dimension::Title,
        Dimension::Country,
        Dimension::Device,
        Dimension::Cdn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Title => "title",
            Dimension::Country => "country",
            Dimension::Device => "device",
            Dimension::Cdn => "cdn",
        }
    }

    pub fn parse(text: &str) -> Option<Dimension> {
        Dimension::ALL
            .into_iter()
            .find(|dimension| dimension.as_str() == text)
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which dimensions a stored row keeps; the others are left at their empty value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grouping {
    /// Every dimension: what filters on several dimensions read.
    Full,
    By(Dimension),
    /// Title and country: what trending is rebuilt from.
    TitleCountry,
    /// The whole audience.
    All,
}

impl Grouping {
    pub const ALL: [Grouping; 7] = [
        Grouping::Full,
        Grouping::TitleCountry,
        Grouping::By(Dimension::Title),
        Grouping::By(Dimension::Country),
        Grouping::By(Dimension::Device),
        Grouping::By(Dimension::Cdn),
        Grouping::All,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Grouping::Full => "full",
            Grouping::By(dimension) => dimension.as_str(),
            Grouping::TitleCountry => "title_country",
            Grouping::All => "all",
        }
    }

    pub fn parse(text: &str) -> Option<Grouping> {
        Grouping::ALL
            .into_iter()
            .find(|grouping| grouping.as_str() == text)
    }

    /// The dimensions of a full cell this grouping keeps.
    pub fn project(self, dims: &Dims) -> Dims {
        match self {
            Grouping::Full => dims.clone(),
            Grouping::All => Dims::default(),
            Grouping::TitleCountry => Dims {
                title: dims.title,
                country: dims.country,
                ..Dims::default()
            },
            Grouping::By(dimension) => {
                let mut kept = Dims::default();
                match dimension {
                    Dimension::Title => kept.title = dims.title,
                    Dimension::Country => kept.country = dims.country,
                    Dimension::Device => kept.device = dims.device.clone(),
                    Dimension::Cdn => kept.cdn = dims.cdn.clone(),
                }
                kept
            }
        }
    }
}

/// An event's dimensions. `None` is "not sent" (shown as `unknown`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dims {
    pub title: Option<u64>,
    pub country: Option<CountryCode>,
    pub device: Option<SmolStr>,
    pub cdn: Option<SmolStr>,
}

impl Dims {
    pub fn of(event: &PlaybackEvent) -> Dims {
        Dims {
            title: Some(event.content_id),
            country: event.country,
            device: event.device.clone(),
            cdn: event.cdn.clone(),
        }
    }

    /// One dimension's value as the API shows it.
    pub fn value(&self, dimension: Dimension) -> String {
        let text = |value: &Option<SmolStr>| value.as_deref().unwrap_or(UNKNOWN).to_owned();
        match dimension {
            Dimension::Title => self
                .title
                .map_or_else(|| UNKNOWN.to_owned(), |id| id.to_string()),
            Dimension::Country => self
                .country
                .map_or_else(|| UNKNOWN.to_owned(), |c| c.to_string()),
            Dimension::Device => text(&self.device),
            Dimension::Cdn => text(&self.cdn),
        }
    }
}

/// How an absent dimension is shown and filtered on.
pub const UNKNOWN: &str = "unknown";

/// A cell: a minute and its dimensions, in one grouping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    pub grouping: Grouping,
    pub minute: i64,
    pub dims: Dims,
}

/// One writer's part of a cell, as stored: each ingest node (and each run of it) writes only its
/// own parts, whole, so a rewrite is idempotent and a read merges the parts.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    pub key: CellKey,
    pub writer: String,
    pub measures: crate::measures::Measures,
}
