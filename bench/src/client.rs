//! One client connection without a thread of its own: connect, upgrade and talk over a non-blocking mio socket.
//!
//! tungstenite works over any `Read + Write`, including a non-blocking
//! socket: where a blocking call would wait, it returns `WouldBlock` and
//! keeps its place. The upgrade comes back as
//! `HandshakeError::Interrupted(MidHandshake)`, resumed when the socket is
//! ready again; a read returns `Io(WouldBlock)`; a write queues the frame
//! and a flush that would block is simply tried again when the socket turns
//! writable. So the event loop drives thousands of these from one thread.
//!
//! Failures are not returned from every call. A client that breaks records
//! why ([`Ending`]) and stops; the event loop collects that with
//! [`Client::take_ending`] after each round of work, so the scenario code
//! that sends messages never has to handle a dying connection itself.

use std::io::{self, ErrorKind, Read, Write};
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::{ClientHandshake, Request, Response};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Bytes, Message, WebSocket};

use crate::source;

/// Who started a close handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// This tool, at the end of the run.
    Client,
    /// The server, on its own.
    Server,
}

/// How a client connection ended.
#[derive(Debug)]
pub enum Ending {
    /// The TCP connection could not be made.
    ConnectFailed(io::Error),
    /// The server did not accept the upgrade, or broke it off.
    UpgradeFailed(tungstenite::Error),
    /// Connecting and upgrading took longer than the setup allows.
    TimedOut,
    /// A close handshake: who began it and, if the server sent one, its code
    /// (1005 when its close frame carried none).
    Closed {
        /// Who sent the first close frame.
        by: Side,
        /// The code of the server's close frame, if it sent one.
        code: Option<u16>,
    },
    /// The connection ended without a close handshake: reset, end of
    /// stream, or a protocol error.
    Dropped(tungstenite::Error),
    /// The run ended while the close handshake was still going on.
    Abandoned,
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            Ending::UpgradeFailed(e) => write!(f, "upgrade failed: {e}"),
            Ending::TimedOut => f.write_str("timed out"),
            Ending::Closed { by: Side::Client, .. } => f.write_str("closed"),
            Ending::Closed { by: Side::Server, code } => {
                write!(f, "closed by the server with code {}", code.unwrap_or(1005))
            }
            Ending::Dropped(e) => write!(f, "dropped: {e}"),
            Ending::Abandoned => f.write_str("abandoned while closing"),
        }
    }
}

impl Ending {
    /// Returns true if and only if the connection ended the way the tool
    /// ends it: a close handshake the tool started.
    pub fn is_expected(&self) -> bool {
        matches!(self, Ending::Closed { by: Side::Client, .. })
    }
}

/// What one round of connecting work came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Still connecting or upgrading: wait for the next readiness event.
    Waiting,
    /// The upgrade completed; it took this long from the first `connect`.
    Opened(Duration),
}

enum Stage {
    Connecting { stream: TcpStream, request: Request },
    Upgrading(MidHandshake<ClientHandshake<Stream>>),
    Open(WebSocket<Stream>),
    Ended,
}

/// A WebSocket client connection on a non-blocking socket.
///
/// Owned by one event loop; nothing in it is shared. Every call returns at
/// once: nothing here blocks.
pub struct Client {
    stage: Stage,
    started: Instant,
    /// Set once the upgrade has completed; stays set after the end.
    opened: bool,
    /// Set once this side has sent its close frame.
    closing: bool,
    /// The server's close code, once its close frame arrived.
    server_close: Option<u16>,
    ending: Option<Ending>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stage = match self.stage {
            Stage::Connecting { .. } => "connecting",
            Stage::Upgrading(_) => "upgrading",
            Stage::Open(_) => "open",
            Stage::Ended => "ended",
        };
        f.debug_struct("Client").field("stage", &stage).field("ending", &self.ending).finish()
    }
}

impl Client {
    /// Starts connecting to `addr`, from the local address `from` if given,
    /// and registers the socket with `registry` under `token`, for both
    /// readiness directions, for its whole life.
    ///
    /// # Errors
    ///
    /// The [`Ending`] if the connection could not even be started: a bad URL
    /// (`UpgradeFailed`) or a socket the system refused (`ConnectFailed`).
    pub fn connect(
        registry: &Registry,
        token: Token,
        from: Option<IpAddr>,
        addr: SocketAddr,
        url: &str,
    ) -> Result<Client, Ending> {
        let request = url.into_client_request().map_err(Ending::UpgradeFailed)?;
        let stream = match from {
            Some(from) => source::connect_from(from, addr),
            None => TcpStream::connect(addr),
        };
        let mut stream = stream.map_err(Ending::ConnectFailed)?;
        registry
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(Ending::ConnectFailed)?;
        Ok(Client {
            stage: Stage::Connecting { stream, request },
            started: Instant::now(),
            opened: false,
            closing: false,
            server_close: None,
            ending: None,
        })
    }

    /// When `connect` was called.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Returns true if and only if the upgrade is done and the connection has not ended.
    pub fn is_open(&self) -> bool {
        matches!(self.stage, Stage::Open(_)) && self.ending.is_none()
    }

    /// Returns true if and only if the upgrade completed at some point,
    /// whether or not the connection has ended since.
    pub fn has_opened(&self) -> bool {
        self.opened
    }

    /// Takes the reason the connection ended, once it has.
    pub fn take_ending(&mut self) -> Option<Ending> {
        self.ending.take()
    }

    /// Moves connecting and upgrading along after a readiness event.
    ///
    /// On failure the client records its [`Ending`] and returns `Waiting`.
    pub fn advance(&mut self, config: WebSocketConfig) -> Step {
        match mem::replace(&mut self.stage, Stage::Ended) {
            Stage::Connecting { stream, request } => match connected(&stream) {
                Ok(false) => {
                    self.stage = Stage::Connecting { stream, request };
                    Step::Waiting
                }
                Ok(true) => {
                    let stream = Stream { tcp: stream, drained: false, closed: false };
                    self.upgraded(tungstenite::client::client_with_config(request, stream, Some(config)))
                }
                Err(e) => self.end(Ending::ConnectFailed(e)),
            },
            Stage::Upgrading(mid) => self.upgraded(mid.handshake()),
            other => {
                self.stage = other;
                Step::Waiting
            }
        }
    }

    fn upgraded(
        &mut self,
        result: Result<(WebSocket<Stream>, Response), HandshakeError<ClientHandshake<Stream>>>,
    ) -> Step {
        match result {
            Ok((websocket, _response)) => {
                self.stage = Stage::Open(websocket);
                self.opened = true;
                Step::Opened(self.started.elapsed())
            }
            Err(HandshakeError::Interrupted(mid)) => {
                self.stage = Stage::Upgrading(mid);
                Step::Waiting
            }
            Err(HandshakeError::Failure(e)) => self.end(Ending::UpgradeFailed(e)),
        }
    }

    /// The socket has something new to read: a readiness event came, saying
    /// whether the peer has also closed its side (or the socket failed).
    pub fn readable(&mut self, closed: bool) {
        let stream = match &mut self.stage {
            Stage::Upgrading(mid) => mid.get_mut().get_mut(),
            Stage::Open(websocket) => websocket.get_mut(),
            Stage::Connecting { .. } | Stage::Ended => return,
        };
        stream.drained = false;
        stream.closed |= closed;
    }

    /// Gives up on a connection that is taking too long to open.
    pub fn time_out(&mut self) {
        if !self.is_open() && self.ending.is_none() {
            self.end(Ending::TimedOut);
        }
    }

    /// The next data message already received, or `None` when nothing more
    /// can be read without waiting (or the connection has ended).
    ///
    /// Pings are answered and close frames replied to inside tungstenite's
    /// `read`; the replies go out with the next read or flush.
    pub fn recv(&mut self) -> Option<Bytes> {
        loop {
            let Stage::Open(websocket) = &mut self.stage else { return None };
            if self.ending.is_some() {
                return None;
            }
            match websocket.read() {
                Ok(Message::Binary(bytes)) => return Some(bytes),
                Ok(Message::Text(text)) => return Some(text.into()),
                Ok(Message::Close(frame)) => {
                    if !self.closing && self.server_close.is_none() {
                        self.server_close = Some(frame.map_or(1005, |f| f.code.into()));
                    }
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(e) => {
                    self.fail(e);
                    return None;
                }
            }
        }
    }

    /// Queues one binary message; [`flush`](Self::flush) sends what is queued.
    pub fn queue(&mut self, data: Vec<u8>) {
        let Stage::Open(websocket) = &mut self.stage else { return };
        match websocket.write(Message::Binary(data.into())) {
            Ok(()) => {}
            // The frame is in tungstenite's buffer; the next flush sends it.
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => self.fail(e),
        }
    }

    /// Writes out whatever is queued, as far as the socket takes it now.
    /// The rest goes with the next flush, on the next writable event.
    pub fn flush(&mut self) {
        let Stage::Open(websocket) = &mut self.stage else { return };
        match websocket.flush() {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => self.fail(e),
        }
    }

    /// Queues and flushes one binary message.
    pub fn send(&mut self, data: Vec<u8>) {
        self.queue(data);
        self.flush();
    }

    /// Begins the close handshake (code 1000); the connection ends once the
    /// server replies and closes the TCP connection.
    pub fn close(&mut self) {
        let Stage::Open(websocket) = &mut self.stage else { return };
        if self.closing || self.ending.is_some() {
            return;
        }
        self.closing = true;
        match websocket.close(None) {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => self.fail(e),
        }
    }

    /// Sorts a tungstenite error into how the connection ended.
    fn fail(&mut self, error: tungstenite::Error) {
        let ending = match (error, self.server_close) {
            (_, Some(code)) => Ending::Closed { by: Side::Server, code: Some(code) },
            (tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed, None)
                if self.closing =>
            {
                Ending::Closed { by: Side::Client, code: None }
            }
            (error, None) => Ending::Dropped(error),
        };
        self.end(ending);
    }

    fn end(&mut self, ending: Ending) -> Step {
        self.stage = Stage::Ended;
        self.ending = Some(ending);
        Step::Waiting
    }
}

/// Whether a non-blocking connect has completed, as mio documents it: a
/// pending socket error means it failed; `peer_addr` failing with
/// `NotConnected` means it is still under way.
/// The client's socket as tungstenite uses it.
///
/// Readiness is edge-triggered, so a reader must read until the kernel says
/// `WouldBlock`. But a read that returns fewer bytes than it asked for took
/// every byte the kernel held: until the next readiness event, which new
/// bytes always bring, another read would only be told `WouldBlock`, so it
/// is told that without a system call, unless the peer has closed (an end
/// of stream is no byte, and may come with the last ones). In `echo`, that
/// is one `recv` in three fewer for the tool, whose core, not the server,
/// would otherwise be the limit sooner.
#[derive(Debug)]
pub struct Stream {
    tcp: TcpStream,
    /// The last read took all there was; cleared by [`Client::readable`].
    drained: bool,
    /// A readiness event said the peer closed, or the socket failed.
    closed: bool,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.drained {
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = self.tcp.read(buf)?;
        self.drained = n > 0 && n < buf.len() && !self.closed;
        Ok(n)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.tcp.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

fn connected(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => {
            // Small messages one at a time: Nagle would add delay to every one.
            stream.set_nodelay(true)?;
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}
