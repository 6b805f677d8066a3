//! The listening socket: bound, with the options every accepted socket
//! inherits.

use std::net::{SocketAddr, TcpListener};

use socket2::SockRef;

use crate::config::Timeouts;
use crate::error::{Error, Result};

/// Listens on `addr` for the server.
///
/// The options set here are copied by Linux to every socket accepted from
/// it, so that no connection spends a system call on them: no Nagle delay
/// on small frames, the handshake timeout on reads (the first read of a
/// request head needs no other deadline) and the write timeout on blocking
/// writes (plain HTTP answers).
///
/// # Errors
///
/// [`Error::Bind`] when the address cannot be listened on; [`Error::Io`]
/// when an option cannot be set.
pub(crate) fn listen(addr: SocketAddr, timeouts: &Timeouts) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
    let socket = SockRef::from(&listener);
    socket.set_tcp_nodelay(true)?;
    socket.set_read_timeout(Some(timeouts.handshake))?;
    socket.set_write_timeout(Some(timeouts.write))?;
    Ok(listener)
}
