//! One room's membership: who is in it, and their outboxes.

use std::collections::HashMap;
use std::sync::Arc;

use super::ConnectionId;
use crate::connection::{Outbox, Queued, Refused};

/// The members of a room, kept in a `Vec` so that a broadcast is a straight
/// walk over outboxes, with an index beside it so that joining and leaving
/// cost O(1) even in a room of ten thousand.
#[derive(Debug, Default)]
pub(crate) struct Room {
    members: Vec<(ConnectionId, Arc<Outbox>)>,
    index: HashMap<ConnectionId, usize>,
    /// Frames were queued that the members' outboxes have not sent yet.
    dirty: bool,
}

impl Room {
    /// Adds a member; returns false if it was already in.
    pub(crate) fn insert(&mut self, id: ConnectionId, outbox: Arc<Outbox>) -> bool {
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

    /// Appends a frame or run to every member's outbox without sending it, and
    /// lists in `full` the members whose outbox took nothing more: each has
    /// closed itself as a slow consumer, or is closing. [`flush`](Room::flush)
    /// sends. Returns true
    /// if and only if the room was clean before, so that the caller notes it
    /// once.
    pub(crate) fn deliver(
        &mut self,
        queued: &Queued,
        except: Option<ConnectionId>,
        full: &mut Vec<ConnectionId>,
    ) -> bool {
        let was_clean = !std::mem::replace(&mut self.dirty, true);
        for (id, outbox) in self.members.iter().filter(|(id, _)| Some(*id) != except) {
            // A member that is closed as a slow consumer, or closing, is
            // forgotten now rather than asked again until it unregisters.
            if let Err(Refused::Full | Refused::Closed) = outbox.push(queued.clone()) {
                full.push(*id);
            }
        }
        was_clean
    }

    /// Appends a frame or run to every member's outbox and sends each at
    /// once, in one pass: for the hub's last delivery in a batch, a walk
    /// over the outboxes that [`deliver`](Room::deliver) and
    /// [`flush`](Room::flush) would make twice, each time finding them out
    /// of the cache. Frames delivered earlier in the batch go first; members
    /// whose outbox took nothing more are listed in `full`.
    pub(crate) fn send(
        &mut self,
        queued: &Queued,
        except: Option<ConnectionId>,
        full: &mut Vec<ConnectionId>,
    ) {
        let was_dirty = std::mem::take(&mut self.dirty);
        for (id, outbox) in &self.members {
            if Some(*id) == except {
                if was_dirty {
                    outbox.flush();
                }
                continue;
            }
            if let Err(Refused::Full | Refused::Closed) = outbox.send(queued.clone()) {
                full.push(*id);
            }
        }
    }

    /// Sends every member the frames delivered since the last time, one
    /// system call each.
    pub(crate) fn flush(&mut self) {
        if std::mem::take(&mut self.dirty) {
            self.members.iter().for_each(|(_, outbox)| outbox.flush());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::recorded;
    use crate::frame::Frame;
    use crate::metrics::Metrics;

    #[test]
    fn leave_keeps_the_index_consistent() {
        let mut room = Room::default();
        let metrics = Arc::new(Metrics::default());
        let lines: Vec<_> = (0..4).map(|i| recorded(i, b"", 1000, metrics.clone())).collect();
        for (i, line) in lines.iter().enumerate() {
            assert!(room.insert(ConnectionId(i as u64), line.outbox.clone()));
        }
        assert!(!room.insert(ConnectionId(0), lines[0].outbox.clone()));
        assert!(room.remove(ConnectionId(0)));
        assert!(!room.remove(ConnectionId(0)));
        let mut full = Vec::new();
        room.deliver(&Frame::text("x").into(), None, &mut full);
        room.flush();
        assert!(full.is_empty());
        assert!(lines[0].sink.bytes().is_empty());
        for line in &lines[1..] {
            assert_eq!(line.sink.bytes(), Frame::text("x").as_bytes());
        }
        for i in 1..4 {
            assert!(room.remove(ConnectionId(i)));
        }
        assert!(room.is_empty());
    }

    #[test]
    fn send_goes_out_in_one_pass_behind_what_was_delivered_before() {
        let mut room = Room::default();
        let metrics = Arc::new(Metrics::default());
        let lines: Vec<_> = (0..3).map(|i| recorded(i, b"", 1000, metrics.clone())).collect();
        for (i, line) in lines.iter().enumerate() {
            room.insert(ConnectionId(i as u64), line.outbox.clone());
        }
        let (a, b) = (Frame::text("a"), Frame::text("b"));
        let mut full = Vec::new();
        room.deliver(&a.clone().into(), None, &mut full);
        // The sender of b is left out of b, but not out of a.
        room.send(&b.clone().into(), Some(ConnectionId(2)), &mut full);
        assert!(full.is_empty());
        for line in &lines[..2] {
            assert_eq!(line.sink.bytes(), [a.as_bytes(), b.as_bytes()].concat());
            assert_eq!(line.sink.calls(), 1, "one system call for both");
        }
        assert_eq!(lines[2].sink.bytes(), a.as_bytes());
        // Nothing is left for a flush to send.
        room.flush();
        assert!(lines.iter().all(|line| line.sink.calls() == 1));
    }

    #[test]
    fn a_full_outbox_is_reported_by_send() {
        let mut room = Room::default();
        let metrics = Arc::new(Metrics::default());
        let slow = recorded(1, b"", 100, metrics);
        slow.sink.set_room(Some(0));
        room.insert(ConnectionId(1), slow.outbox.clone());
        let mut full = Vec::new();
        room.send(&Frame::text("a").into(), None, &mut full);
        assert!(full.is_empty(), "queued behind a full socket, within the budget");
        room.send(&Frame::binary(vec![0; 200]).into(), None, &mut full);
        assert_eq!(full, vec![ConnectionId(1)]);
    }

    #[test]
    fn full_outboxes_are_reported_not_waited_on() {
        let mut room = Room::default();
        let metrics = Arc::new(Metrics::default());
        let slow = recorded(1, b"", 100, metrics.clone());
        let fast = recorded(2, b"", 1000, metrics);
        // The slow client's socket takes nothing.
        slow.sink.set_room(Some(0));
        room.insert(ConnectionId(1), slow.outbox.clone());
        room.insert(ConnectionId(2), fast.outbox.clone());
        let mut full = Vec::new();
        room.deliver(&Frame::text("a").into(), None, &mut full);
        room.deliver(&Frame::text("b").into(), None, &mut full);
        assert_eq!(full, vec![ConnectionId(1)]);
        room.flush();
        assert_eq!(fast.sink.calls(), 1);
    }
}
