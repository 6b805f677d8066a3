//! One client's lifecycle, from the first byte of its request to the last byte of its close.
//!
//! The connection thread reads the request head and answers it. A plain HTTP
//! request ends there. An upgrade gets its 101, a writer thread, an entry in
//! the hub, and then this thread becomes the connection's reader. When the
//! reader ends, for whatever reason, it takes the connection out of the hub,
//! lets the writer finish, and waits for it: when `serve` returns, the
//! connection's threads, socket and hub entry are all gone.

mod outbox;
mod reader;
mod token_bucket;
mod writer;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use log::{debug, error, info, warn};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

pub(crate) use self::outbox::{Outbox, Refused, Signal};
#[cfg(test)]
pub(crate) use self::outbox::{OutboxReceiver, outbox};
use self::reader::{ReadEnd, Reader};
use self::token_bucket::TokenBucket;
use self::writer::Writer;
use crate::admission::Permit;
use crate::close::Ending;
use crate::config::Config;
use crate::error::{Error, Refusal, Result};
use crate::frame::Frame;
use crate::handler::{Accept, Connection, Handler};
use crate::http::request::{Head, HeadError, HeadLimits, read_head};
use crate::http::routes::{Route, route};
use crate::http::{Request, Response};
use crate::hub::{ConnectionId, HubHandle};
use crate::metrics::Metrics;
use crate::stream::Socket;
use crate::tls::{Rejected, TlsAcceptor};
use crate::upgrade::{self, Gate};

/// What every connection thread shares: read-only, or counters.
#[derive(Debug)]
pub(crate) struct Shared<H> {
    pub(crate) config: Config,
    pub(crate) handler: H,
    pub(crate) hub: HubHandle,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) gate: Gate,
    pub(crate) tls: Option<TlsAcceptor>,
}

/// Starts a named thread with the configured stack size.
pub(crate) fn spawn<T: Send + 'static>(
    name: String,
    stack_size: usize,
    body: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>> {
    thread::Builder::new()
        .name(name.clone())
        .stack_size(stack_size)
        .spawn(body)
        .map_err(|source| Error::Spawn { name, source })
}

/// The body of a connection thread. `permit` is the connection's place
/// within the connection limits; it is given back when this returns.
///
/// The phases below are kept out of line (`#[inline(never)]`): the pages of
/// stack a thread touches stay resident for its whole life, so the HTTP
/// phase and the WebSocket phase should be sibling frames, not one frame
/// holding the locals of both, to keep a long-lived connection's stack to a
/// couple of pages.
pub(crate) fn serve<H: Handler>(
    tcp: TcpStream,
    peer: SocketAddr,
    id: ConnectionId,
    mut permit: Permit,
    shared: &Shared<H>,
) {
    // The TLS handshake and the request head share one deadline, so that a
    // peer trickling bytes cannot stretch the two.
    let deadline = Instant::now() + shared.config.timeouts.handshake;
    let Some(mut socket) = secure(tcp, id, peer, deadline, shared) else {
        return;
    };
    let limits = HeadLimits {
        max_size: shared.config.limits.max_head_size,
        max_headers: shared.config.limits.max_headers,
        deadline,
    };
    let mut head = match read_head(&mut socket, peer, limits) {
        Ok(head) => head,
        Err(HeadError::Refused(refusal)) => {
            debug!("connection {id} from {peer}: {refusal}");
            shared.metrics.http_response(refusal.status);
            answer(&mut socket, &Response::from(refusal), false, shared);
            return;
        }
        Err(HeadError::Gone) => return,
    };
    let access = &shared.config.access;
    if access.trusts(peer.ip()) {
        head.request.believe_forwarded_for(|address| access.trusts(address));
        if let Err(refusal) = permit.attribute(head.request.client_ip()) {
            debug!("connection {id} from {} via {peer}: {refusal}", head.request.client_ip());
            shared.metrics.connection_refused(refusal.status);
            answer(&mut socket, &Response::from(refusal), false, shared);
            return;
        }
    }
    let client = head.request.client_ip();
    let routed = panic::catch_unwind(AssertUnwindSafe(|| {
        route(&mut head.request, &shared.handler, &shared.gate, &shared.hub, &shared.metrics)
    }));
    let request = &head.request;
    let routed = routed.unwrap_or_else(|_| {
        error!(
            "connection {id} from {client}: the handler panicked on {} {}",
            request.method(),
            request.path()
        );
        Route::Answer(Response::from(Refusal::new(500, "internal error")))
    });
    match routed {
        Route::Answer(response) => {
            let status = response.status();
            if request.wants_websocket() {
                let reason = String::from_utf8_lossy(response.body_bytes());
                info!(
                    "connection {id} from {client}: upgrade to {} refused: {status} {}",
                    request.path(),
                    reason.trim_end()
                );
                shared.metrics.upgrade_refused(status);
            } else {
                debug!("connection {id} from {client}: {} {} -> {status}", request.method(), request.path());
                shared.metrics.http_response(status);
            }
            answer(&mut socket, &response, request.method() == "HEAD", shared);
        }
        Route::Upgrade(accept) => {
            let Head { request, rest } = head;
            let Accept { state, rooms, subprotocol } = accept;
            let line = open(&mut socket, id, &request, rooms, subprotocol, shared);
            // A connection may live for days; its request headers need not.
            drop(request);
            if let Some(line) = line {
                converse(socket, id, line, state, rest, shared);
            }
        }
    }
}

/// The socket to speak HTTP over: the TCP stream itself, or, with TLS
/// configured, the TLS stream after a handshake. A client that speaks plain
/// HTTP to a TLS port is told so in plain HTTP.
#[inline(never)]
fn secure<H>(
    tcp: TcpStream,
    id: ConnectionId,
    peer: SocketAddr,
    deadline: Instant,
    shared: &Shared<H>,
) -> Option<Socket> {
    let Some(acceptor) = &shared.tls else {
        return Some(Socket::plain(tcp));
    };
    match acceptor.accept(tcp, deadline) {
        Ok(tls) => Some(Socket::tls(tls)),
        Err(Rejected::NotTls(tcp)) => {
            debug!("connection {id} from {peer}: plain text on the TLS port");
            shared.metrics.tls_handshake_failed();
            let refusal = Refusal::bad_request("this port speaks TLS: use https:// or wss://");
            answer(&mut Socket::plain(tcp), &Response::from(refusal), false, shared);
            None
        }
        Err(Rejected::Failed(e)) => {
            debug!("connection {id} from {peer}: TLS handshake failed: {e}");
            shared.metrics.tls_handshake_failed();
            None
        }
    }
}

/// Sends a plain HTTP response and closes without losing it.
#[inline(never)]
fn answer<H>(socket: &mut Socket, response: &Response, head_only: bool, shared: &Shared<H>) {
    let _ = socket.set_write_timeout(shared.config.timeouts.write);
    if response.write_to(socket, head_only).is_ok() {
        socket.linger(shared.config.timeouts.close);
    }
}

/// The WebSocket phase, once [`open`]: the reader loop, and the end.
#[inline(never)]
fn converse<H: Handler>(
    socket: Socket,
    id: ConnectionId,
    line: Line<'_>,
    mut state: H::State,
    rest: Vec<u8>,
    shared: &Shared<H>,
) {
    let config = &shared.config;
    let Line { registration, writer, connection } = line;
    debug!("connection {id} from {}: open on {}", connection.client_ip, connection.path);
    shared.handler.on_open(&connection, &mut state);

    let reader = Reader {
        websocket: config.websocket,
        handler: &shared.handler,
        connection: &connection,
        state: &mut state,
        metrics: &shared.metrics,
        bucket: TokenBucket::new(
            config.limits.max_messages_per_sec,
            config.limits.message_burst,
            Instant::now(),
        ),
    };
    let read_end = reader.run(socket.read_half(), rest);
    drop(registration);
    let written = writer.join().ok().and_then(|result| result.ok()).flatten();
    let cause = match &read_end {
        ReadEnd::ServerClosed { cause, .. } => {
            // The client should answer our close and hang up; let it, briefly.
            socket.linger(config.timeouts.close);
            format!(" ({cause})")
        }
        _ => String::new(),
    };

    let ending = ending(read_end, written);
    if ending == Ending::Dropped {
        shared.metrics.dropped();
    }
    if ending.is_fault() {
        warn!("connection {id} from {}: {ending}{cause}", connection.client_ip);
    } else {
        debug!("connection {id} from {}: {ending}{cause}", connection.client_ip);
    }
    shared.handler.on_close(&connection, &mut state, &ending);
}

/// Plugs the connection in: its hub entry and rooms first, so that a client
/// holding its 101 is already in its rooms; then the 101; then the writer,
/// which takes over every write from here on. `None` if any step fails; the
/// client has been told why where that is still possible.
#[inline(never)]
fn open<'a, H: Handler>(
    socket: &mut Socket,
    id: ConnectionId,
    request: &Request,
    rooms: Vec<Arc<str>>,
    subprotocol: Option<String>,
    shared: &'a Shared<H>,
) -> Option<Line<'a>> {
    let config = &shared.config;
    socket.set_read_timeout(config.timeouts.idle).ok()?;
    socket.set_write_timeout(config.timeouts.write).ok()?;
    let (outbox, outbox_rx) = self::outbox::outbox(config.limits.outbox_bytes);
    let Ok(registration) = Registration::new(id, &shared.hub, outbox.clone(), &shared.metrics) else {
        // The hub has stopped: the server is shutting down.
        answer(socket, &Response::from(Refusal::new(503, "server shutting down")), false, shared);
        return None;
    };
    for room in rooms {
        let _ = shared.hub.join(id, room);
    }
    upgrade::switching_protocols(request, subprotocol.as_deref()).write_to(socket, false).ok()?;

    let writer = Writer {
        wire: socket.write_half(),
        outbox: outbox_rx,
        ping_interval: config.timeouts.ping_interval,
        close_timeout: config.timeouts.close,
        metrics: shared.metrics.clone(),
    };
    let writer = match spawn(format!("conn-{}-write", id.0), config.thread_stack_size, move || writer.run()) {
        Ok(writer) => writer,
        Err(e) => {
            // No writer exists, so this thread may still write: tell the
            // client to come back later rather than leave it waiting.
            warn!("connection {id}: {e}; closing with 1013");
            shared.metrics.thread_refused();
            let close =
                Frame::close(Some(CloseFrame { code: CloseCode::Again, reason: "server busy".into() }));
            let _ = socket.write_all(close.as_bytes());
            socket.linger(config.timeouts.close);
            return None;
        }
    };
    let connection = Connection {
        id,
        peer: request.peer(),
        client_ip: request.client_ip(),
        identity: request.identity().map(str::to_owned),
        subprotocol,
        path: request.path().to_owned(),
        hub: shared.hub.clone(),
        outbox,
    };
    Some(Line { registration, writer, connection })
}

/// An open connection's parts, held by its reader thread.
struct Line<'a> {
    registration: Registration<'a>,
    /// The writer thread; it returns the close frame it wrote, if any.
    writer: JoinHandle<io::Result<Option<Frame>>>,
    connection: Connection,
}

/// Says how the connection ended, from what the reader saw and the close
/// frame the writer wrote. When the writer wrote a close frame that is not
/// the reader's reply, the server spoke first (a shutdown, a slow consumer,
/// the application), whatever the client answered.
fn ending(read_end: ReadEnd, written: Option<Frame>) -> Ending {
    let server_close = |written: Option<Frame>| written.and_then(|frame| frame.close_frame());
    match read_end {
        ReadEnd::ServerClosed { close, .. } => Ending::ByServer(close),
        ReadEnd::ClientClosed { close, reply } => match written {
            Some(frame) if !reply.is_some_and(|reply| reply.same_as(&frame)) => {
                server_close(Some(frame)).map_or(Ending::ByClient(close), Ending::ByServer)
            }
            _ => Ending::ByClient(close),
        },
        ReadEnd::Dropped => server_close(written).map_or(Ending::Dropped, Ending::ByServer),
    }
}

/// A connection's entry in the hub, for as long as its reader runs. Dropping
/// it (when the reader returns, or unwinds from a panicking handler) takes the
/// connection out of the hub and tells the writer the reader is done.
struct Registration<'a> {
    id: ConnectionId,
    hub: &'a HubHandle,
    /// To tell the writer the reader is done.
    outbox: Outbox,
    metrics: &'a Metrics,
}

impl<'a> Registration<'a> {
    fn new(id: ConnectionId, hub: &'a HubHandle, outbox: Outbox, metrics: &'a Metrics) -> Result<Self> {
        hub.register(id, outbox.clone())?;
        metrics.connection_opened();
        Ok(Registration { id, hub, outbox, metrics })
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.hub.unregister(self.id);
        self.outbox.signal(Signal::ReaderDone);
        self.metrics.connection_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::close::CloseReason;

    fn close(reason: CloseReason) -> Option<CloseFrame> {
        Some(reason.frame())
    }

    #[test]
    fn client_close_answered_by_our_reply_is_by_client() {
        let reply = Frame::close(None);
        let end = ReadEnd::ClientClosed { close: None, reply: Some(reply.clone()) };
        assert_eq!(ending(end, Some(reply)), Ending::ByClient(None));
    }

    #[test]
    fn server_close_answered_by_client_is_by_server() {
        let shutdown = Frame::close(close(CloseReason::Shutdown));
        let reply = Frame::close(close(CloseReason::Shutdown));
        let end = ReadEnd::ClientClosed { close: close(CloseReason::Shutdown), reply: Some(reply) };
        assert_eq!(ending(end, Some(shutdown)), Ending::ByServer(CloseReason::Shutdown.frame()));
    }

    #[test]
    fn hang_up_after_a_slow_consumer_close_is_by_server() {
        let kick = Frame::close(close(CloseReason::SlowConsumer));
        assert_eq!(ending(ReadEnd::Dropped, Some(kick)), Ending::ByServer(CloseReason::SlowConsumer.frame()));
        assert_eq!(ending(ReadEnd::Dropped, None), Ending::Dropped);
    }
}
