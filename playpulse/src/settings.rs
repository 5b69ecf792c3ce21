//! Layered settings: `config/default.toml` (compiled in), then an optional profile file, then
//! `PLAYPULSE_<SECTION>__<KEY>` environment variables, then command-line flags. Every error
//! names the setting it is about. Each section's type belongs to the crate that uses it:
//! ingest's, `event_cql`'s `[cassandra]`, the platform's `[platform]`; the log's is here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use event_cql::CassandraSettings;
use ingest::config::{
    CacheSettings, ChunkSettings, EmbeddedSettings, InvalidationSettings, PipelineSettings,
    RedisSettings, ServerSettings, SinkSettings,
};
use platform::config::{CassandraConnection, PlatformSection, PlatformSettings};
use serde::Deserialize;

use crate::access::limits::RateLimitSettings;
use crate::access::{AuthSettings, CorsSettings};

const DEFAULTS: &str = include_str!("../../config/default.toml");
const ENV_PREFIX: &str = "PLAYPULSE_";

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The profile file cannot be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The profile file is not valid TOML.
    #[error("configuration file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    /// A setting has a bad type or value, or is unknown.
    #[error("invalid setting `{setting}`: {message}")]
    Invalid { setting: String, message: String },
}

impl ConfigError {
    fn invalid(setting: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            setting: setting.to_owned(),
            message: message.into(),
        }
    }
}

/// Every setting of the service, by section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub auth: AuthSettings,
    pub rate_limits: RateLimitSettings,
    pub cors: CorsSettings,
    pub pipeline: PipelineSettings,
    pub sink: SinkSettings,
    pub embedded: EmbeddedSettings,
    pub cassandra: CassandraSettings,
    /// The PostgreSQL event sink (`sink.kind = "postgres"`).
    pub postgres: ingest::sink::postgres::PostgresSinkSettings,
    pub chunks: ChunkSettings,
    pub cache: CacheSettings,
    pub redis: RedisSettings,
    pub invalidation: InvalidationSettings,
    pub log: LogSettings,
    /// The CQRS platform (users, plans, subscriptions; see the `platform` crate).
    pub platform: PlatformSection,
    /// QoE rollups, trending and live sessions (the `analytics` crate).
    pub analytics: analytics::config::AnalyticsSection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// Command-line flags that override the layered settings.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

impl Settings {
    /// The embedded default, as compiled in.
    pub fn defaults() -> Settings {
        Settings::load(None, std::iter::empty(), &Overrides::default())
            .expect("config/default.toml is valid: checked by its test")
    }

    /// Loads the layers; `env` is usually `std::env::vars()`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Settings, ConfigError> {
        let mut tree: toml::Table =
            DEFAULTS
                .parse()
                .map_err(|error: toml::de::Error| ConfigError::Syntax {
                    path: "config/default.toml".into(),
                    message: error.message().to_owned(),
                })?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let profile: toml::Table =
                text.parse()
                    .map_err(|error: toml::de::Error| ConfigError::Syntax {
                        path: path.to_owned(),
                        message: error.to_string(),
                    })?;
            merge(&mut tree, profile);
        }
        for (name, value) in env {
            apply_env(&mut tree, &name, &value)?;
        }
        if let Some(listen) = overrides.listen {
            set(
                &mut tree,
                &["server", "listen"],
                toml::Value::String(listen.to_string()),
            );
        }
        if let Some(dir) = &overrides.data_dir {
            let dir = dir.to_string_lossy().into_owned();
            set(
                &mut tree,
                &["embedded", "data_dir"],
                toml::Value::String(dir),
            );
        }
        let settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(tree))
            .map_err(|error| {
                ConfigError::invalid(&error.path().to_string(), error.inner().to_string())
            })?;
        settings.validate()?;
        Ok(settings)
    }

    /// The platform's settings, with what it shares with ingest (data directory, Cassandra).
    pub fn platform(&self) -> PlatformSettings {
        let platform = &self.platform;
        PlatformSettings {
            commands: platform.commands.clone(),
            read_model: platform.read_model.clone(),
            outbox: platform.outbox.clone(),
            recommendations: platform.recommendations.clone(),
            graph: platform.graph.clone(),
            search: platform.search.clone(),
            data_dir: self.embedded.data_dir.clone(),
            cassandra: CassandraConnection {
                nodes: self.cassandra.nodes.clone(),
                replication: self.cassandra.replication.clone(),
                local_datacenter: self.cassandra.local_datacenter.clone(),
                request_timeout: self.cassandra.request_timeout,
            },
        }
    }

    /// Where the analytics ports find the engines configured in other sections.
    pub fn analytics_engines(&self) -> analytics::config::Engines {
        analytics::config::Engines {
            data_dir: self.embedded.data_dir.clone(),
            cassandra_nodes: self.cassandra.nodes.clone(),
            cassandra_replication: self.cassandra.replication.clone(),
            cassandra_local_datacenter: self.cassandra.local_datacenter.clone(),
            cassandra_request_timeout: self.cassandra.request_timeout,
            redis_url: self.redis.url.clone(),
            redis_key_prefix: self.redis.key_prefix.clone(),
        }
    }

    /// Rules that types alone do not express.
    fn validate(&self) -> Result<(), ConfigError> {
        self.analytics
            .validate()
            .map_err(|(setting, message)| ConfigError::invalid(&setting, message))?;
        self.platform()
            .validate()
            .map_err(|error| ConfigError::invalid(error.setting, error.message))?;
        if self.server.request_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "server.request_timeout",
                "must be more than 0",
            ));
        }
        let listen = self.server.listen.ip();
        if !self.auth.enabled && !self.auth.allow_anonymous_remote && !listen.is_loopback() {
            return Err(ConfigError::invalid(
                "server.listen",
                format!(
                    "{listen} is not a loopback address and auth.enabled is false: anyone could \
                     post and read; turn auth on (README, \"Keys and roles\") or set \
                     auth.allow_anonymous_remote = true"
                ),
            ));
        }
        if self.auth.playback_tokens {
            if !self.auth.enabled {
                return Err(ConfigError::invalid(
                    "auth.playback_tokens",
                    "needs auth.enabled = true (tokens are issued to admin keys)",
                ));
            }
            if self.auth.playback_token_secret.len() < 32 {
                return Err(ConfigError::invalid(
                    "auth.playback_token_secret",
                    "must be at least 32 bytes when auth.playback_tokens is on",
                ));
            }
        }
        if self.auth.playback_token_ttl.is_zero() {
            return Err(ConfigError::invalid(
                "auth.playback_token_ttl",
                "must be more than 0",
            ));
        }
        if self.rate_limits.max_tracked_clients == 0 {
            return Err(ConfigError::invalid(
                "rate_limits.max_tracked_clients",
                "must be more than 0",
            ));
        }
        for (setting, value) in [
            ("server.header_timeout", self.server.header_timeout),
            ("server.body_timeout", self.server.body_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(setting, "must be more than 0"));
            }
        }
        if self.server.max_body_bytes.get() > self.pipeline.max_in_flight_bytes.get() {
            return Err(ConfigError::invalid(
                "pipeline.max_in_flight_bytes",
                "must be at least server.max_body_bytes, or a largest request could never be admitted",
            ));
        }
        if self.sink.retention.as_secs() == 0 {
            return Err(ConfigError::invalid(
                "sink.retention",
                "must be more than 0",
            ));
        }
        if self.embedded.segment_bytes.get() < 1 << 20 {
            return Err(ConfigError::invalid(
                "embedded.segment_bytes",
                "must be at least 1 MiB",
            ));
        }
        if self.cassandra.nodes.is_empty() {
            return Err(ConfigError::invalid(
                "cassandra.nodes",
                "must name at least one node",
            ));
        }
        if !CassandraSettings::keyspace_is_identifier(&self.cassandra.keyspace) {
            return Err(ConfigError::invalid(
                "cassandra.keyspace",
                format!(
                    "`{}` is not a CQL identifier (a letter, then letters, digits or _; at most 48)",
                    self.cassandra.keyspace
                ),
            ));
        }
        if self.chunks.max_age.is_zero() {
            return Err(ConfigError::invalid(
                "chunks.max_age",
                "must be more than 0",
            ));
        }
        if self.chunks.commit_interval.is_zero() {
            return Err(ConfigError::invalid(
                "chunks.commit_interval",
                "must be more than 0",
            ));
        }
        if self.invalidation.window.is_zero() {
            return Err(ConfigError::invalid(
                "invalidation.window",
                "must be more than 0",
            ));
        }
        if let Some(pattern) = self
            .invalidation
            .keys
            .iter()
            .find(|key| !key.contains("{user_id}"))
        {
            return Err(ConfigError::invalid(
                "invalidation.keys",
                format!("`{pattern}` has no {{user_id}} placeholder"),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(ConfigError::invalid(
                "log.level",
                format!("`{}` is not a level filter", self.log.level),
            ));
        }
        Ok(())
    }
}

/// Deep-merges `top` over `base`.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(top_table)) => {
                merge(base_table, top_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn set(tree: &mut toml::Table, path: &[&str], value: toml::Value) {
    let (last, parents) = path.split_last().expect("a setting path is never empty");
    let mut table = tree;
    for part in parents {
        let entry = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        table = entry.as_table_mut().expect("made a table just above");
    }
    table.insert(last.to_string(), value);
}

/// `PLAYPULSE_SERVER__LISTEN=...` sets `server.listen`; other variables are not settings.
fn apply_env(tree: &mut toml::Table, name: &str, raw: &str) -> Result<(), ConfigError> {
    let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
        return Ok(());
    };
    if !rest.contains("__") {
        return Ok(());
    }
    let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::invalid(name, "malformed variable name"));
    }
    // A value that reads as TOML (number, boolean, array) keeps its type; anything else is text.
    let value = format!("value = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    set(tree, &path, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_compiled_in_defaults_are_valid() {
        let settings = Settings::defaults();
        assert_eq!(settings.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.sink.kind, ingest::config::SinkKind::Embedded);
        assert_eq!(settings.server.max_body_bytes.get(), 8 << 20);
        assert_eq!(settings.server.max_events_per_request.get(), 10_000);
    }

    #[test]
    fn environment_variables_override_settings_with_their_types() {
        let settings = Settings::load(
            None,
            env(&[
                ("PLAYPULSE_SERVER__LISTEN", "127.0.0.1:9999"),
                ("PLAYPULSE_PIPELINE__SHARDS", "4"),
                ("PLAYPULSE_PIPELINE__LINGER", "7ms"),
                ("PLAYPULSE_EMBEDDED__FSYNC", "false"),
                ("UNRELATED", "x"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(settings.server.listen.port(), 9999);
        assert_eq!(settings.pipeline.shards.get(), 4);
        assert_eq!(settings.pipeline.linger, Duration::from_millis(7));
        assert!(!settings.embedded.fsync);
    }

    #[test]
    fn flags_override_the_environment() {
        let overrides = Overrides {
            listen: Some("127.0.0.1:1234".parse().unwrap()),
            data_dir: Some("/tmp/x".into()),
        };
        let settings = Settings::load(
            None,
            env(&[("PLAYPULSE_SERVER__LISTEN", "127.0.0.1:9")]),
            &overrides,
        )
        .unwrap();
        assert_eq!(settings.server.listen.port(), 1234);
        assert_eq!(settings.embedded.data_dir, PathBuf::from("/tmp/x"));
    }

    fn error_of(pairs: &[(&str, &str)]) -> String {
        Settings::load(None, env(pairs), &Overrides::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_bad_value_names_its_setting() {
        assert!(error_of(&[("PLAYPULSE_PIPELINE__SHARDS", "0")]).contains("pipeline.shards"));
        assert!(error_of(&[("PLAYPULSE_PIPELINE__LINGER", "soon")]).contains("pipeline.linger"));
        assert!(error_of(&[("PLAYPULSE_SERVER__LISTEN", "nowhere")]).contains("server.listen"));
        assert!(error_of(&[("PLAYPULSE_SINK__KIND", "floppy")]).contains("sink.kind"));
        assert!(error_of(&[("PLAYPULSE_LOG__FORMAT", "xml")]).contains("log.format"));
        assert!(error_of(&[("PLAYPULSE_CASSANDRA__KEYSPACE", "no-dashes")])
            .contains("cassandra.keyspace"));
        assert!(error_of(&[("PLAYPULSE_CASSANDRA__WRITE_MODE", "fast")])
            .contains("cassandra.write_mode"));
        assert!(error_of(&[("PLAYPULSE_INVALIDATION__KEYS", "[\"recs\"]")])
            .contains("invalidation.keys"));
        assert!(error_of(&[("PLAYPULSE_CACHE__KIND", "memcached")]).contains("cache.kind"));
        assert!(error_of(&[("PLAYPULSE_SINK__RETENTION", "0s")]).contains("sink.retention"));
    }

    #[test]
    fn the_platform_settings_are_under_platform() {
        let settings = Settings::load(
            None,
            env(&[("PLAYPULSE_PLATFORM__COMMANDS__CHARGE_ATTEMPTS", "5")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(settings.platform.commands.charge_attempts, 5);
        assert!(
            error_of(&[("PLAYPULSE_PLATFORM__COMMANDS__CHARGE_ATTEMPTS", "0")])
                .contains("platform.commands.charge_attempts")
        );
        assert!(error_of(&[("PLAYPULSE_PLATFORM__ENABLED", "maybe")]).contains("platform.enabled"));
    }

    #[test]
    fn each_sections_default_is_the_compiled_in_file() {
        let settings = Settings::defaults();
        let pipeline = ingest::config::PipelineSettings::default();
        assert_eq!(pipeline.shards, settings.pipeline.shards);
        assert_eq!(pipeline.linger, settings.pipeline.linger);
        let invalidation = InvalidationSettings::default();
        assert_eq!(invalidation.keys, settings.invalidation.keys);
        assert_eq!(
            CassandraSettings::default().max_in_flight_rows,
            settings.cassandra.max_in_flight_rows
        );
    }

    #[test]
    fn an_unknown_setting_is_named() {
        let message = error_of(&[("PLAYPULSE_SERVER__LISTEN_ON", "x")]);
        assert!(message.contains("server"), "{message}");
        assert!(message.contains("listen_on"), "{message}");
    }

    #[test]
    fn a_profile_file_is_layered_over_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "[pipeline]\nshards = 3\n").unwrap();
        let settings = Settings::load(Some(&path), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(settings.pipeline.shards.get(), 3);
        assert_eq!(settings.pipeline.batch_max_events.get(), 8192);

        std::fs::write(&path, "[pipeline\nshards = 3\n").unwrap();
        let error = Settings::load(Some(&path), env(&[]), &Overrides::default()).unwrap_err();
        assert!(error.to_string().contains("p.toml"), "{error}");
        let missing = Settings::load(
            Some(&dir.path().join("nope.toml")),
            env(&[]),
            &Overrides::default(),
        );
        assert!(missing.unwrap_err().to_string().contains("nope.toml"));
    }
}
