//! One client's lifecycle, from the first byte of its request to the last byte of its close.
//!
//! A connection has one thread, the one that accepted it. It reads the
//! request head and answers it; a plain HTTP request ends there. An upgrade
//! gets an [`Outbox`] with the 101 at its front, an entry in the hub, its
//! rooms, and then the thread becomes the connection's reader. Every byte
//! the client receives goes through the outbox, whoever sends it: this
//! thread, the hub, or the drain thread finishing a write the socket had no
//! room for. When the reader ends, for whatever reason, it asks the hub to
//! take the connection out: when `serve` returns, the thread is free, and
//! the socket closes once the hub has let go and the last bytes queued for
//! it have left. Those have the write and close timeouts together at most,
//! and meanwhile the connection keeps its place within the limits; a
//! client's close is answered ahead of them, which drops them.

mod credential_holders;
mod drain;
mod heartbeat;
mod outbox;
mod reader;
mod token_bucket;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{Level, debug, error};

pub(crate) use self::credential_holders::CredentialHolders;
#[cfg(test)]
pub(crate) use self::drain::Job;
pub(crate) use self::drain::{Drain, DrainHandle};
use self::heartbeat::Expiry;
#[cfg(test)]
pub(crate) use self::outbox::tests::{Recorded, recorded};
pub(crate) use self::outbox::{Closing, Outbox, Queued, Refused, assert_unlocked};
use self::reader::{ReadEnd, Reader};
use self::token_bucket::TokenBucket;
use crate::admission::Permit;
use crate::close::{CloseReason, Ending, is_timeout};
use crate::config::Config;
use crate::error::{Refusal, Result};
use crate::frame::Frame;
use crate::handler::{Accept, Connection, Handler};
use crate::handshakes::Handshake;
use crate::http::request::{Head, HeadError, HeadLimits, read_head};
use crate::http::routes::{Route, route};
use crate::http::{Request, Response};
use crate::hub::{ConnectionId, HubHandle};
use crate::log_text::Untrusted;
use crate::metrics::{HandshakeEnd, Metrics};
use crate::refusal_log::RefusalLog;
use crate::stream::{Socket, round_trip};
use crate::tls::{Rejected, TlsAcceptor};
use crate::upgrade::{self, Gate};

/// What every connection thread shares: read-only, or counters.
#[derive(Debug)]
pub(crate) struct Shared<H> {
    pub(crate) config: Config,
    pub(crate) handler: H,
    pub(crate) hub: HubHandle,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) gate: Arc<Gate>,
    pub(crate) tls: Option<Arc<TlsAcceptor>>,
    /// Where outboxes whose socket is full are finished.
    pub(crate) drain: DrainHandle,
    /// The connections opened with credentials, closed if a reload takes
    /// their bearer token or JWT key away.
    pub(crate) credential_holders: Arc<CredentialHolders>,
    /// Refused upgrades, summed up in the log: a flood of them must not
    /// write a line each.
    pub(crate) refused_upgrades: RefusalLog,
    /// Connections closed for a fault, summed up in the log likewise.
    pub(crate) faults: RefusalLog,
    /// Connections a trusted proxy forwarded, refused at the limits of the
    /// address it forwarded for: refused at the door, but by the
    /// connection's own thread, once the request has named the client.
    pub(crate) refused_by_forwarded_address: RefusalLog,
}

/// The summary of refused upgrades, logged at `info` under this module's
/// target, beside the `debug` line of each refusal.
pub(crate) fn refused_upgrades() -> RefusalLog {
    RefusalLog::new(Level::Info, module_path!(), "upgrade", "")
}

/// The summary of connections refused for the address a trusted proxy
/// forwarded them for, logged at `warn` as the door's refusals are: the
/// first in a while in full, the rest counted by status.
pub(crate) fn refused_by_forwarded_address() -> RefusalLog {
    RefusalLog::new(Level::Warn, module_path!(), "connection", " for the address a proxy forwarded")
}

/// The summary of connections closed for a fault, logged at `warn`: the
/// first in a while in full, the rest counted by close code.
pub(crate) fn faults() -> RefusalLog {
    RefusalLog::of("closed", Level::Warn, module_path!(), "connection", " for a fault")
}

/// The body of a connection thread. `permit` is the connection's place
/// within the connection limits; it is given back when this returns, or,
/// if the drain thread is still finishing the connection's output, once
/// that ends.
/// `handshake` is its place among the connections still in their
/// handshake, given back once its request head is read.
///
/// The pages of stack a thread touches stay resident for its whole life, so
/// a long-lived connection's thread should never have been much deeper than
/// its read loop needs. So the three steps (the HTTP phase, [`open`], the
/// WebSocket phase) are kept out of line (`#[inline(never)]`), each called
/// from here once the one before has returned, and what one hands the next
/// is boxed, so that this frame, under all of them, stays small; rare paths
/// within a step (log lines, answers) are out of line too, and so is what
/// the read loop calls with a message. Measured on a fresh server, the
/// deepest any thread went was 7,608 bytes below the top of its stack for
/// connections that only listen (the read loop's first read, allocating
/// the read buffer), and 7,952 for connections sending room messages (a
/// message's way through the handler to the hub): within two pages, the
/// first of which glibc fills with the thread's descriptor and thread-local
/// storage.
#[inline(never)]
pub(crate) fn serve<H: Handler>(
    tcp: TcpStream,
    peer: SocketAddr,
    id: ConnectionId,
    mut permit: Permit,
    handshake: Handshake,
    shared: &Shared<H>,
) {
    let upgraded = http_phase(tcp, peer, id, &mut permit, handshake, shared);
    if shared.tls.is_some() {
        // The TLS handshake went deep: neither the read loop nor the
        // thread parked after it needs those pages.
        if let Err(e) = crate::stack::release_below() {
            debug!("connection {id}: stack pages kept: {e}");
        }
    }
    let Some(upgraded) = upgraded else { return };
    if let Some(opened) = open(upgraded, shared) {
        converse(opened, permit, shared);
    }
}

/// A connection that [`open`] plugged in, on its way to the reader loop.
struct Opened<'a, S> {
    socket: Socket,
    line: Line<'a>,
    state: S,
    /// What the client sent after its request head.
    rest: Vec<u8>,
}

/// A connection whose upgrade the HTTP phase accepted, on its way to the
/// WebSocket phase.
struct Upgraded<S> {
    socket: Socket,
    id: ConnectionId,
    /// The request, and what the client sent after it.
    head: Box<Head>,
    accept: Accept<S>,
    /// When the connection was accepted, for the handshake's duration.
    accepted: Instant,
}

/// The HTTP phase: TLS, the request head, and its answer, unless it is an
/// upgrade the handler accepted: that connection is returned.
#[inline(never)]
fn http_phase<H: Handler>(
    tcp: TcpStream,
    peer: SocketAddr,
    id: ConnectionId,
    permit: &mut Permit,
    handshake: Handshake,
    shared: &Shared<H>,
) -> Option<Box<Upgraded<H::State>>> {
    // The handshake's duration counts from the accept, whatever ends it.
    let accepted = handshake.started();
    // The TLS handshake and the request head share one deadline, so that a
    // peer trickling bytes cannot stretch the two.
    let limits = HeadLimits {
        max_size: shared.config.limits.max_head_size,
        max_headers: shared.config.limits.max_headers,
        deadline: Instant::now() + shared.config.timeouts.handshake,
        min_rate: shared.config.limits.handshake_min_rate,
        round_trip: if shared.tls.is_some() { round_trip(&tcp) } else { Duration::ZERO },
        // Over TLS the handshake's reads have set their own timeouts.
        first_read_timed: shared.tls.is_none(),
    };
    // The book learns the socket before anything is read from it, so that a
    // shed wakes a TLS handshake as it wakes a request head.
    let tcp = Arc::new(tcp);
    if handshake.reading(&tcp, limits.round_trip).is_err() {
        shed(Socket::plain(tcp), id, peer, accepted, shared);
        return None;
    }
    let mut socket = secure(tcp, id, peer, &limits, accepted, &handshake, shared)?;
    let head = read_head(&mut socket, peer, limits);
    // Shed while reading (its read woke with the end of the stream), or
    // just after: either way it is answered as shed.
    if handshake.end().is_err() {
        shed(socket, id, peer, accepted, shared);
        return None;
    }
    let mut head = match head {
        Ok(head) => head,
        Err(HeadError::Refused(refusal)) => {
            debug!("connection {id} from {peer}: {refusal}");
            shared.metrics.http_response(refusal.status);
            answer(&mut socket, &Response::from(refusal), false, HandshakeEnd::Refused, accepted, shared);
            return None;
        }
        Err(HeadError::Gone) => {
            shared.metrics.handshake_took(HandshakeEnd::Refused, accepted);
            return None;
        }
    };
    let access = &shared.config.access;
    if access.trusts(peer.ip()) {
        head.request.believe_forwarded_for(|address| access.trusts(address));
        if let Err(refusal) = permit.attribute(head.request.client_ip()) {
            let line =
                format_args!("connection {id} from {} via {peer}: {refusal}", head.request.client_ip());
            shared.refused_by_forwarded_address.note_with(refusal.status, line);
            shared.metrics.connection_refused(refusal.status);
            answer(&mut socket, &Response::from(refusal), false, HandshakeEnd::Refused, accepted, shared);
            return None;
        }
    }
    let client = head.request.client_ip();
    let routed = panic::catch_unwind(AssertUnwindSafe(|| {
        route(&mut head.request, &shared.handler, &shared.gate, &shared.hub, &shared.metrics)
    }));
    let request = &head.request;
    let routed = routed.unwrap_or_else(|_| handler_panicked(id, client, request));
    match routed {
        Route::Answer(response) => {
            reply(&mut socket, id, client, request, &response, accepted, shared);
            None
        }
        Route::Upgrade(accept) => Some(Box::new(Upgraded { socket, id, head, accept, accepted })),
    }
}

/// What a handler that panicked on `request` answers.
#[inline(never)]
fn handler_panicked<S>(id: ConnectionId, client: IpAddr, request: &Request) -> Route<S> {
    error!(
        "connection {id} from {client}: the handler panicked on {} {}",
        Untrusted(request.method()),
        Untrusted(request.path())
    );
    Route::Answer(Response::from(Refusal::new(500, "internal error")))
}

/// Answers a request that was not an accepted upgrade: a plain HTTP
/// response, or a refused upgrade. Out of line, like its log lines: the
/// HTTP phase's frame is under every call the handshake makes.
#[inline(never)]
fn reply<H>(
    socket: &mut Socket,
    id: ConnectionId,
    client: IpAddr,
    request: &Request,
    response: &Response,
    accepted: Instant,
    shared: &Shared<H>,
) {
    let status = response.status();
    let end = if request.wants_websocket() {
        // A handler's reason may quote the request.
        let reason = String::from_utf8_lossy(response.body_bytes());
        debug!(
            "connection {id} from {client}: upgrade to {} refused: {status} {}",
            Untrusted(request.path()),
            Untrusted(reason.trim_end())
        );
        shared.metrics.upgrade_refused(status);
        shared.refused_upgrades.note(status);
        HandshakeEnd::Refused
    } else {
        debug!(
            "connection {id} from {client}: {} {} -> {status}",
            Untrusted(request.method()),
            Untrusted(request.path())
        );
        shared.metrics.http_response(status);
        HandshakeEnd::Http
    };
    answer(socket, response, request.method() == "HEAD", end, accepted, shared);
}

/// Answers a connection shed from its handshake to make room for a
/// newcomer: 408, as to any client whose request took too long. A socket
/// on a TLS port that has not made its TLS handshake cannot be told: it is
/// closed.
#[inline(never)]
fn shed<H>(mut socket: Socket, id: ConnectionId, peer: SocketAddr, accepted: Instant, shared: &Shared<H>) {
    debug!("connection {id} from {peer}: shed from its handshake to make room for a newcomer");
    if shared.tls.is_some() && matches!(socket, Socket::Plain(_)) {
        shared.metrics.handshake_took(HandshakeEnd::Refused, accepted);
        return;
    }
    shared.metrics.http_response(408);
    let refusal = Refusal::new(408, "request not received in time: the server is busy");
    answer(&mut socket, &Response::from(refusal), false, HandshakeEnd::Refused, accepted, shared);
}

/// The socket to speak HTTP over: the TCP stream itself, or, with TLS
/// configured, the TLS stream after a handshake. A client that speaks plain
/// HTTP to a TLS port is told so in plain HTTP.
#[inline(never)]
fn secure<H>(
    tcp: Arc<TcpStream>,
    id: ConnectionId,
    peer: SocketAddr,
    limits: &HeadLimits,
    accepted: Instant,
    handshake: &Handshake,
    shared: &Shared<H>,
) -> Option<Socket> {
    let Some(acceptor) = &shared.tls else {
        return Some(Socket::plain(tcp));
    };
    // The TLS handshake's bytes are held to the request head's rate rule.
    match acceptor.accept(tcp, &|since, received| limits.due(since, received)) {
        Ok(tls) => Some(Socket::tls(tls)),
        Err(Rejected::NotTls(tcp)) => {
            debug!("connection {id} from {peer}: plain text on the TLS port");
            shared.metrics.tls_handshake_failed();
            shared.metrics.http_response(400);
            let refusal = Refusal::bad_request("this port speaks TLS: use https:// or wss://");
            let socket = &mut Socket::plain(tcp);
            answer(socket, &Response::from(refusal), false, HandshakeEnd::Refused, accepted, shared);
            None
        }
        Err(Rejected::Gone) => {
            shared.metrics.handshake_took(HandshakeEnd::Refused, accepted);
            None
        }
        Err(Rejected::Failed(_)) if handshake.is_shed() => {
            debug!("connection {id} from {peer}: shed in its TLS handshake to make room for a newcomer");
            shared.metrics.handshake_took(HandshakeEnd::Refused, accepted);
            None
        }
        Err(Rejected::Failed(e)) => {
            // A read that ran out of time fails with EAGAIN, "Resource
            // temporarily unavailable": named for what it is.
            if is_timeout(&e) {
                debug!("connection {id} from {peer}: TLS handshake not done in time (its deadline or rate)");
            } else {
                debug!("connection {id} from {peer}: TLS handshake failed: {e}");
            }
            shared.metrics.tls_handshake_failed();
            shared.metrics.handshake_took(HandshakeEnd::Refused, accepted);
            None
        }
    }
}

/// Sends a plain HTTP response and closes without losing it. Its writes
/// give up after the write timeout, which every accepted socket inherits
/// from the listener. The handshake of the connection accepted at
/// `accepted` ends as `end` once the response is written, not once the
/// client has closed.
#[inline(never)]
fn answer<H>(
    socket: &mut Socket,
    response: &Response,
    head_only: bool,
    end: HandshakeEnd,
    accepted: Instant,
    shared: &Shared<H>,
) {
    let written = socket.write_last(&response.to_bytes(head_only));
    shared.metrics.handshake_took(end, accepted);
    if written.is_ok() {
        socket.linger(shared.config.timeouts.close);
    }
}

/// The WebSocket phase, once [`open`]: the reader loop, and the end.
#[inline(never)]
#[allow(clippy::boxed_local)] // See `serve`.
fn converse<H: Handler>(opened: Box<Opened<'_, H::State>>, permit: Permit, shared: &Shared<H>) {
    let config = &shared.config;
    let Opened { socket, line: Line { registration, connection }, mut state, rest } = *opened;
    let read_end = match welcome(&connection, &mut state, shared) {
        Ok(()) => {
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
            reader.run(&socket, rest)
        }
        Err(end) => end,
    };
    drop(registration);
    farewell(&socket, &connection, &mut state, read_end, shared);
    // A socket whose output the drain thread is still finishing holds on.
    connection.outbox.keep_place(permit);
}

/// The connection is open: says so, and tells the handler. A handler that
/// panics closes the connection with 1011, as in `on_message`.
#[inline(never)]
fn welcome<H: Handler>(
    connection: &Connection,
    state: &mut H::State,
    shared: &Shared<H>,
) -> std::result::Result<(), ReadEnd> {
    let (id, client, path) = (connection.id, connection.client_ip, Untrusted(&connection.path));
    match connection.identity.as_deref() {
        // Who the credentials say the client is, for an audit of who was
        // connected: a token's name or a JWT's `sub`, the issuer's text.
        Some(identity) => debug!("connection {id} from {client}: open on {path} as {}", Untrusted(identity)),
        None => debug!("connection {id} from {client}: open on {path}"),
    }
    panic::catch_unwind(AssertUnwindSafe(|| shared.handler.on_open(connection, state))).map_err(|_| {
        let close = CloseReason::Internal.frame();
        let _ = connection.outbox.close(Frame::close(Some(close.clone())), Closing::FromReader);
        ReadEnd::ServerClosed { close, cause: "the handler panicked as the connection opened".into() }
    })
}

/// The connection is over: lets the client finish its side of our close,
/// then says how it ended, and tells the handler.
#[inline(never)]
fn farewell<H: Handler>(
    socket: &Socket,
    connection: &Connection,
    state: &mut H::State,
    read_end: ReadEnd,
    shared: &Shared<H>,
) {
    let cause = match &read_end {
        ReadEnd::ServerClosed { cause, .. } => {
            // The client should answer our close and hang up; let it,
            // briefly. The outbox sends the FIN once the close has left.
            socket.discard_input(shared.config.timeouts.close);
            format!(" ({cause})")
        }
        _ => connection.outbox.failure().map_or_else(String::new, |failure| format!(" ({failure})")),
    };
    let ending = ending(read_end, connection.outbox.closed_with());
    if ending == Ending::Dropped {
        shared.metrics.dropped();
    }
    let (id, client) = (connection.id, connection.client_ip);
    match ending.fault_code() {
        Some(code) => {
            let line = format_args!("connection {id} from {client}: {ending}{cause}");
            shared.faults.note_with(code.into(), line);
        }
        None => debug!("connection {id} from {client}: {ending}{cause}"),
    }
    // A panic here has nothing left to close; the thread goes on to serve
    // its next client.
    let closed =
        panic::catch_unwind(AssertUnwindSafe(|| shared.handler.on_close(connection, state, &ending)));
    if closed.is_err() {
        error!("connection {id} from {client}: the handler panicked in on_close");
    }
}

/// Plugs the connection in: an outbox holding the 101, then its hub entry
/// and rooms, so that a client holding its 101 is already in its rooms; room
/// frames relayed meanwhile wait behind the 101. Then the 101 leaves, with
/// whatever is queued behind it. `None` if any step fails; the client has
/// been told why where that is still possible.
///
/// Called by `serve` between the two phases rather than from either: the
/// outbox, the hub and the drain thread are each reached through a few
/// calls, and from within a phase's frame they would take the stack a page
/// deeper, resident for as long as the connection lives.
#[inline(never)]
#[allow(clippy::boxed_local)] // See `serve`.
fn open<H: Handler>(
    upgraded: Box<Upgraded<H::State>>,
    shared: &Shared<H>,
) -> Option<Box<Opened<'_, H::State>>> {
    let Upgraded { mut socket, id, head, accept, accepted } = *upgraded;
    let Accept { state, rooms, subprotocol } = accept;
    let line = plug_in(&mut socket, id, &head.request, rooms, subprotocol, shared);
    // The 101 has just been handed to the socket.
    let end = if line.is_some() { HandshakeEnd::Upgraded } else { HandshakeEnd::Refused };
    shared.metrics.handshake_took(end, accepted);
    // The request is dropped here: a connection may live for days, its
    // request headers need not.
    Some(Box::new(Opened { socket, line: line?, state, rest: head.rest }))
}

/// What [`open`] does, from the parts it needs.
fn plug_in<'a, H: Handler>(
    socket: &mut Socket,
    id: ConnectionId,
    request: &Request,
    rooms: Vec<Arc<str>>,
    subprotocol: Option<String>,
    shared: &'a Shared<H>,
) -> Option<Line<'a>> {
    let config = &shared.config;
    let switching = upgrade::switching_protocols(request, subprotocol.as_deref()).to_bytes(false);
    let outbox = Outbox::new(
        id,
        socket.sink(),
        switching,
        config.limits.outbox_bytes,
        shared.drain.clone(),
        shared.metrics.clone(),
    );
    let outbox = match outbox {
        Ok(outbox) => outbox,
        Err(e) => {
            debug!("connection {id}: cannot seal the 101: {e}");
            return None;
        }
    };
    let now = Instant::now();
    let lifetime = config.timeouts.max_lifetime.map(|max| Expiry::lifetime(now, max));
    let credentials = request.credentials_expire().map(|until| Expiry::credentials(now, until));
    for expiry in lifetime.into_iter().chain(credentials) {
        shared.drain.expire(Arc::downgrade(&outbox), expiry);
    }
    // Revoked between its check and now: closed after its 101, and never
    // in its rooms or shown to the handler.
    if request.credential().is_some_and(|credential| !shared.credential_holders.add(credential, &outbox)) {
        socket.discard_input(config.timeouts.close);
        return None;
    }
    let Ok(registration) = Registration::new(id, &shared.hub, outbox.clone(), &shared.metrics) else {
        // The hub has stopped: the server is shutting down. The 101 is
        // queued (and sealed, over TLS), so close after it.
        let close = Frame::close(Some(CloseReason::Shutdown.frame()));
        let _ = outbox.close(close, Closing::FromReader);
        socket.discard_input(config.timeouts.close);
        return None;
    };
    for room in rooms {
        let _ = shared.hub.join(id, room);
    }
    outbox.flush();
    let connection = Box::new(Connection {
        id,
        peer: request.peer(),
        client_ip: request.client_ip(),
        identity: request.identity().map(str::to_owned),
        verified_name: request.verified_name().map(str::to_owned),
        subprotocol,
        path: request.path().to_owned(),
        hub: shared.hub.clone(),
        outbox,
    });
    Some(Line { registration, connection })
}

/// An open connection's parts, held by its thread.
struct Line<'a> {
    registration: Registration<'a>,
    /// Boxed: held by value it would sit in the frame under the read loop,
    /// and 200 bytes there take a message's way through the handler and
    /// the hub onto a third page of the thread's stack.
    connection: Box<Connection>,
}

/// Says how the connection ended, from what the reader saw and the close
/// frame the outbox queued first. When that is not the reader's reply, the
/// server spoke first (a shutdown, a slow consumer, the application),
/// whatever the client answered.
fn ending(read_end: ReadEnd, written: Option<Frame>) -> Ending {
    let server_close = |written: Option<Frame>| written.and_then(|frame| frame.close_frame());
    match read_end {
        // The reader's close is not sent if another was queued first.
        ReadEnd::ServerClosed { close, .. } => Ending::ByServer(server_close(written).unwrap_or(close)),
        ReadEnd::ClientClosed { close, reply } => match written {
            Some(frame) if !reply.is_some_and(|reply| reply.same_as(&frame)) => {
                server_close(Some(frame)).map_or_else(|| Ending::by_client(close), Ending::ByServer)
            }
            _ => Ending::by_client(close),
        },
        ReadEnd::Dropped => server_close(written).map_or(Ending::Dropped, Ending::ByServer),
    }
}

/// A connection's entry in the hub, for as long as its reader runs. Dropping
/// it (when the reader returns, or unwinds from a panicking handler) takes the
/// connection out of the hub and tells the outbox that nothing more is read.
struct Registration<'a> {
    id: ConnectionId,
    hub: &'a HubHandle,
    outbox: Arc<Outbox>,
    metrics: &'a Metrics,
}

impl<'a> Registration<'a> {
    fn new(id: ConnectionId, hub: &'a HubHandle, outbox: Arc<Outbox>, metrics: &'a Metrics) -> Result<Self> {
        hub.register(id, outbox.clone())?;
        metrics.connection_opened();
        Ok(Registration { id, hub, outbox, metrics })
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.hub.unregister(self.id);
        self.outbox.reader_ended();
        self.metrics.connection_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::CloseFrame;

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
    fn a_reader_close_after_another_ends_with_the_one_sent() {
        let kick = Frame::close(close(CloseReason::SlowConsumer));
        let end = ReadEnd::ServerClosed { close: CloseReason::RateLimited.frame(), cause: "too fast".into() };
        assert_eq!(ending(end, Some(kick)), Ending::ByServer(CloseReason::SlowConsumer.frame()));
        let end = ReadEnd::ServerClosed { close: CloseReason::RateLimited.frame(), cause: "too fast".into() };
        let own = Frame::close(close(CloseReason::RateLimited));
        assert_eq!(ending(end, Some(own)), Ending::ByServer(CloseReason::RateLimited.frame()));
    }

    #[test]
    fn hang_up_after_a_slow_consumer_close_is_by_server() {
        let kick = Frame::close(close(CloseReason::SlowConsumer));
        assert_eq!(ending(ReadEnd::Dropped, Some(kick)), Ending::ByServer(CloseReason::SlowConsumer.frame()));
        assert_eq!(ending(ReadEnd::Dropped, None), Ending::Dropped);
    }
}
