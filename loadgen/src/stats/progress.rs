//! A progress line on stderr every second, from the samples workers hand in.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{Instant, MissedTickBehavior};

use super::Sample;

/// Prints one line per second until every worker has dropped its sender.
pub async fn print_progress(mut samples: UnboundedReceiver<Sample>, label: String, enabled: bool) {
    let started = Instant::now();
    // Workers hand in their samples every second from the start; print a little after, so
    // that a line holds the second just past.
    let first_line = started + Duration::from_millis(1_250);
    let mut ticker = tokio::time::interval_at(first_line, Duration::from_secs(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut interval = Sample::default();
    let mut interval_started = first_line - Duration::from_secs(1);
    let mut errors = 0u64;
    let mut missed = 0u64;
    loop {
        tokio::select! {
            sample = samples.recv() => match sample {
                Some(sample) => {
                    errors += sample.counters.error_count();
                    missed += sample.counters.missed.total();
                    // Histograms share their bounds, so a merge cannot fail.
                    let _ = interval.merge(&sample);
                }
                None => return,
            },
            now = ticker.tick() => {
                if enabled {
                    let seconds = (now - interval_started).as_secs_f64();
                    eprintln!("{}", progress_line(&label, now - started, &interval, seconds, errors, missed));
                }
                interval = Sample::default();
                interval_started = now;
            }
        }
    }
}

/// `[  12s] step 3: 49,870 ev/s  50 req/s  p50 1.8 ms  p99 4.1 ms  p99.9 9.9 ms  errors 0  missed 0`
pub fn progress_line(
    label: &str,
    elapsed: Duration,
    interval: &Sample,
    interval_seconds: f64,
    errors: u64,
    missed: u64,
) -> String {
    let per_second = |count: u64| count as f64 / interval_seconds.max(1e-9);
    let latency = interval.latency.summary();
    format!(
        "[{:>5.0}s] {label}{} ev/s  {} req/s  p50 {:.1} ms  p99 {:.1} ms  p99.9 {:.1} ms  errors {errors}  missed {missed}",
        elapsed.as_secs_f64(),
        thousands(per_second(interval.counters.events_acked)),
        thousands(per_second(interval.counters.requests_acked)),
        latency.p50,
        latency.p99,
        latency.p999,
    )
}

/// 1234567.8 -> "1,234,568".
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }

    #[test]
    fn a_progress_line_shows_rate_percentiles_errors_and_missed_sends() {
        let mut sample = Sample::default();
        sample.counters.events_acked = 2_000;
        sample.counters.requests_acked = 2;
        sample.latency.record(Duration::from_millis(3));
        let line = progress_line("", Duration::from_secs(4), &sample, 2.0, 1, 7);
        assert!(line.contains("1,000 ev/s"), "{line}");
        assert!(line.contains("1 req/s"), "{line}");
        assert!(line.contains("p99 3.0 ms"), "{line}");
        assert!(line.contains("errors 1"), "{line}");
        assert!(line.contains("missed 7"), "{line}");
    }
}
