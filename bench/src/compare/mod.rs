//! `report`: the JSON of several runs side by side, as a Markdown table with ratios and an SVG chart.
//!
//! Runs are grouped by case (the workload) and by label (the server). One
//! server is the baseline, and every figure of it is divided by the same
//! figure of each other server.
//!
//! A case may have been run several times on each server, the servers
//! taking turns (`scripts/bench.sh` does five rounds). A shared machine
//! has slow spells that last tens of seconds, and a single run of each
//! server would let one of them decide a ratio; the median of each
//! server's rounds does not. What any round lost or broke still counts.

mod figures;
mod markdown;
mod svg;

use std::fs;
use std::path::Path;

use crate::args::ReportArgs;
use crate::error::{Error, Result};
use crate::report::Report;

pub use self::figures::{Better, FIGURES};

/// Every run, arranged by case and server.
#[derive(Debug)]
pub struct Comparison {
    /// Server labels: the baseline first (if present), then in order of appearance.
    pub servers: Vec<String>,
    /// Workloads, in order of appearance.
    pub cases: Vec<Case>,
}

/// One workload and its runs on each server.
#[derive(Debug)]
pub struct Case {
    /// Its name (`echo`, `fanout-max`).
    pub name: String,
    /// The workload in a sentence, from its first run.
    pub description: String,
    /// One entry per server of the comparison, in the same order: its
    /// median round, with the messages and connection endings of all its
    /// rounds added up.
    pub runs: Vec<Option<Report>>,
    /// Per server, the figure its rounds were ranked by ([`headline`]), one
    /// per round in the order they ran.
    pub rounds: Vec<Vec<f64>>,
    /// Every run's command line, in the order given.
    pub commands: Vec<String>,
}

impl Case {
    /// The most rounds any server ran.
    pub fn most_rounds(&self) -> usize {
        self.rounds.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// Whether its runs were paced, so ranked by latency.
    pub fn paced(&self) -> bool {
        self.runs.iter().flatten().any(|r| r.paced)
    }
}

/// The figure a server's rounds are ranked by: the rate it reached, or,
/// when the tool set the rate, its p99 latency (µs).
fn headline(report: &Report) -> f64 {
    if report.paced { report.latency.p99_us } else { report.throughput.per_second }
}

/// [`headline`], higher being better.
fn rank(report: &Report) -> f64 {
    if report.paced { -headline(report) } else { headline(report) }
}

/// The round that stands for a server: the median by [`rank`], the worse of
/// the middle two for an even number; `None` for no rounds.
fn median(mut rounds: Vec<Report>) -> Option<Report> {
    rounds.sort_by(|a, b| rank(a).total_cmp(&rank(b)));
    let totals = rounds.iter().fold((Default::default(), Default::default()), |(mut m, mut e), r| {
        m += r.messages;
        e += &r.endings;
        (m, e)
    });
    let middle = rounds.len().checked_sub(1)? / 2;
    let mut chosen = rounds.swap_remove(middle);
    (chosen.messages, chosen.endings) = totals;
    // A server that died in any round is shown as having died.
    if rounds.iter().any(|r| r.details.contains_key("server_gone")) {
        chosen.details.insert("server_gone".to_owned(), 1.0);
    }
    Some(chosen)
}

/// A case's runs as they are read, before each server's median is taken.
struct Gathered {
    name: String,
    description: String,
    commands: Vec<String>,
    /// Per server, its rounds in the order they ran.
    rounds: Vec<Vec<Report>>,
}

impl Comparison {
    /// Arranges `reports`; a server that ran a case several times is shown
    /// by its median round.
    pub fn new(reports: Vec<Report>, baseline: &str) -> Comparison {
        let mut servers: Vec<String> = Vec::new();
        if reports.iter().any(|r| r.label == baseline) {
            servers.push(baseline.to_owned());
        }
        for report in &reports {
            if !servers.contains(&report.label) {
                servers.push(report.label.clone());
            }
        }
        let mut gathered: Vec<Gathered> = Vec::new();
        for report in reports {
            let server = servers.iter().position(|s| *s == report.label).unwrap_or_default();
            let at = match gathered.iter().position(|g| g.name == report.case) {
                Some(i) => i,
                None => {
                    gathered.push(Gathered {
                        name: report.case.clone(),
                        description: report.description.clone(),
                        commands: Vec::new(),
                        rounds: vec![Vec::new(); servers.len()],
                    });
                    gathered.len() - 1
                }
            };
            gathered[at].commands.push(report.command.clone());
            gathered[at].rounds[server].push(report);
        }
        let cases = gathered
            .into_iter()
            .map(|g| Case {
                name: g.name,
                description: g.description,
                rounds: g.rounds.iter().map(|runs| runs.iter().map(headline).collect()).collect(),
                runs: g.rounds.into_iter().map(median).collect(),
                commands: g.commands,
            })
            .collect();
        Comparison { servers, cases }
    }

    /// Any one report, for the facts every run shares (machine, tool).
    pub fn any(&self) -> Option<&Report> {
        self.cases.iter().flat_map(|c| c.runs.iter().flatten()).next()
    }
}

/// The `report` subcommand.
///
/// # Errors
///
/// [`Error::Read`] or [`Error::Json`] for an input file, [`Error::Write`]
/// for an output file.
pub fn run(args: &ReportArgs) -> Result<()> {
    let reports = args.files.iter().map(|path| Report::read_json(path)).collect::<Result<Vec<_>>>()?;
    let comparison = Comparison::new(reports, &args.baseline);
    let table = markdown::render(&comparison);
    print!("{table}");
    if let Some(path) = &args.markdown {
        write(path, &table)?;
    }
    if let Some(path) = &args.svg {
        write(path, &svg::render(&comparison))?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|source| Error::Write { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_arranged_by_case_and_server_with_the_baseline_first() {
        let reports = vec![
            Report::example("echo", "other"),
            Report::example("echo", "switchboard"),
            Report::example("churn", "switchboard"),
        ];
        let comparison = Comparison::new(reports, "switchboard");
        assert_eq!(comparison.servers, ["switchboard", "other"]);
        let names: Vec<&str> = comparison.cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["echo", "churn"]);
        assert!(comparison.cases[0].runs.iter().all(Option::is_some));
        assert!(comparison.cases[1].runs[1].is_none());
    }

    fn rounds(case: &str, rates: &[f64]) -> Vec<Report> {
        rates
            .iter()
            .map(|&rate| {
                let mut run = Report::example(case, "switchboard");
                run.throughput.per_second = rate;
                run.latency.p99_us = rate;
                run
            })
            .collect()
    }

    #[test]
    fn a_server_is_shown_by_its_median_round_with_every_rounds_losses() {
        let mut runs = rounds("echo", &[900.0, 2000.0, 1500.0]);
        runs[1].messages.lost = 3;
        runs[0].endings.dropped = 1;
        let case = &Comparison::new(runs, "switchboard").cases[0];
        let shown = case.runs[0].as_ref().unwrap();
        assert_eq!(shown.throughput.per_second, 1500.0);
        assert_eq!((shown.messages.lost, shown.messages.sent, shown.endings.dropped), (3, 30_000, 1));
        assert_eq!(case.rounds[0], [900.0, 2000.0, 1500.0]);
        assert_eq!(case.commands.len(), 3);
    }

    #[test]
    fn of_two_rounds_the_worse_is_shown() {
        let case = &Comparison::new(rounds("echo", &[2000.0, 1000.0]), "switchboard").cases[0];
        assert_eq!(case.runs[0].as_ref().unwrap().throughput.per_second, 1000.0);
        let mut paced = rounds("fanout-rate100", &[2000.0, 1000.0]);
        paced.iter_mut().for_each(|r| r.paced = true);
        let case = &Comparison::new(paced, "switchboard").cases[0];
        assert_eq!(case.runs[0].as_ref().unwrap().latency.p99_us, 2000.0, "higher latency is worse");
    }
}
