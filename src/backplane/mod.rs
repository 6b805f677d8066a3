//! The scale-out backplane: rooms shared between server nodes through Redis pub/sub.
//!
//! Each room is a Redis channel named `channel_prefix` + `/` + room. A node
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
//! **Credentials are checked once, at the start.** Before its threads
//! start, the backplane connects once and pings: a Redis that refuses the
//! password, or wants one and was given none, makes
//! [`Server::bind`](crate::Server::bind) fail with [`Error::RedisAuth`], as
//! retrying could never succeed. A Redis that cannot be reached is not an
//! error: the threads retry it. A refusal after the start (the password
//! changed on Redis, then a reconnect) is retried like an outage, so that
//! the node comes back once the two agree again.
//!
//! **`rediss://`** is TLS with rustls: the server's certificate is checked
//! against the system's roots, or only against the authorities the
//! configuration names ([`BackplaneConfig::ca_certificate_pem`]).
//!
//! This module is the only one that names the `redis` crate's types.

mod envelope;
mod health;
mod interest;
mod namesake;
mod overflow;
mod publisher;
mod redaction;
mod subscriber;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use log::{info, warn};

use self::health::Health;
#[cfg(test)]
pub(crate) use self::interest::Interest;
use self::interest::Interests;
use self::namesake::Namesake;
use self::overflow::Overflow;
pub(crate) use self::publisher::Outgoing;
use self::publisher::{MAX_QUEUED_BYTES, Publisher};
use self::redaction::Passwords;
pub use self::redaction::redact_url;
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
    /// The frame bytes waiting in `outgoing`, at most [`MAX_QUEUED_BYTES`].
    queued_bytes: Arc<AtomicUsize>,
    interests: Interests,
    metrics: Arc<Metrics>,
    overflow: Overflow,
}

/// What is wrong with `url` as a Redis URL the backplane can use, if anything.
pub(crate) fn url_problem(url: &str) -> Option<&'static str> {
    const SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis+unix://", "unix://"];
    if !SCHEMES.iter().any(|scheme| url.starts_with(scheme)) {
        return Some("must be a redis://, rediss:// or redis+unix:// URL");
    }
    let parsed = redis::parse_redis_url(url);
    if parsed.as_ref().is_some_and(|parsed| parsed.fragment() == Some("insecure")) {
        return Some(
            "must not end in #insecure: the certificate of a rediss:// server is always checked \
             (trust a private CA with backplane.ca_certificate_pem)",
        );
    }
    // The query's password is read only for a Unix socket: over TCP it
    // would be sent nowhere, and Redis answer that none was given.
    let tcp_query_password = parsed.is_some_and(|parsed| {
        matches!(parsed.scheme(), "redis" | "rediss")
            && parsed.query_pairs().any(|(name, _)| redaction::is_password_parameter(&name))
    });
    if tcp_query_password {
        return Some(
            "holds its password in the query, which only a Unix socket's URL may: write \
             redis://user:password@host, or give it with backplane.password",
        );
    }
    redis::Client::open(url).err().map(|_| "is not a valid Redis URL")
}

/// Returns true if and only if `url`, a Redis URL, holds a password, in
/// any of the forms the redis crate reads (`user:password@`, or the
/// query's `password=`), as [`redact_redis_url`](crate::redact_redis_url)
/// hides it.
///
/// ```
/// assert!(switchboard::redis_url_has_password("redis://app:hunter2@db:6379"));
/// assert!(!switchboard::redis_url_has_password("redis://db:6379"));
/// ```
pub fn url_has_password(url: &str) -> bool {
    redis::IntoConnectionInfo::into_connection_info(url)
        .is_ok_and(|info| info.redis_settings().password().is_some())
}

/// Returns true if and only if `url` reaches Redis over TLS.
pub(crate) fn url_is_tls(url: &str) -> bool {
    redis::parse_redis_url(url).is_some_and(|parsed| parsed.scheme() == "rediss")
}

/// The client the backplane's connections are made with: the URL, the
/// password when it is given apart from it, and for `rediss://` the
/// authorities its certificate is checked against.
fn client(config: &BackplaneConfig) -> redis::RedisResult<redis::Client> {
    let mut info = redis::IntoConnectionInfo::into_connection_info(config.url.as_str())?;
    if let Some(password) = &config.password {
        // Validation has checked that it is UTF-8.
        let password = String::from_utf8_lossy(password.expose());
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    match &config.ca_certificate_pem {
        Some(pem) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) },
        ),
        None => redis::Client::open(info),
    }
}

/// Returns true if and only if `error` is Redis turning the node's
/// credentials down: a password it refuses (`AUTH` failing, `WRONGPASS`),
/// or none where it wants one (`NOAUTH`).
pub(crate) fn refuses_credentials(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("NOAUTH" | "WRONGPASS"))
}

/// Whether `error` is the connection failing, rather than Redis refusing
/// one command on a connection that is still good.
pub(crate) fn connection_failed(error: &redis::RedisError) -> bool {
    error.is_io_error() || error.is_timeout() || error.is_connection_dropped()
}

/// How a failed connection is told in the log. A command that Redis did
/// not answer in time fails as the socket's timeout does, with `EAGAIN`,
/// which reads "Resource temporarily unavailable", and a connection that
/// timed out with `ETIMEDOUT`: both are named for what they are.
pub(crate) fn failure_text(error: &redis::RedisError) -> String {
    if error.is_timeout() { format!("Redis did not answer in time ({error})") } else { error.to_string() }
}

/// Connects once and pings, to find out before the server starts whether
/// Redis takes the node's credentials. Only a refusal is an error: a Redis
/// that cannot be reached now is the threads' to retry.
fn check_credentials(client: &redis::Client, redis: &str, passwords: &Passwords) -> Result<()> {
    let attempt = || -> redis::RedisResult<()> {
        let mut connection = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        connection.set_read_timeout(Some(IO_TIMEOUT))?;
        connection.set_write_timeout(Some(IO_TIMEOUT))?;
        redis::cmd("PING").query::<()>(&mut connection)
    };
    match attempt() {
        Err(e) if refuses_credentials(&e) => {
            // The crate keeps the server's answer to AUTH to itself.
            let reason = match (e.kind(), e.code(), e.detail()) {
                (redis::ErrorKind::AuthenticationFailed, ..) => "AUTH failed".to_owned(),
                (_, Some(code), Some(detail)) => format!("{code} {detail}"),
                _ => e.to_string(),
            };
            Err(Error::RedisAuth { redis: redis.to_owned(), reason: passwords.scrub(&reason) })
        }
        Ok(()) | Err(_) => Ok(()),
    }
}

impl Backplane {
    /// Checks that Redis takes the node's credentials, then starts the
    /// publisher and subscriber threads. They connect in the background: a
    /// Redis that is not there yet is retried, and meanwhile the node serves
    /// its own clients as a single node would.
    ///
    /// `max_message` is the largest message this node takes from its own
    /// clients (`--max-message-size`); a larger one from elsewhere is
    /// refused, as this node's limit is what its clients were promised, and
    /// what their outboxes are sized for.
    ///
    /// # Errors
    ///
    /// [`Error::RedisAuth`] if Redis refuses the credentials;
    /// [`Error::Config`] if the URL does not parse (validation catches that
    /// first); [`Error::Spawn`] if a thread cannot start.
    pub(crate) fn start(
        config: &BackplaneConfig,
        max_message: usize,
        hub: HubHandle,
        metrics: Arc<Metrics>,
    ) -> Result<(Backplane, Relay)> {
        let client = client(config)
            .map_err(|_| Error::Config { field: "backplane.url", problem: "is not a valid Redis URL" })?;
        let url = redact_url(&config.url);
        let mut passwords = Passwords::in_url(&config.url);
        if let Some(password) = &config.password {
            passwords.add(&String::from_utf8_lossy(password.expose()));
        }
        check_credentials(&client, &url, &passwords)?;
        info!(
            "backplane: node {} shares rooms through {url} on channels {}/<room>",
            config.node_id, config.channel_prefix
        );
        let health =
            Arc::new(Health::new(format!("node {} at {url}", config.node_id), passwords, metrics.clone()));
        let node_id: Arc<[u8]> = config.node_id.as_bytes().into();
        let namesake = Arc::new(Namesake::new(node_id.clone()));
        let prefix: Arc<str> = config.channel_prefix.as_str().into();
        let (outgoing, outgoing_rx) = bounded(config.publish_queue);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let (interests, interests_rx) = interest::channel();
        let (done, all_done) = bounded::<()>(0);
        let (abandon, abandoned) = bounded::<()>(0);

        let publisher = Publisher {
            client: client.clone(),
            outgoing: outgoing_rx,
            queued_bytes: queued_bytes.clone(),
            node_id: node_id.clone(),
            prefix: prefix.clone(),
            health: health.clone(),
            namesake: namesake.clone(),
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
            max_message,
            health,
            namesake,
            metrics: metrics.clone(),
            _done: done,
        };
        let threads = vec![
            spawn("switchboard-pub", move || publisher.run())?,
            spawn("switchboard-sub", move || subscriber.run())?,
        ];
        let relay = Relay { outgoing, queued_bytes, interests, metrics, overflow: Overflow::default() };
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
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        (Relay { outgoing, queued_bytes, interests, metrics, overflow: Overflow::default() }, published, told)
    }

    /// Hands a room message to the publisher, or counts it as not relayed
    /// when the queue is full, in messages or in bytes: never waits.
    pub(crate) fn publish(&mut self, room: &Arc<str>, frame: &Frame) {
        let len = frame.len();
        let queued = self.queued_bytes.fetch_add(len, Ordering::Relaxed) + len <= MAX_QUEUED_BYTES
            && self.outgoing.try_send(Outgoing { room: room.clone(), frame: frame.clone() }).is_ok();
        if !queued {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            self.metrics.backplane_not_relayed(1);
            self.overflow.note(Instant::now());
        }
    }

    /// Tells the log of room messages a full queue turned away that it has
    /// not told of yet, once that is due.
    pub(crate) fn sweep(&mut self, now: Instant) {
        self.overflow.sweep(now);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publish_queue_is_bounded_in_bytes_as_well_as_in_messages() {
        let metrics = Arc::new(Metrics::with_backplane("test"));
        let (mut relay, published, _told) = Relay::detached(64, metrics.clone());
        let room: Arc<str> = "big".into();
        // One payload shared by every clone: a fifth of the bytes allowed.
        let large = Frame::binary(vec![0u8; MAX_QUEUED_BYTES / 5]);
        for _ in 0..6 {
            relay.publish(&room, &large);
        }
        assert_eq!(published.len(), 4, "five would pass the bound: the frame's header counts too");
        assert_eq!(metrics.backplane_not_relayed_total(), 2);
        // A small message still fits.
        relay.publish(&room, &Frame::text("hi"));
        assert_eq!(published.len(), 5);
        assert_eq!(relay.queued_bytes.load(Ordering::Relaxed), 4 * large.len() + Frame::text("hi").len());
    }
}
