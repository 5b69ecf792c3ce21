//! One viewer and the state machine of their player.
//!
//! ```text
//!   stop, error            start                      pause
//!   (before_start) ┌─ Browsing ─────────▶ Playing ◀──────────────────────▶ Paused   (resume back)
//!                  └──▶ ▲                 │  ▲  heartbeat, seek,            │ heartbeat, seek
//!                       │                 │  │  bitrate_change, error       │
//!                       │ stop, complete, │  │                              │ stop
//!                       │ fatal error     ▼  │ buffer_end                   ▼
//!                       └──────────── Buffering (heartbeat, bitrate_change) ──▶ Browsing on stop or error
//! ```
//!
//! [`is_legal`] is the whole table ([`is_legal_event`] adds the `before_start` rule). Each state
//! races exponential clocks (memoryless, so they are simply drawn again after every event)
//! against the periodic heartbeat and, while playing, the end of the title; the earliest wins.
//! Simulated time is in milliseconds from the start of the run.
//!
//! A play attempt (the end of browsing) either reaches its first frame, after the device's
//! log-normal startup time, and sends `start` with `startup_ms`; or the viewer gives up before
//! the first frame (a `stop` with `before_start`, [`DeviceProfile::exit_before_start`]); or the
//! startup fails (a fatal `error` with `before_start`, [`DeviceProfile::startup_failure`]). The
//! two last send no `start`: the attempt opens no playback and the viewer goes back to browsing.
//! Nothing is sent during a startup (no heartbeat: startups last seconds).
//!
//! QoE fields: every event sent while the player was playing since the viewer's previous event
//! carries `played_ms`, the time the frames advanced since then (the title's end stops them);
//! events after a pause, a stall or browsing carry none (nothing was played). `buffer_ms` is the
//! stall's length so far. `fatal` is on every `error` and nothing else: whether it ended the
//! session (the error code's flag, and always when the player was stalled or starting up).
//! Events before the first frame carry no `bitrate_kbps`: no rendition is playing.

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

/// Whether an event of `kind` may take a player from `from` to `to`. A `stop` or an `error`
/// from browsing ends a play attempt before its first frame, and is legal only as such (with
/// `before_start`; [`is_legal_event`] checks that too).
pub fn is_legal(from: PlayerState, kind: EventKind, to: PlayerState) -> bool {
    use EventKind as K;
    use PlayerState::{Browsing, Buffering, Paused, Playing};
    matches!(
        (from, kind, to),
        (Browsing, K::Start, Playing)
            | (Browsing, K::Stop | K::Error, Browsing)
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

/// [`is_legal`] for a whole event: exactly the `stop` and `error` events from browsing (the play
/// attempts that never reached their first frame) carry `before_start`, and it is `true`.
pub fn is_legal_event(from: PlayerState, event: &EventDraft, to: PlayerState) -> bool {
    let before_start = from == PlayerState::Browsing && event.kind != EventKind::Start;
    is_legal(from, event.kind, to) && event.before_start == before_start.then_some(true)
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
/// A viewer who gives up before the first frame waited on a slow startup: their wait is
/// log-normal like the device's startups, around this many times its median.
const EXIT_BEFORE_START_WAIT: f64 = 2.5;
/// A failing startup retries before it gives up: its error comes around this many times the
/// device's median startup after the play request.
const STARTUP_FAILURE_WAIT: f64 = 2.0;

/// What the viewer does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The first frame of a play attempt: `start`.
    Start,
    /// The viewer gives up before the first frame: `stop` with `before_start`.
    ExitBeforeStart,
    /// The startup fails: a fatal `error` with `before_start`.
    StartupFailure,
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
    /// The startup time of the pending play attempt (sent when it is a `start`).
    startup_ms: u32,
}

/// What an action did to the player, for its event.
struct Outcome {
    kind: EventKind,
    next_state: PlayerState,
    error_code: Option<&'static str>,
    /// On `error`: whether it ended the session.
    fatal: Option<bool>,
    /// The play attempt ended before its first frame.
    before_start: bool,
}

impl Outcome {
    fn of(kind: EventKind, next_state: PlayerState) -> Outcome {
        Outcome {
            kind,
            next_state,
            error_code: None,
            fatal: None,
            before_start: false,
        }
    }
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
            startup_ms: 0,
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
        let mut played_ms = None;
        if self.state == PlayerState::Playing {
            if let Some(session) = &mut self.session {
                // The frames advance until the title's end.
                let played = (now - self.last_event_ms)
                    .min(session.duration_ms.saturating_sub(session.position_ms));
                session.position_ms += played;
                played_ms = Some(played.min(u64::from(wire::limits::MAX_PLAYED_MS)) as u32);
            }
        }

        let Outcome {
            kind,
            next_state,
            error_code,
            fatal,
            before_start,
        } = self.apply(action, now, catalog);
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
            bitrate_kbps: (!before_start).then(|| self.device.ladder_kbps[session.rung]),
            buffer_ms: stalled_ms.filter(|stalled| *stalled > 0 || kind == EventKind::BufferEnd),
            played_ms,
            startup_ms: (kind == EventKind::Start).then_some(self.startup_ms),
            before_start: before_start.then_some(true),
            fatal,
            error_code,
            device: self.device.name,
            cdn: session.cdn,
            app_version: self.app_version,
            country: self.country,
        };
        debug_assert!(
            is_legal_event(self.state, &draft, next_state),
            "{:?} {kind} {next_state:?} {before_start}",
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

    /// Carries out an action on the session (a play attempt opens one); returns what the
    /// event says.
    fn apply(&mut self, action: Action, now: u64, catalog: &ZipfCatalog) -> Outcome {
        use PlayerState::{Browsing, Buffering, Paused, Playing};
        match action {
            Action::Start | Action::ExitBeforeStart | Action::StartupFailure => {
                let session = self.new_session(now, catalog);
                self.session = Some(session);
                return match action {
                    Action::Start => Outcome::of(EventKind::Start, Playing),
                    Action::ExitBeforeStart => Outcome {
                        before_start: true,
                        ..Outcome::of(EventKind::Stop, Browsing)
                    },
                    _ => Outcome {
                        // Any error ends a startup: the player gives up after its retries.
                        error_code: Some(weighted_error(&mut self.rng).0),
                        fatal: Some(true),
                        before_start: true,
                        ..Outcome::of(EventKind::Error, Browsing)
                    },
                };
            }
            _ => {}
        }
        let state = self.state;
        let ladder_top = self.device.ladder_kbps.len() - 1;
        let Some(session) = self.session.as_mut() else {
            unreachable!("only `start` is scheduled while browsing");
        };
        session.stall_after_seek_at_ms = None;
        let (kind, next_state) = match action {
            Action::Start | Action::ExitBeforeStart | Action::StartupFailure => {
                unreachable!("handled above")
            }
            Action::Heartbeat => {
                session.next_heartbeat_ms = now + self.heartbeat_ms;
                (EventKind::Heartbeat, state)
            }
            Action::Pause => (EventKind::Pause, Paused),
            Action::Resume => (EventKind::Resume, Playing),
            Action::Seek => {
                let end = session.duration_ms.saturating_sub(1_000).max(1);
                session.position_ms = self.rng.below(end);
                if state == Playing && self.rng.chance(STALL_AFTER_SEEK) {
                    session.stall_after_seek_at_ms =
                        Some(now + self.rng.exponential_ms(MEAN_STALL_AFTER_SEEK_MS));
                }
                (EventKind::Seek, state)
            }
            Action::BufferStart => (EventKind::BufferStart, Buffering),
            Action::BufferEnd => (EventKind::BufferEnd, Playing),
            Action::BitrateUp => {
                session.rung = (session.rung + 1).min(ladder_top);
                (EventKind::BitrateChange, state)
            }
            Action::BitrateDown => {
                session.rung = session.rung.saturating_sub(1);
                (EventKind::BitrateChange, state)
            }
            Action::Error => {
                let (code, _, fatal) = *weighted_error(&mut self.rng);
                // A stalled player that errors gives up on the session.
                let ends_session = fatal || state == Buffering;
                return Outcome {
                    error_code: Some(code),
                    fatal: Some(ends_session),
                    ..Outcome::of(
                        EventKind::Error,
                        if ends_session { Browsing } else { Playing },
                    )
                };
            }
            Action::Stop => (EventKind::Stop, Browsing),
            Action::Complete => {
                session.position_ms = session.duration_ms;
                (EventKind::Complete, Browsing)
            }
        };
        Outcome::of(kind, next_state)
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
            (PlayerState::Browsing, _) | (_, None) => {
                let play_requested_at = now + rng.exponential_ms(MEAN_BROWSING_MS);
                let attempt = PlayAttempt::draw(rng, device);
                self.startup_ms = attempt.startup_ms;
                Earliest {
                    at_ms: play_requested_at + attempt.wait_ms,
                    action: attempt.action,
                }
            }
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

/// How a play attempt ends, drawn when the viewer asks to play.
struct PlayAttempt {
    action: Action,
    /// From the play request to the attempt's event.
    wait_ms: u64,
    /// The startup time `start` reports (drawn whatever the outcome, so that the stream of
    /// draws does not depend on it).
    startup_ms: u32,
}

impl PlayAttempt {
    fn draw(rng: &mut Rng, device: &DeviceProfile) -> PlayAttempt {
        let outcome = rng.unit();
        let startup_ms = startup_draw(rng, device, 1.0);
        let (action, wait_ms) = if outcome < device.exit_before_start {
            (
                Action::ExitBeforeStart,
                startup_draw(rng, device, EXIT_BEFORE_START_WAIT),
            )
        } else if outcome < device.exit_before_start + device.startup_failure {
            (
                Action::StartupFailure,
                startup_draw(rng, device, STARTUP_FAILURE_WAIT),
            )
        } else {
            (Action::Start, startup_ms)
        };
        PlayAttempt {
            action,
            wait_ms: u64::from(wait_ms),
            startup_ms,
        }
    }
}

/// A startup-like wait of `device`, `scale` times its median: log-normal, in whole ms, at most
/// the wire's longest `startup_ms`.
fn startup_draw(rng: &mut Rng, device: &DeviceProfile, scale: f64) -> u32 {
    let ms = rng.log_normal(device.startup_median_ms * scale, device.startup_sigma);
    ms.round()
        .clamp(0.0, f64::from(wire::limits::MAX_STARTUP_MS)) as u32
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
                    is_legal(from, event.kind, to) && is_legal_event(from, &event, to),
                    "{from:?} -{}-> {to:?} before_start={:?}",
                    event.kind,
                    event.before_start
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
    fn before_start_events_are_legal_only_from_browsing_and_with_the_flag() {
        use PlayerState::{Browsing, Playing};
        let catalog = catalog();
        let mut viewer = Viewer::new(1, 0, 10_000, &catalog);
        let mut event = viewer.step(&catalog);
        event.kind = EventKind::Stop;
        event.before_start = Some(true);
        assert!(is_legal_event(Browsing, &event, Browsing));
        assert!(!is_legal_event(Playing, &event, Browsing));
        event.before_start = None;
        assert!(!is_legal_event(Browsing, &event, Browsing));
        assert!(is_legal_event(Playing, &event, Browsing));
        event.kind = EventKind::Error;
        event.before_start = Some(true);
        assert!(is_legal_event(Browsing, &event, Browsing));
        assert!(!is_legal_event(Browsing, &event, Playing));
        event.kind = EventKind::Start;
        assert!(!is_legal_event(Browsing, &event, Playing));
        event.before_start = None;
        assert!(is_legal_event(Browsing, &event, Playing));
        assert!(!is_legal(Browsing, EventKind::Heartbeat, Browsing));
        assert!(!is_legal(Browsing, EventKind::Complete, Browsing));
    }

    #[test]
    fn qoe_fields_appear_exactly_on_the_events_they_belong_to() {
        let catalog = catalog();
        let mut played_total = 0u64;
        for index in 0..200 {
            let mut viewer = Viewer::new(5, index, 10_000, &catalog);
            let mut previous: Option<EventDraft> = None;
            for _ in 0..1_500 {
                let from = viewer.state();
                let event = viewer.step(&catalog);
                let kind = event.kind;
                assert_eq!(event.startup_ms.is_some(), kind == EventKind::Start);
                assert_eq!(event.fatal.is_some(), kind == EventKind::Error);
                let before_start = from == PlayerState::Browsing && kind != EventKind::Start;
                assert_eq!(event.before_start, before_start.then_some(true));
                assert_eq!(event.bitrate_kbps.is_none(), before_start);
                if before_start && kind == EventKind::Error {
                    assert_eq!(event.fatal, Some(true), "a startup failure is fatal");
                    assert!(event.error_code.is_some());
                }
                if kind == EventKind::Error && from == PlayerState::Buffering {
                    assert_eq!(
                        event.fatal,
                        Some(true),
                        "a stalled player that errors stops"
                    );
                }
                if kind == EventKind::Error {
                    let ended = viewer.state() == PlayerState::Browsing;
                    assert_eq!(
                        event.fatal,
                        Some(ended),
                        "fatal says whether playback ended"
                    );
                }
                // played_ms: on every event after playing, and the position moved by it.
                assert_eq!(event.played_ms.is_some(), from == PlayerState::Playing);
                if let (Some(played), Some(previous)) = (event.played_ms, &previous) {
                    assert!(u64::from(played) <= event.at_ms - previous.at_ms);
                    if kind != EventKind::Seek {
                        assert_eq!(event.session_id, previous.session_id);
                        assert_eq!(
                            event.position_ms,
                            previous.position_ms + u64::from(played),
                            "{kind}"
                        );
                    }
                }
                played_total += event.played_ms.map_or(0, u64::from);
                previous = Some(event);
            }
        }
        assert!(played_total > 0);
    }

    #[test]
    fn some_play_attempts_never_reach_the_first_frame() {
        let catalog = catalog();
        let (mut starts, mut exits, mut failures) = (0u64, 0u64, 0u64);
        let mut startups = Vec::new();
        let mut before_start_sessions = std::collections::HashSet::new();
        let mut started_sessions = std::collections::HashSet::new();
        // Rare heartbeats: most events are transitions, so attempts come often.
        for index in 0..2_000 {
            let mut viewer = Viewer::new(11, index, 3_600_000, &catalog);
            for _ in 0..200 {
                let event = viewer.step(&catalog);
                match (event.kind, event.before_start) {
                    (EventKind::Start, _) => {
                        starts += 1;
                        startups.push(event.startup_ms.unwrap());
                        started_sessions.insert(event.session_id);
                    }
                    (EventKind::Stop, Some(true)) => {
                        exits += 1;
                        assert!(before_start_sessions.insert(event.session_id));
                        assert_eq!(viewer.state(), PlayerState::Browsing);
                    }
                    (EventKind::Error, Some(true)) => {
                        failures += 1;
                        assert!(before_start_sessions.insert(event.session_id));
                        assert_eq!(viewer.state(), PlayerState::Browsing);
                    }
                    _ => assert!(
                        !before_start_sessions.contains(&event.session_id),
                        "an attempt that never started has no playback"
                    ),
                }
            }
        }
        assert!(before_start_sessions.is_disjoint(&started_sessions));
        let attempts = (starts + exits + failures) as f64;
        let exit_share = exits as f64 / attempts;
        let failure_share = failures as f64 / attempts;
        assert!(attempts > 20_000.0, "{attempts}");
        assert!((0.02..0.04).contains(&exit_share), "{exit_share}");
        assert!((0.004..0.011).contains(&failure_share), "{failure_share}");
        startups.sort_unstable();
        let median = startups[startups.len() / 2];
        let p95 = startups[startups.len() * 95 / 100];
        let max = startups[startups.len() - 1];
        assert!((800..2_000).contains(&median), "median {median}");
        assert!(p95 > 2 * median, "p95 {p95}, median {median}");
        assert!(
            max > 5_000 && max <= wire::limits::MAX_STARTUP_MS,
            "max {max}"
        );
    }

    #[test]
    fn a_start_comes_one_startup_after_the_play_request_and_play_time_counts_from_it() {
        // Viewers browsing at the run's start: their first event ends their first play attempt.
        let catalog = catalog();
        let mut checked = 0;
        for index in 0..3_000 {
            let mut viewer = Viewer::new(2, index, 10_000, &catalog);
            if viewer.state() != PlayerState::Browsing {
                continue;
            }
            let start = viewer.step(&catalog);
            if start.kind != EventKind::Start {
                continue;
            }
            assert!(start.at_ms > u64::from(start.startup_ms.unwrap()));
            assert_eq!(viewer.state(), PlayerState::Playing);
            let next = viewer.step(&catalog);
            assert_eq!(
                next.played_ms.map(u64::from),
                Some(next.at_ms - start.at_ms)
            );
            if next.kind == EventKind::Heartbeat {
                // The first heartbeat comes one interval after the first frame.
                assert_eq!(next.at_ms, start.at_ms + 10_000);
                checked += 1;
            }
        }
        assert!(checked > 3, "{checked}");
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
