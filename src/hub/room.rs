//! One room's membership: who is in it, and their outboxes.

use std::collections::HashMap;

use super::ConnectionId;
use crate::connection::{Outbox, Refused};
use crate::frame::Frame;

/// The members of a room, kept in a `Vec` so that a broadcast is a straight
/// walk over outboxes, with an index beside it so that joining and leaving
/// cost O(1) even in a room of ten thousand.
#[derive(Debug, Default)]
pub(crate) struct Room {
    members: Vec<(ConnectionId, Outbox)>,
    index: HashMap<ConnectionId, usize>,
    /// Frames were queued that the members' writers have not been woken for.
    dirty: bool,
}

impl Room {
    /// Adds a member; returns false if it was already in.
    pub(crate) fn insert(&mut self, id: ConnectionId, outbox: Outbox) -> bool {
        if self.index.contains_key(&id) {
            return false;
        }
        self.index.insert(id, self.members.len());
        self.members.push((id, outbox));
        true
    }

    /// Removes a member; returns false if it was not in.
    pub(crate) fn remove(&mut self, id: ConnectionId) -> bool {
        let Some(slot) = self.index.remove(&id) else {
            return false;
        };
        self.members.swap_remove(slot);
        if let Some((moved, _)) = self.members.get(slot) {
            self.index.insert(*moved, slot);
        }
        true
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// Hands `frame` to every member without waiting on any of them, and
    /// lists in `full` the members whose outbox had no room. The writers are
    /// not woken: [`ring`](Room::ring) does that. Returns true if and only
    /// if the room was clean before, so that the caller notes it once.
    pub(crate) fn deliver(
        &mut self,
        frame: &Frame,
        except: Option<ConnectionId>,
        full: &mut Vec<ConnectionId>,
    ) -> bool {
        let was_clean = !std::mem::replace(&mut self.dirty, true);
        for (id, outbox) in self.members.iter().filter(|(id, _)| Some(*id) != except) {
            match outbox.push(frame.clone()) {
                Ok(()) => {}
                Err(Refused::Full) => full.push(*id),
                // The writer has ended; the reader is about to unregister.
                Err(Refused::Closed) => {}
            }
        }
        was_clean
    }

    /// Wakes every member's writer for the frames delivered since the last
    /// time.
    pub(crate) fn ring(&mut self) {
        if std::mem::take(&mut self.dirty) {
            self.members.iter().for_each(|(_, outbox)| outbox.ring());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::outbox;

    #[test]
    fn leave_keeps_the_index_consistent() {
        let mut room = Room::default();
        let outboxes: Vec<_> = (0..4).map(|_| outbox(1000)).collect();
        for (i, (tx, _)) in outboxes.iter().enumerate() {
            assert!(room.insert(ConnectionId(i as u64), tx.clone()));
        }
        assert!(!room.insert(ConnectionId(0), outboxes[0].0.clone()));
        assert!(room.remove(ConnectionId(0)));
        assert!(!room.remove(ConnectionId(0)));
        let mut full = Vec::new();
        room.deliver(&Frame::text("x"), None, &mut full);
        assert!(full.is_empty());
        assert_eq!(outboxes[0].1.len(), 0);
        for (_, rx) in &outboxes[1..] {
            assert_eq!(rx.len(), 1);
        }
        for i in 1..4 {
            assert!(room.remove(ConnectionId(i)));
        }
        assert!(room.is_empty());
    }

    #[test]
    fn full_outboxes_are_reported_not_waited_on() {
        let mut room = Room::default();
        let (slow, _keep) = outbox(100);
        let (fast, fast_rx) = outbox(1000);
        room.insert(ConnectionId(1), slow);
        room.insert(ConnectionId(2), fast);
        let mut full = Vec::new();
        room.deliver(&Frame::text("a"), None, &mut full);
        room.deliver(&Frame::text("b"), None, &mut full);
        assert_eq!(full, vec![ConnectionId(1)]);
        assert_eq!(fast_rx.len(), 2);
    }
}
