//! Everything a server can be told: where to listen, its timeouts and its limits.
//!
//! Every field has a default that is safe to expose on a network: each timeout
//! is a finite backstop against a peer that stops talking, and each limit caps
//! what one peer can make the server hold in memory.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tungstenite::protocol::WebSocketConfig;

use crate::error::{Error, Result};

/// The configuration of a [`Server`](crate::Server).
///
/// Build it with struct update syntax:
///
/// ```
/// use std::time::Duration;
/// use switchboard::{Config, Timeouts};
///
/// let config = Config {
///     listen: "127.0.0.1:0".parse().unwrap(),
///     timeouts: Timeouts { idle: Duration::from_secs(30), ..Timeouts::default() },
///     ..Config::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to listen on. Default `127.0.0.1:9001`: loopback only, so a
    /// server started by accident is not reachable from the network.
    pub listen: SocketAddr,
    /// How long each phase of a connection may take.
    pub timeouts: Timeouts,
    /// How much one peer can make the server hold.
    pub limits: Limits,
    /// tungstenite's own settings for the reading side of every connection.
    ///
    /// The defaults differ from tungstenite's: `read_buffer_size` is 4 KiB
    /// (not 128 KiB) because tungstenite zero-fills the whole read buffer before
    /// each read, so all of it stays resident for every idle connection; and
    /// `max_message_size` and `max_frame_size` are 1 MiB (not 64 and 16 MiB).
    /// `write_buffer_size` is unused: the server writes frames itself (see
    /// [`Frame`](crate::Frame)) and keeps no write buffer per connection.
    pub websocket: WebSocketConfig,
    /// Stack size in bytes of every connection thread (reader and writer).
    /// Default 128 KiB. Only the pages a thread touches count towards memory;
    /// a small size keeps address space low with thousands of threads, and
    /// still leaves a handler ample room.
    pub thread_stack_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9001)),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            websocket: WebSocketConfig::default()
                .read_buffer_size(4 * 1024)
                .write_buffer_size(0)
                .max_message_size(Some(1 << 20))
                .max_frame_size(Some(1 << 20)),
            thread_stack_size: 128 * 1024,
        }
    }
}

/// How long each phase of a connection may take. Every one of them ends with
/// the connection closed, its threads finished and its slot in the hub freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole HTTP request head must arrive within this time; otherwise the
    /// server answers 408 and closes. Default 10 s: generous for a human on a
    /// bad network, short enough that a peer trickling bytes cannot keep a
    /// thread for long.
    pub handshake: Duration,
    /// A WebSocket peer that sends nothing at all (pongs included) for this
    /// long is closed with 1001. Default 60 s.
    pub idle: Duration,
    /// The server pings every client this often, so a live client always has
    /// something to answer. Default 20 s; must be less than `idle`.
    pub ping_interval: Duration,
    /// A single write to a client may block this long before the client is
    /// dropped (its receive window stayed closed). Default 10 s.
    pub write: Duration,
    /// After the server sends a close frame, how long it waits for the peer's
    /// reply before dropping the TCP connection. Default 1 s.
    pub close: Duration,
    /// On Ctrl-C or SIGTERM, the bound on the whole graceful shutdown: stop
    /// accepting, send 1001 to every client, flush, wait for replies. Default
    /// 5 s; must be more than `close`.
    pub shutdown: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            ping_interval: Duration::from_secs(20),
            write: Duration::from_secs(10),
            close: Duration::from_secs(1),
            shutdown: Duration::from_secs(5),
        }
    }
}

/// How much one peer can make the server hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest HTTP request head in bytes; larger gets 431. Default 8 KiB,
    /// what most HTTP servers allow.
    pub max_head_size: usize,
    /// The most header fields in a request head; more gets 431. Default 64.
    pub max_headers: usize,
    /// Bytes waiting for one client, each frame counted as its length plus 64
    /// bytes of bookkeeping. A client whose outbox is full is not keeping up:
    /// it is closed with 1008 rather than allowed to grow memory or slow down
    /// the others. Default 4 MiB: four of the largest messages, or some 25,000
    /// chat lines, enough to ride out a writer thread that was not scheduled
    /// for a while. An empty outbox costs almost nothing, and frames sent to a
    /// room are shared by all its members' outboxes. Must hold the largest
    /// message.
    pub outbox_bytes: usize,
    /// Commands waiting for the hub. When it is full, the readers that publish
    /// wait, which in turn stops them reading their sockets: TCP backpressure
    /// reaches the clients that send the most. Default 4096.
    pub hub_capacity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_head_size: 8 * 1024, max_headers: 64, outbox_bytes: 4 << 20, hub_capacity: 4096 }
    }
}

impl Config {
    /// Checks that the values work together. [`Server::bind`](crate::Server::bind)
    /// calls it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first field that is out of range and why.
    pub fn validate(&self) -> Result<()> {
        let t = &self.timeouts;
        let l = &self.limits;
        let ws = &self.websocket;
        // The largest frame the server may have to relay: payload and header.
        let largest = ws.max_message_size.unwrap_or(usize::MAX).saturating_add(14);
        let checks: [(bool, &'static str, &'static str); 15] = [
            (t.handshake.is_zero(), "timeouts.handshake", "must be more than zero"),
            (t.idle.is_zero(), "timeouts.idle", "must be more than zero"),
            (t.write.is_zero(), "timeouts.write", "must be more than zero"),
            (t.close.is_zero(), "timeouts.close", "must be more than zero"),
            (t.ping_interval.is_zero(), "timeouts.ping_interval", "must be more than zero"),
            (
                t.ping_interval >= t.idle,
                "timeouts.ping_interval",
                "must be less than timeouts.idle, or a live client that only answers pings is closed as idle",
            ),
            (
                t.close >= t.shutdown,
                "timeouts.shutdown",
                "must be more than timeouts.close, or shutdown cannot wait for close replies",
            ),
            (l.max_head_size < 256, "limits.max_head_size", "must be at least 256 bytes"),
            (l.max_headers < 8, "limits.max_headers", "must be at least 8"),
            (
                l.outbox_bytes < largest,
                "limits.outbox_bytes",
                "must hold the largest message (websocket.max_message_size plus a 14-byte header)",
            ),
            (ws.max_message_size.is_none(), "websocket.max_message_size", "must be set"),
            (l.hub_capacity == 0, "limits.hub_capacity", "must be at least 1"),
            (ws.read_buffer_size < 256, "websocket.read_buffer_size", "must be at least 256 bytes"),
            (
                ws.max_write_buffer_size <= ws.write_buffer_size,
                "websocket.max_write_buffer_size",
                "must be more than websocket.write_buffer_size",
            ),
            (self.thread_stack_size < 64 * 1024, "thread_stack_size", "must be at least 64 KiB"),
        ];
        match checks.into_iter().find(|(bad, ..)| *bad) {
            Some((_, field, problem)) => Err(Error::Config { field, problem }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn ping_interval_must_be_below_idle_timeout() {
        let config = Config {
            timeouts: Timeouts {
                ping_interval: Duration::from_secs(60),
                idle: Duration::from_secs(60),
                ..Timeouts::default()
            },
            ..Config::default()
        };
        let err = config.validate().unwrap_err();
        assert!(matches!(err, Error::Config { field: "timeouts.ping_interval", .. }), "{err}");
    }

    #[test]
    fn outbox_must_hold_the_largest_message() {
        let config =
            Config { limits: Limits { outbox_bytes: 1 << 20, ..Limits::default() }, ..Config::default() };
        assert!(matches!(config.validate(), Err(Error::Config { field: "limits.outbox_bytes", .. })));
    }

    #[test]
    fn close_timeout_must_fit_in_shutdown() {
        let config = Config {
            timeouts: Timeouts { close: Duration::from_secs(5), ..Timeouts::default() },
            ..Config::default()
        };
        assert!(matches!(config.validate(), Err(Error::Config { field: "timeouts.shutdown", .. })));
    }
}
