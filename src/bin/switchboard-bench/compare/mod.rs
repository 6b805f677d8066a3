//! `report`: the JSON of several runs side by side, as a Markdown table with ratios and an SVG chart.
//!
//! Runs are grouped by case (the workload) and by label (the server). One
//! server is the baseline, and every figure of it is divided by the same
//! figure of each other server.

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

/// One workload and its run on each server.
#[derive(Debug)]
pub struct Case {
    /// Its name (`echo`, `fanout-max`).
    pub name: String,
    /// The workload in a sentence, from its first run.
    pub description: String,
    /// One entry per server of the comparison, in the same order.
    pub runs: Vec<Option<Report>>,
}

impl Comparison {
    /// Arranges `reports`; for a case run twice on one server, the later one counts.
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
        let mut cases: Vec<Case> = Vec::new();
        for report in reports {
            let server = servers.iter().position(|s| *s == report.label).unwrap_or_default();
            let case = match cases.iter().position(|c| c.name == report.case) {
                Some(i) => &mut cases[i],
                None => {
                    cases.push(Case {
                        name: report.case.clone(),
                        description: report.description.clone(),
                        runs: vec![None; servers.len()],
                    });
                    let last = cases.len() - 1;
                    &mut cases[last]
                }
            };
            case.runs[server] = Some(report);
        }
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

    #[test]
    fn a_later_run_of_the_same_case_replaces_the_earlier() {
        let mut again = Report::example("echo", "switchboard");
        again.throughput.per_second = 2000.0;
        let comparison = Comparison::new(vec![Report::example("echo", "switchboard"), again], "switchboard");
        let run = comparison.cases[0].runs[0].as_ref().unwrap();
        assert_eq!(run.throughput.per_second, 2000.0);
    }
}
