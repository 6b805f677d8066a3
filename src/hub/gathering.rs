//! Room messages in a row for one room, gathered across a batch so that
//! every member's outbox is handed them as one run, encoded once.
//!
//! Only messages that follow each other among the hub's commands are
//! gathered: anything else (a message for another room, a join, a message
//! for one connection) ends the run first, so every member still gets
//! everything in the order the hub was asked.
//!
//! What is gathered carries the instant the hub took its batch, from which
//! its delivery latency is counted (see [`Queued::Room`]).

use std::sync::Arc;
use std::time::Instant;

use super::ConnectionId;
use crate::connection::Queued;
use crate::frame::{Frame, Run};

/// The most bytes of frames gathered into one run: a bound on what the hub
/// copies at once, and on what one send to a member carries.
const MAX_RUN: usize = 64 * 1024;

/// Messages gathered for one room, not yet delivered.
#[derive(Debug, Default)]
pub(crate) struct Gathering {
    room: Option<Arc<str>>,
    except: Option<ConnectionId>,
    frames: Vec<Frame>,
    bytes: usize,
    /// When the hub took the batch these came in.
    enqueued: Option<Instant>,
}

/// What was gathered, ready to deliver: one frame, or a run of them.
#[derive(Debug)]
pub(crate) struct Gathered {
    pub(crate) room: Arc<str>,
    pub(crate) queued: Queued,
    pub(crate) except: Option<ConnectionId>,
}

impl Gathering {
    /// Gathers `frame` for `room` (all members but `except`), taken by the
    /// hub at `enqueued`. Returns what was gathered before when `frame`
    /// cannot join it: it is for another room or another `except`, one of
    /// the two is not a message, or the run is full.
    pub(crate) fn add(
        &mut self,
        room: Arc<str>,
        frame: Frame,
        except: Option<ConnectionId>,
        enqueued: Instant,
    ) -> Option<Gathered> {
        let same_room =
            self.room.as_ref().is_some_and(|gathered| Arc::ptr_eq(gathered, &room) || *gathered == room);
        let joins = same_room
            && self.except == except
            && frame.is_message()
            && self.frames.first().is_some_and(Frame::is_message)
            && self.bytes + frame.len() <= MAX_RUN;
        let done = if joins { None } else { self.take() };
        self.room = Some(room);
        self.except = except;
        self.enqueued.get_or_insert(enqueued);
        self.bytes += frame.len();
        self.frames.push(frame);
        done
    }

    /// What is gathered, if anything, and a fresh start.
    pub(crate) fn take(&mut self) -> Option<Gathered> {
        let room = self.room.take()?;
        let enqueued = self.enqueued.take().unwrap_or_else(Instant::now);
        let queued = match self.frames.as_slice() {
            [frame] if !frame.is_message() => Queued::Frame(frame.clone()),
            [frame] => Queued::Room(Run::single(frame.clone()), enqueued),
            frames => Queued::Room(Run::new(frames), enqueued),
        };
        self.frames.clear();
        self.bytes = 0;
        Some(Gathered { room, queued, except: self.except })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(gathered: &Gathered) -> &str {
        &gathered.room
    }

    fn now() -> Instant {
        Instant::now()
    }

    #[test]
    fn messages_in_a_row_for_one_room_make_one_run_stamped_when_the_first_was_taken() {
        let mut gathering = Gathering::default();
        let room: Arc<str> = "r".into();
        let first = now();
        assert!(gathering.add(room.clone(), Frame::text("1"), None, first).is_none());
        assert!(gathering.add("r".into(), Frame::text("2"), None, now()).is_none(), "the same name joins");
        let done = gathering.take().unwrap();
        match done.queued {
            Queued::Room(run, enqueued) => {
                assert_eq!(
                    run.as_bytes(),
                    [Frame::text("1"), Frame::text("2")].map(|f| f.as_bytes().to_vec()).concat()
                );
                assert_eq!(enqueued, first);
            }
            other => panic!("expected a run, got {other:?}"),
        }
        assert!(gathering.take().is_none());
    }

    #[test]
    fn another_room_another_except_or_a_control_frame_ends_the_run() {
        let mut gathering = Gathering::default();
        assert!(gathering.add("a".into(), Frame::text("1"), None, now()).is_none());
        let done = gathering.add("b".into(), Frame::text("2"), None, now()).unwrap();
        assert_eq!(room(&done), "a");
        let done = gathering.add("b".into(), Frame::text("3"), Some(ConnectionId(1)), now()).unwrap();
        assert!(matches!(done.queued, Queued::Room(ref run, _) if run.frames() == 1), "a run of one");
        let done = gathering.add("b".into(), Frame::close(None), Some(ConnectionId(1)), now()).unwrap();
        assert_eq!(done.except, Some(ConnectionId(1)));
        let done = gathering.add("b".into(), Frame::text("4"), Some(ConnectionId(1)), now()).unwrap();
        assert!(matches!(done.queued, Queued::Frame(ref frame) if frame.is_close()));
    }

    #[test]
    fn a_run_stops_at_64_kib() {
        let mut gathering = Gathering::default();
        let big = Frame::binary(vec![0u8; 40 * 1024]);
        assert!(gathering.add("r".into(), big.clone(), None, now()).is_none());
        assert!(gathering.add("r".into(), big, None, now()).is_some());
    }
}
