//! A WebSocket server built the classic way: one accept loop, an OS thread per
//! client, and a hub thread that relays messages between clients over channels.
//!
//! Like an old telephone switchboard, the operator (the hub) connects the
//! lines (the connections). Plain HTTP and WebSocket share one port.
//!
//! ```text
//! main thread            accept loop: TcpListener::accept, one thread per socket
//!    │                   (a parked one when there is, else a new one)
//!    │                   admission: connection limits (over: 503 or 429, close)
//!    ▼
//! connection thread      read the HTTP request head (deadline, size cap), parse with httparse
//!   (one per client,     plain HTTP ───► /healthz, /metrics, /stats, or the handler; respond; close
//!                        Upgrade   ───► RFC 6455, Origin and credential checks;
//!                                       Handler::on_upgrade decides; an outbox with the
//!                                       101 at its front; register with the hub and join
//!                                       rooms; send the 101; WebSocket::from_partially_read
//!   parked, once its     then loop { ws.read() }: messages to Handler::on_message; its
//!   client has gone,     echoes, pongs and close frames go out through the
//!   for the next one)    connection's outbox, under its lock
//! hub thread             owns the rooms; per batch, appends each frame (encoded once) to
//!                        every member's outbox and flushes each with one non-blocking
//!                        vectored send
//! drain thread           one per server: outboxes whose socket was full wait here (epoll,
//!                        writable) and are finished under their lock; keeps the write
//!                        timeout, the close timeout, pings and the idle timeout
//! ```
//!
//! The programs in `examples/` take these pieces one at a time: `echo` (the
//! smallest server), `chat` (rooms and the hub), `custom_handler` (a door of
//! your own and state per connection) and `multi_client` (the client side).
//!
//! # Echo in twenty lines
//!
//! A [`Handler`] decides on upgrades and answers messages; a [`Server`] runs
//! it. The handler and the first four lines of `main` are a whole server;
//! the rest of `main` runs it on a thread, talks to it with a plain
//! tungstenite client, and shuts it down.
//!
//! ```
//! use std::net::TcpStream;
//! use std::time::Duration;
//!
//! use switchboard::{Accept, Config, Connection, Handler, Message, Refusal, Request, Server};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     type State = ();
//!
//!     fn on_upgrade(&self, request: &Request) -> Result<Accept<()>, Refusal> {
//!         match request.path() {
//!             "/echo" => Ok(Accept::new(())),
//!             _ => Err(Refusal::not_found()),
//!         }
//!     }
//!
//!     fn on_message(&self, connection: &Connection, _: &mut (), message: Message) {
//!         let _ = connection.send(message);
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Port 0: the system picks a free port, and local_addr() tells which.
//!     let config = Config { listen: "127.0.0.1:0".parse()?, ..Config::default() };
//!     let server = Server::bind(config, Echo)?;
//!     let (addr, shutdown) = (server.local_addr(), server.shutdown_handle());
//!     let running = std::thread::spawn(move || server.run());
//!
//!     // A client, with a read timeout so that a lost answer fails rather than hangs.
//!     let socket = TcpStream::connect(addr)?;
//!     socket.set_read_timeout(Some(Duration::from_secs(5)))?;
//!     let (mut ws, _) = switchboard::tungstenite::client(format!("ws://{addr}/echo"), socket)?;
//!     ws.send(Message::text("hello"))?;
//!     assert_eq!(ws.read()?, Message::text("hello"));
//!     ws.close(None)?;
//!     // The server answers the close; the next read sees the end.
//!     while ws.read().is_ok() {}
//!
//!     // Stop accepting, send 1001 to whoever is left, and return from run().
//!     shutdown.shutdown();
//!     running.join().expect("the server thread panicked")?;
//!     Ok(())
//! }
//! ```
//!
//! # Threads and who owns what
//!
//! * The **accept loop** ([`Server::run`]) accepts, counts each socket
//!   against the connection limits, and hands it to a connection thread:
//!   the one that parked last, or a new named thread when none is parked.
//!   It reads nothing: a socket over a limit gets its 503 or 429 from the
//!   loop itself, before any thread is spent on it.
//! * The **connection thread**, one per client, reads and answers the
//!   request head. After an upgrade it becomes the connection's **reader**:
//!   it owns tungstenite's `WebSocket` and the handler's per-connection
//!   [`Handler::State`], and every [`Handler`] method for that connection
//!   runs on it. So the state needs no lock, and a slow handler holds up
//!   only its own client. When its client has gone, the thread parks for
//!   the next one ([`Limits::spare_threads`] at most, for
//!   [`Timeouts::spare_thread`]): starting a thread costs more system calls
//!   than the rest of a short connection. Its name is its role,
//!   `switchboard-conn`; the connection id is in every log line.
//! * Each connection's **outbox** is the one way to its socket. Every byte
//!   the client receives, pongs and close replies included, is appended
//!   under the outbox's lock and leaves from the front, in order, so frames
//!   from two threads never interleave. Whoever holds the lock sends, and no
//!   send waits: it takes what the kernel's buffer has room for now
//!   (`MSG_DONTWAIT`), so the connection thread stays blocked reading the
//!   same socket and no thread ever waits on a client while holding a lock.
//! * The **hub thread** owns room membership. Other threads reach it with a
//!   [`HubHandle`] (send to one connection, a room, or everyone), which a
//!   handler gets from [`Connection::hub`] and any other code from
//!   [`Server::hub`]. The sender's thread encodes the message into a
//!   [`Frame`] once; the hub appends that same frame (or, for a room's
//!   messages that arrive together, one buffer holding them all) to every
//!   recipient's outbox and sends each a batch with one system call. No
//!   thread is woken on the way.
//! * The **drain thread** finishes what the kernel had no room for: an
//!   outbox whose socket is full waits there until the socket has room
//!   (epoll), and is written under its lock. It serves no client itself.
//!   It also keeps the deadlines that no connection thread can, blocked as
//!   it is in `read()`: it pings a client quiet for
//!   [`Timeouts::ping_interval`], closes one quiet for [`Timeouts::idle`],
//!   and hangs up on a socket that takes no bytes for [`Timeouts::write`]
//!   and on a client that does not answer a close within
//!   [`Timeouts::close`].
//!
//! * With a backplane ([`Config::backplane`], `--redis`), two more threads
//!   share the rooms with other nodes through Redis pub/sub: a
//!   **publisher**, to which the hub hands every room message without
//!   waiting, and a **subscriber**, which follows the rooms the node has
//!   members in and hands what other nodes publish back to the hub. The hub
//!   never waits on Redis: if it is slow or down, room messages are still
//!   delivered on their own node, and counted as not relayed.
//!
//! Threads share mutable state only through channels, atomic counters, and
//! each connection's outbox, behind its own lock. No thread holds two
//! outboxes' locks at once, or calls the hub while holding one. The handler
//! itself is shared by every connection (it is `Sync`): keep what all
//! connections share in it behind atomics or channels, or in the hub.
//!
//! # Shutdown
//!
//! [`ShutdownHandle::shutdown`] (call it from a Ctrl-C handler, as the
//! binary and every example do) wakes the accept loop, which stops
//! accepting. The hub then queues a 1001 close for every client behind what
//! its outbox already holds, so nothing accepted for a client is dropped on
//! the way, and [`Server::run`] waits for the connections to end, at most
//! [`Timeouts::shutdown`]. Then it stops the hub and the drain thread and
//! returns. From then on every [`HubHandle`] call returns
//! [`Error::HubStopped`].
//!
//! # Limits
//!
//! Every queue is bounded ([`Limits`]), and every wait has a timeout
//! ([`Timeouts`]).
//!
//! * A client whose outbox holds more than [`Limits::outbox_bytes`] is not
//!   reading what it is sent: it is closed with 1008 rather than allowed to
//!   grow memory or hold up its room. One whose socket takes no bytes for
//!   [`Timeouts::write`] is hung up on.
//! * A client that sends faster than the hub relays is slowed down by TCP
//!   itself: when the hub's inbox ([`Limits::hub_capacity`]) is full, its
//!   reader waits, and stops reading its socket meanwhile. One that sends
//!   more than [`Limits::max_messages_per_sec`], beyond a burst of
//!   [`Limits::message_burst`], is closed with 1008.
//! * A message or frame over `websocket.max_message_size` or
//!   `max_frame_size` ([`Config::websocket`]) closes the connection with
//!   1009, checked on the frame header before the payload is read.
//! * Connections over [`Limits::max_connections`] get 503, and over
//!   [`Limits::max_connections_per_ip`] from one address 429 (an IPv4
//!   client of a dual-stack listener, seen as `::ffff:a.b.c.d`, counts as
//!   its IPv4 address). The server
//!   lowers the first to what the machine's limits on threads, open files
//!   and memory maps can hold (a connection costs one thread, four memory
//!   mappings and one file descriptor), and says so in its log.
//! * A request head must arrive within [`Timeouts::handshake`], and after
//!   its first second at [`Limits::handshake_min_rate`] bytes a second at
//!   least (else 408), and fit [`Limits::max_head_size`] (else 431); a
//!   client that sends nothing for [`Timeouts::ping_interval`] is pinged,
//!   and one that sends nothing, pongs included, for [`Timeouts::idle`] is
//!   closed with 1001.
//! * A socket that connects and says nothing is not accepted at all until
//!   it does (`TCP_DEFER_ACCEPT`). Connections still in their handshake
//!   have a budget of their own ([`Limits::max_handshakes`], and
//!   [`Limits::max_handshakes_per_ip`] per address, else 429); when it is
//!   spent, or the server is full, a newcomer takes the place of the oldest
//!   of them if that one has lasted over a second (it gets 408), and is
//!   refused 503 if none has. A connection past its handshake never gives
//!   way.
//! * Optionally a connection lives at most [`Timeouts::max_lifetime`]
//!   (1001); one admitted with a JWT is closed when the token expires, or
//!   a reload replaces the key that verified it (1008).
//!
//! # The client side
//!
//! [`client::Client`] holds several connections at once, each kept up by a
//! thread of its own that, by default, reconnects after a backoff when its
//! connection drops (one that never connected is given up at once, so that a
//! wrong address shows). Each live connection also has a writer thread, so
//! that the application's sends never wait on the network. Everything that
//! happens on every connection arrives on
//! one channel of [`client::Event`]s, each tagged with its connection's
//! name. [`Client::join`](client::Client::join) closes every connection with
//! 1000, behind what was already sent on it, and waits for them to end.
//!
//! ```
//! use std::time::{Duration, Instant};
//!
//! use switchboard::client::{Client, ClientConfig, Endpoint, Event};
//! use switchboard::{Config, RoomsHandler, Server};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::bind(Config { listen: "127.0.0.1:0".parse()?, ..Config::default() }, RoomsHandler)?;
//! let (addr, shutdown) = (server.local_addr(), server.shutdown_handle());
//! let running = std::thread::spawn(move || server.run());
//!
//! let lobby = Endpoint::new("lobby", format!("ws://{addr}/ws/lobby"));
//! let client = Client::start(vec![lobby], ClientConfig::default())?;
//! let deadline = Instant::now() + Duration::from_secs(5);
//! loop {
//!     match client.events().recv_deadline(deadline)? {
//!         Event::Connected { line, .. } => client.send(&line, "hello")?,
//!         // A room sends each message to all its members, the sender included.
//!         Event::Message { line, message } => {
//!             assert_eq!((&*line, message.to_text()?), ("lobby", "hello"));
//!             break;
//!         }
//!         other => return Err(other.to_string().into()),
//!     }
//! }
//! client.join();
//!
//! shutdown.shutdown();
//! running.join().expect("the server thread panicked")?;
//! # Ok(())
//! # }
//! ```
//!
//! # Common mistakes
//!
//! * **Acting in `on_upgrade`.** It is also asked about plain GETs, to tell
//!   a WebSocket endpoint (426) from no endpoint (404), and a connection it
//!   accepts may still fail before it opens. Decide there; act (count,
//!   announce, greet) in [`Handler::on_open`].
//! * **Expecting a room message to skip its sender.**
//!   [`HubHandle::send_to_room`] reaches every member, the sender included;
//!   there is no "everyone but me". Let clients recognise their own
//!   messages, as the `chat` example does by naming the sender.
//! * **Saying goodbye from `on_close`.** By then the connection has left the
//!   hub and its outbox takes nothing more: [`Connection::send`] returns
//!   [`Error::Closed`]. Tell the others instead; a room message sent from
//!   [`Handler::on_close`] reaches only the members still there.
//! * **Taking `Ok` for delivered, or an error for a fault.** Sending returns
//!   once the message is queued (and sent, if the socket had room), not once
//!   the client has it. An
//!   [`Error::Closed`] or [`Error::HubStopped`] is an ordinary ending (the
//!   client left, the server is stopping), so do not `unwrap` it: a panic in
//!   [`Handler::on_message`] closes that connection with 1011.
//! * **Expecting order across the two ways to send.** [`Connection::send`]
//!   puts a message in the client's outbox at once; one sent through the
//!   hub gets there when the hub thread comes to it. So an answer sent with
//!   `Connection::send` can overtake a room message or broadcast sent
//!   before it. Each way keeps its own order; send through one of them
//!   where order matters.
//! * **Blocking a handler on another client.** A handler runs on its own
//!   client's reader thread; waiting there stalls only that client, but
//!   waiting for *another* client's progress can deadlock two readers.
//! * **Letting Ctrl-C kill the process.** [`Server::run`] returns only when
//!   a [`ShutdownHandle`] asks it to. Without a signal handler that calls
//!   it, Ctrl-C ends the process at once: clients see their connections
//!   drop without a 1001, and what was queued for them is lost.
//! * **Sending from outside the handlers forever.** A thread that talks to
//!   clients through [`Server::hub`] (a ticker, a console) outlives nothing:
//!   once the server has shut down, every call returns
//!   [`Error::HubStopped`], and the thread should end on it.
//! * **Expecting everything to cross nodes.** With a backplane, room
//!   messages reach every node ([`HubHandle::send_to_room`] included), but
//!   [`HubHandle::broadcast`] and [`HubHandle::send_to`] stay on the node
//!   they are called on, and a message published while Redis is down
//!   reaches only its own node: pub/sub keeps nothing for later.
//! * **Unbounded state per connection.** [`Handler::State`] lives as long as
//!   the connection; bound what it collects.
//! * **Keeping a connection's data in a thread-local.** A connection thread
//!   serves many clients in turn (it parks between them), so a
//!   thread-local outlives its client and greets the next one. Keep a
//!   client's data in [`Handler::State`].

// Denied rather than forbidden: a few calls no safe wrapper offers yet are
// allowed where they are made (a setsockopt in listener.rs, madvise and
// the thread's stack bounds in stack.rs).
#![deny(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

mod admission;
mod auth;
mod backoff;
mod backplane;
pub mod client;
mod close;
mod config;
mod connection;
mod error;
mod frame;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handler;
mod handshakes;
mod http;
mod hub;
mod listener;
mod log_text;
mod metrics;
mod origin;
mod refusal_log;
mod reload;
pub mod rooms;
mod server;
mod stack;
mod stream;
mod thread_pool;
mod tls;
mod upgrade;

pub use crate::auth::{Secret, Token};
pub use crate::backplane::redact_url as redact_redis_url;
pub use crate::backplane::url_has_password as redis_url_has_password;
pub use crate::close::{CloseReason, Ending};
pub use crate::config::{Access, BackplaneConfig, Config, Limits, Timeouts, TlsConfig};
pub use crate::error::{Error, Refusal, Result, error_chain};
pub use crate::frame::Frame;
pub use crate::handler::{Accept, Connection, Handler};
pub use crate::http::{Request, Response};
pub use crate::hub::{ConnectionId, HubHandle};
pub use crate::reload::ReloadHandle;
pub use crate::rooms::RoomsHandler;
pub use crate::server::{Server, ShutdownHandle};

pub use ipnet::IpNet;
pub use tungstenite::protocol::frame::coding::CloseCode;
pub use tungstenite::protocol::{CloseFrame, WebSocketConfig};
pub use tungstenite::{self, Message};
