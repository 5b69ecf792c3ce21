//! `loadgen plan`: how many ingest and Cassandra nodes, and how much disk, a target needs.
//!
//! Every number is an [`Input`] that says where it came from (a report, a flag, or a documented
//! assumption), and every result carries the formula that produced it, so a capacity planner can
//! check the arithmetic and replace any assumption with a measurement.
//!
//! The model:
//! - ingest nodes = ceil(events/s / (ingest events/s per node * (1 - headroom)))
//! - Cassandra rows/s = events/s / events per row * replication factor (every replica writes)
//! - Cassandra nodes for writes = ceil(rows/s / (rows/s per node * (1 - headroom)))
//! - disk = events kept * bytes per event (one replica, after compaction) * replication factor
//! - Cassandra nodes for disk = ceil(disk / (disk per node * max fill)); the cluster needs the
//!   larger of the two node counts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::stats::progress::thousands;

/// Rows per second one Cassandra node takes (every replica write counts).
/// docs/DESIGN.md's public anchor: a small node does roughly 50-150k single-row inserts/s. The
/// low end, until `bench cassandra` measures ours.
pub const DEFAULT_CASSANDRA_ROWS_PER_SEC_PER_NODE: f64 = 50_000.0;
/// Bytes per event on disk, per replica, after compaction: docs/DESIGN.md's target for Cassandra.
pub const DEFAULT_BYTES_PER_EVENT: f64 = 80.0;
/// One heartbeat every 10 s (docs/DESIGN.md: 1 M events/s is about 10 M concurrent streams).
pub const DEFAULT_EVENTS_PER_VIEWER_PER_SEC: f64 = 0.1;
/// A common data-disk size for a Cassandra node.
pub const DEFAULT_DISK_BYTES_PER_NODE: f64 = 4e12;
/// Size-tiered compaction can need as much free space as the data it rewrites; half full is the
/// classic rule (time-window compaction needs less, so this is conservative).
pub const DEFAULT_MAX_DISK_FILL: f64 = 0.5;

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A report cannot be read.
    #[error("report {path}: {message}")]
    Report { path: PathBuf, message: String },
    /// Nothing says how fast an ingest node is.
    #[error("no ingest rate: give --report FILE (a loadgen http report or a bench pipeline/http report) or --ingest-events-per-sec-per-node")]
    NoIngestRate,
    /// An input out of its range.
    #[error("{name} {rule}, got {value}")]
    Invalid {
        name: &'static str,
        rule: &'static str,
        value: f64,
    },
    /// A byte size that does not parse.
    #[error("{0:?} is not a size like 80, 4TB, 100PB or 2TiB")]
    Size(String),
}

/// A number and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    pub value: f64,
    pub unit: String,
    pub source: String,
}

impl Input {
    pub fn new(value: f64, unit: &str, source: impl Into<String>) -> Input {
        Input {
            value,
            unit: unit.to_owned(),
            source: source.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanInputs {
    pub events_per_sec: Input,
    pub retention_seconds: Input,
    /// Viewing history to keep, one copy, on disk after compaction.
    pub history_bytes: Input,
    pub replication_factor: Input,
    /// Share of every node's capacity kept free for peaks, failures and rebuilds.
    pub headroom: Input,
    pub ingest_events_per_sec_per_node: Input,
    pub cassandra_rows_per_sec_per_node: Input,
    pub events_per_row: Input,
    pub bytes_per_event: Input,
    pub events_per_viewer_per_sec: Input,
    pub disk_bytes_per_node: Input,
    pub max_disk_fill: Input,
}

/// A number the plan computed, with its formula.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Derived {
    pub value: f64,
    pub formula: String,
}

/// Disk and nodes to keep some history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageNeed {
    pub label: String,
    pub events_kept: Derived,
    /// How long the target rate takes to fill it.
    pub covers_days: Derived,
    pub bytes_one_copy: Derived,
    pub bytes_all_replicas: Derived,
    pub cassandra_nodes_for_disk: Derived,
    /// The larger of the nodes for writes and for disk.
    pub cassandra_nodes: Derived,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub inputs: PlanInputs,
    pub concurrent_viewers: Derived,
    pub ingest_nodes: Derived,
    pub cassandra_rows_per_sec: Derived,
    pub cassandra_nodes_for_writes: Derived,
    pub for_retention: StorageNeed,
    pub for_history: StorageNeed,
}

/// Computes the plan; checks every input's range first.
pub fn compute(inputs: PlanInputs) -> Result<Plan, PlanError> {
    let positive = |name: &'static str, input: &Input| {
        if input.value.is_finite() && input.value > 0.0 {
            Ok(input.value)
        } else {
            Err(PlanError::Invalid {
                name,
                rule: "must be a positive number",
                value: input.value,
            })
        }
    };
    let events_per_sec = positive("--events-per-sec", &inputs.events_per_sec)?;
    let retention = positive("--retention", &inputs.retention_seconds)?;
    let history = positive("--history-bytes", &inputs.history_bytes)?;
    let replication = positive("--replication-factor", &inputs.replication_factor)?;
    let ingest_per_node = positive(
        "--ingest-events-per-sec-per-node",
        &inputs.ingest_events_per_sec_per_node,
    )?;
    let rows_per_node = positive(
        "--cassandra-rows-per-sec-per-node",
        &inputs.cassandra_rows_per_sec_per_node,
    )?;
    let events_per_row = positive("--events-per-row", &inputs.events_per_row)?;
    let bytes_per_event = positive("--bytes-per-event", &inputs.bytes_per_event)?;
    let per_viewer = positive(
        "--events-per-viewer-per-sec",
        &inputs.events_per_viewer_per_sec,
    )?;
    let disk_per_node = positive("--disk-per-node", &inputs.disk_bytes_per_node)?;
    let fill = inputs.max_disk_fill.value;
    if !(fill > 0.0 && fill <= 1.0) {
        return Err(PlanError::Invalid {
            name: "--max-disk-fill",
            rule: "must be in (0, 1]",
            value: fill,
        });
    }
    let headroom = inputs.headroom.value;
    if !(0.0..1.0).contains(&headroom) {
        return Err(PlanError::Invalid {
            name: "--headroom",
            rule: "must be in [0, 1)",
            value: headroom,
        });
    }
    let usable = 1.0 - headroom;

    let concurrent_viewers = Derived {
        value: events_per_sec / per_viewer,
        formula: format!(
            "{} events/s / {} events per viewer per s",
            thousands(events_per_sec),
            short_number(per_viewer)
        ),
    };
    let ingest_nodes = Derived {
        value: (events_per_sec / (ingest_per_node * usable)).ceil(),
        formula: format!(
            "ceil({} / ({} x (1 - {headroom})))",
            thousands(events_per_sec),
            thousands(ingest_per_node)
        ),
    };
    let rows_per_sec = events_per_sec / events_per_row * replication;
    let cassandra_rows_per_sec = Derived {
        value: rows_per_sec,
        formula: format!(
            "{} events/s / {events_per_row} events per row x RF {replication}",
            thousands(events_per_sec)
        ),
    };
    let nodes_for_writes = (rows_per_sec / (rows_per_node * usable)).ceil();
    let cassandra_nodes_for_writes = Derived {
        value: nodes_for_writes,
        formula: format!(
            "ceil({} rows/s / ({} x (1 - {headroom})))",
            thousands(rows_per_sec),
            thousands(rows_per_node)
        ),
    };

    let storage = |label: String, events_kept: Derived| {
        let one_copy = events_kept.value * bytes_per_event;
        let all_replicas = one_copy * replication;
        let nodes_for_disk = (all_replicas / (disk_per_node * fill)).ceil();
        StorageNeed {
            label,
            covers_days: Derived {
                value: events_kept.value / events_per_sec / 86_400.0,
                formula: format!(
                    "{:.4e} events / {} events/s / 86,400 s",
                    events_kept.value,
                    thousands(events_per_sec)
                ),
            },
            bytes_one_copy: Derived {
                value: one_copy,
                formula: format!("{:.4e} events x {bytes_per_event} B", events_kept.value),
            },
            bytes_all_replicas: Derived {
                value: all_replicas,
                formula: format!("{} x RF {replication}", human_bytes(one_copy)),
            },
            cassandra_nodes_for_disk: Derived {
                value: nodes_for_disk,
                formula: format!(
                    "ceil({} / ({} x {fill}))",
                    human_bytes(all_replicas),
                    human_bytes(disk_per_node)
                ),
            },
            cassandra_nodes: Derived {
                value: nodes_for_disk.max(nodes_for_writes),
                formula: format!("max({nodes_for_writes} for writes, {nodes_for_disk} for disk)"),
            },
            events_kept,
        }
    };
    let for_retention = storage(
        format!("{} of retention", human_duration(retention)),
        Derived {
            value: events_per_sec * retention,
            formula: format!("{} events/s x {retention} s", thousands(events_per_sec)),
        },
    );
    let for_history = storage(
        format!("{} of history", human_bytes(history)),
        Derived {
            value: history / bytes_per_event,
            formula: format!("{} / {bytes_per_event} B per event", human_bytes(history)),
        },
    );
    Ok(Plan {
        inputs,
        concurrent_viewers,
        ingest_nodes,
        cassandra_rows_per_sec,
        cassandra_nodes_for_writes,
        for_retention,
        for_history,
    })
}

impl Plan {
    pub fn text(&self) -> String {
        let inputs = &self.inputs;
        let mut out = format!(
            "Capacity plan for {} events/s, replication factor {}, headroom {:.0}%\n\nInputs\n",
            thousands(inputs.events_per_sec.value),
            inputs.replication_factor.value,
            inputs.headroom.value * 100.0
        );
        for (name, input) in [
            ("events/s (target)", &inputs.events_per_sec),
            ("retention", &inputs.retention_seconds),
            ("history (one copy)", &inputs.history_bytes),
            ("replication factor", &inputs.replication_factor),
            ("headroom", &inputs.headroom),
            (
                "ingest events/s per node",
                &inputs.ingest_events_per_sec_per_node,
            ),
            (
                "Cassandra rows/s per node",
                &inputs.cassandra_rows_per_sec_per_node,
            ),
            ("events per row", &inputs.events_per_row),
            ("bytes per event on disk", &inputs.bytes_per_event),
            ("events per viewer per s", &inputs.events_per_viewer_per_sec),
            ("disk per node", &inputs.disk_bytes_per_node),
            ("max disk fill", &inputs.max_disk_fill),
        ] {
            let value = match input.unit.as_str() {
                "bytes" => human_bytes(input.value),
                "seconds" => human_duration(input.value),
                _ if input.value >= 1_000.0 => thousands(input.value),
                _ => short_number(input.value),
            };
            out.push_str(&format!("  {name:<27} {value:>14}  {}\n", input.source));
        }
        out.push_str("\nResults\n");
        let line = |out: &mut String, name: &str, derived: &Derived, show: String| {
            out.push_str(&format!("  {name:<27} {show:>14}  = {}\n", derived.formula));
        };
        line(
            &mut out,
            "concurrent viewers",
            &self.concurrent_viewers,
            thousands(self.concurrent_viewers.value),
        );
        line(
            &mut out,
            "ingest nodes",
            &self.ingest_nodes,
            thousands(self.ingest_nodes.value),
        );
        line(
            &mut out,
            "Cassandra rows/s",
            &self.cassandra_rows_per_sec,
            thousands(self.cassandra_rows_per_sec.value),
        );
        line(
            &mut out,
            "Cassandra nodes for writes",
            &self.cassandra_nodes_for_writes,
            thousands(self.cassandra_nodes_for_writes.value),
        );
        for need in [&self.for_retention, &self.for_history] {
            out.push_str(&format!("\n  For {}:\n", need.label));
            line(
                &mut out,
                "  events kept",
                &need.events_kept,
                format!("{:.3e}", need.events_kept.value),
            );
            line(
                &mut out,
                "  covers (days)",
                &need.covers_days,
                if need.covers_days.value >= 365.25 {
                    format!(
                        "{:.1} ({:.1} y)",
                        need.covers_days.value,
                        need.covers_days.value / 365.25
                    )
                } else {
                    format!("{:.1}", need.covers_days.value)
                },
            );
            line(
                &mut out,
                "  disk, one copy",
                &need.bytes_one_copy,
                human_bytes(need.bytes_one_copy.value),
            );
            line(
                &mut out,
                "  disk, all replicas",
                &need.bytes_all_replicas,
                human_bytes(need.bytes_all_replicas.value),
            );
            line(
                &mut out,
                "  Cassandra nodes for disk",
                &need.cassandra_nodes_for_disk,
                thousands(need.cassandra_nodes_for_disk.value),
            );
            line(
                &mut out,
                "  Cassandra nodes",
                &need.cassandra_nodes,
                thousands(need.cassandra_nodes.value),
            );
        }
        out
    }
}

/// What a report says about throughput.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub path: PathBuf,
    /// `http` for loadgen's runs against the service; other tools may write others.
    pub target: String,
    pub events_per_sec: f64,
    /// The rate at the SLO, and how it was established.
    pub at_slo: Option<(f64, String)>,
    pub events_per_viewer_per_sec: Option<f64>,
    pub cpus: Option<u64>,
    /// Rows/s one Cassandra node took: a `loadgen cassandra` report's rate (one row per
    /// event), or `cassandra_rows_per_sec_per_node` of a `bench cassandra` report.
    pub cassandra_rows_per_sec: Option<f64>,
    /// `bytes_per_event_on_disk` of a `bench cassandra` report (one replica, after a flush and
    /// a major compaction).
    pub bytes_per_event_on_disk: Option<f64>,
}

/// Reads the fields the plan needs from a report (a loadgen report, or any JSON with
/// `events_per_sec` at the top level, such as bench's).
pub fn read_measurement(path: &Path) -> Result<Measurement, PlanError> {
    let error = |message: String| PlanError::Report {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| error(format!("not JSON: {e}")))?;
    let events_per_sec = value["events_per_sec"]
        .as_f64()
        .ok_or_else(|| error("no top-level events_per_sec".to_owned()))?;
    let saturation = value["ramp"]["saturation_events_per_sec"].as_f64();
    let slo_p99 = value["ramp"]["slo_p99_ms"]
        .as_f64()
        .or_else(|| value["slo"]["p99_ms"].as_f64());
    let at_slo = match (saturation, value["slo"]["met"].as_bool(), slo_p99) {
        (Some(rate), _, Some(slo)) => Some((rate, format!("ramp saturation at p99 <= {slo} ms"))),
        (None, Some(true), Some(slo)) => Some((events_per_sec, format!("run met p99 <= {slo} ms"))),
        _ => None,
    };
    let target = value["target"].as_str().unwrap_or("http").to_owned();
    let cassandra_rows_per_sec = value["cassandra_rows_per_sec_per_node"]
        .as_f64()
        .or_else(|| {
            (target == "cassandra")
                .then(|| at_slo.as_ref().map_or(events_per_sec, |(rate, _)| *rate))
        });
    Ok(Measurement {
        path: path.to_owned(),
        target,
        events_per_sec,
        at_slo,
        events_per_viewer_per_sec: value["workload"]["events_per_viewer_per_sec"].as_f64(),
        cpus: value["machine"]["cpus"].as_u64(),
        cassandra_rows_per_sec,
        bytes_per_event_on_disk: value["bytes_per_event_on_disk"].as_f64(),
    })
}

/// Rows/s per Cassandra node from the reports: the highest measured. A node's capacity is
/// what its best client got out of it; slower clients measured their own technique (and on
/// this kind of machine, share its cores with the node).
pub fn cassandra_rate_from(measurements: &[Measurement]) -> Option<Input> {
    measurements
        .iter()
        .filter_map(|m| m.cassandra_rows_per_sec.map(|rate| (rate, m)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(rate, m)| {
            let how = match &m.at_slo {
                Some((_, how)) if m.target == "cassandra" => how.clone(),
                _ => "the fastest writer's throughput".to_owned(),
            };
            Input::new(
                rate,
                "rows/s",
                format!(
                    "measured: {how} in {}{}",
                    m.path.display(),
                    m.cpus
                        .map(|cpus| format!(" ({cpus} CPUs shared by client and node)"))
                        .unwrap_or_default()
                ),
            )
        })
}

/// Bytes per event on disk from the reports: the largest measured (the conservative one).
pub fn bytes_per_event_from(measurements: &[Measurement]) -> Option<Input> {
    measurements
        .iter()
        .filter_map(|m| m.bytes_per_event_on_disk.map(|bytes| (bytes, m)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(bytes, m)| {
            Input::new(
                bytes,
                "bytes",
                format!(
                    "measured: after a flush and a major compaction, in {}",
                    m.path.display()
                ),
            )
        })
}

/// The ingest rate per node from the reports: the lowest rate at an SLO if any report has one
/// (conservative), else the lowest plain throughput.
pub fn ingest_rate_from(measurements: &[Measurement]) -> Option<Input> {
    let http: Vec<&Measurement> = measurements
        .iter()
        .filter(|m| m.target == "http" || m.target == "pipeline")
        .collect();
    let describe = |m: &Measurement, how: &str| {
        format!(
            "measured: {how} in {}{}",
            m.path.display(),
            m.cpus
                .map(|cpus| format!(" ({cpus} CPUs, generator on the same machine)"))
                .unwrap_or_default()
        )
    };
    let at_slo = http
        .iter()
        .filter_map(|m| {
            m.at_slo
                .as_ref()
                .map(|(rate, how)| (*rate, describe(m, how)))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0));
    let plain = || {
        http.iter()
            .map(|m| (m.events_per_sec, describe(m, "throughput, no SLO checked")))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    };
    at_slo
        .or_else(plain)
        .map(|(rate, source)| Input::new(rate, "events/s", source))
}

/// Parses sizes such as `80`, `4TB`, `100PB` (powers of 1000) or `2TiB` (powers of 1024).
pub fn parse_bytes(text: &str) -> Result<f64, PlanError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| PlanError::Size(text.to_owned()))?;
    let multiplier = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "PB" => 1e15,
        "EB" => 1e18,
        "KIB" => 1024f64,
        "MIB" => 1024f64.powi(2),
        "GIB" => 1024f64.powi(3),
        "TIB" => 1024f64.powi(4),
        "PIB" => 1024f64.powi(5),
        _ => return Err(PlanError::Size(text.to_owned())),
    };
    Ok(number * multiplier)
}

/// At most four decimals, without trailing zeros: 0.104486111 -> "0.1045", 3.0 -> "3".
pub fn short_number(value: f64) -> String {
    let text = format!("{value:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// 2592000 -> "30 days"; other spans as humantime writes them.
pub fn human_duration(seconds: f64) -> String {
    let whole = seconds as u64;
    let days = whole / 86_400;
    if days > 0 && days * 86_400 == whole && seconds.fract() == 0.0 {
        format!("{days} days")
    } else {
        humantime::format_duration(Duration::from_secs_f64(seconds)).to_string()
    }
}

/// 6.2208e14 -> "622.08 TB".
pub fn human_bytes(bytes: f64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.2} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> PlanInputs {
        let given = |value, unit: &str| Input::new(value, unit, "test");
        PlanInputs {
            events_per_sec: given(1_000_000.0, "events/s"),
            retention_seconds: given(30.0 * 86_400.0, "seconds"),
            history_bytes: given(1e17, "bytes"),
            replication_factor: given(3.0, ""),
            headroom: given(0.3, ""),
            ingest_events_per_sec_per_node: given(400_000.0, "events/s"),
            cassandra_rows_per_sec_per_node: given(50_000.0, "rows/s"),
            events_per_row: given(1.0, ""),
            bytes_per_event: given(80.0, "bytes"),
            events_per_viewer_per_sec: given(0.1, ""),
            disk_bytes_per_node: given(4e12, "bytes"),
            max_disk_fill: given(0.5, ""),
        }
    }

    #[test]
    fn a_million_events_per_second_with_thirty_days_of_retention_by_hand() {
        let plan = compute(inputs()).unwrap();
        // 1e6 / (400k x 0.7 = 280k) = 3.57 -> 4 ingest nodes.
        assert_eq!(plan.ingest_nodes.value, 4.0);
        // 10 M viewers at one event each per 10 s.
        assert_eq!(plan.concurrent_viewers.value, 10_000_000.0);
        // 3 M replica rows/s over (50k x 0.7 = 35k) per node = 85.7 -> 86.
        assert_eq!(plan.cassandra_rows_per_sec.value, 3_000_000.0);
        assert_eq!(plan.cassandra_nodes_for_writes.value, 86.0);
        // 30 days: 2.592e12 events x 80 B = 207.36 TB per copy, 622.08 TB with RF 3;
        // over 4 TB x 0.5 = 2 TB per node: 311.04 -> 312 nodes, more than for writes.
        let retention = &plan.for_retention;
        assert_eq!(retention.events_kept.value, 2.592e12);
        assert!((retention.bytes_one_copy.value - 2.0736e14).abs() < 1.0);
        assert!((retention.bytes_all_replicas.value - 6.2208e14).abs() < 1.0);
        assert_eq!(retention.cassandra_nodes_for_disk.value, 312.0);
        assert_eq!(retention.cassandra_nodes.value, 312.0);
        assert!((retention.covers_days.value - 30.0).abs() < 1e-9);
    }

    #[test]
    fn a_hundred_petabytes_of_history_by_hand() {
        let plan = compute(inputs()).unwrap();
        let history = &plan.for_history;
        // 1e17 B / 80 B = 1.25e15 events: 1.25e9 s at 1 M/s, about 14,468 days (39.6 years).
        assert_eq!(history.events_kept.value, 1.25e15);
        assert!((history.covers_days.value - 14_467.59).abs() < 0.01);
        // 3e17 B over 2e12 B per node.
        assert_eq!(history.bytes_all_replicas.value, 3e17);
        assert_eq!(history.cassandra_nodes.value, 150_000.0);
    }

    #[test]
    fn packing_events_into_rows_divides_the_write_load() {
        let mut packed = inputs();
        packed.events_per_row.value = 100.0;
        let plan = compute(packed).unwrap();
        // 30,000 rows/s over 35,000 per node.
        assert_eq!(plan.cassandra_nodes_for_writes.value, 1.0);
    }

    #[test]
    fn inputs_out_of_range_are_refused_by_name() {
        let mut bad = inputs();
        bad.headroom.value = 1.0;
        assert!(compute(bad).unwrap_err().to_string().contains("--headroom"));
        let mut bad = inputs();
        bad.cassandra_rows_per_sec_per_node.value = 0.0;
        assert!(compute(bad)
            .unwrap_err()
            .to_string()
            .contains("--cassandra-rows"));
    }

    #[test]
    fn the_text_shows_every_input_with_its_source_and_every_formula() {
        let text = compute(inputs()).unwrap().text();
        assert!(text.contains("Cassandra rows/s per node"));
        assert!(
            text.contains("ceil(1,000,000 / (400,000 x (1 - 0.3)))"),
            "{text}"
        );
        assert!(text.contains("100.00 PB of history"), "{text}");
        assert!(text.contains("622.08 TB"), "{text}");
    }

    #[test]
    fn numbers_and_spans_print_short() {
        assert_eq!(short_number(0.104486111), "0.1045");
        assert_eq!(short_number(3.0), "3");
        assert_eq!(human_duration(30.0 * 86_400.0), "30 days");
        assert_eq!(human_duration(90.0), "1m 30s");
    }

    #[test]
    fn sizes_parse_in_decimal_and_binary_units() {
        assert_eq!(parse_bytes("80").unwrap(), 80.0);
        assert_eq!(parse_bytes("100PB").unwrap(), 1e17);
        assert_eq!(parse_bytes("4 TB").unwrap(), 4e12);
        assert_eq!(parse_bytes("2TiB").unwrap(), 2.0 * 1024f64.powi(4));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 furlongs").is_err());
    }

    #[test]
    fn the_ingest_rate_prefers_a_rate_at_the_slo_and_takes_the_lowest() {
        let measurement = |rate: f64, at_slo: Option<f64>| Measurement {
            path: "r.json".into(),
            target: "http".into(),
            events_per_sec: rate,
            at_slo: at_slo.map(|r| (r, "ramp".to_owned())),
            events_per_viewer_per_sec: None,
            cpus: Some(2),
            cassandra_rows_per_sec: None,
            bytes_per_event_on_disk: None,
        };
        let rate = ingest_rate_from(&[
            measurement(500_000.0, None),
            measurement(300_000.0, Some(250_000.0)),
            measurement(320_000.0, Some(280_000.0)),
        ])
        .unwrap();
        assert_eq!(rate.value, 250_000.0);
        assert!(rate.source.contains("2 CPUs"));
        assert_eq!(
            ingest_rate_from(&[measurement(500_000.0, None)])
                .unwrap()
                .value,
            500_000.0
        );
        assert_eq!(ingest_rate_from(&[]), None);
    }

    #[test]
    fn the_plan_round_trips_through_json() {
        let plan = compute(inputs()).unwrap();
        let json = serde_json::to_string(&plan).unwrap();
        let back: Plan = serde_json::from_str(&json).unwrap();
        // Floats may differ in their last bit through JSON; what a reader sees may not.
        assert_eq!(back.text(), plan.text());
        assert_eq!(
            back.for_history.cassandra_nodes,
            plan.for_history.cassandra_nodes
        );
    }

    fn write_report(dir: &Path, name: &str, json: serde_json::Value) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, json.to_string()).unwrap();
        path
    }

    #[test]
    fn cassandra_reports_give_the_node_rate_and_the_bytes_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let loadgen = write_report(
            dir.path(),
            "best.json",
            serde_json::json!({
                "target": "cassandra",
                "events_per_sec": 30_000.0,
                "slo": {"p99_ms": 50.0, "met": true},
                "machine": {"cpus": 2},
            }),
        );
        let bench = write_report(
            dir.path(),
            "bench-cassandra.json",
            serde_json::json!({
                "target": "cassandra",
                "events_per_sec": 20_000.0,
                "cassandra_rows_per_sec_per_node": 25_000.0,
                "bytes_per_event_on_disk": 61.5,
            }),
        );
        let http = write_report(
            dir.path(),
            "http.json",
            serde_json::json!({"target": "http", "events_per_sec": 300_000.0}),
        );
        let measurements: Vec<Measurement> = [&loadgen, &bench, &http]
            .iter()
            .map(|path| read_measurement(path).unwrap())
            .collect();
        let rows = cassandra_rate_from(&measurements).unwrap();
        assert_eq!(rows.value, 30_000.0);
        assert!(
            rows.source.contains("run met p99 <= 50 ms"),
            "{}",
            rows.source
        );
        assert!(rows.source.contains("best.json"));
        let bytes = bytes_per_event_from(&measurements).unwrap();
        assert_eq!(bytes.value, 61.5);
        assert!(bytes.source.contains("bench-cassandra.json"));
        // A Cassandra baseline says nothing about how fast the service ingests.
        assert_eq!(ingest_rate_from(&measurements).unwrap().value, 300_000.0);
        assert_eq!(cassandra_rate_from(&measurements[2..]), None);
        assert_eq!(bytes_per_event_from(&measurements[2..]), None);
    }
}
