//! The search port: the catalog's titles, searched as the user types.
//!
//! [`TantivyIndex`] runs in process on the embedded default; [`OpenSearchIndex`] talks to
//! OpenSearch 2.19 over its REST API. Both answer the same [`SearchRequest`] the same way, and one
//! contract suite (`tests/contract.rs`) with one relevance suite (`tests/relevance.rs`) runs on
//! both. What a query means is written once, in [`query`]:
//!
//! - `q` is split into words (letters and digits; lower-cased, accents folded). Every word must
//!   match one of the fields (title, original title, cast, crew, synopsis), the title weighing
//!   most. A word of 5 to 8 characters may be one edit away, one of 9 or more two edits, a
//!   shorter one must be exact (transpositions count as one edit). Cast and crew are scored
//!   without length norms: a name matches or not, however many others a title lists. A
//!   synopsis is not searched for stop words ([`query::SYNOPSIS_STOP_WORDS`]).
//! - The last word, unless `q` ends in a space, is what the user is still typing: it also
//!   matches as a prefix of a word of the title, original title or cast. A lone first letter
//!   only matches titles (or original titles) that start with it.
//! - Typos are looked for only when the words as typed find nothing (as Typesense does by
//!   default): a query that matches as typed never pays for the fuzzy expansions, and results
//!   never mix exact and typo matches.
//! - Filters narrow without scoring: genre, year range, language (audio or subtitles),
//!   maturity, and country = available there on the request's day.
//! - A query whose words are exactly a title's (or original title's) words scores
//!   [`EXACT_TITLE_BOOST`] more: whoever types a whole title wants that title.
//! - The score is BM25, times `1 + 0.1 ln(1 + popularity)`: how much a title is watched lifts
//!   it, without letting a popular title bury an exact match.
//! - Ties break on the lower id; pages follow a cursor (`after`), never an offset.
//!
//! Writes are versioned: a change older than what the index holds for that title (a replay, a
//! reorder) is ignored, and a deleted title stays a tombstone so that no late upsert brings it
//! back. A rebuild fills a new generation and then switches the index's alias to it.

pub mod cursor;
pub mod day;
mod highlight;
pub mod opensearch;
pub mod query;
pub mod tantivy_index;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use cursor::Cursor;
pub use opensearch::{OpenSearchIndex, OpenSearchOptions};
pub use tantivy_index::TantivyIndex;

/// Days since 1970-01-01 (UTC): availability windows and "today" are dates.
pub type Day = i32;

/// One title of the catalog, as the command side keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Title {
    pub id: u64,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_title: Option<String>,
    #[serde(default)]
    pub synopsis: String,
    /// Lower-case slugs (`drama`, `science-fiction`).
    #[serde(default)]
    pub genres: Vec<String>,
    pub year: u16,
    #[serde(default)]
    pub runtime_minutes: u32,
    /// A rating such as `PG-13` or `TV-MA`, upper case.
    pub maturity: String,
    #[serde(default)]
    pub cast: Vec<String>,
    #[serde(default)]
    pub crew: Vec<String>,
    /// ISO 639-1 codes, lower case.
    #[serde(default)]
    pub audio_languages: Vec<String>,
    #[serde(default)]
    pub subtitle_languages: Vec<String>,
    #[serde(default)]
    pub availability: Vec<Availability>,
}

/// Where and when a title can be watched: `country` (ISO 3166-1 alpha-2, upper case) from the
/// day `from` through the day `until` (both included; none: no end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    pub country: CountryCode,
    pub from: Day,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Day>,
}

impl Availability {
    pub fn covers(&self, country: CountryCode, day: Day) -> bool {
        self.country == country && self.from <= day && self.until.is_none_or(|until| day <= until)
    }
}

/// Two upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    pub fn parse(text: &str) -> Option<CountryCode> {
        match text.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => Some(CountryCode([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
            ])),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        // Two ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// The code as a number (for packing into a fast field).
    pub fn as_u16(&self) -> u16 {
        u16::from_be_bytes(self.0)
    }
}

impl Serialize for CountryCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CountryCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        CountryCode::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("bad country code {text:?}")))
    }
}

impl Title {
    /// The decade a title's facet counts it in (1994 -> 1990).
    pub fn decade(&self) -> u16 {
        self.year / 10 * 10
    }

    /// The title and the original title as their analysed words joined by single spaces: what a
    /// query matching a whole title is compared with.
    pub fn title_keys(&self) -> Vec<String> {
        let mut analyzer = query::analyzer();
        let mut keys: Vec<String> = std::iter::once(&self.title)
            .chain(&self.original_title)
            .map(|text| query::words(&mut analyzer, text).join(" "))
            .filter(|key| !key.is_empty())
            .collect();
        keys.dedup();
        keys
    }

    /// The first letter of the title and of the original title: what a lone letter matches.
    pub fn initials(&self) -> Vec<String> {
        let mut initials: Vec<String> = self
            .title_keys()
            .iter()
            .filter_map(|key| key.chars().next())
            .map(String::from)
            .collect();
        initials.dedup();
        initials
    }

    /// Audio and subtitle languages, each once: what the `language` filter and facet see.
    pub fn languages(&self) -> Vec<String> {
        let mut languages: Vec<String> = self
            .audio_languages
            .iter()
            .chain(&self.subtitle_languages)
            .cloned()
            .collect();
        languages.sort();
        languages.dedup();
        languages
    }
}

/// One versioned change to the index. `version` grows by one per change of a title on the
/// command side; the index keeps the highest it saw.
/// A delete is small and an upsert big; changes live in short batches, so not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TitleChange {
    Upsert { title: Title, version: u64 },
    Delete { id: u64, version: u64 },
}

impl TitleChange {
    pub fn id(&self) -> u64 {
        match self {
            TitleChange::Upsert { title, .. } => title.id,
            TitleChange::Delete { id, .. } => *id,
        }
    }

    pub fn version(&self) -> u64 {
        match self {
            TitleChange::Upsert { version, .. } | TitleChange::Delete { version, .. } => *version,
        }
    }
}

/// What a batch of changes did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Changes newer than what the index held.
    pub written: u64,
    /// Changes the index already held, or held something newer than.
    pub stale: u64,
}

/// Filters: each narrows the result, none scores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub genre: Option<String>,
    pub year_from: Option<u16>,
    pub year_to: Option<u16>,
    /// Audio or subtitles in this language.
    pub language: Option<String>,
    /// Available in this country on the request's `today`.
    pub country: Option<CountryCode>,
    /// Any of these ratings.
    pub maturity: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    /// What the user typed; empty: every title the filters let through, most watched first.
    pub q: String,
    pub filters: Filters,
    pub limit: usize,
    /// The page after this one (from a previous [`SearchResponse::next`]).
    pub after: Option<Cursor>,
    /// Count genres, decades and languages over every match (as-you-type boxes skip them).
    pub facets: bool,
    /// The day `country` availability is checked on.
    pub today: Day,
}

/// Most results a page holds.
pub const MAX_LIMIT: usize = 100;

/// Serialised with the cursor encoded ([`cursor`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResponse {
    /// How many titles match (all pages).
    pub total: u64,
    pub hits: Vec<Hit>,
    pub facets: Option<Facets>,
    /// The cursor of the next page; none on the last page.
    pub next: Option<Cursor>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub id: u64,
    pub title: String,
    pub year: u16,
    pub genres: Vec<String>,
    pub maturity: String,
    pub score: f32,
    pub highlights: Highlights,
}

/// The matched words wrapped in `<em>`...`</em>`, the rest HTML-escaped; none when nothing in
/// that field matched.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Highlights {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synopsis: Option<String>,
}

/// Counts over every match, most frequent first (ties: by value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Facets {
    pub genres: Vec<FacetCount>,
    pub decades: Vec<FacetCount>,
    pub languages: Vec<FacetCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FacetCount {
    pub value: String,
    pub count: u64,
}

/// Facet values kept per facet.
pub const FACET_SIZE: usize = 20;

/// Orders facet counts the way both indexes answer: most frequent first, then by value.
pub fn sort_facet(counts: &mut Vec<FacetCount>) {
    counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    counts.truncate(FACET_SIZE);
}

/// The boost popularity gives: `1 + 0.1 ln(1 + popularity)`.
pub fn popularity_boost(popularity: f32) -> f32 {
    1.0 + POPULARITY_WEIGHT * popularity.max(0.0).ln_1p()
}

pub const POPULARITY_WEIGHT: f32 = 0.1;

/// The score of a title a lone first letter matches (before the popularity boost): the same
/// for all of them, so the most watched come first.
pub const INITIAL_SCORE: f32 = 4.0;

/// What matching a whole title adds to the score (BM25 scores of a few words are a few units).
pub const EXACT_TITLE_BOOST: f32 = 20.0;

/// How big the index is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IndexStats {
    /// Live titles (tombstones not counted).
    pub titles: u64,
    pub size_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    /// The engine cannot be reached or failed; the caller may retry later.
    #[error("search engine unavailable: {0}")]
    Unavailable(String),
    /// The request cannot be answered as asked (a cursor from another query, ...).
    #[error("{0}")]
    BadRequest(String),
    /// The engine answered something this code cannot read.
    #[error("search engine answered unexpectedly: {0}")]
    Protocol(String),
}

#[async_trait]
pub trait SearchIndex: Send + Sync + 'static {
    /// Applies `changes` in order to the current generation; each is kept only if newer than
    /// what the index holds for its title. Visible to searches within about a second.
    async fn apply(&self, changes: &[TitleChange]) -> Result<Applied, SearchError>;

    /// How much each title is watched (titles the index does not hold are skipped).
    async fn set_popularity(&self, popularity: &[(u64, f32)]) -> Result<(), SearchError>;

    async fn search(&self, request: &SearchRequest) -> Result<SearchResponse, SearchError>;

    /// The version the index holds for `id` and whether it is live (false: a tombstone).
    async fn version_of(&self, id: u64) -> Result<Option<(u64, bool)>, SearchError>;

    /// Makes every applied change visible now (tests, benchmarks).
    async fn refresh(&self) -> Result<(), SearchError>;

    /// The name of the generation the alias points at.
    async fn generation(&self) -> Result<String, SearchError>;

    /// Starts a new, empty generation and returns its name; searches and [`Self::apply`] still
    /// go to the current one.
    async fn create_generation(&self) -> Result<String, SearchError>;

    /// Applies `changes` to the generation `name` (a rebuild in progress), versioned as
    /// [`Self::apply`] is.
    async fn apply_to(&self, name: &str, changes: &[TitleChange]) -> Result<Applied, SearchError>;

    /// Points the alias at `name` in one step and drops the generation it pointed at before.
    async fn switch_to(&self, name: &str) -> Result<(), SearchError>;

    async fn stats(&self) -> Result<IndexStats, SearchError>;

    async fn ready(&self) -> bool;
}
