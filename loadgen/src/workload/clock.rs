//! Simulated time against the wall clock.
//!
//! The audience produces events in simulated time; requests take them in order at the rate the
//! run asks for. So the rate, the audience size and the time compression (seconds of viewing per
//! second of wall time) are tied: `rate = viewers * events_per_viewer_per_sec * compression`.
//! A run gives the rate and at most one of the other two ([`size_audience`]).
//!
//! Timestamps must pass the server's clock rules: `ts <= sent_at`, and not far in the future.
//! A compressed run covers hours of viewing in minutes, so its simulated span is laid out in the
//! past: it ends when the run starts ([`TimeAxis::ending_at`]), and every `ts` is earlier than
//! any `sent_at` of the run.

use std::time::Duration;

/// Audience size when the run does not say (and the rate does not decide it).
pub const DEFAULT_VIEWERS: u64 = 100_000;
/// Largest audience: a viewer takes about 200 bytes of memory.
pub const MAX_VIEWERS: u64 = 10_000_000;
/// With `--max` the rate is not known in advance; the simulated span is sized for a generator
/// this fast, far beyond what one machine posts, so that timestamps stay in the past.
pub const ASSUMED_MAX_EVENTS_PER_SEC: f64 = 5_000_000.0;
/// Spare simulated time on top of the planned span, for the randomness of the model.
const SPAN_SAFETY: f64 = 1.25;

/// Why the audience cannot be sized.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClockError {
    /// All three of rate, viewers and compression were given.
    #[error("with --rate, give --viewers or --time-compression, not both: the rate ties them")]
    OverDetermined,
    /// A compression factor without a rate.
    #[error("--time-compression needs --rate: with --max the server's speed decides it")]
    CompressionWithoutRate,
    /// The compression is not a positive number.
    #[error("--time-compression must be a positive number, got {0}")]
    BadCompression(f64),
    /// The rate and compression ask for more viewers than fit in memory.
    #[error("{rate} events/s at compression {compression} needs {viewers} viewers, more than {max}: raise --time-compression")]
    TooManyViewers {
        rate: f64,
        compression: f64,
        viewers: u64,
        max: u64,
    },
}

/// The audience of a run and how fast its simulated time runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudienceSize {
    pub viewers: u64,
    /// Seconds of viewing per second of wall time at the planned rate (None with `--max`).
    pub time_compression: Option<f64>,
}

/// Sizes the audience from the rate and one of viewers or compression (see the module note).
pub fn size_audience(
    rate: Option<f64>,
    viewers: Option<u64>,
    compression: Option<f64>,
    events_per_viewer_per_sec: f64,
) -> Result<AudienceSize, ClockError> {
    if let Some(factor) = compression {
        if !(factor.is_finite() && factor > 0.0) {
            return Err(ClockError::BadCompression(factor));
        }
    }
    let Some(rate) = rate else {
        if compression.is_some() {
            return Err(ClockError::CompressionWithoutRate);
        }
        return Ok(AudienceSize {
            viewers: viewers.unwrap_or(DEFAULT_VIEWERS),
            time_compression: None,
        });
    };
    let per_viewer = events_per_viewer_per_sec;
    match (viewers, compression) {
        (Some(_), Some(_)) => Err(ClockError::OverDetermined),
        (viewers, None) => {
            let viewers = viewers.unwrap_or(DEFAULT_VIEWERS);
            Ok(AudienceSize {
                viewers,
                time_compression: Some(rate / (viewers as f64 * per_viewer)),
            })
        }
        (None, Some(factor)) => {
            let viewers = (rate / (factor * per_viewer)).ceil().max(1.0) as u64;
            if viewers > MAX_VIEWERS {
                return Err(ClockError::TooManyViewers {
                    rate,
                    compression: factor,
                    viewers,
                    max: MAX_VIEWERS,
                });
            }
            Ok(AudienceSize {
                viewers,
                time_compression: Some(factor),
            })
        }
    }
}

/// The simulated time `events` events of `viewers` viewers take, with room to spare.
pub fn simulated_span(events: f64, viewers: u64, events_per_viewer_per_sec: f64) -> Duration {
    let seconds = events / (viewers as f64 * events_per_viewer_per_sec) * SPAN_SAFETY;
    Duration::from_secs_f64(seconds.clamp(0.0, 10.0 * 365.0 * 86_400.0)) + Duration::from_secs(60)
}

/// Maps simulated milliseconds to client timestamps (epoch ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeAxis {
    origin_ms: i64,
}

impl TimeAxis {
    /// Lays the simulated span `[0, span]` out so that it ends at `end_ms`.
    pub fn ending_at(end_ms: i64, span: Duration) -> TimeAxis {
        TimeAxis {
            origin_ms: end_ms - span.as_millis() as i64,
        }
    }

    pub fn origin_ms(&self) -> i64 {
        self.origin_ms
    }

    pub fn ts(&self, simulated_ms: u64) -> i64 {
        self.origin_ms.saturating_add(simulated_ms as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_and_the_audience_decide_the_compression() {
        let size = size_audience(Some(10_000.0), Some(1_000), None, 0.1).unwrap();
        assert_eq!(size.viewers, 1_000);
        assert!((size.time_compression.unwrap() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn the_rate_and_the_compression_decide_the_audience() {
        let size = size_audience(Some(10_000.0), None, Some(10.0), 0.1).unwrap();
        assert_eq!(size.viewers, 10_000);
    }

    #[test]
    fn a_closed_loop_keeps_the_default_audience_and_has_no_planned_compression() {
        let size = size_audience(None, None, None, 0.1).unwrap();
        assert_eq!(size.viewers, DEFAULT_VIEWERS);
        assert_eq!(size.time_compression, None);
        assert_eq!(
            size_audience(None, None, Some(2.0), 0.1),
            Err(ClockError::CompressionWithoutRate)
        );
    }

    #[test]
    fn over_determined_or_absurd_requests_are_refused() {
        assert_eq!(
            size_audience(Some(1.0), Some(1), Some(1.0), 0.1),
            Err(ClockError::OverDetermined)
        );
        assert!(size_audience(Some(1.0), None, Some(0.0), 0.1).is_err());
        assert!(size_audience(Some(1e9), None, Some(1.0), 0.1).is_err());
    }

    #[test]
    fn the_span_ends_where_the_axis_says_and_has_room_to_spare() {
        // 1,000 events of 100 viewers at 0.1 events/s each take 100 s of viewing.
        let span = simulated_span(1_000.0, 100, 0.1);
        assert!(span >= Duration::from_secs(100) + Duration::from_secs(60));
        let axis = TimeAxis::ending_at(1_000_000, span);
        assert_eq!(axis.ts(span.as_millis() as u64), 1_000_000);
        assert!(axis.ts(100_000) < 1_000_000);
    }
}
