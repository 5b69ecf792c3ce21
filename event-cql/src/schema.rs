//! `event-cql/schema.cql`, filled from the settings, and applied idempotently.

use std::time::Duration;

use scylla::client::session::Session;

use crate::chunks::{CHUNKS_TABLE, LOG_TABLE};
use crate::config::{ttl_seconds, CassandraConfig};
use crate::error::CassandraError;
use crate::statements::{ddl, DAYS_TABLE, HISTORY_TABLE, SELECT_KEYSPACE, SELECT_TABLES};

const TEMPLATE: &str = include_str!("../schema.cql");

/// At most this many TWCS windows per TTL: fewer, larger windows mean fewer SSTables to read a
/// day's partition from; TWCS's guidance is under ~50.
const TARGET_WINDOWS_PER_TTL: u64 = 30;

/// A TimeWindowCompactionStrategy window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionWindow {
    pub unit: &'static str,
    pub size: u64,
    /// Windows one TTL spans (rounded up).
    pub count: u64,
}

impl CompactionWindow {
    /// The smallest whole number of minutes, hours or days that keeps a TTL within
    /// [`TARGET_WINDOWS_PER_TTL`] windows, e.g. 1 day for 30 days, 6 hours for 7 days.
    pub fn for_ttl(ttl_seconds: u64) -> CompactionWindow {
        let window_minutes = ttl_seconds
            .div_ceil(TARGET_WINDOWS_PER_TTL)
            .div_ceil(60)
            .max(1);
        let (unit, unit_minutes) = if window_minutes >= 24 * 60 {
            ("DAYS", 24 * 60)
        } else if window_minutes >= 60 {
            ("HOURS", 60)
        } else {
            ("MINUTES", 1)
        };
        let size = window_minutes.div_ceil(unit_minutes);
        let count = ttl_seconds.div_ceil(size * unit_minutes * 60).max(1);
        CompactionWindow { unit, size, count }
    }
}

/// What the schema template is filled with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaParams {
    pub keyspace: String,
    pub replication: String,
    pub ttl_seconds: u32,
    /// `viewing_days` rows live this long: the TTL plus the refresh interval of the day index.
    pub days_ttl_seconds: u32,
}

impl SchemaParams {
    pub fn new(config: &CassandraConfig) -> SchemaParams {
        SchemaParams {
            keyspace: config.keyspace.clone(),
            replication: config.replication.clone(),
            ttl_seconds: config.ttl_seconds,
            days_ttl_seconds: days_ttl_seconds(config.ttl_seconds),
        }
    }

    /// The schema as CQL text, comments included (what `playpulse schema print` shows).
    pub fn render(&self) -> String {
        let window = CompactionWindow::for_ttl(u64::from(self.ttl_seconds));
        TEMPLATE
            .replace("{keyspace}", &self.keyspace)
            .replace("{replication}", &self.replication)
            .replace("{window_unit}", window.unit)
            .replace("{window_size}", &window.size.to_string())
            .replace("{window_count}", &window.count.to_string())
            .replace("{ttl_seconds}", &self.ttl_seconds.to_string())
            .replace("{days_ttl_seconds}", &self.days_ttl_seconds.to_string())
    }

    /// The statements to run, in order, without comments.
    pub fn statements(&self) -> Vec<String> {
        let text: String = self
            .render()
            .lines()
            .filter(|line| !line.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        text.split(';')
            .map(str::trim)
            .filter(|statement| !statement.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// How often a writer refreshes a `viewing_days` row it has written: an eighth of the TTL,
/// between 1 s and 1 h. Rows there live `ttl + refresh`, so a day row rewritten at most
/// `refresh` before an event of that day outlives the event.
pub fn days_refresh(ttl_seconds: u32) -> Duration {
    Duration::from_secs(u64::from(ttl_seconds) / 8)
        .clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

pub fn days_ttl_seconds(ttl_seconds: u32) -> u32 {
    let refresh = days_refresh(ttl_seconds);
    let total = Duration::from_secs(u64::from(ttl_seconds)) + refresh;
    ttl_seconds_capped(total)
}

fn ttl_seconds_capped(duration: Duration) -> u32 {
    ttl_seconds(duration).unwrap_or(crate::config::MAX_TTL_SECONDS as u32)
}

/// Applies the schema: creates what is missing, leaves what exists. Returns one line per step,
/// saying what it did.
pub async fn apply(
    session: &Session,
    params: &SchemaParams,
) -> Result<Vec<String>, CassandraError> {
    let mut report = Vec::new();
    let keyspace_existed = keyspace_exists(session, &params.keyspace).await?;
    let tables_before = tables(session, &params.keyspace).await?;
    for cql in params.statements() {
        session
            .query_unpaged(ddl(&cql), ())
            .await
            .map_err(|source| CassandraError::Schema {
                cql: cql.clone(),
                source: Box::new(source),
            })?;
    }
    report.push(if keyspace_existed {
        format!("keyspace {}: exists, left as it is", params.keyspace)
    } else {
        format!(
            "keyspace {}: created with replication {}",
            params.keyspace, params.replication
        )
    });
    let window = CompactionWindow::for_ttl(u64::from(params.ttl_seconds));
    for (table, ttl) in [
        (HISTORY_TABLE, params.ttl_seconds),
        (DAYS_TABLE, params.days_ttl_seconds),
        (CHUNKS_TABLE, params.ttl_seconds),
        (LOG_TABLE, params.ttl_seconds),
    ] {
        match tables_before.iter().find(|(name, _)| name == table) {
            None if table == HISTORY_TABLE || table == CHUNKS_TABLE => report.push(format!(
                "table {}.{table}: created, default TTL {ttl} s, TWCS windows of {} {} ({} per TTL)",
                params.keyspace,
                window.size,
                window.unit.to_ascii_lowercase(),
                window.count
            )),
            None => report.push(format!(
                "table {}.{table}: created, default TTL {ttl} s",
                params.keyspace
            )),
            Some((_, existing)) if *existing == ttl as i32 => report.push(format!(
                "table {}.{table}: exists, left as it is",
                params.keyspace
            )),
            Some((_, existing)) => report.push(format!(
                "table {}.{table}: exists with default TTL {existing} s, settings say {ttl} s; \
                 left as it is (writes still set their TTL; to change the default: ALTER TABLE \
                 {}.{table} WITH default_time_to_live = {ttl})",
                params.keyspace, params.keyspace
            )),
        }
    }
    // The session may predate the keyspace: refresh its view so replica lookups see the new
    // keyspace's replication.
    if let Err(error) = session.refresh_metadata().await {
        tracing::warn!(%error, "cannot refresh cluster metadata after applying the schema");
    }
    Ok(report)
}

async fn keyspace_exists(session: &Session, keyspace: &str) -> Result<bool, CassandraError> {
    let result = session
        .query_unpaged(SELECT_KEYSPACE, (keyspace,))
        .await
        .map_err(|source| schema_error(SELECT_KEYSPACE, source))?;
    let rows = result
        .into_rows_result()
        .map_err(|error| CassandraError::Decode(error.to_string()))?;
    Ok(rows.rows_num() > 0)
}

async fn tables(session: &Session, keyspace: &str) -> Result<Vec<(String, i32)>, CassandraError> {
    let result = session
        .query_unpaged(SELECT_TABLES, (keyspace,))
        .await
        .map_err(|source| schema_error(SELECT_TABLES, source))?;
    let rows = result
        .into_rows_result()
        .map_err(|error| CassandraError::Decode(error.to_string()))?;
    rows.rows::<(String, Option<i32>)>()
        .map_err(|error| CassandraError::Decode(error.to_string()))?
        .map(|row| {
            row.map(|(name, ttl)| (name, ttl.unwrap_or(0)))
                .map_err(|error| CassandraError::Decode(error.to_string()))
        })
        .collect()
}

fn schema_error(cql: &str, source: scylla::errors::ExecutionError) -> CassandraError {
    CassandraError::Schema {
        cql: cql.to_owned(),
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(ttl_seconds: u32) -> SchemaParams {
        SchemaParams {
            keyspace: "pp_test".into(),
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            ttl_seconds,
            days_ttl_seconds: days_ttl_seconds(ttl_seconds),
        }
    }

    #[test]
    fn windows_stay_under_fifty_per_ttl() {
        let day = 86_400;
        assert_eq!(
            CompactionWindow::for_ttl(30 * day),
            CompactionWindow {
                unit: "DAYS",
                size: 1,
                count: 30
            }
        );
        assert_eq!(
            CompactionWindow::for_ttl(7 * day),
            CompactionWindow {
                unit: "HOURS",
                size: 6,
                count: 28
            }
        );
        assert_eq!(
            CompactionWindow::for_ttl(2),
            CompactionWindow {
                unit: "MINUTES",
                size: 1,
                count: 1
            }
        );
        for ttl in [1, 59, 3_600, 86_399, 86_400, 400 * day, 630_720_000] {
            let window = CompactionWindow::for_ttl(ttl);
            assert!(window.count < 50, "{ttl} s: {window:?}");
        }
    }

    #[test]
    fn the_rendered_schema_has_no_placeholder_left() {
        let text = params(30 * 86_400).render();
        for placeholder in [
            "{keyspace}",
            "{replication}",
            "{window_unit}",
            "{window_size}",
            "{ttl_seconds}",
            "{days_ttl_seconds}",
        ] {
            assert!(!text.contains(placeholder), "{placeholder} left");
        }
        assert!(text.contains("default_time_to_live = 2592000"));
        assert!(text.contains("'compaction_window_unit': 'DAYS'"));
    }

    #[test]
    fn the_schema_is_seven_idempotent_statements() {
        let statements = params(2).statements();
        assert_eq!(statements.len(), 7, "{statements:#?}");
        for statement in &statements {
            assert!(statement.contains("IF NOT EXISTS"), "{statement}");
            assert!(!statement.contains("--"), "{statement}");
        }
        assert!(statements[1].contains("PRIMARY KEY ((user_id, day), ts, event_id)"));
        assert!(statements[1].contains("CLUSTERING ORDER BY (ts DESC, event_id DESC)"));
        // A keyspace made before the QoE fields gets their columns.
        assert!(statements[2].starts_with("ALTER TABLE pp_test.viewing_history ADD IF NOT EXISTS"));
        assert!(statements[4].contains("PRIMARY KEY ((user_id, day), last_ts, chunk_id)"));
        assert!(statements[4].contains("CLUSTERING ORDER BY (last_ts DESC, chunk_id DESC)"));
        assert!(statements[5].contains("PRIMARY KEY ((node_id, shard, second), position)"));
    }

    #[test]
    fn day_rows_outlive_the_events_of_their_day() {
        for ttl in [1, 2, 3_600, 30 * 86_400] {
            let refresh = days_refresh(ttl).as_secs() as u32;
            assert!(days_ttl_seconds(ttl) >= ttl + refresh, "{ttl}");
        }
    }
}
