//! The publisher thread: room messages from the hub, published to Redis in order, in pipelines.
//!
//! One connection carries every message this node publishes, so Redis
//! receives them in the order the hub handled them: the order per sender
//! that the other nodes deliver in. What waits in the queue goes out as one
//! pipeline (up to [`BATCH`] messages or [`BATCH_BYTES`]), one round trip
//! for all, so a busy room costs a round trip per batch, not per message.
//!
//! While Redis is down the thread does not keep what arrives for later: it
//! counts it as not relayed and lets it go. Pub/sub would not keep it for a
//! listener that was away either, and a message from a minute ago delivered
//! after an outage would be more confusing than one never delivered.
//!
//! The same connection carries the greetings and answers by which nodes
//! find another node with their id ([`Namesake`]): the subscriber, which
//! hears greetings, wakes the thread when one is owed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, select};
use log::{debug, warn};
use redis::{Client, Connection, RedisError, RedisResult};

use super::envelope::{Channel, Envelope};
use super::health::{Health, Link};
use super::namesake::{Namesake, Owed};
use super::{CONNECT_TIMEOUT, FIRST_RETRY, IO_TIMEOUT, KEEPALIVE, LAST_RETRY, connection_failed};
use crate::backoff::Backoff;
use crate::frame::Frame;
use crate::log_text::Untrusted;
use crate::metrics::Metrics;

/// The most messages in one pipeline.
const BATCH: usize = 256;
/// A pipeline stops growing past this many frame bytes, so that a batch of
/// large messages does not make one write of hundreds of megabytes.
const BATCH_BYTES: usize = 1 << 20;

/// A room message on its way to Redis.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) room: Arc<str>,
    pub(crate) frame: Frame,
}

/// The most frame bytes waiting for the publisher: the queue's length in
/// messages alone would let a slow Redis hold thousands of the largest
/// messages (4,096 of 1 MiB: 4 GiB). Past it, a message is not relayed.
pub(crate) const MAX_QUEUED_BYTES: usize = 64 << 20;

/// The publisher thread's state; see the module docs.
#[derive(Debug)]
pub(crate) struct Publisher {
    pub(crate) client: Client,
    pub(crate) outgoing: Receiver<Outgoing>,
    /// The frame bytes in `outgoing`, which the relay counts in.
    pub(crate) queued_bytes: Arc<AtomicUsize>,
    pub(crate) node_id: Arc<[u8]>,
    pub(crate) prefix: Arc<str>,
    pub(crate) health: Arc<Health>,
    pub(crate) namesake: Arc<Namesake>,
    pub(crate) metrics: Arc<Metrics>,
    /// Dropped when the thread ends; see [`Backplane::join`](super::Backplane::join).
    pub(crate) _done: Sender<()>,
}

/// Why a connected spell ended.
enum Ended {
    /// The hub has stopped and everything queued was sent: the thread ends.
    HubStopped,
    /// Redis failed; reconnect.
    Failed(RedisError),
}

impl Publisher {
    /// The thread body: connect, publish until Redis fails, wait, again;
    /// until the hub stops. The wait starts over only once Redis has taken
    /// a command: one that accepts connections but refuses every PUBLISH
    /// (a user without channel rights) is tried again at the backoff's
    /// pace, not every tenth of a second.
    pub(crate) fn run(self) {
        let mut backoff = Backoff::new(FIRST_RETRY, LAST_RETRY);
        loop {
            match self.connect() {
                Ok(mut connection) => {
                    self.health.up(Link::Publisher);
                    match self.serve(&mut connection, &mut backoff) {
                        Ended::HubStopped => return,
                        Ended::Failed(e) => self.health.failed(Link::Publisher, &e),
                    }
                }
                Err(e) => self.health.failed(Link::Publisher, &e),
            }
            if !self.discard_until(Instant::now() + backoff.next_delay()) {
                return;
            }
        }
    }

    /// Sends the other nodes the greeting or answer this node owes them
    /// (see [`Namesake`]), if any. When the connection fails it stays owed,
    /// for the next one; a Redis that refuses the greetings' channel may
    /// still take the rooms', and is not asked again until something new
    /// is owed.
    fn pay(&self, connection: &mut Connection) -> RedisResult<()> {
        let Some(owed) = self.namesake.take_owed() else { return Ok(()) };
        let sent =
            redis::cmd("PUBLISH").arg(&*self.prefix).arg(self.namesake.message(owed)).query::<()>(connection);
        match sent {
            Err(e) if connection_failed(&e) => {
                self.namesake.owe(owed);
                Err(e)
            }
            // Rooms are relayed all the same; but the check that no other
            // node has this node's id is off, and two such nodes drop each
            // other's messages without a word: worth a warning, once.
            Err(e) if owed == Owed::Greeting && self.namesake.first_refusal() => {
                warn!(
                    "backplane: Redis refused this node's greeting to the other nodes ({e}): a node started \
                     with the same --node-id would go unnoticed, and the two would drop each other's room \
                     messages; let the node's Redis user use the channel {:?} (the prefix alone)",
                    &*self.prefix
                );
                Ok(())
            }
            Err(e) => {
                let what = if owed == Owed::Greeting { "greeting" } else { "answering" };
                debug!("backplane: {what} the other nodes failed: {e}");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    fn connect(&self) -> RedisResult<Connection> {
        let connection = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        connection.set_read_timeout(Some(IO_TIMEOUT))?;
        connection.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(connection)
    }

    /// Publishes what arrives, and what the node owes the others, until
    /// Redis fails or the hub stops.
    fn serve(&self, connection: &mut Connection, backoff: &mut Backoff) -> Ended {
        let mut batch = Vec::with_capacity(BATCH);
        let mut refusal_told = false;
        loop {
            if let Err(e) = self.pay(connection) {
                return Ended::Failed(e);
            }
            let first = select! {
                recv(self.outgoing) -> first => match first {
                    Ok(first) => self.taken(first),
                    Err(_) => return Ended::HubStopped,
                },
                recv(self.namesake.rung()) -> _ => continue,
                default(KEEPALIVE) => match redis::cmd("PING").query::<()>(connection) {
                    Ok(()) => {
                        backoff.reset();
                        continue;
                    }
                    Err(e) => return Ended::Failed(e),
                },
            };
            let mut bytes = first.frame.len();
            batch.push(first);
            while batch.len() < BATCH && bytes < BATCH_BYTES {
                let Ok(next) = self.outgoing.try_recv() else { break };
                bytes += next.frame.len();
                batch.push(self.taken(next));
            }
            let published = self.publish(connection, &batch);
            let sent = batch.len();
            batch.clear();
            match published {
                Ok(refused) => {
                    backoff.reset();
                    self.metrics.backplane_published(sent - refused.len());
                    if let Some((room, e)) = refused.first() {
                        let n = refused.len();
                        self.metrics.backplane_not_relayed(n);
                        let room = Untrusted(room);
                        if refusal_told {
                            debug!(
                                "backplane: Redis refused to publish {n} room message(s) (room \"{room}\": {e})"
                            );
                        } else {
                            warn!(
                                "backplane: Redis refused to publish {n} room message(s) (the first to room \
                                 \"{room}\": {e}): the node's Redis user may not publish to those rooms' \
                                 channels; they are delivered on this node only (counted in \
                                 switchboard_backplane_not_relayed_total); further refusals on this connection \
                                 are logged at debug level"
                            );
                            refusal_told = true;
                        }
                    }
                }
                Err(e) => {
                    // Some of the batch may have reached Redis before it
                    // failed; which ones cannot be known. Counting them all
                    // keeps "not relayed" an upper bound, never an excuse.
                    self.metrics.backplane_not_relayed(sent);
                    return Ended::Failed(e);
                }
            }
        }
    }

    /// One pipeline of PUBLISH commands, one round trip; returns Redis's
    /// refusals of single messages, which leave the connection good, with
    /// their rooms.
    fn publish(
        &self,
        connection: &mut Connection,
        batch: &[Outgoing],
    ) -> RedisResult<Vec<(Arc<str>, RedisError)>> {
        let mut pipeline = redis::pipe();
        pipeline.ignore_errors();
        for Outgoing { room, frame } in batch {
            pipeline
                .cmd("PUBLISH")
                .arg(Channel { prefix: &self.prefix, room })
                .arg(Envelope { origin: &self.node_id, frame });
        }
        let replies: Vec<RedisResult<i64>> = pipeline.query(connection)?;
        let mut refused = Vec::new();
        for (reply, Outgoing { room, .. }) in replies.into_iter().zip(batch) {
            match reply {
                Ok(_receivers) => {}
                // A Redis user allowed some channels only (an ACL): that
                // room's message stays on this node, and the others go on.
                // Any client can name a room, so one denied room must not
                // take the relay of every room down with it.
                Err(e) if e.code() == Some("NOPERM") => refused.push((room.clone(), e)),
                Err(e) => return Err(e),
            }
        }
        Ok(refused)
    }

    /// A message taken from the queue: its bytes no longer count there.
    fn taken(&self, outgoing: Outgoing) -> Outgoing {
        self.queued_bytes.fetch_sub(outgoing.frame.len(), Ordering::Relaxed);
        outgoing
    }

    /// Waits until `deadline`, counting whatever arrives meanwhile as not
    /// relayed; returns false if the hub has stopped.
    fn discard_until(&self, deadline: Instant) -> bool {
        loop {
            match self.outgoing.recv_deadline(deadline) {
                Ok(outgoing) => {
                    self.taken(outgoing);
                    self.metrics.backplane_not_relayed(1);
                }
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }
}
