use serde::{Deserialize, Serialize};
pub use smol_str::SmolStr;
use uuid::Uuid;

use crate::{CountryCode, EventKind};

/// A validated playback event: the domain type the pipeline batches and the stores keep.
///
/// Primary key in every store: partition `(user_id, day_of(ts))`, clustering `(ts, event_id)`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaybackEvent {
    pub event_id: Uuid,
    pub session_id: Uuid,
    pub user_id: u64,
    pub content_id: u64,
    pub kind: EventKind,
    /// Client clock when the event happened, epoch ms.
    pub ts: i64,
    /// Client clock when the request was sent, epoch ms.
    pub sent_at: Option<i64>,
    /// Server clock when the request arrived, epoch ms.
    pub received_at: i64,
    pub position_ms: u64,
    pub duration_ms: Option<u64>,
    pub bitrate_kbps: Option<u32>,
    /// Time rebuffering (stalled after playback began) since the session's previous event.
    pub buffer_ms: Option<u32>,
    /// Time playing (frames advancing) since the session's previous event.
    pub played_ms: Option<u32>,
    /// On `start`: video startup time, from the play request to the first frame.
    pub startup_ms: Option<u32>,
    /// On `stop` or `error`: sent before the first frame (an exit before video start or a
    /// startup failure; the view never started).
    pub before_start: Option<bool>,
    /// On `error`: the error ended playback (absent counts as fatal).
    pub fatal: Option<bool>,
    pub error_code: Option<SmolStr>,
    pub device: Option<SmolStr>,
    pub cdn: Option<SmolStr>,
    pub app_version: Option<SmolStr>,
    pub country: Option<CountryCode>,
}

impl PlaybackEvent {
    /// The viewing-history partition day.
    pub fn day(&self) -> i32 {
        crate::day_of(self.ts)
    }

    /// A rough size in memory and on the wire, for byte budgets and batch limits.
    pub fn approx_size(&self) -> usize {
        let text = |field: &Option<SmolStr>| field.as_ref().map_or(0, |text| text.len());
        160 + text(&self.error_code)
            + text(&self.device)
            + text(&self.cdn)
            + text(&self.app_version)
    }

    /// The event as the API returns it (wire fields plus `received_at`).
    pub fn to_wire(&self) -> WireEvent {
        let text = |field: &Option<SmolStr>| field.as_ref().map(|text| text.to_string());
        WireEvent {
            event_id: self.event_id.hyphenated().to_string(),
            session_id: self.session_id.hyphenated().to_string(),
            user_id: self.user_id,
            content_id: self.content_id,
            kind: self.kind,
            ts: self.ts,
            sent_at: self.sent_at,
            position_ms: self.position_ms,
            duration_ms: self.duration_ms,
            bitrate_kbps: self.bitrate_kbps,
            buffer_ms: self.buffer_ms,
            played_ms: self.played_ms,
            startup_ms: self.startup_ms,
            before_start: self.before_start,
            fatal: self.fatal,
            error_code: text(&self.error_code),
            device: text(&self.device),
            cdn: text(&self.cdn),
            app_version: text(&self.app_version),
            country: self.country.map(|country| country.to_string()),
            received_at: Some(self.received_at),
        }
    }
}

/// One event as JSON on the wire: what clients (and `loadgen`) send and what history returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireEvent {
    pub event_id: String,
    pub session_id: String,
    pub user_id: u64,
    pub content_id: u64,
    pub kind: EventKind,
    pub ts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<i64>,
    pub position_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate_kbps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub played_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_start: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fatal: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Stamped by the server; ignored when a client sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<i64>,
}
