//! One connection's byte stream, plain TCP or TLS, shared by its reader and
//! writer without a lock on the socket.
//!
//! `&TcpStream` implements both `Read` and `Write`, so the reader thread and
//! the writer thread can each hold an `Arc` of the same stream and use it at
//! the same time: the kernel keeps the two directions apart. That costs one
//! file descriptor per connection, where `try_clone` would cost two. A TLS
//! stream is shared the same way; see [`crate::tls`] for how its session is.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::tls::TlsStream;

/// A connected socket, cheap to clone. It is `Read + Write` itself for the
/// HTTP phase, when one thread does everything; after an upgrade it is split
/// into a [`ReadHalf`] for the reader and a [`WriteHalf`] for the writer.
#[derive(Debug, Clone)]
pub(crate) enum Socket {
    Plain(Arc<TcpStream>),
    Tls(Arc<TlsStream>),
}

/// Ends a conversation. Errors are ignored: the peer may already be gone,
/// which is the goal anyway.
pub(crate) trait Hangup {
    /// Shuts the connection down in both directions, so that a thread
    /// blocked reading the socket wakes up at once.
    fn hang_up(&self);

    /// Says that nothing more will be written: close_notify over TLS, then
    /// FIN. Reading goes on.
    fn end_output(&self);
}

/// The most bytes [`Socket::linger`] will read and discard.
const LINGER_MAX_BYTES: usize = 64 * 1024;

impl Socket {
    pub(crate) fn plain(stream: TcpStream) -> Self {
        Socket::Plain(Arc::new(stream))
    }

    pub(crate) fn tls(stream: Arc<TlsStream>) -> Self {
        Socket::Tls(stream)
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Socket::Plain(tcp) => tcp,
            Socket::Tls(tls) => tls.tcp(),
        }
    }

    /// Makes every read wait at most `timeout` for bytes.
    pub(crate) fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        if let Socket::Tls(tls) = self {
            tls.set_deadline(None);
        }
        self.tcp().set_read_timeout(Some(timeout))
    }

    /// Makes every read give up at `deadline`, however the peer spreads its
    /// bytes: a read of plaintext may take many reads of the socket.
    pub(crate) fn set_deadline(&self, deadline: Instant) -> io::Result<()> {
        match self {
            Socket::Plain(tcp) => set_deadline(tcp, deadline),
            Socket::Tls(tls) => {
                tls.set_deadline(Some(deadline));
                Ok(())
            }
        }
    }

    pub(crate) fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.tcp().set_write_timeout(Some(timeout))
    }

    /// The reading side for tungstenite; see [`ReadHalf`].
    pub(crate) fn read_half(&self) -> ReadHalf {
        ReadHalf(self.clone())
    }

    /// The writing side for the writer thread.
    pub(crate) fn write_half(&self) -> WriteHalf {
        WriteHalf(self.clone())
    }

    /// Closes gracefully: says so (FIN, and close_notify over TLS), then
    /// reads and discards what the peer still sends until it closes too, at
    /// most `timeout` and 64 KiB.
    ///
    /// Closing a socket that has unread bytes in its receive buffer makes the
    /// kernel send RST instead of FIN, and a peer receiving RST may discard
    /// the last response or close frame before its application reads it.
    pub(crate) fn linger(&self, timeout: Duration) {
        self.end_output();
        let tcp = self.tcp();
        let deadline = Instant::now() + timeout;
        let mut scratch = vec![0u8; 1024];
        let mut discarded = 0;
        while discarded < LINGER_MAX_BYTES {
            if set_deadline(tcp, deadline).is_err() {
                return;
            }
            match (&*tcp).read(&mut scratch) {
                Ok(0) | Err(_) => return,
                Ok(n) => discarded += n,
            }
        }
    }
}

/// Makes the next reads from `tcp` give up at `deadline`; `TimedOut` if it
/// has passed.
pub(crate) fn set_deadline(tcp: &TcpStream, deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() { Err(io::ErrorKind::TimedOut.into()) } else { tcp.set_read_timeout(Some(left)) }
}

impl Hangup for Socket {
    fn hang_up(&self) {
        let _ = self.tcp().shutdown(Shutdown::Both);
    }

    fn end_output(&self) {
        if let Socket::Tls(tls) = self {
            tls.close_notify();
        }
        let _ = self.tcp().shutdown(Shutdown::Write);
    }
}

/// The HTTP phase: one thread reads and writes, so over TLS it also sends
/// whatever records reading produced.
impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(tcp) => (&**tcp).read(buf),
            Socket::Tls(tls) => {
                let n = tls.read(buf)?;
                tls.send_pending()?;
                Ok(n)
            }
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Plain(tcp) => (&**tcp).write_vectored(bufs),
            Socket::Tls(tls) => tls.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reading side of a connection, given to tungstenite.
///
/// tungstenite answers pings and closes from inside `read()`, by writing to
/// the stream it reads. On this half those writes go nowhere: the reader
/// forwards pings and closes to the writer instead, so that every byte a
/// client receives comes from one thread, in one order. Over TLS this half
/// never sends records either; see [`crate::tls`].
#[derive(Debug)]
pub(crate) struct ReadHalf(Socket);

impl Read for ReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.0 {
            Socket::Plain(tcp) => (&**tcp).read(buf),
            Socket::Tls(tls) => tls.read(buf),
        }
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
        self.0.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// tungstenite's `WebSocket` wants `Read + Write` even where it only
/// writes, as on a client's writer thread; it never reads this half.
impl Read for WriteHalf {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "the writing half of a connection does not read"))
    }
}

impl Hangup for WriteHalf {
    fn hang_up(&self) {
        self.0.hang_up();
    }

    fn end_output(&self) {
        self.0.end_output();
    }
}
