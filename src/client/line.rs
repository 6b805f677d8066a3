//! One line: an endpoint's connection, kept up for as long as the client runs.
//!
//! The line's thread connects, then becomes the connection's reader, as a
//! server connection thread does; a writer thread per connection does all
//! the writing (messages, pings, pongs, the close). When the connection
//! drops, the line waits out a backoff and connects again.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, bounded, never, select};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocket};
use tungstenite::{Error as WsError, Message};

use super::handshake::{Dialing, Opened, Target, open};
use super::{ClientConfig, ClientError, Endpoint, Event, Never, OUTGOING, Reconnect};
use crate::backoff::Backoff;
use crate::stream::{Hangup, Socket, WriteHalf};
use crate::tls::TlsConnector;

/// How long the writer waits for the server's close reply before hanging up.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long a closing client waits for a line to end before it hangs up on
/// its connection: the close wait, and a second to spare.
pub(crate) const GOODBYE: Duration = Duration::from_secs(3);
/// A connection that stayed up this long starts the backoff afresh.
const STEADY: Duration = Duration::from_secs(10);

/// Everything a line's thread owns.
pub(crate) struct Line {
    pub(crate) name: Arc<str>,
    pub(crate) endpoint: Endpoint,
    pub(crate) config: Arc<ClientConfig>,
    /// TLS, shared by every line, when some line is wss://.
    pub(crate) tls: Option<TlsConnector>,
    pub(crate) events: Sender<Event>,
    /// Messages from the application, for the connection up now.
    pub(crate) outgoing: Outgoing,
    /// Disconnects when the client closes: the signal to say goodbye.
    pub(crate) stop: Receiver<Never>,
    /// The connection being made, for the client to hang up on.
    pub(crate) dialing: Dialing,
    /// The connection while one is up, for the client to hang up on.
    pub(crate) live: Live,
    /// Dropped with the line when its thread ends.
    pub(crate) _running: Sender<Never>,
}

/// A line's connection while one is up. A writer blocked on a server that
/// stopped reading, or a reader waiting on a silent one, would otherwise
/// hold a closing client for their timeouts (30 s by default).
#[derive(Debug, Clone, Default)]
pub(crate) struct Live(Arc<Mutex<Option<Socket>>>);

impl Live {
    fn set(&self, socket: Option<Socket>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = socket;
    }

    /// Shuts the connection down, if one is up: its reader and its writer
    /// wake at once.
    pub(crate) fn hang_up(&self) {
        if let Some(socket) = &*self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            socket.hang_up();
        }
    }
}

/// The way in to the writer of a line's connection while one is up. Each
/// connection has a queue of its own, so that what was queued for one that
/// dropped goes with it, rather than out on the next: late, to a new
/// session, and ahead of what the application sends on hearing `Connected`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outgoing(Arc<Mutex<Way>>);

/// Where a message sent now would go.
#[derive(Debug, Clone, Default)]
enum Way {
    /// Nowhere: no connection is up.
    #[default]
    Down,
    /// Into the queue of the connection up now.
    Up(Sender<Message>),
    /// Nowhere, now or on any later connection: the client has closed.
    Closed,
}

/// Why [`Outgoing::send`] did not queue a message.
#[derive(Debug)]
pub(crate) enum Unsent {
    /// The queue stayed full for the whole wait.
    Full,
    /// No connection is up.
    Down,
    /// The client has closed.
    Closed,
}

impl Outgoing {
    /// A new queue, for a connection now up; the last one's is let go.
    fn open(&self) -> Receiver<Message> {
        let (sender, receiver) = bounded(OUTGOING);
        let mut way = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Made as the client closed: the writer finds its queue shut, and
        // empty, and goes straight to its goodbye.
        if !matches!(*way, Way::Closed) {
            *way = Way::Up(sender);
        }
        receiver
    }

    /// Takes no more: the connection is ending.
    fn shut(&self) {
        let mut way = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Way::Up(_) = *way {
            *way = Way::Down;
        }
    }

    /// Takes no more, on this connection or any other: the client is
    /// closing. The queue's sender goes with it, so that the writer's
    /// goodbye sends what was queued before and finds the end of it, however
    /// long the application goes on sending.
    pub(crate) fn close(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Way::Closed;
    }

    /// Where a message sent now would go.
    fn current(&self) -> Way {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Queues `message` for the connection up now, waiting up to `timeout`
    /// for room (not at all for zero). The wait holds no lock; if the
    /// connection it waits on ends meanwhile and another is up, it waits on
    /// the new one's queue for what is left of `timeout`.
    pub(crate) fn send(&self, mut message: Message, timeout: Duration) -> Result<(), Unsent> {
        let deadline = Instant::now() + timeout;
        loop {
            let sender = match self.current() {
                Way::Up(sender) => sender,
                Way::Down => return Err(Unsent::Down),
                Way::Closed => return Err(Unsent::Closed),
            };
            match sender.send_deadline(message, deadline) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Timeout(_)) => return Err(Unsent::Full),
                Err(SendTimeoutError::Disconnected(unsent)) => match self.current() {
                    // Another connection is up by now.
                    Way::Up(now) if !now.same_channel(&sender) => message = unsent,
                    Way::Closed => return Err(Unsent::Closed),
                    _ => return Err(Unsent::Down),
                },
            }
        }
    }
}

/// What the reader has asked of the writer that the writer has not yet
/// taken. It is no queue: a burst of pings while the writer is blocked (on a
/// server that is not reading, or behind the application's messages) would
/// fill one, and what came after it, the close reply too, would be lost.
/// Each ask has a place of its own instead.
#[derive(Default)]
struct Asks {
    /// The payload of the latest ping not answered yet: RFC 6455 §5.5.3
    /// lets an endpoint answer only the most recent of several pings.
    pong: Option<tungstenite::Bytes>,
    /// Answer the server's close with this frame, then stop.
    close_reply: Option<Option<CloseFrame>>,
    /// The reader has ended: stop.
    done: bool,
}

/// The reader's way to the writer.
struct Control {
    asks: Arc<Mutex<Asks>>,
    /// Rung after each ask. One ring waiting is enough: the writer takes
    /// every ask at once.
    bell: Sender<()>,
}

/// The writer's side of [`Control`].
struct ControlInbox {
    asks: Arc<Mutex<Asks>>,
    bell: Receiver<()>,
}

fn control() -> (Control, ControlInbox) {
    let asks = Arc::new(Mutex::new(Asks::default()));
    let (bell, rung) = bounded(1);
    (Control { asks: asks.clone(), bell }, ControlInbox { asks, bell: rung })
}

impl Control {
    fn ask(&self, ask: impl FnOnce(&mut Asks)) {
        ask(&mut self.asks.lock().unwrap_or_else(PoisonError::into_inner));
        // Full: the writer has yet to answer the last ring, and will see
        // this ask with the others.
        let _ = self.bell.try_send(());
    }

    fn pong(&self, payload: tungstenite::Bytes) {
        self.ask(|asks| asks.pong = Some(payload));
    }

    /// The first close is the one answered: the writer stops after it.
    fn close_reply(&self, frame: Option<CloseFrame>) {
        self.ask(|asks| {
            asks.close_reply.get_or_insert(frame);
        });
    }

    fn done(&self) {
        self.ask(|asks| asks.done = true);
    }
}

impl ControlInbox {
    /// Everything asked since the last time.
    fn take(&self) -> Asks {
        std::mem::take(&mut *self.asks.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn done(&self) -> bool {
        self.asks.lock().unwrap_or_else(PoisonError::into_inner).done
    }
}

impl Line {
    /// The line thread's body.
    pub(crate) fn run(self) {
        let mut backoff = match self.config.reconnect {
            Reconnect::Backoff { first, max } => Some(Backoff::new(first, max)),
            Reconnect::Never => None,
        };
        let mut ever_connected = false;
        loop {
            match self.connect() {
                Ok(opened) => {
                    ever_connected = true;
                    let up = Instant::now();
                    self.converse(opened);
                    if up.elapsed() >= STEADY {
                        backoff.iter_mut().for_each(Backoff::reset);
                    }
                }
                // The client closed while this connection was being made,
                // and hung up on it: nothing failed.
                Err(_) if self.stopping() => break,
                // A line that never connected is given up at once: the
                // address, the credentials or the server are wrong, and
                // trying forever would hide it. So is one the server turns
                // away for good, however long it was up: its request will
                // not change.
                Err(error) => {
                    let hopeless = !ever_connected || error.is_final();
                    self.event(Event::Failed { line: self.name.clone(), error });
                    if hopeless {
                        break;
                    }
                }
            }
            if self.stopping() {
                break;
            }
            let Some(delay) = backoff.as_mut().map(Backoff::next_delay) else {
                break;
            };
            self.event(Event::Reconnecting { line: self.name.clone(), after: delay });
            if let Err(RecvTimeoutError::Disconnected) = self.stop.recv_timeout(delay) {
                break;
            }
        }
        self.event(Event::Ended { line: self.name.clone() });
    }

    fn event(&self, event: Event) {
        // The application has stopped listening: nothing to tell.
        let _ = self.events.send(event);
    }

    fn stopping(&self) -> bool {
        matches!(self.stop.try_recv(), Err(crossbeam_channel::TryRecvError::Disconnected))
    }

    fn connect(&self) -> Result<Opened, ClientError> {
        let target = Target::parse(&self.endpoint.url)?;
        let tls = target.secure.then(|| self.tls.as_ref().expect("Bug: a wss:// line without TLS set up"));
        let opened = open(&target, &self.endpoint, tls, self.config.connect_timeout, &self.dialing);
        self.dialing.release();
        opened
    }

    /// One connection's life, from its 101 to its end.
    fn converse(&self, opened: Opened) {
        let Opened { socket, rest, subprotocol } = opened;
        let (control, inbox) = control();
        let writer = Writer {
            ws: WebSocket::from_raw_socket(socket.write_half(), Role::Client, Some(self.config.websocket)),
            outgoing: self.outgoing.open(),
            control: inbox,
            stop: self.stop.clone(),
            ping_interval: self.config.ping_interval,
        };
        let writer = match std::thread::Builder::new()
            .name(format!("client-{}-write", self.name))
            .spawn(move || writer.run())
        {
            Ok(writer) => writer,
            Err(e) => {
                self.outgoing.shut();
                self.event(Event::Failed { line: self.name.clone(), error: ClientError::Io(e) });
                return;
            }
        };
        self.live.set(Some(socket.clone()));
        self.event(Event::Connected { line: self.name.clone(), subprotocol });

        // Silence longer than a ping interval and its pong timeout means the
        // server, which answers every ping, is gone.
        // A write that long means the server has stopped reading: without a
        // bound the writer would wait on it for ever, and so would join().
        let silence = self.config.ping_interval + self.config.pong_timeout;
        let timeouts =
            socket.set_read_timeout(Some(silence)).and_then(|()| socket.set_write_timeout(silence));
        let ending = match timeouts {
            Ok(()) => {
                let ws = WebSocket::from_partially_read(
                    socket.read_half(),
                    rest,
                    Role::Client,
                    Some(self.config.websocket),
                );
                self.read(ws, &control)
            }
            Err(e) => Ending::Dropped(e.to_string()),
        };
        self.outgoing.shut();
        if let Ending::Dropped(_) = ending {
            // Nothing more will be read or answered: a writer blocked on a
            // server that stopped reading must not hold up the end.
            socket.hang_up();
        }
        control.done();
        let _ = writer.join();
        socket.hang_up();
        self.live.set(None);
        let (code, reason) = match ending {
            Ending::Closed(Some(close)) => (Some(close.code), close.reason.to_string()),
            Ending::Closed(None) => (Some(CloseCode::Status), String::new()),
            Ending::Failed { close, cause } => (Some(close.code), format!("{} ({cause})", close.reason)),
            Ending::Dropped(why) => (None, why),
        };
        self.event(Event::Closed { line: self.name.clone(), code, reason });
    }

    /// Reads until the connection ends.
    fn read(&self, mut ws: WebSocket<crate::stream::ReadHalf>, control: &Control) -> Ending {
        let silence = self.config.ping_interval + self.config.pong_timeout;
        let mut close = None;
        loop {
            match ws.read() {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                    self.event(Event::Message { line: self.name.clone(), message });
                }
                Ok(Message::Ping(payload)) => {
                    control.pong(payload);
                }
                Ok(Message::Close(frame)) => {
                    close = Some(frame.clone());
                    control.close_reply(frame);
                }
                Ok(Message::Pong(_) | Message::Frame(_)) => {}
                // The server hangs up after the close handshake.
                Err(WsError::ConnectionClosed) | Err(WsError::Protocol(_)) if close.is_some() => {
                    return Ending::Closed(close.flatten());
                }
                // Whatever the client sees wrong in what the server sends, it
                // says so with the close code RFC 6455 gives it, as the
                // server does to clients: 1009 too big, 1007 bad UTF-8,
                // 1002 a protocol error, 1001 when the server went silent.
                Err(e) => {
                    let Some(reason) = crate::close::CloseReason::for_read_error(&e) else {
                        return Ending::Dropped(e.to_string());
                    };
                    control.close_reply(Some(reason.frame()));
                    let cause = match &e {
                        WsError::Io(io) if crate::close::is_timeout(io) => {
                            format!("no answer to pings for {silence:?}")
                        }
                        _ => e.to_string(),
                    };
                    return Ending::Failed { close: reason.frame(), cause };
                }
            }
        }
    }
}

/// How a connection ended.
enum Ending {
    /// With the server's close frame.
    Closed(Option<CloseFrame>),
    /// The client closed it with `close` because of `cause`.
    Failed { close: CloseFrame, cause: String },
    /// Without a close handshake, for this reason.
    Dropped(String),
}

/// A connection's writer: the only thread that writes to its socket.
struct Writer {
    ws: WebSocket<WriteHalf>,
    outgoing: Receiver<Message>,
    control: ControlInbox,
    stop: Receiver<Never>,
    ping_interval: Duration,
}

impl Writer {
    fn run(mut self) {
        if self.serve().is_err() {
            // The reader, blocked on the same socket, must wake and end too.
            self.ws.get_ref().hang_up();
        }
    }

    fn serve(&mut self) -> tungstenite::Result<()> {
        let mut next_ping = Instant::now() + self.ping_interval;
        loop {
            let until_ping = next_ping.saturating_duration_since(Instant::now());
            select! {
                recv(self.control.bell) -> rung => {
                    // Disconnected: the reader is gone without a word.
                    if rung.is_err() || !self.answer()? {
                        return Ok(());
                    }
                },
                recv(self.outgoing) -> message => {
                    // Shut, and empty: the connection is ending, and the
                    // reader's word on how is still to come; or the client
                    // is closing, and the stop is.
                    let Ok(message) = message else {
                        self.outgoing = never();
                        continue;
                    };
                    self.ws.write(message)?;
                    // Whatever else is queued goes out with it, but not
                    // ahead of what the reader asks for: an application
                    // that keeps the queue full would hold a pong, or the
                    // close reply, for as long as it went on sending.
                    while let Ok(message) = self.outgoing.try_recv() {
                        self.ws.write(message)?;
                        if self.control.bell.try_recv().is_ok() && !self.answer()? {
                            return Ok(());
                        }
                    }
                    self.ws.flush()?;
                },
                recv(self.stop) -> _ => return self.goodbye(),
                default(until_ping) => {
                    self.ws.send(Message::Ping(tungstenite::Bytes::new()))?;
                    next_ping = Instant::now() + self.ping_interval;
                },
            }
        }
    }

    /// Sends what the reader asked for since the last time; `false` once
    /// the writer is to stop.
    fn answer(&mut self) -> tungstenite::Result<bool> {
        let asks = self.control.take();
        // A connection closing needs no pong.
        if let Some(frame) = asks.close_reply {
            self.ws.close(frame)?;
            self.ws.flush()?;
            return Ok(false);
        }
        if asks.done {
            return Ok(false);
        }
        if let Some(payload) = asks.pong {
            self.ws.send(Message::Pong(payload))?;
        }
        Ok(true)
    }

    /// The client is closing: 1000, then the reader's word that the server
    /// answered, or a hang-up after a short wait.
    fn goodbye(&mut self) -> tungstenite::Result<()> {
        // A server that stopped reading gets the close wait, not the
        // silence allowed to a live connection.
        self.ws.get_ref().set_write_timeout(CLOSE_WAIT)?;
        // What the application sent before closing goes out ahead of the
        // 1000, as the server's own 1001 goes behind what it accepted. It is
        // a queue's worth at most: close() shut the queue.
        while let Ok(message) = self.outgoing.try_recv() {
            self.ws.write(message)?;
        }
        self.ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() }))?;
        self.ws.flush()?;
        let deadline = Instant::now() + CLOSE_WAIT;
        while !self.control.done() && self.control.bell.recv_deadline(deadline).is_ok() {}
        self.ws.get_ref().hang_up();
        Ok(())
    }
}
