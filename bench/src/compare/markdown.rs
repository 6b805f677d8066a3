//! The comparison as Markdown: one table per case, a column per server, and ratios against the baseline.

use std::fmt::Write as _;

use crate::compare::figures::accounting;
use crate::compare::{Better, Case, Comparison, FIGURES};
use crate::numbers::{grouped, millis, ratio};
use crate::report::Report;

/// The connection endings the tool did not ask for, and a server that died.
fn trouble(report: &Report) -> String {
    let endings = report.endings.describe();
    if report.details.contains_key("server_gone") {
        let held = report.resources.as_ref().map_or(0, |r| r.held);
        format!(
            "**server process gone** (exited or crashed; last seen alive at {held} connections); {endings}"
        )
    } else {
        endings
    }
}

/// The whole comparison as a Markdown document.
pub fn render(comparison: &Comparison) -> String {
    let mut out = String::new();
    let servers = &comparison.servers;
    let baseline = servers.first().map(String::as_str).unwrap_or("");
    let others = servers.get(1..).unwrap_or(&[]);
    // `write!` to a String cannot fail.
    let _ = writeln!(out, "# WebSocket benchmark\n");
    if let Some(any) = comparison.any() {
        let m = &any.machine;
        let _ = writeln!(
            out,
            "{} ({} cores; the tool could use {}), Linux {}; {}.\n",
            m.cpu, m.cores, m.usable_cores, m.kernel, any.tool
        );
    }
    if !others.is_empty() {
        let _ = writeln!(
            out,
            "Ratios are {baseline} ÷ the other server: above 1 is better for throughput, worse for latency and memory.\n"
        );
    }
    for case in &comparison.cases {
        let Some(first) = case.runs.iter().flatten().next() else { continue };
        let _ = writeln!(out, "## {}\n\n{}.\n", case.name, case.description);
        let rounds = case.most_rounds();
        if rounds > 1 {
            let by = if case.paced() { "p99 latency" } else { "throughput" };
            let _ = writeln!(
                out,
                "Each server ran it {rounds} times, the servers taking turns; each column is the \
                 server's median run by {by}, and its losses and trouble are those of all its runs.\n"
            );
        }
        let mut header = format!("| figure | {} |", servers.join(" | "));
        let mut rule = format!("| --- |{}", " ---: |".repeat(servers.len()));
        for other in others {
            let _ = write!(header, " {baseline} ÷ {other} |");
            rule.push_str(" ---: |");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for figure in FIGURES {
            let values: Vec<Option<f64>> =
                case.runs.iter().map(|run| run.as_ref().and_then(|r| (figure.value)(r))).collect();
            if values.iter().all(Option::is_none) {
                continue;
            }
            let mut row = format!("| {} |", figure.title(first));
            for value in &values {
                let _ = write!(row, " {} |", value.map_or("–".to_owned(), figure.show));
            }
            for value in values.iter().skip(1) {
                let shown = match (values[0], value, figure.better) {
                    (_, _, Better::Neither) => String::new(),
                    (Some(base), Some(other), _) => ratio(base, *other),
                    _ => "–".to_owned(),
                };
                let _ = write!(row, " {shown} |");
            }
            let _ = writeln!(out, "{row}");
        }
        if rounds > 1 {
            rounds_row(&mut out, case, others.len());
        }
        text_row(&mut out, "lost / duplicated / out of order", &case.runs, accounting, others.len());
        text_row(&mut out, "connection trouble", &case.runs, trouble, others.len());
        out.push('\n');
    }
    let _ = writeln!(out, "## Commands\n\n```sh");
    for command in comparison.cases.iter().flat_map(|case| &case.commands) {
        let _ = writeln!(out, "{command}");
    }
    let _ = writeln!(out, "```");
    out
}

/// Each server's ranking figure in every round, in the order they ran.
fn rounds_row(out: &mut String, case: &Case, ratios: usize) {
    let (title, show): (&str, fn(f64) -> String) = if case.paced() {
        ("p99 latency of each run (ms)", millis)
    } else {
        ("throughput of each run (per second)", grouped)
    };
    let mut row = format!("| {title} |");
    for rounds in &case.rounds {
        let shown: Vec<String> = rounds.iter().map(|&figure| show(figure)).collect();
        let _ = write!(row, " {} |", if shown.is_empty() { "–".to_owned() } else { shown.join(" · ") });
    }
    row.push_str(&" |".repeat(ratios));
    let _ = writeln!(out, "{row}");
}

/// A row of words rather than figures: one cell per run, and empty ratio cells.
fn text_row(
    out: &mut String,
    title: &str,
    runs: &[Option<Report>],
    cell: fn(&Report) -> String,
    ratios: usize,
) {
    let mut row = format!("| {title} |");
    for run in runs {
        let _ = write!(row, " {} |", run.as_ref().map_or("–".to_owned(), cell));
    }
    row.push_str(&" |".repeat(ratios));
    let _ = writeln!(out, "{row}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_the_baseline_over_each_other_server() {
        let mut other = Report::example("echo", "other");
        other.throughput.per_second = 500.0;
        other.latency.p50_us = 200.0;
        let comparison = Comparison::new(vec![Report::example("echo", "switchboard"), other], "switchboard");
        let table = render(&comparison);
        assert!(table.contains("| figure | switchboard | other | switchboard ÷ other |"), "{table}");
        assert!(table.contains("| throughput (per second) | 1,000 | 500 | 2.00× |"), "{table}");
        assert!(table.contains("| round trip p50 (ms) | 0.100 | 0.200 | 0.50× |"), "{table}");
        assert!(table.contains("| lost / duplicated / out of order | 0 / 0 / 0 | 0 / 0 / 0 | |"), "{table}");
        assert!(!table.contains("CPU-second"), "no server CPU measured: {table}");
    }

    #[test]
    fn throughput_per_server_cpu_second_follows_throughput() {
        let mut baseline = Report::example("fanout-max", "switchboard");
        baseline.throughput.unit = "deliveries".to_owned();
        baseline.cpu.server_percent = Some(50.0);
        let mut other = baseline.clone();
        other.label = "other".to_owned();
        other.cpu.server_percent = Some(100.0);
        // A server whose CPU was not measured has no figure, not an infinite one.
        let mut unmeasured = baseline.clone();
        unmeasured.label = "unmeasured".to_owned();
        unmeasured.cpu.server_percent = None;
        let table = render(&Comparison::new(vec![baseline, other, unmeasured], "switchboard"));
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| ")).collect();
        let at = |name: &str| rows.iter().position(|row| row.starts_with(name)).unwrap();
        assert_eq!(
            at("| deliveries per server CPU-second |"),
            at("| throughput (per second) |") + 1,
            "{table}"
        );
        assert!(
            table.contains("| deliveries per server CPU-second | 2,000 | 1,000 | – | 2.00× | – |"),
            "{table}"
        );
    }

    #[test]
    fn rounds_are_listed_and_the_median_compared() {
        let mut reports = Vec::new();
        for (label, rates) in [("switchboard", [900.0, 3000.0, 2000.0]), ("other", [1000.0, 1200.0, 800.0])] {
            for rate in rates {
                let mut run = Report::example("echo", label);
                run.throughput.per_second = rate;
                reports.push(run);
            }
        }
        let table = render(&Comparison::new(reports, "switchboard"));
        assert!(table.contains("Each server ran it 3 times"), "{table}");
        assert!(table.contains("| throughput (per second) | 2,000 | 1,000 | 2.00× |"), "{table}");
        assert!(
            table.contains(
                "| throughput of each run (per second) | 900 · 3,000 · 2,000 | 1,000 · 1,200 · 800 | |"
            ),
            "{table}"
        );
        assert!(table.contains("| lost / duplicated / out of order | 0 / 0 / 0 | 0 / 0 / 0 | |"), "{table}");
        assert_eq!(table.matches("switchboard-bench echo --label").count(), 6, "every command: {table}");
    }

    #[test]
    fn paced_rounds_are_listed_by_p99() {
        let reports = [1500.0, 1000.0, 2500.0]
            .into_iter()
            .map(|p99| {
                let mut run = Report::example("fanout-rate100", "switchboard");
                run.paced = true;
                run.latency.p99_us = p99;
                run
            })
            .collect();
        let table = render(&Comparison::new(reports, "switchboard"));
        assert!(table.contains("median run by p99 latency"), "{table}");
        assert!(table.contains("| p99 latency of each run (ms) | 1.50 · 1.00 · 2.50 |"), "{table}");
        assert!(table.contains("round trip p99 (ms) | 1.50 |"), "{table}");
    }
}
