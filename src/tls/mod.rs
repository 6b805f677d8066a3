//! TLS with rustls, for the server and for the client: the only module
//! that names TLS types.
//!
//! A TLS session is one state machine for both directions, and rustls offers
//! no way to split it, so the thread that reads a connection and the threads
//! that write it share it behind a mutex. The lock is held only for work in
//! memory (decrypting what was read, sealing what is to be sent), never
//! across a socket read or write.
//!
//! Records must reach the socket in the order they were sealed. On a server
//! connection, every record leaves through the connection's outbox: frames
//! are sealed, and the records waiting in the session moved out, only under
//! the outbox's lock ([`TlsStream::seal`]), and the outbox sends them in that
//! order. Records that reading produces (a TLS 1.3 key update, an alert) wait
//! in the session until then; the connection's thread flushes its outbox
//! after each read of the socket that left some, before it waits on the
//! socket again ([`TlsStream::read_step`], [`TlsStream::wants_write`]). A client's
//! writer thread is the only one that writes its socket, and sends records
//! in the order the session queued them.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use rustls::{ClientConnection, Connection, ProtocolVersion, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use socket2::SockRef;

mod pinned;

use crate::config::TlsConfig;
use crate::error::{Error, Result};
use crate::stream::{Sink, Then, set_deadline};

/// The most bytes read from the socket at once, over TLS.
const RAW_READ: usize = 4096;

/// The first byte of every TLS connection: a handshake record.
const HANDSHAKE_RECORD: u8 = 0x16;

/// Returns true if and only if `pem` holds at least one certificate, and
/// every certificate in it parses.
pub(crate) fn holds_certificates(pem: &[u8]) -> bool {
    let mut any = false;
    for cert in CertificateDer::pem_slice_iter(pem) {
        if cert.is_err() {
            return false;
        }
        any = true;
    }
    any
}

/// Turns accepted sockets into TLS streams with one certificate, which a
/// reload may replace: handshakes under way finish with the one they began
/// with.
#[derive(Debug)]
pub(crate) struct TlsAcceptor {
    /// One value, so that the certificate served and the digest a reload
    /// compares are always of the same files.
    current: RwLock<Current>,
}

/// The certificate served, and what it was made from.
#[derive(Debug)]
struct Current {
    config: Arc<rustls::ServerConfig>,
    /// See [`Made::from`].
    made_from: Made,
}

/// The SHA-256 of a certificate chain's PEM and its key's, to tell a reload
/// of the same files from a new certificate without keeping the key twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Made([u8; 32]);

impl Made {
    fn from(tls: &TlsConfig) -> Made {
        use sha2::Digest;
        let digest = sha2::Sha256::new()
            .chain_update(tls.certificate_chain_pem.len().to_be_bytes())
            .chain_update(&tls.certificate_chain_pem)
            .chain_update(tls.private_key_pem.expose())
            .finalize();
        Made(digest.into())
    }
}

/// Why a socket did not become a TLS stream.
#[derive(Debug)]
pub(crate) enum Rejected {
    /// The client spoke something else first (plain HTTP, most likely); the
    /// socket is handed back so that the client can be told.
    NotTls(Arc<TcpStream>),
    /// The client hung up before it said anything: a load balancer's or an
    /// orchestrator's TCP check, most often. No handshake failed.
    Gone,
    /// The handshake failed or did not finish in time.
    Failed(io::Error),
}

impl TlsAcceptor {
    pub(crate) fn new(tls: &TlsConfig) -> Result<Self> {
        let problem = |problem: &'static str| {
            move |e: rustls_pki_types::pem::Error| Error::Tls { problem, source: Some(Box::new(e)) }
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&tls.certificate_chain_pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(problem("cannot read the certificate chain PEM"))?;
        if chain.is_empty() {
            return Err(Error::Tls { problem: "no certificate in the certificate chain PEM", source: None });
        }
        // rustls reads only the first, to match it with the key; one after
        // it that is not X.509 (a PEM block with lines lost from its middle)
        // would go out in every handshake, and every client refuse it.
        for certificate in &chain {
            rustls::server::ParsedCertificate::try_from(certificate).map_err(|e| Error::Tls {
                problem: "a certificate in the chain is not a valid X.509 certificate",
                source: Some(Box::new(e)),
            })?;
        }
        let key = PrivateKeyDer::from_pem_slice(tls.private_key_pem.expose())
            .map_err(problem("cannot read the private key PEM"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
            .map_err(|e| Error::Tls {
                problem: "the certificate and key do not work",
                source: Some(Box::new(e)),
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Resumption through tickets the client keeps, sealed with a key of
        // this acceptor's (rotated every six hours), rather than sessions
        // the server keeps: rustls's default stores two per handshake in a
        // cache of 256, whose turnover kept the heap of a server under a
        // steady wss:// load growing for minutes (168 KiB in eight). A
        // reload of another certificate starts a new key, so clients of the
        // old one make a full handshake again; one of the same files keeps
        // this acceptor (see `serves`).
        config.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| Error::Tls { problem: "cannot make a ticket key", source: Some(Box::new(e)) })?;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        let current = Current { config: Arc::new(config), made_from: Made::from(tls) };
        Ok(TlsAcceptor { current: RwLock::new(current) })
    }

    /// Whether the certificate served is the one `tls` holds, key and all:
    /// a reload that finds the same files keeps the acceptor, and with it
    /// the key its clients' tickets are sealed with.
    pub(crate) fn serves(&self, tls: &TlsConfig) -> bool {
        self.current.read().unwrap_or_else(PoisonError::into_inner).made_from == Made::from(tls)
    }

    /// From now on, hands out the certificate of `other` (made with
    /// [`new`](Self::new), so already checked).
    pub(crate) fn replace(&self, other: TlsAcceptor) {
        let current = other.current.into_inner().unwrap_or_else(PoisonError::into_inner);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = current;
    }

    fn config(&self) -> Arc<rustls::ServerConfig> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).config.clone()
    }

    /// Runs the server side of the handshake. Each read of the socket gives
    /// up at `due(since, bytes read since)`, counted from the start or from
    /// the server's last flight (the client's next one comes a round trip
    /// and its own computing later), so that the caller's deadline and rate
    /// rule hold for the handshake's bytes as for a request head's. The
    /// socket is shared so that another thread can shut its reading side
    /// meanwhile, which fails the handshake.
    pub(crate) fn accept(
        &self,
        tcp: Arc<TcpStream>,
        due: &dyn Fn(Instant, usize) -> Instant,
    ) -> std::result::Result<Arc<TlsStream>, Rejected> {
        let mut first = [0u8; 1];
        let started = Instant::now();
        loop {
            if let Err(e) = set_deadline(&tcp, due(started, 0)) {
                return Err(Rejected::Failed(e));
            }
            match tcp.peek(&mut first) {
                Ok(0) => return Err(Rejected::Gone),
                Ok(_) if first[0] == HANDSHAKE_RECORD => break,
                Ok(_) => return Err(Rejected::NotTls(tcp)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Rejected::Failed(e)),
            }
        }
        let session =
            ServerConnection::new(self.config()).map_err(|e| Rejected::Failed(io::Error::other(e)))?;
        handshake(tcp, Connection::Server(session), due).map_err(Rejected::Failed)
    }
}

/// Opens client TLS connections, trusting the system's certificate store
/// and any certificate the caller adds (a server's self-signed one, say).
#[derive(Debug, Clone)]
pub(crate) struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
}

/// The certificates `pem` holds, to trust besides the system's.
///
/// # Errors
///
/// [`Error::Tls`] when one does not parse, or there is none: a file that
/// holds none (a key, an empty file) would trust nothing more, and every
/// handshake fail as of an unknown issuer.
pub(crate) fn extra_roots(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let mut roots = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert =
            cert.map_err(|e| Error::Tls { problem: "cannot read the CA PEM", source: Some(Box::new(e)) })?;
        rustls::server::ParsedCertificate::try_from(&cert)
            .map_err(|e| Error::Tls { problem: "unusable CA certificate", source: Some(Box::new(e)) })?;
        roots.push(cert);
    }
    if roots.is_empty() {
        return Err(Error::Tls { problem: "no certificate in the CA PEM", source: None });
    }
    Ok(roots)
}

impl TlsConnector {
    /// `pinned`: more certificates to trust, as [`extra_roots`] reads them.
    pub(crate) fn new(pinned: Vec<CertificateDer<'static>>) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        // Certificates the system store holds but rustls cannot parse are
        // skipped, as a browser would skip them.
        let (_, _) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        for cert in &pinned {
            roots
                .add(cert.clone())
                .map_err(|e| Error::Tls { problem: "unusable CA certificate", source: Some(Box::new(e)) })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| Error::Tls { problem: "no certificate to trust", source: Some(Box::new(e)) })?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls { problem: "no usable TLS version", source: Some(Box::new(e)) })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(pinned::PinnedOrWebPki::new(webpki, pinned)))
            .with_no_client_auth();
        Ok(TlsConnector { config: Arc::new(config) })
    }

    /// Runs the client side of the handshake with the server named `host`,
    /// all of it before `deadline`.
    pub(crate) fn connect(
        &self,
        tcp: TcpStream,
        host: &str,
        deadline: Instant,
    ) -> io::Result<Arc<TlsStream>> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let session = ClientConnection::new(self.config.clone(), name).map_err(io::Error::other)?;
        handshake(Arc::new(tcp), Connection::Client(session), &|_, _| deadline)
    }
}

/// The socket as a handshake reads it: every read gives up at `due(since,
/// bytes read since)`, `since` being the start or the last write. rustls
/// reads for as long as each read brings bytes, so a timeout set once would
/// let a peer that sends a byte now and then stretch one handshake for as
/// long as it likes.
struct Before<'a> {
    tcp: &'a TcpStream,
    due: &'a dyn Fn(Instant, usize) -> Instant,
    since: Instant,
    received: usize,
}

impl Read for Before<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        set_deadline(self.tcp, (self.due)(self.since, self.received))?;
        let n = (&*self.tcp).read(buf)?;
        self.received += n;
        Ok(n)
    }
}

impl Write for Before<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// rustls hands over a flight as a record per buffer: one write sends
    /// them in one segment, where a write each would send one each.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // What the peer sends next answers this: its time starts now.
        self.since = Instant::now();
        self.received = 0;
        (&*self.tcp).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self.tcp).flush()
    }
}

/// Completes a handshake, server or client, each read before `due` says.
/// The stream is returned on the heap: a TLS session is kilobytes, and
/// passing it by value would make every caller's stack frame that large,
/// plain connections' included.
fn handshake(
    tcp: Arc<TcpStream>,
    mut session: Connection,
    due: &dyn Fn(Instant, usize) -> Instant,
) -> io::Result<Arc<TlsStream>> {
    // The outbox bounds what a connection may queue, and moves sealed
    // records out of the session as it seals them; rustls need not.
    session.set_buffer_limit(None);
    let mut before = Before { tcp: &tcp, due, since: Instant::now(), received: 0 };
    while session.is_handshaking() {
        write_waiting(&mut session, &mut before)?;
        match session.read_tls(&mut before) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if let Err(e) = session.process_new_packets() {
            // The alert that says why, if the peer is still listening.
            let _ = session.write_tls(&mut before);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
    // A TLS 1.3 server ends its handshake with session tickets, which the
    // client does not wait for: they go out with the answer to its request,
    // in one segment, rather than in one of their own just before it.
    // Anything else that is left (a TLS 1.2 server's last flight, a
    // client's Finished) the peer does wait for.
    let tickets_only = matches!(session, Connection::Server(_))
        && session.protocol_version() == Some(ProtocolVersion::TLSv1_3);
    if tickets_only {
        // Nothing leaves now to acknowledge the client's Finished, and
        // accepted sockets delay their ACKs: a client whose Nagle holds its
        // request until then would wait out the delayed ACK (40 ms). The
        // ACK goes at once.
        let _ = SockRef::from(&*tcp).set_tcp_quickack(true);
    } else {
        write_waiting(&mut session, &mut before)?;
    }
    let session = Session { connection: session, unread: Vec::new(), deadline: None };
    Ok(Arc::new(TlsStream { tcp, session: Mutex::new(session) }))
}

/// A TLS connection, shared by the thread that reads it and those that write it.
#[derive(Debug)]
pub(crate) struct TlsStream {
    tcp: Arc<TcpStream>,
    session: Mutex<Session>,
}

/// The TLS state machine, and bytes read from the socket that it has not
/// taken yet: rustls holds at most a record's worth of plaintext, so raw
/// bytes are fed to it only as fast as the plaintext is read out.
#[derive(Debug)]
struct Session {
    connection: Connection,
    unread: Vec<u8>,
    /// When set, every read from the socket gives up at this instant: while
    /// the request head is read, a record trickled a byte at a time must not
    /// outlast the head's deadline.
    deadline: Option<Instant>,
}

impl TlsStream {
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Makes every read from the socket give up at `deadline`, or, with
    /// `None`, wait as long as the socket's own read timeout.
    pub(crate) fn set_deadline(&self, deadline: Option<Instant>) {
        self.session().deadline = deadline;
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        // A thread that panicked while holding the lock left the session in
        // some state; the connection is about to end either way.
        self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads plaintext, reading and decrypting records as needed. Never
    /// writes: records this produces are left for [`send_pending`](Self::send_pending).
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(n) = self.read_step(buf)? {
                return Ok(n);
            }
        }
    }

    /// One step of [`read`](Self::read): the plaintext that the bytes
    /// already read hold, if any; otherwise one read of the socket, and the
    /// plaintext that brought, if any. `None` when there is none yet: the
    /// caller may then send the records that reading produced (a key
    /// update's answer) before it waits on the socket again.
    pub(crate) fn read_step(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // The socket is read without the lock, into the session's own
        // buffer (empty whenever the session wants more), lent out for
        // the read: no buffer on the reader's stack, no allocation.
        let (mut raw, deadline) = {
            let mut session = self.session();
            if let Some(result) = session.read_plaintext(buf) {
                return result.map(Some);
            }
            (std::mem::take(&mut session.unread), session.deadline)
        };
        if let Some(deadline) = deadline {
            set_deadline(&self.tcp, deadline)?;
        }
        raw.resize(RAW_READ, 0);
        let read = (&*self.tcp).read(&mut raw);
        raw.truncate(*read.as_ref().unwrap_or(&0));
        let mut session = self.session();
        session.unread = raw;
        if read? == 0 {
            // A zero-byte read_tls tells rustls the socket has ended: the
            // plaintext read says whether it ended cleanly.
            session.connection.read_tls(&mut &[][..])?;
        }
        session.read_plaintext(buf).transpose()
    }

    /// Seals `bufs` and sends them, with any records already waiting, in
    /// one write to the socket.
    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let sealed = {
            let mut session = self.session();
            for buf in bufs {
                session.connection.writer().write_all(buf)?;
            }
            take_sealed(&mut session)?
        };
        (&*self.tcp).write_all(&sealed)?;
        Ok(bufs.iter().map(|buf| buf.len()).sum())
    }

    /// Sends the records that are waiting, if any.
    pub(crate) fn send_pending(&self) -> io::Result<()> {
        let sealed = take_sealed(&mut self.session())?;
        (&*self.tcp).write_all(&sealed)
    }

    /// Queues close_notify and sends it: the TLS way of saying "no more".
    pub(crate) fn close_notify(&self) {
        self.session().connection.send_close_notify();
        let _ = self.send_pending();
    }

    /// Seals `plaintext` and appends to `sealed` every record waiting in the
    /// session, in order: those that reading produced first, then these.
    /// With `close_notify`, the alert that ends the stream follows them.
    pub(crate) fn seal(
        &self,
        plaintext: &[IoSlice<'_>],
        close_notify: bool,
        sealed: &mut Vec<u8>,
    ) -> io::Result<()> {
        let mut session = self.session();
        for buf in plaintext {
            session.connection.writer().write_all(buf)?;
        }
        if close_notify {
            session.connection.send_close_notify();
        }
        write_waiting(&mut session.connection, sealed)
    }

    /// Returns true if and only if records are waiting to be sent, such as
    /// a key update that reading produced.
    pub(crate) fn wants_write(&self) -> bool {
        self.session().connection.wants_write()
    }
}

impl Sink for TlsStream {
    fn send(&self, bufs: &[IoSlice<'_>], then: Then) -> io::Result<usize> {
        Sink::send(&*self.tcp, bufs, then)
    }

    fn shutdown(&self, how: Shutdown) {
        Sink::shutdown(&*self.tcp, how);
    }

    fn discard_unsent(&self) {
        Sink::discard_unsent(&*self.tcp);
    }

    fn fd(&self) -> RawFd {
        Sink::fd(&*self.tcp)
    }

    fn tls(&self) -> Option<&TlsStream> {
        Some(self)
    }
}

impl Session {
    /// Reads plaintext into `buf`, decrypting bytes already read from the
    /// socket as needed; `None` when they do not hold a whole record yet.
    fn read_plaintext(&mut self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        loop {
            match self.connection.reader().read(buf) {
                // Ok(0) is the peer's close_notify: a clean end.
                Ok(n) => return Some(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Some(Err(e)),
            }
            if self.unread.is_empty() {
                return None;
            }
            let mut unread = &self.unread[..];
            if let Err(e) = self.connection.read_tls(&mut unread) {
                return Some(Err(e));
            }
            let taken = self.unread.len() - unread.len();
            self.unread.drain(..taken);
            if let Err(e) = self.connection.process_new_packets() {
                return Some(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
            // rustls keeps the answer to a peer's key update until the next
            // record it seals; writing nothing moves it to the records
            // waiting, so that it goes out now even if nothing else does.
            let _ = self.connection.writer().write(&[]);
        }
    }
}

/// Moves the sealed records out of the session, in order.
fn take_sealed(session: &mut Session) -> io::Result<Vec<u8>> {
    let mut sealed = Vec::new();
    write_waiting(&mut session.connection, &mut sealed)?;
    Ok(sealed)
}

/// Writes every record waiting in `connection` to `out`, in order.
fn write_waiting(connection: &mut Connection, out: &mut dyn Write) -> io::Result<()> {
    while connection.wants_write() {
        connection.write_tls(out)?;
    }
    Ok(())
}
