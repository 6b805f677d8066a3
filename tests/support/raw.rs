//! A hand-rolled WebSocket client, for sending what a correct client never would.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};

use socket2::{Domain, Socket, Type};

use super::PATIENCE;

/// A client that speaks frames byte by byte.
pub struct RawClient {
    pub stream: TcpStream,
}

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CONTINUATION: u8 = 0x0;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;

/// What a client that never reads asks for as its receive buffer: the
/// kernel doubles it, and a few kilobytes fill at once.
const SMALL_RCVBUF: usize = 4096;

/// The segment size such a client offers. Loopback's segments are 64 KiB,
/// and the server's send buffer grows with them to megabytes before a send
/// finds it full; with small segments it stays at tens of kilobytes.
const SMALL_MSS: u32 = 1024;

/// A TCP connection to `addr` whose reads and writes give up after
/// [`PATIENCE`], so that a server that never answers fails the test
/// instead of hanging it.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// The status of an upgrade on /echo presenting `token` in the query, as
/// text (`"101"`, `"403"`...), or `"none"` if the server answered nothing.
pub fn upgrade_status(addr: SocketAddr, token: &str) -> String {
    let mut stream = tcp(addr);
    stream.write_all(upgrade_request(&format!("/echo?access_token={token}"), "").as_bytes()).unwrap();
    read_head(&mut stream).split(' ').nth(1).unwrap_or("none").to_owned()
}

/// A TCP connection to `addr` whose receive buffer is [`SMALL_RCVBUF`] and
/// segments [`SMALL_MSS`], both set before connecting so that the window it
/// offers and the server's send buffer are small too: a few hundred
/// kilobytes sent to it and left unread fill the server's socket.
pub fn small_buffer_tcp(addr: SocketAddr) -> TcpStream {
    small_buffer_tcp_from(None, addr)
}

/// [`small_buffer_tcp`], from the loopback address `127.0.0.<last>` if given.
fn small_buffer_tcp_from(last: Option<u8>, addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    if let Some(last) = last {
        socket.bind(&SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), 0)).into()).unwrap();
    }
    socket.set_recv_buffer_size(SMALL_RCVBUF).unwrap();
    socket.set_tcp_mss(SMALL_MSS).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// A TCP connection to `addr` from the loopback address `127.0.0.<last>`.
pub fn connect_from(last: u8, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), 0)).into())?;
    socket.connect(&addr.into())?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE))?;
    Ok(stream)
}

/// A client on `path` with a small receive buffer, which the test then
/// leaves unread.
pub fn sleeper(addr: SocketAddr, path: &str) -> RawClient {
    upgrade_over(small_buffer_tcp(addr), path)
}

/// [`sleeper`], from the loopback address `127.0.0.<last>`.
pub fn sleeper_from(last: u8, addr: SocketAddr, path: &str) -> RawClient {
    upgrade_over(small_buffer_tcp_from(Some(last), addr), path)
}

/// Upgrades over `stream` on `path`; the first bytes must be the 101's head.
fn upgrade_over(mut stream: TcpStream, path: &str) -> RawClient {
    stream.write_all(upgrade_request(path, "").as_bytes()).unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head:?}");
    RawClient { stream }
}

/// A valid upgrade request for `path` (the RFC's sample key), with
/// `headers` (each ending in CRLF) added.
pub fn upgrade_request(path: &str, headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    )
}

/// Reads an answer's head, byte by byte so that nothing after it is taken:
/// up to the blank line, or all there is if the server closes first.
pub fn read_head(stream: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).expect("an answer in time") == 1 {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

impl RawClient {
    /// Upgrades on `path` and checks for the 101. `extra` is sent right
    /// after the request head, in the same write.
    pub fn upgrade(addr: SocketAddr, path: &str, extra: &[u8]) -> RawClient {
        let mut stream = tcp(addr);
        let mut request = upgrade_request(path, "").into_bytes();
        request.extend_from_slice(extra);
        stream.write_all(&request).unwrap();
        let head = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{head}");
        RawClient { stream }
    }

    pub fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.stream.write_all(&frame(fin, opcode, payload, true)).unwrap();
    }

    pub fn send_unmasked(&mut self, opcode: u8, payload: &[u8]) {
        self.stream.write_all(&frame(true, opcode, payload, false)).unwrap();
    }

    /// The next frame: opcode and payload (server frames are unmasked).
    pub fn read_frame(&mut self) -> io::Result<(u8, Vec<u8>)> {
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head)?;
        let len = match head[1] & 0x7f {
            126 => {
                let mut n = [0u8; 2];
                self.stream.read_exact(&mut n)?;
                u16::from_be_bytes(n) as usize
            }
            127 => {
                let mut n = [0u8; 8];
                self.stream.read_exact(&mut n)?;
                u64::from_be_bytes(n) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload)?;
        Ok((head[0] & 0x0f, payload))
    }

    /// Reads frames until a close frame and returns its code.
    pub fn close_code(&mut self) -> u16 {
        loop {
            let (opcode, payload) = self.read_frame().expect("a close frame");
            if opcode == CLOSE {
                assert!(payload.len() >= 2, "close frame without a code");
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    }
}

/// Encodes a client frame; masked with a fixed key, as tests need no secrecy.
pub fn frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}
