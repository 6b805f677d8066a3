//! The listening socket: bound, with the options every accepted socket
//! inherits, and its accepts deferred until the client speaks.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::http::request::first_read_timeout;

/// Listens on `config.listen` for the server.
///
/// The options set here are copied by Linux to every socket accepted from
/// it, so that no connection spends a system call on them: no Nagle delay
/// on small frames, a read timeout for the first read of a request head
/// (the handshake timeout, or the grace of the head's rate rule), and the
/// write timeout on blocking writes (plain HTTP answers). Linux applies
/// the read timeout to `accept` as well, so an idle accept loop wakes once
/// a timeout, finds nothing, and waits again.
///
/// The TCP user timeout is the write and close timeouts together: a client
/// whose kernel takes none of the bytes waiting for it for that long is
/// reset. The server's own timeouts end a connection it still holds; this
/// one bounds what Linux holds for a client once the socket is closed
/// (the bytes it had taken but not sent, megabytes as Linux grows the
/// buffer), which would otherwise stay allocated for minutes, outside the
/// connection limits.
///
/// Accepts are deferred (`TCP_DEFER_ACCEPT`, as nginx's `deferred` and
/// Apache's `AcceptFilter`): the kernel completes a connection but hands it
/// to `accept` only once its first bytes have arrived, or once the
/// handshake timeout has passed (and the client has answered the kernel's
/// repeated SYN-ACK), so a socket that connects and says nothing costs no
/// thread and no connection slot meanwhile.
///
/// Accepted sockets also start out delaying their ACKs (`TCP_QUICKACK`
/// off, as HAProxy's `tcp-smart-accept`): a request that arrives whole is
/// then acknowledged by its answer, a moment later, rather than by an ACK
/// of its own first. That is one packet fewer per connection for both
/// ends. A head that comes in pieces turns quick ACKs back on
/// ([`Socket::ack_at_once`](crate::stream::Socket::ack_at_once)), and once
/// the server has answered, the kernel acknowledges as it would anyway.
///
/// # Errors
///
/// [`Error::Bind`] when the address cannot be listened on; [`Error::Io`]
/// when an option cannot be set.
pub(crate) fn listen(config: &Config) -> Result<TcpListener> {
    let addr = config.listen;
    let listener = bind(addr).map_err(|source| Error::Bind { addr, source })?;
    let timeouts = &config.timeouts;
    let socket = SockRef::from(&listener);
    socket.set_tcp_nodelay(true)?;
    socket.set_tcp_quickack(false)?;
    socket
        .set_read_timeout(Some(first_read_timeout(timeouts.handshake, config.limits.handshake_min_rate)))?;
    socket.set_write_timeout(Some(timeouts.write))?;
    socket.set_tcp_user_timeout(Some(timeouts.write + timeouts.close))?;
    defer_accept(&listener, timeouts.handshake)?;
    Ok(listener)
}

/// Connections the kernel holds ready for `accept`, before it drops further
/// SYNs (it caps this at `net.core.somaxconn`, 4,096 by default). The 128
/// the standard library asks for overflows when many clients reconnect at
/// once, after a restart or a network blip, and each SYN dropped costs its
/// client a second before it tries again.
pub(crate) const BACKLOG: i32 = 4096;

/// A listening socket on `addr`, as `TcpListener::bind` makes one (address
/// reuse for a quick restart) but for its backlog, and for an IPv6 address
/// taking IPv4 clients too (as `::ffff:a.b.c.d`) whatever
/// `net.ipv6.bindv6only` says, so that `[::]` is one dual-stack listener on
/// every host.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Sets `TCP_DEFER_ACCEPT` on `listener` for `wait`, rounded up to whole
/// seconds.
///
/// Unsafe, as a raw `setsockopt`: neither socket2 nor std (where it is
/// unstable) sets this option yet.
#[allow(unsafe_code)]
fn defer_accept(listener: &TcpListener, wait: Duration) -> std::io::Result<()> {
    let seconds = libc::c_int::try_from(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
        .unwrap_or(libc::c_int::MAX);
    let length =
        libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).expect("Bug: an int's size fits");
    // SAFETY: the descriptor is open for as long as `listener` is borrowed,
    // and the option's value is a c_int that outlives the call, whose size
    // is the length given.
    let set = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&seconds).cast(),
            length,
        )
    };
    if set == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_listener_takes_ipv4_clients_whatever_the_system_default() {
        let config = Config { listen: "[::]:0".parse().unwrap(), ..Config::default() };
        let listener = listen(&config).unwrap();
        assert!(!SockRef::from(&listener).only_v6().unwrap());
        let port = listener.local_addr().unwrap().port();
        std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    }

    #[test]
    fn an_accepted_socket_delays_its_acks_until_told_otherwise() {
        let config = Config { listen: "127.0.0.1:0".parse().unwrap(), ..Config::default() };
        let listener = listen(&config).unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        // Accepts wait for the client's first bytes.
        std::io::Write::write_all(&mut client, b"GET / HTTP/1.1\r\n").unwrap();
        let (accepted, _) = listener.accept().unwrap();
        // Another descriptor of the same socket, to look at it through.
        let probe = accepted.try_clone().unwrap();
        assert!(!SockRef::from(&probe).tcp_quickack().unwrap(), "the answer carries the ACK");
        crate::stream::Socket::plain(accepted).ack_at_once();
        assert!(SockRef::from(&probe).tcp_quickack().unwrap(), "a head in pieces is acknowledged at once");
    }
}
