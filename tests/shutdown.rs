//! Verifies that shutdown tells every client 1001, delivers what it had
//! accepted, exits 0 within its bound, and leaves no connection behind.

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, unbounded};

use crate::support::raw::sleeper;
use crate::support::{
    Client, PATIENCE, Process, RawClient, Scheme, TestServer, close_code, config, connect, ms, recv_close,
    recv_text, send_text,
};
use switchboard::rooms::Endpoint;
use switchboard::{
    Accept, CloseCode, Config, Connection, Ending, Handler, Limits, Message, Refusal, Request, RoomsHandler,
    Timeouts,
};

fn library_shutdown_sends_1001_to_every_client(scheme: Scheme) {
    let server = TestServer::start_scheme(scheme, config());
    let readers: Vec<_> = ["/ws/a", "/ws/b", "/echo"]
        .into_iter()
        .map(|path| {
            let mut client = server.connect(path);
            // The client is known to the hub once its first message is back.
            send_text(&mut client, "here");
            assert_eq!(recv_text(&mut client), "here");
            thread::spawn(move || recv_close(&mut client).expect("a close frame"))
        })
        .collect();
    server.stop();
    for reader in readers {
        let close = reader.join().unwrap();
        assert_eq!(close.code, CloseCode::Away);
        assert_eq!(close.reason.as_str(), "server shutting down");
    }
}

#[test]
fn messages_queued_before_shutdown_arrive_before_the_1001() {
    let server = TestServer::start(config());
    let mut client = server.connect("/ws/last-words");
    send_text(&mut client, "joined");
    assert_eq!(recv_text(&mut client), "joined");
    for i in 0..100 {
        server.hub().send_to_room("last-words", format!("queued {i}")).unwrap();
    }
    let reader = thread::spawn(move || {
        let texts: Vec<String> = (0..100).map(|_| recv_text(&mut client)).collect();
        (texts, recv_close(&mut client))
    });
    server.stop();
    let (texts, close) = reader.join().unwrap();
    assert_eq!(texts, (0..100).map(|i| format!("queued {i}")).collect::<Vec<_>>());
    assert_eq!(close.unwrap().code, CloseCode::Away);
}

#[test]
fn shutdown_does_not_wait_for_a_silent_handshake() {
    // A peer that connects and never sends a request would hold its thread
    // for the whole handshake timeout; shutdown leaves it behind on time.
    let server = TestServer::start(Config {
        timeouts: Timeouts {
            shutdown: Duration::from_millis(300),
            close: Duration::from_millis(100),
            ..Timeouts::default()
        },
        ..config()
    });
    let _silent = TcpStream::connect(server.addr()).unwrap();
    // Accepts are in order: once this is answered, the silent peer has its thread.
    assert_eq!(server.get("/healthz").status, 200);
    let took = server.stop();
    assert!(took < Timeouts::default().handshake, "shutdown waited {took:?} for a silent peer");
}

/// The binary's handler, which also reports every connection that ends.
struct Reporting {
    endings: Mutex<Sender<Ending>>,
}

impl Handler for Reporting {
    type State = Endpoint;

    fn on_upgrade(&self, request: &Request) -> Result<Accept<Endpoint>, Refusal> {
        RoomsHandler.on_upgrade(request)
    }

    fn on_message(&self, connection: &Connection, endpoint: &mut Endpoint, message: Message) {
        RoomsHandler.on_message(connection, endpoint, message);
    }

    fn on_close(&self, _: &Connection, _: &mut Endpoint, ending: &Ending) {
        let _ = self.endings.lock().unwrap().send(ending.clone());
    }
}

/// Reads `stream` until the server ends it (EOF or reset), by `deadline`,
/// and at most `most` bytes before that.
fn read_to_the_end(stream: &mut TcpStream, deadline: Instant, most: usize) {
    let mut read = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the socket was still open at the deadline, after {read} bytes");
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                panic!("the socket was still open at the deadline, after {read} bytes")
            }
            Err(e) => panic!("expected the end of the stream after {read} bytes, got {e}"),
        }
        assert!(read <= most, "more bytes than were ever sent");
    }
}

/// Publishes `count` messages of `len` bytes from `feeder`, a member of the
/// room, reading each back before the next.
fn feed(feeder: &mut Client, count: usize, len: usize) {
    let text = "x".repeat(len);
    for _ in 0..count {
        send_text(feeder, &text);
        assert_eq!(recv_text(feeder).len(), len);
    }
}

#[test]
fn no_connection_outlives_a_shutdown_that_times_out() {
    const LEN: usize = 1024;
    let shutdown = ms(500);
    let (endings, ended) = unbounded();
    let server = TestServer::start_with(
        Config {
            limits: Limits { max_messages_per_sec: 0, ..Limits::default() },
            timeouts: Timeouts { shutdown, close: ms(200), ..Timeouts::default() },
            ..config()
        },
        Reporting { endings: Mutex::new(endings) },
    );
    // A member that stopped reading while its room was fed: its socket is
    // full, then its outbox holds more, and its 1001 cannot leave.
    let mut stalled = sleeper(server.addr(), "/ws/fed");
    let mut feeder = server.connect("/ws/fed");
    let mut sent = 0;
    while server.stats()["writes_stalled"] == 0 {
        assert!(sent < 4000, "4 MiB never filled a 4 KiB receive buffer");
        feed(&mut feeder, 50, LEN);
        sent += 50;
    }
    feed(&mut feeder, 200, LEN);
    sent += 200;
    // A client that never reads, so never answers its 1001.
    let mut silent = RawClient::upgrade(server.addr(), "/ws/quiet", b"");
    // The feeder answers its 1001 and goes.
    let feeding = thread::spawn(move || recv_close(&mut feeder));
    let took = server.stop();
    let deadline = Instant::now() + Duration::from_secs(2);
    assert!(
        took >= shutdown,
        "every connection ended within the shutdown timeout ({took:?}): none outlived it"
    );
    assert_eq!(feeding.join().unwrap().expect("a close frame").code, CloseCode::Away);
    // Both sockets end: what the buffers held, then EOF or a reset.
    read_to_the_end(&mut stalled.stream, deadline, sent * (LEN + 4) + 1024);
    read_to_the_end(&mut silent.stream, deadline, 1024);
    // Every connection's thread has ended: the handler heard of each.
    for seen in 0..3 {
        let ending = ended.recv_deadline(deadline).unwrap_or_else(|_| {
            panic!("{seen} of 3 connections ended within 2 s of a shutdown that took {took:?}")
        });
        assert!(matches!(ending, Ending::ByServer(ref c) if c.code == CloseCode::Away), "{ending:?}");
    }
}

fn interrupt_delivers_1001_and_exits_0(signal: &str) {
    let mut process = Process::start(&[]);
    let mut clients: Vec<_> =
        ["/ws/one", "/ws/two", "/echo"].iter().map(|path| connect(process.addr, path).unwrap()).collect();
    for client in &mut clients {
        send_text(client, "ready");
        assert_eq!(recv_text(client), "ready");
    }
    process.signal(signal);
    for client in &mut clients {
        assert_eq!(close_code(client), 1001);
    }
    let status = process.wait_exit(PATIENCE).expect("the server exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn ctrl_c_sends_1001_to_everyone_and_exits_0() {
    interrupt_delivers_1001_and_exits_0("INT");
}

#[test]
fn sigterm_shuts_down_gracefully_too() {
    interrupt_delivers_1001_and_exits_0("TERM");
}

crate::both_schemes!(library_shutdown_sends_1001_to_every_client,);
