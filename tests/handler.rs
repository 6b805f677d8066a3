//! Verifies the library API: a custom handler decides upgrades, keeps state
//! per connection, and hears how each connection ended.

use std::sync::Mutex;

use crossbeam_channel::{Sender, unbounded};

use crate::support::{PATIENCE, TestServer, close_code, config, recv_text, send_text};
use switchboard::{
    Accept, CloseCode, CloseFrame, Connection, Ending, Handler, HubHandle, Message, Refusal, Request,
    Response,
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

fn counter() -> (TestServer, crossbeam_channel::Receiver<(String, Ending)>) {
    let (endings, ended) = unbounded();
    (TestServer::start_with(config(), Counter { endings: Mutex::new(endings) }), ended)
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
