//! The `[cassandra]` settings, checked and turned into driver types, and the session built
//! from them.

use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::client::PoolSize;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::retry::FallthroughRetryPolicy;
use scylla::statement::Consistency;

use crate::error::CassandraError;
use crate::settings::{CassandraSettings, HistoryLayout, WriteMode};

/// Cassandra's largest TTL (20 years), in seconds.
pub const MAX_TTL_SECONDS: u64 = 630_720_000;

/// Most rows `cassandra.max_in_flight_rows` may allow: far past what one process can use,
/// and well inside what the in-flight semaphore can count.
pub const MAX_IN_FLIGHT_ROWS: usize = 1 << 20;

/// How rows are grouped into requests, beyond the write mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Rows in one batch at most. A batch is one request that one coordinator applies; past a
    /// few hundred rows it only delays the first acknowledgement and unbalances the node.
    pub max_rows: usize,
    /// Estimated bytes of one batch that spans partitions, at most. Cassandra refuses a
    /// multi-partition batch past `batch_size_fail_threshold` (50 KiB by default) and logs a
    /// warning past `batch_size_warn_threshold` (5 KiB); single-partition batches are exempt.
    pub max_multi_partition_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_rows: 256,
            max_multi_partition_bytes: 40 * 1024,
        }
    }
}

/// Everything the sink needs, checked.
#[derive(Debug, Clone)]
pub struct CassandraConfig {
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// The keyspace's replication map, as CQL.
    pub replication: String,
    pub local_datacenter: String,
    pub consistency: Consistency,
    pub request_timeout: Duration,
    pub max_in_flight_rows: usize,
    pub write_mode: WriteMode,
    pub layout: HistoryLayout,
    /// This ingest node's name for its log (the packed layout).
    pub node_id: String,
    pub max_retries: u32,
    pub retry_backoff: Duration,
    /// Rows expire this long after they are written (`USING TTL`), in seconds.
    pub ttl_seconds: u32,
    pub batch_limits: BatchLimits,
    /// Connections to each node. One connection multiplexes thousands of requests; a second
    /// spreads the driver's I/O over two tasks.
    pub connections_per_node: usize,
}

impl CassandraConfig {
    /// Checks the settings; `retention` is `sink.retention`.
    pub fn from_settings(
        settings: &CassandraSettings,
        retention: Duration,
    ) -> Result<CassandraConfig, CassandraError> {
        if settings.nodes.is_empty() {
            return Err(CassandraError::config(
                "cassandra.nodes",
                "must name at least one node",
            ));
        }
        if !CassandraSettings::keyspace_is_identifier(&settings.keyspace) {
            return Err(CassandraError::config(
                "cassandra.keyspace",
                format!("`{}` is not a CQL identifier (a letter, then letters, digits or _; at most 48)", settings.keyspace),
            ));
        }
        if settings.local_datacenter.trim().is_empty() {
            return Err(CassandraError::config(
                "cassandra.local_datacenter",
                "must name the datacenter this service runs in",
            ));
        }
        if settings.request_timeout.is_zero() {
            return Err(CassandraError::config(
                "cassandra.request_timeout",
                "must be more than 0",
            ));
        }
        if settings.max_in_flight_rows.get() > MAX_IN_FLIGHT_ROWS {
            return Err(CassandraError::config(
                "cassandra.max_in_flight_rows",
                format!("must be at most {MAX_IN_FLIGHT_ROWS}"),
            ));
        }
        let replication = settings.replication.trim();
        if !(replication.starts_with('{') && replication.ends_with('}')) {
            return Err(CassandraError::config(
                "cassandra.replication",
                format!("`{replication}` is not a CQL map, e.g. {{'class': 'SimpleStrategy', 'replication_factor': 1}}"),
            ));
        }
        Ok(CassandraConfig {
            nodes: settings.nodes.clone(),
            keyspace: settings.keyspace.clone(),
            replication: replication.to_owned(),
            local_datacenter: settings.local_datacenter.clone(),
            consistency: parse_consistency(&settings.consistency)?,
            request_timeout: settings.request_timeout,
            max_in_flight_rows: settings.max_in_flight_rows.get(),
            write_mode: settings.write_mode,
            layout: settings.layout,
            node_id: node_id(&settings.node_id),
            max_retries: settings.max_retries,
            retry_backoff: settings.retry_backoff,
            ttl_seconds: ttl_seconds(retention)?,
            batch_limits: BatchLimits::default(),
            connections_per_node: 1,
        })
    }

    /// Opens a session: token-aware, local datacenter first, no retries inside the driver (the
    /// service retries with backoff, see ingest's `service.rs`), every request bounded by
    /// `request_timeout`.
    pub async fn connect(&self) -> Result<Session, CassandraError> {
        open_session(&SessionSpec {
            nodes: &self.nodes,
            keyspace: &self.keyspace,
            replication: &self.replication,
            local_datacenter: &self.local_datacenter,
            consistency: self.consistency,
            request_timeout: self.request_timeout,
            connections_per_node: self.connections_per_node,
            driver_retries: false,
        })
        .await
    }
}

/// What a session is opened with: the one session builder of every PlayPulse component that
/// talks to Cassandra (the event sink, `loadgen cassandra`, the platform's read models).
#[derive(Debug, Clone, Copy)]
pub struct SessionSpec<'a> {
    pub nodes: &'a [String],
    /// The keyspace whose schema the driver fetches (replica lookups need it).
    pub keyspace: &'a str,
    /// The keyspace's replication map, as CQL: decides whether to prefer `local_datacenter`.
    pub replication: &'a str,
    pub local_datacenter: &'a str,
    pub consistency: Consistency,
    pub request_timeout: Duration,
    /// One connection multiplexes thousands of requests; a second spreads the driver's I/O.
    pub connections_per_node: usize,
    /// Let the driver retry by its default policy; off where the caller retries with backoff.
    pub driver_retries: bool,
}

/// Opens a session: token-aware, the local datacenter preferred for per-datacenter
/// replication, every request bounded by `request_timeout`.
pub async fn open_session(spec: &SessionSpec<'_>) -> Result<Session, CassandraError> {
    let mut load_balancing = DefaultPolicy::builder().token_aware(true);
    if prefers_datacenter(spec.replication) {
        load_balancing = load_balancing
            .prefer_datacenter(spec.local_datacenter.to_owned())
            // Consistency is LOCAL_*: another datacenter's replicas cannot serve it anyway.
            .permit_dc_failover(false);
    }
    let mut profile = ExecutionProfile::builder()
        .consistency(spec.consistency)
        .request_timeout(Some(spec.request_timeout))
        .load_balancing_policy(load_balancing.build());
    if !spec.driver_retries {
        profile = profile.retry_policy(Arc::new(FallthroughRetryPolicy::new()));
    }
    let connections = std::num::NonZeroUsize::new(spec.connections_per_node.max(1))
        .expect("at least one connection");
    SessionBuilder::new()
        .known_nodes(spec.nodes)
        .default_execution_profile_handle(profile.build().into_handle())
        .pool_size(PoolSize::PerHost(connections))
        // Only our keyspace's schema: replica lookups need it, other keyspaces are noise.
        .keyspaces_to_fetch([spec.keyspace.to_owned()])
        // DDL (schema apply, a keyspace per test) waits for agreement; poll it briskly.
        .schema_agreement_interval(Duration::from_millis(50))
        .connection_timeout(spec.request_timeout.max(Duration::from_secs(1)))
        .build()
        .await
        .map_err(|source| CassandraError::Connect {
            nodes: spec.nodes.join(","),
            source: Box::new(source),
        })
}

/// Whether requests should stay in `local_datacenter`: only when the keyspace places replicas
/// per datacenter. SimpleStrategy ignores datacenters, so a preference without failover can
/// leave a token with no node to ask, and the driver logs a warning on every request that
/// could (a flood of them under load: thousands of lines a second, CPU taken from the writes).
pub fn prefers_datacenter(replication: &str) -> bool {
    !replication.contains("SimpleStrategy")
}

/// `cassandra.node_id`, or the host name when it is empty (one ingest node per host).
fn node_id(configured: &str) -> String {
    let configured = configured.trim();
    if !configured.is_empty() {
        return configured.to_owned();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "playpulse".to_owned())
}

/// The consistency level named in `cassandra.consistency`.
pub fn parse_consistency(text: &str) -> Result<Consistency, CassandraError> {
    let consistency = match text.trim().to_ascii_lowercase().as_str() {
        "one" => Consistency::One,
        "two" => Consistency::Two,
        "three" => Consistency::Three,
        "quorum" => Consistency::Quorum,
        "all" => Consistency::All,
        "local_quorum" => Consistency::LocalQuorum,
        "each_quorum" => Consistency::EachQuorum,
        "local_one" => Consistency::LocalOne,
        "any" => Consistency::Any,
        other => {
            return Err(CassandraError::config(
                "cassandra.consistency",
                format!("`{other}` is not one of one, two, three, quorum, all, local_quorum, each_quorum, local_one, any"),
            ))
        }
    };
    Ok(consistency)
}

/// The TTL of a row, in whole seconds (rounded up, at least 1: CQL's TTL 0 means "never").
pub fn ttl_seconds(retention: Duration) -> Result<u32, CassandraError> {
    let seconds = retention.as_secs() + u64::from(retention.subsec_nanos() > 0);
    if seconds > MAX_TTL_SECONDS {
        return Err(CassandraError::config(
            "sink.retention",
            format!("{retention:?} is longer than Cassandra's largest TTL, {MAX_TTL_SECONDS} s (20 years)"),
        ));
    }
    Ok(seconds.max(1) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sink.retention`'s default.
    const THIRTY_DAYS: Duration = Duration::from_secs(30 * 86_400);

    #[test]
    fn the_default_settings_make_a_valid_config() {
        let (cassandra, retention) = (CassandraSettings::default(), THIRTY_DAYS);
        let config = CassandraConfig::from_settings(&cassandra, retention).unwrap();
        assert_eq!(config.consistency, Consistency::LocalQuorum);
        assert_eq!(config.ttl_seconds, 30 * 86_400);
        assert_eq!(config.write_mode, WriteMode::ReplicaBatches);
    }

    #[test]
    fn an_in_flight_bound_past_the_semaphore_is_refused_with_its_setting() {
        let (mut cassandra, retention) = (CassandraSettings::default(), THIRTY_DAYS);
        cassandra.max_in_flight_rows = std::num::NonZeroUsize::new(usize::MAX).unwrap();
        let error = CassandraConfig::from_settings(&cassandra, retention)
            .unwrap_err()
            .to_string();
        assert!(error.contains("cassandra.max_in_flight_rows"), "{error}");
    }

    #[test]
    fn only_per_datacenter_replication_keeps_requests_in_the_local_datacenter() {
        assert!(!prefers_datacenter(
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        ));
        assert!(prefers_datacenter(
            "{'class': 'NetworkTopologyStrategy', 'datacenter1': 3}"
        ));
    }

    #[test]
    fn consistency_names_are_read_in_any_case() {
        assert_eq!(parse_consistency("ONE").unwrap(), Consistency::One);
        assert_eq!(
            parse_consistency(" local_one ").unwrap(),
            Consistency::LocalOne
        );
        let error = parse_consistency("most").unwrap_err().to_string();
        assert!(error.contains("cassandra.consistency"), "{error}");
    }

    #[test]
    fn a_ttl_is_whole_seconds_rounded_up_and_never_zero() {
        assert_eq!(ttl_seconds(Duration::from_millis(1)).unwrap(), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(2_001)).unwrap(), 3);
        assert_eq!(ttl_seconds(Duration::from_secs(2)).unwrap(), 2);
        let error = ttl_seconds(Duration::from_secs(MAX_TTL_SECONDS + 1))
            .unwrap_err()
            .to_string();
        assert!(error.contains("sink.retention"), "{error}");
    }

    #[test]
    fn a_replication_that_is_not_a_map_names_its_setting() {
        let (mut cassandra, retention) = (CassandraSettings::default(), THIRTY_DAYS);
        cassandra.replication = "SimpleStrategy".into();
        let error = CassandraConfig::from_settings(&cassandra, retention)
            .unwrap_err()
            .to_string();
        assert!(error.contains("cassandra.replication"), "{error}");
    }
}
