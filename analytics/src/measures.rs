//! What a rollup cell keeps of the events it saw, and the QoE metrics derived from it. The
//! definitions (after Mux Data and Conviva) are in `qoe.md` beside this file; every one is
//! computed from one event at a time, so any ingest node can roll up any event.

use serde::Serialize;
use wire::{EventKind, PlaybackEvent};

use crate::distinct::{Distinct, Slot};
use crate::sketch::{put_varint, take_varint, Bucket, DecodeError, Sketch};

/// Exact counts and sums, and mergeable distributions, of one cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measures {
    pub events: u64,
    /// Play attempts: `start`s, and `stop`s and `error`s sent before the first frame.
    pub views: u64,
    /// Views that reached the first frame (`start` events): what trending counts.
    pub starts: u64,
    pub viewers: Distinct,
    pub playing_ms: u64,
    pub rebuffer_ms: u64,
    /// Stalls after the first frame (`buffer_start` events).
    pub rebuffers: u64,
    pub exits_before_start: u64,
    pub startup_failures: u64,
    pub playback_failures: u64,
    /// Σ bitrate × playing time, over events carrying both.
    pub bitrate_kbps_ms: u128,
    /// Σ playing time of events carrying a bitrate.
    pub bitrate_played_ms: u64,
    /// Video startup time of each `start` (ms).
    pub startup: Sketch,
    /// Bitrate, weighted by playing time (one count per ms played at that bitrate).
    pub bitrate: Sketch,
    /// The newest server arrival among the events (epoch ms): how far behind the live view is.
    pub last_received_at: i64,
}

/// What a rollup takes of one event, with its viewer hashed and its values bucketed once: the
/// side path queues one per event without allocating and folds it into each of its cells.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub received_at: i64,
    pub kind: EventKind,
    pub before_start: bool,
    pub fatal: bool,
    viewer: Slot,
    startup: Option<Bucket>,
    played_ms: u32,
    buffer_ms: u32,
    /// The bitrate and its bucket.
    bitrate: Option<(u32, Bucket)>,
}

impl Observation {
    pub fn of(event: &PlaybackEvent) -> Observation {
        Observation {
            received_at: event.received_at,
            kind: event.kind,
            before_start: event.before_start == Some(true),
            fatal: event.fatal != Some(false),
            viewer: Slot::of(event.user_id),
            startup: event
                .startup_ms
                .map(|startup| Bucket::of(u64::from(startup))),
            played_ms: event.played_ms.unwrap_or(0),
            buffer_ms: event.buffer_ms.unwrap_or(0),
            bitrate: event
                .bitrate_kbps
                .map(|bitrate| (bitrate, Bucket::of(u64::from(bitrate)))),
        }
    }
}

impl Measures {
    pub fn record(&mut self, event: &PlaybackEvent) {
        self.observe(&Observation::of(event));
    }

    pub fn observe(&mut self, event: &Observation) {
        self.events += 1;
        self.last_received_at = self.last_received_at.max(event.received_at);
        let (before_start, fatal) = (event.before_start, event.fatal);
        let is_view = match event.kind {
            EventKind::Start => true,
            EventKind::Stop | EventKind::Error => before_start,
            _ => false,
        };
        if is_view {
            self.views += 1;
            self.viewers.insert_slot(event.viewer);
        }
        match event.kind {
            EventKind::Start => {
                self.starts += 1;
                if let Some(startup) = event.startup {
                    self.startup.add(startup, 1);
                }
            }
            EventKind::BufferStart => self.rebuffers += 1,
            EventKind::Stop if before_start => self.exits_before_start += 1,
            EventKind::Error if fatal && before_start => self.startup_failures += 1,
            EventKind::Error if fatal => self.playback_failures += 1,
            _ => {}
        }
        let played = u64::from(event.played_ms);
        self.playing_ms += played;
        self.rebuffer_ms += u64::from(event.buffer_ms);
        if let Some((bitrate, bucket)) = event.bitrate.filter(|_| played > 0) {
            self.bitrate_kbps_ms += u128::from(bitrate) * u128::from(played);
            self.bitrate_played_ms += played;
            self.bitrate.add(bucket, played);
        }
    }

    pub fn merge(&mut self, other: &Measures) {
        self.events += other.events;
        self.views += other.views;
        self.starts += other.starts;
        self.viewers.merge(&other.viewers);
        self.playing_ms += other.playing_ms;
        self.rebuffer_ms += other.rebuffer_ms;
        self.rebuffers += other.rebuffers;
        self.exits_before_start += other.exits_before_start;
        self.startup_failures += other.startup_failures;
        self.playback_failures += other.playback_failures;
        self.bitrate_kbps_ms += other.bitrate_kbps_ms;
        self.bitrate_played_ms += other.bitrate_played_ms;
        self.startup.merge(&other.startup);
        self.bitrate.merge(&other.bitrate);
        self.last_received_at = self.last_received_at.max(other.last_received_at);
    }

    /// The metrics as the API answers them.
    pub fn qoe(&self) -> Qoe {
        let ratio = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
        let percent = |part: u64, whole: u64| ratio(part, whole).map(|share| share * 100.0);
        Qoe {
            events: self.events,
            views: self.views,
            unique_viewers: self.viewers.estimate(),
            playing_time_ms: self.playing_ms,
            startup_time_p50_ms: self.startup.quantile(0.5),
            startup_time_p95_ms: self.startup.quantile(0.95),
            rebuffer_percentage: percent(self.rebuffer_ms, self.playing_ms + self.rebuffer_ms),
            rebuffer_frequency_per_minute: ratio(self.rebuffers * 60_000, self.playing_ms),
            rebuffer_ms: self.rebuffer_ms,
            rebuffers: self.rebuffers,
            exits_before_start: self.exits_before_start,
            exits_before_start_percentage: percent(self.exits_before_start, self.views),
            startup_failures: self.startup_failures,
            startup_failure_percentage: percent(self.startup_failures, self.views),
            playback_failures: self.playback_failures,
            playback_failure_percentage: percent(self.playback_failures, self.views),
            average_bitrate_kbps: (self.bitrate_played_ms > 0)
                .then(|| self.bitrate_kbps_ms as f64 / self.bitrate_played_ms as f64),
            bitrate_p50_kbps: self.bitrate.quantile(0.5),
            last_received_at: (self.last_received_at > 0).then_some(self.last_received_at),
        }
    }

    /// A weight of how badly a cell went, to rank dimensions in the live view: play attempts
    /// that failed or were abandoned before the first frame, playback failures, and stalls.
    pub fn negative_impact(&self) -> u64 {
        self.startup_failures + self.exits_before_start + self.playback_failures + self.rebuffers
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(FORMAT);
        for value in [
            self.events,
            self.views,
            self.starts,
            self.playing_ms,
            self.rebuffer_ms,
            self.rebuffers,
            self.exits_before_start,
            self.startup_failures,
            self.playback_failures,
            self.bitrate_played_ms,
            self.last_received_at.max(0) as u64,
        ] {
            put_varint(out, value);
        }
        put_varint(out, self.bitrate_kbps_ms as u64);
        put_varint(out, (self.bitrate_kbps_ms >> 64) as u64);
        self.viewers.encode(out);
        self.startup.encode(out);
        self.bitrate.encode(out);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode(&mut out);
        out
    }

    pub fn decode(mut input: &[u8]) -> Result<Measures, DecodeError> {
        let input = &mut input;
        let (&format, rest) = input.split_first().ok_or(DecodeError("empty"))?;
        if format != FORMAT {
            return Err(DecodeError("unknown rollup format"));
        }
        *input = rest;
        let mut next = || take_varint(input);
        let events = next()?;
        let views = next()?;
        let starts = next()?;
        let playing_ms = next()?;
        let rebuffer_ms = next()?;
        let rebuffers = next()?;
        let exits_before_start = next()?;
        let startup_failures = next()?;
        let playback_failures = next()?;
        let bitrate_played_ms = next()?;
        let last_received_at = i64::try_from(next()?).map_err(|_| DecodeError("bad time"))?;
        let low = next()?;
        let high = next()?;
        let measures = Measures {
            events,
            views,
            starts,
            viewers: Distinct::decode(input)?,
            playing_ms,
            rebuffer_ms,
            rebuffers,
            exits_before_start,
            startup_failures,
            playback_failures,
            bitrate_kbps_ms: u128::from(low) | (u128::from(high) << 64),
            bitrate_played_ms,
            startup: Sketch::decode(input)?,
            bitrate: Sketch::decode(input)?,
            last_received_at,
        };
        if !input.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(measures)
    }
}

/// The stored layout's version.
const FORMAT: u8 = 1;

/// QoE metrics of a span and a slice of the audience. Ratios are `null` when their whole is 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Qoe {
    pub events: u64,
    pub views: u64,
    pub unique_viewers: u64,
    pub playing_time_ms: u64,
    pub startup_time_p50_ms: Option<f64>,
    pub startup_time_p95_ms: Option<f64>,
    pub rebuffer_percentage: Option<f64>,
    pub rebuffer_frequency_per_minute: Option<f64>,
    pub rebuffer_ms: u64,
    pub rebuffers: u64,
    pub exits_before_start: u64,
    pub exits_before_start_percentage: Option<f64>,
    pub startup_failures: u64,
    pub startup_failure_percentage: Option<f64>,
    pub playback_failures: u64,
    pub playback_failure_percentage: Option<f64>,
    pub average_bitrate_kbps: Option<f64>,
    pub bitrate_p50_kbps: Option<f64>,
    pub last_received_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::PlaybackEvent;

    fn at(kind: EventKind) -> PlaybackEvent {
        PlaybackEvent {
            kind,
            ..testkit::event(1, 1_700_000_000_000)
        }
    }

    #[test]
    fn each_metric_follows_its_definition() {
        let mut measures = Measures::default();
        let events = [
            PlaybackEvent {
                startup_ms: Some(800),
                ..at(EventKind::Start)
            },
            PlaybackEvent {
                user_id: 2,
                startup_ms: Some(1_600),
                ..at(EventKind::Start)
            },
            PlaybackEvent {
                played_ms: Some(10_000),
                bitrate_kbps: Some(3_000),
                ..at(EventKind::Heartbeat)
            },
            at(EventKind::BufferStart),
            PlaybackEvent {
                buffer_ms: Some(2_000),
                played_ms: Some(8_000),
                bitrate_kbps: Some(1_500),
                ..at(EventKind::BufferEnd)
            },
            PlaybackEvent {
                user_id: 3,
                before_start: Some(true),
                ..at(EventKind::Stop)
            },
            PlaybackEvent {
                user_id: 4,
                before_start: Some(true),
                ..at(EventKind::Error)
            },
            PlaybackEvent {
                fatal: Some(false),
                ..at(EventKind::Error)
            },
            at(EventKind::Error),
            at(EventKind::Stop),
        ];
        for event in &events {
            measures.record(event);
        }
        let qoe = measures.qoe();
        assert_eq!(qoe.events, 10);
        assert_eq!(qoe.views, 4);
        assert_eq!(qoe.unique_viewers, 4);
        assert_eq!(qoe.playing_time_ms, 18_000);
        assert_eq!(qoe.rebuffers, 1);
        assert_eq!(qoe.rebuffer_percentage, Some(10.0));
        assert_eq!(qoe.exits_before_start, 1);
        assert_eq!(qoe.startup_failures, 1);
        assert_eq!(qoe.playback_failures, 1);
        assert_eq!(qoe.exits_before_start_percentage, Some(25.0));
        let bitrate = qoe.average_bitrate_kbps.unwrap();
        assert!((bitrate - (3_000.0 * 10.0 + 1_500.0 * 8.0) / 18.0).abs() < 1e-9);
        let p50 = qoe.startup_time_p50_ms.unwrap();
        assert!((p50 - 800.0).abs() <= 8.0, "{p50}");
        let p95 = qoe.startup_time_p95_ms.unwrap();
        assert!((p95 - 1_600.0).abs() <= 16.0, "{p95}");
        assert_eq!(Measures::decode(&measures.to_bytes()).unwrap(), measures);
        assert!(Measures::decode(&[9, 1, 2]).is_err());
        assert!(Measures::decode(&[]).is_err());
    }
}
