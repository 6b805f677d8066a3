//! A scenario's results: the table printed at the end of a run, and the JSON written with `--json`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::latency::LatencySummary;
use crate::numbers::{grouped, millis};
use crate::outcome::Endings;
use crate::sequence::SequenceCounts;
use crate::system::{CpuUse, Machine, ProcessSample};

/// Everything one run of one scenario against one server found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The tool and its version.
    pub tool: String,
    /// `echo`, `fanout`, `idle` or `churn`.
    pub scenario: String,
    /// The name of this workload in comparisons (`fanout-max`, `fanout-100/s`).
    pub case: String,
    /// The server's name (`--label`).
    pub label: String,
    /// The workload in a sentence.
    pub description: String,
    /// The URL the load went to.
    pub target: String,
    /// The command line, as given.
    pub command: String,
    /// Where it ran.
    pub machine: Machine,
    /// Seconds since the Unix epoch when the run began.
    pub started_unix: u64,
    /// The measured interval, seconds.
    pub measured_s: f64,
    /// The connections the scenario opened.
    pub connections: Connections,
    /// The headline rate.
    pub throughput: Throughput,
    /// What `latency` times (`round trip`, `publish to delivery`).
    pub latency_of: String,
    /// Its percentiles.
    pub latency: LatencySummary,
    /// Message accounting.
    pub messages: SequenceCounts,
    /// How the connections ended.
    pub endings: Endings,
    /// Memory, threads and descriptors per connection (`idle` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// CPU use during the measured interval.
    #[serde(default)]
    pub cpu: CpuUse,
    /// Further figures particular to the scenario, by name.
    #[serde(default)]
    pub details: BTreeMap<String, f64>,
}

/// Connections asked for and opened, and how long opening took.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Connections {
    /// How many the scenario asked for.
    pub wanted: u64,
    /// How many completed the upgrade.
    pub opened: u64,
    /// From `connect` to the end of the upgrade.
    pub upgrade: LatencySummary,
}

/// A rate, and what it counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Throughput {
    /// Per second, over the measured interval.
    pub per_second: f64,
    /// What is counted, plural (`messages`, `deliveries`, `handshakes`).
    pub unit: String,
}

/// What holding the connections cost, per connection.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resources {
    /// The server process that was sampled, if one was named.
    pub server_pid: Option<u32>,
    /// The server before the connections.
    pub server_before: Option<ProcessSample>,
    /// The server holding them.
    pub server_after: Option<ProcessSample>,
    /// Server RSS growth per connection, KiB.
    pub rss_kib_per_connection: Option<f64>,
    /// Server threads per connection.
    pub threads_per_connection: Option<f64>,
    /// Server file descriptors per connection.
    pub fds_per_connection: Option<f64>,
    /// Drop in the machine's MemAvailable per connection, KiB: both ends,
    /// kernel included, and anything else the machine did meanwhile. Left
    /// out when the server died, since its memory was freed with it.
    pub mem_available_kib_per_connection: Option<f64>,
    /// Connections open when the samples were taken (the divisor).
    #[serde(default)]
    pub held: u64,
    /// This tool's own RSS growth per connection, KiB (part of the above).
    pub tool_rss_kib_per_connection: f64,
    /// Whether the server's thread count stopped changing before sampling
    /// (false, too, when the server died and the figures are from its last
    /// look alive).
    pub settled: bool,
}

impl Report {
    /// Writes the report as pretty JSON.
    ///
    /// # Errors
    ///
    /// [`Error::Write`] if the file cannot be written.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let write_error = |source| Error::Write { path: path.to_owned(), source };
        let json = serde_json::to_string_pretty(self).map_err(|e| write_error(e.into()))?;
        fs::write(path, json + "\n").map_err(write_error)
    }

    /// Reads a report written by [`write_json`](Self::write_json).
    ///
    /// # Errors
    ///
    /// [`Error::Read`] if the file cannot be read, [`Error::Json`] if it is
    /// not a report.
    pub fn read_json(path: &Path) -> Result<Report> {
        let text =
            fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        serde_json::from_str(&text).map_err(|source| Error::Json { path: path.to_owned(), source })
    }
}

#[cfg(test)]
impl Report {
    /// A plausible report for tests of what reads reports.
    pub fn example(case: &str, label: &str) -> Report {
        Report {
            tool: "switchboard-bench test".to_owned(),
            scenario: case.split('-').next().unwrap_or(case).to_owned(),
            case: case.to_owned(),
            label: label.to_owned(),
            description: format!("the {case} workload"),
            target: "ws://127.0.0.1:9001/echo".to_owned(),
            command: format!("switchboard-bench {case} --label {label}"),
            machine: Machine::default(),
            started_unix: 0,
            measured_s: 10.0,
            connections: Connections { wanted: 100, opened: 100, upgrade: LatencySummary::default() },
            throughput: Throughput { per_second: 1000.0, unit: "messages".to_owned() },
            latency_of: "round trip".to_owned(),
            latency: LatencySummary {
                count: 10_000,
                p50_us: 100.0,
                p99_us: 1000.0,
                max_us: 5000.0,
                ..Default::default()
            },
            messages: SequenceCounts { sent: 10_000, received: 10_000, ..Default::default() },
            endings: Endings::default(),
            resources: None,
            cpu: CpuUse::default(),
            details: BTreeMap::new(),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, name: &str, value: String| writeln!(f, "  {name:<13} {value}");
        writeln!(f, "{} against {} ({})", self.case, self.label, self.target)?;
        row(f, "workload", self.description.clone())?;
        let c = &self.connections;
        row(
            f,
            "connections",
            format!(
                "{} of {} opened; upgrade p50 {} ms, p99 {} ms, max {} ms",
                grouped(c.opened as f64),
                grouped(c.wanted as f64),
                millis(c.upgrade.p50_us),
                millis(c.upgrade.p99_us),
                millis(c.upgrade.max_us)
            ),
        )?;
        row(f, "measured", format!("{:.2} s", self.measured_s))?;
        row(f, "throughput", format!("{} {}/s", grouped(self.throughput.per_second), self.throughput.unit))?;
        let l = &self.latency;
        row(
            f,
            "latency",
            format!(
                "{}: p50 {} ms  p99 {} ms  p99.9 {} ms  max {} ms  ({} samples)",
                self.latency_of,
                millis(l.p50_us),
                millis(l.p99_us),
                millis(l.p999_us),
                millis(l.max_us),
                grouped(l.count as f64)
            ),
        )?;
        let m = &self.messages;
        row(
            f,
            "messages",
            format!(
                "sent {}  received {}  lost {}  duplicated {}  out of order {}  corrupt {}",
                grouped(m.sent as f64),
                grouped(m.received as f64),
                grouped(m.lost as f64),
                grouped(m.duplicated as f64),
                grouped(m.out_of_order as f64),
                grouped(m.corrupt as f64)
            ),
        )?;
        row(
            f,
            "trouble",
            format!(
                "{} ({} closed by the tool)",
                self.endings.describe(),
                grouped(self.endings.closed_by_client as f64)
            ),
        )?;
        if let Some(r) = &self.resources {
            let per =
                |value: Option<f64>, digits: usize| value.map_or("?".to_owned(), |v| format!("{v:.digits$}"));
            match (r.server_pid, r.server_after) {
                (None, _) => {}
                (Some(pid), None) => {
                    row(f, "server", format!("process {pid} was gone when sampled: exited or crashed"))?
                }
                (Some(_), Some(_)) => row(
                    f,
                    "server",
                    format!(
                        "per connection: RSS {} KiB, threads {}, fds {}{}",
                        per(r.rss_kib_per_connection, 1),
                        per(r.threads_per_connection, 2),
                        per(r.fds_per_connection, 2),
                        if self.details.contains_key("server_gone") {
                            " (the server died; these are from its last look alive)"
                        } else if r.settled {
                            ""
                        } else {
                            " (thread count still changing when sampled)"
                        }
                    ),
                )?,
            }
            row(
                f,
                "machine",
                format!(
                    "MemAvailable down {} KiB per connection (both ends, kernel included); this tool's RSS {:.1} KiB of it; {} connections held",
                    per(r.mem_available_kib_per_connection, 1),
                    r.tool_rss_kib_per_connection,
                    grouped(r.held as f64)
                ),
            )?;
        }
        let cpu = |percent: Option<f64>| percent.map_or("?".to_owned(), |p| format!("{p:.0} %"));
        row(
            f,
            "cpu",
            format!(
                "this tool {}, the server {}, everything else {} (of one core, over the measured interval)",
                cpu(self.cpu.tool_percent),
                cpu(self.cpu.server_percent),
                cpu(self.cpu.others_percent)
            ),
        )?;
        for (name, value) in &self.details {
            let shown = if value.fract() == 0.0 { grouped(*value) } else { format!("{value:.2}") };
            row(f, name, shown)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let mut report = Report::example("idle", "switchboard");
        report.resources = Some(Resources { rss_kib_per_connection: Some(32.5), ..Resources::default() });
        report.endings.closed_by_server.insert(1008, 3);
        let dir = std::env::temp_dir().join(format!("switchboard-bench-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("report.json");
        report.write_json(&path).unwrap();
        let back = Report::read_json(&path).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(back.endings, report.endings);
        assert_eq!(back.resources.and_then(|r| r.rss_kib_per_connection), Some(32.5));
        assert_eq!(back.latency, report.latency);
    }

    #[test]
    fn the_table_names_the_trouble() {
        let mut report = Report::example("fanout-max", "switchboard");
        report.endings.closed_by_server.insert(1008, 3);
        let table = report.to_string();
        assert!(table.contains("closed by server 1008×3"), "{table}");
        assert!(table.contains("1,000 messages/s"), "{table}");
    }
}
