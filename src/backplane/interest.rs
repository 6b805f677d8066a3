//! Which rooms this node serves, told by the hub to the subscriber thread without waiting and without losing a change.
//!
//! The hub knows the moment a room gets its first local member and loses its
//! last. It tells the subscriber over a bounded channel with `try_send`, so
//! it never waits on a subscriber busy reconnecting to Redis. If the channel
//! is full, the change is not dropped: the hub marks itself stale, sends no
//! more single changes, and after each batch of commands tries to send the
//! whole set of its rooms instead, until that fits. Because the set travels
//! on the same channel as the changes, it lands after every change sent
//! before it and before every change sent after it: the subscriber simply
//! replaces what it wants with it, and ends up with exactly the hub's rooms.
//! The set is sent only after an overflow, so a busy node pays for the copy
//! rarely, not on every join.

use std::collections::HashSet;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

/// Changes waiting for the subscriber. It takes them every few tens of
/// milliseconds while connected, and while waiting to reconnect, so this
/// only fills during a connection attempt amid heavy churn.
const CAPACITY: usize = 1024;

/// One message from the hub to the subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Interest {
    /// The room has its first member here.
    Open(Arc<str>),
    /// The room's last member here has left.
    Close(Arc<str>),
    /// Exactly these rooms have members here, whatever was said before.
    Exactly(Vec<Arc<str>>),
}

/// The hub's end.
#[derive(Debug)]
pub(crate) struct Interests {
    changes: Sender<Interest>,
    /// A change could not be sent: the next message must be the whole set.
    stale: bool,
}

/// A new channel: the hub's end, and the subscriber's.
pub(crate) fn channel() -> (Interests, Receiver<Interest>) {
    let (changes, receiver) = bounded(CAPACITY);
    (Interests { changes, stale: false }, receiver)
}

impl Interests {
    pub(crate) fn opened(&mut self, room: &Arc<str>) {
        self.tell(Interest::Open(room.clone()));
    }

    pub(crate) fn closed(&mut self, room: &Arc<str>) {
        self.tell(Interest::Close(room.clone()));
    }

    fn tell(&mut self, change: Interest) {
        if !self.stale {
            // Disconnected: the subscriber has ended, and no one is listening.
            self.stale = matches!(self.changes.try_send(change), Err(TrySendError::Full(_)));
        }
    }

    /// If a change was not told, tries to send the whole set, as `rooms`
    /// gives it, in its place; it is asked for only then.
    pub(crate) fn catch_up(&mut self, rooms: impl FnOnce() -> Vec<Arc<str>>) {
        if self.stale && !self.changes.is_full() {
            // Only the hub sends: with room now, the set fits. Checking
            // first spares building a set that could not be sent.
            self.stale =
                matches!(self.changes.try_send(Interest::Exactly(rooms())), Err(TrySendError::Full(_)));
        }
    }
}

/// The subscriber's end: the rooms it should be subscribed to.
#[derive(Debug, Default)]
pub(crate) struct Wanted {
    rooms: HashSet<Arc<str>>,
}

impl Wanted {
    pub(crate) fn apply(&mut self, interest: Interest) {
        match interest {
            Interest::Open(room) => {
                self.rooms.insert(room);
            }
            Interest::Close(room) => {
                self.rooms.remove(&room);
            }
            Interest::Exactly(rooms) => self.rooms = rooms.into_iter().collect(),
        }
    }

    /// The room of this name, if it is wanted: the hub's own `Arc`, so that
    /// delivering to it allocates nothing.
    pub(crate) fn get(&self, room: &str) -> Option<&Arc<str>> {
        self.rooms.get(room)
    }

    pub(crate) fn rooms(&self) -> &HashSet<Arc<str>> {
        &self.rooms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(receiver: &Receiver<Interest>, wanted: &mut Wanted) {
        receiver.try_iter().for_each(|interest| wanted.apply(interest));
    }

    fn sorted(wanted: &Wanted) -> Vec<String> {
        let mut rooms: Vec<String> = wanted.rooms().iter().map(|r| r.to_string()).collect();
        rooms.sort();
        rooms
    }

    #[test]
    fn changes_arrive_in_order() {
        let (mut hub, receiver) = channel();
        let mut wanted = Wanted::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        hub.opened(&a);
        hub.opened(&b);
        hub.closed(&a);
        drain(&receiver, &mut wanted);
        assert_eq!(sorted(&wanted), ["b"]);
        assert!(Arc::ptr_eq(wanted.get("b").unwrap(), &b));
    }

    #[test]
    fn an_overflow_is_made_good_by_the_whole_set() {
        let (mut hub, receiver) = channel();
        let mut wanted = Wanted::default();
        // The hub's rooms, as its map would list them.
        let mut rooms: Vec<Arc<str>> = Vec::new();
        for i in 0..CAPACITY + 10 {
            let room: Arc<str> = format!("r{i}").into();
            hub.opened(&room);
            rooms.push(room);
        }
        let closed = rooms.remove(3);
        hub.closed(&closed);
        assert!(hub.stale);
        // Still full: the set waits.
        hub.catch_up(|| rooms.clone());
        assert!(hub.stale);
        drain(&receiver, &mut wanted);
        hub.catch_up(|| rooms.clone());
        assert!(!hub.stale);
        let late: Arc<str> = "late".into();
        hub.opened(&late);
        rooms.push(late);
        drain(&receiver, &mut wanted);
        assert_eq!(wanted.rooms().len(), rooms.len());
        assert!(rooms.iter().all(|room| wanted.get(room).is_some()));
        assert!(wanted.get(&closed).is_none());
    }

    #[test]
    fn catching_up_costs_nothing_when_nothing_was_lost() {
        let (mut hub, receiver) = channel();
        hub.catch_up(|| panic!("the set is not asked for"));
        assert!(receiver.is_empty());
    }
}
