//! Live playback sessions and "continue watching". A session is live while events keep coming:
//! it goes once it ends (`stop`, `complete`, a fatal error) or after `ttl` of silence. Concurrent
//! viewers are the live sessions. "Continue watching" is each title's last position, kept with a
//! long TTL and rebuilt from the viewer's history when missing (see [`continue_from_history`]).
//!
//! In process ([`MemorySessions`]) on the embedded default, in Redis ([`RedisSessions`]) at scale.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wire::{EventKind, PlaybackEvent};

use crate::store::AnalyticsError;

/// What a player is doing, as its events say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlayerState {
    Playing,
    Paused,
    Buffering,
    Ended,
}

impl PlayerState {
    /// The state an event puts the player in; `None` for events that leave it as it was.
    pub fn after(event: &PlaybackEvent) -> Option<PlayerState> {
        Some(match event.kind {
            EventKind::Start | EventKind::Resume | EventKind::BufferEnd => PlayerState::Playing,
            EventKind::Pause => PlayerState::Paused,
            EventKind::BufferStart => PlayerState::Buffering,
            EventKind::Stop | EventKind::Complete => PlayerState::Ended,
            EventKind::Error if event.fatal != Some(false) => PlayerState::Ended,
            _ => return None,
        })
    }
}

/// A session's newest state. `state` is the state of its newest state-changing event (`None`
/// while no such event has been seen: a heartbeat of a session started before a restart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveSession {
    pub session_id: Uuid,
    pub user_id: u64,
    pub title: u64,
    pub device: Option<String>,
    pub position_ms: u64,
    pub duration_ms: Option<u64>,
    pub bitrate_kbps: Option<u32>,
    pub state: Option<PlayerState>,
    /// Client time of the newest event, epoch ms.
    pub last_event_at: i64,
    pub last_event: EventKind,
    /// Server time the newest event arrived: what silence is measured from.
    pub seen_at: i64,
}

impl LiveSession {
    pub fn of(event: &PlaybackEvent) -> LiveSession {
        LiveSession {
            session_id: event.session_id,
            user_id: event.user_id,
            title: event.content_id,
            device: event.device.as_ref().map(|device| device.to_string()),
            position_ms: event.position_ms,
            duration_ms: event.duration_ms,
            bitrate_kbps: event.bitrate_kbps,
            state: PlayerState::after(event),
            last_event_at: event.ts,
            last_event: event.kind,
            seen_at: event.received_at,
        }
    }

    /// Folds a later (or earlier: batches may come out of order) event of the same session in,
    /// in place: this runs once per event, so it allocates only when the device changes.
    pub fn absorb(&mut self, event: &PlaybackEvent) {
        self.seen_at = self.seen_at.max(event.received_at);
        if event.ts < self.last_event_at {
            return;
        }
        self.user_id = event.user_id;
        self.title = event.content_id;
        if self.device.as_deref() != event.device.as_deref() && event.device.is_some() {
            self.device = event.device.as_ref().map(|device| device.to_string());
        }
        self.position_ms = event.position_ms;
        self.duration_ms = event.duration_ms.or(self.duration_ms);
        self.bitrate_kbps = event.bitrate_kbps.or(self.bitrate_kbps);
        self.state = PlayerState::after(event).or(self.state);
        self.last_event_at = event.ts;
        self.last_event = event.kind;
    }

    pub fn ended(&self) -> bool {
        self.state == Some(PlayerState::Ended)
    }
}

/// Where a viewer left a title.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    pub title: u64,
    pub position_ms: u64,
    pub duration_ms: Option<u64>,
    /// Client time of the event that left it there.
    pub at: i64,
    /// Watched to the end: not offered again.
    pub completed: bool,
}

impl Resume {
    fn of(session: &LiveSession) -> Resume {
        Resume {
            title: session.title,
            position_ms: session.position_ms,
            duration_ms: session.duration_ms,
            at: session.last_event_at,
            completed: session.last_event == EventKind::Complete,
        }
    }
}

/// Titles to continue, newest first, completed ones left out.
pub fn continue_list(resumes: impl IntoIterator<Item = Resume>) -> Vec<Resume> {
    let mut newest: HashMap<u64, Resume> = HashMap::new();
    for resume in resumes {
        match newest.get(&resume.title) {
            Some(known) if known.at >= resume.at => {}
            _ => {
                newest.insert(resume.title, resume);
            }
        }
    }
    let mut list: Vec<Resume> = newest
        .into_values()
        .filter(|resume| !resume.completed)
        .collect();
    list.sort_by(|a, b| b.at.cmp(&a.at).then(a.title.cmp(&b.title)));
    list
}

/// "Continue watching" from a viewer's history (any order): the newest event of each title.
pub fn continue_from_history(events: &[PlaybackEvent]) -> Vec<Resume> {
    continue_list(
        events
            .iter()
            .map(|event| Resume::of(&LiveSession::of(event))),
    )
}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Records the newest state of sessions (one entry per session per flush).
    async fn update(&self, sessions: &[LiveSession]) -> Result<(), AnalyticsError>;

    /// The viewer's live sessions at `now_ms`, newest first.
    async fn of_user(&self, user_id: u64, now_ms: i64) -> Result<Vec<LiveSession>, AnalyticsError>;

    /// Live sessions at `now_ms`: the concurrent viewers.
    async fn concurrent(&self, now_ms: i64) -> Result<u64, AnalyticsError>;

    /// What the store knows of where the viewer left each title; `None` when it does not know
    /// the whole list (never built from history, or expired): then the caller rebuilds it.
    async fn continue_watching(&self, user_id: u64) -> Result<Option<Vec<Resume>>, AnalyticsError>;

    /// Stores a list rebuilt from history, merged with what arrived meanwhile.
    async fn remember_continue(&self, user_id: u64, list: &[Resume]) -> Result<(), AnalyticsError>;
}

/// The embedded default.
pub struct MemorySessions {
    ttl_ms: i64,
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    sessions: HashMap<Uuid, LiveSession>,
    by_user: HashMap<u64, Vec<Uuid>>,
    /// user → (complete, title → resume).
    resumes: HashMap<u64, (bool, HashMap<u64, Resume>)>,
}

impl MemorySessions {
    pub fn new(ttl: Duration) -> MemorySessions {
        MemorySessions {
            ttl_ms: ttl.as_millis() as i64,
            state: Mutex::new(MemoryState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn remember(resumes: &mut HashMap<u64, Resume>, resume: Resume) {
    match resumes.get(&resume.title) {
        Some(known) if known.at > resume.at => {}
        _ => {
            resumes.insert(resume.title, resume);
        }
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn update(&self, sessions: &[LiveSession]) -> Result<(), AnalyticsError> {
        let mut state = self.state();
        let newest_seen = sessions.iter().map(|s| s.seen_at).max().unwrap_or(0);
        for session in sessions {
            let entry = state.resumes.entry(session.user_id).or_default();
            remember(&mut entry.1, Resume::of(session));
            if session.ended() {
                state.sessions.remove(&session.session_id);
                continue;
            }
            let merged = match state.sessions.get(&session.session_id) {
                Some(known) if known.last_event_at > session.last_event_at => LiveSession {
                    seen_at: session.seen_at.max(known.seen_at),
                    ..known.clone()
                },
                Some(known) => LiveSession {
                    state: session.state.or(known.state),
                    ..session.clone()
                },
                None => session.clone(),
            };
            state.sessions.insert(session.session_id, merged);
            let ids = state.by_user.entry(session.user_id).or_default();
            if !ids.contains(&session.session_id) {
                ids.push(session.session_id);
            }
        }
        // Forget the silent ones now and then, so memory follows the live audience.
        let horizon = newest_seen - self.ttl_ms;
        if state.sessions.len() > 1024 && newest_seen > 0 {
            state
                .sessions
                .retain(|_, session| session.seen_at > horizon);
            let MemoryState {
                sessions, by_user, ..
            } = &mut *state;
            by_user.retain(|_, ids| {
                ids.retain(|id| sessions.contains_key(id));
                !ids.is_empty()
            });
        }
        Ok(())
    }

    async fn of_user(&self, user_id: u64, now_ms: i64) -> Result<Vec<LiveSession>, AnalyticsError> {
        let state = self.state();
        let mut live: Vec<LiveSession> = state
            .by_user
            .get(&user_id)
            .into_iter()
            .flatten()
            .filter_map(|id| state.sessions.get(id))
            .filter(|session| session.seen_at > now_ms - self.ttl_ms)
            .cloned()
            .collect();
        live.sort_by_key(|session| std::cmp::Reverse(session.last_event_at));
        Ok(live)
    }

    async fn concurrent(&self, now_ms: i64) -> Result<u64, AnalyticsError> {
        let state = self.state();
        Ok(state
            .sessions
            .values()
            .filter(|session| session.seen_at > now_ms - self.ttl_ms)
            .count() as u64)
    }

    async fn continue_watching(&self, user_id: u64) -> Result<Option<Vec<Resume>>, AnalyticsError> {
        let state = self.state();
        Ok(match state.resumes.get(&user_id) {
            Some((true, resumes)) => Some(continue_list(resumes.values().cloned())),
            _ => None,
        })
    }

    async fn remember_continue(&self, user_id: u64, list: &[Resume]) -> Result<(), AnalyticsError> {
        let mut state = self.state();
        let entry = state.resumes.entry(user_id).or_default();
        for resume in list {
            remember(&mut entry.1, resume.clone());
        }
        entry.0 = true;
        Ok(())
    }
}

/// Sessions in Redis. Keys (under `prefix`):
/// - `sessions:{user}`: a hash of session id → the session as JSON (and `{id}:state` → its
///   state), expiring `ttl` after its last write (readers also drop entries silent for longer
///   than `ttl`);
/// - `sessions:live`: a sorted set of session id → last seen, trimmed to `ttl`: its size is the
///   concurrent viewers;
/// - `continue:{user}`: a hash of title → [`Resume`] as JSON, expiring after `continue_ttl`; the
///   field `complete` says it was built from history, so a hash without it is partial.
pub struct RedisSessions {
    connection: ConnectionManager,
    ttl: Duration,
    continue_ttl: Duration,
    prefix: String,
}

const COMPLETE_FIELD: &str = "complete";
/// `{session}:state` holds a session's state, written only by events that set it.
const STATE_SUFFIX: &str = ":state";

fn redis_error(error: redis::RedisError) -> AnalyticsError {
    AnalyticsError::Unavailable(format!("redis: {error}"))
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

impl RedisSessions {
    pub fn new(
        connection: ConnectionManager,
        ttl: Duration,
        continue_ttl: Duration,
        prefix: &str,
    ) -> RedisSessions {
        RedisSessions {
            connection,
            ttl,
            continue_ttl,
            prefix: prefix.to_owned(),
        }
    }

    fn user_key(&self, user_id: u64) -> String {
        format!("{}sessions:{user_id}", self.prefix)
    }

    fn live_key(&self) -> String {
        format!("{}sessions:live", self.prefix)
    }

    fn continue_key(&self, user_id: u64) -> String {
        format!("{}continue:{user_id}", self.prefix)
    }

    fn ttl_ms(&self) -> i64 {
        self.ttl.as_millis() as i64
    }
}

#[async_trait]
impl SessionStore for RedisSessions {
    async fn update(&self, sessions: &[LiveSession]) -> Result<(), AnalyticsError> {
        if sessions.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection.clone();
        let mut pipe = redis::pipe();
        let ttl_ms = self.ttl.as_millis() as u64;
        let continue_ms = self.continue_ttl.as_millis() as u64;
        let newest_seen = sessions.iter().map(|s| s.seen_at).max().unwrap_or(0);
        for session in sessions {
            let user_key = self.user_key(session.user_id);
            let id = session.session_id.to_string();
            let state_field = format!("{id}{STATE_SUFFIX}");
            if session.ended() {
                pipe.hdel(&user_key, &[&id, &state_field]).ignore();
                pipe.zrem(self.live_key(), &id).ignore();
            } else {
                pipe.hset(&user_key, &id, json(session)).ignore();
                // Kept apart: an update that does not know the state must not erase it.
                if let Some(state) = session.state {
                    pipe.hset(&user_key, &state_field, json(&state)).ignore();
                }
                pipe.pexpire(&user_key, ttl_ms as i64).ignore();
                pipe.zadd(self.live_key(), &id, session.seen_at).ignore();
            }
            let continue_key = self.continue_key(session.user_id);
            pipe.hset(&continue_key, session.title, json(&Resume::of(session)))
                .ignore();
            pipe.pexpire(&continue_key, continue_ms as i64).ignore();
        }
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(self.live_key())
            .arg("-inf")
            .arg(newest_seen - self.ttl_ms())
            .ignore();
        pipe.query_async::<()>(&mut connection)
            .await
            .map_err(redis_error)
    }

    async fn of_user(&self, user_id: u64, now_ms: i64) -> Result<Vec<LiveSession>, AnalyticsError> {
        let mut connection = self.connection.clone();
        let raw: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.user_key(user_id))
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let mut live: Vec<LiveSession> = raw
            .iter()
            .filter(|(field, _)| !field.ends_with(STATE_SUFFIX))
            .filter_map(|(field, text)| {
                let mut session = serde_json::from_str::<LiveSession>(text).ok()?;
                if let Some(state) = raw.get(&format!("{field}{STATE_SUFFIX}")) {
                    session.state = serde_json::from_str(state).ok().or(session.state);
                }
                Some(session)
            })
            .filter(|session| session.seen_at > now_ms - self.ttl_ms())
            .collect();
        live.sort_by_key(|session| std::cmp::Reverse(session.last_event_at));
        Ok(live)
    }

    async fn concurrent(&self, now_ms: i64) -> Result<u64, AnalyticsError> {
        let mut connection = self.connection.clone();
        redis::cmd("ZCOUNT")
            .arg(self.live_key())
            .arg(format!("({}", now_ms - self.ttl_ms()))
            .arg("+inf")
            .query_async(&mut connection)
            .await
            .map_err(redis_error)
    }

    async fn continue_watching(&self, user_id: u64) -> Result<Option<Vec<Resume>>, AnalyticsError> {
        let mut connection = self.connection.clone();
        let raw: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.continue_key(user_id))
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        if !raw.contains_key(COMPLETE_FIELD) {
            return Ok(None);
        }
        Ok(Some(continue_list(raw.iter().filter_map(
            |(field, text)| {
                (field != COMPLETE_FIELD)
                    .then(|| serde_json::from_str::<Resume>(text).ok())
                    .flatten()
            },
        ))))
    }

    async fn remember_continue(&self, user_id: u64, list: &[Resume]) -> Result<(), AnalyticsError> {
        let mut connection = self.connection.clone();
        let key = self.continue_key(user_id);
        // Entries that arrived since the history was read are newer: keep them.
        let known: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let mut pipe = redis::pipe();
        for resume in list {
            let newer_known = known
                .get(&resume.title.to_string())
                .and_then(|text| serde_json::from_str::<Resume>(text).ok())
                .is_some_and(|stored| stored.at >= resume.at);
            if !newer_known {
                pipe.hset(&key, resume.title, json(resume)).ignore();
            }
        }
        pipe.hset(&key, COMPLETE_FIELD, 1).ignore();
        pipe.pexpire(&key, self.continue_ttl.as_millis() as i64)
            .ignore();
        pipe.query_async::<()>(&mut connection)
            .await
            .map_err(redis_error)
    }
}
