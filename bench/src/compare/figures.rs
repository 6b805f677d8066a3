//! The figures a comparison shows for each run, and which way is better.

use crate::numbers::{grouped, millis};
use crate::report::Report;

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// More is better (throughput).
    Higher,
    /// Less is better (latency, memory).
    Lower,
    /// Neither: a circumstance of the run (CPU use), shown without a ratio.
    Neither,
}

/// One row of a comparison.
#[derive(Debug)]
pub struct Figure {
    /// The row's name; `{latency}` is replaced by what the latency times,
    /// `{unit}` by what the throughput counts.
    pub name: &'static str,
    /// Which way is better.
    pub better: Better,
    /// The figure of one run, if that run has it.
    pub value: fn(&Report) -> Option<f64>,
    /// How it is written.
    pub show: fn(f64) -> String,
}

fn one_decimal(value: f64) -> String {
    format!("{value:.1}")
}

fn whole(value: f64) -> String {
    format!("{value:.0}")
}

fn two_decimals(value: f64) -> String {
    format!("{value:.2}")
}

fn per_second(report: &Report) -> Option<f64> {
    Some(report.throughput.per_second).filter(|_| report.scenario != "idle")
}

/// Every figure, in the order the rows appear; a case shows those its runs have.
pub const FIGURES: &[Figure] = &[
    Figure { name: "throughput (per second)", better: Better::Higher, value: per_second, show: grouped },
    // Where the load generator's core is the limit, throughput measures the
    // tool; this measures what each server makes of the CPU it used.
    Figure {
        name: "{unit} per server CPU-second",
        better: Better::Higher,
        value: Report::per_server_cpu_second,
        show: grouped,
    },
    Figure {
        name: "published (per second)",
        better: Better::Higher,
        value: |r| r.details.get("published_per_s").copied(),
        show: grouped,
    },
    Figure {
        name: "{latency} p50 (ms)",
        better: Better::Lower,
        value: |r| Some(r.latency.p50_us),
        show: millis,
    },
    Figure {
        name: "{latency} p99 (ms)",
        better: Better::Lower,
        value: |r| Some(r.latency.p99_us),
        show: millis,
    },
    Figure {
        name: "{latency} p99.9 (ms)",
        better: Better::Lower,
        value: |r| Some(r.latency.p999_us),
        show: millis,
    },
    Figure {
        name: "{latency} max (ms)",
        better: Better::Lower,
        value: |r| Some(r.latency.max_us),
        show: millis,
    },
    Figure {
        name: "server RSS per connection (KiB)",
        better: Better::Lower,
        value: |r| r.resources.as_ref()?.rss_kib_per_connection,
        show: one_decimal,
    },
    Figure {
        name: "server threads per connection",
        better: Better::Lower,
        value: |r| r.resources.as_ref()?.threads_per_connection,
        show: two_decimals,
    },
    Figure {
        name: "server fds per connection",
        better: Better::Lower,
        value: |r| r.resources.as_ref()?.fds_per_connection,
        show: two_decimals,
    },
    Figure {
        name: "machine MemAvailable per connection (KiB, both ends)",
        better: Better::Lower,
        value: |r| r.resources.as_ref()?.mem_available_kib_per_connection,
        show: one_decimal,
    },
    Figure {
        name: "server CPU during the measurement (% of a core)",
        better: Better::Neither,
        value: |r| r.cpu.server_percent,
        show: whole,
    },
    Figure {
        name: "switchboard-bench CPU (% of a core)",
        better: Better::Neither,
        value: |r| r.cpu.tool_percent,
        show: whole,
    },
    Figure {
        name: "other work on the machine meanwhile (% of a core)",
        better: Better::Neither,
        value: |r| r.cpu.others_percent,
        show: whole,
    },
    Figure {
        name: "connections opened per second",
        better: Better::Higher,
        value: |r| Some(r.throughput.per_second).filter(|_| r.scenario == "idle"),
        show: grouped,
    },
];

impl Figure {
    /// The row name in a case of which `run` is one.
    pub fn title(&self, run: &Report) -> String {
        self.name.replace("{latency}", &run.latency_of).replace("{unit}", &run.throughput.unit)
    }
}

/// The words for what a run's messages and connections came to: `0 / 0 / 0`.
pub fn accounting(report: &Report) -> String {
    let m = &report.messages;
    format!(
        "{} / {} / {}",
        grouped(m.lost as f64),
        grouped(m.duplicated as f64),
        grouped(m.out_of_order as f64)
    )
}
