//! One viewer and the state machine of their player.
//!
//! ```text
//!              start                      pause                 
//!   Browsing ─────────▶ Playing ◀──────────────────────▶ Paused       (resume back)
//!      ▲                 │  ▲  heartbeat, seek,            │ heartbeat, seek
//!      │                 │  │  bitrate_change, error       │
//!      │ stop, complete, │  │                              │ stop
//!      │ fatal error     ▼  │ buffer_end                   ▼
//!      └──────────── Buffering (heartbeat, bitrate_change) ──▶ Browsing on stop or error
//! ```
//!
//! [`is_legal`] is the whole table. Each state races exponential clocks (memoryless, so they
//! are simply drawn again after every event) against the periodic heartbeat and, while playing,
//! the end of the title; the earliest wins. Simulated time is in milliseconds from the start of
//! the run.

use uuid::Uuid;
use wire::EventKind;

use super::devices::{DeviceProfile, CDNS, COUNTRIES, DEVICES, ERROR_CODES};
use super::rng::{mix, Rng};
use super::zipf::ZipfCatalog;

/// Where a viewer's player is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlayerState {
    /// Between sessions: choosing what to watch next.
    Browsing,
    Playing,
    Paused,
    /// Stalled, waiting for the buffer to refill.
    Buffering,
}

/// Whether an event of `kind` may take a player from `from` to `to`.
pub fn is_legal(from: PlayerState, kind: EventKind, to: PlayerState) -> bool {
    use EventKind as K;
    use PlayerState::{Browsing, Buffering, Paused, Playing};
    matches!(
        (from, kind, to),
        (Browsing, K::Start, Playing)
            | (Playing, K::Heartbeat | K::Seek | K::BitrateChange, Playing)
            | (Playing, K::Pause, Paused)
            | (Playing, K::BufferStart, Buffering)
            | (Playing, K::Error, Playing | Browsing)
            | (Playing, K::Stop | K::Complete, Browsing)
            | (Paused, K::Heartbeat | K::Seek, Paused)
            | (Paused, K::Resume, Playing)
            | (Paused, K::Stop, Browsing)
            | (Buffering, K::Heartbeat | K::BitrateChange, Buffering)
            | (Buffering, K::BufferEnd, Playing)
            | (Buffering, K::Error | K::Stop, Browsing)
    )
}

const HOUR_MS: f64 = 3_600_000.0;
const MINUTE_MS: f64 = 60_000.0;

/// Mean time between sessions: browsing the catalog.
const MEAN_BROWSING_MS: f64 = 20_000.0;
/// Share of viewers already mid-title when the run starts, so it begins in a steady state
/// instead of a storm of `start` events: sessions last tens of minutes and browsing about
/// 20 s, so about 1% of viewers are between titles at any moment.
const MID_SESSION_AT_START: f64 = 0.99;
/// While playing, per hour of playback.
const PAUSES_PER_HOUR: f64 = 2.0;
const SEEKS_PER_HOUR: f64 = 1.5;
const BITRATE_CHANGES_PER_HOUR: f64 = 6.0;
const ABANDONS_PER_HOUR: f64 = 1.0;
/// A seek empties the buffer often enough that a stall follows about half the time.
const STALL_AFTER_SEEK: f64 = 0.5;
const MEAN_STALL_AFTER_SEEK_MS: f64 = 300.0;
/// While paused.
const MEAN_PAUSE_MS: f64 = 60_000.0;
const MEAN_PAUSED_UNTIL_STOP_MS: f64 = 10.0 * MINUTE_MS;
const MEAN_PAUSED_UNTIL_SEEK_MS: f64 = 10.0 * MINUTE_MS;
/// While stalled: most stalls last a couple of seconds; some viewers give up.
const MEAN_STALL_MS: f64 = 2_500.0;
const MEAN_STALLED_UNTIL_ABR_DOWN_MS: f64 = 8_000.0;
const MEAN_STALLED_UNTIL_GIVE_UP_MS: f64 = 2.0 * MINUTE_MS;
const MEAN_STALLED_UNTIL_FATAL_ERROR_MS: f64 = 5.0 * MINUTE_MS;
/// Sessions that pick a title up where the viewer left it.
const RESUMED_TITLE: f64 = 0.3;

/// What the viewer does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Start,
    Heartbeat,
    Pause,
    Resume,
    Seek,
    BufferStart,
    BufferEnd,
    BitrateUp,
    BitrateDown,
    Error,
    Stop,
    Complete,
}

/// The title being watched.
#[derive(Debug, Clone)]
struct Session {
    id: Uuid,
    content_id: u64,
    duration_ms: u64,
    position_ms: u64,
    /// Index into the device's bitrate ladder.
    rung: usize,
    cdn: &'static str,
    next_heartbeat_ms: u64,
    /// After a seek, when a stall may hit (raced against the other clocks).
    stall_after_seek_at_ms: Option<u64>,
}

/// One event as the workload produced it, before it gets wall-clock timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDraft {
    /// Simulated time, ms since the start of the run.
    pub at_ms: u64,
    pub event_id: Uuid,
    pub session_id: Uuid,
    pub user_id: u64,
    pub content_id: u64,
    pub kind: EventKind,
    pub position_ms: u64,
    pub duration_ms: Option<u64>,
    pub bitrate_kbps: Option<u32>,
    pub buffer_ms: Option<u32>,
    pub played_ms: Option<u32>,
    pub startup_ms: Option<u32>,
    pub before_start: Option<bool>,
    pub fatal: Option<bool>,
    pub error_code: Option<&'static str>,
    pub device: &'static str,
    pub cdn: &'static str,
    pub app_version: &'static str,
    pub country: &'static str,
}

#[derive(Debug, Clone)]
pub struct Viewer {
    rng: Rng,
    user_id: u64,
    heartbeat_ms: u64,
    device: &'static DeviceProfile,
    app_version: &'static str,
    country: &'static str,
    /// The taste segment (see [`super::Taste`]).
    segment: u32,
    state: PlayerState,
    session: Option<Session>,
    /// When the previous event happened (or the run started).
    last_event_ms: u64,
    next_at_ms: u64,
    next_action: Action,
}

impl Viewer {
    /// Viewer number `index` of the audience of run `seed`: the same arguments always give the
    /// same viewer and the same events.
    pub fn new(seed: u64, index: u64, heartbeat_ms: u64, catalog: &ZipfCatalog) -> Viewer {
        debug_assert!(heartbeat_ms > 0);
        let mut rng = Rng::for_stream(seed, index);
        // User ids stay below 2^53 so that every JSON tool reads them exactly.
        let user_id = mix(seed ^ 0x005E_71D5, index) % ((1u64 << 53) - 1) + 1;
        let device = rng.weighted(&DEVICES);
        let app_version = *rng.weighted(device.app_versions);
        let country = *rng.weighted(&COUNTRIES);
        let mut viewer = Viewer {
            rng,
            user_id,
            heartbeat_ms,
            device,
            app_version,
            country,
            segment: catalog.taste().segment_of(seed, index),
            state: PlayerState::Browsing,
            session: None,
            last_event_ms: 0,
            next_at_ms: 0,
            next_action: Action::Start,
        };
        if viewer.rng.chance(MID_SESSION_AT_START) {
            // The session began before the run: its `start` was sent by an earlier run.
            let mut session = viewer.new_session(0, catalog);
            session.position_ms = viewer.rng.below(session.duration_ms * 9 / 10 + 1);
            session.next_heartbeat_ms = viewer.rng.between(1, heartbeat_ms);
            viewer.session = Some(session);
            viewer.state = PlayerState::Playing;
        }
        viewer.schedule_next(0);
        viewer
    }

    pub fn user_id(&self) -> u64 {
        self.user_id
    }

    pub fn segment(&self) -> u32 {
        self.segment
    }

    pub fn state(&self) -> PlayerState {
        self.state
    }

    /// Simulated time of this viewer's next event.
    pub fn next_at_ms(&self) -> u64 {
        self.next_at_ms
    }

    /// Emits the pending event and schedules the one after it.
    pub fn step(&mut self, catalog: &ZipfCatalog) -> EventDraft {
        let now = self.next_at_ms;
        let action = self.next_action;
        let stalled_ms = (self.state == PlayerState::Buffering)
            .then(|| (now - self.last_event_ms).min(u64::from(u32::MAX)) as u32);
        if self.state == PlayerState::Playing {
            if let Some(session) = &mut self.session {
                let played = now - self.last_event_ms;
                session.position_ms = (session.position_ms + played).min(session.duration_ms);
            }
        }

        let (kind, next_state, error_code) = self.apply(action, now, catalog);
        let session = self
            .session
            .as_ref()
            .expect("every action but browsing happens in a session");
        let with_duration = matches!(
            kind,
            EventKind::Start | EventKind::Heartbeat | EventKind::Stop | EventKind::Complete
        );
        let draft = EventDraft {
            at_ms: now,
            event_id: self.rng.uuid(),
            session_id: session.id,
            user_id: self.user_id,
            content_id: session.content_id,
            kind,
            position_ms: session.position_ms,
            duration_ms: with_duration.then_some(session.duration_ms),
            bitrate_kbps: Some(self.device.ladder_kbps[session.rung]),
            buffer_ms: stalled_ms.filter(|stalled| *stalled > 0 || kind == EventKind::BufferEnd),
            played_ms: None,
            startup_ms: None,
            before_start: None,
            fatal: None,
            error_code,
            device: self.device.name,
            cdn: session.cdn,
            app_version: self.app_version,
            country: self.country,
        };
        debug_assert!(
            is_legal(self.state, kind, next_state),
            "{:?} {kind} {next_state:?}",
            self.state
        );

        self.state = next_state;
        if next_state == PlayerState::Browsing {
            self.session = None;
        }
        self.last_event_ms = now;
        self.schedule_next(now);
        draft
    }

    /// Carries out an action on the session; returns the event kind, the new state and the
    /// error code of an error.
    fn apply(
        &mut self,
        action: Action,
        now: u64,
        catalog: &ZipfCatalog,
    ) -> (EventKind, PlayerState, Option<&'static str>) {
        use PlayerState::{Browsing, Buffering, Paused, Playing};
        if action == Action::Start {
            let session = self.new_session(now, catalog);
            self.session = Some(session);
            return (EventKind::Start, Playing, None);
        }
        let state = self.state;
        let ladder_top = self.device.ladder_kbps.len() - 1;
        let Some(session) = self.session.as_mut() else {
            unreachable!("only `start` is scheduled while browsing");
        };
        session.stall_after_seek_at_ms = None;
        match action {
            Action::Start => unreachable!("handled above"),
            Action::Heartbeat => {
                session.next_heartbeat_ms = now + self.heartbeat_ms;
                (EventKind::Heartbeat, state, None)
            }
            Action::Pause => (EventKind::Pause, Paused, None),
            Action::Resume => (EventKind::Resume, Playing, None),
            Action::Seek => {
                let end = session.duration_ms.saturating_sub(1_000).max(1);
                session.position_ms = self.rng.below(end);
                if state == Playing && self.rng.chance(STALL_AFTER_SEEK) {
                    session.stall_after_seek_at_ms =
                        Some(now + self.rng.exponential_ms(MEAN_STALL_AFTER_SEEK_MS));
                }
                (EventKind::Seek, state, None)
            }
            Action::BufferStart => (EventKind::BufferStart, Buffering, None),
            Action::BufferEnd => (EventKind::BufferEnd, Playing, None),
            Action::BitrateUp => {
                session.rung = (session.rung + 1).min(ladder_top);
                (EventKind::BitrateChange, state, None)
            }
            Action::BitrateDown => {
                session.rung = session.rung.saturating_sub(1);
                (EventKind::BitrateChange, state, None)
            }
            Action::Error => {
                let (code, _, fatal) = *weighted_error(&mut self.rng);
                // A stalled player that errors gives up on the session.
                let ends_session = fatal || state == Buffering;
                (
                    EventKind::Error,
                    if ends_session { Browsing } else { Playing },
                    Some(code),
                )
            }
            Action::Stop => (EventKind::Stop, Browsing, None),
            Action::Complete => {
                session.position_ms = session.duration_ms;
                (EventKind::Complete, Browsing, None)
            }
        }
    }

    fn new_session(&mut self, now: u64, catalog: &ZipfCatalog) -> Session {
        let content_id =
            ZipfCatalog::content_id(catalog.sample_rank_for(self.segment, &mut self.rng));
        let duration_ms = ZipfCatalog::duration_ms(content_id);
        let cdn = *self.rng.weighted::<&'static str>(&CDNS);
        let position_ms = if self.rng.chance(RESUMED_TITLE) {
            duration_ms / 10 + self.rng.below(duration_ms * 7 / 10)
        } else {
            0
        };
        Session {
            id: self.rng.uuid(),
            content_id,
            duration_ms,
            position_ms,
            rung: self.device.ladder_kbps.len() / 2,
            cdn,
            next_heartbeat_ms: now + self.heartbeat_ms,
            stall_after_seek_at_ms: None,
        }
    }

    /// Races the clocks of the current state and keeps the earliest.
    fn schedule_next(&mut self, now: u64) {
        let rng = &mut self.rng;
        let device = self.device;
        let next = match (self.state, &self.session) {
            (PlayerState::Browsing, _) | (_, None) => Earliest {
                at_ms: now + rng.exponential_ms(MEAN_BROWSING_MS),
                action: Action::Start,
            },
            (state, Some(session)) => {
                let mut next = Earliest {
                    at_ms: session.next_heartbeat_ms.max(now + 1),
                    action: Action::Heartbeat,
                };
                let mut clocks = Clocks::default();
                match state {
                    PlayerState::Playing => {
                        let top = device.ladder_kbps.len() - 1;
                        let abr = if session.rung == top || (session.rung > 0 && rng.chance(0.4)) {
                            Action::BitrateDown
                        } else {
                            Action::BitrateUp
                        };
                        clocks.add(HOUR_MS / PAUSES_PER_HOUR, Action::Pause);
                        clocks.add(HOUR_MS / SEEKS_PER_HOUR, Action::Seek);
                        clocks.add(HOUR_MS / device.stalls_per_hour, Action::BufferStart);
                        clocks.add(HOUR_MS / BITRATE_CHANGES_PER_HOUR, abr);
                        clocks.add(HOUR_MS / device.errors_per_hour, Action::Error);
                        clocks.add(HOUR_MS / ABANDONS_PER_HOUR, Action::Stop);
                        let remaining = session.duration_ms.saturating_sub(session.position_ms);
                        next.offer(now + remaining.max(1), Action::Complete);
                        if let Some(stall_at) = session.stall_after_seek_at_ms {
                            next.offer(stall_at, Action::BufferStart);
                        }
                    }
                    PlayerState::Paused => {
                        clocks.add(MEAN_PAUSE_MS, Action::Resume);
                        clocks.add(MEAN_PAUSED_UNTIL_STOP_MS, Action::Stop);
                        clocks.add(MEAN_PAUSED_UNTIL_SEEK_MS, Action::Seek);
                    }
                    PlayerState::Buffering => {
                        clocks.add(MEAN_STALL_MS, Action::BufferEnd);
                        if session.rung > 0 {
                            clocks.add(MEAN_STALLED_UNTIL_ABR_DOWN_MS, Action::BitrateDown);
                        }
                        clocks.add(MEAN_STALLED_UNTIL_GIVE_UP_MS, Action::Stop);
                        clocks.add(MEAN_STALLED_UNTIL_FATAL_ERROR_MS, Action::Error);
                    }
                    PlayerState::Browsing => unreachable!("matched above"),
                }
                if let Some((at_ms, action)) = clocks.first_to_ring(now, rng) {
                    next.offer(at_ms, action);
                }
                next
            }
        };
        debug_assert!(next.at_ms > now, "simulated time moves forward");
        self.next_at_ms = next.at_ms;
        self.next_action = next.action;
    }
}

/// Independent exponential clocks, drawn as one: the first of them rings after an exponential
/// wait whose rate is the sum of theirs, and it is clock `i` with probability `rate_i / sum`.
/// One logarithm per event instead of one per clock (the draws showed up in profiles).
#[derive(Default)]
struct Clocks {
    clocks: [(f64, Option<Action>); 6],
    len: usize,
}

impl Clocks {
    /// A clock that rings on average every `mean_ms`.
    fn add(&mut self, mean_ms: f64, action: Action) {
        debug_assert!(self.len < self.clocks.len() && mean_ms > 0.0);
        self.clocks[self.len] = (1.0 / mean_ms, Some(action));
        self.len += 1;
    }

    fn first_to_ring(&self, now: u64, rng: &mut Rng) -> Option<(u64, Action)> {
        let clocks = &self.clocks[..self.len];
        let total: f64 = clocks.iter().map(|(rate, _)| rate).sum();
        if total <= 0.0 {
            return None;
        }
        let at_ms = now + rng.exponential_ms(1.0 / total);
        let mut ticket = rng.unit() * total;
        for (rate, action) in clocks {
            if ticket < *rate {
                return action.map(|action| (at_ms, action));
            }
            ticket -= rate;
        }
        clocks
            .last()
            .and_then(|(_, action)| action.map(|action| (at_ms, action)))
    }
}

/// The winner of a race of clocks; a tie keeps the first offer, so runs are reproducible.
struct Earliest {
    at_ms: u64,
    action: Action,
}

impl Earliest {
    fn offer(&mut self, at_ms: u64, action: Action) {
        if at_ms < self.at_ms {
            *self = Earliest { at_ms, action };
        }
    }
}

fn weighted_error(rng: &mut Rng) -> &'static (&'static str, u32, bool) {
    let total: u64 = ERROR_CODES
        .iter()
        .map(|(_, weight, _)| u64::from(*weight))
        .sum();
    let mut ticket = rng.below(total);
    for entry in &ERROR_CODES {
        let weight = u64::from(entry.1);
        if ticket < weight {
            return entry;
        }
        ticket -= weight;
    }
    &ERROR_CODES[ERROR_CODES.len() - 1]
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn catalog() -> ZipfCatalog {
        ZipfCatalog::new(1_000, 1.0).unwrap()
    }

    #[test]
    fn every_transition_a_viewer_makes_is_in_the_table() {
        let catalog = catalog();
        let mut seen: HashMap<(PlayerState, EventKind, PlayerState), u64> = HashMap::new();
        for index in 0..300 {
            let mut viewer = Viewer::new(42, index, 10_000, &catalog);
            let mut last_at = 0;
            let mut session = None;
            for _ in 0..2_000 {
                let from = viewer.state();
                let event = viewer.step(&catalog);
                let to = viewer.state();
                assert!(
                    is_legal(from, event.kind, to),
                    "{from:?} -{}-> {to:?}",
                    event.kind
                );
                assert!(event.at_ms >= last_at, "time never runs backwards");
                last_at = event.at_ms;
                if event.kind == EventKind::Start {
                    assert_ne!(
                        Some(event.session_id),
                        session,
                        "a start opens a new session"
                    );
                }
                session = Some(event.session_id);
                *seen.entry((from, event.kind, to)).or_default() += 1;
            }
        }
        // The walk reaches every kind of event.
        for kind in EventKind::ALL {
            assert!(seen.keys().any(|(_, k, _)| *k == kind), "never saw {kind}");
        }
    }

    #[test]
    fn positions_stay_within_the_title_and_stalls_report_their_length() {
        let catalog = catalog();
        for index in 0..100 {
            let mut viewer = Viewer::new(7, index, 10_000, &catalog);
            for _ in 0..1_000 {
                let event = viewer.step(&catalog);
                let duration = ZipfCatalog::duration_ms(event.content_id);
                assert!(event.position_ms <= duration);
                if event.kind == EventKind::BufferEnd {
                    assert!(event.buffer_ms.is_some());
                }
                assert_eq!(event.error_code.is_some(), event.kind == EventKind::Error);
            }
        }
    }

    #[test]
    fn heartbeats_come_at_the_interval_while_a_session_lasts() {
        let catalog = catalog();
        let mut viewer = Viewer::new(3, 1, 10_000, &catalog);
        let mut previous: HashMap<Uuid, u64> = HashMap::new();
        for _ in 0..5_000 {
            let event = viewer.step(&catalog);
            if event.kind == EventKind::Heartbeat {
                if let Some(last) = previous.insert(event.session_id, event.at_ms) {
                    assert_eq!(event.at_ms - last, 10_000);
                }
            }
        }
    }

    #[test]
    fn a_viewer_is_the_same_for_the_same_seed_and_index() {
        let catalog = catalog();
        let walk = |seed, index| {
            let mut viewer = Viewer::new(seed, index, 10_000, &catalog);
            (0..200).map(|_| viewer.step(&catalog)).collect::<Vec<_>>()
        };
        assert_eq!(walk(9, 4), walk(9, 4));
        assert_ne!(walk(9, 4), walk(10, 4));
        assert_ne!(walk(9, 4), walk(9, 5));
    }
}
