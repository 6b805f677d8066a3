//! Verifies that each attack is refused with a clear answer, and that two
//! well-behaved clients connected throughout still get their room's messages.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::raw::{
    BINARY, CONTINUATION, PING, TEXT, connect_from, frame, read_head, tcp, upgrade_request,
};
use crate::support::tls::{self, handshake};
use crate::support::{
    Client, PATIENCE, Process, RawClient, Reply, Scheme, TestServer, close_code, config, ms, parse_reply,
    recv_text, send_text,
};
use switchboard::{Access, Config, Limits, Secret, Timeouts, Token, WebSocketConfig};

/// Two members of one room, joined before the attack.
struct Bystanders {
    a: Client,
    b: Client,
}

impl Bystanders {
    fn join(server: &TestServer) -> Self {
        let mut a = server.connect("/ws/bystanders");
        let mut b = server.connect("/ws/bystanders");
        send_text(&mut a, "hello");
        assert_eq!(recv_text(&mut a), "hello");
        assert_eq!(recv_text(&mut b), "hello");
        Bystanders { a, b }
    }

    /// Both still get every message of their room.
    fn still_served(mut self) {
        for (text, from_a) in [("after the attack", true), ("and again", false)] {
            let sender = if from_a { &mut self.a } else { &mut self.b };
            send_text(sender, text);
            assert_eq!(recv_text(&mut self.a), text);
            assert_eq!(recv_text(&mut self.b), text);
        }
    }
}

/// Sends a plain GET and reads the whole answer.
fn get_over(mut stream: TcpStream, path: &str) -> Reply {
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("an answer, not a reset");
    parse_reply(&String::from_utf8_lossy(&answer))
}

/// The status of the answer to `request`, read from its head alone: a 101
/// leaves the connection open.
fn status_of(server: &TestServer, request: &str) -> u16 {
    let mut stream = server.stream().unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream.flush().unwrap();
    parse_reply(&read_head(&mut stream)).status
}

#[test]
fn connection_flood_past_both_limits_gets_429_then_503() {
    let server = TestServer::start(Config {
        limits: Limits { max_connections: 40, max_connections_per_ip: 10, ..Limits::default() },
        ..config()
    });
    let bystanders = Bystanders::join(&server);
    // One address takes its ten places with WebSockets; its eleventh is
    // turned away. No other request may run meanwhile: each would take a
    // place too.
    let mut held: Vec<TcpStream> = (0..10).map(|_| upgraded_from(2, server.addr())).collect();
    let refused = get_over(connect_from(2, server.addr()).unwrap(), "/healthz");
    assert_eq!(refused.status, 429);
    // Other addresses fill what is left of the global limit, then get 503:
    // an established connection never gives way to a newcomer.
    let mut statuses = Vec::new();
    for i in 0..300 {
        let address = 3 + (i / 10) as u8;
        if held.len() < 38 {
            held.push(upgraded_from(address, server.addr()));
        } else {
            statuses.push(get_over(connect_from(address, server.addr()).unwrap(), "/healthz"));
        }
    }
    assert!(!statuses.is_empty());
    for reply in &statuses {
        assert_eq!(reply.status, 503, "{reply:?}");
        assert_eq!(reply.header("retry-after"), Some("1"));
    }
    // At capacity even /stats is refused; it answers once places free up.
    drop(held);
    assert!(crate::support::wait_until(PATIENCE, || server.get("/stats").status == 200));
    let stats = server.stats();
    assert_eq!(stats["connections_refused"]["429"], 1);
    assert!(stats["connections_refused"]["503"].as_u64().unwrap() >= statuses.len() as u64);
    assert_eq!(stats["connections_shed"], 0, "no one shed: every place was an established connection");
    bystanders.still_served();
}

/// A WebSocket upgraded from `127.0.0.<last>`, held open.
fn upgraded_from(last: u8, server: SocketAddr) -> TcpStream {
    let mut stream = connect_from(last, server).unwrap();
    stream.write_all(upgrade_request("/ws/flood", "").as_bytes()).unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    stream
}

/// Sends `bytes` one every 50 ms until the server ends its side of the
/// connection; returns how long the server let that go on, and all it sent.
fn trickle(slow: &mut TcpStream, bytes: &[u8]) -> (Duration, Vec<u8>) {
    slow.set_nonblocking(true).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    'sending: for &byte in bytes {
        let mut buf = [0u8; 256];
        loop {
            match slow.read(&mut buf) {
                Ok(0) => break 'sending,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break 'sending,
            }
        }
        if slow.write_all(&[byte]).is_err() {
            break;
        }
        thread::sleep(ms(50));
    }
    let took = started.elapsed();
    slow.set_nonblocking(false).unwrap();
    slow.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = slow.read_to_end(&mut answer);
    (took, answer)
}

/// A server whose handshake and request head must be done in 500 ms.
fn hurried(tls: bool) -> TestServer {
    let timeouts = Timeouts { handshake: ms(500), ..Timeouts::default() };
    let config = Config { timeouts, ..config() };
    if tls { TestServer::start_tls(config) } else { TestServer::start(config) }
}

#[test]
fn slowloris_head_is_cut_off_on_time() {
    let server = hurried(false);
    let bystanders = Bystanders::join(&server);
    let mut slow = TcpStream::connect(server.addr()).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    // One byte every 50 ms would take 10 s to send this header.
    let (took, answer) = trickle(&mut slow, "X-Slow: ".repeat(25).as_bytes());
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert!(took < Duration::from_secs(5), "the server let a trickling client in for {took:?}");
    bystanders.still_served();
}

/// Ten seconds for the whole handshake, but at least 500 bytes a second
/// after the first: one byte every 50 ms is 20.
fn unhurried_but_steady(scheme: Scheme) -> TestServer {
    let timeouts = Timeouts { handshake: Duration::from_secs(10), ..Timeouts::default() };
    let limits = Limits { handshake_min_rate: 500, ..Limits::default() };
    TestServer::start_scheme(scheme, Config { timeouts, limits, ..config() })
}

#[test]
fn a_head_trickled_below_the_minimum_rate_is_cut_long_before_the_deadline() {
    let server = unhurried_but_steady(Scheme::Ws);
    let bystanders = Bystanders::join(&server);
    let mut slow = TcpStream::connect(server.addr()).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let (took, answer) = trickle(&mut slow, "X-Slow: 1\r\n".repeat(100).as_bytes());
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert!(took < Duration::from_secs(5), "cut after {took:?}: by the deadline, not the rate");
    bystanders.still_served();
}

#[test]
fn a_tls_handshake_trickled_below_the_minimum_rate_is_cut_long_before_the_deadline() {
    // The request head's rule holds for the TLS handshake's bytes too.
    let server = unhurried_but_steady(Scheme::Wss);
    let bystanders = Bystanders::join(&server);
    let took = trickle_a_tls_handshake(&server);
    assert!(took < Duration::from_secs(3), "cut after {took:?}: by the deadline, not the rate");
    bystanders.still_served();
}

/// Sends a handshake record that announces 200 bytes, then its body a byte
/// every 50 ms (10 s, if the server waited for all of it); how long the
/// server let it go on.
fn trickle_a_tls_handshake(server: &TestServer) -> Duration {
    let mut slow = TcpStream::connect(server.addr()).unwrap();
    slow.write_all(&[0x16, 0x03, 0x01, 0x00, 200]).unwrap();
    trickle(&mut slow, &[1; 200]).0
}

#[test]
fn a_silent_socket_is_not_accepted_while_a_real_client_is_served() {
    // One place in all: a silent socket that took it would leave 503.
    let server =
        TestServer::start(Config { limits: Limits { max_connections: 1, ..Limits::default() }, ..config() });
    let silent: Vec<TcpStream> = (2..7).map(|last| connect_from(last, server.addr()).unwrap()).collect();
    assert_eq!(server.get("/healthz").status, 200);
    // The next request may come before the last one's place is given back.
    let mut stats = None;
    assert!(crate::support::wait_until(PATIENCE, || {
        let reply = server.get("/stats");
        stats =
            (reply.status == 200).then(|| serde_json::from_str::<serde_json::Value>(&reply.body).unwrap());
        stats.is_some()
    }));
    let stats = stats.unwrap();
    assert_eq!(stats["handshakes"], 0, "none but those answered: {stats}");
    assert_eq!(stats["connections_shed"], 0, "no one was there to shed");
    assert_eq!(stats["http_responses"].as_object().unwrap().len(), 1, "{stats}");
    drop(silent);
}

#[test]
fn a_burst_of_whole_requests_past_the_limit_is_told_503_and_no_one_408() {
    let server =
        TestServer::start(Config { limits: Limits { max_connections: 5, ..Limits::default() }, ..config() });
    // All sent before any is read: the server finds twenty heads whole.
    let mut burst: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = tcp(server.addr());
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            stream
        })
        .collect();
    let statuses: Vec<u16> = burst.iter_mut().map(|stream| parse_reply(&read_head(stream)).status).collect();
    assert!(statuses.iter().all(|status| matches!(status, 200 | 503)), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
}

/// Every place held by sockets that began their handshake with `first`
/// and stopped, five from each of eight addresses, with no rate rule to cut
/// them first: each newcomer takes the place of the oldest, which `shed`
/// sees give way, and the established connections are never candidates.
fn half_open_sockets_give_way_to_a_newcomer(scheme: Scheme, first: &[u8], shed: fn(&mut TcpStream)) {
    let server = TestServer::start_scheme(
        scheme,
        Config {
            limits: Limits {
                max_connections: 42,
                max_handshakes_per_ip: 5,
                handshake_min_rate: 0,
                ..Limits::default()
            },
            ..config()
        },
    );
    let bystanders = Bystanders::join(&server);
    let half_open = |last: u8| {
        let mut stream = connect_from(last, server.addr()).unwrap();
        stream.write_all(first).unwrap();
        stream
    };
    let mut held: Vec<TcpStream> =
        (2..10).flat_map(|last| (0..5).map(move |_| last)).map(half_open).collect();
    // With every place taken, a newcomer is refused 503 until the oldest
    // has lasted longer than a real client's handshake; then asking for
    // /stats sheds it, as any newcomer would; the other 39 are still in
    // their handshake.
    let mut answered = None;
    assert!(crate::support::wait_until(PATIENCE, || {
        let reply = server.try_get("/stats");
        assert!(reply.as_ref().is_none_or(|reply| matches!(reply.status, 200 | 503)), "{reply:?}");
        answered = reply.filter(|reply| reply.status == 200);
        answered.is_some()
    }));
    let counted: serde_json::Value = serde_json::from_str(&answered.unwrap().body).unwrap();
    assert_eq!(counted["handshakes"], 39, "{counted}");
    assert_eq!(counted["connections_shed"], 1, "{counted}");
    shed(&mut held.remove(0));
    // Its address takes the place again.
    held.push(half_open(2));
    // A newcomer from another address is answered at once, in the place of
    // the next oldest.
    let began = Instant::now();
    let reply = server.get("/healthz");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(began.elapsed() < Duration::from_secs(1), "answered after {:?}", began.elapsed());
    shed(&mut held.remove(0));
    bystanders.still_served();
}

#[test]
fn half_open_sockets_from_eight_addresses_give_way_to_a_newcomer() {
    half_open_sockets_give_way_to_a_newcomer(Scheme::Ws, b"GET /healthz HTTP/1.1\r\nHost: t\r\n", |oldest| {
        assert!(read_head(oldest).starts_with("HTTP/1.1 408 "));
    });
}

/// Reads from a socket the server closed without a word: the end of the
/// stream (or a reset) must come at once, long before the read timeout.
fn closed_at_once(stream: &mut TcpStream) {
    let began = Instant::now();
    let read = stream.read(&mut [0u8; 64]);
    assert!(
        matches!(&read, Ok(0)) || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{read:?}"
    );
    assert!(began.elapsed() < Duration::from_secs(1), "closed after {:?}", began.elapsed());
}

#[test]
fn half_open_tls_handshakes_from_eight_addresses_give_way_to_a_newcomer() {
    // A handshake record that announces 200 bytes and brings none. In its
    // TLS handshake the oldest cannot be told 408: it is closed, at once
    // rather than at the handshake timeout, and its thread with it.
    half_open_sockets_give_way_to_a_newcomer(Scheme::Wss, &[0x16, 0x03, 0x01, 0x00, 200], closed_at_once);
}

#[test]
fn slowloris_tls_handshake_is_cut_off_on_time() {
    let server = hurried(true);
    let bystanders = Bystanders::join(&server);
    let took = trickle_a_tls_handshake(&server);
    assert!(took < Duration::from_secs(5), "the server let a trickling handshake go on for {took:?}");
    bystanders.still_served();
}

#[test]
fn slowloris_head_in_one_tls_record_is_cut_off_on_time() {
    let server = hurried(true);
    let bystanders = Bystanders::join(&server);
    let mut tls = server.tls_stream();
    // The head's first bytes sealed into one record, which then goes out a
    // byte every 50 ms: the server cannot read a byte of it before the end.
    tls.conn
        .writer()
        .write_all(format!("GET / HTTP/1.1\r\n{}", "X-Slow: 1\r\n".repeat(20)).as_bytes())
        .unwrap();
    let mut record = Vec::new();
    while tls.conn.wants_write() {
        tls.conn.write_tls(&mut record).unwrap();
    }
    let (took, _) = trickle(&mut tls.sock, &record);
    assert!(took < Duration::from_secs(5), "the server let a trickled record go on for {took:?}");
    bystanders.still_served();
}

#[test]
fn header_flood_is_431() {
    let server = TestServer::start(config());
    let bystanders = Bystanders::join(&server);
    let headers: String = (0..1000).map(|i| format!("X-Flood-{i}: {i}\r\n")).collect();
    let reply = server.http(&format!("GET / HTTP/1.1\r\nHost: t\r\n{headers}\r\n"));
    assert_eq!(reply.status, 431);
    bystanders.still_served();
}

#[test]
fn oversized_head_is_431() {
    let server = TestServer::start(config());
    let bystanders = Bystanders::join(&server);
    let reply = server.http(&upgrade_request("/ws/x", &format!("Cookie: {}\r\n", "c".repeat(64 * 1024))));
    assert_eq!(reply.status, 431);
    bystanders.still_served();
}

#[test]
fn frame_claiming_a_gigabyte_is_closed_with_1009_before_its_payload() {
    let server = TestServer::start(config());
    let bystanders = Bystanders::join(&server);
    let mut client = RawClient::upgrade(server.addr(), "/ws/bystanders", b"");
    // A header announcing 1 GiB, then nothing: the size is checked first.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    client.stream.write_all(&header).unwrap();
    assert_eq!(client.close_code(), 1009);
    bystanders.still_served();
}

#[test]
fn fragment_flood_is_closed_with_1009_at_the_message_limit() {
    let server = TestServer::start(Config {
        websocket: WebSocketConfig::default().max_message_size(Some(4096)).max_frame_size(Some(4096)),
        ..config()
    });
    let bystanders = Bystanders::join(&server);
    let mut client = RawClient::upgrade(server.addr(), "/ws/bystanders", b"");
    let mut flood = frame(false, TEXT, b"x", true);
    for _ in 0..5000 {
        flood.extend_from_slice(&frame(false, CONTINUATION, b"x", true));
    }
    // The server may stop reading as soon as it has seen enough.
    let _ = client.stream.write_all(&flood);
    assert_eq!(client.close_code(), 1009);
    bystanders.still_served();
}

#[test]
fn ping_flood_is_closed_by_the_rate_limit() {
    let server = TestServer::start(Config {
        limits: Limits { max_messages_per_sec: 100, message_burst: 100, ..Limits::default() },
        ..config()
    });
    let bystanders = Bystanders::join(&server);
    let mut client = RawClient::upgrade(server.addr(), "/ws/bystanders", b"");
    let flood: Vec<u8> = (0..500).flat_map(|_| frame(true, PING, b"ping", true)).collect();
    let _ = client.stream.write_all(&flood);
    assert_eq!(client.close_code(), 1008);
    assert_eq!(server.stats()["rate_limit_closes"], 1);
    bystanders.still_served();
}

#[test]
fn ping_flood_from_a_client_that_never_reads_is_bounded_by_its_outbox() {
    let server = TestServer::start(Config {
        limits: Limits { max_messages_per_sec: 0, outbox_bytes: 64 * 1024, ..Limits::default() },
        websocket: WebSocketConfig::default()
            .max_message_size(Some(32 * 1024))
            .max_frame_size(Some(32 * 1024)),
        ..config()
    });
    let bystanders = Bystanders::join(&server);
    let mut client = RawClient::upgrade(server.addr(), "/ws/bystanders", b"");
    let ping = frame(true, PING, &[b'p'; 125], true);
    let writer = client.stream.try_clone().unwrap();
    // Once the server has hung up, a write may block until the client's own
    // kernel gives up on the connection; the flood stops long before that.
    writer.set_write_timeout(Some(ms(2000))).unwrap();
    // Pings until the server has closed the client as a slow consumer: its
    // pongs pile up because it never reads them.
    let flood = thread::spawn(move || {
        let mut writer = writer;
        for _ in 0..200_000 {
            if writer.write_all(&ping).is_err() {
                break;
            }
        }
    });
    assert!(crate::support::wait_until(PATIENCE, || server.stats()["slow_consumer_closes"] == 1));
    assert_eq!(client.close_code(), 1008);
    flood.join().unwrap();
    bystanders.still_served();
}

#[test]
fn message_rate_flood_is_closed_with_1008() {
    let server = TestServer::start(Config {
        limits: Limits { max_messages_per_sec: 50, message_burst: 20, ..Limits::default() },
        ..config()
    });
    let mut bystanders = Bystanders::join(&server);
    let mut flooder = server.connect("/ws/bystanders");
    let mut closed = None;
    for i in 0..1000 {
        if flooder.send(switchboard::Message::text(format!("flood {i}"))).is_err() {
            break;
        }
        if i == 100 {
            closed = Some(close_code(&mut flooder));
            break;
        }
    }
    assert_eq!(closed, Some(1008));
    assert_eq!(server.stats()["rate_limit_closes"], 1);
    // The bystanders saw the burst and a little more of the flood, then quiet.
    send_text(&mut bystanders.a, "marker");
    for bystander in [&mut bystanders.a, &mut bystanders.b] {
        let mut flood_seen = 0;
        while recv_text(bystander).starts_with("flood") {
            flood_seen += 1;
        }
        assert!(flood_seen <= 25, "{flood_seen} flood messages were relayed");
    }
    bystanders.still_served();
}

#[test]
fn bad_origin_is_403_and_same_origin_is_served() {
    let server = TestServer::start(config());
    let bystanders = Bystanders::join(&server);
    let host = format!("127.0.0.1:{}", server.addr().port());
    let evil = server.http(&upgrade_request("/ws/bystanders", "Origin: http://evil.example\r\n"));
    assert_eq!(evil.status, 403);
    assert!(evil.body.contains("origin"));
    let same = format!(
        "GET /ws/bystanders HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let mut stream = tcp(server.addr());
    stream.write_all(same.as_bytes()).unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    assert_eq!(server.stats()["upgrades_refused"]["forbidden"], 1);
    bystanders.still_served();
}

#[test]
fn listed_origins_only() {
    let server = TestServer::start(Config {
        access: Access { allowed_origins: vec!["https://app.example".into()], ..Access::default() },
        ..config()
    });
    assert_eq!(status_of(&server, &upgrade_request("/ws/x", "Origin: https://app.example\r\n")), 101);
    assert_eq!(status_of(&server, &upgrade_request("/ws/x", "Origin: https://other.example\r\n")), 403);
}

fn jwt(key: &str, expires_in: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = serde_json::json!({ "sub": "alice", "exp": now + expires_in });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

#[test]
fn missing_invalid_and_expired_credentials_are_refused() {
    let server = TestServer::start(Config {
        access: Access {
            tokens: vec![Token::new("letmein")],
            jwt_secret: Some(Secret::new("jwt-key")),
            ..Access::default()
        },
        ..config()
    });
    let bystanders = {
        // The bystanders hold good credentials.
        let mut a = server.connect("/ws/bystanders?access_token=letmein");
        let mut b = server.connect(&format!("/ws/bystanders?access_token={}", jwt("jwt-key", 3600)));
        send_text(&mut a, "hello");
        assert_eq!(recv_text(&mut a), "hello");
        assert_eq!(recv_text(&mut b), "hello");
        Bystanders { a, b }
    };
    let status = |path: &str, headers: &str| status_of(&server, &upgrade_request(path, headers));
    assert_eq!(status("/ws/x", ""), 401);
    assert_eq!(status("/ws/x", "Authorization: Bearer nope\r\n"), 403);
    assert_eq!(status("/ws/x?access_token=nope", ""), 403);
    assert_eq!(status(&format!("/ws/x?access_token={}", jwt("jwt-key", -60)), ""), 403);
    assert_eq!(status(&format!("/ws/x?access_token={}", jwt("forged", 3600)), ""), 403);
    assert_eq!(status("/ws/x", "Authorization: Bearer letmein\r\n"), 101);
    assert_eq!(status("/ws/x", "Cookie: access_token=letmein\r\n"), 101);
    let stats = server.stats();
    assert_eq!(stats["upgrades_refused"]["unauthorized"], 1);
    assert_eq!(stats["upgrades_refused"]["forbidden"], 4);
    bystanders.still_served();
}

#[test]
fn tokens_never_reach_the_log() {
    let dir = std::env::temp_dir().join(format!("switchboard-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, "first-secret-token\ncorrect-horse-battery\n").unwrap();
    let process = Process::start_logging(&["--auth-token-file", tokens.to_str().unwrap()], "trace");
    let attempt = |path: &str, headers: &str| {
        let mut stream = tcp(process.addr);
        stream.write_all(upgrade_request(path, headers).as_bytes()).unwrap();
        let mut status = [0u8; 12];
        stream.read_exact(&mut status).unwrap();
        String::from_utf8_lossy(&status).into_owned()
    };
    assert_eq!(attempt("/ws/a?access_token=correct-horse-battery", ""), "HTTP/1.1 101");
    assert_eq!(attempt("/ws/a?access_token=wrong-guess-xyzzy", ""), "HTTP/1.1 403");
    assert_eq!(attempt("/ws/a", "Authorization: Bearer first-secret-token\r\n"), "HTTP/1.1 101");
    assert_eq!(attempt("/ws/a", "Cookie: access_token=another-wrong-guess\r\n"), "HTTP/1.1 403");
    let log = process.stop();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(log.iter().any(|line| line.contains("refused")), "the refusals are logged");
    for secret in ["correct-horse-battery", "wrong-guess-xyzzy", "first-secret-token", "another-wrong-guess"]
    {
        assert!(!log.iter().any(|line| line.contains(secret)), "{secret} appears in the log");
    }
}

/// Characters that must never reach a log line raw: NEL (a line break to
/// some log readers), CSI (a terminal escape), the line separator, and a
/// right-to-left override.
const FORGERS: [char; 4] = ['\u{85}', '\u{9b}', '\u{2028}', '\u{202e}'];

#[test]
fn client_text_reaches_the_log_escaped() {
    let process = Process::start_logging(&[], "debug");
    // The request target carries the characters as UTF-8, as httparse lets it.
    let path = "/nope/a\u{85}INFO:forged\u{9b}2J\u{2028}b\u{202e}gpj.exe";
    let mut stream = tcp(process.addr);
    stream.write_all(upgrade_request(path, "User-Agent: x\u{85}y\r\n").as_bytes()).unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    // A close reason is the client's text too.
    let mut client = RawClient::upgrade(process.addr, "/echo", b"");
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice("bye\u{85}\u{9b}\u{2028}\u{202e}".as_bytes());
    client.send(true, 0x8, &close);
    assert_eq!(client.close_code(), 1000);
    let log = process.stop();
    for forger in FORGERS {
        let raw: Vec<_> = log.iter().filter(|line| line.contains(forger)).collect();
        assert!(raw.is_empty(), "{forger:?} reached the log raw: {raw:?}");
    }
    assert!(
        log.iter().any(|line| line.contains(r"/nope/a\u{85}INFO:forged\u{9b}2J\u{2028}b\u{202e}gpj.exe")),
        "the refused path is logged, escaped: {log:#?}"
    );
    assert!(
        log.iter().any(|line| line.contains(r"closed by client: 1000 bye\u{85}\u{9b}\u{2028}\u{202e}")),
        "the close reason is logged, escaped: {log:#?}"
    );
}

#[test]
fn a_close_code_that_may_not_be_sent_is_logged_as_invalid_not_as_1002() {
    let process = Process::start(&[]);
    let mut client = RawClient::upgrade(process.addr, "/echo", b"");
    let mut close = 999u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    client.send(true, 0x8, &close);
    assert_eq!(client.close_code(), 1002);
    let log = process.stop();
    let closes: Vec<&String> = log.iter().filter(|line| line.contains("closed by client")).collect();
    // A protocol error of the client's, logged as the server's are.
    assert_eq!(closes.len(), 1, "{log:#?}");
    assert!(closes[0].contains("WARN  switchboard::connection]"), "{log:#?}");
    assert!(closes[0].ends_with("closed by client with an invalid close code, answered 1002"), "{log:#?}");
}

#[test]
fn connections_closed_for_a_fault_are_summed_up_not_logged_one_by_one() {
    let process = Process::start(&[]);
    for _ in 0..50 {
        let mut client = RawClient::upgrade(process.addr, "/echo", b"");
        client.send_unmasked(TEXT, b"unmasked");
        assert_eq!(client.close_code(), 1002);
    }
    let log = process.stop();
    let warnings: Vec<&String> =
        log.iter().filter(|line| line.contains("WARN  switchboard::connection]")).collect();
    // The first in full, the rest summed up at most every ten seconds and
    // once more as the server stops.
    assert!(warnings[0].contains("closed by server: 1002"), "{warnings:#?}");
    assert!((2..=3).contains(&warnings.len()), "{warnings:#?}");
    let counted: u64 = warnings[1..]
        .iter()
        .map(|line| line.split("closed ").nth(1).unwrap().split(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, 49, "{warnings:#?}");
    assert!(
        warnings[1].contains("connections for a fault") && warnings[1].contains("answered 1002"),
        "{warnings:#?}"
    );
}

#[test]
fn refused_upgrades_are_summed_up_not_logged_one_by_one() {
    let process = Process::start(&[]);
    for _ in 0..50 {
        let mut stream = tcp(process.addr);
        stream.write_all(upgrade_request("/nope", "").as_bytes()).unwrap();
        assert!(read_head(&mut stream).starts_with("HTTP/1.1 404 "));
    }
    let log = process.stop();
    let summaries: Vec<&String> = log.iter().filter(|line| line.contains("refused")).collect();
    // The first at once, the rest at most every ten seconds and once more
    // as the server stops: two lines, or three on a slow machine.
    assert!(summaries[0].ends_with("refused 1 upgrade: 1 answered 404"), "{summaries:#?}");
    assert!((2..=3).contains(&summaries.len()), "{summaries:#?}");
    let counted: u64 = summaries
        .iter()
        .map(|line| line.split("refused ").nth(1).unwrap().split(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, 50, "{summaries:#?}");
}

/// A server on a dual-stack listener (`[::]:0`), and its address over IPv4:
/// the clients that connect there from 127.0.0.x arrive as ::ffff:127.0.0.x.
fn dual_stack(config: Config) -> (TestServer, SocketAddr) {
    let server = TestServer::start(Config { listen: "[::]:0".parse().unwrap(), ..config });
    let ipv4 = SocketAddr::from((Ipv4Addr::LOCALHOST, server.addr().port()));
    (server, ipv4)
}

/// Sends an upgrade request from `127.0.0.<last>` with `headers`; returns
/// the answer's status and the connection, open after a 101.
fn upgrade_from(last: u8, server: SocketAddr, headers: &str) -> (u16, TcpStream) {
    let mut stream = connect_from(last, server).unwrap();
    stream.write_all(upgrade_request("/ws/dual", headers).as_bytes()).unwrap();
    (parse_reply(&read_head(&mut stream)).status, stream)
}

#[test]
fn per_address_limit_on_a_dual_stack_listener_counts_each_ipv4_client_apart() {
    let (server, ipv4) =
        dual_stack(Config { limits: Limits { max_connections_per_ip: 2, ..Limits::default() }, ..config() });
    // The bystanders connect over IPv6 loopback.
    let bystanders = Bystanders::join(&server);
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let (status, stream) = upgrade_from(1, ipv4, "");
            assert_eq!(status, 101);
            stream
        })
        .collect();
    // Other IPv4 clients are not counted with 127.0.0.1, as on an IPv4 listener.
    let (second, _second) = upgrade_from(2, ipv4, "");
    let (third, _third) = upgrade_from(3, ipv4, "");
    assert_eq!((second, third), (101, 101));
    assert_eq!(upgrade_from(1, ipv4, "").0, 429);
    drop(held);
    bystanders.still_served();
}

#[test]
fn trusted_ipv4_proxy_on_a_dual_stack_listener_is_believed() {
    let (server, ipv4) = dual_stack(Config {
        limits: Limits { max_connections_per_ip: 2, ..Limits::default() },
        access: Access { trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()], ..Access::default() },
        ..config()
    });
    // Everything comes through the proxy at 127.0.0.1, which arrives as
    // ::ffff:127.0.0.1: each connection is counted against the client it
    // forwards, the port it may add left out.
    let through_proxy = |client: &str| upgrade_from(1, ipv4, &format!("X-Forwarded-For: {client}\r\n"));
    let mut held = Vec::new();
    for client in ["203.0.113.7", "203.0.113.7:5000"] {
        let (status, stream) = through_proxy(client);
        assert_eq!(status, 101, "{client}");
        held.push(stream);
    }
    for client in ["203.0.113.7", "203.0.113.7:6000", "[::ffff:203.0.113.7]:5000", "::ffff:203.0.113.7"] {
        assert_eq!(through_proxy(client).0, 429, "{client} is the client already holding two connections");
    }
    for client in ["203.0.113.8", "[2001:db8::1]:5000", "[2001:db8::2]"] {
        let (status, stream) = through_proxy(client);
        assert_eq!(status, 101, "{client}");
        held.push(stream);
    }
    // The proxy itself is never counted as a client.
    assert_eq!(held.len(), 5);
    // Only the proxy's connections are believed: the same header from
    // 127.0.0.2 counts against 127.0.0.2.
    let (status, _direct) = upgrade_from(2, ipv4, "X-Forwarded-For: 203.0.113.9\r\n");
    assert_eq!(status, 101);
    let (status, _again) = upgrade_from(2, ipv4, "X-Forwarded-For: 203.0.113.10\r\n");
    assert_eq!(status, 101);
    assert_eq!(upgrade_from(2, ipv4, "X-Forwarded-For: 203.0.113.11\r\n").0, 429);
    assert_eq!(server.stats()["connections_refused"]["429"], 5);
}

#[test]
fn plain_text_on_the_tls_port_gets_a_plain_400() {
    let server = TestServer::start_tls(config());
    let bystanders = Bystanders::join(&server);
    let reply = get_over(tcp(server.addr()), "/healthz");
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("TLS"), "{}", reply.body);
    let stats = server.stats();
    assert_eq!(stats["tls_handshakes_failed"], 1);
    assert_eq!(stats["http_responses"]["400"], 1, "{stats}");
    bystanders.still_served();
}

#[test]
fn a_tcp_check_on_the_tls_port_is_no_failed_handshake() {
    let server = TestServer::start_tls(config());
    for _ in 0..3 {
        // Connects and hangs up, as load balancers' TCP checks do.
        drop(tcp(server.addr()));
    }
    let refused = |stats: &serde_json::Value| stats["handshake_duration_seconds"]["refused"]["count"].clone();
    assert!(crate::support::wait_until(PATIENCE, || refused(&server.stats()) == 3));
    assert_eq!(server.stats()["tls_handshakes_failed"], 0);
}

#[test]
fn a_tls_client_refused_at_the_door_is_told_so_in_tls() {
    let limits = Limits { max_connections_per_ip: 1, ..Limits::default() };
    let server = TestServer::start_tls(Config { limits, ..config() });
    let _first = server.tls_stream();
    let Err(refused) = server.stream() else { panic!("a second connection from the address was let in") };
    // Plain text here would read as a garbled record ("corrupt message").
    let alert = refused.to_string();
    assert!(alert.contains("received fatal alert: InternalError"), "{alert}");
}

#[test]
fn tls_client_on_the_plain_port_fails_cleanly() {
    let server = TestServer::start(config());
    let bystanders = Bystanders::join(&server);
    let (_, client) = tls::certificate();
    let tcp = TcpStream::connect(server.addr()).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    assert!(handshake(&client, tcp).is_err(), "a TLS handshake cannot succeed against plain HTTP");
    assert!(crate::support::wait_until(PATIENCE, || server.stats()["http_responses"]["400"] == 1));
    bystanders.still_served();
}

#[test]
fn binary_frames_within_limits_still_flow_after_attacks() {
    // The cheapest attack of all: garbage where a request head should be.
    let server = TestServer::start(config());
    let bystanders = Bystanders::join(&server);
    // From another address: one address's handshakes under way are
    // limited, and fifty at once from the client's own would be over it.
    for _ in 0..50 {
        let mut stream = connect_from(2, server.addr()).unwrap();
        let _ = stream.write_all(&[0xff; 512]);
    }
    let mut client = RawClient::upgrade(server.addr(), "/echo", b"");
    client.send(true, BINARY, b"\x00\x01");
    assert_eq!(client.read_frame().unwrap(), (BINARY, vec![0, 1]));
    bystanders.still_served();
}

#[test]
fn a_connection_refused_for_the_address_a_proxy_forwarded_is_logged_as_the_doors_are() {
    let mut process = Process::start(&["--trust-proxy", "127.0.0.1", "--max-connections-per-ip", "1"]);
    let forwarded = "X-Forwarded-For: 203.0.113.9\r\n";
    let mut first = tcp(process.addr);
    first.write_all(upgrade_request("/echo", forwarded).as_bytes()).unwrap();
    assert!(read_head(&mut first).starts_with("HTTP/1.1 101"));
    let mut second = tcp(process.addr);
    second.write_all(upgrade_request("/echo", forwarded).as_bytes()).unwrap();
    assert!(read_head(&mut second).starts_with("HTTP/1.1 429"));
    let line = process.wait_for_line("from 203.0.113.9 via");
    assert!(line.contains("WARN") && line.contains("429 too many connections"), "{line}");
}
