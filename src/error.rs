//! The library's errors, and [`Refusal`]: the HTTP answer to a request the server turns down.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong when running or using a server.
///
/// Trouble with one client (a bad request, a protocol error, a peer that
/// vanished) is not an `Error`: the server answers or closes that client and
/// carries on. These are the failures a caller has to act on; later
/// versions may add to them, so a `match` needs an arm for the rest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`Config`](crate::Config) field is out of range.
    #[error("invalid configuration: {field} {problem}")]
    Config {
        /// The field, as it is written in `Config` (`timeouts.idle`).
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// Why the operating system refused.
        #[source]
        source: io::Error,
    },
    /// A file named in the configuration could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: io::Error,
    },
    /// The TLS certificate or key is unusable.
    #[error("TLS: {problem}")]
    Tls {
        /// What is wrong, such as `no certificate in the PEM`.
        problem: &'static str,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A thread could not be started (the process or machine thread limit).
    #[error("cannot start thread {name}")]
    Spawn {
        /// The name the thread would have had.
        name: String,
        /// Why the operating system refused.
        #[source]
        source: io::Error,
    },
    /// Redis refused this node's credentials when the backplane first
    /// reached it: the password is wrong, or Redis wants one and none was
    /// given. A Redis that cannot be reached is no error: the backplane
    /// retries it in the background.
    #[error("Redis at {redis} refused the node's credentials: {reason}")]
    RedisAuth {
        /// The Redis URL, its passwords shown as `***`.
        redis: String,
        /// Redis's answer, without any password in it.
        reason: String,
    },
    /// The hub has stopped: the server is shutting down or has shut down.
    #[error("the hub has stopped")]
    HubStopped,
    /// The connection has ended; nothing more can be sent to it.
    #[error("the connection is closed")]
    Closed,
    /// An I/O error outside any one client.
    #[error("i/o error")]
    Io(#[from] io::Error),
}

/// An HTTP answer that turns a request down: a status and the reason given to
/// the client in the response body.
///
/// A [`Handler`](crate::Handler) returns one from
/// [`on_upgrade`](crate::Handler::on_upgrade) to refuse a WebSocket upgrade;
/// the server uses the same type for the answers it gives itself (400, 404,
/// 405, 408, 414, 426, 431, 503). Every refusal is logged and counted in
/// `/metrics` by its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status code, such as 403.
    pub status: u16,
    /// One line for the client, such as `origin not allowed`. It is sent as
    /// the body, so it must not contain secrets.
    pub reason: Cow<'static, str>,
}

impl Refusal {
    /// A refusal with the given status and reason.
    pub fn new(status: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        Refusal { status, reason: reason.into() }
    }

    /// 400: the request is malformed.
    pub fn bad_request(reason: impl Into<Cow<'static, str>>) -> Self {
        Refusal::new(400, reason)
    }

    /// 401: the request carries no credentials.
    pub fn unauthorized(reason: impl Into<Cow<'static, str>>) -> Self {
        Refusal::new(401, reason)
    }

    /// 403: the credentials or the origin are not accepted.
    pub fn forbidden(reason: impl Into<Cow<'static, str>>) -> Self {
        Refusal::new(403, reason)
    }

    /// 404: nothing is served at this path.
    pub fn not_found() -> Self {
        Refusal::new(404, "no such endpoint")
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

/// `error: cause: root cause`: an error and its chain of sources on one
/// line, so that one log line tells the whole story.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
