//! Another node with this node's id, noticed by its greeting.
//!
//! A node drops the messages that come back from Redis with its own id: its
//! clients had them from the hub already. Two nodes given the same
//! `--node-id` therefore drop each other's, and their clients never see
//! them. So each time its publisher connects, a node greets the others on
//! the channel that is the prefix alone (no room's: a room's name is never
//! empty) with its id and a number drawn at its start, and its subscriber
//! listens there: a greeting with this node's id and another number is
//! another node using the id, logged as an error. The node already running
//! hears the newcomer; the newcomer hears it when it next reconnects.
//!
//! Both are best-effort: a Redis user allowed the rooms' channels but not
//! that one still relays rooms, without this check.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use log::error;

/// What a greeting starts with: `SB` as an envelope, then its kind.
const GREETING: &[u8; 3] = b"SBn";

/// This node's id and its number; see the module docs.
#[derive(Debug)]
pub(crate) struct Namesake {
    node_id: Arc<[u8]>,
    instance: u64,
    /// The log has said so.
    told: AtomicBool,
}

impl Namesake {
    pub(crate) fn new(node_id: Arc<[u8]>) -> Self {
        // Keyed afresh by std for each RandomState: two processes started
        // together draw different numbers.
        let instance = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        Namesake { node_id, instance, told: AtomicBool::new(false) }
    }

    /// The greeting this node publishes.
    pub(crate) fn greeting(&self) -> Vec<u8> {
        [&GREETING[..], &self.instance.to_be_bytes(), &self.node_id].concat()
    }

    /// A greeting heard: logs, once, if another node has this node's id.
    /// What is not a greeting is ignored.
    pub(crate) fn heard(&self, payload: &[u8]) {
        let Some(rest) = payload.strip_prefix(GREETING) else { return };
        let Some((instance, node_id)) = rest.split_first_chunk::<8>() else { return };
        if node_id == &*self.node_id
            && u64::from_be_bytes(*instance) != self.instance
            && !self.told.swap(true, Ordering::Relaxed)
        {
            error!(
                "backplane: another node uses this node's id {:?}: each drops the other's room \
                 messages as its own, so their clients do not see them; give every node an id of \
                 its own (--node-id)",
                String::from_utf8_lossy(node_id)
            );
        }
    }

    /// Whether another node with this id has been heard.
    #[cfg(test)]
    fn noticed(&self) -> bool {
        self.told.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_node_with_this_id_is_a_namesake() {
        let node = Namesake::new(b"a".as_slice().into());
        node.heard(&node.greeting());
        assert!(!node.noticed(), "its own greeting");
        node.heard(&Namesake::new(b"b".as_slice().into()).greeting());
        node.heard(b"SBn");
        node.heard(b"not a greeting at all, with an a");
        assert!(!node.noticed());
        node.heard(&Namesake::new(b"a".as_slice().into()).greeting());
        assert!(node.noticed(), "another instance with its id");
    }
}
