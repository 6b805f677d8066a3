//! One room's membership: who is in it, and their outboxes.

use std::collections::HashMap;
use std::sync::Arc;

use super::ConnectionId;
use crate::connection::{Outbox, Queued, Refused};

/// How [`Room::deliver`] hands a frame or run to the members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Appended to each outbox, for the end of the batch's flush.
    Append,
    /// Appended and sent in the same pass: for the batch's last delivery, a
    /// walk over the outboxes that appending and then flushing would make
    /// twice, each time finding them out of the cache.
    Send,
}

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

    /// Appends a frame or run to every member's outbox but `except`'s, and
    /// lists in `full` the members whose outbox took nothing more: each has
    /// closed itself as a slow consumer, or is closing. With
    /// [`Pass::Append`], [`flush`](Room::flush) sends; returns true if and
    /// only if the room was clean before, so that the caller notes it once.
    /// With [`Pass::Send`], each member is sent its share at once, behind
    /// what was appended before; returns false.
    pub(crate) fn deliver(
        &mut self,
        queued: &Queued,
        except: Option<ConnectionId>,
        full: &mut Vec<ConnectionId>,
        pass: Pass,
    ) -> bool {
        let was_dirty = std::mem::replace(&mut self.dirty, pass == Pass::Append);
        for (id, outbox) in &self.members {
            let taken = if Some(*id) == except {
                // It may hold frames appended earlier in the batch.
                if was_dirty && pass == Pass::Send {
                    outbox.flush();
                }
                continue;
            } else if pass == Pass::Send {
                outbox.send(queued.clone())
            } else {
                outbox.push(queued.clone())
            };
            // A member that is closed as a slow consumer, or closing, is
            // forgotten now rather than asked again until it unregisters.
            if let Err(Refused::Full | Refused::Closed) = taken {
                full.push(*id);
            }
        }
        pass == Pass::Append && !was_dirty
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
    use crate::connection::{Recorded, recorded};
    use crate::frame::Frame;
    use crate::metrics::Metrics;

    /// A room of `n` members numbered from 0, each with a recorded socket.
    fn room_of(n: u64) -> (Room, Vec<Recorded>) {
        let mut room = Room::default();
        let metrics = Arc::new(Metrics::default());
        let lines: Vec<_> = (0..n).map(|i| recorded(i, b"", 1000, metrics.clone())).collect();
        for (i, line) in lines.iter().enumerate() {
            assert!(room.insert(ConnectionId(i as u64), line.outbox.clone()));
        }
        (room, lines)
    }

    #[test]
    fn leave_keeps_the_index_consistent() {
        let (mut room, lines) = room_of(4);
        assert!(!room.insert(ConnectionId(0), lines[0].outbox.clone()));
        assert!(room.remove(ConnectionId(0)));
        assert!(!room.remove(ConnectionId(0)));
        let mut full = Vec::new();
        room.deliver(&Frame::text("x").into(), None, &mut full, Pass::Append);
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
        let (mut room, lines) = room_of(3);
        let (a, b) = (Frame::text("a"), Frame::text("b"));
        let mut full = Vec::new();
        room.deliver(&a.clone().into(), None, &mut full, Pass::Append);
        // The sender of b is left out of b, but not out of a.
        room.deliver(&b.clone().into(), Some(ConnectionId(2)), &mut full, Pass::Send);
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
        room.deliver(&Frame::text("a").into(), None, &mut full, Pass::Send);
        assert!(full.is_empty(), "queued behind a full socket, within the budget");
        room.deliver(&Frame::binary(vec![0; 200]).into(), None, &mut full, Pass::Send);
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
        room.deliver(&Frame::text("a").into(), None, &mut full, Pass::Append);
        room.deliver(&Frame::text("b").into(), None, &mut full, Pass::Append);
        assert_eq!(full, vec![ConnectionId(1)]);
        room.flush();
        assert_eq!(fast.sink.calls(), 1);
    }
}
