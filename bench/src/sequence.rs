//! Sequence tracking: which numbered messages of one stream arrived, twice, late, or not at all.
//!
//! A stream's messages are numbered from 0. The tracker keeps the next number
//! it expects and the set of numbers it skipped over; in the normal case (no
//! gap) that set is empty, so the memory cost is constant however long the
//! run. An arrival below the expected number fills a gap (it came out of
//! order) or, if there is no gap for it, is a duplicate.

use std::collections::BTreeSet;
use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

/// How one arrival was classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First arrival of this number, and nothing later arrived before it.
    InOrder,
    /// First arrival of this number, after a later number had arrived.
    Late,
    /// This number had already arrived.
    Duplicate,
    /// The number was never sent: the message is damaged, and ignored.
    Implausible,
}

/// Arrivals of one numbered stream.
#[derive(Debug, Default)]
pub struct SequenceTracker {
    /// One more than the highest number seen.
    next: u64,
    /// Numbers below `next` that have not arrived (yet).
    missing: BTreeSet<u64>,
    /// Distinct numbers that arrived.
    received: u64,
    duplicated: u64,
    out_of_order: u64,
    corrupt: u64,
}

impl SequenceTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        SequenceTracker::default()
    }

    /// Records that message `seq` arrived, when `sent` messages (numbered
    /// `0..sent`) have been sent, and says how it arrived. A number that was
    /// never sent cannot hide a loss, nor open a gap of a billion numbers.
    pub fn record(&mut self, seq: u64, sent: u64) -> Arrival {
        if seq >= sent {
            self.corrupt += 1;
            Arrival::Implausible
        } else if seq >= self.next {
            self.missing.extend(self.next..seq);
            self.next = seq + 1;
            self.received += 1;
            Arrival::InOrder
        } else if self.missing.remove(&seq) {
            self.received += 1;
            self.out_of_order += 1;
            Arrival::Late
        } else {
            self.duplicated += 1;
            Arrival::Duplicate
        }
    }

    /// Counts a message that could not be read at all.
    pub fn record_corrupt(&mut self) {
        self.corrupt += 1;
    }

    /// One more than the highest number seen: how far along the stream is.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The totals, given that the sender sent `sent` messages (numbered
    /// `0..sent`): every one of those that never arrived is lost.
    pub fn counts(&self, sent: u64) -> SequenceCounts {
        SequenceCounts {
            sent,
            received: self.received,
            lost: sent.saturating_sub(self.received),
            duplicated: self.duplicated,
            out_of_order: self.out_of_order,
            corrupt: self.corrupt,
        }
    }
}

/// Totals over one or many streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceCounts {
    /// Messages that should have arrived (for fanout: published × subscribers).
    pub sent: u64,
    /// Distinct messages that arrived.
    pub received: u64,
    /// Sent but not received by the end of the drain.
    pub lost: u64,
    /// Arrivals of a message that had already arrived.
    pub duplicated: u64,
    /// Messages that arrived after a later one of the same stream.
    pub out_of_order: u64,
    /// Messages that were not the tool's, or whose number was damaged.
    pub corrupt: u64,
}

impl AddAssign for SequenceCounts {
    fn add_assign(&mut self, other: SequenceCounts) {
        self.sent += other.sent;
        self.received += other.received;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.out_of_order += other.out_of_order;
        self.corrupt += other.corrupt;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every number below this was sent, for the tests that are not about that.
    const SENT: u64 = 100;

    fn feed(seqs: &[u64]) -> SequenceTracker {
        let mut tracker = SequenceTracker::new();
        for &seq in seqs {
            tracker.record(seq, SENT);
        }
        tracker
    }

    #[test]
    fn a_clean_stream_has_nothing_to_report() {
        let counts = feed(&[0, 1, 2, 3]).counts(4);
        assert_eq!(counts, SequenceCounts { sent: 4, received: 4, ..SequenceCounts::default() });
    }

    #[test]
    fn the_tail_that_never_came_is_lost() {
        let counts = feed(&[0, 1]).counts(5);
        assert_eq!((counts.received, counts.lost), (2, 3));
    }

    #[test]
    fn a_gap_that_is_never_filled_is_lost() {
        let counts = feed(&[0, 3, 4]).counts(5);
        assert_eq!((counts.received, counts.lost, counts.out_of_order), (3, 2, 0));
    }

    #[test]
    fn a_gap_filled_later_is_out_of_order_not_lost() {
        let mut tracker = SequenceTracker::new();
        assert_eq!(tracker.record(0, SENT), Arrival::InOrder);
        assert_eq!(tracker.record(2, SENT), Arrival::InOrder);
        assert_eq!(tracker.record(1, SENT), Arrival::Late);
        let counts = tracker.counts(3);
        assert_eq!((counts.received, counts.lost, counts.out_of_order, counts.duplicated), (3, 0, 1, 0));
    }

    #[test]
    fn repeats_are_duplicates_whether_in_or_out_of_order() {
        let mut tracker = SequenceTracker::new();
        tracker.record(0, SENT);
        tracker.record(2, SENT);
        assert_eq!(tracker.record(2, SENT), Arrival::Duplicate);
        assert_eq!(tracker.record(0, SENT), Arrival::Duplicate);
        tracker.record(1, SENT);
        assert_eq!(tracker.record(1, SENT), Arrival::Duplicate);
        let counts = tracker.counts(3);
        assert_eq!((counts.received, counts.duplicated, counts.out_of_order, counts.lost), (3, 3, 1, 0));
    }

    #[test]
    fn a_number_never_sent_is_corrupt_and_hides_no_loss() {
        let mut tracker = SequenceTracker::new();
        tracker.record(0, 2);
        assert_eq!(tracker.record(2, 2), Arrival::Implausible);
        assert_eq!(tracker.record(u64::MAX, 2), Arrival::Implausible);
        assert_eq!(tracker.next(), 1);
        tracker.record_corrupt();
        let counts = tracker.counts(2);
        assert_eq!((counts.received, counts.lost, counts.corrupt), (1, 1, 3));
    }

    #[test]
    fn counts_add_up_across_streams() {
        let mut total = feed(&[0, 1]).counts(2);
        total += feed(&[1, 1]).counts(2);
        assert_eq!(
            total,
            SequenceCounts { sent: 4, received: 3, lost: 1, duplicated: 1, ..Default::default() }
        );
    }
}
