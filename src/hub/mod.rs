//! The hub: the one thread that owns room membership and relays frames to outboxes.
//!
//! Like the operator at a telephone switchboard, the hub knows every line and
//! which rooms it is plugged into. Other threads talk to it only through
//! [`HubHandle`], which sends it [`Command`]s over a bounded channel. It
//! never reads a socket, and never waits on one: for each batch of commands
//! it appends every frame (encoded once, shared by reference; a room's
//! messages in a row gathered into one run) to each recipient's outbox, then
//! flushes each outbox it touched with one non-blocking vectored send. A socket with no room is finished by the drain
//! thread; a recipient whose outbox is over its budget is closed as a slow
//! consumer, so one stalled client cannot delay the rest of its room. No
//! thread is woken on the way.
//!
//! With a backplane ([`Config::backplane`](crate::Config::backplane)), rooms
//! span server nodes: every room message is also handed to the backplane's
//! publisher, without waiting, and what other nodes publish comes back as
//! [`Command::Deliver`], for the members on this node only. The hub tells
//! the backplane when a room gets its first member here and loses its last,
//! so that the node listens to exactly the rooms it serves.
//!
//! A connection's registration and unregistration wait in a queue of their
//! own, which the hub does not sleep on. It takes them before each command,
//! so that a command sent after a registration finds the connection, and
//! otherwise within [`REGISTRATIONS_WAIT`]. Waking the hub for each cost a
//! short-lived connection two trips to the hub's thread and back (on churn,
//! 3 to 8 µs of the server's 70 µs a connection) for an entry that matters
//! only once a command names the connection. An unregistration may so be
//! taken ahead of commands the connection sent before it: they find the
//! connection gone, as they would have a moment later.

mod gathering;
mod room;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use log::{debug, info};
use tungstenite::protocol::CloseFrame;

use self::gathering::{Gathered, Gathering};
use self::room::{Pass, Room};
use crate::backplane::Relay;
use crate::close::CloseReason;
use crate::connection::{Closing, Outbox, Refused, assert_unlocked};
use crate::error::{Error, Result};
use crate::frame::Frame;

/// A connection's number, unique for the life of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What other threads ask of the hub.
#[derive(Debug)]
pub(crate) enum Command {
    /// A connection has opened, with its outbox. Sent on the registrations
    /// queue, as is `Unregister`.
    Register {
        id: ConnectionId,
        outbox: Arc<Outbox>,
    },
    /// A connection has ended.
    Unregister {
        id: ConnectionId,
    },
    Join {
        id: ConnectionId,
        room: Arc<str>,
    },
    Leave {
        id: ConnectionId,
        room: Arc<str>,
    },
    /// A frame for every member of a room.
    Publish {
        room: Arc<str>,
        frame: Frame,
        /// A member not to send it to: usually the one it came from.
        except: Option<ConnectionId>,
    },
    /// A frame another node published to a room: for this node's members
    /// only, and not published again.
    Deliver {
        room: Arc<str>,
        frame: Frame,
    },
    /// A frame for one connection.
    SendTo {
        id: ConnectionId,
        frame: Frame,
    },
    /// A frame for every connection.
    Broadcast {
        frame: Frame,
    },
    /// Close one connection now, ahead of what its outbox holds.
    Close {
        id: ConnectionId,
        frame: Frame,
    },
    /// Take the registrations queued so far: the queue has grown long
    /// enough that what it holds should not wait for the next command.
    TakeRegistrations,
    /// Answer how many connections are in a room.
    RoomSize {
        room: Arc<str>,
        reply: Sender<usize>,
    },
    /// Queue 1001 for every connection, after what each outbox holds, and
    /// for every connection that registers from now on.
    Shutdown,
    /// End the hub thread.
    Stop,
}

/// A cloneable way to reach the hub from any thread: send to one connection,
/// to a room, or to everyone.
///
/// Each call queues one command for the hub. The queue is bounded: when it is
/// full the call waits, which is how a flood of messages turns into TCP
/// backpressure on the clients sending it. A call returns once the hub has the
/// command, not once clients have the message.
#[derive(Debug, Clone)]
pub struct HubHandle {
    commands: Sender<Command>,
    /// Connections opening and ending: see the module docs.
    registrations: Sender<Command>,
}

/// The longest a registration or unregistration waits for the hub when no
/// command comes to wake it (so an idle hub wakes once a wait). Until then
/// the hub holds an ended connection's outbox, and with it the socket's
/// descriptor, and a connection that registers during a shutdown waits for
/// its 1001.
const REGISTRATIONS_WAIT: Duration = Duration::from_secs(1);

/// Registrations queued at which the hub is woken to take them, so that few
/// ended connections' descriptors wait for it however many end at once.
pub(crate) const REGISTRATIONS_WAKE: usize = 64;

/// The registrations queue's bound: room for those that come while the hub
/// wakes. A bounded channel allocates and touches every slot up front, so
/// it is not the inbox's thousands.
const REGISTRATIONS_QUEUE: usize = 4 * REGISTRATIONS_WAKE;

impl HubHandle {
    fn send(&self, command: Command) -> Result<()> {
        // The hub takes outbox locks, and this may wait for it.
        assert_unlocked();
        self.commands.send(command).map_err(|_| Error::HubStopped)
    }

    /// Sends a message to one connection.
    ///
    /// # Errors
    ///
    /// [`Error::HubStopped`] once the server has shut down. A connection that
    /// no longer exists is not an error: the message is dropped.
    pub fn send_to(&self, id: ConnectionId, message: impl Into<Frame>) -> Result<()> {
        self.send(Command::SendTo { id, frame: message.into() })
    }

    /// Sends a message to every member of `room`, in the order the calls are
    /// made.
    ///
    /// # Errors
    ///
    /// [`Error::HubStopped`] once the server has shut down.
    pub fn send_to_room(&self, room: impl Into<Arc<str>>, message: impl Into<Frame>) -> Result<()> {
        self.send(Command::Publish { room: room.into(), frame: message.into(), except: None })
    }

    /// Sends a message to every member of `room` but `except`: the usual
    /// way to relay what one member said to the others.
    ///
    /// # Errors
    ///
    /// [`Error::HubStopped`] once the server has shut down.
    pub fn send_to_room_except(
        &self,
        room: impl Into<Arc<str>>,
        except: ConnectionId,
        message: impl Into<Frame>,
    ) -> Result<()> {
        self.send(Command::Publish { room: room.into(), frame: message.into(), except: Some(except) })
    }

    /// Sends a message to every open connection.
    ///
    /// # Errors
    ///
    /// [`Error::HubStopped`] once the server has shut down.
    pub fn broadcast(&self, message: impl Into<Frame>) -> Result<()> {
        self.send(Command::Broadcast { frame: message.into() })
    }

    /// Adds a connection to a room. A connection can be in any number of rooms.
    ///
    /// # Errors
    ///
    /// [`Error::HubStopped`] once the server has shut down.
    pub fn join(&self, id: ConnectionId, room: impl Into<Arc<str>>) -> Result<()> {
        self.send(Command::Join { id, room: room.into() })
    }

    /// Removes a connection from a room.
    ///
    /// # Errors
    ///
    /// [`Error::HubStopped`] once the server has shut down.
    pub fn leave(&self, id: ConnectionId, room: impl Into<Arc<str>>) -> Result<()> {
        self.send(Command::Leave { id, room: room.into() })
    }

    /// Closes a connection with `close`, ahead of anything still queued for it.
    ///
    /// # Errors
    ///
    /// [`Error::HubStopped`] once the server has shut down.
    pub fn close(&self, id: ConnectionId, close: CloseFrame) -> Result<()> {
        self.send(Command::Close { id, frame: Frame::close(Some(close)) })
    }

    /// The number of connections in `room` now (0 for a room that does not
    /// exist). It waits for the hub's answer, behind the commands already
    /// queued.
    ///
    /// # Errors
    ///
    /// [`Error::HubStopped`] once the server has shut down.
    pub fn room_size(&self, room: impl Into<Arc<str>>) -> Result<usize> {
        let (reply, answer) = bounded(1);
        self.send(Command::RoomSize { room: room.into(), reply })?;
        answer.recv().map_err(|_| Error::HubStopped)
    }

    /// Delivers a frame from another node to this node's members of `room`,
    /// in the order of the calls, behind the commands already queued.
    pub(crate) fn deliver(&self, room: Arc<str>, frame: Frame) -> Result<()> {
        self.send(Command::Deliver { room, frame })
    }

    pub(crate) fn register(&self, id: ConnectionId, outbox: Arc<Outbox>) -> Result<()> {
        self.enrol(Command::Register { id, outbox })
    }

    pub(crate) fn unregister(&self, id: ConnectionId) {
        // After a shutdown the hub may be gone, and then so is the entry.
        let _ = self.enrol(Command::Unregister { id });
    }

    /// Queues a registration or unregistration without waking the hub,
    /// unless the queue is long or full.
    fn enrol(&self, command: Command) -> Result<()> {
        assert_unlocked();
        match self.registrations.try_send(command) {
            Ok(()) if self.registrations.len() < REGISTRATIONS_WAKE => Ok(()),
            Ok(()) => self.send(Command::TakeRegistrations),
            Err(TrySendError::Full(command)) => {
                self.send(Command::TakeRegistrations)?;
                self.registrations.send(command).map_err(|_| Error::HubStopped)
            }
            Err(TrySendError::Disconnected(_)) => Err(Error::HubStopped),
        }
    }

    pub(crate) fn shutdown(&self) -> Result<()> {
        self.send(Command::Shutdown)
    }

    pub(crate) fn stop(&self) {
        let _ = self.send(Command::Stop);
    }
}

/// One open connection, as the hub knows it.
#[derive(Debug)]
struct Member {
    outbox: Arc<Outbox>,
    rooms: Vec<Arc<str>>,
}

/// The hub's state, owned by the hub thread; see the module docs.
#[derive(Debug)]
pub(crate) struct Hub {
    commands: Receiver<Command>,
    registrations: Receiver<Command>,
    members: HashMap<ConnectionId, Member>,
    rooms: HashMap<Arc<str>, Room>,
    /// The 1001 frame, once a shutdown has begun.
    closing: Option<Frame>,
    /// Room messages in a row for one room, to be delivered as one run.
    gathering: Gathering,
    /// Scratch list of members found with a full outbox.
    full: Vec<ConnectionId>,
    /// Rooms and members given frames since their outboxes were last flushed.
    dirty_rooms: Vec<Arc<str>>,
    dirty_members: Vec<ConnectionId>,
    flush_everyone: bool,
    /// The way to the other nodes, when there is a backplane.
    relay: Option<Relay>,
    /// When the batch being applied was taken off the queue: a room
    /// message's delivery latency counts from here. Read once a batch, not
    /// once a message.
    batch_taken: Instant,
}

/// The most commands applied before the outboxes they concern are flushed:
/// a bound on the delay batching can add.
const BATCH: usize = 256;

impl Hub {
    /// A hub whose inbox holds up to `capacity` commands, and its handle.
    pub(crate) fn new(capacity: usize) -> (Hub, HubHandle) {
        let (commands_tx, commands) = bounded(capacity);
        let (registrations_tx, registrations) = bounded(capacity.min(REGISTRATIONS_QUEUE));
        let hub = Hub {
            commands,
            registrations,
            members: HashMap::new(),
            rooms: HashMap::new(),
            closing: None,
            gathering: Gathering::default(),
            full: Vec::new(),
            dirty_rooms: Vec::new(),
            dirty_members: Vec::new(),
            flush_everyone: false,
            relay: None,
            batch_taken: Instant::now(),
        };
        (hub, HubHandle { commands: commands_tx, registrations: registrations_tx })
    }

    /// Shares this hub's rooms with other nodes through `relay`.
    pub(crate) fn relay_to(&mut self, relay: Relay) {
        self.relay = Some(relay);
    }

    /// The hub thread's body: applies commands until `Stop`, or until every
    /// handle is gone.
    pub(crate) fn run(mut self) {
        'commands: loop {
            let first = match self.commands.recv_timeout(REGISTRATIONS_WAIT) {
                Ok(command) => command,
                Err(RecvTimeoutError::Timeout) => {
                    self.take_registrations();
                    if let Some(relay) = &mut self.relay {
                        relay.sweep(Instant::now());
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.batch_taken = Instant::now();
            // Apply what else is already waiting, up to a batch, before
            // flushing any outbox: a busy room's members are each sent the
            // batch's frames with one system call.
            let mut next = Some(first);
            let mut applied = 0;
            while let Some(command) = next.take() {
                if let Command::Stop = command {
                    break 'commands;
                }
                // The command may concern a connection that registered
                // just before it was sent.
                self.take_registrations();
                self.apply(command);
                applied += 1;
                if applied < BATCH {
                    next = self.commands.try_recv().ok();
                }
            }
            self.flush();
        }
        debug!("hub stopped with {} connections registered", self.members.len());
    }

    /// Applies the registrations and unregistrations queued so far.
    fn take_registrations(&mut self) {
        while let Ok(registration) = self.registrations.try_recv() {
            self.apply(registration);
        }
    }

    /// Sends what the batch queued, one system call per outbox, and lets the
    /// backplane catch up on rooms it could not be told about. The run still
    /// gathering, most often the batch's only one, is appended and sent in
    /// the same pass over its room.
    fn flush(&mut self) {
        if let Some(last) = self.gathering.take() {
            self.deliver(last, Pass::Send);
        }
        if let Some(relay) = &mut self.relay {
            relay.catch_up(|| self.rooms.keys().cloned().collect());
            relay.sweep(self.batch_taken);
        }
        for name in self.dirty_rooms.drain(..) {
            if let Some(room) = self.rooms.get_mut(&name) {
                room.flush();
            }
        }
        for id in self.dirty_members.drain(..) {
            if let Some(member) = self.members.get(&id) {
                member.outbox.flush();
            }
        }
        if std::mem::take(&mut self.flush_everyone) {
            self.members.values().for_each(|member| member.outbox.flush());
        }
    }

    fn apply(&mut self, command: Command) {
        // Room messages gathered so far go before anything else but
        // (un)registrations and the wake-up that brings them, which may come
        // between any two commands: an ended connection takes nothing more,
        // and a new one is in no room.
        if !matches!(
            command,
            Command::Publish { .. }
                | Command::Deliver { .. }
                | Command::Register { .. }
                | Command::Unregister { .. }
                | Command::TakeRegistrations
        ) {
            self.deliver_gathered();
        }
        match command {
            Command::Register { id, outbox } => {
                if let Some(closing) = &self.closing {
                    let _ = outbox.close(closing.clone(), Closing::Last);
                }
                self.members.insert(id, Member { outbox, rooms: Vec::new() });
            }
            Command::Unregister { id } => {
                if let Some(member) = self.members.remove(&id) {
                    self.leave_all(id, &member.rooms);
                    // This batch may have queued frames for it: no flush at
                    // the end of the batch will reach it now.
                    member.outbox.flush();
                }
            }
            Command::Join { id, room } => self.join(id, room),
            Command::Leave { id, room } => self.leave(id, &room),
            Command::Publish { room, frame, except } => {
                if let Some(relay) = &mut self.relay {
                    relay.publish(&room, &frame);
                }
                self.gather(room, frame, except);
            }
            Command::Deliver { room, frame } => self.gather(room, frame, None),
            Command::SendTo { id, frame } => {
                if let Some(member) = self.members.get(&id) {
                    match member.outbox.push(frame) {
                        Err(Refused::Full) => self.full.push(id),
                        _ => self.dirty_members.push(id),
                    }
                }
                self.forget_full();
            }
            Command::Broadcast { frame } => {
                for (id, member) in &self.members {
                    if let Err(Refused::Full) = member.outbox.push(frame.clone()) {
                        self.full.push(*id);
                    }
                }
                self.flush_everyone = true;
                self.forget_full();
            }
            Command::Close { id, frame } => {
                if let Some(member) = self.members.remove(&id) {
                    self.leave_all(id, &member.rooms);
                    let _ = member.outbox.close(frame, Closing::Now);
                }
            }
            Command::RoomSize { room, reply } => {
                let _ = reply.send(self.rooms.get(&room).map_or(0, Room::len));
            }
            Command::TakeRegistrations => {}
            Command::Shutdown => self.shutdown(),
            Command::Stop => unreachable!("Bug: Stop is handled by run"),
        }
    }

    /// Gathers a room message with those before it for the same room; what
    /// it cannot join is delivered now.
    fn gather(&mut self, room: Arc<str>, frame: Frame, except: Option<ConnectionId>) {
        if let Some(gathered) = self.gathering.add(room, frame, except, self.batch_taken) {
            self.deliver(gathered, Pass::Append);
        }
    }

    fn deliver_gathered(&mut self) {
        if let Some(gathered) = self.gathering.take() {
            self.deliver(gathered, Pass::Append);
        }
    }

    /// Hands a frame or run to this node's members of its room but one, as
    /// `pass` says.
    fn deliver(&mut self, gathered: Gathered, pass: Pass) {
        let Gathered { room: name, queued, except } = gathered;
        if let Some(room) = self.rooms.get_mut(&name) {
            if room.deliver(&queued, except, &mut self.full, pass) {
                self.dirty_rooms.push(name);
            }
        }
        self.forget_full();
    }

    fn join(&mut self, id: ConnectionId, room: Arc<str>) {
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        let entry = self.rooms.entry(room.clone()).or_insert_with(|| {
            if let Some(relay) = &mut self.relay {
                relay.room_opened(&room);
            }
            Room::default()
        });
        if entry.insert(id, member.outbox.clone()) {
            member.rooms.push(room);
        }
    }

    fn leave(&mut self, id: ConnectionId, room: &str) {
        if let Some(member) = self.members.get_mut(&id) {
            member.rooms.retain(|r| &**r != room);
            // The room's flush at the end of the batch will not reach it
            // now, and this batch may have queued a frame for it there.
            self.dirty_members.push(id);
        }
        self.leave_all(id, &[room.into()]);
    }

    /// Takes `id` out of `rooms`, dropping rooms that become empty.
    fn leave_all(&mut self, id: ConnectionId, rooms: &[Arc<str>]) {
        for name in rooms {
            if let Some(room) = self.rooms.get_mut(name) {
                room.remove(id);
                if room.is_empty() {
                    self.rooms.remove(name);
                    if let Some(relay) = &mut self.relay {
                        relay.room_closed(name);
                    }
                }
            }
        }
    }

    /// Forgets every member whose outbox took nothing more: each has closed
    /// itself as a slow consumer (1008), or is closing, so nothing more is
    /// sent to it.
    fn forget_full(&mut self) {
        while let Some(id) = self.full.pop() {
            if let Some(member) = self.members.remove(&id) {
                self.leave_all(id, &member.rooms);
                // What this batch queued for it (its close, say) would
                // otherwise wait for a flush that no longer reaches it.
                member.outbox.flush();
            }
        }
    }

    /// Queues 1001 behind what every outbox holds, so that clients get what
    /// was already accepted for them before the close.
    fn shutdown(&mut self) {
        let close = Frame::close(Some(CloseReason::Shutdown.frame()));
        for member in self.members.values() {
            let _ = member.outbox.close(close.clone(), Closing::Last);
        }
        info!("shutdown: 1001 queued for {} connections", self.members.len());
        self.closing = Some(close);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::connection::{Job, Queued, Recorded, recorded};
    use crate::metrics::Metrics;

    /// Registers a connection whose outbox holds `budget` bytes and records
    /// what it is sent.
    fn register(hub: &mut Hub, id: u64, budget: usize) -> Recorded {
        let line = recorded(id, b"", budget, Arc::new(Metrics::default()));
        hub.apply(Command::Register { id: ConnectionId(id), outbox: line.outbox.clone() });
        line
    }

    fn wire(frames: &[Frame]) -> Vec<u8> {
        frames.iter().flat_map(|frame| frame.as_bytes().to_vec()).collect()
    }

    fn texts(items: &[&str]) -> Vec<u8> {
        wire(&items.iter().map(|text| Frame::text(*text)).collect::<Vec<_>>())
    }

    fn hub() -> Hub {
        Hub::new(16).0
    }

    #[test]
    fn publish_reaches_only_the_room_once_flushed() {
        let mut hub = hub();
        let a = register(&mut hub, 1, 1000);
        let b = register(&mut hub, 2, 1000);
        let c = register(&mut hub, 3, 1000);
        hub.apply(Command::Join { id: ConnectionId(1), room: "x".into() });
        hub.apply(Command::Join { id: ConnectionId(2), room: "x".into() });
        hub.apply(Command::Join { id: ConnectionId(3), room: "y".into() });
        hub.apply(Command::Publish { room: "x".into(), frame: Frame::text("hi"), except: None });
        hub.apply(Command::Publish { room: "x".into(), frame: Frame::text("there"), except: None });
        assert!(a.sink.bytes().is_empty(), "nothing is sent before the batch ends");
        hub.flush();
        assert_eq!(a.sink.bytes(), texts(&["hi", "there"]));
        assert_eq!(a.sink.calls(), 1, "the batch in one send");
        assert_eq!(b.sink.bytes(), texts(&["hi", "there"]));
        assert!(c.sink.bytes().is_empty());
    }

    #[test]
    fn one_frame_is_shared_by_all_recipients() {
        let mut hub = hub();
        let a = register(&mut hub, 1, 1000);
        let b = register(&mut hub, 2, 1000);
        a.sink.set_room(Some(0));
        b.sink.set_room(Some(0));
        hub.apply(Command::Broadcast { frame: Frame::text("all") });
        hub.flush();
        assert!(queued(&a).shares_bytes_with(&queued(&b)));
    }

    #[test]
    fn a_batch_of_room_messages_is_one_run_shared_by_every_member() {
        let mut hub = hub();
        let a = register(&mut hub, 1, 1000);
        let b = register(&mut hub, 2, 1000);
        for id in [1, 2] {
            hub.apply(Command::Join { id: ConnectionId(id), room: "r".into() });
        }
        a.sink.set_room(Some(0));
        b.sink.set_room(Some(0));
        for text in ["1", "2", "3"] {
            hub.apply(Command::Publish { room: "r".into(), frame: Frame::text(text), except: None });
        }
        hub.flush();
        let (run_a, run_b) = (queued(&a), queued(&b));
        assert!(matches!(run_a, Queued::Room(_, _)), "{run_a:?}");
        assert!(run_a.shares_bytes_with(&run_b));
        a.sink.set_room(None);
        a.outbox.resume();
        assert_eq!(a.sink.bytes(), texts(&["1", "2", "3"]));
    }

    #[test]
    fn a_run_ends_where_another_command_comes_between() {
        let mut hub = hub();
        let a = register(&mut hub, 1, 1000);
        hub.apply(Command::Join { id: ConnectionId(1), room: "r".into() });
        hub.apply(Command::Publish { room: "r".into(), frame: Frame::text("1"), except: None });
        hub.apply(Command::SendTo { id: ConnectionId(1), frame: Frame::text("direct") });
        hub.apply(Command::Publish { room: "r".into(), frame: Frame::text("2"), except: None });
        hub.apply(Command::Leave { id: ConnectionId(1), room: "r".into() });
        hub.apply(Command::Publish { room: "r".into(), frame: Frame::text("after leaving"), except: None });
        hub.flush();
        assert_eq!(a.sink.bytes(), texts(&["1", "direct", "2"]));
    }

    /// The first frame or run a stalled line's outbox holds.
    fn queued(line: &Recorded) -> Queued {
        match line.jobs.try_recv() {
            Ok(Job::Finish(outbox)) => outbox.queued_front().expect("something queued"),
            other => panic!("expected a stalled outbox, got {other:?}"),
        }
    }

    #[test]
    fn full_outbox_is_closed_with_1008_and_others_still_served() {
        let mut hub = hub();
        let metrics = Arc::new(Metrics::default());
        let slow = recorded(1, b"", 100, metrics.clone());
        hub.apply(Command::Register { id: ConnectionId(1), outbox: slow.outbox.clone() });
        let fast = register(&mut hub, 2, 1000);
        slow.sink.set_room(Some(0));
        for id in [1, 2] {
            hub.apply(Command::Join { id: ConnectionId(id), room: "r".into() });
        }
        for text in ["1", "2", "3"] {
            hub.apply(Command::Publish { room: "r".into(), frame: Frame::text(text), except: None });
        }
        hub.flush();
        assert_eq!(fast.sink.bytes(), texts(&["1", "2", "3"]));
        slow.sink.set_room(None);
        slow.outbox.resume();
        let close = Frame::close(Some(CloseReason::SlowConsumer.frame()));
        assert_eq!(slow.sink.bytes(), wire(&[close]), "the close went ahead of the frames queued");
        assert!(!hub.members.contains_key(&ConnectionId(1)));
        assert!(hub.rooms["r"].len() == 1);
        assert!(metrics.to_json().contains("\"slow_consumer_closes\": 1"));
    }

    #[test]
    fn a_member_that_leaves_after_a_message_in_the_same_batch_is_still_flushed() {
        let mut hub = hub();
        let a = register(&mut hub, 1, 1000);
        hub.apply(Command::Join { id: ConnectionId(1), room: "r".into() });
        hub.apply(Command::Publish { room: "r".into(), frame: Frame::text("hi"), except: None });
        hub.apply(Command::Leave { id: ConnectionId(1), room: "r".into() });
        hub.flush();
        assert_eq!(a.sink.bytes(), texts(&["hi"]));
    }

    #[test]
    fn last_member_leaving_drops_the_room() {
        let mut hub = hub();
        let _a = register(&mut hub, 1, 1000);
        hub.apply(Command::Join { id: ConnectionId(1), room: "r".into() });
        assert!(hub.rooms.contains_key("r"));
        hub.apply(Command::Unregister { id: ConnectionId(1) });
        assert!(hub.rooms.is_empty());
        assert!(hub.members.is_empty());
    }

    #[test]
    fn shutdown_queues_1001_after_pending_frames_and_for_latecomers() {
        let mut hub = hub();
        let a = register(&mut hub, 1, 1000);
        hub.apply(Command::SendTo { id: ConnectionId(1), frame: Frame::text("pending") });
        hub.apply(Command::Shutdown);
        let late = register(&mut hub, 2, 1000);
        let close = Frame::close(Some(CloseReason::Shutdown.frame()));
        assert_eq!(a.sink.bytes(), wire(&[Frame::text("pending"), close.clone()]));
        assert_eq!(late.sink.bytes(), wire(&[close]));
    }

    #[test]
    fn an_application_close_jumps_the_queue() {
        let mut hub = hub();
        let a = register(&mut hub, 1, 1000);
        a.sink.set_room(Some(0));
        hub.apply(Command::SendTo { id: ConnectionId(1), frame: Frame::text("never sent") });
        hub.flush();
        let close = CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "bye".into(),
        };
        hub.apply(Command::Close { id: ConnectionId(1), frame: Frame::close(Some(close.clone())) });
        a.sink.set_room(None);
        a.outbox.resume();
        assert_eq!(a.sink.bytes(), wire(&[Frame::close(Some(close))]));
        assert!(hub.members.is_empty());
    }

    mod backplane {
        use super::*;
        use crate::backplane::{Interest, Outgoing};

        fn hub_with_relay(queue: usize) -> (Hub, Receiver<Outgoing>, Receiver<Interest>, Arc<Metrics>) {
            let metrics = Arc::new(Metrics::with_backplane("test"));
            let (relay, published, told) = Relay::detached(queue, metrics.clone());
            let mut hub = Hub::new(16).0;
            hub.relay_to(relay);
            (hub, published, told, metrics)
        }

        #[test]
        fn room_messages_are_delivered_here_and_relayed_once() {
            let (mut hub, published, _told, _) = hub_with_relay(16);
            let a = register(&mut hub, 1, 1000);
            hub.apply(Command::Join { id: ConnectionId(1), room: "r".into() });
            let frame = Frame::text("hi");
            hub.apply(Command::Publish { room: "r".into(), frame: frame.clone(), except: None });
            // A room with no one here is still relayed: others may have members.
            hub.apply(Command::Publish { room: "empty".into(), frame: Frame::text("x"), except: None });
            hub.flush();
            assert_eq!(a.sink.bytes(), texts(&["hi"]));
            let relayed: Vec<Outgoing> = published.try_iter().collect();
            assert_eq!(relayed.len(), 2);
            assert_eq!((&*relayed[0].room, &*relayed[1].room), ("r", "empty"));
            assert!(relayed[0].frame.same_as(&frame), "the frame itself, not a copy");
        }

        #[test]
        fn deliveries_from_other_nodes_reach_members_here_and_are_not_relayed() {
            let (mut hub, published, _told, _) = hub_with_relay(16);
            let a = register(&mut hub, 1, 1000);
            let b = register(&mut hub, 2, 1000);
            hub.apply(Command::Join { id: ConnectionId(1), room: "r".into() });
            hub.apply(Command::Deliver { room: "r".into(), frame: Frame::text("from afar") });
            hub.flush();
            assert_eq!(a.sink.bytes(), texts(&["from afar"]));
            assert!(b.sink.bytes().is_empty());
            assert!(published.is_empty());
        }

        #[test]
        fn a_full_publish_queue_is_counted_not_waited_on() {
            let (mut hub, published, _told, metrics) = hub_with_relay(1);
            let a = register(&mut hub, 1, 1000);
            hub.apply(Command::Join { id: ConnectionId(1), room: "r".into() });
            for text in ["1", "2", "3"] {
                hub.apply(Command::Publish { room: "r".into(), frame: Frame::text(text), except: None });
            }
            hub.flush();
            assert_eq!(a.sink.bytes(), texts(&["1", "2", "3"]));
            assert_eq!(published.len(), 1);
            assert!(metrics.to_json().contains("\"not_relayed\": 2"));
        }

        #[test]
        fn the_backplane_hears_of_first_and_last_members_only() {
            let (mut hub, _published, told, _) = hub_with_relay(16);
            let _a = register(&mut hub, 1, 1000);
            let _b = register(&mut hub, 2, 1000);
            hub.apply(Command::Join { id: ConnectionId(1), room: "r".into() });
            hub.apply(Command::Join { id: ConnectionId(2), room: "r".into() });
            hub.apply(Command::Leave { id: ConnectionId(1), room: "r".into() });
            hub.apply(Command::Unregister { id: ConnectionId(2) });
            let told: Vec<Interest> = told.try_iter().collect();
            assert_eq!(told, [Interest::Open("r".into()), Interest::Close("r".into())]);
        }
    }

    #[test]
    fn publish_can_leave_out_its_sender() {
        let mut hub = hub();
        let a = register(&mut hub, 1, 1000);
        let b = register(&mut hub, 2, 1000);
        for id in [1, 2] {
            hub.apply(Command::Join { id: ConnectionId(id), room: "r".into() });
        }
        let frame = Frame::text("from a");
        hub.apply(Command::Publish { room: "r".into(), frame, except: Some(ConnectionId(1)) });
        hub.flush();
        assert!(a.sink.bytes().is_empty());
        assert_eq!(b.sink.bytes(), texts(&["from a"]));
    }

    /// A line registered through a handle, as a connection's thread does.
    fn enrolled(handle: &HubHandle, id: u64) -> Recorded {
        let line = recorded(id, b"", 1000, Arc::new(Metrics::default()));
        handle.register(ConnectionId(id), line.outbox.clone()).unwrap();
        line
    }

    /// Waits, for at most a few seconds, until `line` has been sent `bytes`.
    fn wait_for(line: &Recorded, bytes: &[u8]) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while line.sink.bytes() != bytes {
            assert!(Instant::now() < deadline, "sent so far: {:?}", line.sink.bytes());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_registration_is_taken_before_the_command_sent_after_it() {
        let (hub, handle) = Hub::new(16);
        let line = enrolled(&handle, 1);
        handle.send_to(ConnectionId(1), "hi").unwrap();
        assert_eq!(hub.commands.len(), 1, "the registration alone wakes no one");
        let hub = std::thread::spawn(move || hub.run());
        wait_for(&line, &texts(&["hi"]));
        handle.stop();
        hub.join().unwrap();
    }

    #[test]
    fn an_unregistration_is_taken_within_the_wait_with_no_command_after_it() {
        let (hub, handle) = Hub::new(16);
        let line = enrolled(&handle, 1);
        handle.unregister(ConnectionId(1));
        let hub = std::thread::spawn(move || hub.run());
        // The hub's hold on the outbox, and on its socket, ends.
        let deadline = Instant::now() + REGISTRATIONS_WAIT * 5;
        while Arc::strong_count(&line.outbox) > 1 {
            assert!(Instant::now() < deadline, "the hub still holds the ended line");
            std::thread::sleep(Duration::from_millis(5));
        }
        handle.stop();
        hub.join().unwrap();
    }

    #[test]
    fn a_long_queue_of_registrations_wakes_the_hub() {
        let (hub, handle) = Hub::new(2 * REGISTRATIONS_WAKE);
        let _lines: Vec<Recorded> = (1..REGISTRATIONS_WAKE as u64).map(|id| enrolled(&handle, id)).collect();
        assert!(hub.commands.is_empty());
        let _last = enrolled(&handle, REGISTRATIONS_WAKE as u64);
        assert!(matches!(hub.commands.try_recv(), Ok(Command::TakeRegistrations)));
    }

    #[test]
    fn a_full_queue_of_registrations_wakes_the_hub_and_waits_for_it() {
        let (hub, handle) = Hub::new(1);
        let _first = enrolled(&handle, 1);
        let hub = std::thread::spawn(move || hub.run());
        let second = enrolled(&handle, 2);
        handle.send_to(ConnectionId(2), "both in").unwrap();
        wait_for(&second, &texts(&["both in"]));
        handle.stop();
        hub.join().unwrap();
    }

    #[test]
    #[should_panic(expected = "holding an outbox's lock")]
    #[cfg(debug_assertions)]
    fn calling_the_hub_while_holding_an_outbox_lock_is_a_bug() {
        let (_hub, handle) = Hub::new(16);
        let line = recorded(1, b"", 1000, Arc::new(Metrics::default()));
        line.outbox.while_locked(|| {
            let _ = handle.broadcast("deadlock?");
        });
    }
}
