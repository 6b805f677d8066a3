//! Where connections leave from: the local addresses of `--from`, dealt round robin, and sockets bound to one before they connect.
//!
//! The kernel tells TCP connections apart by their 4-tuple, so to one server
//! port a source address has about 28,000 local ports (Linux's default
//! ephemeral range), and a server's per-address limits count it as one
//! client. Several loopback addresses (all of 127.0.0.0/8 is this machine)
//! lift both.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::error::{Error, Result};
use crate::target::Reach;

/// The local addresses connections are bound to, in the order given; empty
/// when the system picks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources(Vec<IpAddr>);

impl Sources {
    /// Parses the `--from` values, each an address (`127.0.0.2`, `::1`) or an
    /// inclusive IPv4 range within one /24 (`127.0.0.2-127.0.0.9`), and checks
    /// every address against `reach`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a value that is neither; [`Error::SourceNotLoopback`]
    /// for an address off this machine that `reach` does not allow.
    pub fn parse(values: &[String], reach: Reach) -> Result<Sources> {
        let mut addrs = Vec::new();
        for value in values {
            match value.split_once('-') {
                Some((first, last)) => addrs.extend(range(first, last)?.map(IpAddr::V4)),
                None => addrs.push(value.trim().parse().map_err(|_| Error::Invalid {
                    name: "from",
                    problem: "must be an IP address such as 127.0.0.2, or a range such as 127.0.0.2-127.0.0.9",
                })?),
            }
        }
        if let Some(&addr) = addrs.iter().find(|addr| !reach.allows(**addr)) {
            return Err(Error::SourceNotLoopback { addr });
        }
        Ok(Sources(addrs))
    }

    /// Fails unless every address can reach `server`: a socket of one
    /// address family cannot connect to the other.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming `--from`.
    pub fn check_family(&self, server: SocketAddr) -> Result<()> {
        if self.0.iter().all(|addr| addr.is_ipv4() == server.is_ipv4()) {
            Ok(())
        } else {
            Err(Error::Invalid {
                name: "from",
                problem: "must be of the server's address family (IPv4 or IPv6)",
            })
        }
    }

    /// Fails unless a socket can be bound to every address: one that is not
    /// on this machine would fail every connection, one by one.
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] for the first address that cannot be bound.
    pub fn check_bindable(&self) -> Result<()> {
        for &addr in &self.0 {
            bound_socket(addr, SocketAddr::new(addr, 0)).map_err(|source| Error::Bind { addr, source })?;
        }
        Ok(())
    }

    /// The address connection number `i` leaves from, or `None` for the system's choice.
    pub fn pick(&self, i: usize) -> Option<IpAddr> {
        self.0.get(i.checked_rem(self.0.len())?).copied()
    }

    /// Returns true if and only if the system picks.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The addresses of `first-last`.
fn range(first: &str, last: &str) -> Result<impl Iterator<Item = Ipv4Addr>> {
    let ipv4 = |s: &str| {
        s.trim().parse::<Ipv4Addr>().map_err(|_| Error::Invalid {
            name: "from",
            problem: "a range must be two IPv4 addresses, such as 127.0.0.2-127.0.0.9",
        })
    };
    let (first, last) = (ipv4(first)?, ipv4(last)?);
    let ([a, b, c, low], [x, y, z, high]) = (first.octets(), last.octets());
    if [a, b, c] != [x, y, z] {
        return Err(Error::Invalid { name: "from", problem: "a range must stay within one /24" });
    }
    if low > high {
        return Err(Error::Invalid { name: "from", problem: "a range must go from the lower address up" });
    }
    Ok((low..=high).map(move |d| Ipv4Addr::new(a, b, c, d)))
}

/// Written as given, with runs of consecutive IPv4 addresses as ranges:
/// `127.0.0.2-127.0.0.9, ::1`.
impl fmt::Display for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let next_of = |addr: IpAddr| match addr {
            IpAddr::V4(v4) => v4.octets()[3].checked_add(1).map(|d| {
                let [a, b, c, _] = v4.octets();
                IpAddr::V4(Ipv4Addr::new(a, b, c, d))
            }),
            IpAddr::V6(_) => None,
        };
        let mut i = 0;
        while i < self.0.len() {
            let first = self.0[i];
            let mut last = first;
            while let Some(&following) = self.0.get(i + 1).filter(|&&a| Some(a) == next_of(last)) {
                last = following;
                i += 1;
            }
            write!(f, "{first}")?;
            if last != first {
                write!(f, "-{last}")?;
            }
            i += 1;
            if i < self.0.len() {
                f.write_str(", ")?;
            }
        }
        Ok(())
    }
}

/// A TCP socket for `to`, bound to `from` with a port the system picks.
fn bound_socket(from: IpAddr, to: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    Ok(socket)
}

/// [`bound_socket`], its bind error naming the address: the connection's
/// trouble is reported with the server's URL only.
fn bound_socket_named(from: IpAddr, to: SocketAddr) -> io::Result<Socket> {
    bound_socket(from, to).map_err(|e| io::Error::new(e.kind(), format!("binding to {from}: {e}")))
}

/// Starts a non-blocking connect from `from` to `to`, as
/// `mio::net::TcpStream::connect` does from the system's choice of address.
///
/// # Errors
///
/// The I/O error if the socket cannot be made, bound or started connecting.
pub fn connect_from(from: IpAddr, to: SocketAddr) -> io::Result<mio::net::TcpStream> {
    let socket = bound_socket_named(from, to)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&SockAddr::from(to)) {
        Ok(()) => {}
        // The event loop hears when it completes.
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(std::net::TcpStream::from(socket)))
}

/// Connects a blocking socket to `to`, from `from` if given, with Nagle's
/// delay off and `timeout` on the connect and on every later read and write.
///
/// The timeouts are set before the connect, which Linux bounds by the send
/// timeout: fewer system calls than a non-blocking connect and a poll, so
/// that the load costs the load generator less.
///
/// # Errors
///
/// The I/O error if the socket cannot be made or bound, or the connect fails
/// or times out.
pub fn connect_blocking(
    from: Option<IpAddr>,
    to: SocketAddr,
    timeout: Duration,
) -> io::Result<std::net::TcpStream> {
    let socket = match from {
        Some(from) => bound_socket_named(from, to)?,
        None => Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?,
    };
    socket.set_tcp_nodelay(true)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    socket.connect(&SockAddr::from(to)).map_err(|e| {
        // Linux says a connect that ran out of time is "in progress".
        if e.raw_os_error() == Some(libc::EINPROGRESS) {
            io::Error::new(io::ErrorKind::TimedOut, "connect timed out")
        } else {
            e
        }
    })?;
    Ok(std::net::TcpStream::from(socket))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Result<Sources> {
        let values: Vec<String> = values.iter().map(|&v| v.to_owned()).collect();
        Sources::parse(&values, Reach::LoopbackOnly)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_ranges_are_taken_in_order() {
        let sources = parse(&["127.0.0.5", "127.0.0.2-127.0.0.4", "::1"]).unwrap();
        let expected = ["127.0.0.5", "127.0.0.2", "127.0.0.3", "127.0.0.4", "::1"].map(ip);
        assert_eq!(sources.0, expected);
        assert_eq!(parse(&["127.0.0.7-127.0.0.7"]).unwrap().0, [ip("127.0.0.7")]);
    }

    #[test]
    fn connections_are_dealt_round_robin() {
        let sources = parse(&["127.0.0.2-127.0.0.4"]).unwrap();
        let picked: Vec<_> = (0..5).map(|i| sources.pick(i).unwrap()).collect();
        assert_eq!(picked, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.2", "127.0.0.3"].map(ip));
        assert_eq!(Sources::default().pick(3), None);
    }

    #[test]
    fn ranges_are_ipv4_upward_within_a_slash_24() {
        for bad in ["127.0.0.9-127.0.0.2", "127.0.0.2-127.0.1.3", "::1-::2", "127.0.0.2-", "localhost"] {
            let refused = parse(&[bad]);
            assert!(matches!(refused, Err(Error::Invalid { name: "from", .. })), "{bad}: {refused:?}");
        }
    }

    #[test]
    fn a_remote_source_is_refused_unless_allowed() {
        let refused = parse(&["127.0.0.2", "10.0.0.1"]);
        assert!(matches!(refused, Err(Error::SourceNotLoopback { .. })), "{refused:?}");
        let range = parse(&["192.168.1.1-192.168.1.3"]);
        assert!(matches!(range, Err(Error::SourceNotLoopback { .. })), "{range:?}");
        assert!(Sources::parse(&["10.0.0.1".to_owned()], Reach::Remote).is_ok());
    }

    #[test]
    fn the_family_must_be_the_servers() {
        let v4 = parse(&["127.0.0.2"]).unwrap();
        assert!(v4.check_family("127.0.0.1:9001".parse().unwrap()).is_ok());
        assert!(matches!(
            v4.check_family("[::1]:9001".parse().unwrap()),
            Err(Error::Invalid { name: "from", .. })
        ));
        assert!(Sources::default().check_family("[::1]:9001".parse().unwrap()).is_ok());
    }

    #[test]
    fn runs_are_written_as_ranges() {
        let sources =
            parse(&["127.0.0.2-127.0.0.9", "127.0.0.20", "::1", "127.0.0.255", "127.0.1.0"]).unwrap();
        assert_eq!(sources.to_string(), "127.0.0.2-127.0.0.9, 127.0.0.20, ::1, 127.0.0.255, 127.0.1.0");
        assert_eq!(parse(&["127.0.0.3"]).unwrap().to_string(), "127.0.0.3");
    }

    #[test]
    fn loopback_sources_bind_and_connect() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let stream = connect_blocking(Some(ip("127.0.0.2")), server, Duration::from_secs(5)).unwrap();
        assert_eq!(stream.local_addr().unwrap().ip(), ip("127.0.0.2"));
        assert!(stream.nodelay().unwrap());
        assert_eq!(stream.read_timeout().unwrap(), Some(Duration::from_secs(5)));
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), ip("127.0.0.2"));
        let pending = connect_from(ip("127.0.0.3"), server).unwrap();
        assert_eq!(pending.local_addr().unwrap().ip(), ip("127.0.0.3"));
    }
}
