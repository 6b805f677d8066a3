//! One connection's byte stream, plain TCP or TLS, shared by the threads
//! that read and write it without a lock on the socket.
//!
//! `&TcpStream` implements both `Read` and `Write`, so one thread can read
//! while another writes, each holding an `Arc` of the same stream: the kernel
//! keeps the two directions apart. That costs one file descriptor per
//! connection, where `try_clone` would cost two. A TLS stream is shared the
//! same way; see [`crate::tls`] for how its session is.
//!
//! A server connection's writers use the stream as a [`Sink`]: every send
//! returns at once, so that none of them ever waits on a client, and the
//! connection's own thread can stay blocked reading the same socket.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::SockRef;

use crate::tls::TlsStream;

/// A connected socket, cheap to clone. It is `Read + Write` itself for the
/// HTTP phase, when one thread does everything. After an upgrade a server
/// connection's thread reads it with [`receive`](Socket::receive) while its
/// outbox writes to it as a [`Sink`]; a client splits it into a [`ReadHalf`]
/// for its reader and a [`WriteHalf`] for its writer thread.
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

/// What a server connection's outbox writes to: a socket whose sends never
/// wait, whichever thread makes them.
pub(crate) trait Sink: Send + Sync + fmt::Debug {
    /// Sends as much of `bufs` as the kernel takes now, in one system call,
    /// without waiting: `WouldBlock` when its buffer is full. With
    /// [`Then::Fin`] the caller shuts the writing side down as soon as the
    /// last of these bytes is taken, and must: till then the kernel may hold
    /// them back.
    fn send(&self, bufs: &[IoSlice<'_>], then: Then) -> io::Result<usize>;

    /// Shuts down one direction or both. Errors are ignored: the peer may
    /// already be gone, which is the goal anyway.
    fn shutdown(&self, how: Shutdown);

    /// Has the socket, once closed, drop what the kernel still holds for
    /// the peer and reset the connection, rather than send it all and then
    /// the FIN: for a client given up on for not taking its bytes, whose
    /// kernel buffer (megabytes, as Linux grows it) would otherwise stay
    /// allocated for as long as it takes a byte now and then.
    fn discard_unsent(&self) {}

    /// The descriptor to wait on for room to write.
    fn fd(&self) -> RawFd;

    /// The TLS session that frames are sealed with before they are sent, if
    /// the connection speaks TLS.
    fn tls(&self) -> Option<&TlsStream> {
        None
    }
}

/// What comes right after a [`Sink::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Perhaps more, perhaps not for a while: the bytes leave now.
    More,
    /// The FIN: these are the last bytes. The kernel holds them until the
    /// writing side is shut down, so that bytes and FIN leave in one
    /// segment, as the close reply and the FIN of a short-lived client's
    /// connection should: one packet fewer for both ends to handle.
    Fin,
}

/// The flags of every send to a client: return at once rather than wait for
/// room (this call only: the socket stays blocking for its reader), and
/// report a vanished peer as an error rather than with SIGPIPE.
const SEND_FLAGS: libc::c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

impl Sink for TcpStream {
    fn send(&self, bufs: &[IoSlice<'_>], then: Then) -> io::Result<usize> {
        // The shutdown that follows the last bytes tacks the FIN onto the
        // segment still held back by MSG_MORE (tcp_send_fin).
        let flags = match then {
            Then::More => SEND_FLAGS,
            Then::Fin => SEND_FLAGS | libc::MSG_MORE,
        };
        match bufs {
            // send(2) spares the kernel the message header and iovec that
            // sendmsg(2) must copy in: the usual case, one frame or one run.
            [one] => SockRef::from(self).send_with_flags(one, flags),
            _ => SockRef::from(self).send_vectored_with_flags(bufs, flags),
        }
    }

    fn shutdown(&self, how: Shutdown) {
        let _ = TcpStream::shutdown(self, how);
    }

    fn discard_unsent(&self) {
        let _ = SockRef::from(self).set_linger(Some(Duration::ZERO));
    }

    fn fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

/// A plain socket's blocking writes of its last bytes, which the kernel
/// holds for the FIN as it does a [`Then::Fin`] send.
struct HeldForFin<'a>(&'a TcpStream);

impl Write for HeldForFin<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        SockRef::from(self.0).send_with_flags(buf, libc::MSG_NOSIGNAL | libc::MSG_MORE)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The most bytes [`Socket::discard_input`] will read and discard.
const LINGER_MAX_BYTES: usize = 64 * 1024;

impl Socket {
    pub(crate) fn plain(stream: impl Into<Arc<TcpStream>>) -> Self {
        Socket::Plain(stream.into())
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

    /// Has the kernel acknowledge what arrives at once again. Accepted
    /// sockets start out delaying their ACKs (see [`crate::listener`]), so
    /// that a request that came whole is acknowledged by its answer; the
    /// client of one that comes in pieces must not wait for a delayed ACK
    /// (its Nagle would hold the next piece for it).
    pub(crate) fn ack_at_once(&self) {
        let _ = SockRef::from(self.tcp()).set_tcp_quickack(true);
    }

    /// Makes every read wait at most `timeout` for bytes, or for as long as
    /// it takes with `None`.
    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        if let Socket::Tls(tls) = self {
            tls.set_deadline(None);
        }
        self.tcp().set_read_timeout(timeout)
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

    /// Reads what the peer sent (decrypted, over TLS), and never writes:
    /// records that reading produces wait in the TLS session for whoever
    /// writes next.
    pub(crate) fn receive(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(tcp) => (&**tcp).read(buf),
            Socket::Tls(tls) => tls.read(buf),
        }
    }

    /// The reading side for a client's tungstenite; see [`ReadHalf`].
    pub(crate) fn read_half(&self) -> ReadHalf {
        ReadHalf(self.clone())
    }

    /// The writing side for a client's writer thread.
    pub(crate) fn write_half(&self) -> WriteHalf {
        WriteHalf(self.clone())
    }

    /// The socket as a server connection's outbox writes to it.
    pub(crate) fn sink(&self) -> Arc<dyn Sink> {
        match self {
            Socket::Plain(tcp) => tcp.clone(),
            Socket::Tls(tls) => tls.clone(),
        }
    }

    /// Writes the last bytes the connection will send, waiting for room as
    /// any write in the HTTP phase does. They are held for the FIN that
    /// [`linger`](Self::linger) sends next, as [`Then::Fin`] sends are, so
    /// that an answer and its FIN leave in one segment; over TLS, with
    /// close_notify sealed after them.
    pub(crate) fn write_last(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Socket::Plain(tcp) => HeldForFin(tcp).write_all(bytes),
            Socket::Tls(tls) => {
                let mut sealed = Vec::new();
                tls.seal(&[IoSlice::new(bytes)], true, &mut sealed)?;
                HeldForFin(tls.tcp()).write_all(&sealed)
            }
        }
    }

    /// Closes gracefully: says so (FIN, and close_notify over TLS), then
    /// waits for the peer to close too; see [`discard_input`](Self::discard_input).
    pub(crate) fn linger(&self, timeout: Duration) {
        self.end_output();
        self.discard_input(timeout);
    }

    /// Reads and discards what the peer still sends until it closes, at most
    /// `timeout` and 64 KiB.
    ///
    /// Closing a socket that has unread bytes in its receive buffer makes the
    /// kernel send RST instead of FIN, and a peer receiving RST may discard
    /// the last response or close frame before its application reads it.
    pub(crate) fn discard_input(&self, timeout: Duration) {
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

/// The HTTP phase: one thread reads and writes. Over TLS, records that
/// reading leaves waiting (the session tickets a TLS 1.3 handshake ends
/// with, a key update's answer) go out with the answer, in its segment.
impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(tcp) => (&**tcp).read(buf),
            Socket::Tls(tls) => tls.read(buf),
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

/// The reading side of a client connection, given to tungstenite.
///
/// tungstenite answers pings and closes from inside `read()`, by writing to
/// the stream it reads. On this half those writes go nowhere: the client's
/// reader forwards pings and closes to its writer thread instead, so that
/// frames from two threads never interleave. Over TLS this half never sends
/// records either; see [`crate::tls`].
#[derive(Debug)]
pub(crate) struct ReadHalf(Socket);

impl Read for ReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.receive(buf)
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

/// The writing side of a client connection, owned by its writer thread.
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

impl WriteHalf {
    /// Makes every write wait at most `timeout` for room in the kernel's
    /// buffer.
    pub(crate) fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.0.set_write_timeout(timeout)
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

/// What the kernel knows of a TCP connection: its counts, its round trip;
/// and how many bytes of it the kernel filled in (an older kernel knows
/// fewer fields, and leaves the later ones zero).
#[allow(unsafe_code)]
fn tcp_info(socket: RawFd) -> io::Result<(libc::tcp_info, usize)> {
    // SAFETY: tcp_info is plain integers, for which zero is a value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::tcp_info>()).expect("Bug: it fits");
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which has
    // that many.
    let got = unsafe {
        libc::getsockopt(socket, libc::IPPROTO_TCP, libc::TCP_INFO, (&raw mut info).cast(), &raw mut len)
    };
    if got == 0 { Ok((info, len as usize)) } else { Err(io::Error::last_os_error()) }
}

/// Why a socket takes no bytes, as far as its kernel can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stuck {
    /// The peer acknowledges what it gets but keeps its window shut, or
    /// too small for a segment: it is there, and reads nothing.
    NotReading,
    /// The peer acknowledges nothing: it, or the path to it, is gone.
    Unanswered,
    /// The kernel cannot say (not a TCP socket, or neither of those).
    Unknown,
}

impl Stuck {
    /// What the kernel says of the connection on `socket` now.
    pub(crate) fn of(socket: RawFd) -> Stuck {
        // The send window is known from Linux 5.4.
        const KNOWS_WINDOW: usize = std::mem::offset_of!(libc::tcp_info, tcpi_snd_wnd) + 4;
        match tcp_info(socket) {
            // A retransmission timed out, or a window probe went a whole
            // probe interval without an ACK (the count goes back to zero
            // with any ACK; one probe may be on its way): a peer that is
            // there answers.
            Ok((info, _)) if info.tcpi_retransmits > 0 || info.tcpi_probes >= 2 => Stuck::Unanswered,
            // Too small a window for a segment is as good as shut: the
            // sender waits for it to open (RFC 9293 §3.8.6.2.1).
            Ok((info, filled)) if filled >= KNOWS_WINDOW && info.tcpi_snd_wnd < info.tcpi_snd_mss => {
                Stuck::NotReading
            }
            _ => Stuck::Unknown,
        }
    }
}

/// The longest round trip [`round_trip`] reports. The client sets the
/// first measure (it can hold back the ACK of the SYN-ACK), so what a slow
/// path is allowed must stay bounded: a satellite link's 0.6 s and a
/// congested mobile one's second or two are within it.
const MAX_ROUND_TRIP: Duration = Duration::from_secs(3);

/// The connection's round trip as the kernel has measured it (on a socket
/// just accepted, from the SYN-ACK and its ACK), at most
/// [`MAX_ROUND_TRIP`]; zero if it cannot say.
///
/// Not inlined: the kernel's answer is a quarter of a kilobyte, which in
/// the caller's frame would make every connection's stack a page deeper,
/// resident for as long as the connection lives (13 KiB an idle
/// connection, 17 inlined).
#[inline(never)]
pub(crate) fn round_trip(socket: &TcpStream) -> Duration {
    tcp_info(socket.as_raw_fd())
        .map_or(Duration::ZERO, |(info, _)| Duration::from_micros(info.tcpi_rtt.into()))
        .min(MAX_ROUND_TRIP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn an_accepted_sockets_round_trip_is_the_kernels() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let measured = round_trip(&accepted);
        assert!(measured > Duration::ZERO && measured < Duration::from_secs(1), "{measured:?}");
    }

    #[test]
    fn a_peer_that_reads_nothing_is_told_by_its_shut_window() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        assert_eq!(Stuck::of(accepted.as_raw_fd()), Stuck::Unknown, "the window is open");
        // The client reads nothing: its window shuts once its buffer is full.
        accepted.set_nonblocking(true).unwrap();
        let chunk = [0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(10);
        while Stuck::of(accepted.as_raw_fd()) != Stuck::NotReading {
            assert!(Instant::now() < deadline, "{:?}", tcp_info(accepted.as_raw_fd()).unwrap().0);
            match accepted.write(&chunk) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        drop(client);
        let not_a_socket = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(Stuck::of(not_a_socket.as_raw_fd()), Stuck::Unknown);
    }

    fn segments_sent(socket: &TcpStream) -> u32 {
        tcp_info(socket.as_raw_fd()).unwrap().0.tcpi_segs_out
    }

    /// Segments that carried bytes (or a FIN with them): the kernel's own
    /// ACKs, which depend on its timing, are not counted.
    fn data_segments_sent(socket: &TcpStream) -> u32 {
        tcp_info(socket.as_raw_fd()).unwrap().0.tcpi_data_segs_out
    }

    /// Sends "goodbye" as a server's last bytes, saying `then`, and shuts
    /// the writing side down: the segments that took, and what the client
    /// read up to the end of the stream.
    fn goodbye(then: Then) -> (u32, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (server, _) = listener.accept().unwrap();
        let before = segments_sent(&server);
        assert_eq!(Sink::send(&server, &[IoSlice::new(b"good"), IoSlice::new(b"bye")], then).unwrap(), 7);
        Sink::shutdown(&server, Shutdown::Write);
        let segments = segments_sent(&server) - before;
        let mut read = Vec::new();
        client.read_to_end(&mut read).unwrap();
        (segments, read)
    }

    #[test]
    fn the_last_bytes_and_the_fin_leave_in_one_segment() {
        assert_eq!(goodbye(Then::Fin), (1, b"goodbye".to_vec()));
        assert_eq!(goodbye(Then::More), (2, b"goodbye".to_vec()), "sent at once, the FIN follows alone");
    }

    /// A server and a client that trust its certificate.
    fn tls_pair() -> (crate::tls::TlsAcceptor, crate::tls::TlsConnector) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let pem = certified.cert.pem().into_bytes();
        let config = crate::TlsConfig {
            certificate_chain_pem: pem.clone(),
            private_key_pem: crate::Secret::new(certified.signing_key.serialize_pem()),
        };
        (
            crate::tls::TlsAcceptor::new(&config).unwrap(),
            crate::tls::TlsConnector::new(crate::tls::extra_roots(&pem).unwrap()).unwrap(),
        )
    }

    #[test]
    fn a_chain_holding_a_certificate_that_is_not_x509_is_refused() {
        let leaf = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["intermediate".to_owned()]).unwrap().cert.pem();
        // A PEM block with a line lost from its middle: still base64, no
        // longer DER.
        let mut lines: Vec<&str> = other.lines().collect();
        lines.remove(lines.len() / 2);
        let broken = lines.join("\n") + "\n";
        let config = |chain: String| crate::TlsConfig {
            certificate_chain_pem: chain.into_bytes(),
            private_key_pem: crate::Secret::new(leaf.signing_key.serialize_pem()),
        };
        assert!(crate::tls::TlsAcceptor::new(&config(leaf.cert.pem() + &other)).is_ok());
        match crate::tls::TlsAcceptor::new(&config(leaf.cert.pem() + &broken)) {
            Err(crate::Error::Tls { problem, .. }) => {
                assert!(problem.contains("not a valid X.509"), "{problem}")
            }
            other => panic!("a broken chain was taken: {other:?}"),
        }
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let key_only = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap().signing_key;
        for pem in [Vec::new(), b"not a certificate\n".to_vec(), key_only.serialize_pem().into_bytes()] {
            match crate::tls::extra_roots(&pem) {
                Err(crate::Error::Tls { problem, .. }) => assert_eq!(problem, "no certificate in the CA PEM"),
                other => panic!("{:?} was taken: {other:?}", String::from_utf8_lossy(&pem)),
            }
        }
    }

    /// Reads `stream` to its clean end (the server's close_notify).
    fn read_to_close_notify(stream: &crate::tls::TlsStream) -> Vec<u8> {
        let mut read = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match stream.read(&mut buf).unwrap() {
                0 => return read,
                n => read.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// A listener as the server makes one, and a client connected to it.
    fn listener_and_client() -> (TcpListener, TcpStream) {
        let config = crate::Config { listen: "127.0.0.1:0".parse().unwrap(), ..crate::Config::default() };
        let listener = crate::listener::listen(&config).unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (listener, tcp)
    }

    #[test]
    fn over_tls_1_3_the_session_tickets_leave_with_the_answer() {
        let (acceptor, connector) = tls_pair();
        let (listener, tcp) = listener_and_client();
        let deadline = Instant::now() + Duration::from_secs(10);
        // As the client library has it: Nagle would hold the request until
        // the server acknowledged the client's Finished.
        tcp.set_nodelay(true).unwrap();
        let server = std::thread::spawn(move || {
            // As the server does: accepted once the ClientHello is in.
            let (tcp, _) = listener.accept().unwrap();
            let before = data_segments_sent(&tcp);
            let tls = acceptor
                .accept(Arc::new(tcp), &|_, _| deadline)
                .unwrap_or_else(|e| panic!("handshake: {e:?}"));
            let mut socket = Socket::tls(tls);
            let mut request = [0u8; 5];
            socket.read_exact(&mut request).unwrap();
            assert_eq!(&request, b"hello");
            socket.write_last(b"goodbye").unwrap();
            socket.end_output();
            data_segments_sent(socket.tcp()) - before
        });
        let client = connector.connect(tcp, "localhost", deadline).unwrap();
        client.write_vectored(&[IoSlice::new(b"hello")]).unwrap();
        assert_eq!(read_to_close_notify(&client), b"goodbye");
        assert_eq!(
            server.join().unwrap(),
            2,
            "the server's flight, then the tickets, the answer, close_notify and the FIN"
        );
    }

    #[test]
    fn over_tls_1_3_the_clients_finished_is_acknowledged_at_once() {
        let (acceptor, connector) = tls_pair();
        let (listener, tcp) = listener_and_client();
        let deadline = Instant::now() + Duration::from_secs(10);
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let tcp = Arc::new(tcp);
            acceptor.accept(tcp.clone(), &|_, _| deadline).unwrap_or_else(|e| panic!("handshake: {e:?}"));
            // Nothing was sent after the client's Finished: its ACK is not
            // left to the delayed-ACK timer, which a client with Nagle on
            // would wait out before it sent its request.
            SockRef::from(&*tcp).tcp_quickack().unwrap()
        });
        let _client = connector.connect(tcp, "localhost", deadline).unwrap();
        assert!(server.join().unwrap(), "the server's ACKs are still delayed");
    }

    #[test]
    fn over_tls_the_last_bytes_close_notify_and_the_fin_leave_in_one_segment() {
        let (acceptor, connector) = tls_pair();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let tcp = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            // As the server's listener has it: Nagle would hold what follows.
            tcp.set_nodelay(true).unwrap();
            let tls = acceptor
                .accept(Arc::new(tcp), &|_, _| deadline)
                .unwrap_or_else(|e| panic!("handshake: {e:?}"));
            // The handshake's records are out; the session tickets wait.
            let before = segments_sent(tls.tcp());
            let mut socket = Socket::tls(tls);
            socket.write_last(b"goodbye").unwrap();
            socket.end_output();
            segments_sent(socket.tcp()) - before
        });
        let client = connector.connect(tcp, "localhost", deadline).unwrap();
        assert_eq!(read_to_close_notify(&client), b"goodbye");
        assert_eq!(server.join().unwrap(), 1, "the answer, close_notify and the FIN in one segment");
    }
}
