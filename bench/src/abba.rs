//! A side path's cost: the same load over HTTP with the side path off and on, alternated in one
//! run (ABBA: "on" is not always second, so a drift over the run falls on both alike), each run
//! on a fresh `playpulse serve` driven by `loadgen http --max`.

use std::path::Path;
use std::time::Duration;

use crate::report::CpuPerEvent;
use crate::server::{self, Server};

/// The load of every run.
pub struct Load {
    pub duration: Duration,
    pub batch: usize,
    pub connections: usize,
    /// A side path that may fall behind under `--max`: the counter of events it has finished
    /// with. A run is measured until that counter reaches the events accepted (its backlog is
    /// its cost too), and its rate is over that whole time.
    pub caught_up_counter: Option<&'static str>,
}

/// Longest a side path may take to catch up after a run.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(300);

/// What the runs measured, off (`[0]`) and on (`[1]`).
#[derive(Debug, Default)]
pub struct Alternated {
    pub rates: [Vec<f64>; 2],
    pub cpu: [Vec<CpuPerEvent>; 2],
}

impl Alternated {
    pub fn mean_rate(&self, on: bool) -> f64 {
        let rates = &self.rates[usize::from(on)];
        rates.iter().sum::<f64>() / rates.len().max(1) as f64
    }

    /// `1 - on / off`: the share of throughput the side path costs.
    pub fn cost(&self) -> f64 {
        let off = self.mean_rate(false);
        if off > 0.0 {
            1.0 - self.mean_rate(true) / off
        } else {
            0.0
        }
    }

    pub fn mean_cpu(&self, on: bool) -> CpuPerEvent {
        let runs = &self.cpu[usize::from(on)];
        let n = runs.len().max(1) as f64;
        CpuPerEvent {
            server_us: runs.iter().map(|cpu| cpu.server_us).sum::<f64>() / n,
            generator_us: runs.iter().map(|cpu| cpu.generator_us).sum::<f64>() / n,
        }
    }
}

/// `rounds` rounds of one run off and one on. `env(round, on)` is the server's environment
/// for a run; `after(server, on)` reads what it needs from a server before it stops.
pub fn alternate(
    bin: &Path,
    work: &Path,
    name: &str,
    rounds: usize,
    load: &Load,
    env: impl Fn(usize, bool) -> Vec<(&'static str, String)>,
    mut after: impl FnMut(&Server, bool),
) -> anyhow::Result<Alternated> {
    let mut runs = Alternated::default();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for on in order {
            let data_dir = work.join(format!("data-{round}-{on}"));
            let server = Server::start(bin, &data_dir, &env(round, on))?;
            let server_cpu_before = server.cpu_seconds();
            let loadgen_args: Vec<String> = [
                "http",
                "--url",
                &server.url,
                "--max",
                "--duration",
                &format!("{}s", load.duration.as_secs().max(1)),
                "--batch",
                &load.batch.to_string(),
                "--connections",
                &load.connections.to_string(),
                "--seed",
                "7",
            ]
            .iter()
            .map(|arg| arg.to_string())
            .collect();
            let report = server::run_loadgen(bin, &loadgen_args, &work.join("run.json"))?;
            let load_seconds =
                report.totals.events_acked as f64 / report.events_per_sec.max(f64::MIN_POSITIVE);
            let catch_up_seconds = match load.caught_up_counter {
                Some(counter) if on => catch_up(&server, counter)?,
                _ => 0.0,
            };
            let rate = report.totals.events_acked as f64 / (load_seconds + catch_up_seconds);
            let run_cpu = CpuPerEvent::of(
                server.cpu_seconds() - server_cpu_before,
                report.generator_cpu_seconds,
                report.totals.events_acked,
            );
            eprintln!(
                "  {name} {}: {rate:.0} events/s ({:.0} events/s acknowledged over \
                 {load_seconds:.1} s, then {catch_up_seconds:.1} s to catch up), {run_cpu}",
                if on { "on " } else { "off" },
                report.events_per_sec
            );
            runs.rates[usize::from(on)].push(rate);
            runs.cpu[usize::from(on)].push(run_cpu);
            after(&server, on);
        }
    }
    Ok(runs)
}

/// Waits until `counter` reaches the events the server accepted; the seconds it took.
fn catch_up(server: &Server, counter: &str) -> anyhow::Result<f64> {
    let started = std::time::Instant::now();
    loop {
        let metrics = server.metrics();
        let accepted = crate::invalidation::counter(&metrics, "playpulse_events_accepted_total");
        if accepted > 0.0 && crate::invalidation::counter(&metrics, counter) >= accepted {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > CATCH_UP_TIMEOUT {
            anyhow::bail!("{counter} did not reach the events accepted in {CATCH_UP_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
