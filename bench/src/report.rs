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
use crate::run::Measured;
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
    /// Whether the tool set the rate (`--rate`, `--interval`): then it is
    /// latency, not throughput, that tells servers apart.
    #[serde(default)]
    pub paced: bool,
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
    /// Per second of the server's CPU time: `per_second` divided by the
    /// server's CPU use over the same interval, as a fraction of one core
    /// (3,000,000 per second at 60 % of a core is 5,000,000). Where the load
    /// generator is the bottleneck, this rather than `per_second` compares
    /// servers. Only for echo, fanout and churn, and only when `--server-pid`
    /// was given and the server used some CPU; absent (null) otherwise, and
    /// in files written before it existed.
    #[serde(default)]
    pub per_server_cpu_second: Option<f64>,
}

impl Throughput {
    /// `count` over the measured interval, also per second of the server's
    /// CPU time in it.
    pub fn over(count: u64, measured: &Measured, unit: &str) -> Throughput {
        let per_second = count as f64 / measured.seconds;
        Throughput {
            per_second,
            unit: unit.to_owned(),
            per_server_cpu_second: per_cpu_second(per_second, measured.cpu.server_percent),
        }
    }
}

/// `per_second` per second of the server's CPU time, the server using
/// `server_percent` of one core; `None` unless that is known and above zero.
fn per_cpu_second(per_second: f64, server_percent: Option<f64>) -> Option<f64> {
    let cores = server_percent? / 100.0;
    let figure = per_second / cores;
    (cores > 0.0 && figure.is_finite()).then_some(figure)
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

    /// The throughput per second of server CPU time: as recorded, or for a
    /// file written before it was, worked out the same way from the
    /// throughput and the server's CPU use. `idle`'s rate (connections
    /// opened, while setting up) and its CPU use (while holding them) are
    /// not of the same interval, so it has none.
    pub fn per_server_cpu_second(&self) -> Option<f64> {
        self.throughput.per_server_cpu_second.or_else(|| {
            let comparable = self.scenario != "idle";
            per_cpu_second(self.throughput.per_second, self.cpu.server_percent.filter(|_| comparable))
        })
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
            throughput: Throughput {
                per_second: 1000.0,
                unit: "messages".to_owned(),
                per_server_cpu_second: None,
            },
            paced: false,
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
        if let Some(per_cpu_second) = self.per_server_cpu_second() {
            let unit = &self.throughput.unit;
            row(f, "server CPU", format!("{} {unit} per second of server CPU", grouped(per_cpu_second)))?;
        }
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
    fn throughput_per_server_cpu_second() {
        assert_eq!(per_cpu_second(3_000_000.0, Some(60.0)), Some(5_000_000.0));
        assert_eq!(per_cpu_second(1000.0, Some(200.0)), Some(500.0));
        assert_eq!(per_cpu_second(1000.0, None), None);
        assert_eq!(per_cpu_second(1000.0, Some(0.0)), None);
        assert_eq!(per_cpu_second(1000.0, Some(f64::NAN)), None);
        let cpu = CpuUse { server_percent: Some(50.0), ..CpuUse::default() };
        let throughput = Throughput::over(3000, &Measured { seconds: 2.0, cpu }, "deliveries");
        assert_eq!((throughput.per_second, throughput.per_server_cpu_second), (1500.0, Some(3000.0)));
    }

    #[test]
    fn the_table_gives_throughput_per_server_cpu_second_when_measured() {
        let mut report = Report::example("fanout-max", "switchboard");
        assert!(!report.to_string().contains("CPU-second"));
        report.throughput = Throughput {
            per_second: 3_000_000.0,
            unit: "deliveries".to_owned(),
            per_server_cpu_second: None,
        };
        report.cpu.server_percent = Some(60.0);
        let table = report.to_string();
        assert!(table.contains("  server CPU    5,000,000 deliveries per second of server CPU\n"), "{table}");
        report.cpu.server_percent = Some(0.0);
        assert!(!report.to_string().contains("CPU-second"));
    }

    #[test]
    fn files_without_the_per_cpu_second_figure_still_load() {
        let mut report = Report::example("echo", "switchboard");
        report.cpu.server_percent = Some(25.0);
        let mut json = serde_json::to_value(&report).unwrap();
        json["throughput"].as_object_mut().unwrap().remove("per_server_cpu_second");
        let old: Report = serde_json::from_value(json).unwrap();
        assert_eq!(old.throughput.per_server_cpu_second, None);
        // Worked out from what the file has.
        assert_eq!(old.per_server_cpu_second(), Some(4000.0));
        let mut idle = Report::example("idle", "switchboard");
        idle.scenario = "idle".to_owned();
        idle.cpu.server_percent = Some(25.0);
        assert_eq!(idle.per_server_cpu_second(), None);
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
