//! The reader: the loop that reads one client's frames and hands its messages to the handler.
//!
//! tungstenite does the protocol work inside `read()`: unmasking, reassembling
//! fragments, checking UTF-8 and sizes, tracking the close handshake. The
//! answers it would write itself (pongs, close replies) are swallowed by
//! [`ReadHalf`] and sent here through the outbox instead, so that the writer
//! stays the only thread that writes.

use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use log::debug;
use tungstenite::Message;
use tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig};

use super::outbox::Refused;
use super::token_bucket::TokenBucket;
use crate::close::CloseReason;
use crate::frame::Frame;
use crate::handler::{Connection, Handler};
use crate::metrics::Metrics;
use crate::stream::ReadHalf;

/// How the reading side of a connection ended.
#[derive(Debug)]
pub(crate) enum ReadEnd {
    /// The client sent a close frame; `reply` is the frame queued in answer,
    /// unless the writer had already ended.
    ClientClosed { close: Option<CloseFrame>, reply: Option<Frame> },
    /// The reader closed the connection with `close` because of `cause` (a
    /// limit, a protocol error, an idle timeout, a panicking handler).
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
    pub(crate) fn run(mut self, socket: ReadHalf, rest: Vec<u8>) -> ReadEnd {
        let mut client_close = None;
        // Built here rather than by the caller, so that only this frame
        // holds it: every page of stack a connection thread touches stays
        // resident while the connection lives.
        let mut ws = WebSocket::from_partially_read(socket, rest, Role::Server, Some(self.websocket));
        loop {
            let error = match ws.read() {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                    if let Err(end) = self.within_rate().and_then(|()| self.deliver(message)) {
                        return end;
                    }
                    continue;
                }
                Ok(Message::Ping(payload)) => {
                    if let Err(end) = self.within_rate() {
                        return end;
                    }
                    self.pong(payload);
                    continue;
                }
                Ok(Message::Close(close)) => {
                    // tungstenite has already replaced a code that may not be
                    // sent on the wire with 1002, as RFC 6455 asks.
                    self.metrics.close_received();
                    let reply = self.queue_close(close.clone());
                    client_close = Some(ReadEnd::ClientClosed { close, reply });
                    continue;
                }
                Ok(Message::Pong(_) | Message::Frame(_)) => continue,
                Err(error) => error,
            };
            // After the client's close, tungstenite reports the end of the
            // handshake as an error; it is the normal way out.
            if let Some(end) = client_close {
                return end;
            }
            return match CloseReason::for_read_error(&error) {
                Some(reason) => self.close(reason, error.to_string()),
                None => {
                    debug!("connection {}: read ended: {error}", self.connection.id);
                    ReadEnd::Dropped
                }
            };
        }
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

    /// Hands a message to the handler. A panicking handler takes down its own
    /// connection (1011), and nothing else: the hub entry, the writer and the
    /// socket are still released in order.
    fn deliver(&mut self, message: Message) -> Result<(), ReadEnd> {
        self.metrics.message_in(message.len());
        let (handler, connection, state) = (self.handler, self.connection, &mut *self.state);
        let handled = panic::catch_unwind(AssertUnwindSafe(|| {
            handler.on_message(connection, state, message);
        }));
        handled.map_err(|_| self.close(CloseReason::Internal, "the handler panicked".into()))
    }

    /// Pongs count against the outbox budget, so a ping flood cannot grow
    /// memory; a client too slow to take its pongs is a slow consumer.
    fn pong(&self, payload: tungstenite::Bytes) {
        let outbox = &self.connection.outbox;
        match outbox.push(Frame::pong(payload)) {
            Err(Refused::Full) => self.connection.hub.evict(self.connection.id),
            _ => outbox.ring(),
        }
    }

    fn close(&self, reason: CloseReason, cause: String) -> ReadEnd {
        self.queue_close(Some(reason.frame()));
        ReadEnd::ServerClosed { close: reason.frame(), cause }
    }

    /// Queues a close frame behind what the outbox holds; returns it unless
    /// the writer has already ended.
    fn queue_close(&self, close: Option<CloseFrame>) -> Option<Frame> {
        let frame = Frame::close(close);
        let outbox = &self.connection.outbox;
        let queued = outbox.push_close(frame.clone()).ok().map(|()| frame);
        outbox.ring();
        queued
    }
}
