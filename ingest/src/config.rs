//! Ingest's sections of the settings (`[server]`, `[pipeline]`, `[sink]`, `[embedded]`,
//! `[cache]`, `[redis]`, `[invalidation]`), as written. The service's composition root layers and
//! checks them (crate `playpulse`); each section's `Default` is what the compiled-in
//! `config/default.toml` says.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

pub use event_cql::HistoryLayout;

use crate::sink::packed::ChunkLimits;

/// The section `name` of `config/default.toml`.
fn default_section<T: DeserializeOwned>(name: &str) -> T {
    let mut file: toml::Table = include_str!("../../config/default.toml")
        .parse()
        .expect("TOML");
    let section = file
        .remove(name)
        .expect("config/default.toml has every section");
    section
        .try_into()
        .expect("config/default.toml is valid: checked by its tests")
}

macro_rules! default_from_file {
    ($($settings:ty => $section:literal),* $(,)?) => {
        $(impl Default for $settings {
            fn default() -> Self {
                default_section($section)
            }
        })*
    };
}

default_from_file! {
    ServerSettings => "server",
    PipelineSettings => "pipeline",
    SinkSettings => "sink",
    EmbeddedSettings => "embedded",
    CacheSettings => "cache",
    RedisSettings => "redis",
    InvalidationSettings => "invalidation",
    ChunkSettings => "chunks",
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub max_body_bytes: NonZeroUsize,
    pub max_events_per_request: NonZeroUsize,
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Connections served at once; past it a new one gets a 503 and is closed.
    pub max_connections: NonZeroUsize,
    /// Connections one client address may hold at once.
    pub max_connections_per_client: NonZeroUsize,
    /// A request head must arrive whole within this long of its connection becoming idle (so
    /// idle keep-alive connections close after it too).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A request body must arrive whole within this long of its head.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    pub shards: NonZeroUsize,
    pub batch_max_events: NonZeroUsize,
    pub batch_max_bytes: NonZeroUsize,
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    pub max_in_flight_batches: NonZeroUsize,
    pub max_in_flight_bytes: NonZeroUsize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    Embedded,
    Cassandra,
    Postgres,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSettings {
    pub kind: SinkKind,
    /// An event expires this long after it was written.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedSettings {
    pub data_dir: PathBuf,
    pub layout: HistoryLayout,
    pub segment_bytes: NonZeroUsize,
    pub fsync: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheKind {
    Memory,
    Redis,
    /// An unlogged table on `[postgres]`.
    Postgres,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    pub kind: CacheKind,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: String,
    pub key_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidationSettings {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Key patterns with `{user_id}`.
    pub keys: Vec<String>,
    pub max_pending_users: NonZeroUsize,
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

/// When an open chunk of the packed layout closes (`[chunks]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkSettings {
    pub max_events: NonZeroUsize,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    pub max_open_bytes: NonZeroUsize,
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
}

impl ChunkSettings {
    pub fn limits(&self) -> ChunkLimits {
        ChunkLimits {
            max_events: self.max_events.get(),
            max_age: self.max_age,
            max_open_bytes: self.max_open_bytes.get(),
            commit_interval: self.commit_interval,
        }
    }
}

impl InvalidationSettings {
    /// Whether one of `keys` is the key `key_of` names (e.g. `wire::keys::recommendations`).
    pub fn invalidates(&self, key_of: fn(u64) -> String) -> bool {
        self.keys
            .iter()
            .any(|pattern| wire::keys::expand(pattern, 1) == key_of(1))
    }
}
