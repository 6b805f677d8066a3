//! Everything a server can be told: where to listen, its timeouts and its limits.
//!
//! Every field has a default that is safe to expose on a network: each timeout
//! is a finite backstop against a peer that stops talking, and each limit caps
//! what one peer can make the server hold in memory.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use tungstenite::protocol::WebSocketConfig;

use crate::auth::{Secret, Token};
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
    /// server started by accident is not reachable from the network. An IPv6
    /// address takes IPv4 clients too (`[::]` is dual-stack on every host,
    /// whatever `net.ipv6.bindv6only` says).
    pub listen: SocketAddr,
    /// How long each phase of a connection may take.
    pub timeouts: Timeouts,
    /// How much one peer can make the server hold, and how many may connect.
    pub limits: Limits,
    /// Who may open a WebSocket: origins, credentials, trusted proxies.
    pub access: Access,
    /// Serve https:// and wss:// instead of http:// and ws:// on the same
    /// port. Default `None`.
    pub tls: Option<TlsConfig>,
    /// tungstenite's own settings for the reading side of every connection.
    ///
    /// The defaults differ from tungstenite's: `read_buffer_size` is 2 KiB
    /// (not 128 KiB) because tungstenite zero-fills the whole read buffer
    /// before each read, so all of it stays resident for every idle
    /// connection. Measured: 2 KiB rather than 4 KiB saves 2 KiB per idle
    /// connection, changes nothing for messages under a kilobyte, and costs
    /// 6% on 1 MB messages (one system call per 2 KiB read); and
    /// `max_message_size` and `max_frame_size` are 1 MiB (not 64 and 16 MiB).
    /// `write_buffer_size` is unused: the server writes frames itself (see
    /// [`Frame`](crate::Frame)) and keeps no write buffer per connection.
    pub websocket: WebSocketConfig,
    /// The subprotocols the server speaks (`Sec-WebSocket-Protocol`). Of
    /// those a client offers, the first that is listed here is chosen, unless
    /// the handler chooses ([`Accept::subprotocol`](crate::Accept::subprotocol)).
    /// Default none: a client that offers subprotocols gets none, and may
    /// then close.
    pub subprotocols: Vec<String>,
    /// Share rooms with other server nodes through Redis pub/sub. Default
    /// `None`: one node keeps everything in process and needs no service.
    pub backplane: Option<BackplaneConfig>,
    /// Stack size in bytes of every connection thread: 64 KiB to 8 MiB,
    /// default 128 KiB. Only
    /// the pages a thread touches count towards memory (an idle connection's
    /// thread has touched two); a small size keeps address space low with
    /// thousands of threads, and still leaves a handler ample room.
    pub thread_stack_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9001)),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            access: Access::default(),
            tls: None,
            websocket: WebSocketConfig::default()
                .read_buffer_size(2 * 1024)
                .write_buffer_size(0)
                .max_message_size(Some(1 << 20))
                .max_frame_size(Some(1 << 20)),
            subprotocols: Vec::new(),
            backplane: None,
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
    /// A client that has sent nothing for this long is pinged, so that a live
    /// client that only listens has something to answer before `idle` runs
    /// out. A client that talks is never pinged. The drain thread looks at
    /// every connection four times per interval, so pings and the idle close
    /// come up to a quarter of it late. Default 20 s; must be less than
    /// `idle`.
    pub ping_interval: Duration,
    /// A client whose socket takes no bytes for this long, while bytes are
    /// waiting for it, is dropped: its receive window stayed closed. The
    /// drain thread keeps this time. Default 10 s.
    pub write: Duration,
    /// After the server sends a close frame, how long it waits for the peer's
    /// reply before dropping the TCP connection. Default 1 s.
    pub close: Duration,
    /// On Ctrl-C or SIGTERM, the bound on the whole graceful shutdown: stop
    /// accepting, send 1001 to every client, flush, wait for replies. Default
    /// 5 s; must be more than `close`.
    pub shutdown: Duration,
    /// A connection thread whose client has gone stays parked this long,
    /// waiting for the next client, then ends (see
    /// [`Limits::spare_threads`]). Default 60 s: a parked thread costs no
    /// CPU, and a server that has gone quiet gives its threads back within
    /// a minute.
    pub spare_thread: Duration,
    /// A WebSocket connection open this long is closed with 1001, each
    /// after a little less (up to a tenth less, chosen per connection), so
    /// that clients which connected together do not all reconnect together.
    /// The drain thread looks at connections four times per ping interval,
    /// so the close comes up to a quarter of it late. Default `None`: a
    /// connection may stay open for as long as it is used.
    pub max_lifetime: Option<Duration>,
}

/// The longest any timeout may be.
const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The most a queue may hold: its slots are allocated when it is made, so a
/// value meant as "no limit" would take the memory at once.
const MAX_QUEUE: usize = 1 << 20;

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            ping_interval: Duration::from_secs(20),
            write: Duration::from_secs(10),
            close: Duration::from_secs(1),
            shutdown: Duration::from_secs(5),
            spare_thread: Duration::from_secs(60),
            max_lifetime: None,
        }
    }
}

/// How much one peer can make the server hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest HTTP request head in bytes; larger gets 431 (414 when
    /// the request line alone is larger). 256 bytes to
    /// 1 MiB, default 8 KiB, what most HTTP servers allow.
    pub max_head_size: usize,
    /// The most header fields in a request head; more gets 431. 8 to 1024,
    /// default 64.
    pub max_headers: usize,
    /// Bytes waiting for one client, each frame counted as its length plus 64
    /// bytes of bookkeeping. A client whose outbox is full is not keeping up:
    /// it is closed with 1008 rather than allowed to grow memory or slow down
    /// the others. Default 4 MiB: four of the largest messages, or some 25,000
    /// chat lines, enough to ride out a burst while the client's socket
    /// buffer is full. An empty outbox costs almost nothing, and frames sent to a
    /// room are shared by all its members' outboxes. Must hold the largest
    /// message.
    pub outbox_bytes: usize,
    /// Commands waiting for the hub. When it is full, the readers that publish
    /// wait, which in turn stops them reading their sockets: TCP backpressure
    /// reaches the clients that send the most. At most 1048576, default 4096.
    pub hub_capacity: usize,
    /// Connections open at once, all clients together, plain HTTP included.
    /// Over it the accept loop answers 503 with `Retry-After` before any
    /// thread is spent. Default 10,000: one thread each, that fits Linux's
    /// default limits on threads (`kernel.pid_max` 32,768) and memory maps
    /// (`vm.max_map_count` 65,530, four per connection). The server lowers
    /// it at start to what the machine's limits allow.
    pub max_connections: usize,
    /// Connections open at once from one client address (an IPv6 client
    /// counts as its /64, an IPv4 client as its address, also on a
    /// dual-stack listener where it arrives as `::ffff:a.b.c.d`); over it, 429. 0 turns the limit off. Default 256,
    /// so that one client cannot take every place; behind a proxy, see
    /// [`Access::trusted_proxies`].
    pub max_connections_per_ip: usize,
    /// Messages (and pings) one connection may send per second, sustained;
    /// past it, and past `message_burst`, the connection is closed with 1008.
    /// 0 turns the limit off. Default 1,000: far above what a person types,
    /// low enough that one client cannot make its room relay floods.
    pub max_messages_per_sec: u32,
    /// Messages a connection may send at once above the sustained rate (the
    /// size of its token bucket). Default 1,000.
    pub message_burst: u32,
    /// Connection threads kept parked, once their client has gone, for the
    /// next clients: starting a thread costs more system calls than the
    /// rest of a short connection's handshake. Past it, a thread whose
    /// client has gone ends. 0 starts a thread for every client. Default
    /// 64: enough for bursts of reconnecting clients, and at most 64 idle
    /// threads' stacks (a few pages each) once the server is quiet, for
    /// [`Timeouts::spare_thread`].
    pub spare_threads: usize,
    /// Connections still in their handshake (their request head, TLS
    /// included, not yet read), all clients together. A connection that
    /// arrives when this many are, or when the server is at
    /// `max_connections`, takes the place of the oldest connection still in
    /// its handshake if that one has lasted over a second, which is
    /// answered 408 and closed, and is refused 503 if none has: a crowd of
    /// sockets that connect and then say little gives way to newcomers, a
    /// burst of whole requests is not cut short, and established
    /// connections are never shed. Default 1,024.
    pub max_handshakes: usize,
    /// Connections from one client address (an IPv6 client counts as its
    /// /64) stalled in their handshake, in it for more than a second, which
    /// a real client's never is; past it, a new connection from that
    /// address gets 429. A burst of fresh handshakes from one address (a
    /// busy NAT, a page opening many sockets) is not counted. 0 turns the
    /// limit off. Default 32: few enough that a few addresses cannot take
    /// every handshake place.
    pub max_handshakes_per_ip: usize,
    /// The slowest a request head may arrive, in bytes per second, after
    /// its first second: a head trickled slower is cut with 408 (Apache's
    /// mod_reqtimeout `MinRate`), long before `timeouts.handshake`, which
    /// bounds the whole handshake whatever the rate. The TLS handshake's
    /// bytes are held to it too (one trickled slower is closed), the first
    /// second counted from each flight the server sends, plus the path's
    /// round trip as the kernel measured it, so that a client far away
    /// can answer. A whole head usually arrives at once. 0 turns the rule
    /// off. Default 500.
    pub handshake_min_rate: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_size: 8 * 1024,
            max_headers: 64,
            outbox_bytes: 4 << 20,
            hub_capacity: 4096,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            max_messages_per_sec: 1_000,
            message_burst: 1_000,
            spare_threads: 64,
            max_handshakes: 1024,
            max_handshakes_per_ip: 32,
            handshake_min_rate: 500,
        }
    }
}

/// Who may open a WebSocket, and who may read what plain HTTP routes the
/// credentials guard: `/metrics` and `/stats` with `private_metrics`, and
/// what the handler says [needs credentials](crate::Handler::needs_credentials)
/// (`/rooms/` for [`RoomsHandler`](crate::RoomsHandler)). The Origin rule is
/// for upgrades only, and `/healthz` and the chat page are always answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Origins allowed to open a WebSocket from a browser, written as the
    /// browser sends them (`https://chat.example.com`; a path, a space or a
    /// wildcard in the name could never match, and is refused); `*` allows
    /// any.
    /// Empty, the default: a browser's `Origin` must match the `Host` it
    /// connects to (same origin), which stops other sites' pages from using
    /// a visitor's cookies here. A request without `Origin` does not come
    /// from a browser and is allowed.
    pub allowed_origins: Vec<String>,
    /// Bearer tokens accepted at the upgrade (and on the private routes
    /// above). With tokens or a JWT secret set, an upgrade without
    /// credentials gets 401 and one with wrong or expired credentials 403. A token is read from `Authorization: Bearer`,
    /// the `access_token` query parameter (browsers cannot set headers on a
    /// WebSocket), or the `access_token` cookie. Each may be named: the
    /// name is the identity of the connections it opens. Default: none.
    pub tokens: Vec<Token>,
    /// The HS256 key of accepted JSON Web Tokens. Their signature is
    /// checked, their `exp` (which they must have) and, when present, their
    /// `nbf`, each with 30 seconds of leeway for the issuer's clock and this
    /// server's to differ: a token is taken from 30 s before its `nbf` until
    /// 30 s after its `exp`, and otherwise gets 403; and their `aud`, if
    /// they have one (see `jwt_audience`). Their `sub` becomes the
    /// connection's identity, and the claim named by `jwt_name_claim` its
    /// verified name. Default `None`.
    pub jwt_secret: Option<Secret>,
    /// Keys taken beside `jwt_secret`, for a rotation without a break: a
    /// token signed with any of them is taken as with `jwt_secret`, and a
    /// [reload](crate::ReloadHandle::reload) that no longer lists a key
    /// closes the connections its tokens opened. Default: none. Only with
    /// `jwt_secret`.
    pub jwt_previous_secrets: Vec<Secret>,
    /// The audience this server is, as the issuer writes it in a token's
    /// `aud` claim: a JWT whose `aud` names it is taken, one without `aud`
    /// or for other audiences only gets 403. `None`, the default: a JWT with an `aud`
    /// gets 403 (it was issued for some other service), one without is
    /// taken. Only with `jwt_secret`.
    pub jwt_audience: Option<String>,
    /// The JWT claim that names the user to others: its value, which must be
    /// a non-empty string (else 403), is the connection's
    /// [`verified_name`](crate::Connection::verified_name), the name the
    /// rooms show whatever the client writes. `None`, the default, means
    /// `sub`. Only with `jwt_secret`.
    pub jwt_name_claim: Option<String>,
    /// `/metrics` and `/stats` need the credentials an upgrade needs: without
    /// them 401, with wrong ones 403. Prometheus presents a bearer token
    /// with its scrape config's `authorization` (`credentials_file`), so
    /// give it one of `tokens`. Needs `tokens` or `jwt_secret`. `/healthz`
    /// stays open, for load balancers. Default `false`: anyone who can reach
    /// the port may read the figures.
    pub private_metrics: bool,
    /// Proxies whose `X-Forwarded-For` is believed: connections from these
    /// networks are counted and logged under the client address they
    /// forward. From anyone else the header is ignored. An IPv4 proxy is
    /// recognised on a dual-stack listener too, where it connects as
    /// `::ffff:a.b.c.d`. Default: none.
    pub trusted_proxies: Vec<IpNet>,
}

impl Access {
    /// Returns true if and only if `address` is one of the trusted proxies.
    /// An IPv4 address and its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`, as
    /// a dual-stack listener sees IPv4 peers) are the same address, whichever
    /// form the network is written in.
    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        let mapped = match address {
            IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
            IpAddr::V6(_) => None,
        };
        self.trusted_proxies
            .iter()
            .any(|net| net.contains(&address) || mapped.is_some_and(|mapped| net.contains(&mapped)))
    }

    /// Returns true if and only if an upgrade must present credentials: a
    /// token or a JWT key is set.
    pub fn requires_credentials(&self) -> bool {
        !self.tokens.is_empty() || self.jwt_secret.is_some()
    }
}

impl Access {
    pub(crate) fn problem(&self) -> Option<(&'static str, &'static str)> {
        if !self.allowed_origins.iter().all(|origin| crate::origin::is_listable(origin)) {
            return Some((
                "access.allowed_origins",
                "must each be * or scheme://host[:port], as a browser sends it: no path, no spaces, no wildcard in the name",
            ));
        }
        if !self.tokens.iter().filter_map(|token| token.name.as_deref()).all(crate::auth::is_token_name) {
            return Some((
                "access.tokens",
                "a token's name must be a word: not empty, no spaces or control characters",
            ));
        }
        if crate::auth::repeats_a_secret(&self.tokens) {
            return Some(("access.tokens", "hold one token twice: the second's name could never be given"));
        }
        if !self.jwt_previous_secrets.is_empty() && self.jwt_secret.is_none() {
            return Some((
                "access.jwt_previous_secrets",
                "needs access.jwt_secret: they are taken beside it",
            ));
        }
        match &self.jwt_name_claim {
            Some(_) if self.jwt_secret.is_none() => {
                Some(("access.jwt_name_claim", "needs access.jwt_secret: only a JWT names its holder"))
            }
            Some(claim) if claim.is_empty() => Some(("access.jwt_name_claim", "must not be empty")),
            _ if self.jwt_audience.is_some() && self.jwt_secret.is_none() => {
                Some(("access.jwt_audience", "needs access.jwt_secret: only a JWT names its audience"))
            }
            _ if self.jwt_audience.as_ref().is_some_and(String::is_empty) => {
                Some(("access.jwt_audience", "must not be empty"))
            }
            _ if self.private_metrics && !self.requires_credentials() => Some((
                "access.private_metrics",
                "needs access.tokens or access.jwt_secret: the credentials /metrics and /stats would ask for",
            )),
            _ => None,
        }
    }
}

/// A certificate chain and its private key, in PEM, for TLS.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificate chain, leaf first, in PEM.
    pub certificate_chain_pem: Vec<u8>,
    /// The private key (PKCS#8, PKCS#1 or SEC1), in PEM.
    pub private_key_pem: Secret,
}

impl TlsConfig {
    /// Reads the two PEM files.
    ///
    /// # Errors
    ///
    /// [`Error::Read`] naming the file that could not be read.
    pub fn from_pem_files(certificate_chain: &Path, private_key: &Path) -> Result<Self> {
        let read =
            |path: &Path| std::fs::read(path).map_err(|source| Error::Read { path: path.into(), source });
        Ok(TlsConfig {
            certificate_chain_pem: read(certificate_chain)?,
            private_key_pem: Secret::new(read(private_key)?),
        })
    }
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("certificate_chain_pem", &format_args!("{} bytes", self.certificate_chain_pem.len()))
            .field("private_key_pem", &self.private_key_pem)
            .finish()
    }
}

/// How this node shares rooms with others through Redis pub/sub (see
/// [`Config::backplane`]).
///
/// Build it from the URL, which has no default, and change the rest with
/// struct update syntax:
///
/// ```
/// use switchboard::BackplaneConfig;
///
/// let backplane = BackplaneConfig {
///     node_id: "eu-1".into(),
///     ..BackplaneConfig::new("redis://127.0.0.1:6379")
/// };
/// assert!(backplane.channel_prefix.starts_with("switchboard"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BackplaneConfig {
    /// The Redis server: `redis://[[user]:password@]host[:port][/db]`,
    /// `rediss://…` for TLS (the certificate checked against the system's
    /// roots, or [`ca_certificate_pem`](Self::ca_certificate_pem)), or
    /// `redis+unix:///path/to/socket[?db=N&user=U&pass=P]`. No default. A
    /// password in it is never logged, in whichever of these places it is
    /// written; nor is the value of a `password` query parameter. Better
    /// still, leave the password out of the URL and set
    /// [`password`](Self::password).
    pub url: String,
    /// The password to give Redis (`AUTH`, with the URL's user name if it
    /// has one), when the URL holds none; the URL may not hold one too.
    /// Default `None`. A Redis that refuses it when the server starts stops
    /// the start ([`Error::RedisAuth`]); one that refuses it later, after a
    /// reconnect, is retried like a Redis that is down. Never logged.
    pub password: Option<Secret>,
    /// The certificates (PEM) of the authorities a `rediss://` server's
    /// certificate must chain to, for a Redis with a certificate of a
    /// private CA; they replace the system's roots. Default `None`: the
    /// system's roots. Only with a `rediss://` URL.
    pub ca_certificate_pem: Option<Vec<u8>>,
    /// This node's name, carried in every message it publishes so that it
    /// can tell its own messages from the others' when Redis echoes them
    /// back. 1 to 64 of `A-Z a-z 0-9 . _ : -`. Default: 16 random hex
    /// digits, different at every start. Two nodes with the same id would
    /// drop each other's messages, so set it only to ids that are unique.
    pub node_id: String,
    /// Every room's Redis channel is this prefix, a slash and the room name
    /// (`switchboard:/lobby`). Default `switchboard:`, so that switchboard's
    /// channels are easy to tell apart on a shared Redis; nodes that should
    /// share rooms must use the same prefix, and separate deployments on one
    /// Redis different ones, which never share a channel, whatever their
    /// rooms are called. At most 128 bytes, no spaces, slashes or control
    /// characters.
    pub channel_prefix: String,
    /// Room messages waiting for the publishing thread. When it is full (Redis
    /// is slower than the clients), a message is still delivered on this
    /// node but not to the others, and counted as not relayed: the hub never
    /// waits on Redis. Default 4096, as `limits.hub_capacity`: the publisher
    /// sends what waits in pipelines of up to 256, so a queue this size rides
    /// out several round trips to a busy Redis. The queue also holds at
    /// most 64 MiB of messages, however few. Its slots are made at the
    /// start, about 56 bytes each, whether used or not.
    pub publish_queue: usize,
}

impl BackplaneConfig {
    /// The defaults, with Redis at `url` and a random node id.
    pub fn new(url: impl Into<String>) -> Self {
        BackplaneConfig {
            url: url.into(),
            password: None,
            ca_certificate_pem: None,
            node_id: random_node_id(),
            channel_prefix: "switchboard:".to_owned(),
            publish_queue: 4096,
        }
    }

    fn problem(&self) -> Option<(&'static str, &'static str)> {
        let id = &self.node_id;
        let id_char = |c: char| c.is_ascii_alphanumeric() || "._:-".contains(c);
        let prefix_char = |c: char| (c.is_ascii_graphic() || !c.is_ascii()) && c != '/';
        if let Some(problem) = crate::backplane::url_problem(&self.url) {
            return Some(("backplane.url", problem));
        }
        let password = self.password.as_ref().map(Secret::expose);
        let url_has_password = crate::backplane::url_has_password(&self.url);
        let tls = crate::backplane::url_is_tls(&self.url);
        let checks = [
            (password.is_some_and(<[u8]>::is_empty), "backplane.password", "must not be empty"),
            (
                password.is_some_and(|password| std::str::from_utf8(password).is_err()),
                "backplane.password",
                "must be UTF-8 text",
            ),
            (
                password.is_some() && url_has_password,
                "backplane.password",
                "is given twice: backplane.url holds a password too",
            ),
            (
                self.ca_certificate_pem.is_some() && !tls,
                "backplane.ca_certificate_pem",
                "is only for a rediss:// URL (Redis over TLS)",
            ),
            (
                self.ca_certificate_pem.as_deref().is_some_and(|pem| !crate::tls::holds_certificates(pem)),
                "backplane.ca_certificate_pem",
                "holds no PEM certificate, or one that does not parse",
            ),
            (
                id.is_empty() || id.len() > 64 || !id.chars().all(id_char),
                "backplane.node_id",
                "must be 1 to 64 of A-Z a-z 0-9 . _ : -",
            ),
            (
                self.channel_prefix.len() > 128 || !self.channel_prefix.chars().all(prefix_char),
                "backplane.channel_prefix",
                "must be at most 128 bytes, without spaces, slashes or control characters",
            ),
            (
                !(1..=MAX_QUEUE).contains(&self.publish_queue),
                "backplane.publish_queue",
                "must be between 1 and 1048576",
            ),
        ];
        checks.into_iter().find(|(bad, ..)| *bad).map(|(_, field, problem)| (field, problem))
    }
}

/// 16 hex digits from std alone: each `RandomState` is keyed afresh, and
/// hashing the time and process id with it gives an id that differs between
/// nodes started together.
fn random_node_id() -> String {
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    format!("{:016x}", state.hash_one((std::time::SystemTime::now(), std::process::id())))
}

impl std::fmt::Debug for BackplaneConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackplaneConfig")
            .field("url", &crate::backplane::redact_url(&self.url))
            .field("password", &self.password)
            .field(
                "ca_certificate_pem",
                &self.ca_certificate_pem.as_ref().map(|pem| format!("{} bytes", pem.len())),
            )
            .field("node_id", &self.node_id)
            .field("channel_prefix", &self.channel_prefix)
            .field("publish_queue", &self.publish_queue)
            .finish()
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
        // Deadlines are instants: a timeout past this could not be added to
        // the clock.
        let too_long = [
            ("timeouts.handshake", t.handshake),
            ("timeouts.idle", t.idle),
            ("timeouts.ping_interval", t.ping_interval),
            ("timeouts.write", t.write),
            ("timeouts.close", t.close),
            ("timeouts.shutdown", t.shutdown),
            ("timeouts.spare_thread", t.spare_thread),
        ]
        .into_iter()
        .chain(t.max_lifetime.map(|lifetime| ("timeouts.max_lifetime", lifetime)))
        .find(|(_, timeout)| *timeout > MAX_TIMEOUT);
        let checks: [(bool, &'static str, &'static str); 23] = [
            (too_long.is_some(), too_long.map_or("timeouts", |(field, _)| field), "must be at most 30 days"),
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
            // Each of these is allocated per connection, or per read of a
            // request head: a value meant as "no limit" would let one
            // request take the machine's memory.
            (
                !(256..=1 << 20).contains(&l.max_head_size),
                "limits.max_head_size",
                "must be between 256 bytes and 1 MiB",
            ),
            (!(8..=1024).contains(&l.max_headers), "limits.max_headers", "must be between 8 and 1024"),
            (
                l.outbox_bytes < largest,
                "limits.outbox_bytes",
                "must hold the largest message (websocket.max_message_size plus a 14-byte header)",
            ),
            (ws.max_message_size.is_none(), "websocket.max_message_size", "must be set"),
            // Zero would not mean "no limit" but close every message that
            // holds a byte with 1009.
            (ws.max_message_size == Some(0), "websocket.max_message_size", "must be at least 1 byte"),
            (ws.max_frame_size == Some(0), "websocket.max_frame_size", "must be at least 1 byte"),
            (
                !(1..=MAX_QUEUE).contains(&l.hub_capacity),
                "limits.hub_capacity",
                "must be between 1 and 1048576",
            ),
            (l.max_connections == 0, "limits.max_connections", "must be at least 1"),
            (l.max_handshakes == 0, "limits.max_handshakes", "must be at least 1"),
            (
                t.max_lifetime.is_some_and(|lifetime| lifetime.is_zero()),
                "timeouts.max_lifetime",
                "must be more than zero",
            ),
            (
                l.max_messages_per_sec > 0 && l.message_burst == 0,
                "limits.message_burst",
                "must be at least 1 when limits.max_messages_per_sec is set",
            ),
            (
                !(256..=1 << 20).contains(&ws.read_buffer_size),
                "websocket.read_buffer_size",
                "must be between 256 bytes and 1 MiB",
            ),
            (
                ws.max_write_buffer_size <= ws.write_buffer_size,
                "websocket.max_write_buffer_size",
                "must be more than websocket.write_buffer_size",
            ),
            (
                !(64 * 1024..=8 << 20).contains(&self.thread_stack_size),
                "thread_stack_size",
                "must be between 64 KiB and 8 MiB",
            ),
            (
                !self.subprotocols.iter().all(|name| crate::http::is_token(name)),
                "subprotocols",
                "must each be an HTTP token (no space, comma or empty name), or no client could choose it",
            ),
        ];
        let found = checks.into_iter().find(|(bad, ..)| *bad).map(|(_, field, problem)| (field, problem));
        let found = found
            .or_else(|| self.access.problem())
            .or_else(|| self.backplane.as_ref().and_then(BackplaneConfig::problem));
        match found {
            Some((field, problem)) => Err(Error::Config { field, problem }),
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
    fn a_subprotocol_is_a_token() {
        let with = |names: &[&str]| Config {
            subprotocols: names.iter().map(ToString::to_string).collect(),
            ..Config::default()
        };
        with(&["chat.v1", "graphql-ws"]).validate().unwrap();
        for bad in [&["a b"][..], &["chat", ""], &["a,b"], &["caf\u{e9}"]] {
            let err = with(bad).validate().unwrap_err();
            assert!(matches!(err, Error::Config { field: "subprotocols", .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_trusted_ipv4_proxy_is_trusted_as_an_ipv4_mapped_peer() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let access = |net: &str| Access { trusted_proxies: vec![net.parse().unwrap()], ..Access::default() };
        for net in ["127.0.0.1/32", "::ffff:127.0.0.1/128"] {
            let access = access(net);
            assert!(access.trusts(ip("127.0.0.1")), "{net}");
            assert!(access.trusts(ip("::ffff:127.0.0.1")), "{net}");
            assert!(!access.trusts(ip("::ffff:127.0.0.2")), "{net}");
            assert!(!access.trusts(ip("::1")), "{net}");
        }
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
    fn a_timeout_past_30_days_is_refused() {
        let config = Config {
            timeouts: Timeouts { idle: Duration::from_secs(31 * 24 * 60 * 60), ..Timeouts::default() },
            ..Config::default()
        };
        assert!(matches!(config.validate(), Err(Error::Config { field: "timeouts.idle", .. })));
    }

    #[test]
    fn sizes_allocated_up_front_are_bounded_above() {
        let limits = |limits: Limits| Config { limits, ..Config::default() };
        let huge = 100_000_000_000;
        let cases = [
            (limits(Limits { max_head_size: usize::MAX, ..Limits::default() }), "limits.max_head_size"),
            (limits(Limits { max_headers: huge, ..Limits::default() }), "limits.max_headers"),
            (limits(Limits { hub_capacity: huge, ..Limits::default() }), "limits.hub_capacity"),
            (
                Config { websocket: Config::default().websocket.read_buffer_size(huge), ..Config::default() },
                "websocket.read_buffer_size",
            ),
            (Config { thread_stack_size: huge, ..Config::default() }, "thread_stack_size"),
        ];
        for (config, expected) in cases {
            match config.validate() {
                Err(Error::Config { field, .. }) => assert_eq!(field, expected),
                other => panic!("expected {expected} to be refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_size_limit_of_zero_is_refused() {
        let websocket = |websocket| Config { websocket, ..Config::default() };
        let cases = [
            (websocket(Config::default().websocket.max_message_size(Some(0))), "websocket.max_message_size"),
            (websocket(Config::default().websocket.max_frame_size(Some(0))), "websocket.max_frame_size"),
        ];
        for (config, expected) in cases {
            match config.validate() {
                Err(Error::Config { field, .. }) => assert_eq!(field, expected),
                other => panic!("expected {expected} to be refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn outbox_must_hold_the_largest_message() {
        let config =
            Config { limits: Limits { outbox_bytes: 1 << 20, ..Limits::default() }, ..Config::default() };
        assert!(matches!(config.validate(), Err(Error::Config { field: "limits.outbox_bytes", .. })));
    }

    #[test]
    fn backplane_fields_are_checked() {
        let with = |backplane: BackplaneConfig| Config { backplane: Some(backplane), ..Config::default() };
        let base = BackplaneConfig::new("redis://127.0.0.1:6379");
        with(base.clone()).validate().unwrap();
        with(BackplaneConfig::new("redis+unix:///run/redis.sock")).validate().unwrap();
        with(BackplaneConfig::new("rediss://redis.example:6380")).validate().unwrap();
        let password = Some(Secret::new("hunter2"));
        with(BackplaneConfig { password: password.clone(), ..base.clone() }).validate().unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["redis.example".to_owned()]).unwrap();
        let ca = Some(certified.cert.pem().into_bytes());
        let tls = BackplaneConfig::new("rediss://redis.example");
        with(BackplaneConfig { ca_certificate_pem: ca.clone(), ..tls.clone() }).validate().unwrap();
        let cases = [
            (BackplaneConfig { url: "http://example".into(), ..base.clone() }, "backplane.url"),
            (BackplaneConfig { url: "valkey://127.0.0.1".into(), ..base.clone() }, "backplane.url"),
            (BackplaneConfig { url: "rediss://127.0.0.1/#insecure".into(), ..base.clone() }, "backplane.url"),
            (
                BackplaneConfig { url: "redis://127.0.0.1/?password=x".into(), ..base.clone() },
                "backplane.url",
            ),
            (BackplaneConfig { url: "rediss://127.0.0.1/0?PASS=x".into(), ..base.clone() }, "backplane.url"),
            (BackplaneConfig { password: Some(Secret::new("")), ..base.clone() }, "backplane.password"),
            (BackplaneConfig { password: Some(Secret::new([0xff])), ..base.clone() }, "backplane.password"),
            (
                BackplaneConfig {
                    url: "redis://:inline@db".into(),
                    password: password.clone(),
                    ..base.clone()
                },
                "backplane.password",
            ),
            (BackplaneConfig { ca_certificate_pem: ca, ..base.clone() }, "backplane.ca_certificate_pem"),
            (
                BackplaneConfig { ca_certificate_pem: Some(b"not a PEM".to_vec()), ..tls },
                "backplane.ca_certificate_pem",
            ),
            (BackplaneConfig { node_id: String::new(), ..base.clone() }, "backplane.node_id"),
            (BackplaneConfig { node_id: "a b".into(), ..base.clone() }, "backplane.node_id"),
            (BackplaneConfig { node_id: "x".repeat(65), ..base.clone() }, "backplane.node_id"),
            (BackplaneConfig { channel_prefix: "sb ".into(), ..base.clone() }, "backplane.channel_prefix"),
            (BackplaneConfig { channel_prefix: "sb/".into(), ..base.clone() }, "backplane.channel_prefix"),
            (BackplaneConfig { publish_queue: 0, ..base.clone() }, "backplane.publish_queue"),
            (BackplaneConfig { publish_queue: usize::MAX, ..base.clone() }, "backplane.publish_queue"),
        ];
        for (backplane, expected) in cases {
            match with(backplane).validate() {
                Err(Error::Config { field, .. }) => assert_eq!(field, expected),
                other => panic!("expected {expected} to be refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn random_node_ids_differ() {
        let (a, b) = (BackplaneConfig::new("redis://x").node_id, BackplaneConfig::new("redis://x").node_id);
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn backplane_debug_redacts_passwords() {
        for url in ["redis://u:hunter2@db", "redis+unix:///run/redis.sock?db=0&user=app&pass=hunter2"] {
            let debug = format!("{:?}", BackplaneConfig::new(url));
            assert!(!debug.contains("hunter2"), "{debug}");
        }
        let given_apart =
            BackplaneConfig { password: Some(Secret::new("hunter2")), ..BackplaneConfig::new("redis://db") };
        let debug = format!("{given_apart:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    /// A JWT setting, which `set` gives a value, is refused without a JWT
    /// secret, or empty, as `field`.
    fn needs_a_jwt_secret_and_a_value(field: &str, set: fn(String) -> Access) {
        let with = |access: Access| Config { access, ..Config::default() }.validate();
        let secret = Some(Secret::new("key"));
        with(Access { jwt_secret: secret.clone(), ..set("preferred_username".into()) }).unwrap();
        for access in [set("preferred_username".into()), Access { jwt_secret: secret, ..set(String::new()) }]
        {
            match with(access) {
                Err(Error::Config { field: refused, .. }) => assert_eq!(refused, field),
                other => panic!("expected {field} to be refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn jwt_name_claim_needs_a_jwt_secret_and_a_name() {
        needs_a_jwt_secret_and_a_value("access.jwt_name_claim", |claim| Access {
            jwt_name_claim: Some(claim),
            ..Access::default()
        });
    }

    #[test]
    fn jwt_audience_needs_a_jwt_secret_and_a_name() {
        needs_a_jwt_secret_and_a_value("access.jwt_audience", |audience| Access {
            jwt_audience: Some(audience),
            ..Access::default()
        });
    }

    #[test]
    fn previous_jwt_keys_need_a_current_one() {
        let with = |access: Access| Config { access, ..Config::default() }.validate();
        let previous = vec![Secret::new("old")];
        let err = with(Access { jwt_previous_secrets: previous.clone(), ..Access::default() }).unwrap_err();
        assert!(matches!(err, Error::Config { field: "access.jwt_previous_secrets", .. }), "{err}");
        with(Access {
            jwt_secret: Some(Secret::new("new")),
            jwt_previous_secrets: previous,
            ..Access::default()
        })
        .unwrap();
    }

    #[test]
    fn private_metrics_need_credentials_to_ask_for() {
        let with = |access: Access| Config { access, ..Config::default() }.validate();
        let err = with(Access { private_metrics: true, ..Access::default() }).unwrap_err();
        assert!(matches!(err, Error::Config { field: "access.private_metrics", .. }), "{err}");
        with(Access { private_metrics: true, tokens: vec![Token::new("t")], ..Access::default() }).unwrap();
        with(Access { private_metrics: true, jwt_secret: Some(Secret::new("k")), ..Access::default() })
            .unwrap();
    }

    #[test]
    fn tokens_are_named_by_words_and_held_once() {
        let with = |tokens: Vec<Token>| {
            Config { access: Access { tokens, ..Access::default() }, ..Config::default() }.validate()
        };
        with(vec![Token::named("alice", "a"), Token::named("alice", "b"), Token::new("c")]).unwrap();
        for refused in [
            vec![Token::named("", "a")],
            vec![Token::named("token 2", "a")],
            vec![Token::named("alice", "a"), Token::new("a")],
        ] {
            let err = with(refused.clone()).unwrap_err();
            assert!(matches!(err, Error::Config { field: "access.tokens", .. }), "{refused:?}: {err}");
        }
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
