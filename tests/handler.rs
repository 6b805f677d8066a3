//! Verifies that, through the library API, a custom handler decides
//! upgrades, keeps state per connection, hears how each connection ended,
//! and ends one with a close frame of its own that the client cannot outlast.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::support::raw::{CLOSE, PING, TEXT};
use crate::support::{PATIENCE, RawClient, TestServer, close_code, config, ms, recv_text, send_text};
use switchboard::{
    Accept, CloseCode, CloseFrame, Config, Connection, Ending, Frame, Handler, HubHandle, Limits, Message,
    Refusal, Request, Response, Timeouts,
};

/// Lets in `/count?name=...` with a name, counts each client's messages in
/// its own state, and reports every ending.
struct Counter {
    endings: Mutex<Sender<(String, Ending)>>,
}

struct Tally {
    name: String,
    messages: usize,
}

impl Handler for Counter {
    type State = Tally;

    fn on_upgrade(&self, request: &Request) -> Result<Accept<Tally>, Refusal> {
        if request.path() != "/count" {
            return Err(Refusal::not_found());
        }
        let name = request.query().and_then(|q| q.strip_prefix("name=")).filter(|n| !n.is_empty());
        match name {
            Some(name) => Ok(Accept::new(Tally { name: name.to_owned(), messages: 0 }).join("counted")),
            None => Err(Refusal::forbidden("a name is required")),
        }
    }

    fn on_request(&self, request: &Request, _: &HubHandle) -> Option<Response> {
        (request.path() == "/hello").then(|| Response::text(200, "hello\n"))
    }

    fn on_open(&self, connection: &Connection, tally: &mut Tally) {
        let _ = connection.send(format!("welcome {}", tally.name));
    }

    fn on_message(&self, connection: &Connection, tally: &mut Tally, message: Message) {
        tally.messages += 1;
        if message.to_text().ok() == Some("kick me") {
            let close = CloseFrame { code: CloseCode::Policy, reason: "asked for it".into() };
            let _ = connection.hub().close(connection.id(), close);
            return;
        }
        let _ = connection.send(format!("{} has sent {}", tally.name, tally.messages));
    }

    fn on_close(&self, _: &Connection, tally: &mut Tally, ending: &Ending) {
        let _ = self.endings.lock().unwrap().send((tally.name.clone(), ending.clone()));
    }
}

fn counter() -> (TestServer, Receiver<(String, Ending)>) {
    counter_with(config())
}

fn counter_with(config: Config) -> (TestServer, Receiver<(String, Ending)>) {
    let (endings, ended) = unbounded();
    (TestServer::start_with(config, Counter { endings: Mutex::new(endings) }), ended)
}

#[test]
fn upgrade_refusal_carries_the_handlers_status() {
    let (server, _) = counter();
    let err = server.try_connect("/count").unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    // A plain GET gets the handler's answer to the same question: 426 where
    // it would accept an upgrade, its refusal where it would not.
    assert_eq!(server.get("/count?name=ann").status, 426);
    assert_eq!(server.get("/count").status, 403);
    assert_eq!(server.get("/hello").status, 200);
    assert_eq!(server.get("/other").status, 404);
}

#[test]
fn state_is_per_connection_and_open_comes_first() {
    let (server, _) = counter();
    let mut ann = server.connect("/count?name=ann");
    let mut bob = server.connect("/count?name=bob");
    assert_eq!(recv_text(&mut ann), "welcome ann");
    assert_eq!(recv_text(&mut bob), "welcome bob");
    send_text(&mut ann, "1");
    send_text(&mut ann, "2");
    send_text(&mut bob, "1");
    assert_eq!(recv_text(&mut ann), "ann has sent 1");
    assert_eq!(recv_text(&mut ann), "ann has sent 2");
    assert_eq!(recv_text(&mut bob), "bob has sent 1");
}

#[test]
fn endings_say_who_closed() {
    let (server, ended) = counter();

    let mut by_client = server.connect("/count?name=polite");
    by_client.close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })).unwrap();
    while by_client.read().is_ok() {}
    let (name, ending) = ended.recv_timeout(PATIENCE).unwrap();
    assert_eq!(name, "polite");
    assert!(matches!(ending, Ending::ByClient(Some(ref c)) if c.code == CloseCode::Normal), "{ending:?}");

    let mut kicked = server.connect("/count?name=kicked");
    assert_eq!(recv_text(&mut kicked), "welcome kicked");
    send_text(&mut kicked, "kick me");
    assert_eq!(close_code(&mut kicked), 1008);
    let (name, ending) = ended.recv_timeout(PATIENCE).unwrap();
    assert_eq!(name, "kicked");
    assert!(matches!(ending, Ending::ByServer(ref c) if c.reason.as_str() == "asked for it"), "{ending:?}");

    let vanished = server.connect("/count?name=vanished");
    drop(vanished);
    let (name, ending) = ended.recv_timeout(PATIENCE).unwrap();
    assert_eq!(name, "vanished");
    assert_eq!(ending, Ending::Dropped);
}

#[test]
fn a_close_code_that_may_not_be_sent_is_answered_1002_and_reported_as_the_clients() {
    let (server, ended) = counter();
    for code in [999u16, 1004, 1005, 1006, 1015, 5000] {
        let name = format!("sent-{code}");
        let mut client = RawClient::upgrade(server.addr(), &format!("/count?name={name}"), b"");
        let mut close = code.to_be_bytes().to_vec();
        close.extend_from_slice(b"bye");
        client.send(true, CLOSE, &close);
        // RFC 6455 §7.4.1: the answer to such a close is a protocol error.
        assert_eq!(client.close_code(), 1002, "{code}");
        let (who, ending) = ended.recv_timeout(PATIENCE).unwrap();
        assert_eq!(who, name);
        // Not "closed by client: 1002": the client did not send 1002.
        assert_eq!(ending, Ending::ByClientInvalidCode, "{code}");
        assert_eq!(ending.to_string(), "closed by client with an invalid close code, answered 1002");
    }
}

#[test]
fn a_client_that_does_not_answer_the_applications_close_is_hung_up_on_after_the_close_timeout() {
    let close_timeout = ms(200);
    let (server, ended) = counter_with(Config {
        timeouts: Timeouts { close: close_timeout, ..Timeouts::default() },
        ..config()
    });
    let mut mute = RawClient::upgrade(server.addr(), "/count?name=mute", b"");
    let (opcode, payload) = mute.read_frame().unwrap();
    assert_eq!((opcode, &payload[..]), (TEXT, &b"welcome mute"[..]));
    mute.send(true, TEXT, b"kick me");
    let (opcode, payload) = mute.read_frame().unwrap();
    assert_eq!((opcode, &payload[..2]), (CLOSE, &1008u16.to_be_bytes()[..]));
    assert_eq!(&payload[2..], b"asked for it");
    // The client never answers. Its side of the socket ends: the FIN after
    // the close, then the hang-up.
    let closed = Instant::now();
    let within = close_timeout + ms(800);
    let deadline = closed + within;
    mute.stream.set_read_timeout(Some(within)).unwrap();
    let mut rest = Vec::new();
    match mute.stream.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected the end of the stream after the close, got {e}"),
    }
    assert!(rest.is_empty(), "{} bytes after the close", rest.len());
    // And the server's side: its thread stops waiting for the answer.
    let (name, ending) = ended
        .recv_deadline(deadline)
        .unwrap_or_else(|_| panic!("still open {:?} after the close: {}", closed.elapsed(), server.stats()));
    assert_eq!(name, "mute");
    assert!(matches!(ending, Ending::ByServer(ref c) if c.code == CloseCode::Policy), "{ending:?}");
    assert_eq!(server.stats()["connections_open"], 0);
}

/// Lets `/listen` into the room `news`, and `/publish` into no room: what a
/// publisher sends goes to `news` and back to the publisher. A listener
/// that says `bye` is sent a close frame, as an ordinary message.
struct Closer {
    endings: Mutex<Sender<(String, Ending)>>,
}

fn bye() -> CloseFrame {
    CloseFrame { code: CloseCode::Normal, reason: "bye".into() }
}

impl Handler for Closer {
    type State = String;

    fn on_upgrade(&self, request: &Request) -> Result<Accept<String>, Refusal> {
        let path = request.path().to_owned();
        match request.path() {
            "/listen" => Ok(Accept::new(path).join("news")),
            "/publish" => Ok(Accept::new(path)),
            _ => Err(Refusal::not_found()),
        }
    }

    fn on_message(&self, connection: &Connection, path: &mut String, message: Message) {
        if path == "/publish" {
            let _ = connection.hub().send_to_room("news", message.clone());
            let _ = connection.send(message);
        } else if message.to_text().ok() == Some("bye") {
            let _ = connection.send(Message::Close(Some(bye())));
        }
    }

    fn on_close(&self, _: &Connection, path: &mut String, ending: &Ending) {
        let _ = self.endings.lock().unwrap().send((path.clone(), ending.clone()));
    }
}

/// A publisher that keeps `news` fed, one message at a time, until told to
/// stop; returns how many it sent.
fn keep_publishing(server: &TestServer) -> (Arc<AtomicBool>, JoinHandle<usize>) {
    let mut publisher = server.connect("/publish");
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = thread::spawn(move || {
        let started = Instant::now();
        let mut sent = 0;
        while !stopped.load(Ordering::Relaxed) && sent < 1_000_000 && started.elapsed() < PATIENCE {
            send_text(&mut publisher, &sent.to_string());
            assert_eq!(recv_text(&mut publisher), sent.to_string());
            sent += 1;
        }
        sent
    });
    (stop, thread)
}

/// A listener in a busy room is sent `bye` as a close frame by `close_it`:
/// it gets that one close, nothing after it, and once it answers, the
/// connection ends as closed by the server.
fn a_close_sent_as_a_message_ends_the_conversation(close_it: impl FnOnce(&TestServer, &mut RawClient)) {
    let (endings, ended) = unbounded();
    let server = TestServer::start_with(
        Config { limits: Limits { max_messages_per_sec: 0, ..Limits::default() }, ..config() },
        Closer { endings: Mutex::new(endings) },
    );
    let mut listener = RawClient::upgrade(server.addr(), "/listen", b"");
    let (stop, publisher) = keep_publishing(&server);
    // The room's messages flow.
    for _ in 0..3 {
        let (opcode, _) = listener.read_frame().unwrap();
        assert_eq!(opcode, TEXT);
    }
    close_it(&server, &mut listener);
    let wait = Duration::from_secs(2);
    let deadline = Instant::now() + wait;
    let close = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no close frame within {wait:?}");
        listener.stream.set_read_timeout(Some(left)).unwrap();
        let read = listener.read_frame();
        match read.unwrap_or_else(|e| panic!("no close frame within {wait:?}: {e}; {}", server.stats())) {
            (TEXT | PING, _) => continue,
            (CLOSE, payload) => break payload,
            (other, payload) => panic!("unexpected opcode {other:#x} ({} bytes)", payload.len()),
        }
    };
    let mut expected = 1000u16.to_be_bytes().to_vec();
    expected.extend_from_slice(b"bye");
    assert_eq!(close, expected);
    // The answer, then the end: no room message after the close, and no
    // second close in reply to the answer.
    listener.send(true, CLOSE, &close);
    listener.stream.set_read_timeout(Some(wait)).unwrap();
    let mut rest = Vec::new();
    listener.stream.read_to_end(&mut rest).expect("the end of the stream after the answer");
    assert!(rest.is_empty(), "{} bytes after the close: {:02x?}", rest.len(), &rest[..rest.len().min(32)]);
    let (path, ending) = ended.recv_timeout(wait).expect("the listener's on_close");
    assert_eq!(path, "/listen");
    assert_eq!(ending, Ending::ByServer(bye()));
    stop.store(true, Ordering::Relaxed);
    assert!(publisher.join().unwrap() > 0);
}

#[test]
fn a_close_frame_the_handler_sends_as_a_message_closes_the_connection() {
    a_close_sent_as_a_message_ends_the_conversation(|_, listener| listener.send(true, TEXT, b"bye"));
}

#[test]
fn a_close_frame_sent_to_a_room_through_the_hub_closes_its_members() {
    a_close_sent_as_a_message_ends_the_conversation(|server, _| {
        // A room message right behind the close, most likely in the same
        // hub batch: it must not follow the close, and must not hold it up.
        server.hub().send_to_room("news", Frame::close(Some(bye()))).unwrap();
        server.hub().send_to_room("news", "after the close").unwrap();
    });
}

/// Panics on the message `panic`, and on an upgrade to `/boom`.
struct Fragile;

impl Handler for Fragile {
    type State = ();

    fn on_upgrade(&self, request: &Request) -> Result<Accept<()>, Refusal> {
        assert!(request.path() != "/boom", "a bug in on_upgrade");
        Ok(Accept::new(()))
    }

    fn on_message(&self, connection: &Connection, _: &mut (), message: Message) {
        assert!(message.to_text().ok() != Some("panic"), "a bug in on_message");
        let _ = connection.send(message);
    }
}

#[test]
fn panicking_handler_closes_only_its_connection_with_1011() {
    let server = TestServer::start_with(config(), Fragile);
    let mut victim = server.connect("/x");
    let mut bystander = server.connect("/y");
    send_text(&mut victim, "panic");
    assert_eq!(close_code(&mut victim), 1011);
    send_text(&mut bystander, "fine");
    assert_eq!(recv_text(&mut bystander), "fine");
    assert_eq!(server.get("/boom").status, 500);
    assert!(crate::support::wait_until(PATIENCE, || server.stats()["connections_open"] == 1));
}

/// Chooses the last subprotocol the client offers, and echoes which one.
struct Contrarian;

impl Handler for Contrarian {
    type State = ();

    fn on_upgrade(&self, request: &Request) -> Result<Accept<()>, Refusal> {
        let accept = Accept::new(());
        Ok(match request.path() {
            "/last" => match request.subprotocols().last() {
                Some(last) => accept.subprotocol(last),
                None => accept,
            },
            _ => accept.subprotocol("never-offered"),
        })
    }

    fn on_message(&self, connection: &Connection, _: &mut (), _: Message) {
        let _ = connection.send(connection.subprotocol().unwrap_or("none").to_owned());
    }
}

#[test]
fn handler_chooses_the_subprotocol_and_a_wrong_choice_is_500() {
    use switchboard::tungstenite::client::IntoClientRequest;
    let server = TestServer::start_with(config(), Contrarian);
    let mut request = server.url("/last").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "a, b, c".parse().unwrap());
    let stream = server.stream().unwrap();
    let (mut client, response) = switchboard::tungstenite::client(request, stream).unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "c");
    send_text(&mut client, "which?");
    assert_eq!(recv_text(&mut client), "c");

    let mut request = server.url("/wrong").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "a".parse().unwrap());
    let err = switchboard::tungstenite::client(request, server.stream().unwrap()).unwrap_err();
    assert!(err.to_string().contains("500"), "{err}");
}

/// Answers what a handler should not: a chunked encoding beside the
/// server's length, an informational status, a refusal that is no error.
struct Odd;

impl Handler for Odd {
    type State = ();

    fn on_upgrade(&self, _: &Request) -> Result<Accept<()>, Refusal> {
        Err(Refusal::new(200, "refused, but with 200"))
    }

    fn on_request(&self, request: &Request, _: &HubHandle) -> Option<Response> {
        match request.path() {
            "/chunked" => Some(Response::text(200, "hello").header("Transfer-Encoding", "chunked")),
            "/switching" => Some(Response::text(101, "no")),
            _ => None,
        }
    }

    fn on_message(&self, _: &Connection, _: &mut (), _: Message) {}
}

#[test]
fn what_a_handler_answers_wrong_is_not_sent_as_it_is() {
    let server = TestServer::start_with(config(), Odd);
    let chunked = server.get("/chunked");
    assert_eq!((chunked.status, chunked.body.as_str()), (200, "hello"));
    assert!(!chunked.head.to_ascii_lowercase().contains("transfer-encoding"), "{}", chunked.head);
    assert_eq!(server.get("/switching").status, 500);
    assert_eq!(server.get("/anything").status, 500, "a refusal with 200");
    let upgrade = server.try_connect("/ws").unwrap_err().to_string();
    assert!(upgrade.contains("500"), "{upgrade}");
}
