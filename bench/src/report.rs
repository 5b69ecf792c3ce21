//! Figures every scenario reports: latency percentiles, peak memory, bytes on disk.

use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LatencyMs {
    /// From a histogram recorded in microseconds.
    pub fn from_micros(histogram: &Histogram<u64>) -> LatencyMs {
        let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
        LatencyMs {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: histogram.max() as f64 / 1000.0,
        }
    }
}

/// CPU per event of one run, the server's and the generator's apart: a rate depends on what
/// else the machine runs, CPU per event much less, so a run on a noisy machine still tells what
/// two idle cores would do.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpuPerEvent {
    pub server_us: f64,
    pub generator_us: f64,
}

impl CpuPerEvent {
    pub fn of(server_cpu_seconds: f64, generator_cpu_seconds: f64, events: u64) -> CpuPerEvent {
        let per_event = |seconds: f64| seconds * 1e6 / events.max(1) as f64;
        CpuPerEvent {
            server_us: per_event(server_cpu_seconds),
            generator_us: per_event(generator_cpu_seconds),
        }
    }
}

impl std::fmt::Display for CpuPerEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CPU per event: server {:.2} µs, generator {:.2} µs",
            self.server_us, self.generator_us
        )
    }
}

/// Peak resident memory of this process (VmHWM), in bytes.
pub fn peak_rss_bytes() -> u64 {
    status_bytes("/proc/self/status", "VmHWM:").unwrap_or(0)
}

/// A size field (`VmRSS:`, `VmHWM:`) of a `/proc/<pid>/status` file, in bytes.
pub fn status_bytes(status_path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_path).ok()?;
    kib_field(&status, field)
}

fn kib_field(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
}

/// CPU seconds (user + system) this process has used.
pub fn cpu_seconds() -> f64 {
    cpu_seconds_of("/proc/self/stat").unwrap_or(0.0)
}

/// CPU seconds (user + system, all threads) of the process whose `/proc/<pid>/stat` this is;
/// None when it cannot be read (the process is gone).
pub fn cpu_seconds_of(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name; 100 Hz.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// `/proc/<pid>/stat` of the live process whose pid the file holds (an engine's pid file).
pub fn pid_stat_path(pid_file: &Path) -> Option<String> {
    let pid = std::fs::read_to_string(pid_file).ok()?;
    let path = format!("/proc/{}/stat", pid.trim());
    Path::new(&path).exists().then_some(path)
}

/// Peak resident memory (VmHWM) of the process whose `/proc/<pid>/stat` this is, in bytes.
pub fn peak_rss_of(stat_path: &str) -> Option<u64> {
    let status_path = stat_path.strip_suffix("stat")?.to_owned() + "status";
    status_bytes(&status_path, "VmHWM:")
}

/// The machine's 1-minute load average: how much else ran beside the benchmark.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Bytes of all files under a directory.
pub fn bytes_on_disk(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => bytes_on_disk(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A scenario's outcome: the JSON it writes, and whether it met its target.
pub struct Outcome {
    pub json: serde_json::Value,
    pub met: bool,
}

impl Outcome {
    pub fn target_met(&self) -> bool {
        self.met
    }

    pub fn write(&self, path: Option<&Path>) -> anyhow::Result<()> {
        if let Some(path) = path {
            std::fs::write(path, serde_json::to_vec_pretty(&self.json)?)
                .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", path.display()))?;
        }
        Ok(())
    }
}
