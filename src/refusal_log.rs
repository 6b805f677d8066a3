//! Refusals counted and summed up in the log at a bounded rate.
//!
//! A flood of refused requests would otherwise write one log line each, and
//! the log, its disk or whoever reads it would go under with the server
//! still standing. So the first refusal is logged at once, and those that
//! follow are counted by status and summed up in one line at most every
//! [`REPORT_EVERY`]; the detail of each stays at `debug`. Connections
//! closed for a fault (a protocol error, a limit) are summed up alike: a
//! client can make those as fast as it can connect.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use log::Level;

/// How often refusals are summed up in the log.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(10);

/// The refusals of one kind not yet logged.
///
/// Shared by every thread that refuses: each takes the lock only to count
/// and, when a summary is due, to take the counts; the line is written once
/// the lock is let go.
#[derive(Debug)]
pub(crate) struct RefusalLog {
    level: Level,
    /// The log target: the module that refuses, so that `RUST_LOG` filters
    /// the summaries as it did each refusal.
    target: &'static str,
    /// What was done: `refused`, `shed`, `closed`.
    verb: &'static str,
    /// What is refused, as one: `connection`, `upgrade`.
    what: &'static str,
    /// Where, to end the phrase: ` at the door`, or nothing.
    place: &'static str,
    tally: Mutex<Tally>,
}

impl RefusalLog {
    /// A log of refusals of `what` (one, as in `upgrade`) at `place`,
    /// summed up at `level` under the log target `target` (the caller's
    /// `module_path!()`).
    pub(crate) fn new(level: Level, target: &'static str, what: &'static str, place: &'static str) -> Self {
        RefusalLog::of("refused", level, target, what, place)
    }

    /// As [`new`](RefusalLog::new), for what was `verb` (`shed`, `closed`)
    /// rather than refused.
    pub(crate) fn of(
        verb: &'static str,
        level: Level,
        target: &'static str,
        what: &'static str,
        place: &'static str,
    ) -> Self {
        RefusalLog { level, target, verb, what, place, tally: Mutex::default() }
    }

    /// Counts one refusal answered `status`, and logs the count if a
    /// summary is due: at once for the first refusal.
    pub(crate) fn note(&self, status: u16) {
        let due = self.tally().note(status, Instant::now());
        self.write(due);
    }

    /// As [`note`](RefusalLog::note), with the refusal's own line: logged
    /// at the log's level in place of a summary that would count it alone,
    /// at `debug` otherwise.
    pub(crate) fn note_with(&self, status: u16, detail: fmt::Arguments<'_>) {
        let due = self.tally().note(status, Instant::now());
        match due {
            Some(summary) if summary.total == 1 => log::log!(target: self.target, self.level, "{detail}"),
            due => {
                log::debug!(target: self.target, "{detail}");
                self.write(due);
            }
        }
    }

    /// Logs the refusals counted so far, if a summary is due.
    pub(crate) fn sweep(&self) {
        let due = self.tally().due(Instant::now());
        self.write(due);
    }

    /// Logs what is left to log, as the server stops.
    pub(crate) fn finish(&self) {
        let rest = self.tally().take(Instant::now());
        self.write(rest);
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        // The counts hold no invariant a panic could break.
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, summary: Option<Summary>) {
        if let Some(summary) = summary {
            let s = if summary.total == 1 { "" } else { "s" };
            let (verb, total, what, place) = (self.verb, summary.total, self.what, self.place);
            log::log!(target: self.target, self.level, "{verb} {total} {what}{s}{place}{summary}");
        }
    }
}

/// Refusals counted since the last summary.
#[derive(Debug, Default)]
struct Tally {
    by_status: BTreeMap<u16, u64>,
    last_report: Option<Instant>,
}

impl Tally {
    fn note(&mut self, status: u16, now: Instant) -> Option<Summary> {
        *self.by_status.entry(status).or_default() += 1;
        self.due(now)
    }

    fn due(&mut self, now: Instant) -> Option<Summary> {
        if self.last_report.is_none_or(|last| now - last >= REPORT_EVERY) { self.take(now) } else { None }
    }

    fn take(&mut self, now: Instant) -> Option<Summary> {
        if self.by_status.is_empty() {
            return None;
        }
        let by_status = std::mem::take(&mut self.by_status);
        let over = self.last_report.map(|last| now - last);
        self.last_report = Some(now);
        Some(Summary { total: by_status.values().sum(), by_status, over })
    }
}

/// One summary line's figures: how many, by status, over how long.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    total: u64,
    by_status: BTreeMap<u16, u64>,
    /// The time since the last summary; `None` for the first.
    over: Option<Duration>,
}

/// Writes the end of the line: ` in the last 10s: 18 answered 404, 1 answered 403`.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(over) = self.over {
            write!(f, " in the last {over:.0?}")?;
        }
        for (i, (status, count)) in self.by_status.iter().enumerate() {
            let separator = if i == 0 { ": " } else { ", " };
            write!(f, "{separator}{count} answered {status}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn the_first_refusal_is_reported_at_once() {
        let mut tally = Tally::default();
        let summary = tally.note(404, Instant::now()).expect("the first is due");
        assert_eq!(summary.to_string(), ": 1 answered 404");
    }

    #[test]
    fn refusals_that_follow_are_summed_up_once_per_period_by_status() {
        let start = Instant::now();
        let mut tally = Tally::default();
        assert!(tally.note(403, start).is_some());
        for i in 0..100u64 {
            let status = if i % 4 == 0 { 403 } else { 404 };
            assert_eq!(tally.note(status, start + Duration::from_millis(i * 10)), None, "refusal {i}");
        }
        assert_eq!(tally.due(start + secs(9)), None, "not yet due");
        let summary = tally.due(start + secs(10)).expect("due after ten seconds");
        assert_eq!(summary.total, 100);
        assert_eq!(summary.to_string(), " in the last 10s: 25 answered 403, 75 answered 404");
        assert_eq!(tally.due(start + secs(30)), None, "nothing left to report");
    }

    #[test]
    fn a_refusal_after_a_quiet_period_is_reported_at_once() {
        let start = Instant::now();
        let mut tally = Tally::default();
        assert!(tally.note(429, start).is_some());
        let summary = tally.note(503, start + secs(60)).expect("due");
        assert_eq!(summary.to_string(), " in the last 60s: 1 answered 503");
    }

    #[test]
    fn finishing_reports_what_is_left_however_recent() {
        let start = Instant::now();
        let mut tally = Tally::default();
        assert!(tally.note(401, start).is_some());
        assert_eq!(tally.note(401, start + secs(1)), None);
        assert_eq!(tally.take(start + secs(2)).map(|summary| summary.total), Some(1));
        assert_eq!(tally.take(start + secs(3)), None);
    }

    #[test]
    fn a_log_shared_by_threads_counts_every_refusal() {
        let log = RefusalLog::new(Level::Info, module_path!(), "upgrade", "");
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| (0..250).for_each(|_| log.note(404)));
            }
        });
        let tally = log.tally();
        let reported = u64::from(tally.last_report.is_some());
        assert_eq!(tally.by_status.get(&404).copied().unwrap_or(0) + reported, 1000);
    }
}
