//! A WebSocket server built the classic way: one accept loop, an OS thread per
//! client, and a hub thread that relays messages between clients over channels.
//!
//! Like an old telephone switchboard, the operator (the hub) connects the
//! lines (the connections). Plain HTTP and WebSocket share one port.
//!
//! ```text
//! main thread            accept loop: TcpListener::accept, one thread per socket
//!    │
//!    ▼
//! connection thread      read the HTTP request head (deadline, size cap), parse with httparse
//!    │   plain HTTP ───► /healthz, /metrics, /stats, or the handler; respond; close
//!    │   Upgrade   ───► Handler::on_upgrade decides; answer 101 ourselves;
//!    │                   WebSocket::from_partially_read; register with the hub
//!    ├──► writer thread  owns the socket's writing side: drains the outbox,
//!    │                   one vectored write per batch; pings on a ticker
//!    └──  reader loop    ws.read(): messages to the handler; pongs and close
//!                        replies to the outbox, never to the socket
//! hub thread             owns the rooms; hands each frame, encoded once, to
//!                        every member's bounded outbox without waiting
//! ```
//!
//! # Echo in twenty lines
//!
//! A [`Handler`] decides on upgrades and answers messages; a [`Server`] runs it.
//!
//! ```no_run
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
//! fn main() -> Result<(), switchboard::Error> {
//!     let config = Config { listen: "127.0.0.1:0".parse().unwrap(), ..Config::default() };
//!     let server = Server::bind(config, Echo)?;
//!     println!("echo on ws://{}/echo", server.local_addr());
//!     server.run()
//! }
//! ```
//!
//! # Threads and who owns what
//!
//! * The **accept loop** ([`Server::run`]) only accepts and starts threads.
//! * The **connection thread** reads and answers the request head. After an
//!   upgrade it becomes the connection's **reader**: it owns tungstenite's
//!   `WebSocket` and the handler's per-connection [`Handler::State`].
//! * The **writer thread** is the only thread that writes to the socket. The
//!   reader never does, not even the pongs and close replies that tungstenite
//!   produces inside `read()`: those go through the writer's outbox like every
//!   other frame, so frames from two threads can never interleave.
//! * The **hub thread** owns room membership. Other threads reach it with a
//!   [`HubHandle`] (send to one connection, a room, or everyone). It encodes
//!   nothing and waits on nobody: it hands the same [`Frame`] to every
//!   recipient's outbox with `try_send`.
//!
//! No thread shares mutable state with another except through a channel or
//! an atomic counter.
//!
//! # Limits
//!
//! Every queue is bounded ([`Limits`]). A client whose outbox is full is not
//! keeping up; it is closed with 1008 rather than allowed to grow memory or
//! hold up its room. A client that sends faster than the hub relays is slowed
//! down by TCP itself: its reader waits for room in the hub's queue and stops
//! reading its socket meanwhile. Messages and frames over
//! `websocket.max_message_size` close the connection with 1009.
//!
//! # Shutdown
//!
//! [`ShutdownHandle::shutdown`] (the binary calls it on Ctrl-C and SIGTERM)
//! stops the accept loop, queues a 1001 close for every client behind what
//! its outbox already holds, and waits for the connections to end, at most
//! [`Timeouts::shutdown`]. Nothing accepted for a client is dropped on the way.
//!
//! # Common mistakes
//!
//! * **Writing from the reader.** Calling tungstenite's `write` or `send` on
//!   the reader's socket would race the writer thread. Send through
//!   [`Connection::send`] or the [`HubHandle`]; both go through the outbox.
//! * **Side effects in `on_upgrade`.** It is also asked about plain GETs, to
//!   tell a WebSocket endpoint (426) from no endpoint (404). Decide there; act
//!   in [`Handler::on_open`].
//! * **Blocking a handler on another client.** A handler runs on its own
//!   client's reader thread; waiting there stalls only that client, but
//!   waiting for *another* client's progress can deadlock two readers.
//! * **Unbounded state per connection.** [`Handler::State`] lives as long as
//!   the connection; bound what it collects.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

mod admission;
mod auth;
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
mod http;
mod hub;
mod metrics;
mod origin;
pub mod rooms;
mod server;
mod stream;
mod tls;
mod upgrade;

pub use crate::auth::Secret;
pub use crate::close::{CloseReason, Ending};
pub use crate::config::{Access, Config, Limits, Timeouts, TlsConfig};
pub use crate::error::{Error, Refusal, Result};
pub use crate::frame::Frame;
pub use crate::handler::{Accept, Connection, Handler};
pub use crate::http::{Request, Response};
pub use crate::hub::{ConnectionId, HubHandle};
pub use crate::rooms::RoomsHandler;
pub use crate::server::{Server, ShutdownHandle};

pub use ipnet::IpNet;
pub use tungstenite::protocol::frame::coding::CloseCode;
pub use tungstenite::protocol::{CloseFrame, WebSocketConfig};
pub use tungstenite::{self, Message};
