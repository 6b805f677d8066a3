//! Verifies that `switchboard client` holds several connections at once,
//! tells them apart, reconnects the one that drops, says clearly why a
//! connection failed, and routes typed lines by name.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{PATIENCE, Program, TestServer, accept_within, config, ms, tls, wait_until};
use switchboard::client::{Client, ClientConfig, ClientError, Endpoint, Event, Reconnect};
use switchboard::tungstenite::Bytes;
use switchboard::{
    Accept, CloseCode, CloseFrame, Config, Connection, Handler, Message, Refusal, Request, RoomsHandler,
    TlsConfig,
};

/// `switchboard client` as a child process.
fn start_cli(args: &[&str]) -> Program {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.arg("client").args(args);
    Program::start(command)
}

/// Everyone joins room `all`; `kick me` gets the sender closed with 4000.
struct Kicker;

impl Handler for Kicker {
    type State = ();

    fn on_upgrade(&self, _: &Request) -> Result<Accept<()>, Refusal> {
        Ok(Accept::new(()).join("all"))
    }

    fn on_message(&self, connection: &Connection, _: &mut (), message: Message) {
        if message.to_text().ok() == Some("kick me") {
            let close = CloseFrame { code: CloseCode::Library(4000), reason: "kicked".into() };
            let _ = connection.hub().close(connection.id(), close);
        } else {
            let _ = connection.hub().send_to_room("all", message);
        }
    }
}

#[test]
fn three_connections_with_different_subprotocols() {
    let server =
        TestServer::start(Config { subprotocols: vec!["a".into(), "b".into(), "c".into()], ..config() });
    let (one, two, three) = (server.url("/ws/r"), server.url("/echo"), server.url("/ws/r"));
    let mut cli = start_cli(&[
        &format!("one={one}"),
        &format!("two={two}"),
        &format!("three={three}"),
        "--protocol",
        "one=a",
        "--protocol",
        "two=b",
        "--protocol",
        "three=c",
    ]);
    let mut connected: Vec<String> =
        (0..3).map(|_| cli.expect("connected", |l| l.contains("] connected"))).collect();
    connected.sort();
    assert_eq!(
        connected,
        [
            "[one] connected (subprotocol a)",
            "[three] connected (subprotocol c)",
            "[two] connected (subprotocol b)"
        ]
    );
    cli.type_line("@one to the room");
    cli.expect_exact("[one] to the room");
    cli.expect_exact("[three] to the room");
    let (status, seen) = cli.finish();
    assert!(status.success(), "{seen:?}");
    assert!(!seen.iter().any(|l| l == "[two] to the room"), "two is on /echo, not in the room");
}

#[test]
fn a_connection_closed_by_the_server_reconnects_while_the_others_keep_receiving() {
    let server = TestServer::start_with(config(), Kicker);
    let url = server.url("/any");
    let mut cli = start_cli(&[&format!("one={url}"), &format!("two={url}"), &format!("three={url}")]);
    for _ in 0..3 {
        cli.expect("connected", |l| l.ends_with("] connected"));
    }
    cli.type_line("@two kick me");
    cli.expect_exact("[two] closed: 4000 kicked");
    cli.expect("two reconnecting", |l| l.starts_with("[two] reconnecting in "));
    // While two is away, the others still hear each other.
    cli.type_line("@one while two is away");
    cli.expect_exact("[three] while two is away");
    cli.expect_exact("[two] connected");
    assert!(wait_until(PATIENCE, || server.stats()["connections_open"] == 3));
    cli.type_line("@two back again");
    for name in ["one", "two", "three"] {
        cli.expect_exact(&format!("[{name}] back again"));
    }
    let (status, _) = cli.finish();
    assert!(status.success());
}

#[test]
fn a_refused_handshake_prints_its_status_and_nothing_connected_exits_non_zero() {
    let server = TestServer::start(Config {
        access: switchboard::Access { tokens: vec![switchboard::Token::new("t0ken")], ..Default::default() },
        ..config()
    });
    let mut cli = start_cli(&[&server.url("/nowhere?access_token=t0ken"), &server.url("/ws/r")]);
    cli.expect_exact("[1] error: upgrade refused: 404 no such endpoint");
    cli.expect_exact("[2] error: upgrade refused: 401 credentials required");
    let (status, _) = cli.finish();
    assert_eq!(status.code(), Some(1));
}

/// Lets everyone in until someone says `revoke me`: that connection is
/// closed with 4001, and every upgrade from then on is refused 403.
#[derive(Default)]
struct Revoker {
    revoked: AtomicBool,
}

impl Handler for Revoker {
    type State = ();

    fn on_upgrade(&self, _: &Request) -> Result<Accept<()>, Refusal> {
        match self.revoked.load(Ordering::SeqCst) {
            true => Err(Refusal::new(403, "access revoked")),
            false => Ok(Accept::new(())),
        }
    }

    fn on_message(&self, connection: &Connection, _: &mut (), message: Message) {
        if message.to_text().ok() == Some("revoke me") {
            self.revoked.store(true, Ordering::SeqCst);
            let close = CloseFrame { code: CloseCode::Library(4001), reason: "revoked".into() };
            let _ = connection.hub().close(connection.id(), close);
        }
    }
}

#[test]
fn a_reconnection_refused_for_good_ends_the_line() {
    let server = TestServer::start_with(config(), Revoker::default());
    let mut cli = start_cli(&[&server.url("/any")]);
    cli.expect_exact("[1] connected");
    cli.type_line("revoke me");
    cli.expect_exact("[1] closed: 4001 revoked");
    cli.expect("reconnecting", |l| l.starts_with("[1] reconnecting in "));
    cli.expect_exact("[1] error: upgrade refused: 403 access revoked");
    cli.expect_exact("[1] ended");
    // The line has ended: the program exits without being told to.
    let (status, seen, _) = cli.wait(PATIENCE);
    assert!(status.success(), "{seen:?}");
    let tries = seen.iter().filter(|l| l.starts_with("[1] reconnecting in ")).count();
    assert_eq!(tries, 1, "{seen:?}");
}

#[test]
fn join_hangs_up_on_a_server_that_stopped_reading() {
    // A server that answers the upgrade, then reads nothing more.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        switchboard::tungstenite::accept(tcp).unwrap()
    });
    let client = Client::start(vec![Endpoint::new("stuck", url)], ClientConfig::default()).unwrap();
    let connected = client.events().recv_timeout(PATIENCE).unwrap();
    assert!(matches!(connected, Event::Connected { .. }), "{connected}");
    let _held = server.join().unwrap();
    // A megabyte at a time, the line's queue fills once the kernel's
    // buffers have: its writer is then blocked on the socket.
    let megabyte = Bytes::from(vec![0u8; 1 << 20]);
    let full = (0..10_000).any(|_| {
        matches!(client.send("stuck", Message::Binary(megabyte.clone())), Err(ClientError::Busy(_)))
    });
    assert!(full, "the queue never filled");
    // The write timeout alone would hold it for 30 s.
    joins_within_patience(client);
}

/// Asserts that `client.join()` returns within [`PATIENCE`].
fn joins_within_patience(client: Client) {
    let (joined, join_returned) = crossbeam_channel::bounded(1);
    thread::spawn(move || {
        client.join();
        let _ = joined.send(());
    });
    assert!(join_returned.recv_timeout(PATIENCE).is_ok(), "join still waiting after {PATIENCE:?}");
}

#[test]
fn the_servers_variables_do_not_concern_the_client() {
    let server = TestServer::start(config());
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.arg("client").arg(server.url("/echo"));
    // Set for a server in the same shell: one bad value, and a file that is not there.
    command
        .env("SWITCHBOARD_PING_INTERVAL", "bogus")
        .env("SWITCHBOARD_CONFIG", "/nonexistent/switchboard.toml");
    let mut cli = Program::start(command);
    cli.expect("connected", |l| l.starts_with("[1] connected"));
    cli.type_line("hello");
    cli.expect_exact("[1] hello");
    let (status, _) = cli.finish();
    assert!(status.success());
}

#[test]
fn connection_refused_and_malformed_urls_are_one_line_each() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut cli = start_cli(&[&format!("ws://{unused}/x"), "http://example.com/"]);
    cli.expect("refused", |l| l.starts_with(&format!("[1] error: cannot connect to {unused}: ")));
    cli.expect_exact("[2] error: bad URL \"http://example.com/\": the scheme must be ws:// or wss://");
    let (status, _) = cli.finish();
    assert_eq!(status.code(), Some(1));
}

/// A loopback listener whose connections take in a few kilobytes at a time:
/// their receive buffers are small, and stay so, where Linux would grow them
/// to megabytes.
fn narrow_listener() -> TcpListener {
    let listener = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener.set_recv_buffer_size(4096).unwrap();
    listener.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
    listener.listen(8).unwrap();
    listener.into()
}

#[test]
fn piped_lines_wait_for_room_rather_than_being_dropped() {
    // A server that takes a message a millisecond through a window of a
    // few kilobytes: the connection's queue fills however fast the
    // machine, and stays full while the lines come.
    let listener = narrow_listener();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = thread::spawn(move || {
        let mut ws = switchboard::tungstenite::accept(accept_within(&listener)).unwrap();
        let mut heard = 0;
        while let Ok(message) = ws.read() {
            if message.is_text() {
                heard += 1;
                // Pacing a deliberately slow peer.
                thread::sleep(ms(1));
            }
        }
        heard
    });
    let mut cli = start_cli(&[&url]);
    cli.expect("connected", |l| l.ends_with("] connected"));
    let lines: String = (0..1000).map(|i| format!("{i:04} {}\n", "x".repeat(8 * 1024))).collect();
    cli.type_bytes(lines.as_bytes());
    let (status, seen) = cli.finish();
    assert!(status.success(), "{seen:?}");
    let dropped: Vec<&String> = seen.iter().filter(|line| line.contains("not sent")).collect();
    assert!(dropped.is_empty(), "{} dropped: {:?}", dropped.len(), &dropped[..dropped.len().min(3)]);
    assert_eq!(server.join().unwrap(), 1000);
}

#[test]
fn a_line_that_is_not_utf8_is_reported_and_the_next_ones_still_sent() {
    let server = TestServer::start(config());
    let mut cli = start_cli(&[&server.url("/echo")]);
    cli.expect("connected", |l| l.ends_with("] connected"));
    cli.type_bytes(b"hello\n\xff\xfe bad\nafter\n");
    cli.expect_exact("[stdin] line 2 not sent: it is not UTF-8");
    cli.expect_exact("[1] after");
    let (status, seen) = cli.finish();
    assert!(status.success(), "{seen:?}");
    assert!(seen.contains(&"[1] hello".to_owned()), "{seen:?}");
}

#[test]
fn typed_lines_go_to_everyone_or_to_one_by_name() {
    let server = TestServer::start(config());
    let echo = server.url("/echo");
    let mut cli = start_cli(&[&format!("a={echo}"), &format!("b={echo}")]);
    for _ in 0..2 {
        cli.expect("connected", |l| l.ends_with("] connected"));
    }
    cli.type_line("@a only for a");
    cli.type_line("for both");
    cli.type_line("@nobody lost");
    cli.expect_exact("[a] only for a");
    cli.expect_exact("[nobody] not sent: no connection named \"nobody\"");
    let (status, seen) = cli.finish();
    assert!(status.success());
    assert!(
        seen.contains(&"[a] for both".to_owned()) && seen.contains(&"[b] for both".to_owned()),
        "{seen:?}"
    );
    assert!(!seen.contains(&"[b] only for a".to_owned()), "{seen:?}");
    assert!(seen.contains(&"[a] closed: 1000 bye".to_owned()), "EOF closes with 1000: {seen:?}");
}

#[test]
fn wss_with_a_trusted_certificate() {
    let (tls, _) = crate::support::tls::certificate();
    let pem = tls.certificate_chain_pem.clone();
    let server = TestServer::start_tls(config());
    let dir = std::env::temp_dir().join(format!("switchboard-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A certificate the client does not trust fails the TLS handshake...
    let untrusted = dir.join("other.pem");
    std::fs::write(&untrusted, pem).unwrap();
    let mut cli = start_cli(&[&server.url("/echo"), "--ca-cert", untrusted.to_str().unwrap()]);
    cli.expect("TLS failure", |l| l.starts_with("[1] error: TLS handshake failed"));
    assert_eq!(cli.finish().0.code(), Some(1));
    // ...and the server's own is trusted.
    let trusted = dir.join("server.pem");
    std::fs::write(&trusted, server.certificate_pem()).unwrap();
    let mut cli = start_cli(&[&server.url("/echo"), "--ca-cert", trusted.to_str().unwrap()]);
    cli.expect_exact("[1] connected");
    cli.type_line("over tls");
    cli.expect_exact("[1] over tls");
    assert!(cli.finish().0.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `switchboard client --ca-cert` naming the certificate of the server it
/// connects to, by `host`; the lines it printed once stdin closed.
fn client_trusting_its_own_certificate(server: TlsConfig, host: &str) -> Vec<String> {
    let pem = server.certificate_chain_pem.clone();
    let server = TestServer::start_with(Config { tls: Some(server), ..config() }, RoomsHandler);
    let file = std::env::temp_dir().join(format!(
        "switchboard-pinned-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&file, pem).unwrap();
    let url = format!("wss://{host}:{}/echo", server.addr().port());
    let cli = start_cli(&[&url, "--ca-cert", file.to_str().unwrap(), "--no-reconnect"]);
    let (_, printed) = cli.finish();
    std::fs::remove_file(&file).unwrap();
    printed
}

#[test]
fn a_self_signed_certificate_marked_ca_is_trusted_when_named_and_closes_cleanly() {
    let printed =
        client_trusting_its_own_certificate(tls::ca_marked_certificate(&["localhost"], 2100), "localhost");
    assert_eq!(printed, ["[1] connected", "[1] closed: 1000 bye", "[1] ended"], "{printed:?}");
}

#[test]
fn a_named_certificate_must_still_be_in_date_and_for_the_host() {
    let expired =
        client_trusting_its_own_certificate(tls::ca_marked_certificate(&["localhost"], 2001), "localhost");
    assert!(
        expired[0].contains("TLS handshake failed") && expired[0].contains("certificate expired"),
        "{expired:?}"
    );
    let elsewhere =
        client_trusting_its_own_certificate(tls::ca_marked_certificate(&["localhost"], 2100), "127.0.0.1");
    assert!(
        elsewhere[0].contains("TLS handshake failed") && elsewhere[0].contains("not valid for name"),
        "{elsewhere:?}"
    );
}

/// The next `Connected`, within `PATIENCE`; other events pass.
fn next_connected(client: &Client) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match client.events().recv_deadline(deadline) {
            Ok(Event::Connected { .. }) => return,
            Ok(_) => {}
            Err(e) => panic!("no Connected within {PATIENCE:?}: {e}"),
        }
    }
}

#[test]
fn messages_queued_when_a_connection_drops_are_not_sent_on_the_next() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let config = ClientConfig {
        reconnect: Reconnect::Backoff { first: ms(10), max: ms(10) },
        ..ClientConfig::default()
    };
    let client = Client::start(vec![Endpoint::new("a", url)], config).unwrap();
    // The first connection is never read: the writer blocks, its queue fills.
    let first = switchboard::tungstenite::accept(accept_within(&listener)).unwrap();
    next_connected(&client);
    let megabyte = Bytes::from(vec![0u8; 1 << 20]);
    let full = (0..10_000)
        .any(|_| matches!(client.send("a", Message::Binary(megabyte.clone())), Err(ClientError::Busy(_))));
    assert!(full, "the queue never filled");
    // Dropped with all that unread: a reset.
    drop(first);
    let mut second = switchboard::tungstenite::accept(accept_within(&listener)).unwrap();
    next_connected(&client);
    client.send("a", "fresh").unwrap();
    let heard = second.read().unwrap();
    assert!(
        heard == Message::text("fresh"),
        "the next connection first heard {} bytes queued for the last",
        heard.len()
    );
    drop(second);
    client.join();
}

#[test]
fn join_hangs_up_on_connections_still_being_made() {
    // One server never answers the upgrade; the other's accept queue is
    // full, so that the kernel drops its SYNs.
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let full = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    full.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
    full.listen(0).unwrap();
    let full_addr = full.local_addr().unwrap().as_socket().unwrap();
    let _queued = TcpStream::connect(full_addr).unwrap();
    let endpoints = vec![
        Endpoint::new("mute", format!("ws://{}/", mute.local_addr().unwrap())),
        Endpoint::new("unanswered", format!("ws://{full_addr}/")),
    ];
    let config = ClientConfig { connect_timeout: Duration::from_secs(60), ..ClientConfig::default() };
    let client = Client::start(endpoints, config).unwrap();
    // mute's line is past TCP, waiting for its 101.
    let _held = accept_within(&mute);
    joins_within_patience(client);
}

#[test]
fn the_servers_close_is_answered_after_a_burst_of_pings_while_the_writer_is_blocked() {
    let listener = narrow_listener();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let client = Client::start(vec![Endpoint::new("a", url)], ClientConfig::default()).unwrap();
    let mut server = switchboard::tungstenite::accept(accept_within(&listener)).unwrap();
    next_connected(&client);
    // 16 MiB queued, against a few kilobytes of window and a send buffer
    // of 4 MiB at most: with the queue full, the writer stays blocked on
    // the socket until the server reads.
    let chunk = Bytes::from(vec![0u8; 64 << 10]);
    let full = (0..100_000)
        .any(|_| matches!(client.send("a", Message::Binary(chunk.clone())), Err(ClientError::Busy(_))));
    assert!(full, "the queue never filled");
    for i in 0..100u8 {
        server.write(Message::Ping(Bytes::from(vec![i]))).unwrap();
    }
    server.close(Some(CloseFrame { code: CloseCode::Library(4000), reason: "enough".into() })).unwrap();
    // Only now does the server read: the messages, then the answer to its close.
    let reply = loop {
        match server.read() {
            Ok(Message::Close(reply)) => break reply,
            Ok(_) => {}
            Err(e) => panic!("no answer to the server's close: {e}"),
        }
    };
    assert_eq!(reply.map(|close| close.code), Some(CloseCode::Library(4000)));
    drop(server);
    client.join();
}

#[test]
fn a_pong_goes_out_between_messages_while_the_application_keeps_the_queue_full() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let config = ClientConfig { reconnect: Reconnect::Never, ..ClientConfig::default() };
    let client = Client::start(vec![Endpoint::new("a", url)], config).unwrap();
    let mut server = switchboard::tungstenite::accept(accept_within(&listener)).unwrap();
    next_connected(&client);
    let answered = AtomicBool::new(false);
    thread::scope(|scope| {
        // The application refills the queue as fast as the writer takes
        // from it, until the server has its pong, or for PATIENCE at most;
        // then says it has stopped. A megabyte a message, the queue holds
        // more than the writer can send in any pause the application's
        // thread might take.
        scope.spawn(|| {
            let megabyte = Bytes::from(vec![0u8; 1 << 20]);
            let deadline = Instant::now() + PATIENCE;
            while !answered.load(Ordering::SeqCst) && Instant::now() < deadline {
                // Not connected: the test is over, and has hung up.
                if client.send_waiting("a", Message::Binary(megabyte.clone()), PATIENCE).is_err() {
                    return;
                }
            }
            let _ = client.send_waiting("a", "stopped", PATIENCE);
        });
        // Messages are flowing: the writer is draining the queue.
        assert!(server.read().unwrap().is_binary());
        server.send(Message::Ping(Bytes::from_static(b"there?"))).unwrap();
        loop {
            match server.read().unwrap() {
                Message::Pong(payload) => {
                    assert_eq!(payload, Bytes::from_static(b"there?"));
                    answered.store(true, Ordering::SeqCst);
                    break;
                }
                Message::Text(_) => panic!("the pong waited behind every message the application sent"),
                _ => {}
            }
        }
        // What is still queued is not read: the connection drops with it.
        drop(server);
    });
    client.join();
}

#[test]
fn once_nobody_reads_its_output_the_client_closes_with_1000_and_exits() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.args(["client", &url]);
    // Piped into `head -1`; its stdin stays open throughout.
    let mut cli = Program::start_head(command, 1);
    let mut server = switchboard::tungstenite::accept(accept_within(&listener)).unwrap();
    cli.expect_exact("[1] connected");
    // Something for the client to print, to no one.
    server.send(Message::text("anyone there?")).unwrap();
    let close = loop {
        match server.read() {
            Ok(Message::Close(close)) => break close,
            Ok(_) => {}
            Err(e) => panic!("the client did not close: {e}"),
        }
    };
    assert_eq!(close.map(|close| close.code), Some(CloseCode::Normal));
    // Sends the server's answer (tungstenite then reports the connection
    // closed), and hangs up, as a server does.
    let _ = server.flush();
    drop(server);
    let (status, _, stderr) = cli.wait(PATIENCE);
    assert!(status.success(), "{status:?}: {stderr}");
}

#[test]
fn a_header_for_a_mistyped_connection_name_says_no_connection_has_that_name() {
    let (status, printed, stderr) = crate::support::run(
        &["client", "alice=ws://127.0.0.1:1/", "bob=ws://127.0.0.1:1/", "--header", "alcie=X-Trace: 1"],
        &[],
    );
    assert_eq!(status.code(), Some(1), "{printed:?} {stderr}");
    assert!(
        stderr.contains(
            "--header \"alcie=X-Trace: 1\": no connection named \"alcie\" (the connections are \"alice\", \"bob\")"
        ),
        "{stderr}"
    );
    assert!(printed.is_empty(), "nothing started: {printed:?}");
}

/// What `server` hears until the client's close: each text message's first
/// two words, then the close frame. It answers the close as it goes.
fn heard_until_close(
    server: &mut switchboard::tungstenite::WebSocket<TcpStream>,
) -> (Vec<String>, CloseFrame) {
    let mut heard = Vec::new();
    loop {
        match server.read() {
            Ok(Message::Text(text)) => heard.push(text.split(' ').take(2).collect::<Vec<_>>().join(" ")),
            Ok(Message::Close(close)) => {
                // Sends tungstenite's answer to the close.
                let _ = server.flush();
                return (heard, close.expect("a close without a code"));
            }
            Ok(_) => {}
            Err(e) => panic!("no close from the client after {} messages: {e}", heard.len()),
        }
    }
}

#[test]
fn a_send_after_close_is_refused_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // Takes the connection, never answers the upgrade.
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoints = vec![
        Endpoint::new("up", format!("ws://{}/", listener.local_addr().unwrap())),
        Endpoint::new("connecting", format!("ws://{}/", mute.local_addr().unwrap())),
    ];
    let config = ClientConfig { reconnect: Reconnect::Never, ..ClientConfig::default() };
    let mut client = Client::start(endpoints, config).unwrap();
    let mut server = switchboard::tungstenite::accept(accept_within(&listener)).unwrap();
    let _held = accept_within(&mute);
    next_connected(&client);
    assert!(matches!(client.send("connecting", "early"), Err(ClientError::NotConnected(_))));
    client.close();
    // A wait for room would be no help: there is no room to come.
    let asked = Instant::now();
    let refused = client.send_waiting("up", "too late", PATIENCE);
    assert!(asked.elapsed() < PATIENCE / 2, "the send waited {:?}", asked.elapsed());
    match refused {
        Err(error @ ClientError::Closed(_)) => {
            assert_eq!(error.to_string(), "up takes no more messages: the client was closed")
        }
        other => panic!("a send after close() gave {other:?}"),
    }
    for (line, sent) in client.send_all("too late for all") {
        assert!(matches!(sent, Err(ClientError::Closed(_))), "{line}: {sent:?}");
    }
    let (heard, close) = heard_until_close(&mut server);
    assert!(heard.is_empty(), "the server heard {heard:?}");
    assert_eq!(close.code, CloseCode::Normal);
    drop(server);
    joins_within_patience(client);
}

#[test]
fn what_was_sent_before_close_goes_out_ahead_of_the_1000_and_nothing_after() {
    let listener = narrow_listener();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let config = ClientConfig { reconnect: Reconnect::Never, ..ClientConfig::default() };
    let mut client = Client::start(vec![Endpoint::new("a", url)], config).unwrap();
    let mut server = switchboard::tungstenite::accept(accept_within(&listener)).unwrap();
    next_connected(&client);
    // The server reads nothing yet: as in the test of the close after a
    // burst of pings, the queue fills, and the writer is blocked on the
    // socket with 16 MiB still to send when the client closes.
    let padding = "x".repeat(64 << 10);
    let mut sent = 0;
    let full = (0..100_000).any(|i| match client.send("a", format!("before {i} {padding}")) {
        Ok(()) => {
            sent += 1;
            false
        }
        Err(ClientError::Busy(_)) => true,
        Err(e) => panic!("message {i}: {e}"),
    });
    assert!(full, "the queue never filled");
    client.close();
    let reading = thread::spawn(move || {
        let heard = heard_until_close(&mut server);
        drop(server);
        heard
    });
    // While the writer works through the queue, the application goes on:
    // each send would find room as the writer takes a message.
    for i in 0..10 {
        let _ = client.send_waiting("a", format!("after {i}"), PATIENCE);
    }
    let (heard, close) = reading.join().unwrap();
    let late: Vec<&String> = heard.iter().filter(|h| h.starts_with("after")).collect();
    assert!(late.is_empty(), "the server heard {late:?}, sent after close(), ahead of its 1000");
    let expected: Vec<String> = (0..sent).map(|i| format!("before {i}")).collect();
    assert!(
        heard == expected,
        "sent {sent} before close(); the server heard {} of them, or out of order",
        heard.len()
    );
    assert_eq!(close.code, CloseCode::Normal);
    joins_within_patience(client);
}

#[test]
fn a_setting_the_client_refuses_is_named_by_its_flag() {
    let not_pem = std::env::temp_dir().join(format!("client-not-a-certificate-{}", std::process::id()));
    std::fs::write(&not_pem, "alice some-token\n").unwrap();
    let not_pem = not_pem.to_str().unwrap();
    for (args, said) in [
        (&["--ca-cert", not_pem][..], format!("--ca-cert {not_pem}: TLS: no certificate in the CA PEM")),
        (&["--ping-interval", "0s"][..], "--ping-interval 0s: must be more than zero".to_owned()),
        (&["--connect-timeout", "0s"][..], "--connect-timeout 0s: must be more than zero".to_owned()),
    ] {
        let (status, printed, stderr) =
            crate::support::run(&[&["client", "wss://127.0.0.1:1/"][..], args].concat(), &[]);
        assert_eq!(status.code(), Some(1), "{args:?}: {printed:?} {stderr}");
        assert!(stderr.contains(&said), "{args:?}: {stderr}");
        assert!(!stderr.contains("handshake"), "no handshake was tried: {stderr}");
    }
    let _ = std::fs::remove_file(not_pem);
}
