//! Verifies that shutdown tells every client 1001, delivers what it had
//! accepted, and exits 0 within its bound.

use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use crate::support::{
    PATIENCE, Process, Scheme, TestServer, close_code, config, connect, recv_close, recv_text, send_text,
};
use switchboard::{CloseCode, Config, Timeouts};

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
