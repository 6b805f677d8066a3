//! Live counters of a run: what the once-a-second progress line shows and what the phases wait on.
//!
//! Threads count into a private [`Tally`] and add it to the shared [`Meter`]
//! once per round of their loop, so the hot path (one message) touches no
//! shared cache line.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts since the last time they were added to the meter.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Messages sent (for fanout: published).
    pub sent: u64,
    /// Messages received (for fanout: delivered to a subscriber).
    pub received: u64,
    /// The sum of the latencies of the received messages, for the mean.
    pub latency_ns: u64,
    /// Connections whose upgrade completed.
    pub opened: u64,
    /// Opened connections that have ended, for whatever reason.
    pub closed: u64,
    /// Connections that failed to open or ended in a way the tool did not ask for.
    pub failed: u64,
}

/// The shared totals. Every field only grows.
#[derive(Debug, Default)]
pub struct Meter {
    sent: AtomicU64,
    received: AtomicU64,
    latency_ns: AtomicU64,
    opened: AtomicU64,
    closed: AtomicU64,
    failed: AtomicU64,
}

impl Meter {
    /// Adds `tally` to the totals and zeroes it.
    pub fn add(&self, tally: &mut Tally) {
        let add = |total: &AtomicU64, n: u64| {
            if n > 0 {
                total.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&self.sent, tally.sent);
        add(&self.received, tally.received);
        add(&self.latency_ns, tally.latency_ns);
        add(&self.opened, tally.opened);
        add(&self.closed, tally.closed);
        add(&self.failed, tally.failed);
        *tally = Tally::default();
    }

    /// The totals now.
    pub fn read(&self) -> Reading {
        let get = |total: &AtomicU64| total.load(Ordering::Relaxed);
        Reading {
            sent: get(&self.sent),
            received: get(&self.received),
            latency_ns: get(&self.latency_ns),
            opened: get(&self.opened),
            closed: get(&self.closed),
            failed: get(&self.failed),
        }
    }
}

/// A copy of the meter's totals at one moment: the same counts, since the
/// run began.
pub type Reading = Tally;

impl Tally {
    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.opened.saturating_sub(self.closed)
    }
}
