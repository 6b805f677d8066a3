//! The reader: the loop in which a connection's thread reads its client's
//! frames and hands its messages to the handler.
//!
//! tungstenite does the protocol work inside `read()`: unmasking, reassembling
//! fragments, checking UTF-8 and sizes, tracking the close handshake. The
//! answers it would write itself (pongs, close replies) go nowhere
//! ([`Incoming`] swallows them); the reader sends them through the outbox
//! instead, under its lock and behind what is already queued, so that they
//! count against the budget and never interleave with the hub's frames.

use std::io::{self, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use log::debug;
use tungstenite::Message;
use tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig};

use super::outbox::{Closing, Outbox};
use super::token_bucket::TokenBucket;
use crate::close::CloseReason;
use crate::frame::Frame;
use crate::handler::{Connection, Handler};
use crate::metrics::Metrics;
use crate::stream::Socket;

/// How the reading side of a connection ended.
#[derive(Debug)]
pub(crate) enum ReadEnd {
    /// The client sent a close frame; `reply` is the frame queued in answer,
    /// unless a close was already queued.
    ClientClosed { close: Option<CloseFrame>, reply: Option<Frame> },
    /// The reader closed the connection with `close` because of `cause` (a
    /// limit, a protocol error, a panicking handler).
    ServerClosed { close: CloseFrame, cause: String },
    /// The client is gone, or the socket was hung up on.
    Dropped,
}

/// One connection's reading side; [`Reader::run`] is the loop.
pub(crate) struct Reader<'a, H: Handler> {
    pub(crate) websocket: WebSocketConfig,
    pub(crate) handler: &'a H,
    pub(crate) connection: &'a Connection,
    pub(crate) state: &'a mut H::State,
    pub(crate) metrics: &'a Metrics,
    /// The message rate limit, if there is one.
    pub(crate) bucket: Option<TokenBucket>,
}

impl<H: Handler> Reader<'_, H> {
    /// Reads `socket` until the connection ends; `rest` holds the bytes the
    /// client sent right after its request head.
    #[inline(never)]
    pub(crate) fn run(mut self, socket: &Socket, rest: Vec<u8>) -> ReadEnd {
        // Reads wait for as long as it takes: pings and the idle timeout are
        // the drain thread's (see heartbeat.rs).
        if let Err(e) = socket.set_read_timeout(None) {
            return self.dropped("cannot clear its read timeout", &e);
        }
        let incoming = Incoming { socket, outbox: &self.connection.outbox, taken: rest.len() };
        let mut ws = websocket(incoming, rest, self.websocket);
        let mut buffer = Buffer::new(self.websocket.read_buffer_size);
        let mut client_close = None;
        loop {
            if buffer.oversized(ws.get_ref().taken) {
                ws = rebuilt(ws, self.websocket);
                buffer = Buffer::new(self.websocket.read_buffer_size);
            }
            let error = match next(&mut ws) {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                    buffer.read(message.len());
                    // Closed by the server, and out of its rooms: what the
                    // client sends until it answers is not relayed.
                    if self.connection.outbox.is_shut() {
                        continue;
                    }
                    if let Err(end) = self.within_rate().and_then(|()| self.deliver(message)) {
                        return end;
                    }
                    continue;
                }
                Ok(Message::Ping(payload)) => {
                    buffer.read(payload.len());
                    if let Err(end) = self.within_rate() {
                        return end;
                    }
                    self.pong(payload);
                    continue;
                }
                Ok(Message::Close(close)) => {
                    // tungstenite has already replaced a code that may not be
                    // sent on the wire with 1002, as RFC 6455 asks; the
                    // handler and the log are told the client's code was
                    // invalid, not that it sent 1002 (`Ending::by_client`).
                    let reply = self.queue_close(close.clone(), Closing::Reply);
                    // Counted once answered: what waited has been dropped.
                    self.metrics.close_received();
                    client_close = Some(ReadEnd::ClientClosed { close, reply });
                    continue;
                }
                Ok(Message::Pong(payload)) => {
                    buffer.read(payload.len());
                    continue;
                }
                Ok(Message::Frame(_)) => continue,
                Err(error) => error,
            };
            return self.ended(&error, client_close);
        }
    }

    /// How the loop ends on `error`. Out of line, with its formatting, so
    /// that the loop's own frame stays small.
    #[inline(never)]
    fn ended(&self, error: &tungstenite::Error, client_close: Option<ReadEnd>) -> ReadEnd {
        // After the client's close, tungstenite reports the end of the
        // handshake as an error; it is the normal way out.
        if let Some(end) = client_close {
            return end;
        }
        // No read timeout is set: a timeout here is the kernel's, which has
        // given up on a client that took none of what it was sent.
        if let tungstenite::Error::Io(e) = error {
            if e.kind() == io::ErrorKind::TimedOut {
                self.connection.outbox.timed_out_in_kernel();
                return self.dropped("read ended", error);
            }
        }
        match CloseReason::for_read_error(error) {
            Some(reason) => self.close(reason, error.to_string()),
            None => self.dropped("read ended", error),
        }
    }

    #[inline(never)]
    fn dropped(&self, what: &str, error: &dyn std::fmt::Display) -> ReadEnd {
        debug!("connection {}: {what}: {error}", self.connection.id);
        ReadEnd::Dropped
    }

    /// Takes a token for a message or a ping; a client out of tokens is
    /// closed with 1008. Pings count because each one costs a pong.
    fn within_rate(&mut self) -> Result<(), ReadEnd> {
        if self.bucket.as_mut().is_none_or(|bucket| bucket.take(Instant::now())) {
            return Ok(());
        }
        self.metrics.rate_limited();
        Err(self.close(CloseReason::RateLimited, "over its message rate limit".into()))
    }

    /// A pong counts against the budget, so a ping flood from a client that
    /// does not read cannot grow memory: past it, the client is closed as a
    /// slow consumer.
    #[inline(never)]
    fn pong(&self, payload: tungstenite::Bytes) {
        let _ = self.connection.outbox.send(Frame::pong(payload));
    }

    /// Hands a message to the handler. A panicking handler takes down its own
    /// connection (1011), and nothing else: the hub entry and the socket are
    /// still released in order.
    ///
    /// Out of line, like every path off the read loop, so that the loop's
    /// own frame stays small: its thread sits in it for the connection's
    /// whole life, and every page of stack it has touched stays resident.
    #[inline(never)]
    fn deliver(&mut self, message: Message) -> Result<(), ReadEnd> {
        self.metrics.message_in(message.len());
        let (handler, connection, state) = (self.handler, self.connection, &mut *self.state);
        // However long the handler takes (a full hub makes it wait), the
        // client is not quiet meanwhile.
        connection.outbox.set_busy(true);
        let handled = panic::catch_unwind(AssertUnwindSafe(|| {
            handler.on_message(connection, state, message);
        }));
        connection.outbox.set_busy(false);
        handled.map_err(|_| self.close(CloseReason::Internal, "the handler panicked".into()))
    }

    #[inline(never)]
    fn close(&self, reason: CloseReason, cause: String) -> ReadEnd {
        self.queue_close(Some(reason.frame()), Closing::FromReader);
        ReadEnd::ServerClosed { close: reason.frame(), cause }
    }

    /// Queues a close frame, as `closing` says; returns it unless a close
    /// was already queued.
    #[inline(never)]
    fn queue_close(&self, close: Option<CloseFrame>, closing: Closing) -> Option<Frame> {
        let frame = Frame::close(close);
        self.connection.outbox.close(frame.clone(), closing).ok().map(|()| frame)
    }
}

/// The protocol's state for `incoming`, on the heap, and built out of line
/// so that it is never in the read loop's frame, even on its way there.
/// That frame is under every call the loop makes with a message (the
/// handler, the hub, the outbox), and every page of stack a message's way
/// touches stays resident for the connection's life. With this state
/// (about 200 bytes) in the frame, tungstenite's reading inlined into the
/// loop (see [`next`]) and the connection held by value, a room message
/// reached 8,800 bytes below the top of the stack: a third page, 4 KiB
/// more for every connection that has sent a message.
#[inline(never)]
fn websocket<'a>(
    incoming: Incoming<'a>,
    rest: Vec<u8>,
    config: WebSocketConfig,
) -> Box<WebSocket<Incoming<'a>>> {
    Box::new(WebSocket::from_partially_read(incoming, rest, Role::Server, Some(config)))
}

/// The protocol's state built again, with an empty buffer: see [`Buffer`].
/// Out of line, as taking the socket back moves the whole state through
/// the frame that does it.
#[inline(never)]
fn rebuilt<'a>(ws: Box<WebSocket<Incoming<'a>>>, config: WebSocketConfig) -> Box<WebSocket<Incoming<'a>>> {
    let incoming = Incoming { taken: 0, ..ws.into_inner() };
    websocket(incoming, Vec::new(), config)
}

/// The next message, out of line: tungstenite's reading, inlined into the
/// loop, would leave its temporaries in the loop's frame, under every call
/// the loop makes with a message.
#[inline(never)]
fn next(ws: &mut WebSocket<Incoming<'_>>) -> tungstenite::Result<Message> {
    ws.read()
}

/// What tungstenite's read buffer holds, as far as the reader can tell.
///
/// tungstenite makes room in its buffer for each frame's whole payload and
/// keeps that room: after one message of a megabyte, an idle connection
/// held a megabyte for the rest of its life. The buffer cannot be shrunk
/// from outside, but the protocol's state can be built again (its answers
/// go through the outbox, and it holds nothing between messages), once the
/// buffer is known to be empty: when every byte read from the socket
/// belongs to a message already returned. Each message took at least its
/// payload and one masked header of the shortest form, so when the bytes
/// read equal that sum, nothing is left over. A client that fragments its
/// messages, or writes lengths longer than they need, never matches the
/// sum again, and keeps its buffer as before; nor, once it has sent its
/// close (never counted), does one whose state now knows of that close.
struct Buffer {
    /// The least the messages returned since the state was built took.
    used: usize,
    /// One of them was large enough to have grown the buffer.
    grown: bool,
    /// Messages up to this size leave the buffer as it is, or not enough
    /// larger to be worth building the state again for.
    keeps: usize,
}

impl Buffer {
    /// For a state whose buffer starts at `read_buffer_size`.
    fn new(read_buffer_size: usize) -> Self {
        Buffer { used: 0, grown: false, keeps: read_buffer_size.max(GROWN) }
    }

    /// Counts a message of `len` payload bytes, returned.
    fn read(&mut self, len: usize) {
        let length_field = match len {
            0..126 => 0,
            126..65_536 => 2,
            _ => 8,
        };
        self.used += 2 + length_field + 4 + len;
        self.grown |= len > self.keeps;
    }

    /// Whether the buffer is large and empty, `taken` bytes having been
    /// read from the socket since the state was built.
    fn oversized(&self, taken: usize) -> bool {
        self.grown && taken == self.used
    }
}

/// A message larger than this (or than the read buffer, if that is larger)
/// leaves tungstenite's read buffer larger than a connection should keep
/// idle.
const GROWN: usize = 16 * 1024;

/// The socket as tungstenite reads it on a connection's thread.
///
/// Reads tell the outbox that the client spoke, for its heartbeat. Writes go nowhere:
/// the reader sends through the outbox. Over TLS, a read of the socket can
/// leave records in the session (a key update's answer, an alert) that must
/// go out even if nothing else is sent: they are flushed through the
/// outbox, in order, before the next wait on the socket.
struct Incoming<'a> {
    socket: &'a Socket,
    outbox: &'a Arc<Outbox>,
    /// Bytes handed to tungstenite, counted for [`Buffer`].
    taken: usize,
}

impl Read for Incoming<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.socket {
            Socket::Plain(_) => self.socket.receive(buf)?,
            Socket::Tls(tls) => loop {
                let step = tls.read_step(buf);
                // Before waiting on the socket again, not whenever
                // something else is next sent.
                if tls.wants_write() {
                    self.outbox.flush();
                }
                if let Some(n) = step? {
                    break n;
                }
            },
        };
        if n > 0 {
            self.outbox.hear();
        }
        self.taken += n;
        Ok(n)
    }
}

impl Write for Incoming<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
