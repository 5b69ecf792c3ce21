//! When requests leave. Open loop: each worker sends at fixed intervals whatever the server does,
//! and latency counts from the intended send time, so a slow answer that delays the next send is
//! charged to the server (no coordinated omission). Closed loop (`--max`): each worker sends the
//! next request as soon as the previous one is answered.

use std::time::Duration;

use tokio::time::Instant;

/// The send times of one worker in an open-loop phase.
#[derive(Debug, Clone)]
pub struct OpenSchedule {
    first: Instant,
    /// Kept in f64 seconds: a Duration rounds to whole nanoseconds, which drifts over many sends.
    interval_seconds: f64,
    next_index: u64,
}

impl OpenSchedule {
    /// `workers` workers together send `events_per_sec` in batches of `batch`: each sends every
    /// `batch * workers / events_per_sec` seconds, worker `worker` offset by its share of one
    /// interval so that the sends interleave evenly instead of leaving together.
    pub fn for_worker(
        start: Instant,
        events_per_sec: f64,
        batch: usize,
        worker: usize,
        workers: usize,
    ) -> OpenSchedule {
        debug_assert!(events_per_sec > 0.0 && worker < workers);
        let interval_seconds = batch as f64 * workers as f64 / events_per_sec;
        let offset = Duration::from_secs_f64(interval_seconds * worker as f64 / workers as f64);
        OpenSchedule {
            first: start + offset,
            interval_seconds,
            next_index: 0,
        }
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.interval_seconds)
    }

    /// The intended time of the next send.
    pub fn next_send(&self) -> Instant {
        self.first + Duration::from_secs_f64(self.interval_seconds * self.next_index as f64)
    }

    pub fn advance(&mut self) {
        self.next_index += 1;
    }

    /// How many sends are scheduled from the next one up to (not including) `end`.
    pub fn remaining_before(&self, end: Instant) -> u64 {
        let next = self.next_send();
        if next >= end {
            return 0;
        }
        let span = (end - next).as_secs_f64();
        (span / self.interval_seconds).ceil() as u64
    }
}

/// Whether a send left on time, and if not, whose fault it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lateness {
    OnTime,
    /// The connection was free in time but the generator started the send late: the generator
    /// is the bottleneck.
    GeneratorLate,
    /// The previous answer on this connection came back after the intended time.
    ConnectionBusy,
}

/// Classifies a send that was meant to leave at `intended` and left at `started`, on a
/// connection whose previous answer arrived at `connection_free_at`. Up to `slack` late counts
/// as on time (timer resolution and scheduling noise).
pub fn classify_send(
    intended: Instant,
    started: Instant,
    connection_free_at: Instant,
    slack: Duration,
) -> Lateness {
    if started <= intended + slack {
        return Lateness::OnTime;
    }
    let could_have_started = intended.max(connection_free_at);
    if started > could_have_started + slack {
        Lateness::GeneratorLate
    } else {
        Lateness::ConnectionBusy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn workers_share_the_rate_and_interleave_their_sends() {
        let start = Instant::now();
        // 4 workers, 1,000 events per request, 40,000 events/s: each sends every 100 ms.
        let schedules: Vec<OpenSchedule> = (0..4)
            .map(|worker| OpenSchedule::for_worker(start, 40_000.0, 1_000, worker, 4))
            .collect();
        assert_eq!(schedules[0].interval(), ms(100));
        let firsts: Vec<Duration> = schedules.iter().map(|s| s.next_send() - start).collect();
        assert_eq!(firsts, vec![ms(0), ms(25), ms(50), ms(75)]);
    }

    #[test]
    fn send_times_do_not_drift() {
        let start = Instant::now();
        let mut schedule = OpenSchedule::for_worker(start, 3_000.0, 1, 0, 1);
        for _ in 0..3_000 {
            schedule.advance();
        }
        let drift = (schedule.next_send() - start).as_secs_f64() - 1.0;
        assert!(drift.abs() < 1e-6, "{drift}");
    }

    #[test]
    fn the_sends_left_before_the_end_are_counted() {
        let start = Instant::now();
        let schedule = OpenSchedule::for_worker(start, 10.0, 1, 0, 1);
        assert_eq!(schedule.remaining_before(start + ms(1_000)), 10);
        assert_eq!(schedule.remaining_before(start + ms(950)), 10);
        assert_eq!(schedule.remaining_before(start), 0);
    }

    #[test]
    fn a_late_send_on_a_free_connection_is_the_generators_fault() {
        let t0 = Instant::now();
        let slack = ms(2);
        assert_eq!(classify_send(t0, t0 + ms(1), t0, slack), Lateness::OnTime);
        assert_eq!(
            classify_send(t0, t0 + ms(10), t0 - ms(5), slack),
            Lateness::GeneratorLate
        );
        // The previous answer came at +9 ms and the send left at +10 ms: the server's fault.
        assert_eq!(
            classify_send(t0, t0 + ms(10), t0 + ms(9), slack),
            Lateness::ConnectionBusy
        );
        // The answer came at +3 ms but the send left only at +10 ms: the generator dawdled.
        assert_eq!(
            classify_send(t0, t0 + ms(10), t0 + ms(3), slack),
            Lateness::GeneratorLate
        );
    }
}
