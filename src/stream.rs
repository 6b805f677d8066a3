//! One TCP socket shared by a connection's reader and writer, without a lock.
//!
//! `&TcpStream` implements both `Read` and `Write`, so the reader thread and
//! the writer thread can each hold an `Arc` of the same stream and use it at
//! the same time: the kernel keeps the two directions apart. That costs one
//! file descriptor per connection, where `try_clone` would cost two.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connected TCP socket, cheap to clone. It is `Read + Write` itself for the
/// HTTP phase; after an upgrade it is split into a [`ReadHalf`] for the reader
/// and a [`WriteHalf`] for the writer.
#[derive(Debug, Clone)]
pub(crate) struct Socket(Arc<TcpStream>);

/// Ends a conversation in both directions, so that a thread blocked reading
/// the socket wakes up at once.
pub(crate) trait Hangup {
    /// Shuts the connection down in both directions. Errors are ignored: the
    /// peer may already be gone, which is the goal anyway.
    fn hang_up(&self);
}

/// The most bytes [`Socket::linger`] will read and discard.
const LINGER_MAX_BYTES: usize = 64 * 1024;

impl Socket {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Socket(Arc::new(stream))
    }

    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr()
    }

    pub(crate) fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.0.set_read_timeout(Some(timeout))
    }

    pub(crate) fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.0.set_write_timeout(Some(timeout))
    }

    /// The reading side for tungstenite; see [`ReadHalf`].
    pub(crate) fn read_half(&self) -> ReadHalf {
        ReadHalf(self.clone())
    }

    /// The writing side for the writer thread.
    pub(crate) fn write_half(&self) -> WriteHalf {
        WriteHalf(self.clone())
    }

    /// Closes gracefully: sends FIN, then reads and discards what the peer
    /// still sends until it closes too, at most `timeout` and 64 KiB.
    ///
    /// Closing a socket that has unread bytes in its receive buffer makes the
    /// kernel send RST instead of FIN, and a peer receiving RST may discard
    /// the last response or close frame before its application reads it.
    pub(crate) fn linger(&self, timeout: Duration) {
        if self.0.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let deadline = Instant::now() + timeout;
        let mut scratch = [0u8; 1024];
        let mut discarded = 0;
        while discarded < LINGER_MAX_BYTES {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.set_read_timeout(left).is_err() {
                return;
            }
            match (&*self.0).read(&mut scratch) {
                Ok(0) | Err(_) => return,
                Ok(n) => discarded += n,
            }
        }
    }
}

impl Hangup for Socket {
    fn hang_up(&self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self.0).flush()
    }
}

/// The reading side of a connection, given to tungstenite.
///
/// tungstenite answers pings and closes from inside `read()`, by writing to
/// the stream it reads. On this half those writes go nowhere: the reader
/// forwards pings and closes to the writer instead, so that every byte a
/// client receives comes from one thread, in one order.
#[derive(Debug)]
pub(crate) struct ReadHalf(Socket);

impl Read for ReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for ReadHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The writing side of a connection, owned by its writer thread.
#[derive(Debug)]
pub(crate) struct WriteHalf(Socket);

impl Write for WriteHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self.0.0).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Hangup for WriteHalf {
    fn hang_up(&self) {
        self.0.hang_up();
    }
}
