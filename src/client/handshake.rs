//! Opening a client connection: TCP, TLS for wss://, and our own upgrade
//! request, checked as RFC 6455 §4.1 asks.
//!
//! As the server answers its own 101, the client writes its own request and
//! reads the answer itself, so that the bytes the server may send right
//! after its 101 are kept and handed to tungstenite with the socket.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;
use tungstenite::http::Uri;

use socket2::{Domain, Protocol, Type};

use super::{ClientError, Endpoint};
use crate::stream::Socket;
use crate::tls::TlsConnector;

/// The largest response head the client reads.
const MAX_HEAD: usize = 16 * 1024;
/// The most of a refusal's body that is kept to show.
const MAX_BODY: usize = 1024;

/// Where a `ws://` or `wss://` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) secure: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The request target: path and query.
    pub(crate) resource: String,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target, ClientError> {
        let bad = |problem: &'static str| ClientError::Url { url: url.to_owned(), problem };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            Some(_) => return Err(bad("the scheme must be ws:// or wss://")),
            None => return Err(bad("no scheme: write ws://host:port/path")),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let resource = uri.path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned());
        Ok(Target { secure, host, port, resource })
    }

    /// The `Host` header: the port only when it is not the default.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match (self.secure, self.port) {
            (false, 80) | (true, 443) => host,
            (_, port) => format!("{host}:{port}"),
        }
    }
}

/// A connection that has passed its upgrade.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) socket: Socket,
    /// Bytes the server sent after its 101, already read.
    pub(crate) rest: Vec<u8>,
    pub(crate) subprotocol: Option<String>,
}

/// The socket of a line's connection being made, for a closing client to
/// hang up on: connecting, TLS and the upgrade would otherwise hold it for
/// up to the connect timeout. A second descriptor, for that while only.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dialing(Arc<Mutex<Dial>>);

#[derive(Debug, Default)]
struct Dial {
    socket: Option<TcpStream>,
    hung_up: bool,
}

impl Dialing {
    fn lock(&self) -> std::sync::MutexGuard<'_, Dial> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps hold of `socket`, to hang up on, before it connects; refuses
    /// once the client is closing. (A socket shut down before it connects
    /// fails its connect at once, so hanging up cannot come too early.)
    fn hold(&self, socket: &socket2::Socket) -> io::Result<()> {
        let mut dial = self.lock();
        if dial.hung_up {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the client is closing"));
        }
        dial.socket = Some(socket.try_clone()?.into());
        Ok(())
    }

    /// Lets go of the socket: the attempt is over.
    pub(crate) fn release(&self) {
        self.lock().socket = None;
    }

    /// Hangs up on the connection being made, and on any tried from now on.
    pub(crate) fn hang_up(&self) {
        let mut dial = self.lock();
        dial.hung_up = true;
        if let Some(socket) = &dial.socket {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// Connects to `target` and upgrades, all within `timeout`, unless hung up
/// on through `dialing`.
pub(crate) fn open(
    target: &Target,
    endpoint: &Endpoint,
    tls: Option<&TlsConnector>,
    timeout: Duration,
    dialing: &Dialing,
) -> Result<Opened, ClientError> {
    let deadline = Instant::now() + timeout;
    let tcp = connect(target, deadline, dialing)?;
    let _ = tcp.set_nodelay(true);
    let mut socket = match tls {
        Some(tls) => Socket::tls(tls.connect(tcp, &target.host, deadline).map_err(ClientError::Tls)?),
        None => Socket::plain(tcp),
    };
    let key = generate_key();
    socket.write_all(request(target, endpoint, &key).as_bytes()).map_err(ClientError::Io)?;
    let (head, mut rest) = read_head(&mut socket, deadline)?;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(ClientError::Handshake { problem: "the answer is not HTTP".into() }),
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value))
    };
    let status = response.code.unwrap_or(0);
    if status != 101 {
        let length = header("content-length").and_then(|l| l.trim().parse::<usize>().ok());
        let body = read_body(&mut socket, rest, length, deadline);
        return Err(ClientError::Refused { status, body });
    }
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|value| value.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(ClientError::Handshake {
            problem: "a 101 without Upgrade: websocket and Connection: Upgrade".into(),
        });
    }
    // The client offers no extension: a server that says it speaks one
    // would send frames this side cannot read.
    if let Some(extensions) = header("sec-websocket-extensions") {
        return Err(ClientError::Handshake {
            problem: format!("the server chose extensions {extensions:?}, not offered"),
        });
    }
    if header("sec-websocket-accept").as_deref().map(str::trim)
        != Some(derive_accept_key(key.as_bytes()).as_str())
    {
        return Err(ClientError::Handshake { problem: "wrong or missing Sec-WebSocket-Accept".into() });
    }
    let subprotocol = header("sec-websocket-protocol").map(|p| p.trim().to_owned());
    if let Some(chosen) = &subprotocol
        && !endpoint.subprotocols.iter().any(|offered| offered == chosen)
    {
        return Err(ClientError::Handshake {
            problem: format!("the server chose subprotocol {chosen:?}, not offered"),
        });
    }
    rest.shrink_to_fit();
    Ok(Opened { socket, rest, subprotocol })
}

/// The first address of `target` that answers, all tries before `deadline`.
fn connect(target: &Target, deadline: Instant, dialing: &Dialing) -> Result<TcpStream, ClientError> {
    let where_to = format!("{}:{}", target.host, target.port);
    let addresses = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|source| ClientError::Connect { address: where_to.clone(), source })?;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address");
    for address in addresses {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            last = std::io::ErrorKind::TimedOut.into();
            break;
        }
        // std's connect makes its socket inside: made here, it can be
        // held for a hang-up while the SYNs go unanswered.
        let attempt = socket2::Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP))
            .and_then(|socket| {
                dialing.hold(&socket)?;
                socket.connect_timeout(&address.into(), left)?;
                Ok(socket)
            });
        match attempt {
            Ok(socket) => return Ok(socket.into()),
            Err(e) => last = e,
        }
    }
    Err(ClientError::Connect { address: where_to, source: last })
}

/// The upgrade request, with the endpoint's subprotocols and headers.
fn request(target: &Target, endpoint: &Endpoint, key: &str) -> String {
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
        target.resource,
        target.host_header()
    );
    if !endpoint.subprotocols.is_empty() {
        request.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", endpoint.subprotocols.join(", ")));
    }
    for (name, value) in &endpoint.headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// Reads up to the end of the response head; returns the head and what
/// came after it.
fn read_head(socket: &mut Socket, deadline: Instant) -> Result<(Vec<u8>, Vec<u8>), ClientError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(ClientError::Handshake { problem: "the answer's head is too large".into() });
        }
        if Instant::now() >= deadline {
            return Err(ClientError::Timeout);
        }
        socket.set_deadline(deadline).map_err(ClientError::Io)?;
        match socket.read(&mut chunk) {
            Ok(0) => {
                return Err(ClientError::Handshake { problem: "the server closed before answering".into() });
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if crate::close::is_timeout(&e) => return Err(ClientError::Timeout),
            Err(e) => return Err(ClientError::Io(e)),
        }
    }
}

/// The body of a refusal, as far as it can be read before the deadline: it
/// says why, and is worth showing.
fn read_body(socket: &mut Socket, mut body: Vec<u8>, length: Option<usize>, deadline: Instant) -> String {
    let want = length.unwrap_or(MAX_BODY).min(MAX_BODY);
    let mut chunk = [0u8; 512];
    while body.len() < want {
        if socket.set_deadline(deadline).is_err() {
            break;
        }
        match socket.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(want);
    String::from_utf8_lossy(&body).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_with_their_defaults() {
        let t = Target::parse("ws://127.0.0.1:9001/ws/lobby?access_token=x").unwrap();
        assert_eq!(
            t,
            Target {
                secure: false,
                host: "127.0.0.1".into(),
                port: 9001,
                resource: "/ws/lobby?access_token=x".into()
            }
        );
        assert_eq!(t.host_header(), "127.0.0.1:9001");
        let t = Target::parse("wss://example.com").unwrap();
        assert_eq!(
            (t.secure, t.port, t.resource.as_str(), t.host_header().as_str()),
            (true, 443, "/", "example.com")
        );
        let t = Target::parse("ws://[::1]:9001/echo").unwrap();
        assert_eq!((t.host.as_str(), t.host_header().as_str()), ("::1", "[::1]:9001"));
    }

    #[test]
    fn malformed_urls_say_why() {
        for (url, problem) in [
            ("http://example.com/", "the scheme must be ws:// or wss://"),
            ("example.com:9001", "no scheme: write ws://host:port/path"),
            ("ws://", "not a URL"),
            ("not a url at all", "not a URL"),
        ] {
            match Target::parse(url) {
                Err(ClientError::Url { problem: p, .. }) => assert_eq!(p, problem, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    /// What `open` makes of a server that answers the upgrade with `head`,
    /// its `{accept}` replaced by the right Sec-WebSocket-Accept.
    fn answered_with(head: &'static str) -> Result<Opened, ClientError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                request.push(byte[0]);
            }
            let request = String::from_utf8(request).unwrap();
            let key = request.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
            let answer = head.replace("{accept}", &derive_accept_key(key.as_bytes()));
            stream.write_all(answer.as_bytes()).unwrap();
            stream
        });
        let endpoint = Endpoint::new("x", url.as_str());
        let opened = open(
            &Target::parse(&url).unwrap(),
            &endpoint,
            None,
            Duration::from_secs(10),
            &Dialing::default(),
        );
        drop(server.join().unwrap());
        opened
    }

    #[test]
    fn a_101_is_checked_as_rfc_6455_asks() {
        let good = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
                    Sec-WebSocket-Accept: {accept}\r\n\r\n";
        assert!(answered_with(good).is_ok());
        for (head, problem) in [
            (
                "HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
                "Upgrade: websocket",
            ),
            (
                "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
                "Connection: Upgrade",
            ),
            (
                "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                "extensions",
            ),
            (
                "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x{accept}\r\n\r\n",
                "Sec-WebSocket-Accept",
            ),
            (
                "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\
                 Sec-WebSocket-Protocol: chat\r\n\r\n",
                "subprotocol",
            ),
        ] {
            match answered_with(head) {
                Err(ClientError::Handshake { problem: p }) => assert!(p.contains(problem), "{head:?}: {p}"),
                other => panic!("{head:?}: expected a handshake error, got {:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn request_offers_subprotocols_and_headers() {
        let target = Target::parse("ws://h:1/p").unwrap();
        let endpoint = Endpoint::new("x", "ws://h:1/p")
            .subprotocol("a")
            .subprotocol("b")
            .header("Authorization", "Bearer t");
        let text = request(&target, &endpoint, "k");
        assert!(text.starts_with("GET /p HTTP/1.1\r\nHost: h:1\r\n"), "{text}");
        assert!(text.contains("Sec-WebSocket-Protocol: a, b\r\n"));
        assert!(text.ends_with("Authorization: Bearer t\r\n\r\n"));
    }
}
