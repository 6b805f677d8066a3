//! Shared helpers: an in-process test server on port 0, WebSocket and raw
//! clients, the `switchboard` binary as a child process, and deadlines.

#![allow(dead_code)]

pub mod jwt;
mod process;
mod program;
pub mod raw;
pub mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use switchboard::tungstenite::{self, WebSocket};
use switchboard::{
    CloseFrame, Config, Handler, HubHandle, Message, ReloadHandle, RoomsHandler, Server, ShutdownHandle,
};

pub use self::process::{Process, run, signal};
pub use self::program::Program;
pub use self::raw::RawClient;

/// What a test client talks over: TCP, or TLS over TCP.
pub trait Stream: Read + Write + Send + std::fmt::Debug {
    /// The TCP socket underneath, for timeouts.
    fn tcp(&self) -> &TcpStream;
}

impl Stream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Stream for tls::TlsClientStream {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

/// A WebSocket client as the tests use it, over ws:// or wss://.
pub type Client = WebSocket<Box<dyn Stream>>;

/// ws:// or wss://: the tests that must hold for both run once for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Ws,
    Wss,
}

/// Runs each named test function, which takes a [`Scheme`], once over ws://
/// and once over wss://.
#[macro_export]
macro_rules! both_schemes {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn ws() {
                    super::$name($crate::support::Scheme::Ws)
                }

                #[test]
                fn wss() {
                    super::$name($crate::support::Scheme::Wss)
                }
            }
        )*
    };
}

/// How long any single wait in a test may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The next connection to `listener`, within [`PATIENCE`], its reads and
/// writes giving up after that too: a client that never comes fails the
/// test rather than hanging it.
pub fn accept_within(listener: &std::net::TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let mut accepted = None;
    let came = wait_until(PATIENCE, || {
        accepted = listener.accept().ok();
        accepted.is_some()
    });
    assert!(came, "no connection within {PATIENCE:?}");
    let (stream, _) = accepted.unwrap();
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(ms(5));
    }
}

/// A configuration listening on a free loopback port.
pub fn config() -> Config {
    Config { listen: "127.0.0.1:0".parse().unwrap(), ..Config::default() }
}

/// A server running in this process on its own thread. Dropping it shuts it
/// down and waits for `run` to return.
pub struct TestServer {
    addr: SocketAddr,
    /// The client side of TLS, when the server speaks it, and the server's
    /// certificate.
    tls: Option<Arc<ClientConfig>>,
    certificate_pem: Vec<u8>,
    hub: HubHandle,
    reload: ReloadHandle,
    shutdown: ShutdownHandle,
    thread: Option<JoinHandle<switchboard::Result<()>>>,
}

impl TestServer {
    /// The `switchboard` binary's handler with `config`.
    pub fn start(config: Config) -> Self {
        TestServer::start_with(config, RoomsHandler)
    }

    /// The `switchboard` binary's handler over ws:// or wss://.
    pub fn start_scheme(scheme: Scheme, config: Config) -> Self {
        match scheme {
            Scheme::Ws => TestServer::start(config),
            Scheme::Wss => TestServer::start_tls(config),
        }
    }

    /// The `switchboard` binary's handler over TLS, with a certificate made
    /// for the occasion.
    pub fn start_tls(config: Config) -> Self {
        let (server_tls, client_tls) = tls::certificate();
        let certificate_pem = server_tls.certificate_chain_pem.clone();
        let mut server = TestServer::start_with(Config { tls: Some(server_tls), ..config }, RoomsHandler);
        server.tls = Some(client_tls);
        server.certificate_pem = certificate_pem;
        server
    }

    pub fn start_with<H: Handler>(config: Config, handler: H) -> Self {
        let _ = env_logger::builder().is_test(true).try_init();
        let server = Server::bind(config, handler).expect("bind test server");
        let addr = server.local_addr();
        let hub = server.hub();
        let shutdown = server.shutdown_handle();
        let reload = server.reload_handle();
        let thread = thread::Builder::new().name("test-server".into()).spawn(move || server.run()).unwrap();
        TestServer {
            addr,
            tls: None,
            certificate_pem: Vec::new(),
            hub,
            reload,
            shutdown,
            thread: Some(thread),
        }
    }

    pub fn reload_handle(&self) -> &ReloadHandle {
        &self.reload
    }

    /// The certificate of a TLS server, in PEM.
    pub fn certificate_pem(&self) -> &[u8] {
        &self.certificate_pem
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn hub(&self) -> &HubHandle {
        &self.hub
    }

    pub fn url(&self, path: &str) -> String {
        match self.tls {
            Some(_) => format!("wss://localhost:{}{path}", self.addr.port()),
            None => format!("ws://{}{path}", self.addr),
        }
    }

    /// A connected stream, through TLS when the server speaks it.
    pub fn stream(&self) -> std::io::Result<Box<dyn Stream>> {
        let tcp = TcpStream::connect(self.addr)?;
        tcp.set_read_timeout(Some(PATIENCE))?;
        tcp.set_write_timeout(Some(PATIENCE))?;
        Ok(match &self.tls {
            Some(config) => Box::new(tls::handshake(config, tcp)?),
            None => Box::new(tcp),
        })
    }

    /// A TLS connection to a TLS server, its handshake done.
    pub fn tls_stream(&self) -> tls::TlsClientStream {
        let config = self.tls.as_ref().expect("a server started with start_tls");
        let tcp = TcpStream::connect(self.addr).unwrap();
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        tcp.set_write_timeout(Some(PATIENCE)).unwrap();
        tls::handshake(config, tcp).expect("a TLS handshake")
    }

    /// A WebSocket client on `path`, with a read timeout so that a missing
    /// message fails the test instead of hanging it.
    pub fn connect(&self, path: &str) -> Client {
        self.try_connect(path).unwrap_or_else(|e| panic!("connect to {path}: {e}"))
    }

    pub fn try_connect(&self, path: &str) -> Result<Client, tungstenite::Error> {
        handshake(self.stream()?, &self.url(path))
    }

    /// Sends `request` as written and returns the whole answer.
    pub fn http(&self, request: &str) -> Reply {
        let mut stream = self.stream().expect("connect");
        stream.write_all(request.as_bytes()).unwrap();
        stream.flush().unwrap();
        parse_reply(&String::from_utf8_lossy(&read_all(&mut *stream)))
    }

    pub fn get(&self, path: &str) -> Reply {
        self.http(&format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
    }

    /// As [`get`](Self::get), but `None` for a connection turned away with
    /// no HTTP answer to read (over TLS, an alert in place of a handshake).
    pub fn try_get(&self, path: &str) -> Option<Reply> {
        let mut stream = self.stream().ok()?;
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes()).ok()?;
        Some(parse_reply(&String::from_utf8_lossy(&read_all(&mut *stream))))
    }

    /// `/stats` as JSON.
    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/stats").body).expect("/stats is JSON")
    }

    /// Shuts down and returns how long `run` took to return.
    pub fn stop(mut self) -> Duration {
        self.stop_now()
    }

    fn stop_now(&mut self) -> Duration {
        let started = Instant::now();
        self.shutdown.shutdown();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread").expect("server run");
        }
        started.elapsed()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_now();
        }
    }
}

/// A ws:// client on `path` at `addr`.
pub fn connect(addr: SocketAddr, path: &str) -> Result<Client, tungstenite::Error> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    stream.set_write_timeout(Some(PATIENCE))?;
    handshake(Box::new(stream), &format!("ws://{addr}{path}"))
}

fn handshake(stream: Box<dyn Stream>, url: &str) -> Result<Client, tungstenite::Error> {
    tungstenite::client(url, stream).map(|(ws, _)| ws).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => panic!("blocking handshake interrupted"),
    })
}

/// Reads until the server closes. Over TLS, the server must say so with
/// close_notify before its FIN: a bare FIN is an error here.
fn read_all(stream: &mut dyn Stream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the answer: {e}"),
        }
    }
}

/// An HTTP answer, split into status, head and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

pub fn http(addr: SocketAddr, request: &str) -> Reply {
    let mut stream = raw::tcp(addr);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("the server closes after its answer");
    parse_reply(&String::from_utf8_lossy(&answer))
}

pub fn parse_reply(answer: &str) -> Reply {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Reply { status, head: head.to_owned(), body: body.to_owned() }
}

/// The next text or binary message, skipping pings and pongs.
pub fn recv(client: &mut Client) -> Message {
    loop {
        match client.read().expect("a message") {
            Message::Ping(_) | Message::Pong(_) => continue,
            message => return message,
        }
    }
}

pub fn recv_text(client: &mut Client) -> String {
    match recv(client) {
        Message::Text(text) => text.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Reads until the server's close frame and returns it, skipping messages;
/// then finishes the close handshake as a polite client does (tungstenite
/// sends its reply on the next read, which then sees the server hang up).
pub fn recv_close(client: &mut Client) -> Option<CloseFrame> {
    loop {
        match client.read() {
            Ok(Message::Close(close)) => {
                while client.read().is_ok() {}
                return close;
            }
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    }
}

/// The close code the server ends `client` with.
pub fn close_code(client: &mut Client) -> u16 {
    recv_close(client).map(|close| u16::from(close.code)).expect("a close frame with a code")
}

pub fn send_text(client: &mut Client, text: &str) {
    client.send(Message::text(text)).expect("send");
}
