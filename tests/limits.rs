//! Verifies that limits and protocol errors close with the right code, that
//! idle and slow clients are closed without hurting anyone else, and that a
//! busy handler is not taken for an idle client.

use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::support::raw::{BINARY, CONTINUATION, PING, TEXT};
use crate::support::{
    Client, PATIENCE, RawClient, Scheme, TestServer, close_code, config, ms, recv_close, recv_text,
    send_text, wait_until,
};
use switchboard::tungstenite::Error as WsError;
use switchboard::{
    Accept, Config, Connection, Handler, Limits, Message, Refusal, Request, Timeouts, WebSocketConfig,
};

fn small_messages() -> Config {
    Config {
        websocket: WebSocketConfig::default()
            .read_buffer_size(4096)
            .max_message_size(Some(1000))
            .max_frame_size(Some(1000)),
        ..config()
    }
}

fn oversized_message_is_closed_with_1009(scheme: Scheme) {
    let server = TestServer::start_scheme(scheme, small_messages());
    let mut client = server.connect("/echo");
    client.send(Message::binary(vec![0u8; 1001])).unwrap();
    assert_eq!(close_code(&mut client), 1009);
    assert!(wait_until(PATIENCE, || server.stats()["close_frames_sent"]["1009"] == 1));
}

#[test]
fn oversized_fragmented_message_is_closed_with_1009() {
    let server = TestServer::start(small_messages());
    let mut client = RawClient::upgrade(server.addr(), "/echo", b"");
    client.send(false, BINARY, &[1u8; 600]);
    client.send(true, CONTINUATION, &[2u8; 600]);
    assert_eq!(client.close_code(), 1009);
}

#[test]
fn message_at_the_limit_is_accepted() {
    let server = TestServer::start(small_messages());
    let mut client = server.connect("/echo");
    send_text(&mut client, &"y".repeat(1000));
    assert_eq!(recv_text(&mut client).len(), 1000);
}

#[test]
fn invalid_utf8_is_closed_with_1007() {
    let server = TestServer::start(config());
    let mut client = RawClient::upgrade(server.addr(), "/echo", b"");
    client.send(true, TEXT, &[0xce, 0xba, 0xff, 0xfe]);
    assert_eq!(client.close_code(), 1007);
}

#[test]
fn unmasked_frame_is_closed_with_1002() {
    let server = TestServer::start(config());
    let mut client = RawClient::upgrade(server.addr(), "/echo", b"");
    client.send_unmasked(TEXT, b"no mask");
    assert_eq!(client.close_code(), 1002);
}

#[test]
fn fragmented_ping_is_closed_with_1002() {
    let server = TestServer::start(config());
    let mut client = RawClient::upgrade(server.addr(), "/echo", b"");
    client.send(false, PING, b"half");
    assert_eq!(client.close_code(), 1002);
}

#[test]
fn ping_is_answered_with_pong() {
    let server = TestServer::start(config());
    let mut client = RawClient::upgrade(server.addr(), "/echo", b"");
    client.send(true, PING, b"are you there");
    let (opcode, payload) = client.read_frame().unwrap();
    assert_eq!(opcode, 0xa);
    assert_eq!(payload, b"are you there");
}

#[test]
fn client_close_is_echoed_and_the_server_hangs_up() {
    let server = TestServer::start(config());
    let mut client = RawClient::upgrade(server.addr(), "/echo", b"");
    client.send(true, 0x8, &[0x03, 0xe8, b'b', b'y', b'e']);
    let (opcode, payload) = client.read_frame().unwrap();
    assert_eq!(opcode, 0x8);
    assert_eq!(payload, [0x03, 0xe8, b'b', b'y', b'e']);
    let mut rest = Vec::new();
    client.stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing after the close reply");
    assert!(wait_until(PATIENCE, || server.stats()["connections_open"] == 0));
}

#[test]
fn idle_peer_is_closed_with_1001_after_the_timeout() {
    let server = TestServer::start(Config {
        timeouts: Timeouts { idle: ms(300), ping_interval: ms(100), ..Timeouts::default() },
        ..config()
    });
    // A raw client never answers the server's pings.
    let mut client = RawClient::upgrade(server.addr(), "/ws/idle", b"");
    let mut pings = 0;
    let code = loop {
        let (opcode, payload) = client.read_frame().unwrap();
        match opcode {
            0x9 => pings += 1,
            0x8 => break u16::from_be_bytes([payload[0], payload[1]]),
            other => panic!("unexpected opcode {other}"),
        }
    };
    assert_eq!(code, 1001);
    assert!(pings >= 1, "the server pinged before giving up");
}

#[test]
fn a_connection_past_its_lifetime_is_closed_with_1001() {
    let lifetime = ms(400);
    let server = TestServer::start(Config {
        timeouts: Timeouts { max_lifetime: Some(lifetime), ping_interval: ms(100), ..Timeouts::default() },
        ..config()
    });
    let opened = Instant::now();
    let mut client = server.connect("/echo");
    // Talking does not keep it open.
    for _ in 0..5 {
        send_text(&mut client, "still here");
        assert_eq!(recv_text(&mut client), "still here");
    }
    let close = recv_close(&mut client).expect("a close frame");
    assert_eq!((u16::from(close.code), close.reason.as_str()), (1001, "connection lifetime reached"));
    // Up to a tenth sooner, never later than a heartbeat tick after.
    let lived = opened.elapsed();
    assert!(lived >= lifetime.mul_f64(0.9), "closed after {lived:?}");
    // A tick is 25 ms here; the rest is room for a loaded machine.
    assert!(lived < lifetime + Duration::from_secs(2), "closed after {lived:?}");
}

#[test]
fn client_answering_pings_stays_open_past_the_idle_timeout() {
    let server = TestServer::start(Config {
        timeouts: Timeouts { idle: ms(300), ping_interval: ms(50), ..Timeouts::default() },
        ..config()
    });
    let mut client = server.connect("/echo");
    client.get_ref().tcp().set_read_timeout(Some(ms(100))).unwrap();
    // tungstenite answers each ping from inside read(); keep reading for
    // three idle timeouts.
    let until = std::time::Instant::now() + ms(900);
    while std::time::Instant::now() < until {
        match client.read() {
            Ok(_) => {}
            Err(switchboard::tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("connection ended: {e}"),
        }
    }
    client.get_ref().tcp().set_read_timeout(Some(PATIENCE)).unwrap();
    send_text(&mut client, "still here");
    assert_eq!(recv_text(&mut client), "still here");
}

/// Echoes every message; on `hold`, says it has started, then waits until
/// the test lets it go.
struct Holder {
    started: Sender<()>,
    release: Receiver<()>,
}

impl Handler for Holder {
    type State = ();

    fn on_upgrade(&self, _: &Request) -> Result<Accept<()>, Refusal> {
        Ok(Accept::new(()))
    }

    fn on_message(&self, connection: &Connection, _: &mut (), message: Message) {
        if message.to_text().ok() == Some("hold") {
            let _ = self.started.send(());
            let _ = self.release.recv_timeout(PATIENCE);
        }
        let _ = connection.send(message);
    }
}

#[test]
fn connection_whose_handler_is_busy_past_the_idle_timeout_is_not_closed_as_idle() {
    let idle = ms(300);
    let (started, has_started) = unbounded();
    let (release, released) = unbounded();
    let server = TestServer::start_with(
        Config { timeouts: Timeouts { idle, ping_interval: ms(100), ..Timeouts::default() }, ..config() },
        Holder { started, release: released },
    );
    let mut client = server.connect("/busy");
    send_text(&mut client, "hold");
    has_started.recv_timeout(PATIENCE).expect("the handler took the message");
    // The handler holds the connection's thread for three idle timeouts:
    // nothing the client sends meanwhile is read, its pongs included.
    client.get_ref().tcp().set_read_timeout(Some(ms(50))).unwrap();
    let until = Instant::now() + 3 * idle;
    while Instant::now() < until {
        match client.read() {
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(other) => panic!("while the handler was busy: {other:?}"),
            Err(WsError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("connection ended while the handler was busy: {e}"),
        }
    }
    release.send(()).unwrap();
    client.get_ref().tcp().set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(recv_text(&mut client), "hold");
    send_text(&mut client, "still open");
    assert_eq!(recv_text(&mut client), "still open");
}

/// Has `fast` publish 60 KiB messages to its room, reading each back
/// before the next so that its own outbox never holds more than one frame,
/// until a member that does not read has had its socket buffers, then its
/// outbox, filled, and the hub has closed it.
fn flood_until_a_slow_consumer_is_closed(server: &TestServer, fast: &mut Client) {
    let payload = "z".repeat(60 * 1024);
    let mut sent = 0;
    while server.stats()["slow_consumer_closes"] == 0 {
        assert!(sent < 2000, "the slow member was never closed");
        send_text(fast, &payload);
        assert_eq!(recv_text(fast).len(), payload.len());
        sent += 1;
    }
}

fn slow_consumer_is_closed_with_1008_without_delaying_its_room(scheme: Scheme) {
    let server = TestServer::start_scheme(
        scheme,
        Config {
            limits: Limits { outbox_bytes: 256 * 1024, ..Limits::default() },
            timeouts: Timeouts { write: ms(30_000), ..Timeouts::default() },
            websocket: WebSocketConfig::default().max_message_size(Some(64 * 1024)),
            ..config()
        },
    );
    // The slow member never reads until it has been evicted.
    let mut slow = server.connect("/ws/busy");
    let mut fast = server.connect("/ws/busy");
    flood_until_a_slow_consumer_is_closed(&server, &mut fast);
    // The room goes on for the fast member.
    for i in 0..20 {
        send_text(&mut fast, &i.to_string());
        assert_eq!(recv_text(&mut fast), i.to_string());
    }
    // The slow member finally reads: what fit in its buffers, then 1008.
    let reader = thread::spawn(move || close_code(&mut slow));
    assert_eq!(reader.join().unwrap(), 1008);
    assert!(wait_until(PATIENCE, || server.stats()["close_frames_sent"]["1008"] == 1));
}

#[test]
fn a_client_closed_as_a_slow_consumer_is_no_longer_relayed_to_its_room() {
    let server = TestServer::start(Config {
        limits: Limits { outbox_bytes: 256 * 1024, ..Limits::default() },
        // Long enough that the connection ends by the unmasked frame below,
        // never by a hang-up before the server has read what comes first.
        timeouts: Timeouts { write: ms(2000), close: ms(1000), ..Timeouts::default() },
        websocket: WebSocketConfig::default().max_message_size(Some(64 * 1024)),
        ..config()
    });
    let mut slow = crate::support::raw::sleeper(server.addr(), "/ws/busy");
    let mut fast = server.connect("/ws/busy");
    flood_until_a_slow_consumer_is_closed(&server, &mut fast);
    // Closed, it still speaks, then breaks the protocol: its thread has
    // read the message by the time the connection ends.
    slow.send(true, TEXT, b"after my close");
    slow.send_unmasked(TEXT, b"and then unmasked");
    assert!(wait_until(PATIENCE, || server.stats()["connections_open"] == 1), "{}", server.stats());
    send_text(&mut fast, "next");
    assert_eq!(recv_text(&mut fast), "next");
}

crate::both_schemes!(
    oversized_message_is_closed_with_1009,
    slow_consumer_is_closed_with_1008_without_delaying_its_room,
);
