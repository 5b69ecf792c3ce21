//! The viewing history on PostgreSQL (`sink.kind = "postgres"`): for a platform that runs
//! PostgreSQL alone, and the baseline `bench architectures` sets the hybrid stack against.
//!
//! - **One table partitioned by day of `ts`** (`playback_events`, `PARTITION BY RANGE (day)`,
//!   one partition per day, made on first use), with the primary key
//!   `(user_id, day, ts, event_id)`, the Cassandra table's key with the partition key first as
//!   PostgreSQL requires. A history read is one backward scan of that B-tree in each day's
//!   partition the range touches, so it costs in proportion to what it returns. BRIN, measured
//!   against it, made that read 250x slower: a viewer's rows are spread over the whole partition
//!   (`bench/postgres/history_index.sql`).
//! - **Writes**: one `INSERT ... SELECT FROM UNNEST(arrays)` per batch, one round trip and one
//!   commit (one WAL flush) for thousands of rows. `ON CONFLICT ... DO UPDATE` makes a replay
//!   store an event once, the last write winning, as on Cassandra. `COPY` is not used because
//!   it cannot skip duplicates.
//! - **Retention** keeps Cassandra's TTL semantics (an event expires `sink.retention` after it
//!   was written, `received_at`). Reads leave expired rows out. A sweep every
//!   [`SWEEP_INTERVAL`] drops a day's partition whole once every row in it has expired, and
//!   only deletes row by row in the rare partition where a late event still lives.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use smol_str::SmolStr;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use tokio::sync::Mutex;
use uuid::Uuid;
use wire::{CountryCode, EventKind, PlaybackEvent};

use super::{newest_first_unique, EventSink, HistoryQuery, SinkError};

/// How often expired partitions are looked for.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(600);

const MS_PER_DAY: i64 = 86_400_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS playback_events (
    user_id bigint NOT NULL,
    day integer NOT NULL,
    ts bigint NOT NULL,
    event_id uuid NOT NULL,
    session_id uuid NOT NULL,
    content_id bigint NOT NULL,
    kind smallint NOT NULL,
    sent_at bigint,
    received_at bigint NOT NULL,
    position_ms bigint NOT NULL,
    duration_ms bigint,
    bitrate_kbps integer,
    buffer_ms integer,
    played_ms integer,
    startup_ms integer,
    before_start boolean,
    fatal boolean,
    error_code text,
    device text,
    cdn text,
    app_version text,
    country text,
    PRIMARY KEY (user_id, day, ts, event_id)
) PARTITION BY RANGE (day)";

/// Columns in the order of [`Columns`] and of the `UNNEST` arrays.
const COLUMNS: &str = "user_id, day, ts, event_id, session_id, content_id, kind, sent_at, \
    received_at, position_ms, duration_ms, bitrate_kbps, buffer_ms, played_ms, startup_ms, \
    before_start, fatal, error_code, device, cdn, app_version, country";

/// `[postgres]`: the event store's connection.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkSettings {
    pub url: String,
    /// Connections of the pool: batches written and histories read at once.
    pub max_connections: u32,
    /// How long a write or read may wait for a connection and run.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

pub struct PostgresSink {
    pool: PgPool,
    retention: Duration,
    /// Days whose partition is known to exist; making one is serialized here.
    partitions: Mutex<BTreeSet<i32>>,
    request_timeout: Duration,
    sweeper: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn unavailable(context: &str, error: sqlx::Error) -> SinkError {
    match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => SinkError::Unavailable(format!("{context}: {error}")),
        sqlx::Error::Database(database) => {
            // Class 08 (connection), 53 (insufficient resources), 57 (operator intervention,
            // e.g. shutting down) and 40001/40P01 (serialization, deadlock) pass with a retry.
            let code = database.code().unwrap_or_default();
            if code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57")
                || code == "40001"
                || code == "40P01"
            {
                SinkError::Unavailable(format!("{context}: {error}"))
            } else {
                SinkError::Failed(format!("{context}: {error}"))
            }
        }
        _ => SinkError::Failed(format!("{context}: {error}")),
    }
}

fn timed_out(context: &str) -> SinkError {
    SinkError::Unavailable(format!("{context}: PostgreSQL did not answer in time"))
}

impl PostgresSink {
    /// Connects, creates the table where missing and starts the retention sweep.
    pub async fn connect(
        settings: &PostgresSinkSettings,
        retention: Duration,
    ) -> Result<Arc<PostgresSink>, SinkError> {
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.request_timeout)
            .connect(&settings.url)
            .await
            .map_err(|error| unavailable("connect to PostgreSQL (postgres.url)", error))?;
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(|error| unavailable("create playback_events", error))?;
        let sink = Arc::new(PostgresSink {
            pool,
            retention,
            partitions: Mutex::new(BTreeSet::new()),
            request_timeout: settings.request_timeout,
            sweeper: std::sync::Mutex::new(None),
        });
        let weak = Arc::downgrade(&sink);
        let sweeper = tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                every.tick().await;
                let Some(sink) = weak.upgrade() else { return };
                if let Err(error) = sink.sweep(crate::now_ms()).await {
                    tracing::warn!(%error, "the retention sweep of playback_events failed");
                }
            }
        });
        *sink
            .sweeper
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sweeper);
        Ok(sink)
    }

    fn expired_before(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.retention.as_millis().min(i64::MAX as u128) as i64)
    }

    /// Makes the partitions of `days` that are not known to exist.
    async fn ensure_partitions(&self, days: &BTreeSet<i32>) -> Result<(), SinkError> {
        let mut known = self.partitions.lock().await;
        let missing: Vec<i32> = days.difference(&known).copied().collect();
        for day in missing {
            let statement = format!(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF playback_events \
                 FOR VALUES FROM ({day}) TO ({})",
                partition_name(day),
                i64::from(day) + 1
            );
            match sqlx::query(&statement).execute(&self.pool).await {
                Ok(_) => {}
                // Another node made it meanwhile: 42P07 (duplicate table), or the catalog's
                // unique index on type names (23505) when both ran at once.
                Err(sqlx::Error::Database(error))
                    if matches!(error.code().as_deref(), Some("42P07" | "23505")) => {}
                Err(error) => return Err(unavailable("create a day's partition", error)),
            }
            known.insert(day);
        }
        Ok(())
    }

    /// Drops the partitions whose every row has expired at `now_ms`, and deletes expired rows
    /// of older days still holding a live (late) one. Returns the partitions dropped.
    pub async fn sweep(&self, now_ms: i64) -> Result<usize, SinkError> {
        let cutoff = self.expired_before(now_ms);
        // A partition of day d holds ts < (d + 1) days; its rows were received at ts or later,
        // so only days entirely before the cutoff can be all expired.
        let last_candidate = cutoff.div_euclid(MS_PER_DAY) - 1;
        let partitions = self.partition_names().await?;
        let mut dropped = 0;
        for name in partitions {
            let Some(day) = day_of_partition(&name) else {
                continue;
            };
            if i64::from(day) > last_candidate {
                continue;
            }
            let newest: Option<i64> =
                sqlx::query_scalar(&format!("SELECT max(received_at) FROM {name}"))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|error| unavailable("read a partition's newest write", error))?;
            if newest.is_none_or(|newest| newest < cutoff) {
                sqlx::query(&format!("DROP TABLE IF EXISTS {name}"))
                    .execute(&self.pool)
                    .await
                    .map_err(|error| unavailable("drop an expired partition", error))?;
                self.partitions.lock().await.remove(&day);
                dropped += 1;
            } else {
                sqlx::query(&format!("DELETE FROM {name} WHERE received_at < $1"))
                    .bind(cutoff)
                    .execute(&self.pool)
                    .await
                    .map_err(|error| unavailable("delete expired rows", error))?;
            }
        }
        Ok(dropped)
    }

    async fn partition_names(&self) -> Result<Vec<String>, SinkError> {
        sqlx::query_scalar(
            "SELECT child.relname::text FROM pg_inherits \
             JOIN pg_class parent ON parent.oid = pg_inherits.inhparent \
             JOIN pg_class child ON child.oid = pg_inherits.inhrelid \
             JOIN pg_namespace ns ON ns.oid = child.relnamespace \
             WHERE parent.relname = 'playback_events' AND ns.nspname = current_schema()",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|error| unavailable("list partitions", error))
    }

    /// The days whose partition exists now (for tests and operators).
    pub async fn partition_days(&self) -> Result<Vec<i32>, SinkError> {
        let mut days: Vec<i32> = self
            .partition_names()
            .await?
            .iter()
            .filter_map(|name| day_of_partition(name))
            .collect();
        days.sort_unstable();
        Ok(days)
    }

    async fn read_newest(
        &self,
        query: &HistoryQuery,
        fetch: i64,
    ) -> Result<Vec<PlaybackEvent>, SinkError> {
        let (from_day, to_day) = (day_bound(query.from_ms), day_bound(query.to_ms));
        let statement = format!(
            "SELECT {COLUMNS} FROM playback_events \
             WHERE user_id = $1 AND day BETWEEN $2 AND $3 AND ts BETWEEN $4 AND $5 \
             AND received_at >= $6 ORDER BY ts DESC, event_id DESC LIMIT $7"
        );
        let rows = sqlx::query(&statement)
            .bind(query.user_id as i64)
            .bind(from_day)
            .bind(to_day)
            .bind(query.from_ms)
            .bind(query.to_ms)
            .bind(self.expired_before(crate::now_ms()))
            .bind(fetch)
            .fetch_all(&self.pool)
            .await
            .map_err(|error| unavailable("read history", error))?;
        rows.iter().map(event_of).collect()
    }
}

fn partition_name(day: i32) -> String {
    // Days before 1970 are negative: `m` keeps the name an identifier.
    if day < 0 {
        format!("playback_events_dm{}", day.unsigned_abs())
    } else {
        format!("playback_events_d{day}")
    }
}

fn day_of_partition(name: &str) -> Option<i32> {
    let suffix = name.strip_prefix("playback_events_d")?;
    match suffix.strip_prefix('m') {
        Some(negative) => negative.parse::<i32>().ok().map(|day| -day),
        None => suffix.parse().ok(),
    }
}

/// The day of a bound of a query, within what a partition key can hold.
fn day_bound(ts_ms: i64) -> i32 {
    ts_ms
        .div_euclid(MS_PER_DAY)
        .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// A batch as one array per column, the last copy of a key kept (one statement may not update
/// a row twice).
#[derive(Default)]
struct Columns {
    user_id: Vec<i64>,
    day: Vec<i32>,
    ts: Vec<i64>,
    event_id: Vec<Uuid>,
    session_id: Vec<Uuid>,
    content_id: Vec<i64>,
    kind: Vec<i16>,
    sent_at: Vec<Option<i64>>,
    received_at: Vec<i64>,
    position_ms: Vec<i64>,
    duration_ms: Vec<Option<i64>>,
    bitrate_kbps: Vec<Option<i32>>,
    buffer_ms: Vec<Option<i32>>,
    played_ms: Vec<Option<i32>>,
    startup_ms: Vec<Option<i32>>,
    before_start: Vec<Option<bool>>,
    fatal: Vec<Option<bool>>,
    error_code: Vec<Option<String>>,
    device: Vec<Option<String>>,
    cdn: Vec<Option<String>>,
    app_version: Vec<Option<String>>,
    country: Vec<Option<String>>,
}

impl Columns {
    fn of(events: &[PlaybackEvent]) -> (Columns, BTreeSet<i32>) {
        let mut last = std::collections::HashMap::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            last.insert((event.user_id, event.ts, event.event_id), index);
        }
        let mut columns = Columns::default();
        let mut days = BTreeSet::new();
        let text = |value: &Option<SmolStr>| value.as_ref().map(|text| text.to_string());
        // Bit casts, as on Cassandra: a u64 above i64::MAX is stored negative and reads back
        // as the same u64.
        for (index, event) in events.iter().enumerate() {
            if last.get(&(event.user_id, event.ts, event.event_id)) != Some(&index) {
                continue;
            }
            let day = event.day();
            days.insert(day);
            columns.user_id.push(event.user_id as i64);
            columns.day.push(day);
            columns.ts.push(event.ts);
            columns.event_id.push(event.event_id);
            columns.session_id.push(event.session_id);
            columns.content_id.push(event.content_id as i64);
            columns.kind.push(i16::from(event.kind.code()));
            columns.sent_at.push(event.sent_at);
            columns.received_at.push(event.received_at);
            columns.position_ms.push(event.position_ms as i64);
            columns
                .duration_ms
                .push(event.duration_ms.map(|value| value as i64));
            columns
                .bitrate_kbps
                .push(event.bitrate_kbps.map(|value| value as i32));
            columns
                .buffer_ms
                .push(event.buffer_ms.map(|value| value as i32));
            columns
                .played_ms
                .push(event.played_ms.map(|value| value as i32));
            columns
                .startup_ms
                .push(event.startup_ms.map(|value| value as i32));
            columns.before_start.push(event.before_start);
            columns.fatal.push(event.fatal);
            columns.error_code.push(text(&event.error_code));
            columns.device.push(text(&event.device));
            columns.cdn.push(text(&event.cdn));
            columns.app_version.push(text(&event.app_version));
            columns
                .country
                .push(event.country.map(|code| code.as_str().to_owned()));
        }
        (columns, days)
    }
}

const INSERT: &str = "INSERT INTO playback_events (user_id, day, ts, event_id, session_id, \
    content_id, kind, sent_at, received_at, position_ms, duration_ms, bitrate_kbps, buffer_ms, \
    played_ms, startup_ms, before_start, fatal, error_code, device, cdn, app_version, country) \
    SELECT * FROM UNNEST($1::int8[], $2::int4[], $3::int8[], $4::uuid[], $5::uuid[], \
    $6::int8[], $7::int2[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int4[], \
    $13::int4[], $14::int4[], $15::int4[], $16::bool[], $17::bool[], $18::text[], $19::text[], \
    $20::text[], $21::text[], $22::text[]) \
    ON CONFLICT (user_id, day, ts, event_id) DO UPDATE SET session_id = EXCLUDED.session_id, \
    content_id = EXCLUDED.content_id, kind = EXCLUDED.kind, sent_at = EXCLUDED.sent_at, \
    received_at = EXCLUDED.received_at, position_ms = EXCLUDED.position_ms, \
    duration_ms = EXCLUDED.duration_ms, bitrate_kbps = EXCLUDED.bitrate_kbps, \
    buffer_ms = EXCLUDED.buffer_ms, played_ms = EXCLUDED.played_ms, \
    startup_ms = EXCLUDED.startup_ms, before_start = EXCLUDED.before_start, \
    fatal = EXCLUDED.fatal, error_code = EXCLUDED.error_code, device = EXCLUDED.device, \
    cdn = EXCLUDED.cdn, app_version = EXCLUDED.app_version, country = EXCLUDED.country";

fn event_of(row: &PgRow) -> Result<PlaybackEvent, SinkError> {
    let corrupt = |error: sqlx::Error| SinkError::Failed(format!("a stored event: {error}"));
    let code: i16 = row.try_get("kind").map_err(corrupt)?;
    let kind = u8::try_from(code)
        .ok()
        .and_then(EventKind::from_code)
        .ok_or_else(|| SinkError::Failed(format!("a stored event has kind code {code}")))?;
    let text = |name: &str| -> Result<Option<SmolStr>, SinkError> {
        Ok(row
            .try_get::<Option<String>, _>(name)
            .map_err(corrupt)?
            .map(SmolStr::from))
    };
    let country = match row
        .try_get::<Option<String>, _>("country")
        .map_err(corrupt)?
    {
        Some(code) => Some(
            CountryCode::parse(&code)
                .ok_or_else(|| SinkError::Failed(format!("a stored event has country {code:?}")))?,
        ),
        None => None,
    };
    let unsigned = |name: &str| -> Result<Option<u32>, SinkError> {
        Ok(row
            .try_get::<Option<i32>, _>(name)
            .map_err(corrupt)?
            .map(|value| value as u32))
    };
    Ok(PlaybackEvent {
        event_id: row.try_get("event_id").map_err(corrupt)?,
        session_id: row.try_get("session_id").map_err(corrupt)?,
        user_id: row.try_get::<i64, _>("user_id").map_err(corrupt)? as u64,
        content_id: row.try_get::<i64, _>("content_id").map_err(corrupt)? as u64,
        kind,
        ts: row.try_get("ts").map_err(corrupt)?,
        sent_at: row.try_get("sent_at").map_err(corrupt)?,
        received_at: row.try_get("received_at").map_err(corrupt)?,
        position_ms: row.try_get::<i64, _>("position_ms").map_err(corrupt)? as u64,
        duration_ms: row
            .try_get::<Option<i64>, _>("duration_ms")
            .map_err(corrupt)?
            .map(|value| value as u64),
        bitrate_kbps: unsigned("bitrate_kbps")?,
        buffer_ms: unsigned("buffer_ms")?,
        played_ms: unsigned("played_ms")?,
        startup_ms: unsigned("startup_ms")?,
        before_start: row.try_get("before_start").map_err(corrupt)?,
        fatal: row.try_get("fatal").map_err(corrupt)?,
        error_code: text("error_code")?,
        device: text("device")?,
        cdn: text("cdn")?,
        app_version: text("app_version")?,
        country,
    })
}

#[async_trait]
impl EventSink for PostgresSink {
    async fn write(&self, _shard: usize, events: Arc<Vec<PlaybackEvent>>) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        let (columns, days) = Columns::of(&events);
        let write = async {
            self.ensure_partitions(&days).await?;
            sqlx::query(INSERT)
                .bind(&columns.user_id)
                .bind(&columns.day)
                .bind(&columns.ts)
                .bind(&columns.event_id)
                .bind(&columns.session_id)
                .bind(&columns.content_id)
                .bind(&columns.kind)
                .bind(&columns.sent_at)
                .bind(&columns.received_at)
                .bind(&columns.position_ms)
                .bind(&columns.duration_ms)
                .bind(&columns.bitrate_kbps)
                .bind(&columns.buffer_ms)
                .bind(&columns.played_ms)
                .bind(&columns.startup_ms)
                .bind(&columns.before_start)
                .bind(&columns.fatal)
                .bind(&columns.error_code)
                .bind(&columns.device)
                .bind(&columns.cdn)
                .bind(&columns.app_version)
                .bind(&columns.country)
                .execute(&self.pool)
                .await
                .map_err(|error| unavailable("write a batch", error))?;
            Ok(())
        };
        tokio::time::timeout(self.request_timeout, write)
            .await
            .map_err(|_| timed_out("write a batch"))?
    }

    async fn history(&self, query: HistoryQuery) -> Result<Vec<PlaybackEvent>, SinkError> {
        if query.limit == 0 || query.from_ms > query.to_ms {
            return Ok(Vec::new());
        }
        // An event re-sent with another `ts` is two rows: read until `limit` distinct ones, or
        // all there is.
        let mut fetch = query.limit as i64;
        loop {
            let rows = tokio::time::timeout(self.request_timeout, self.read_newest(&query, fetch))
                .await
                .map_err(|_| timed_out("read history"))??;
            let complete = (rows.len() as i64) < fetch;
            let unique = newest_first_unique(rows, query.limit);
            if complete || unique.len() >= query.limit {
                return Ok(unique);
            }
            fetch = fetch.saturating_mul(2);
        }
    }

    async fn ready(&self) -> bool {
        let probe = sqlx::query("SELECT 1").execute(&self.pool);
        matches!(
            tokio::time::timeout(self.request_timeout, probe).await,
            Ok(Ok(_))
        )
    }

    async fn shutdown(&self) {
        if let Some(sweeper) = self
            .sweeper
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            sweeper.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip_negative_days() {
        for day in [0, 1, 20_000, -1, -719_162] {
            assert_eq!(day_of_partition(&partition_name(day)), Some(day));
        }
        assert_eq!(day_of_partition("playback_events_dx"), None);
        assert_eq!(day_of_partition("other_d3"), None);
    }

    #[test]
    fn day_bounds_fit_a_partition_key() {
        assert_eq!(day_bound(i64::MIN), i32::MIN);
        assert_eq!(day_bound(i64::MAX), i32::MAX);
        assert_eq!(day_bound(-1), -1);
        assert_eq!(day_bound(MS_PER_DAY), 1);
    }

    #[test]
    fn a_batch_keeps_the_last_copy_of_a_key() {
        let first = testkit::event(1, 10);
        let again = PlaybackEvent {
            position_ms: 99,
            ..first.clone()
        };
        let (columns, days) = Columns::of(&[first, again]);
        assert_eq!(columns.position_ms, vec![99]);
        assert_eq!(days.len(), 1);
    }
}
