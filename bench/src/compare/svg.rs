//! The comparison as an SVG chart, written by hand: per case, each server's headline figure and latency percentiles.
//!
//! A chart of a few bars needs no plotting library: SVG is text, and the
//! layout is a handful of fixed columns. Latency uses a logarithmic axis,
//! because p50 and max of one run can be three orders of magnitude apart.

use std::fmt::Write as _;

use crate::compare::figures::{Better, FIGURES, Figure};
use crate::compare::{Case, Comparison};
use crate::numbers::millis;
use crate::report::Report;

const WIDTH: f64 = 1000.0;
/// Right edge of the server names.
const NAMES_RIGHT: f64 = 170.0;
const HEAD_X: f64 = 180.0;
const HEAD_WIDTH: f64 = 240.0;
const LATENCY_X: f64 = 560.0;
const LATENCY_WIDTH: f64 = 410.0;
const ROW: f64 = 24.0;
const BAR: f64 = 16.0;
/// One colour per server, in the comparison's order (the baseline first).
const COLOURS: [&str; 6] = ["#2b6cb0", "#dd6b20", "#2f855a", "#c53030", "#6b46c1", "#718096"];

/// The headline figure of a case, one of the table's: memory for idle,
/// throughput otherwise.
fn headline(case: &Case) -> &'static Figure {
    let idle = case.runs.iter().flatten().any(|r| r.scenario == "idle");
    let name = if idle { "server RSS per connection (KiB)" } else { "throughput (per second)" };
    FIGURES.iter().find(|figure| figure.name == name).expect("Bug: the headline figures are in FIGURES")
}

/// The whole comparison as an SVG document.
pub fn render(comparison: &Comparison) -> String {
    let mut body = String::new();
    let mut y = 30.0;
    let title = match comparison.any() {
        Some(r) => format!(
            "WebSocket benchmark: {} ({} cores), Linux {}",
            r.machine.cpu, r.machine.cores, r.machine.kernel
        ),
        None => "WebSocket benchmark".to_owned(),
    };
    text(&mut body, 10.0, y, "start", "font-size=\"16\" font-weight=\"bold\"", &title);
    y += 14.0;
    for (i, server) in comparison.servers.iter().enumerate() {
        let x = 10.0 + i as f64 * 200.0;
        rect(&mut body, x, y + 6.0, 12.0, 12.0, COLOURS[i % COLOURS.len()], 1.0);
        text(&mut body, x + 18.0, y + 16.0, "start", "", server);
    }
    text(
        &mut body,
        10.0,
        y + 36.0,
        "start",
        "fill=\"#4a5568\"",
        "Latency bars: solid to p50, lighter to p99, lightest to p99.9; the tick marks the maximum.",
    );
    y += 60.0;
    for case in &comparison.cases {
        y = render_case(&mut body, comparison, case, y);
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n",
        height = y + 10.0
    )
}

/// One case's block, from `y` down; returns where the next block starts.
fn render_case(body: &mut String, comparison: &Comparison, case: &Case, mut y: f64) -> f64 {
    let Some(first) = case.runs.iter().flatten().next() else { return y };
    text(body, 10.0, y, "start", "font-size=\"14\" font-weight=\"bold\"", &case.name);
    text(body, 10.0, y + 16.0, "start", "fill=\"#4a5568\"", &case.description);
    y += 38.0;
    let head = headline(case);
    let direction = match head.better {
        Better::Higher => "higher is better",
        Better::Lower => "lower is better",
        Better::Neither => "",
    };
    text(body, HEAD_X, y, "start", "font-weight=\"bold\"", &format!("{}, {direction}", head.name));
    text(
        body,
        LATENCY_X,
        y,
        "start",
        "font-weight=\"bold\"",
        &format!("{} latency, ms (log scale)", first.latency_of),
    );
    y += 10.0;

    let runs: Vec<Option<&Report>> = case.runs.iter().map(Option::as_ref).collect();
    let head_max = runs.iter().flatten().filter_map(|r| (head.value)(r)).fold(0.0, f64::max);
    let (low, high) = latency_range(&runs);
    let scale = |us: f64| {
        let span = high.log10() - low.log10();
        LATENCY_X + LATENCY_WIDTH * ((us.max(low).log10() - low.log10()) / span).clamp(0.0, 1.0)
    };

    for (i, (server, run)) in comparison.servers.iter().zip(&runs).enumerate() {
        let top = y + i as f64 * ROW;
        let colour = COLOURS[i % COLOURS.len()];
        text(body, NAMES_RIGHT, top + 12.0, "end", "", server);
        let Some(run) = run else {
            text(body, HEAD_X, top + 12.0, "start", "fill=\"#a0aec0\"", "not run");
            continue;
        };
        let died = run.details.contains_key("server_gone");
        match (head.value)(run) {
            Some(value) => {
                let width = if head_max > 0.0 { HEAD_WIDTH * value / head_max } else { 0.0 };
                rect(body, HEAD_X, top, width, BAR, colour, 1.0);
                let label =
                    if died { format!("{} (then died)", (head.show)(value)) } else { (head.show)(value) };
                text(body, HEAD_X + width + 4.0, top + 12.0, "start", "", &label);
            }
            None if died => text(body, HEAD_X, top + 12.0, "start", "fill=\"#c53030\"", "server died"),
            None => text(body, HEAD_X, top + 12.0, "start", "fill=\"#a0aec0\"", "–"),
        }
        let l = &run.latency;
        if l.count > 0 {
            let (p50, p99, p999, max) = (scale(l.p50_us), scale(l.p99_us), scale(l.p999_us), scale(l.max_us));
            rect(body, LATENCY_X, top, p50 - LATENCY_X, BAR, colour, 1.0);
            rect(body, p50, top, p99 - p50, BAR, colour, 0.6);
            rect(body, p99, top, p999 - p99, BAR, colour, 0.3);
            let _ = writeln!(
                body,
                "<line x1=\"{max:.1}\" y1=\"{:.1}\" x2=\"{max:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" stroke-width=\"2\"/>",
                top - 2.0,
                top + BAR + 2.0
            );
        }
    }
    y += comparison.servers.len() as f64 * ROW;

    // Axes: the headline's from zero, latency's in decades.
    axis_line(body, HEAD_X, HEAD_X + HEAD_WIDTH, y);
    text(body, HEAD_X, y + 14.0, "middle", "fill=\"#4a5568\"", "0");
    if head_max > 0.0 {
        text(body, HEAD_X + HEAD_WIDTH, y + 14.0, "middle", "fill=\"#4a5568\"", &(head.show)(head_max));
    }
    axis_line(body, LATENCY_X, LATENCY_X + LATENCY_WIDTH, y);
    let mut tick = low;
    while tick <= high * 1.0001 {
        let x = scale(tick);
        let _ = writeln!(
            body,
            "<line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#a0aec0\"/>",
            y + 4.0
        );
        text(body, x, y + 16.0, "middle", "fill=\"#4a5568\"", &millis(tick));
        tick *= 10.0;
    }
    y + 44.0
}

/// Decades (in µs) that hold every run's p50 and max.
fn latency_range(runs: &[Option<&Report>]) -> (f64, f64) {
    let shown = runs.iter().flatten().filter(|r| r.latency.count > 0);
    let low = shown.clone().map(|r| r.latency.p50_us).fold(f64::INFINITY, f64::min);
    let high = shown.map(|r| r.latency.max_us).fold(0.0, f64::max);
    if !low.is_finite() || high <= 0.0 {
        return (10.0, 1000.0);
    }
    let low = 10f64.powf(low.max(1.0).log10().floor());
    let high = 10f64.powf(high.max(1.0).log10().ceil()).max(low * 10.0);
    (low, high)
}

fn axis_line(body: &mut String, from: f64, to: f64, y: f64) {
    let _ = writeln!(
        body,
        "<line x1=\"{from:.1}\" y1=\"{y:.1}\" x2=\"{to:.1}\" y2=\"{y:.1}\" stroke=\"#a0aec0\"/>"
    );
}

fn rect(body: &mut String, x: f64, y: f64, width: f64, height: f64, fill: &str, opacity: f64) {
    let _ = writeln!(
        body,
        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"{fill}\" fill-opacity=\"{opacity}\"/>",
        width.max(0.0)
    );
}

fn text(body: &mut String, x: f64, y: f64, anchor: &str, attributes: &str, content: &str) {
    let _ = writeln!(
        body,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\" {attributes}>{}</text>",
        escape(content)
    );
}

/// Text made safe for XML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }

    #[test]
    fn the_latency_axis_covers_whole_decades() {
        let mut report = Report::example("echo", "switchboard");
        report.latency.p50_us = 412.0;
        report.latency.max_us = 12_345.0;
        assert_eq!(latency_range(&[Some(&report)]), (100.0, 100_000.0));
        assert_eq!(latency_range(&[None]), (10.0, 1000.0));
    }

    #[test]
    fn every_server_gets_a_row_in_every_case() {
        let reports = vec![Report::example("echo", "switchboard"), Report::example("echo", "other")];
        let svg = render(&Comparison::new(reports, "switchboard"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches(">other</text>").count(), 2, "legend and row");
    }
}
