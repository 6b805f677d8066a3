//! The scale-out backplane: rooms shared between server nodes through Redis pub/sub.
//!
//! Each room is a Redis channel named `channel_prefix` + room. A node
//! publishes every room message sent on it, and subscribes to the channels
//! of the rooms it has members in, and only those, so that it does not
//! receive traffic for rooms it does not serve.
//!
//! ```text
//! hub ──try_send──► publish queue ──► publisher thread ──PUBLISH───► Redis
//! hub ──try_send──► interests ──────► subscriber thread ─SUBSCRIBE─► Redis
//! hub ◄──Deliver─────────────────────  subscriber thread ◄─message── Redis
//! ```
//!
//! **The hub never waits on Redis.** It hands each room message to the
//! publisher thread with `try_send` on a bounded queue; when the queue is
//! full or Redis is down, the message is still delivered on this node, and
//! is counted as not relayed. The subscriber thread hands what other nodes
//! published to the hub as a [`Deliver`](crate::hub) command, which reaches
//! the local members only and is never published again.
//!
//! **What crosses Redis is the frame itself.** A [`Frame`](crate::Frame) is
//! an unmasked server frame, the same bytes for every recipient, so the
//! receiving node delivers exactly the bytes the sending node encoded,
//! inside a small envelope that names the node it came from
//! ([`envelope`]). Redis echoes a node's messages back to it, since it is
//! subscribed to its own rooms: the envelope lets it drop them, so that its
//! clients get each message once, from the hub, at once.
//!
//! **Order per sender.** A node's messages go out in the order the hub
//! handled them, over one connection, and Redis delivers a channel's
//! messages in the order they were published; the subscriber forwards them
//! to the hub in the order they arrive, on the hub's one command queue.
//!
//! **Delivery is at most once.** Redis pub/sub keeps nothing for a node
//! that is not listening: what is published while a node is disconnected,
//! or in the few milliseconds before its subscription to a new room takes
//! effect, does not reach it. Nothing is ever delivered twice.
//!
//! **When Redis goes away** each thread reconnects on its own with
//! exponential backoff (100 ms doubling up to 1 s, with jitter), the
//! subscriber subscribes again to every room the node serves, and the
//! health of both connections is logged once per change and shown in
//! `/metrics` and `/stats` ([`health`]).
//!
//! This module is the only one that names the `redis` crate's types.

mod envelope;
mod health;
mod interest;
mod publisher;
mod redaction;
mod subscriber;

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use log::{info, warn};

use self::health::Health;
#[cfg(test)]
pub(crate) use self::interest::Interest;
use self::interest::Interests;
pub(crate) use self::publisher::Outgoing;
use self::publisher::Publisher;
use self::redaction::Passwords;
pub(crate) use self::redaction::redact_url;
use self::subscriber::Subscriber;
use crate::config::BackplaneConfig;
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::hub::HubHandle;
use crate::metrics::Metrics;

/// How long connecting to Redis may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command (a pipeline of publishes, a subscribe, a ping) may
/// wait on Redis before the connection is taken for dead.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle connections ping Redis this often, so that a Redis that vanished
/// without closing the connection is noticed, and a publisher whose
/// connection was closed reconnects before it has something to send.
const KEEPALIVE: Duration = Duration::from_secs(1);
/// The first wait before reconnecting, and the most it grows to (each wait
/// is then spread between half and one and a half times that). A reconnect
/// costs Redis a connection and a SUBSCRIBE per node, which it takes in
/// stride every second; a short ceiling makes rooms span nodes again
/// within about a second of Redis coming back.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(1);

/// The backplane's two threads, owned by the [`Server`](crate::Server).
#[derive(Debug)]
pub(crate) struct Backplane {
    threads: Vec<JoinHandle<()>>,
    /// Disconnected once both threads have ended: each holds a sender.
    all_done: Receiver<()>,
    /// Dropped with the backplane, which tells the subscriber to end if the
    /// hub never ran; see [`Subscriber::abandoned`].
    _abandon: Sender<()>,
}

/// The hub's side of the backplane: where it hands room messages to be
/// published, and the rooms it has members in. Owned by the hub thread;
/// dropping it (when the hub ends) ends the backplane's threads.
#[derive(Debug)]
pub(crate) struct Relay {
    outgoing: Sender<Outgoing>,
    interests: Interests,
    metrics: Arc<Metrics>,
}

/// What is wrong with `url` as a Redis URL the backplane can use, if anything.
pub(crate) fn url_problem(url: &str) -> Option<&'static str> {
    if url.starts_with("rediss://") || url.starts_with("valkeys://") {
        return Some("must not be rediss://: TLS to Redis is not built in");
    }
    if !url.starts_with("redis://") && !url.starts_with("redis+unix://") && !url.starts_with("unix://") {
        return Some("must be a redis:// or redis+unix:// URL");
    }
    redis::Client::open(url).err().map(|_| "is not a valid Redis URL")
}

impl Backplane {
    /// Starts the publisher and subscriber threads. They connect in the
    /// background: a Redis that is not there yet is retried, and meanwhile
    /// the node serves its own clients as a single node would.
    ///
    /// `max_frame` is the largest frame this node would relay itself; a
    /// larger one from elsewhere is refused, as it could not be queued for
    /// a client without closing it as a slow consumer.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the URL does not parse (validation catches that
    /// first); [`Error::Spawn`] if a thread cannot start.
    pub(crate) fn start(
        config: &BackplaneConfig,
        max_frame: usize,
        hub: HubHandle,
        metrics: Arc<Metrics>,
    ) -> Result<(Backplane, Relay)> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|_| Error::Config { field: "backplane.url", problem: "is not a valid Redis URL" })?;
        let url = redact_url(&config.url);
        info!(
            "backplane: node {} shares rooms through {url} on channels {}<room>",
            config.node_id, config.channel_prefix
        );
        let health = Arc::new(Health::new(
            format!("node {} at {url}", config.node_id),
            Passwords::in_url(&config.url),
            metrics.clone(),
        ));
        let node_id: Arc<[u8]> = config.node_id.as_bytes().into();
        let prefix: Arc<str> = config.channel_prefix.as_str().into();
        let (outgoing, outgoing_rx) = bounded(config.publish_queue);
        let (interests, interests_rx) = interest::channel();
        let (done, all_done) = bounded::<()>(0);
        let (abandon, abandoned) = bounded::<()>(0);

        let publisher = Publisher {
            client: client.clone(),
            outgoing: outgoing_rx,
            node_id: node_id.clone(),
            prefix: prefix.clone(),
            health: health.clone(),
            metrics: metrics.clone(),
            _done: done.clone(),
        };
        let subscriber = Subscriber {
            client,
            interests: interests_rx,
            abandoned,
            wanted: Default::default(),
            hub,
            node_id,
            prefix,
            max_frame,
            health,
            metrics: metrics.clone(),
            _done: done,
        };
        let threads = vec![
            spawn("switchboard-pub", move || publisher.run())?,
            spawn("switchboard-sub", move || subscriber.run())?,
        ];
        let relay = Relay { outgoing, interests, metrics };
        Ok((Backplane { threads, all_done, _abandon: abandon }, relay))
    }

    /// Waits until both threads have ended, at most until `deadline` (or a
    /// few polls of the subscriber, if that is later: the connections may
    /// have used the whole shutdown bound); they end once the hub has
    /// stopped and dropped its [`Relay`], the publisher after sending what
    /// was already queued.
    pub(crate) fn join(self, deadline: Instant) {
        let deadline = deadline.max(Instant::now() + 5 * subscriber::POLL);
        match self.all_done.recv_deadline(deadline) {
            Err(RecvTimeoutError::Disconnected) | Ok(()) => {
                self.threads.into_iter().for_each(|thread| drop(thread.join()));
            }
            Err(RecvTimeoutError::Timeout) => {
                warn!(
                    "shutdown timeout: the backplane's Redis connections did not end in time; leaving them"
                );
            }
        }
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map_err(|source| Error::Spawn { name: name.into(), source })
}

impl Relay {
    /// A relay with no threads behind it, for the hub's tests: what it is
    /// given to publish, and the rooms it is told about, wait in the two
    /// receivers.
    #[cfg(test)]
    pub(crate) fn detached(
        publish_queue: usize,
        metrics: Arc<Metrics>,
    ) -> (Relay, Receiver<Outgoing>, Receiver<Interest>) {
        let (outgoing, published) = bounded(publish_queue);
        let (interests, told) = interest::channel();
        (Relay { outgoing, interests, metrics }, published, told)
    }

    /// Hands a room message to the publisher, or counts it as not relayed
    /// when the queue is full: never waits.
    pub(crate) fn publish(&self, room: &Arc<str>, frame: &Frame) {
        match self.outgoing.try_send(Outgoing { room: room.clone(), frame: frame.clone() }) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.backplane_not_relayed(1)
            }
        }
    }

    /// The node has its first member in `room`: subscribe to it.
    pub(crate) fn room_opened(&mut self, room: &Arc<str>) {
        self.interests.opened(room);
    }

    /// The node's last member of `room` has left: unsubscribe.
    pub(crate) fn room_closed(&mut self, room: &Arc<str>) {
        self.interests.closed(room);
    }

    /// After a batch of commands: if a change could not be told since the
    /// last time, tell the subscriber the whole set instead, as `rooms`
    /// lists it.
    pub(crate) fn catch_up(&mut self, rooms: impl FnOnce() -> Vec<Arc<str>>) {
        self.interests.catch_up(rooms);
    }
}
