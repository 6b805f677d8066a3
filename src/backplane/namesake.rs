//! Another node with this node's id, noticed by its messages.
//!
//! A node drops the messages that come back from Redis with its own id: its
//! clients had them from the hub already. Two nodes given the same
//! `--node-id` therefore drop each other's, and their clients never see
//! them, with nothing in the log. So the publisher counts what it is about
//! to publish, and the subscriber what comes back with this node's id: a
//! node alone can never get back more than it sent (Redis delivers a
//! message once, to a subscriber that is there, and replays nothing), so
//! more means another node is using the id.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use log::error;

/// The counts; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Namesake {
    /// Messages handed to Redis with this node's id, counted before they
    /// are sent: a message can come back before Redis has answered the
    /// pipeline that carried it.
    sent: AtomicU64,
    /// Messages with this node's id that came back.
    returned: AtomicU64,
    /// The log has said so.
    told: AtomicBool,
}

impl Namesake {
    /// The publisher is about to send `count` messages.
    pub(crate) fn sending(&self, count: usize) {
        self.sent.fetch_add(count as u64, Ordering::SeqCst);
    }

    /// A message with this node's id, `node_id`, came back; logs, once, if
    /// that is more than were sent.
    pub(crate) fn returned(&self, node_id: &[u8]) {
        let returned = self.returned.fetch_add(1, Ordering::SeqCst) + 1;
        if returned > self.sent.load(Ordering::SeqCst) && !self.told.swap(true, Ordering::Relaxed) {
            error!(
                "backplane: another node publishes with this node's id {:?}: each drops the other's \
                 room messages as its own, so their clients do not see them; give every node an id \
                 of its own (--node-id)",
                String::from_utf8_lossy(node_id)
            );
        }
    }

    /// Whether another node with this id has been noticed.
    #[cfg(test)]
    fn noticed(&self) -> bool {
        self.told.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_alone_gets_back_at_most_what_it_sent() {
        let namesake = Namesake::default();
        namesake.sending(3);
        for _ in 0..3 {
            namesake.returned(b"a");
        }
        assert!(!namesake.noticed());
        namesake.returned(b"a");
        assert!(namesake.noticed(), "a fourth came back, which no one here sent");
    }
}
