//! What PlayPulse's tests share (a dev-dependency only): the real engines or a loud skip
//! ([`engines`]), names no other test uses ([`unique_name`]), [`free_port`], test events
//! ([`event`], [`full_event`]), polling with a deadline ([`eventually`]), never a sleep, and a
//! keyspace of one's own on Cassandra ([`cassandra::TestKeyspace`]) and a database of one's own
//! on PostgreSQL ([`postgres::fresh_database`]).

pub mod cassandra;
pub mod engines;
pub mod postgres;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;
use wire::{CountryCode, EventKind, PlaybackEvent};

/// The clock, epoch ms (what the service stamps as `received_at`).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// The clock, epoch seconds.
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A name no other test (in this process or another) uses: `{prefix}_{secs}_{random}`,
/// lowercase letters, digits and `_`, so it is a valid CQL keyspace, PostgreSQL database or
/// Redis key prefix. The creation second lets a cleanup find what old runs left behind.
pub fn unique_name(prefix: &str) -> String {
    let random = Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}_{}", unix_secs(), &random[..10])
}

/// Names made by [`unique_name`] older than this are left over from earlier runs.
const STALE_AGE_SECS: u64 = 30 * 60;

/// Whether `name` was made by `unique_name(prefix)` more than half an hour ago: what an earlier
/// run left behind (a keyspace, a database), to drop so that engines do not fill the disk.
pub fn is_stale(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|rest| rest.split('_').next())
        .and_then(|secs| secs.parse::<u64>().ok())
        .is_some_and(|created| unix_secs().saturating_sub(created) > STALE_AGE_SECS)
}

/// A user id no other test in this process uses (ids make failures easy to read).
pub fn fresh_user() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    1_000_000 + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A loopback port free a moment ago (for a child process that must bind it itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("the loopback interface gives a free port")
}

/// Polls `check` every 20 ms until it holds (true) or `deadline` passes (false).
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A stored heartbeat of `user_id` at client time `ts`: a fresh `event_id`, only the required
/// fields. Change what a test needs with struct update syntax:
/// `PlaybackEvent { kind: EventKind::Start, ..testkit::event(7, ts) }`.
pub fn event(user_id: u64, ts: i64) -> PlaybackEvent {
    PlaybackEvent {
        event_id: Uuid::new_v4(),
        session_id: Uuid::from_u128(0xfeed),
        user_id,
        content_id: 77,
        kind: EventKind::Heartbeat,
        ts,
        sent_at: None,
        received_at: ts,
        position_ms: 1_000,
        duration_ms: None,
        bitrate_kbps: None,
        buffer_ms: None,
        played_ms: None,
        startup_ms: None,
        before_start: None,
        fatal: None,
        error_code: None,
        device: None,
        cdn: None,
        app_version: None,
        country: None,
    }
}

/// [`event`] with every optional field set, as a fully instrumented player sends it.
pub fn full_event(user_id: u64, ts: i64) -> PlaybackEvent {
    PlaybackEvent {
        sent_at: Some(ts + 5),
        received_at: now_ms(),
        duration_ms: Some(5_400_000),
        bitrate_kbps: Some(3_000),
        buffer_ms: Some(40),
        played_ms: Some(9_000),
        startup_ms: Some(850),
        before_start: Some(false),
        fatal: Some(true),
        error_code: Some("E1".into()),
        device: Some("web".into()),
        cdn: Some("edge".into()),
        app_version: Some("1.0".into()),
        country: CountryCode::parse("JP"),
        ..event(user_id, ts)
    }
}
