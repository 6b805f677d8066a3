//! The client side: one program holding several WebSocket connections at
//! once, each kept up by itself.
//!
//! A [`Client`] is given named [`Endpoint`]s, each with its own URL,
//! subprotocols and headers. For each it starts a *line*: a thread that
//! connects, reads, notices when the connection drops, and connects again
//! after a backoff with jitter. Each live connection also has a writer
//! thread, for the reason the server has one: tungstenite answers pings from
//! inside `read()`, and frames from two threads must never interleave, so one
//! thread does all the writing (messages, pings, pongs, the close).
//!
//! Everything that happens on every line arrives, tagged with the line's
//! name, on one channel of [`Event`]s: that is how the program tells its
//! connections apart and hears about each one's state.
//!
//! ```no_run
//! use switchboard::client::{Client, ClientConfig, Endpoint, Event};
//!
//! let client = Client::start(
//!     vec![
//!         Endpoint::new("chat", "ws://127.0.0.1:9001/ws/lobby").subprotocol("chat.v1"),
//!         Endpoint::new("echo", "ws://127.0.0.1:9001/echo"),
//!     ],
//!     ClientConfig::default(),
//! )?;
//! for event in client.events().iter() {
//!     match event {
//!         Event::Connected { line, .. } => client.send(&line, "hello")?,
//!         Event::Message { line, message } => println!("[{line}] {message}"),
//!         other => println!("{other}"),
//!     }
//! }
//! # Ok::<(), switchboard::client::ClientError>(())
//! ```

mod handshake;
mod line;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use tungstenite::Message;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::protocol::frame::coding::CloseCode;

use self::handshake::{Dialing, Target};
use self::line::{GOODBYE, Line, Live, Outgoing, Unsent};
use crate::http::is_token;
use crate::log_text::Shown;
use crate::tls::TlsConnector;

/// A type with no values: the stop channel carries nothing; dropping its
/// sender is the signal.
#[derive(Debug)]
pub(crate) enum Never {}

/// One connection to keep: a name for it, and where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// How events name this connection.
    pub name: String,
    /// A `ws://` or `wss://` URL.
    pub url: String,
    /// Subprotocols to offer, in order of preference.
    pub subprotocols: Vec<String>,
    /// Extra headers for the upgrade request, such as
    /// `("Authorization", "Bearer ...")`.
    pub headers: Vec<(String, String)>,
}

impl Endpoint {
    /// An endpoint with no subprotocols or extra headers.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Endpoint { name: name.into(), url: url.into(), subprotocols: Vec::new(), headers: Vec::new() }
    }

    /// Also offers `subprotocol`.
    pub fn subprotocol(mut self, subprotocol: impl Into<String>) -> Self {
        self.subprotocols.push(subprotocol.into());
        self
    }

    /// Also sends the header `name: value`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// What keeps a subprotocol or a header from going into the upgrade
    /// request as given, if anything. They are written as they are: a line
    /// break in one would add headers of its own, or a second request.
    fn problem(&self) -> Option<String> {
        /// Headers the client writes itself; a second would break the
        /// handshake, or the check of the server's chosen subprotocol.
        const OWN: [&str; 7] = [
            "host",
            "upgrade",
            "connection",
            "sec-websocket-key",
            "sec-websocket-version",
            "sec-websocket-protocol",
            "sec-websocket-extensions",
        ];
        if let Some(bad) = self.subprotocols.iter().find(|p| !is_token(p)) {
            return Some(format!("subprotocol {bad:?} is not an HTTP token"));
        }
        self.headers.iter().find_map(|(name, value)| {
            if !is_token(name) {
                Some(format!("header name {name:?} is not an HTTP token"))
            } else if OWN.iter().any(|own| name.eq_ignore_ascii_case(own)) {
                Some(format!(
                    "header {name} is the client's own to write (subprotocols: Endpoint::subprotocol)"
                ))
            } else if value.contains(['\r', '\n', '\0']) {
                Some(format!("the value of header {name} holds a CR, LF or NUL"))
            } else {
                None
            }
        })
    }
}

/// What to do when a connection drops. Either way a line ends when its
/// first connection fails, or when the server refuses a reconnection for
/// good (401, 403, 404, and the other client errors but 408 and 429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// End the line.
    Never,
    /// Connect again after `first`, then twice as long after each failure
    /// up to `max`, each wait spread at random by half either way.
    Backoff {
        /// The first wait.
        first: Duration,
        /// The longest wait.
        max: Duration,
    },
}

/// How every line of a [`Client`] behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The client pings every connection this often. Default 20 s.
    pub ping_interval: Duration,
    /// A connection from which nothing (not even a pong) arrives for a ping
    /// interval and this long is taken for dead. Default 10 s.
    pub pong_timeout: Duration,
    /// Connecting, TLS and the upgrade together. Default 10 s.
    pub connect_timeout: Duration,
    /// Default: back off from 0.5 s to 30 s.
    pub reconnect: Reconnect,
    /// Certificates to trust for wss:// besides the system's store, in PEM:
    /// a test server's self-signed one, say. Default none.
    pub extra_roots_pem: Option<Vec<u8>>,
    /// tungstenite's limits on incoming messages. Default 16 MiB messages,
    /// 4 KiB read buffer.
    pub websocket: WebSocketConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            reconnect: Reconnect::Backoff { first: Duration::from_millis(500), max: Duration::from_secs(30) },
            extra_roots_pem: None,
            websocket: WebSocketConfig::default()
                .read_buffer_size(4096)
                .max_message_size(Some(16 << 20))
                .max_frame_size(Some(16 << 20)),
        }
    }
}

impl ClientConfig {
    /// Refuses durations that would make a line spin: pinging, or
    /// reconnecting, with no wait between tries.
    fn check(&self) -> Result<(), ClientError> {
        let zero = |field: &'static str| ClientError::Config { field, problem: "must be more than zero" };
        if self.ping_interval.is_zero() {
            return Err(zero("ping_interval"));
        }
        if self.pong_timeout.is_zero() {
            return Err(zero("pong_timeout"));
        }
        if self.connect_timeout.is_zero() {
            return Err(zero("connect_timeout"));
        }
        if let Reconnect::Backoff { first, max } = self.reconnect {
            if first.is_zero() {
                return Err(zero("reconnect's first wait"));
            }
            if max < first {
                return Err(ClientError::Config {
                    field: "reconnect's longest wait",
                    problem: "must be at least its first",
                });
            }
        }
        Ok(())
    }
}

/// What went wrong on the client side; later versions may tell more apart,
/// so a `match` needs an arm for the rest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL cannot be used.
    #[error("bad URL {url:?}: {problem}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// An endpoint's subprotocol or header cannot go into a request as
    /// given.
    #[error("connection {line:?}: {problem}")]
    Endpoint {
        /// The endpoint's name.
        line: String,
        /// What is wrong.
        problem: String,
    },
    /// No TCP connection could be made.
    #[error("cannot connect to {address}")]
    Connect {
        /// `host:port`.
        address: String,
        /// Why, such as "connection refused".
        #[source]
        source: io::Error,
    },
    /// The TLS handshake failed: an untrusted certificate, a plain-text
    /// server, ...
    #[error("TLS handshake failed")]
    Tls(#[source] io::Error),
    /// The certificates to trust besides the system's
    /// ([`ClientConfig::extra_roots_pem`]) are none, or one does not
    /// parse: no handshake was tried.
    #[error("the certificates to trust")]
    Trust(#[source] crate::Error),
    /// The server answered the upgrade with an HTTP error.
    #[error("upgrade refused: {status} {body}")]
    Refused {
        /// The HTTP status, such as 401.
        status: u16,
        /// What the server said, trimmed.
        body: String,
    },
    /// The server's answer broke RFC 6455.
    #[error("bad upgrade answer: {problem}")]
    Handshake {
        /// What was wrong.
        problem: String,
    },
    /// Connecting took longer than the connect timeout.
    #[error("timed out")]
    Timeout,
    /// An I/O error.
    #[error("i/o error")]
    Io(#[from] io::Error),
    /// No line has this name.
    #[error("no connection named {0:?}")]
    NoSuchLine(String),
    /// Two lines were given the same name.
    #[error("two connections are named {0:?}")]
    DuplicateLine(String),
    /// A [`ClientConfig`] field is out of bounds.
    #[error("client configuration: {field} {problem}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The line is not connected right now (it is reconnecting, or ended).
    #[error("{0} is not connected")]
    NotConnected(Arc<str>),
    /// The line's queue of outgoing messages is full.
    #[error("{0} has too much to send already")]
    Busy(Arc<str>),
    /// [`Client::close`] was called: no line takes messages any more.
    #[error("{0} takes no more messages: the client was closed")]
    Closed(Arc<str>),
}

impl ClientError {
    /// Whether the same request cannot fare better later: the server
    /// refused the upgrade with a client error (401, 403, 404...) other
    /// than 408 (too slow) and 429 (too many).
    fn is_final(&self) -> bool {
        matches!(self, ClientError::Refused { status, .. }
            if (400..500).contains(status) && !matches!(status, 408 | 429))
    }
}

/// Something that happened on a line; later versions may tell more apart,
/// so a `match` needs an arm for the rest.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// Connected, or connected again, speaking `subprotocol` if the server
    /// chose one.
    Connected {
        /// The line.
        line: Arc<str>,
        /// The subprotocol agreed.
        subprotocol: Option<String>,
    },
    /// A text or binary message arrived.
    Message {
        /// The line.
        line: Arc<str>,
        /// The message.
        message: Message,
    },
    /// The connection ended: with a close `code` and `reason` (the
    /// server's, or the client's own when what the server sent was wrong,
    /// with the cause in brackets), or, when `code` is `None`, dropped for
    /// `reason`.
    Closed {
        /// The line.
        line: Arc<str>,
        /// The close code, if there was a close handshake.
        code: Option<CloseCode>,
        /// The close reason, or why the connection dropped.
        reason: String,
    },
    /// A connection attempt failed.
    Failed {
        /// The line.
        line: Arc<str>,
        /// Why.
        error: ClientError,
    },
    /// The line will connect again after this wait.
    Reconnecting {
        /// The line.
        line: Arc<str>,
        /// The wait.
        after: Duration,
    },
    /// The line is done: closed by the client, or given up.
    Ended {
        /// The line.
        line: Arc<str>,
    },
}

impl Event {
    /// The name of the line it happened on.
    pub fn line(&self) -> &str {
        match self {
            Event::Connected { line, .. }
            | Event::Message { line, .. }
            | Event::Closed { line, .. }
            | Event::Failed { line, .. }
            | Event::Reconnecting { line, .. }
            | Event::Ended { line } => line,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Connected { line, subprotocol: Some(p) } => {
                write!(f, "[{line}] connected (subprotocol {p})")
            }
            Event::Connected { line, subprotocol: None } => write!(f, "[{line}] connected"),
            // What the server sends is shown escaped: raw, an escape
            // sequence would drive the terminal, and a line feed forge a
            // line of this client's own.
            Event::Message { line, message: Message::Text(text) } => write!(f, "[{line}] {}", Shown(text)),
            Event::Message { line, message } => {
                let bytes = message.clone().into_data();
                let shown: Vec<String> = bytes.iter().take(32).map(|b| format!("{b:02x}")).collect();
                let more = if bytes.len() > 32 { " ..." } else { "" };
                write!(f, "[{line}] binary, {} bytes: {}{more}", bytes.len(), shown.join(" "))
            }
            Event::Closed { line, code: Some(code), reason } => {
                write!(f, "[{line}] closed: {code} {}", Shown(reason))
            }
            Event::Closed { line, code: None, reason } => write!(f, "[{line}] dropped: {}", Shown(reason)),
            Event::Failed { line, error } => {
                write!(f, "[{line}] error: {}", Shown(&crate::error_chain(error)))
            }
            Event::Reconnecting { line, after } => {
                write!(f, "[{line}] reconnecting in {:.1} s", after.as_secs_f64())
            }
            Event::Ended { line } => write!(f, "[{line}] ended"),
        }
    }
}

/// A line as the client holds it.
#[derive(Debug)]
struct LineHandle {
    name: Arc<str>,
    outgoing: Outgoing,
    dialing: Dialing,
    live: Live,
    /// Disconnects when the line's thread ends.
    running: Receiver<Never>,
    thread: JoinHandle<()>,
}

/// Several WebSocket connections, each kept up by its own line; see the
/// module docs.
#[derive(Debug)]
pub struct Client {
    lines: Vec<LineHandle>,
    by_name: HashMap<Arc<str>, usize>,
    events: Receiver<Event>,
    /// Dropped to tell every line to close.
    stop: Option<Sender<Never>>,
}

/// Outgoing messages one line may have queued.
const OUTGOING: usize = 256;
/// Events waiting for the application; when full, readers wait, and the
/// server's messages wait in TCP.
const EVENTS: usize = 1024;

impl Client {
    /// Starts a line for each endpoint. Events, connection failures
    /// included, arrive on [`events`](Client::events).
    ///
    /// # Errors
    ///
    /// [`ClientError::Config`] for a configuration that would spin (a zero
    /// ping interval or wait), [`ClientError::Trust`] when a line is
    /// `wss://` and `extra_roots_pem` holds no usable certificate,
    /// [`ClientError::Tls`] when TLS cannot be set up otherwise,
    /// [`ClientError::DuplicateLine`] for two lines
    /// of one name, [`ClientError::Endpoint`] for a subprotocol or header
    /// that cannot be written as given, and [`ClientError::Io`] when a
    /// thread cannot be started.
    pub fn start(endpoints: Vec<Endpoint>, config: ClientConfig) -> Result<Client, ClientError> {
        config.check()?;
        let config = Arc::new(config);
        let (events_tx, events) = bounded(EVENTS);
        let (stop, stop_rx) = bounded::<Never>(0);
        let mut names = std::collections::HashSet::new();
        if let Some(twice) = endpoints.iter().find(|e| !names.insert(e.name.as_str())) {
            return Err(ClientError::DuplicateLine(twice.name.clone()));
        }
        if let Some((endpoint, problem)) = endpoints.iter().find_map(|e| e.problem().map(|p| (e, p))) {
            return Err(ClientError::Endpoint { line: endpoint.name.clone(), problem });
        }
        // Reading the system's certificate store takes a while: once for all
        // lines, not once per connection attempt.
        let secure = endpoints.iter().any(|e| Target::parse(&e.url).is_ok_and(|target| target.secure));
        let tls = match secure {
            true => {
                // Certificates to trust that are none are told as such, not
                // as a failed handshake.
                let pinned = match &config.extra_roots_pem {
                    Some(pem) => crate::tls::extra_roots(pem).map_err(ClientError::Trust)?,
                    None => Vec::new(),
                };
                Some(TlsConnector::new(pinned).map_err(|e| ClientError::Tls(io::Error::other(e)))?)
            }
            false => None,
        };
        let mut lines = Vec::new();
        let mut by_name = HashMap::new();
        for endpoint in endpoints {
            let name: Arc<str> = endpoint.name.as_str().into();
            let (outgoing, dialing, live) = (Outgoing::default(), Dialing::default(), Live::default());
            let (running_tx, running) = bounded::<Never>(0);
            let line = Line {
                name: name.clone(),
                endpoint,
                config: config.clone(),
                tls: tls.clone(),
                events: events_tx.clone(),
                outgoing: outgoing.clone(),
                stop: stop_rx.clone(),
                dialing: dialing.clone(),
                live: live.clone(),
                _running: running_tx,
            };
            let thread =
                std::thread::Builder::new().name(format!("client-{name}")).spawn(move || line.run())?;
            by_name.insert(name.clone(), lines.len());
            lines.push(LineHandle { name, outgoing, dialing, live, running, thread });
        }
        Ok(Client { lines, by_name, events, stop: Some(stop) })
    }

    /// Every event from every line, in the order they happened on each.
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    /// The lines' names, in the order they were given.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(|line| &*line.name)
    }

    /// Sends a message on one line, without waiting. It goes out on the
    /// connection up now, after those sent before it, or not at all: one
    /// still queued when its connection drops is dropped with it (as are
    /// those the kernel had not yet delivered), never sent on the next
    /// connection. Delivery is at most once; an application that must not
    /// lose messages has the server acknowledge them, and sends again what
    /// was not acknowledged once [`Event::Connected`] comes again. One sent
    /// before [`close`](Client::close) goes out ahead of the line's 1000, if
    /// the connection takes it within the time [`join`](Client::join)
    /// allows.
    ///
    /// # Errors
    ///
    /// [`ClientError::NoSuchLine`], [`ClientError::NotConnected`] while it
    /// reconnects, [`ClientError::Busy`] when it has 256 messages queued, or
    /// [`ClientError::Closed`] once [`close`](Client::close) has been called.
    pub fn send(&self, line: &str, message: impl Into<Message>) -> Result<(), ClientError> {
        self.send_waiting(line, message, Duration::ZERO)
    }

    /// As [`send`](Client::send), but waits up to `timeout` for room when the
    /// line has 256 messages queued, as a program feeding it from a pipe
    /// should, rather than dropping what it read.
    ///
    /// # Errors
    ///
    /// As [`send`](Client::send); [`ClientError::Busy`] once `timeout` has
    /// passed with the queue still full.
    pub fn send_waiting(
        &self,
        line: &str,
        message: impl Into<Message>,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let index = self.by_name.get(line).ok_or_else(|| ClientError::NoSuchLine(line.to_owned()))?;
        let line = &self.lines[*index];
        line.outgoing.send(message.into(), timeout).map_err(|unsent| match unsent {
            Unsent::Full => ClientError::Busy(line.name.clone()),
            Unsent::Down => ClientError::NotConnected(line.name.clone()),
            Unsent::Closed => ClientError::Closed(line.name.clone()),
        })
    }

    /// Sends a message on every line; returns what happened on each.
    pub fn send_all(&self, message: impl Into<Message>) -> Vec<(&str, Result<(), ClientError>)> {
        self.send_all_waiting(message, Duration::ZERO)
    }

    /// As [`send_all`](Client::send_all), waiting for room as
    /// [`send_waiting`](Client::send_waiting) does, up to `timeout` for all
    /// the lines together.
    pub fn send_all_waiting(
        &self,
        message: impl Into<Message>,
        timeout: Duration,
    ) -> Vec<(&str, Result<(), ClientError>)> {
        let message = message.into();
        let deadline = Instant::now() + timeout;
        let send = |line: &LineHandle| {
            let left = deadline.saturating_duration_since(Instant::now());
            self.send_waiting(&line.name, message.clone(), left)
        };
        self.lines.iter().map(|line| (&*line.name, send(line))).collect()
    }

    /// Tells every line to close its connection with 1000 and end. It
    /// returns at once; each line then reports [`Event::Closed`] (if it was
    /// connected) and [`Event::Ended`]. What was sent before it still goes
    /// out, ahead of the 1000; sends from then on fail with
    /// [`ClientError::Closed`]. Calling it again does nothing.
    pub fn close(&mut self) {
        // Sends end here, not when a writer has emptied its queue: its
        // goodbye sends what is queued first, and an application that went
        // on sending would keep the 1000 waiting for as long as it did.
        for line in &self.lines {
            line.outgoing.close();
        }
        drop(self.stop.take());
        // A connection still being made has no one to say goodbye to: it
        // is hung up on, rather than waited for up to its connect timeout.
        for line in &self.lines {
            line.dialing.hang_up();
        }
    }

    /// Closes every line, if [`close`](Client::close) was not called yet,
    /// and waits for them to end. A line still connected after 3 s (a
    /// server that stopped reading, or stopped answering) is hung up on, and
    /// one still connecting at once (one still looking its host's name up
    /// takes as long as the lookup). Events not read yet are dropped.
    pub fn join(mut self) {
        self.close();
        // The events channel is bounded: keep it drained while the lines
        // say goodbye, or a line could wait on it forever.
        let events = self.events.clone();
        let drain = std::thread::spawn(move || while events.recv().is_ok() {});
        let deadline = Instant::now() + GOODBYE;
        for line in &self.lines {
            if let Err(RecvTimeoutError::Timeout) = line.running.recv_deadline(deadline) {
                line.live.hang_up();
            }
        }
        for line in self.lines.drain(..) {
            let _ = line.thread.join();
        }
        drop(self.events);
        let _ = drain.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_that_would_spin_is_refused() {
        let endpoints = || vec![Endpoint::new("a", "ws://127.0.0.1:1/")];
        let zero = Duration::ZERO;
        let spinning = [
            ClientConfig { ping_interval: zero, ..ClientConfig::default() },
            ClientConfig { pong_timeout: zero, ..ClientConfig::default() },
            ClientConfig { connect_timeout: zero, ..ClientConfig::default() },
            ClientConfig {
                reconnect: Reconnect::Backoff { first: zero, max: Duration::from_secs(1) },
                ..ClientConfig::default()
            },
            ClientConfig {
                reconnect: Reconnect::Backoff { first: Duration::from_secs(2), max: Duration::from_secs(1) },
                ..ClientConfig::default()
            },
        ];
        for config in spinning {
            let refused = Client::start(endpoints(), config.clone());
            assert!(matches!(refused, Err(ClientError::Config { .. })), "{config:?}");
        }
        let never = ClientConfig { reconnect: Reconnect::Never, ..ClientConfig::default() };
        let mut client = Client::start(endpoints(), never).unwrap();
        client.close();
    }

    #[test]
    fn what_the_server_sends_is_shown_escaped() {
        let line: Arc<str> = "a".into();
        let message = Event::Message {
            line: line.clone(),
            message: Message::text("evil\x1b[2J\x07\r\n[a] closed: 1000"),
        };
        assert_eq!(message.to_string(), "[a] evil\\u{1b}[2J\\u{7}\\r\\n[a] closed: 1000");
        let closed =
            Event::Closed { line, code: Some(CloseCode::Normal), reason: "bye\x1b]0;title\x07".into() };
        assert_eq!(closed.to_string(), "[a] closed: 1000 bye\\u{1b}]0;title\\u{7}");
    }

    #[test]
    fn two_lines_with_one_name_are_refused_before_any_starts() {
        let endpoints =
            vec![Endpoint::new("a", "ws://127.0.0.1:1/"), Endpoint::new("a", "ws://127.0.0.1:2/")];
        match Client::start(endpoints, ClientConfig::default()) {
            Err(ClientError::DuplicateLine(name)) => assert_eq!(name, "a"),
            other => panic!("expected DuplicateLine, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_header_or_subprotocol_that_would_break_the_request_is_refused_before_any_starts() {
        let line = || Endpoint::new("a", "ws://127.0.0.1:1/");
        let cases = [
            (line().header("X-Tenant", "blue\r\nX-Admin: yes"), "CR, LF or NUL"),
            (line().header("X Tenant", "blue"), "not an HTTP token"),
            (line().header("", "blue"), "not an HTTP token"),
            (line().header("host", "elsewhere"), "the client's own"),
            (line().header("Sec-WebSocket-Protocol", "chat"), "the client's own"),
            (line().header("Sec-WebSocket-Extensions", "permessage-deflate"), "the client's own"),
            (line().subprotocol("chat, admin"), "not an HTTP token"),
        ];
        for (endpoint, expected) in cases {
            let shown = format!("{endpoint:?}");
            match Client::start(
                vec![line(), Endpoint { name: "b".into(), ..endpoint }],
                ClientConfig::default(),
            ) {
                Err(error @ ClientError::Endpoint { .. }) => {
                    let error = error.to_string();
                    assert!(
                        error.starts_with("connection \"b\"") && error.contains(expected),
                        "{shown}: {error}"
                    );
                }
                other => panic!("{shown}: expected Endpoint, got {:?}", other.map(|_| ())),
            }
        }
        let fine = line().subprotocol("v2.chat").header("Authorization", "Bearer a+b/c==\tx");
        let mut client =
            Client::start(vec![fine], ClientConfig { reconnect: Reconnect::Never, ..Default::default() })
                .unwrap();
        client.close();
    }
}
