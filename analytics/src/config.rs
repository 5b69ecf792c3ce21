//! The `[analytics]` settings section, and building the ports it names.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::index::{OpenSearchRollups, RollupIndex};
use crate::sessions::{MemorySessions, RedisSessions, SessionStore};
use crate::sidepath::{AnalyticsSettings, AnalyticsSinks};
use crate::store::cassandra::{CassandraRollups, CassandraRollupsConfig};
use crate::store::sqlite::SqliteRollups;
use crate::store::{AnalyticsError, RollupStore};
use crate::trending::{MemoryTrending, RedisTrending, TrendingStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollupStoreKind {
    Sqlite,
    Cassandra,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveStoreKind {
    Memory,
    Redis,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsSection {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub retain: Duration,
    pub store: RollupStoreKind,
    /// Empty: `<embedded.data_dir>/analytics/rollups.sqlite`.
    pub sqlite_path: PathBuf,
    pub keyspace: String,
    /// How long Cassandra keeps a minute's rows.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Trending and live sessions.
    pub live: LiveStoreKind,
    #[serde(with = "humantime_serde")]
    pub trending_half_life: Duration,
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub continue_ttl: Duration,
    /// Empty: rollups are not indexed into OpenSearch.
    pub opensearch_url: String,
    pub opensearch_index: String,
    /// Names this node's rollup rows (a random suffix per run is added).
    pub node: String,
}

/// The connection details of engines configured in other sections.
#[derive(Debug, Clone)]
pub struct Engines {
    pub data_dir: PathBuf,
    pub cassandra_nodes: Vec<String>,
    pub cassandra_replication: String,
    pub cassandra_local_datacenter: String,
    pub cassandra_request_timeout: Duration,
    pub redis_url: String,
    pub redis_key_prefix: String,
}

impl AnalyticsSection {
    pub fn settings(&self) -> AnalyticsSettings {
        AnalyticsSettings {
            flush_interval: self.flush_interval,
            retain: self.retain,
        }
    }

    /// Rules types do not express: `(setting, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let positive = [
            ("analytics.flush_interval", self.flush_interval),
            ("analytics.trending_half_life", self.trending_half_life),
            ("analytics.session_ttl", self.session_ttl),
            ("analytics.continue_ttl", self.continue_ttl),
            ("analytics.retention", self.retention),
        ];
        for (setting, value) in positive {
            if value.is_zero() {
                return Err((setting.to_owned(), "must be more than 0".to_owned()));
            }
        }
        if self.retention.as_secs() > i32::MAX as u64 {
            return Err(("analytics.retention".to_owned(), "is too long".to_owned()));
        }
        Ok(())
    }

    pub fn sqlite_path(&self, data_dir: &Path) -> PathBuf {
        if self.sqlite_path.as_os_str().is_empty() {
            data_dir.join("analytics").join("rollups.sqlite")
        } else {
            self.sqlite_path.clone()
        }
    }

    /// Opens the ports the section names (Redis lazily: it may be down while the service
    /// starts).
    pub async fn open(&self, engines: &Engines) -> Result<AnalyticsSinks, AnalyticsError> {
        let rollups: Arc<dyn RollupStore> = match self.store {
            RollupStoreKind::Sqlite => {
                Arc::new(SqliteRollups::open(&self.sqlite_path(&engines.data_dir)).await?)
            }
            RollupStoreKind::Cassandra => Arc::new(
                CassandraRollups::connect(&CassandraRollupsConfig {
                    nodes: engines.cassandra_nodes.clone(),
                    keyspace: self.keyspace.clone(),
                    replication: engines.cassandra_replication.clone(),
                    local_datacenter: engines.cassandra_local_datacenter.clone(),
                    request_timeout: engines.cassandra_request_timeout,
                    ttl_seconds: self.retention.as_secs() as u32,
                })
                .await?,
            ),
        };
        let (trending, sessions): (Arc<dyn TrendingStore>, Arc<dyn SessionStore>) = match self.live
        {
            LiveStoreKind::Memory => (
                Arc::new(MemoryTrending::new(self.trending_half_life)),
                Arc::new(MemorySessions::new(self.session_ttl)),
            ),
            LiveStoreKind::Redis => {
                let connection =
                    crate::redis_connection(&engines.redis_url, Duration::from_secs(2))?;
                (
                    Arc::new(RedisTrending::new(
                        connection.clone(),
                        self.trending_half_life,
                        &engines.redis_key_prefix,
                    )),
                    Arc::new(RedisSessions::new(
                        connection,
                        self.session_ttl,
                        self.continue_ttl,
                        &engines.redis_key_prefix,
                    )),
                )
            }
        };
        let index: Option<Arc<dyn RollupIndex>> = if self.opensearch_url.is_empty() {
            None
        } else {
            Some(Arc::new(
                OpenSearchRollups::connect(
                    &self.opensearch_url,
                    &self.opensearch_index,
                    Duration::from_secs(10),
                )
                .await?,
            ))
        };
        Ok(AnalyticsSinks {
            rollups,
            index,
            trending,
            sessions,
        })
    }

    /// This run's writer id: the node's name and a random suffix, so that a restarted node
    /// never overwrites the rows its previous run wrote.
    pub fn writer(&self) -> String {
        let run = uuid::Uuid::new_v4().simple().to_string();
        format!("{}-{}", self.node, &run[..8])
    }
}
