//! The subscriber thread: the channels of the rooms this node serves, and what other nodes publish on them, to the hub.
//!
//! It owns the pub/sub connection. Between messages it takes the hub's
//! changes to the rooms this node serves ([`interest`](super::interest))
//! and subscribes or unsubscribes to match. A blocking pub/sub connection
//! cannot do that while it waits for a message, so it waits at most
//! [`POLL`]: a room that gets its first member here starts receiving other
//! nodes' messages within about that long, and an idle node wakes up
//! fifty times a second, for a read that finds nothing.
//!
//! Each message is checked (its envelope, then its frame) and handed to
//! the hub, in arrival order, as a delivery to local members only. Messages
//! this node published itself come back too, because it is subscribed to
//! its own rooms, and are dropped: its clients had them from the hub already.
//!
//! When the hub's queue is full the subscriber waits for room in it, as a
//! connection's reader does, and reads nothing from Redis meanwhile. Redis
//! then holds the messages for it, up to its pub/sub output buffer limit
//! (`client-output-buffer-limit pubsub`, 32 MB by default), past which it
//! drops the connection: the subscriber reconnects and resubscribes, and
//! what Redis dropped does not reach this node.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, select};
use log::debug;
use redis::{Client, Connection, Msg, PubSub, RedisError, RedisResult};

use super::envelope::{self, Channel};
use super::health::{Health, Link};
use super::interest::{Interest, Wanted};
use super::namesake::Namesake;
use super::{CONNECT_TIMEOUT, FIRST_RETRY, IO_TIMEOUT, KEEPALIVE, LAST_RETRY, connection_failed};
use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::hub::HubHandle;
use crate::metrics::Metrics;

/// The longest a read for messages blocks before the thread looks for
/// subscription changes and for the hub having stopped: the delay before a
/// new room is subscribed, and before the thread notices a shutdown.
pub(super) const POLL: Duration = Duration::from_millis(20);

/// The subscriber thread's state; see the module docs.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub(crate) client: Client,
    pub(crate) interests: Receiver<Interest>,
    /// Never sent on: disconnected when the [`Backplane`](super::Backplane)
    /// is dropped without being joined, as when a server is bound but never
    /// run. The subscriber's [`HubHandle`] keeps the hub alive, and the hub's
    /// relay keeps the subscriber alive; this breaks the circle.
    pub(crate) abandoned: Receiver<()>,
    pub(crate) wanted: Wanted,
    pub(crate) hub: HubHandle,
    pub(crate) node_id: Arc<[u8]>,
    pub(crate) prefix: Arc<str>,
    /// The largest message accepted from another node, payload only.
    pub(crate) max_message: usize,
    pub(crate) health: Arc<Health>,
    pub(crate) namesake: Arc<Namesake>,
    pub(crate) metrics: Arc<Metrics>,
    /// Dropped when the thread ends; see [`Backplane::join`](super::Backplane::join).
    pub(crate) _done: Sender<()>,
}

/// Why a connected spell ended.
enum Ended {
    /// The hub has stopped: the thread ends.
    HubStopped,
    /// Redis failed; reconnect.
    Failed(RedisError),
}

impl From<RedisError> for Ended {
    fn from(e: RedisError) -> Self {
        Ended::Failed(e)
    }
}

/// The hub's only failure: it has stopped.
impl From<Error> for Ended {
    fn from(_: Error) -> Self {
        Ended::HubStopped
    }
}

impl Subscriber {
    /// The thread body: connect, subscribe, forward until Redis fails, wait,
    /// again; until the hub stops.
    pub(crate) fn run(mut self) {
        let mut backoff = Backoff::new(FIRST_RETRY, LAST_RETRY);
        loop {
            match self.client.get_connection_with_timeout(CONNECT_TIMEOUT) {
                Ok(mut connection) => match self.serve(&mut connection, &mut backoff) {
                    Ended::HubStopped => return,
                    Ended::Failed(e) => self.health.failed(Link::Subscriber, &e),
                },
                Err(e) => self.health.failed(Link::Subscriber, &e),
            }
            if !self.follow_until(Instant::now() + backoff.next_delay()) {
                return;
            }
        }
    }

    /// Subscribes to every wanted room, then forwards messages and follows
    /// the hub's changes until Redis fails or the hub stops.
    fn serve(&mut self, connection: &mut Connection, backoff: &mut Backoff) -> Ended {
        let Err(ended) = self.listen(connection, backoff);
        ended
    }

    fn listen(&mut self, connection: &mut Connection, backoff: &mut Backoff) -> Result<Infallible, Ended> {
        connection.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut pubsub = connection.as_pubsub();
        self.listen_for_namesakes(&mut pubsub)?;
        self.namesake.listening();
        let mut subscribed = HashSet::new();
        self.follow()?;
        self.reconcile(&mut pubsub, &mut subscribed)?;
        self.health.up(Link::Subscriber);
        backoff.reset();
        let mut last_heard = Instant::now();
        loop {
            match pubsub.get_message() {
                Ok(message) => {
                    last_heard = Instant::now();
                    self.forward(&message)?;
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(Ended::Failed(e)),
            }
            if self.follow()? {
                self.reconcile(&mut pubsub, &mut subscribed)?;
            }
            if last_heard.elapsed() >= KEEPALIVE {
                self.keepalive(&mut pubsub)?;
                last_heard = Instant::now();
            }
        }
    }

    /// Applies the hub's changes that are waiting. Returns whether there
    /// were any.
    ///
    /// # Errors
    ///
    /// [`Error::HubStopped`] once the hub has stopped.
    fn follow(&mut self) -> Result<bool> {
        if let Err(TryRecvError::Disconnected) = self.abandoned.try_recv() {
            return Err(Error::HubStopped);
        }
        let mut changed = false;
        loop {
            match self.interests.try_recv() {
                Ok(interest) => {
                    self.wanted.apply(interest);
                    changed = true;
                }
                Err(TryRecvError::Empty) => return Ok(changed),
                Err(TryRecvError::Disconnected) => return Err(Error::HubStopped),
            }
        }
    }

    /// Applies the hub's changes as they come until `deadline`, while
    /// waiting to reconnect; returns false if the hub has stopped.
    fn follow_until(&mut self, deadline: Instant) -> bool {
        loop {
            select! {
                recv(self.interests) -> interest => match interest {
                    Ok(interest) => self.wanted.apply(interest),
                    Err(_) => return false,
                },
                recv(self.abandoned) -> _ => return false,
                default(deadline.saturating_duration_since(Instant::now())) => return true,
            }
        }
    }

    /// Subscribes to the wanted rooms not yet subscribed, and unsubscribes
    /// from the others. Redis's answers may take longer than a poll, so
    /// the read timeout is the command timeout meanwhile.
    fn reconcile(&self, pubsub: &mut PubSub<'_>, subscribed: &mut HashSet<Arc<str>>) -> RedisResult<()> {
        let wanted = self.wanted.rooms();
        let channels = |rooms: &mut dyn Iterator<Item = &Arc<str>>| -> Vec<String> {
            rooms.map(|room| Channel { prefix: &self.prefix, room }.name()).collect()
        };
        let join = channels(&mut wanted.difference(subscribed));
        let leave = channels(&mut subscribed.difference(wanted));
        pubsub.set_read_timeout(Some(IO_TIMEOUT))?;
        // One room to a SUBSCRIBE, a round trip each: Redis refuses a
        // command whole when the node's user may not use one of its
        // channels (ACL), and the client library takes that refusal for
        // the answer and drops it, so one room denied would leave every
        // room beside it unsubscribed, without a word.
        for channel in &join {
            pubsub.subscribe(channel)?;
        }
        if !leave.is_empty() {
            pubsub.unsubscribe(&leave)?;
        }
        pubsub.set_read_timeout(Some(POLL))?;
        debug!("backplane: subscribed to {} more and {} fewer rooms", join.len(), leave.len());
        subscribed.clone_from(wanted);
        self.metrics.backplane_subscriptions(subscribed.len());
        Ok(())
    }

    /// Subscribes to where nodes greet each other (see [`Namesake`]); a
    /// refusal of that channel alone is let pass. Once Redis has said yes,
    /// what the others answer this node's greeting reaches it.
    fn listen_for_namesakes(&self, pubsub: &mut PubSub<'_>) -> RedisResult<()> {
        pubsub.set_read_timeout(Some(IO_TIMEOUT))?;
        match pubsub.subscribe(&*self.prefix) {
            Err(e) if connection_failed(&e) => Err(e),
            Err(e) => {
                debug!("backplane: cannot hear other nodes' greetings: {e}");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    fn keepalive(&self, pubsub: &mut PubSub<'_>) -> RedisResult<()> {
        pubsub.set_read_timeout(Some(IO_TIMEOUT))?;
        pubsub.ping::<()>()?;
        pubsub.set_read_timeout(Some(POLL))
    }

    /// Checks one message and hands it to the hub. A message for a room no
    /// longer served here (it was on its way when the last member left) is
    /// dropped.
    ///
    /// # Errors
    ///
    /// [`Error::HubStopped`] once the hub has stopped.
    fn forward(&self, message: &Msg) -> Result<()> {
        if message.get_channel_name() == &*self.prefix {
            self.namesake.heard(message.get_payload_bytes());
            return Ok(());
        }
        let Some(room) =
            Channel::room_of(message.get_channel_name(), &self.prefix).and_then(|r| self.wanted.get(r))
        else {
            return Ok(());
        };
        let opened = match envelope::open(message.get_payload_bytes()) {
            Ok(opened) => opened,
            Err(e) => {
                self.metrics.backplane_rejected();
                debug!("backplane: message on {} refused: {e}", message.get_channel_name());
                return Ok(());
            }
        };
        if opened.origin == &*self.node_id {
            return Ok(());
        }
        let Some(frame) =
            Frame::from_wire(opened.frame).filter(|frame| frame.payload().len() <= self.max_message)
        else {
            self.metrics.backplane_rejected();
            debug!(
                "backplane: message from node {} on {} refused: not one text or binary frame of a message of at \
                 most {} bytes",
                String::from_utf8_lossy(opened.origin),
                message.get_channel_name(),
                self.max_message
            );
            return Ok(());
        };
        self.metrics.backplane_received();
        self.hub.deliver(room.clone(), frame)
    }
}
