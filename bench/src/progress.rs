//! The progress line: once a second, on stderr, what the run is doing.

use std::time::{Duration, Instant};

use crate::meter::Reading;
use crate::run::Phase;

/// Prints rates since its previous line, at most once a second.
#[derive(Debug)]
pub struct Progress {
    title: String,
    sent: &'static str,
    received: &'static str,
    began: Instant,
    last_at: Instant,
    last: Reading,
}

impl Progress {
    /// A progress printer for `title` (scenario and server), naming the two
    /// message counts as the scenario means them (`published`, `delivered`).
    pub fn new(title: String, sent: &'static str, received: &'static str) -> Self {
        let now = Instant::now();
        Progress { title, sent, received, began: now, last_at: now, last: Reading::default() }
    }

    /// Prints a line if a second has passed since the last one.
    pub fn tick(&mut self, phase: Phase, reading: &Reading) {
        if self.last_at.elapsed() >= Duration::from_secs(1) {
            self.line(phase, reading);
        }
    }

    /// Prints a line now.
    pub fn line(&mut self, phase: Phase, reading: &Reading) {
        let now = Instant::now();
        let seconds = now.duration_since(self.last_at).as_secs_f64().max(1e-9);
        let sent = reading.sent.saturating_sub(self.last.sent);
        let received = reading.received.saturating_sub(self.last.received);
        let mean_ms = match received {
            0 => 0.0,
            n => reading.latency_ns.saturating_sub(self.last.latency_ns) as f64 / n as f64 / 1e6,
        };
        eprintln!(
            "[{:6.1}s] {} {:<7} {} {:>9.0}/s  {} {:>9.0}/s  mean {:8.3} ms  open {:>6}  failed {}",
            now.duration_since(self.began).as_secs_f64(),
            self.title,
            phase.name(),
            self.sent,
            sent as f64 / seconds,
            self.received,
            received as f64 / seconds,
            mean_ms,
            reading.open(),
            reading.failed,
        );
        self.last_at = now;
        self.last = *reading;
    }

    /// Measures the next line's rates from `reading`, now: a phase change
    /// starts a new interval.
    pub fn rebase(&mut self, reading: &Reading) {
        self.last_at = Instant::now();
        self.last = *reading;
    }

    /// A free-form line, with the same prefix.
    pub fn note(&self, text: &str) {
        eprintln!("[{:6.1}s] {} {text}", self.began.elapsed().as_secs_f64(), self.title);
    }
}
