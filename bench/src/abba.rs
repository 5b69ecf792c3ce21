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
}

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
            let run_cpu = CpuPerEvent::of(
                server.cpu_seconds() - server_cpu_before,
                report.generator_cpu_seconds,
                report.totals.events_acked,
            );
            eprintln!(
                "  {name} {}: {:.0} events/s, {run_cpu}",
                if on { "on " } else { "off" },
                report.events_per_sec
            );
            runs.rates[usize::from(on)].push(report.events_per_sec);
            runs.cpu[usize::from(on)].push(run_cpu);
            after(&server, on);
        }
    }
    Ok(runs)
}
