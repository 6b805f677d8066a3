//! A full publish queue, told in the log at a bounded rate.
//!
//! When Redis takes messages more slowly than this node's rooms make them
//! (it stalls, or the way to it is slow) without the connection failing,
//! which the health lines would tell, the queue fills and room messages
//! are delivered on this node only. They are counted in
//! `backplane_not_relayed`; this says so in the log as well, at once and
//! then at most every [`REPORT_EVERY`], as refusals are, and the tail of a
//! burst within one period of its end.

use std::time::Instant;

use log::warn;

use crate::refusal_log::REPORT_EVERY;

/// Messages the full queue turned away and the log has not told yet.
#[derive(Debug, Default)]
pub(crate) struct Overflow {
    untold: u64,
    last_told: Option<Instant>,
}

impl Overflow {
    /// One more message not relayed, at `now`; returns how many the log
    /// told of, when it did.
    pub(crate) fn note(&mut self, now: Instant) -> Option<u64> {
        self.untold += 1;
        self.sweep(now)
    }

    /// Tells what the log has not told yet, if it is due: called after
    /// every batch and when the hub is idle, so that the last messages of a
    /// burst are told within a period of its end, not at the next one.
    pub(crate) fn sweep(&mut self, now: Instant) -> Option<u64> {
        if self.untold == 0 || self.last_told.is_some_and(|last| now.duration_since(last) < REPORT_EVERY) {
            return None;
        }
        let told = std::mem::take(&mut self.untold);
        self.last_told = Some(now);
        let s = if told == 1 { "" } else { "s" };
        warn!(
            "backplane: the publish queue is full, Redis taking messages more slowly than the rooms \
             make them: {told} room message{s} delivered on this node only (counted in \
             switchboard_backplane_not_relayed_total; told at most every {REPORT_EVERY:?})"
        );
        Some(told)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_told_at_once_and_the_rest_at_most_every_report() {
        let mut overflow = Overflow::default();
        let start = Instant::now();
        assert_eq!(overflow.note(start), Some(1));
        for _ in 0..3 {
            assert_eq!(overflow.note(start + REPORT_EVERY / 2), None);
        }
        assert_eq!(overflow.note(start + REPORT_EVERY), Some(4));
    }

    #[test]
    fn the_tail_of_a_burst_is_told_once_due_with_no_more_overflow() {
        let mut overflow = Overflow::default();
        let start = Instant::now();
        assert_eq!(overflow.sweep(start), None, "nothing to tell");
        assert_eq!(overflow.note(start), Some(1));
        assert_eq!(overflow.note(start + REPORT_EVERY / 2), None);
        assert_eq!(overflow.sweep(start + REPORT_EVERY / 2), None, "not due yet");
        assert_eq!(overflow.sweep(start + REPORT_EVERY), Some(1));
        assert_eq!(overflow.sweep(start + REPORT_EVERY * 3), None, "told already");
    }
}
