//! The platform's settings: the `[platform]` section of the service's settings
//! (`platform.enabled` and `[platform.commands]`, `[platform.read_model]`, `[platform.outbox]`,
//! `[platform.recommendations]`), with defaults in config/default.toml.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStoreKind {
    /// A SQLite file: the embedded default.
    Sqlite,
    /// PostgreSQL at `postgres_url`.
    Postgres,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandsSettings {
    pub kind: CommandStoreKind,
    /// Empty: `<embedded.data_dir>/platform/commands.sqlite`.
    pub sqlite_path: PathBuf,
    pub postgres_url: String,
    pub postgres_max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub charge_timeout: Duration,
    pub charge_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub idempotency_key_lease: Duration,
    #[serde(with = "humantime_serde")]
    pub idempotency_key_retention: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadModelKind {
    /// A local SQLite file of its own: the embedded default.
    Local,
    /// Tables in `keyspace` on the `[cassandra]` nodes.
    Cassandra,
    /// Unlogged tables in `postgres_schema` of the command store's PostgreSQL
    /// (`commands.postgres_url`).
    Postgres,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadModelSettings {
    pub kind: ReadModelKind,
    /// Empty: `<embedded.data_dir>/platform/read_model.sqlite`.
    pub local_path: PathBuf,
    pub keyspace: String,
    pub postgres_schema: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSettings {
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    pub batch_size: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendationsSettings {
    /// How long a cached answer lives.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How long a cached profile lives.
    #[serde(with = "humantime_serde")]
    pub profile_ttl: Duration,
    /// Titles per answer.
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GraphKind {
    /// The in-process graph: the embedded default.
    Memory,
    /// Neo4j over Bolt at `neo4j_uri`.
    Neo4j,
}

/// `[platform.graph]`: where recommendations and fraud rings are computed from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSettings {
    pub kind: GraphKind,
    pub neo4j_uri: String,
    pub neo4j_user: String,
    pub neo4j_password: String,
    /// Prefixed to every label: several graphs side by side in one Neo4j database (Community
    /// Edition has one). Letters, digits and `_`; empty: `User`, `Title`, ...
    pub neo4j_label_prefix: String,
    /// Bounds every Neo4j call (writes of the feeder, reads of the refreshes).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Feed the graph from ingest's durable playback events (a side path).
    pub feed_playback: bool,
    /// How long the feeder coalesces before a write.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Updates the feeder holds at most while the graph is slow or down; beyond: dropped, counted.
    pub max_pending: usize,
    /// Batches queued for the feeder at most; beyond: dropped, counted.
    pub queue_batches: usize,
    /// How often changed titles' similar titles and changed users' lists are recomputed.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// How often every title's similar titles are recomputed.
    #[serde(with = "humantime_serde")]
    pub full_refresh_interval: Duration,
    /// How co-watching becomes a similarity: `jaccard` or `cosine`.
    pub similarity: graph::similarity::Measure,
    /// Similar titles kept per title.
    pub top_k: usize,
    /// Viewers of more titles than this say nothing of taste: left out of co-watching.
    pub max_viewer_titles: u64,
    /// Titles watched by more than this share of viewers are hubs, never similar titles.
    pub hub_share: f64,
    /// Fewer viewers in common than this is noise.
    pub min_together: u64,
    /// How far back `trending` looks.
    #[serde(with = "humantime_serde")]
    pub trending_window: Duration,
    /// How often fraud rings are recomputed (when new links arrived).
    #[serde(with = "humantime_serde")]
    pub rings_interval: Duration,
    /// Identifiers two accounts must share to be linked.
    pub ring_min_shared: usize,
    /// Identifiers used by more accounts than this link no one.
    pub ring_max_accounts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchKind {
    /// tantivy, in process, in a directory: the embedded default.
    Tantivy,
    /// OpenSearch at `opensearch_url`.
    Opensearch,
}

/// `[platform.search]`: where the catalog is searched.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSettings {
    pub kind: SearchKind,
    /// Empty: `<embedded.data_dir>/platform/search`.
    pub path: PathBuf,
    pub opensearch_url: String,
    /// The alias searches go through; generations are named `{alias}-{n}`.
    pub alias: String,
    /// Bounds every OpenSearch call.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long an idle catalog projector waits before looking again (commits wake it sooner).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Catalog events applied per round.
    pub batch_size: u32,
    /// How often titles' popularity (viewers in the graph) is pushed to the index.
    #[serde(with = "humantime_serde")]
    pub popularity_interval: Duration,
}

/// The `[platform]` section, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformSection {
    /// Run the platform at all: its routes, relay, projectors and view recorder.
    pub enabled: bool,
    pub commands: CommandsSettings,
    pub read_model: ReadModelSettings,
    pub outbox: OutboxSettings,
    pub recommendations: RecommendationsSettings,
    pub graph: GraphSettings,
    pub search: SearchSettings,
}

/// Where the Cassandra read model connects (the service's `[cassandra]` section).
#[derive(Debug, Clone)]
pub struct CassandraConnection {
    pub nodes: Vec<String>,
    pub replication: String,
    pub local_datacenter: String,
    pub request_timeout: Duration,
}

/// Everything the platform needs, gathered by the service that hosts it.
#[derive(Debug, Clone)]
pub struct PlatformSettings {
    pub commands: CommandsSettings,
    pub read_model: ReadModelSettings,
    pub outbox: OutboxSettings,
    pub recommendations: RecommendationsSettings,
    pub graph: GraphSettings,
    pub search: SearchSettings,
    /// Where the embedded files go by default.
    pub data_dir: PathBuf,
    pub cassandra: CassandraConnection,
}

/// A setting that cannot be used, named.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting `{setting}`: {message}")]
pub struct SettingError {
    pub setting: &'static str,
    pub message: String,
}

impl PlatformSettings {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), SettingError> {
        let fail = |setting, message: &str| {
            Err(SettingError {
                setting,
                message: message.to_owned(),
            })
        };
        if self.commands.idempotency_key_retention < Duration::from_secs(24 * 3600) {
            return fail(
                "platform.commands.idempotency_key_retention",
                "must be at least 24h (the API promises a day of retries)",
            );
        }
        if self.commands.charge_attempts == 0 {
            return fail("platform.commands.charge_attempts", "must be at least 1");
        }
        if self.commands.charge_timeout.is_zero() {
            return fail("platform.commands.charge_timeout", "must be more than 0");
        }
        if self.commands.postgres_max_connections == 0 {
            return fail(
                "platform.commands.postgres_max_connections",
                "must be at least 1",
            );
        }
        if self.outbox.batch_size == 0 {
            return fail("platform.outbox.batch_size", "must be at least 1");
        }
        if self.outbox.poll_interval.is_zero() {
            return fail("platform.outbox.poll_interval", "must be more than 0");
        }
        if self.recommendations.ttl.is_zero() || self.recommendations.profile_ttl.is_zero() {
            return fail("platform.recommendations.ttl", "must be more than 0");
        }
        if self.recommendations.limit == 0 {
            return fail("platform.recommendations.limit", "must be at least 1");
        }
        let graph = &self.graph;
        for (setting, interval) in [
            ("platform.graph.request_timeout", graph.request_timeout),
            ("platform.graph.flush_interval", graph.flush_interval),
            ("platform.graph.refresh_interval", graph.refresh_interval),
            (
                "platform.graph.full_refresh_interval",
                graph.full_refresh_interval,
            ),
            ("platform.graph.trending_window", graph.trending_window),
            ("platform.graph.rings_interval", graph.rings_interval),
        ] {
            if interval.is_zero() {
                return fail(setting, "must be more than 0");
            }
        }
        for (setting, count) in [
            ("platform.graph.max_pending", graph.max_pending),
            ("platform.graph.queue_batches", graph.queue_batches),
            ("platform.graph.top_k", graph.top_k),
            ("platform.graph.ring_min_shared", graph.ring_min_shared),
        ] {
            if count == 0 {
                return fail(setting, "must be at least 1");
            }
        }
        if !(graph.hub_share > 0.0 && graph.hub_share <= 1.0) {
            return fail("platform.graph.hub_share", "must be in (0, 1]");
        }
        if graph.ring_max_accounts < 2 {
            return fail("platform.graph.ring_max_accounts", "must be at least 2");
        }
        if graph.kind == GraphKind::Neo4j && graph.neo4j_uri.trim().is_empty() {
            return fail(
                "platform.graph.neo4j_uri",
                "is required when kind = \"neo4j\"",
            );
        }
        let search = &self.search;
        for (setting, interval) in [
            ("platform.search.request_timeout", search.request_timeout),
            ("platform.search.poll_interval", search.poll_interval),
            (
                "platform.search.popularity_interval",
                search.popularity_interval,
            ),
        ] {
            if interval.is_zero() {
                return fail(setting, "must be more than 0");
            }
        }
        if search.batch_size == 0 {
            return fail("platform.search.batch_size", "must be at least 1");
        }
        let alias_ok = !search.alias.is_empty()
            && search.alias.len() <= 100
            && !search.alias.starts_with(['-', '_', '.'])
            && search
                .alias
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b));
        if !alias_ok {
            return fail(
                "platform.search.alias",
                "must be lower-case letters, digits, `-` and `_` (an OpenSearch index name)",
            );
        }
        if search.kind == SearchKind::Opensearch && search.opensearch_url.trim().is_empty() {
            return fail(
                "platform.search.opensearch_url",
                "is required when kind = \"opensearch\"",
            );
        }
        let keyspace = &self.read_model.keyspace;
        if keyspace.is_empty()
            || !keyspace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return fail(
                "platform.read_model.keyspace",
                "must be letters, digits and underscores",
            );
        }
        Ok(())
    }

    pub fn sqlite_path(&self) -> PathBuf {
        if self.commands.sqlite_path.as_os_str().is_empty() {
            self.data_dir.join("platform").join("commands.sqlite")
        } else {
            self.commands.sqlite_path.clone()
        }
    }

    pub fn search_path(&self) -> PathBuf {
        if self.search.path.as_os_str().is_empty() {
            self.data_dir.join("platform").join("search")
        } else {
            self.search.path.clone()
        }
    }

    pub fn read_model_path(&self) -> PathBuf {
        if self.read_model.local_path.as_os_str().is_empty() {
            self.data_dir.join("platform").join("read_model.sqlite")
        } else {
            self.read_model.local_path.clone()
        }
    }
}
