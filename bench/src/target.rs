//! Where the load goes: the server's address, refused unless it is on this machine.
//!
//! The tool opens thousands of connections and sends as fast as a server
//! answers. Aimed at someone else's server by a typo, that is an attack, so a
//! target that is not a loopback address needs `--allow-remote`.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::error::{Error, Result};

/// Which servers the tool may load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Only servers on a loopback address (127.0.0.0/8, ::1). The default.
    LoopbackOnly,
    /// Any server (`--allow-remote`).
    Remote,
}

impl Reach {
    /// Returns true if and only if the tool may load or connect from `ip`.
    pub fn allows(self, ip: IpAddr) -> bool {
        self == Reach::Remote || ip.is_loopback()
    }
}

/// A resolved server address that the tool is allowed to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    addr: SocketAddr,
}

impl Target {
    /// Resolves `server` (`HOST:PORT`) and checks the first address against `reach`.
    ///
    /// # Errors
    ///
    /// [`Error::Resolve`] if `server` does not resolve, and
    /// [`Error::NotLoopback`] if it resolves off this machine and `reach`
    /// does not allow that.
    pub fn resolve(server: &str, reach: Reach) -> Result<Target> {
        let resolve_error = |source| Error::Resolve { target: server.to_owned(), source };
        let addr = server.to_socket_addrs().map_err(|e| resolve_error(Some(e)))?.next();
        Target::new(addr.ok_or_else(|| resolve_error(None))?, reach)
    }

    /// Checks an address against `reach`.
    ///
    /// # Errors
    ///
    /// [`Error::NotLoopback`] if `addr` is off this machine and `reach` does
    /// not allow that.
    pub fn new(addr: SocketAddr, reach: Reach) -> Result<Target> {
        if !reach.allows(addr.ip()) {
            return Err(Error::NotLoopback { addr });
        }
        Ok(Target { addr })
    }

    /// The socket address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `ws://` URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
}

/// Where one connection goes: a server, and a path on it; and where it leaves from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// The server.
    pub target: Target,
    /// The path to upgrade on.
    pub path: String,
    /// The local address to bind to, if not the system's choice.
    pub from: Option<IpAddr>,
}

impl Dial {
    /// The `ws://` URL.
    pub fn url(&self) -> String {
        self.target.url(&self.path)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_allowed() {
        for server in ["127.0.0.1:9001", "127.8.9.10:80", "[::1]:9001"] {
            assert!(Target::resolve(server, Reach::LoopbackOnly).is_ok(), "{server}");
        }
    }

    #[test]
    fn anything_else_is_refused_without_allow_remote() {
        for server in ["10.0.0.1:9001", "192.168.1.1:80", "0.0.0.0:9001", "[2001:db8::1]:443"] {
            let refused = Target::resolve(server, Reach::LoopbackOnly);
            assert!(matches!(refused, Err(Error::NotLoopback { .. })), "{server}: {refused:?}");
        }
    }

    #[test]
    fn allow_remote_lets_it_through() {
        let target = Target::resolve("10.0.0.1:9001", Reach::Remote).unwrap();
        assert_eq!(target.url("/echo"), "ws://10.0.0.1:9001/echo");
    }

    #[test]
    fn a_missing_port_does_not_resolve() {
        assert!(matches!(Target::resolve("127.0.0.1", Reach::LoopbackOnly), Err(Error::Resolve { .. })));
    }
}
