//! The cache-invalidation side path's cost: the same load with invalidation off and on (Redis),
//! alternated in one run so that a noisy machine hits both alike; and the lag from durable write
//! to UNLINK, from the server's own histogram.

use serde_json::json;

use crate::abba::{alternate, Load};
use crate::report::Outcome;
use crate::server;
use crate::Common;

const MAX_COST: f64 = 0.05;
const MAX_LAG_P99_SECONDS: f64 = 1.0;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Length of each measured run (there are `rounds` runs off and as many on).
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    #[arg(long, default_value_t = 8)]
    connections: usize,
}

/// The `quantile` of a Prometheus histogram in `metrics`, as the upper bound of its bucket.
fn histogram_quantile(metrics: &str, name: &str, quantile: f64) -> Option<f64> {
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix(&format!("{name}_bucket{{le=\"")))
        .filter_map(|rest| {
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, count)| *count >= quantile * total)
        .map(|(bound, _)| *bound)
}

pub(crate) fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let bin = server::build_binaries()?;
    let work = tempfile::tempdir()?;
    let mut lag_p99 = None;
    let mut keys_sent = 0.0;
    let load = Load {
        duration: args.common.duration,
        batch: args.batch,
        connections: args.connections,
        caught_up_counter: None,
    };
    let runs = alternate(
        &bin,
        work.path(),
        "invalidation",
        args.rounds,
        &load,
        |round, on| {
            vec![
                ("PLAYPULSE_CACHE__KIND", "redis".to_owned()),
                ("PLAYPULSE_REDIS__URL", args.redis_url.clone()),
                ("PLAYPULSE_REDIS__KEY_PREFIX", format!("bench{round}:")),
                ("PLAYPULSE_INVALIDATION__ENABLED", on.to_string()),
            ]
        },
        |server, on| {
            if on {
                let metrics = server.metrics();
                lag_p99 = histogram_quantile(&metrics, "playpulse_invalidation_lag_seconds", 0.99)
                    .or(lag_p99);
                keys_sent += counter(&metrics, "playpulse_invalidation_sent_total");
            }
        },
    )?;
    let (off, on) = (runs.mean_rate(false), runs.mean_rate(true));
    let cost = runs.cost();
    let lag = lag_p99.unwrap_or(f64::INFINITY);
    let met = cost <= MAX_COST && lag <= MAX_LAG_P99_SECONDS;
    println!(
        "invalidation: off {off:.0} events/s, on {on:.0} events/s: cost {:.1}% (target <= {:.0}%)",
        cost * 100.0,
        MAX_COST * 100.0
    );
    let (cpu_off, cpu_on) = (runs.mean_cpu(false), runs.mean_cpu(true));
    println!("  off: {cpu_off};  on: {cpu_on}");
    println!("  durable-to-UNLINK lag p99 <= {lag} s (target <= {MAX_LAG_P99_SECONDS} s; bucket bound); {keys_sent:.0} keys unlinked");
    let outcome = Outcome {
        json: json!({
            "scenario": "invalidation",
            "events_per_sec": on,
            "events_per_sec_off": off,
            "events_per_sec_on": on,
            "runs_off": runs.rates[0],
            "runs_on": runs.rates[1],
            "cpu_us_per_event_off": cpu_off,
            "cpu_us_per_event_on": cpu_on,
            "throughput_cost": cost,
            "target_max_cost": MAX_COST,
            "lag_p99_seconds_bucket_bound": lag_p99,
            "target_lag_p99_seconds": MAX_LAG_P99_SECONDS,
            "keys_unlinked": keys_sent,
            "target_met": met,
        }),
        met,
    };
    outcome.write(args.common.json.as_deref())?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_cumulative_buckets() {
        let metrics = "x_bucket{le=\"0.1\"} 50\nx_bucket{le=\"0.5\"} 98\nx_bucket{le=\"1\"} 100\nx_bucket{le=\"+Inf\"} 100\nx_count 100\n";
        assert_eq!(histogram_quantile(metrics, "x", 0.5), Some(0.1));
        assert_eq!(histogram_quantile(metrics, "x", 0.99), Some(1.0));
        assert_eq!(histogram_quantile("", "x", 0.99), None);
        assert_eq!(counter("y_total 12\n", "y_total"), 12.0);
    }
}
