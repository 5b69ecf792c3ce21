//! The ground truth of a run's QoE: what loadgen sent and the service acknowledged, per minute,
//! computed from the simulation's own records (never by parsing what was sent back), so that a
//! reader of the service's QoE metrics (`bench`) can compare them with what really happened.
//!
//! A minute is `floor(ts / 60000) * 60000` of an event's `ts` (epoch ms), and every event counts
//! on its own, as the service counts:
//!
//! - `views`: `start` events, and `stop` and `error` events with `before_start` (attempts that
//!   never reached the first frame are views too); `unique_viewers`: distinct users with a view;
//! - `playing_ms`, `rebuffer_ms`: sums of `played_ms` and `buffer_ms`; `rebuffers`: `buffer_start`
//!   events;
//! - `exits_before_start`: `stop` with `before_start`; `startup_failures`: `error` with
//!   `before_start` and not `fatal: false`; `playback_failures`: `error` without `before_start`
//!   and not `fatal: false`;
//! - `bitrate_kbps_ms`: the sum of `bitrate_kbps x played_ms` over events that carry both, and
//!   `bitrate_played_ms` the sum of their `played_ms`: the time-weighted average bitrate is the
//!   first over the second;
//! - `events`: every acknowledged event of the minute; `startup_ms`: every `startup_ms` of the
//!   minute's `start` events, ascending.
//!
//! The file (`loadgen http --truth FILE`) is NDJSON, one [`TruthMinute`] per line, sorted by
//! minute; [`read_ndjson`] reads it back.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wire::EventKind;

use crate::workload::EventDraft;

/// One minute of length in ms.
pub const MINUTE_MS: i64 = 60_000;

/// Why a truth file cannot be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TruthError {
    /// Creating, writing or reading the file failed.
    #[error("truth file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A line is not a minute of truth.
    #[error("truth file {path}, line {line}: {message}")]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// One line of the truth file: a minute's QoE as loadgen sent it and the service accepted it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthMinute {
    /// The minute's start, epoch ms (a multiple of 60000).
    pub minute: i64,
    pub views: u64,
    pub unique_viewers: u64,
    pub playing_ms: u64,
    pub rebuffer_ms: u64,
    pub rebuffers: u64,
    pub exits_before_start: u64,
    pub startup_failures: u64,
    pub playback_failures: u64,
    /// Sum of `bitrate_kbps x played_ms` over the events that carry both.
    pub bitrate_kbps_ms: u64,
    /// Sum of `played_ms` over the events that carry a bitrate too.
    pub bitrate_played_ms: u64,
    /// Acknowledged events of the minute, of every kind.
    pub events: u64,
    /// Every `startup_ms` of the minute's `start` events, ascending.
    pub startup_ms: Vec<u32>,
}

impl TruthMinute {
    /// The time-weighted average bitrate; None when nothing with a bitrate was played.
    pub fn average_bitrate_kbps(&self) -> Option<f64> {
        (self.bitrate_played_ms > 0)
            .then(|| self.bitrate_kbps_ms as f64 / self.bitrate_played_ms as f64)
    }

    /// The `q` quantile (0 to 1) of the startup times, nearest rank; None without starts.
    pub fn startup_quantile(&self, q: f64) -> Option<u32> {
        let len = self.startup_ms.len();
        if len == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * len as f64).ceil() as usize;
        self.startup_ms.get(rank.clamp(1, len) - 1).copied()
    }
}

/// What the truth needs of one event: its `ts` and QoE fields (small and `Copy`, so a worker
/// keeps those of the request in flight without allocating per event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruthEvent {
    /// As sent, epoch ms.
    pub ts: i64,
    pub kind: EventKind,
    pub user_id: u64,
    pub bitrate_kbps: Option<u32>,
    pub buffer_ms: Option<u32>,
    pub played_ms: Option<u32>,
    pub startup_ms: Option<u32>,
    pub before_start: Option<bool>,
    pub fatal: Option<bool>,
}

impl TruthEvent {
    /// The event `draft` sent with `ts`.
    pub fn of(draft: &EventDraft, ts: i64) -> TruthEvent {
        TruthEvent {
            ts,
            kind: draft.kind,
            user_id: draft.user_id,
            bitrate_kbps: draft.bitrate_kbps,
            buffer_ms: draft.buffer_ms,
            played_ms: draft.played_ms,
            startup_ms: draft.startup_ms,
            before_start: draft.before_start,
            fatal: draft.fatal,
        }
    }
}

/// A minute being added up.
#[derive(Debug, Clone, Default)]
struct MinuteTally {
    line: TruthMinute,
    viewers: HashSet<u64>,
}

/// The truth being added up: record every acknowledged event, merge the workers' truths, write.
/// Memory: per minute a few counters, one entry per distinct viewer with a view and one per
/// `start` (no per-event storage).
#[derive(Debug, Clone, Default)]
pub struct Truth {
    minutes: BTreeMap<i64, MinuteTally>,
}

impl Truth {
    pub fn new() -> Truth {
        Truth::default()
    }

    /// Counts the event `draft` sent with `ts` (only call it for accepted events).
    pub fn record(&mut self, draft: &EventDraft, ts: i64) {
        self.record_event(&TruthEvent::of(draft, ts));
    }

    /// Counts one accepted event.
    pub fn record_event(&mut self, event: &TruthEvent) {
        let minute = minute_of(event.ts);
        let tally = self.minutes.entry(minute).or_insert_with(|| MinuteTally {
            line: TruthMinute {
                minute,
                ..TruthMinute::default()
            },
            viewers: HashSet::new(),
        });
        let line = &mut tally.line;
        line.events += 1;
        let before_start = event.before_start == Some(true);
        let fatal = event.fatal != Some(false);
        let is_view = match event.kind {
            EventKind::Start => true,
            EventKind::Stop | EventKind::Error => before_start,
            _ => false,
        };
        if is_view {
            line.views += 1;
            tally.viewers.insert(event.user_id);
        }
        match event.kind {
            EventKind::Start => {
                if let Some(startup) = event.startup_ms {
                    line.startup_ms.push(startup);
                }
            }
            EventKind::Stop if before_start => line.exits_before_start += 1,
            EventKind::Error if fatal && before_start => line.startup_failures += 1,
            EventKind::Error if fatal => line.playback_failures += 1,
            EventKind::BufferStart => line.rebuffers += 1,
            _ => {}
        }
        if let Some(played) = event.played_ms {
            let played = u64::from(played);
            line.playing_ms = line.playing_ms.saturating_add(played);
            if let Some(bitrate) = event.bitrate_kbps {
                line.bitrate_played_ms = line.bitrate_played_ms.saturating_add(played);
                line.bitrate_kbps_ms = line
                    .bitrate_kbps_ms
                    .saturating_add(u64::from(bitrate).saturating_mul(played));
            }
        }
        if let Some(buffer) = event.buffer_ms {
            line.rebuffer_ms = line.rebuffer_ms.saturating_add(u64::from(buffer));
        }
    }

    /// Adds another truth (another worker's) to this one.
    pub fn merge(&mut self, other: Truth) {
        for (minute, theirs) in other.minutes {
            let Some(mine) = self.minutes.get_mut(&minute) else {
                self.minutes.insert(minute, theirs);
                continue;
            };
            let (line, other_line) = (&mut mine.line, theirs.line);
            line.views += other_line.views;
            line.playing_ms = line.playing_ms.saturating_add(other_line.playing_ms);
            line.rebuffer_ms = line.rebuffer_ms.saturating_add(other_line.rebuffer_ms);
            line.rebuffers += other_line.rebuffers;
            line.exits_before_start += other_line.exits_before_start;
            line.startup_failures += other_line.startup_failures;
            line.playback_failures += other_line.playback_failures;
            line.bitrate_kbps_ms = line
                .bitrate_kbps_ms
                .saturating_add(other_line.bitrate_kbps_ms);
            line.bitrate_played_ms = line
                .bitrate_played_ms
                .saturating_add(other_line.bitrate_played_ms);
            line.events += other_line.events;
            line.startup_ms.extend(other_line.startup_ms);
            mine.viewers.extend(theirs.viewers);
        }
    }

    /// Acknowledged events counted so far.
    pub fn events(&self) -> u64 {
        self.minutes.values().map(|tally| tally.line.events).sum()
    }

    /// The minutes so far, as the file's lines: sorted by minute, startup times ascending.
    pub fn minutes(&self) -> Vec<TruthMinute> {
        self.minutes
            .values()
            .map(|tally| {
                let mut line = tally.line.clone();
                line.unique_viewers = tally.viewers.len() as u64;
                line.startup_ms.sort_unstable();
                line
            })
            .collect()
    }

    /// Writes the minutes as NDJSON; returns how many lines.
    pub fn write_ndjson_to<W: Write>(&self, out: &mut W) -> io::Result<usize> {
        let minutes = self.minutes();
        for minute in &minutes {
            serde_json::to_writer(&mut *out, minute)?;
            out.write_all(b"\n")?;
        }
        Ok(minutes.len())
    }

    /// Writes the minutes as NDJSON to `path` (replaced); returns how many lines.
    pub fn write_ndjson(&self, path: &Path) -> Result<usize, TruthError> {
        TruthFile::create(path)?.write(self)
    }
}

/// A truth file opened at the start of a run, so that a path that cannot be written fails the
/// run before it sends anything, and written at its end.
#[derive(Debug)]
pub struct TruthFile {
    path: PathBuf,
    file: File,
}

impl TruthFile {
    pub fn create(path: &Path) -> Result<TruthFile, TruthError> {
        let file = File::create(path).map_err(|source| TruthError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(TruthFile {
            path: path.to_owned(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `truth` and syncs the file; returns how many minutes it holds.
    pub fn write(self, truth: &Truth) -> Result<usize, TruthError> {
        let io_error = |source| TruthError::Io {
            path: self.path.clone(),
            source,
        };
        let mut out = BufWriter::new(&self.file);
        let lines = truth.write_ndjson_to(&mut out).map_err(io_error)?;
        out.flush().map_err(io_error)?;
        drop(out);
        self.file.sync_all().map_err(io_error)?;
        Ok(lines)
    }
}

/// Reads a truth file back (blank lines are skipped).
pub fn read_ndjson(path: &Path) -> Result<Vec<TruthMinute>, TruthError> {
    let io_error = |source| TruthError::Io {
        path: path.to_owned(),
        source,
    };
    let reader = BufReader::new(File::open(path).map_err(io_error)?);
    let mut minutes = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.map_err(io_error)?;
        if line.trim().is_empty() {
            continue;
        }
        let minute = serde_json::from_str(&line).map_err(|error| TruthError::Malformed {
            path: path.to_owned(),
            line: index + 1,
            message: error.to_string(),
        })?;
        minutes.push(minute);
    }
    Ok(minutes)
}

/// The start of the minute `ts` falls in (epoch ms; floor, also before 1970).
pub fn minute_of(ts: i64) -> i64 {
    ts.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// Which events of a request of `len` the answer's rejections leave accepted: None when all
/// are (no allocation), else one flag per event.
pub(crate) fn accepted_flags(len: usize, rejected: &[crate::http::Rejection]) -> Option<Vec<bool>> {
    if rejected.is_empty() {
        return None;
    }
    let mut accepted = vec![true; len];
    for rejection in rejected {
        if let Some(flag) = accepted.get_mut(rejection.index) {
            *flag = false;
        }
    }
    Some(accepted)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::workload::{Audience, Taste, WorkloadConfig};

    const T0: i64 = 1_750_000_020_000;

    /// An event of `kind` by `user`, with nothing optional.
    fn event(kind: EventKind, user: u64, ts: i64) -> TruthEvent {
        TruthEvent {
            ts,
            kind,
            user_id: user,
            bitrate_kbps: None,
            buffer_ms: None,
            played_ms: None,
            startup_ms: None,
            before_start: None,
            fatal: None,
        }
    }

    #[test]
    fn minutes_floor_the_ts() {
        assert_eq!(minute_of(0), 0);
        assert_eq!(minute_of(59_999), 0);
        assert_eq!(minute_of(60_000), 60_000);
        assert_eq!(minute_of(-1), -60_000);
        assert_eq!(minute_of(T0 + 59_999), T0);
    }

    #[test]
    fn a_hand_made_sequence_gives_the_expected_minutes() {
        use EventKind as K;
        let first = T0;
        let second = first + MINUTE_MS;
        let mut truth = Truth::new();
        let events = [
            // Minute one: user 1 starts (startup 1200), user 2 starts (900), user 1 starts again.
            TruthEvent {
                startup_ms: Some(1_200),
                bitrate_kbps: Some(3_000),
                ..event(K::Start, 1, first + 1)
            },
            TruthEvent {
                startup_ms: Some(900),
                bitrate_kbps: Some(1_500),
                ..event(K::Start, 2, first + 2)
            },
            TruthEvent {
                startup_ms: Some(4_000),
                ..event(K::Start, 1, first + 3)
            },
            // 10 s played at 3000 kbps, then 5 s at 1500 kbps ending in a stall.
            TruthEvent {
                played_ms: Some(10_000),
                bitrate_kbps: Some(3_000),
                ..event(K::Heartbeat, 1, first + 10_000)
            },
            TruthEvent {
                played_ms: Some(5_000),
                bitrate_kbps: Some(1_500),
                ..event(K::BufferStart, 2, first + 20_000)
            },
            // Played time without a bitrate counts as playing, not in the bitrate average.
            TruthEvent {
                played_ms: Some(2_000),
                ..event(K::Pause, 3, first + 21_000)
            },
            TruthEvent {
                buffer_ms: Some(700),
                bitrate_kbps: Some(1_500),
                ..event(K::BufferEnd, 2, first + 21_500)
            },
            // An exit before start by user 3 (a view), a startup failure by user 4, a
            // playback failure, a non-fatal error and one without `fatal` (fatal).
            TruthEvent {
                before_start: Some(true),
                ..event(K::Stop, 3, first + 30_000)
            },
            TruthEvent {
                before_start: Some(true),
                fatal: Some(true),
                ..event(K::Error, 4, first + 31_000)
            },
            TruthEvent {
                fatal: Some(true),
                played_ms: Some(1_000),
                bitrate_kbps: Some(3_000),
                ..event(K::Error, 1, first + 32_000)
            },
            TruthEvent {
                fatal: Some(false),
                ..event(K::Error, 2, first + 33_000)
            },
            event(K::Error, 2, first + 34_000),
            // Minute two: a plain stop (no view), a non-fatal error before start (a view, not a
            // failure), a rebuffer.
            TruthEvent {
                played_ms: Some(3_000),
                bitrate_kbps: Some(8_000),
                ..event(K::Stop, 5, second)
            },
            TruthEvent {
                before_start: Some(true),
                fatal: Some(false),
                ..event(K::Error, 6, second + 1)
            },
            TruthEvent {
                buffer_ms: Some(250),
                ..event(K::BufferStart, 5, second + 59_999)
            },
        ];
        for e in &events {
            truth.record_event(e);
        }
        assert_eq!(truth.events(), events.len() as u64);
        let minutes = truth.minutes();
        assert_eq!(
            minutes,
            vec![
                TruthMinute {
                    minute: first,
                    views: 5,
                    unique_viewers: 4,
                    playing_ms: 18_000,
                    rebuffer_ms: 700,
                    rebuffers: 1,
                    exits_before_start: 1,
                    startup_failures: 1,
                    playback_failures: 2,
                    bitrate_kbps_ms: 3_000 * 10_000 + 1_500 * 5_000 + 3_000 * 1_000,
                    bitrate_played_ms: 16_000,
                    events: 12,
                    startup_ms: vec![900, 1_200, 4_000],
                },
                TruthMinute {
                    minute: second,
                    views: 1,
                    unique_viewers: 1,
                    playing_ms: 3_000,
                    rebuffer_ms: 250,
                    rebuffers: 1,
                    exits_before_start: 0,
                    startup_failures: 0,
                    playback_failures: 0,
                    bitrate_kbps_ms: 24_000_000,
                    bitrate_played_ms: 3_000,
                    events: 3,
                    startup_ms: vec![],
                },
            ]
        );
        assert_eq!(
            minutes[0].average_bitrate_kbps(),
            Some(40_500_000.0 / 16_000.0)
        );
        assert_eq!(minutes[0].startup_quantile(0.5), Some(1_200));
        assert_eq!(minutes[0].startup_quantile(0.95), Some(4_000));
        assert_eq!(minutes[0].startup_quantile(0.0), Some(900));
        assert_eq!(minutes[1].startup_quantile(0.5), None);
        assert_eq!(minutes[1].average_bitrate_kbps(), Some(8_000.0));

        // Split among two workers and merged, the truth is the same.
        let (mut left, mut right) = (Truth::new(), Truth::new());
        for (index, e) in events.iter().enumerate() {
            let half = if index % 2 == 0 {
                &mut left
            } else {
                &mut right
            };
            half.record_event(e);
        }
        left.merge(right);
        assert_eq!(left.minutes(), minutes);
    }

    #[test]
    fn rejected_events_are_left_out() {
        let rejected = [
            crate::http::Rejection {
                index: 1,
                error: "bad".into(),
            },
            // An index past the request is ignored.
            crate::http::Rejection {
                index: 9,
                error: "bad".into(),
            },
        ];
        assert_eq!(accepted_flags(3, &[]), None);
        let flags = accepted_flags(3, &rejected).unwrap();
        assert_eq!(flags, vec![true, false, true]);

        let sent = [
            TruthEvent {
                startup_ms: Some(1_000),
                ..event(EventKind::Start, 1, T0)
            },
            TruthEvent {
                startup_ms: Some(2_000),
                ..event(EventKind::Start, 2, T0)
            },
            TruthEvent {
                played_ms: Some(10_000),
                ..event(EventKind::Heartbeat, 1, T0)
            },
        ];
        let mut truth = Truth::new();
        for (e, accepted) in sent.iter().zip(flags) {
            if accepted {
                truth.record_event(e);
            }
        }
        let minutes = truth.minutes();
        assert_eq!(minutes.len(), 1);
        assert_eq!(minutes[0].events, 2);
        assert_eq!(minutes[0].views, 1);
        assert_eq!(minutes[0].unique_viewers, 1);
        assert_eq!(minutes[0].startup_ms, vec![1_000]);
        assert_eq!(minutes[0].playing_ms, 10_000);
    }

    #[test]
    fn drafts_of_the_audience_add_up_and_the_file_reads_back() {
        let config = WorkloadConfig {
            seed: 4,
            viewers: 400,
            heartbeat: Duration::from_secs(10),
            catalog_titles: 100,
            zipf_exponent: 1.0,
            taste: Taste::default(),
        };
        let mut audience = Audience::whole(&config, Arc::new(config.catalog().unwrap()));
        let mut truth = Truth::new();
        let (mut played, mut starts, mut events) = (0u64, 0u64, 0u64);
        while let Some(draft) = audience.next_event() {
            if draft.at_ms > 600_000 {
                break;
            }
            let ts = T0 + draft.at_ms as i64;
            truth.record(&draft, ts);
            played += draft.played_ms.map_or(0, u64::from);
            starts += u64::from(draft.kind == EventKind::Start);
            events += 1;
        }
        let minutes = truth.minutes();
        assert!((10..=12).contains(&minutes.len()), "{}", minutes.len());
        assert!(minutes
            .windows(2)
            .all(|pair| pair[0].minute < pair[1].minute));
        assert!(minutes.iter().all(|m| m.minute % MINUTE_MS == 0));
        assert_eq!(minutes.iter().map(|m| m.events).sum::<u64>(), events);
        assert_eq!(minutes.iter().map(|m| m.playing_ms).sum::<u64>(), played);
        let startups: u64 = minutes.iter().map(|m| m.startup_ms.len() as u64).sum();
        assert_eq!(startups, starts);
        assert!(minutes
            .iter()
            .all(|m| m.startup_ms.windows(2).all(|pair| pair[0] <= pair[1])));
        assert!(minutes.iter().all(|m| m.unique_viewers <= m.views));
        // Every played ms of the audience is at some bitrate.
        assert!(minutes.iter().all(|m| m.bitrate_played_ms == m.playing_ms));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("truth.ndjson");
        assert_eq!(truth.write_ndjson(&path).unwrap(), minutes.len());
        assert_eq!(read_ndjson(&path).unwrap(), minutes);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), minutes.len());
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        for field in [
            "minute",
            "views",
            "unique_viewers",
            "playing_ms",
            "rebuffer_ms",
            "rebuffers",
            "exits_before_start",
            "startup_failures",
            "playback_failures",
            "bitrate_kbps_ms",
            "bitrate_played_ms",
            "events",
            "startup_ms",
        ] {
            assert!(first.get(field).is_some(), "{field} missing: {first}");
        }
    }

    #[test]
    fn unwritable_and_malformed_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir").join("truth.ndjson");
        let error = Truth::new().write_ndjson(&missing).unwrap_err().to_string();
        assert!(
            error.contains("truth file") && error.contains("no-such-dir"),
            "{error}"
        );

        let path = dir.path().join("bad.ndjson");
        std::fs::write(&path, "{\"minute\":0}\n\nnot json\n").unwrap();
        let error = read_ndjson(&path).unwrap_err().to_string();
        assert!(error.contains("line 1"), "{error}");
        std::fs::write(&path, "").unwrap();
        assert_eq!(read_ndjson(&path).unwrap(), vec![]);
    }
}
