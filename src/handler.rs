//! The application's side of a server: the [`Handler`] trait, what it decides
//! on an upgrade ([`Accept`]), and what it is given for each connection
//! ([`Connection`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tungstenite::Message;

use crate::close::Ending;
use crate::connection::{Outbox, Refused};
use crate::error::{Error, Refusal, Result};
use crate::frame::Frame;
use crate::http::{Request, Response};
use crate::hub::{ConnectionId, HubHandle};

/// What a server does with its clients.
///
/// The server calls these methods from the connection's own reader thread, so
/// a handler may block in them (the client waits; nobody else does), and its
/// per-connection [`State`](Handler::State) needs no lock. The handler itself
/// is shared by every connection, so it is `Sync`: keep shared state in it
/// behind atomics or channels, or in the hub.
///
/// A panic in [`on_open`](Handler::on_open) or
/// [`on_message`](Handler::on_message) closes that connection with 1011; a
/// panic in [`on_upgrade`](Handler::on_upgrade) or
/// [`on_request`](Handler::on_request) answers 500; one in
/// [`on_close`](Handler::on_close) is logged. Either way the connection's
/// thread, socket and hub entry are released as usual, the thread goes on
/// to serve another client, and every other connection carries on.
///
/// ```
/// use switchboard::{Accept, Connection, Handler, Message, Refusal, Request};
///
/// /// Echoes every message on `/echo`, refuses everything else.
/// struct Echo;
///
/// impl Handler for Echo {
///     type State = ();
///
///     fn on_upgrade(&self, request: &Request) -> Result<Accept<()>, Refusal> {
///         match request.path() {
///             "/echo" => Ok(Accept::new(())),
///             _ => Err(Refusal::not_found()),
///         }
///     }
///
///     fn on_message(&self, connection: &Connection, _: &mut (), message: Message) {
///         let _ = connection.send(message);
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// What the handler keeps for each connection, from its upgrade to its
    /// close. It lives on the connection's reader thread and is only ever
    /// touched there.
    type State: Send + 'static;

    /// Decides on a WebSocket upgrade request: accept it (with the
    /// connection's initial state and rooms) or refuse it with an HTTP status.
    ///
    /// It is also asked about a *plain* GET that no other route answers, to
    /// tell a WebSocket endpoint (the client gets 426 Upgrade Required) from
    /// no endpoint (the refusal, usually 404). So decide here, without side
    /// effects, and act in [`on_open`](Handler::on_open).
    fn on_upgrade(&self, request: &Request) -> Result<Accept<Self::State>, Refusal>;

    /// Answers a plain HTTP GET or HEAD, or returns `None` to let the server
    /// answer (426 on a WebSocket endpoint, 404 elsewhere). `/healthz`,
    /// `/metrics` and `/stats` are answered before this is asked, and a
    /// request that [needs credentials](Handler::needs_credentials) is only
    /// asked about once it has presented them. The hub is there to look
    /// things up, such as [`HubHandle::room_size`].
    fn on_request(&self, request: &Request, hub: &HubHandle) -> Option<Response> {
        let _ = (request, hub);
        None
    }

    /// Whether a plain GET or HEAD of `request` must present credentials,
    /// as an upgrade must, before [`on_request`](Handler::on_request) is
    /// asked. With credentials configured ([`Access::tokens`],
    /// [`Access::jwt_secret`]), such a request without them is answered
    /// 401, and with wrong ones 403, exactly as an upgrade would be; one
    /// that passes reaches `on_request` with its
    /// [`identity`](Request::identity) set. With none configured it makes
    /// no difference. `/healthz`, `/metrics` and `/stats` are decided by the
    /// server ([`Access::private_metrics`]), whatever this says.
    ///
    /// The default is `false`: every plain request is answered, whoever
    /// asks. Decide from the request alone, without side effects.
    ///
    /// [`Access::tokens`]: crate::Access::tokens
    /// [`Access::jwt_secret`]: crate::Access::jwt_secret
    /// [`Access::private_metrics`]: crate::Access::private_metrics
    fn needs_credentials(&self, request: &Request) -> bool {
        let _ = request;
        false
    }

    /// The connection is open: the client has its 101 and the connection has
    /// joined the rooms its [`Accept`] named.
    fn on_open(&self, connection: &Connection, state: &mut Self::State) {
        let _ = (connection, state);
    }

    /// A text or binary message has arrived. Pings, pongs and closes are
    /// handled by the server.
    fn on_message(&self, connection: &Connection, state: &mut Self::State, message: Message);

    /// The connection has ended, for the reason given. It has already left
    /// the hub, so nothing more can be sent to it.
    fn on_close(&self, connection: &Connection, state: &mut Self::State, ending: &Ending) {
        let _ = (connection, state, ending);
    }
}

/// A handler's yes to an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept<S> {
    /// The connection's [`Handler::State`].
    pub state: S,
    /// The rooms the connection joins as it opens, before its first message
    /// can arrive.
    pub rooms: Vec<Arc<str>>,
    /// The subprotocol to speak, chosen by the handler from those the client
    /// offers ([`Request::subprotocols`]); `None` leaves the choice to the
    /// server's [`Config::subprotocols`](crate::Config::subprotocols).
    /// Choosing one the client did not offer is a bug, answered with 500.
    pub subprotocol: Option<String>,
}

impl<S> Accept<S> {
    /// Accepts with this state, no rooms, and the server's choice of
    /// subprotocol.
    pub fn new(state: S) -> Self {
        Accept { state, rooms: Vec::new(), subprotocol: None }
    }

    /// Also joins `room` as the connection opens.
    pub fn join(mut self, room: impl Into<Arc<str>>) -> Self {
        self.rooms.push(room.into());
        self
    }

    /// Speaks `subprotocol`, which the client must have offered.
    pub fn subprotocol(mut self, subprotocol: impl Into<String>) -> Self {
        self.subprotocol = Some(subprotocol.into());
        self
    }
}

/// One open WebSocket connection, as its handler sees it.
#[derive(Debug)]
pub struct Connection {
    pub(crate) id: ConnectionId,
    pub(crate) peer: SocketAddr,
    pub(crate) client_ip: IpAddr,
    pub(crate) identity: Option<String>,
    pub(crate) verified_name: Option<String>,
    pub(crate) subprotocol: Option<String>,
    pub(crate) path: String,
    pub(crate) hub: HubHandle,
    pub(crate) outbox: Arc<Outbox>,
}

impl Connection {
    /// The connection's number, which the hub knows it by.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// The address the connection comes from: the client, or the proxy in
    /// front of it.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The client's address, as [`Request::client_ip`] tells it.
    pub fn client_ip(&self) -> IpAddr {
        self.client_ip
    }

    /// Who the client proved to be at the upgrade, as
    /// [`Request::identity`] tells it.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// The name a JWT vouched for at the upgrade, as
    /// [`Request::verified_name`] tells it: `None` for a bearer token or no
    /// credentials.
    pub fn verified_name(&self) -> Option<&str> {
        self.verified_name.as_deref()
    }

    /// The path of the upgrade request, such as `/ws/lobby`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The subprotocol agreed at the upgrade, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The hub: to send to other connections, rooms, or everyone.
    pub fn hub(&self) -> &HubHandle {
        &self.hub
    }

    /// Sends a message to this client, after whatever is already queued for
    /// it: it goes out at once if the socket has room, and is queued
    /// otherwise. It never waits.
    ///
    /// The outbox has a byte budget ([`Limits::outbox_bytes`]); a client
    /// whose outbox is full is not reading what it is sent, and is closed
    /// with 1008 as a slow consumer, as the hub does for room messages. So a
    /// client that floods an echo endpoint without reading the answers is
    /// closed rather than allowed to grow the server's memory.
    ///
    /// [`Limits::outbox_bytes`]: crate::Limits::outbox_bytes
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the connection is closed or is being closed.
    pub fn send(&self, message: impl Into<Frame>) -> Result<()> {
        match self.outbox.send(message.into()) {
            Ok(()) => Ok(()),
            Err(Refused::Full | Refused::Closed) => Err(Error::Closed),
        }
    }

    /// Joins a room, as [`HubHandle::join`] does for this connection.
    ///
    /// # Errors
    ///
    /// [`Error::HubStopped`] once the server has shut down.
    pub fn join(&self, room: impl Into<Arc<str>>) -> Result<()> {
        self.hub.join(self.id, room)
    }

    /// Leaves a room.
    ///
    /// # Errors
    ///
    /// [`Error::HubStopped`] once the server has shut down.
    pub fn leave(&self, room: impl Into<Arc<str>>) -> Result<()> {
        self.hub.leave(self.id, room)
    }
}
