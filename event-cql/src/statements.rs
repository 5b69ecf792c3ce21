//! Every CQL statement the sink runs (the DDL is `schema.cql`), prepared once per
//! session, and the typed rows bound to them.

use std::time::Duration;

use scylla::client::session::Session;
use scylla::routing::partitioner::{Murmur3Partitioner, Partitioner, PartitionerHasher};
use scylla::routing::Token;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Statement;
use scylla::value::{CqlTimestamp, MaybeUnset};
use scylla::{DeserializeRow, SerializeRow};
use uuid::Uuid;
use wire::{CountryCode, EventKind, PlaybackEvent, SmolStr};

use crate::error::CassandraError;

pub const HISTORY_TABLE: &str = "viewing_history";
pub const DAYS_TABLE: &str = "viewing_days";

/// The columns of `viewing_history`, in the order the insert binds and the select reads them.
const HISTORY_COLUMNS: &str = "user_id, day, ts, event_id, session_id, content_id, kind, \
    sent_at, received_at, position_ms, duration_ms, bitrate_kbps, buffer_ms, error_code, device, \
    cdn, app_version, country, played_ms, startup_ms, before_start, fatal";

/// `{ks}` is replaced by the keyspace: tables are always named in full, so no `USE` is needed
/// and one session could serve several keyspaces.
const INSERT_EVENT: &str = "INSERT INTO {ks}.viewing_history ({columns}) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?";
const INSERT_DAY: &str = "INSERT INTO {ks}.viewing_days (user_id, day) VALUES (?, ?) USING TTL ?";
/// One day partition of one viewer, newest first (the table's clustering order).
const SELECT_HISTORY: &str = "SELECT {columns} FROM {ks}.viewing_history \
    WHERE user_id = ? AND day = ? AND ts >= :from_ts AND ts <= :to_ts LIMIT ?";
const SELECT_DAYS: &str =
    "SELECT day FROM {ks}.viewing_days WHERE user_id = ? AND day >= :from_day AND day <= :to_day";
/// Readiness: a one-partition read of our own table proves the node answers, the schema is
/// there and the replicas are up at our consistency.
const SELECT_READY: &str = "SELECT day FROM {ks}.viewing_days WHERE user_id = 0 LIMIT 1";

/// Schema changes (CREATE, DROP) wait for every node to agree and flush: far slower than a
/// write, so they get their own client timeout rather than `cassandra.request_timeout`.
pub const DDL_TIMEOUT: Duration = Duration::from_secs(60);

/// A schema statement, with [`DDL_TIMEOUT`].
pub fn ddl(cql: &str) -> Statement {
    let mut statement = Statement::new(cql);
    statement.set_request_timeout(Some(DDL_TIMEOUT));
    statement
}

/// For tests and benchmarks that make a keyspace of their own.
const DROP_KEYSPACE: &str = "DROP KEYSPACE IF EXISTS {ks}";

/// The sink's event INSERT for `keyspace` (with `USING TTL ?`), for writers that bind
/// [`EventRow`]s themselves.
pub fn insert_event_cql(keyspace: &str) -> String {
    render(INSERT_EVENT, keyspace)
}

pub fn drop_keyspace_cql(keyspace: &str) -> String {
    render(DROP_KEYSPACE, keyspace)
}

/// Introspection for `playpulse schema apply` (system tables, so not prepared per keyspace).
pub const SELECT_KEYSPACE: &str =
    "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?";
pub const SELECT_TABLES: &str =
    "SELECT table_name, default_time_to_live FROM system_schema.tables WHERE keyspace_name = ?";

/// History is read in pages of this many rows (a query asks for at most 10,000).
const HISTORY_PAGE_ROWS: i32 = 1_000;

fn render(template: &str, keyspace: &str) -> String {
    template
        .replace("{columns}", HISTORY_COLUMNS)
        .replace("{ks}", keyspace)
}

/// The sink's statements, prepared once when the sink starts. All are idempotent (plain
/// upserts and reads), so the driver and the service may send them again after a timeout.
#[derive(Debug, Clone)]
pub struct Statements {
    pub insert_event: PreparedStatement,
    pub insert_day: PreparedStatement,
    pub select_history: PreparedStatement,
    pub select_days: PreparedStatement,
    pub ready: PreparedStatement,
}

impl Statements {
    pub async fn prepare(
        session: &Session,
        keyspace: &str,
        ready_timeout: Duration,
    ) -> Result<Statements, CassandraError> {
        let prepare =
            |template: &'static str| prepare_idempotent(session, render(template, keyspace));
        let mut select_history = prepare(SELECT_HISTORY).await?;
        select_history.set_page_size(HISTORY_PAGE_ROWS);
        let mut ready = prepare(SELECT_READY).await?;
        // A probe answers fast or counts as down; it must not hold a health check for seconds.
        ready.set_request_timeout(Some(ready_timeout));
        Ok(Statements {
            insert_event: prepare(INSERT_EVENT).await?,
            insert_day: prepare(INSERT_DAY).await?,
            select_history,
            select_days: prepare(SELECT_DAYS).await?,
            ready,
        })
    }
}

/// Prepares `cql`, marked idempotent: every PlayPulse statement is a plain upsert or a read,
/// so the driver and the service may send it again after a timeout.
pub async fn prepare_idempotent(
    session: &Session,
    cql: String,
) -> Result<PreparedStatement, CassandraError> {
    match session.prepare(cql.as_str()).await {
        Ok(mut statement) => {
            statement.set_is_idempotent(true);
            Ok(statement)
        }
        Err(source) => Err(CassandraError::Prepare {
            cql,
            source: Box::new(source),
        }),
    }
}

/// A u64 in a signed CQL column: the same 64 bits. Values above i64::MAX are stored negative and
/// come back unchanged; the order of such ids in CQL differs from u64 order, which no query uses.
pub fn u64_to_cql(value: u64) -> i64 {
    value as i64
}

pub fn u64_from_cql(value: i64) -> u64 {
    value as u64
}

/// A u32 in a CQL `int`, bit-cast the same way.
pub fn u32_to_cql(value: u32) -> i32 {
    value as i32
}

pub fn u32_from_cql(value: i32) -> u32 {
    value as u32
}

/// The token of a `viewing_history` partition `(user_id, day)`, computed as Cassandra does for a
/// composite key: each component as a 2-byte length, its bytes and a 0 byte, hashed with
/// Murmur3. Cheaper than asking the driver (no allocation, no metadata lookup), which matters
/// once per row; a test checks it against the driver's answer.
pub fn history_token(user_id: u64, day: i32) -> Token {
    let mut key = [0u8; 2 + 8 + 1 + 2 + 4 + 1];
    key[0..2].copy_from_slice(&8u16.to_be_bytes());
    key[2..10].copy_from_slice(&u64_to_cql(user_id).to_be_bytes());
    key[11..13].copy_from_slice(&4u16.to_be_bytes());
    key[13..17].copy_from_slice(&day.to_be_bytes());
    let mut hasher = Murmur3Partitioner.build_hasher();
    hasher.write(&key);
    hasher.finish()
}

/// One event as bound to `INSERT_EVENT`. Absent optional fields are unset, not null: a null
/// would write a tombstone per absent field per row.
#[derive(SerializeRow)]
#[scylla(flavor = "enforce_order")]
pub struct EventRow<'a> {
    user_id: i64,
    day: i32,
    ts: CqlTimestamp,
    event_id: Uuid,
    session_id: Uuid,
    content_id: i64,
    kind: i8,
    sent_at: MaybeUnset<CqlTimestamp>,
    received_at: CqlTimestamp,
    position_ms: i64,
    duration_ms: MaybeUnset<i64>,
    bitrate_kbps: MaybeUnset<i32>,
    buffer_ms: MaybeUnset<i32>,
    error_code: MaybeUnset<&'a str>,
    device: MaybeUnset<&'a str>,
    cdn: MaybeUnset<&'a str>,
    app_version: MaybeUnset<&'a str>,
    country: MaybeUnset<&'a str>,
    played_ms: MaybeUnset<i32>,
    startup_ms: MaybeUnset<i32>,
    before_start: MaybeUnset<bool>,
    fatal: MaybeUnset<bool>,
    /// Cassandra names the `USING TTL ?` marker `[ttl]`.
    #[scylla(rename = "[ttl]")]
    ttl: i32,
}

impl<'a> EventRow<'a> {
    pub fn new(event: &'a PlaybackEvent, ttl_seconds: u32) -> EventRow<'a> {
        let text = |field: &'a Option<SmolStr>| MaybeUnset::from_option(field.as_deref());
        EventRow {
            user_id: u64_to_cql(event.user_id),
            day: event.day(),
            ts: CqlTimestamp(event.ts),
            event_id: event.event_id,
            session_id: event.session_id,
            content_id: u64_to_cql(event.content_id),
            kind: event.kind.code() as i8,
            sent_at: MaybeUnset::from_option(event.sent_at.map(CqlTimestamp)),
            received_at: CqlTimestamp(event.received_at),
            position_ms: u64_to_cql(event.position_ms),
            duration_ms: MaybeUnset::from_option(event.duration_ms.map(u64_to_cql)),
            bitrate_kbps: MaybeUnset::from_option(event.bitrate_kbps.map(u32_to_cql)),
            buffer_ms: MaybeUnset::from_option(event.buffer_ms.map(u32_to_cql)),
            error_code: text(&event.error_code),
            device: text(&event.device),
            cdn: text(&event.cdn),
            app_version: text(&event.app_version),
            country: MaybeUnset::from_option(event.country.as_ref().map(CountryCode::as_str)),
            played_ms: MaybeUnset::from_option(event.played_ms.map(u32_to_cql)),
            startup_ms: MaybeUnset::from_option(event.startup_ms.map(u32_to_cql)),
            before_start: MaybeUnset::from_option(event.before_start),
            fatal: MaybeUnset::from_option(event.fatal),
            ttl: ttl_seconds as i32,
        }
    }
}

/// A viewer has history on a day: bound to `INSERT_DAY`.
#[derive(SerializeRow)]
#[scylla(flavor = "enforce_order")]
pub struct DayRow {
    user_id: i64,
    day: i32,
    #[scylla(rename = "[ttl]")]
    ttl: i32,
}

impl DayRow {
    pub fn new(user_id: u64, day: i32, ttl_seconds: u32) -> DayRow {
        DayRow {
            user_id: u64_to_cql(user_id),
            day,
            ttl: ttl_seconds as i32,
        }
    }
}

/// Bound to `SELECT_HISTORY`.
#[derive(SerializeRow)]
#[scylla(flavor = "enforce_order")]
pub struct HistoryKey {
    user_id: i64,
    day: i32,
    from_ts: CqlTimestamp,
    to_ts: CqlTimestamp,
    #[scylla(rename = "[limit]")]
    limit: i32,
}

impl HistoryKey {
    pub fn new(user_id: u64, day: i32, from_ms: i64, to_ms: i64, limit: usize) -> HistoryKey {
        HistoryKey {
            user_id: u64_to_cql(user_id),
            day,
            from_ts: CqlTimestamp(from_ms),
            to_ts: CqlTimestamp(to_ms),
            limit: limit.min(i32::MAX as usize) as i32,
        }
    }
}

/// Bound to `SELECT_DAYS`.
#[derive(SerializeRow)]
#[scylla(flavor = "enforce_order")]
pub struct DaysKey {
    user_id: i64,
    from_day: i32,
    to_day: i32,
}

impl DaysKey {
    pub fn new(user_id: u64, from_day: i32, to_day: i32) -> DaysKey {
        DaysKey {
            user_id: u64_to_cql(user_id),
            from_day,
            to_day,
        }
    }
}

/// One row of `SELECT_HISTORY`, borrowing its texts from the response frame.
#[derive(DeserializeRow)]
#[scylla(flavor = "enforce_order")]
pub struct StoredEvent<'frame> {
    user_id: i64,
    #[allow(dead_code)]
    day: i32,
    ts: CqlTimestamp,
    event_id: Uuid,
    session_id: Uuid,
    content_id: i64,
    kind: i8,
    sent_at: Option<CqlTimestamp>,
    received_at: CqlTimestamp,
    position_ms: i64,
    duration_ms: Option<i64>,
    bitrate_kbps: Option<i32>,
    buffer_ms: Option<i32>,
    error_code: Option<&'frame str>,
    device: Option<&'frame str>,
    cdn: Option<&'frame str>,
    app_version: Option<&'frame str>,
    country: Option<&'frame str>,
    played_ms: Option<i32>,
    startup_ms: Option<i32>,
    before_start: Option<bool>,
    fatal: Option<bool>,
}

impl StoredEvent<'_> {
    pub fn into_event(self) -> Result<PlaybackEvent, CassandraError> {
        let kind = u8::try_from(self.kind)
            .ok()
            .and_then(EventKind::from_code)
            .ok_or_else(|| CassandraError::Decode(format!("unknown kind code {}", self.kind)))?;
        let country = match self.country {
            None => None,
            Some(code) => Some(CountryCode::parse(code).ok_or_else(|| {
                CassandraError::Decode(format!("`{code}` is not a country code"))
            })?),
        };
        let text = |field: Option<&str>| field.map(SmolStr::new);
        Ok(PlaybackEvent {
            event_id: self.event_id,
            session_id: self.session_id,
            user_id: u64_from_cql(self.user_id),
            content_id: u64_from_cql(self.content_id),
            kind,
            ts: self.ts.0,
            sent_at: self.sent_at.map(|at| at.0),
            received_at: self.received_at.0,
            position_ms: u64_from_cql(self.position_ms),
            duration_ms: self.duration_ms.map(u64_from_cql),
            bitrate_kbps: self.bitrate_kbps.map(u32_from_cql),
            buffer_ms: self.buffer_ms.map(u32_from_cql),
            played_ms: self.played_ms.map(u32_from_cql),
            startup_ms: self.startup_ms.map(u32_from_cql),
            before_start: self.before_start,
            fatal: self.fatal,
            error_code: text(self.error_code),
            device: text(self.device),
            cdn: text(self.cdn),
            app_version: text(self.app_version),
            country,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_above_the_signed_range_round_trip_through_bigint() {
        for id in [0, 1, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
            assert_eq!(u64_from_cql(u64_to_cql(id)), id);
        }
        for value in [0, i32::MAX as u32 + 7, u32::MAX] {
            assert_eq!(u32_from_cql(u32_to_cql(value)), value);
        }
    }

    #[test]
    fn every_statement_names_its_keyspace_and_no_placeholder_is_left() {
        for template in [
            INSERT_EVENT,
            INSERT_DAY,
            SELECT_HISTORY,
            SELECT_DAYS,
            SELECT_READY,
        ] {
            let cql = render(template, "pp_x");
            assert!(cql.contains("pp_x."), "{cql}");
            assert!(!cql.contains('{'), "{cql}");
        }
        assert_eq!(drop_keyspace_cql("pp_x"), "DROP KEYSPACE IF EXISTS pp_x");
        for cql in [SELECT_KEYSPACE, SELECT_TABLES] {
            assert!(!cql.contains('{'), "{cql}");
        }
    }

    #[test]
    fn the_insert_binds_one_marker_per_column_and_the_ttl() {
        let columns = HISTORY_COLUMNS.split(',').count();
        let markers = INSERT_EVENT.matches('?').count();
        assert_eq!(markers, columns + 1);
    }

    #[test]
    fn tokens_differ_by_day_and_by_user() {
        let base = history_token(42, 20_000);
        assert_eq!(base, history_token(42, 20_000));
        assert_ne!(base, history_token(42, 20_001));
        assert_ne!(base, history_token(43, 20_000));
    }
}
