//! Verifies that WebSocket upgrades are checked, answered, and share the port with HTTP.

use std::io::Write;

use crate::support::raw::{TEXT, frame, read_head, tcp};
use crate::support::{RawClient, Scheme, TestServer, config, recv_text, send_text};

fn upgrade_request(path: &str, extra_headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra_headers}\r\n"
    )
}

fn same_port_serves_http_and_websocket_at_once(scheme: Scheme) {
    let server = TestServer::start_scheme(scheme, config());
    let mut a = server.connect("/ws/same-port");
    let plain = server.http("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(plain.status, 200, "B gets a plain answer and is closed (read_to_end returned)");
    let mut c = server.connect("/ws/same-port");
    // C is registered once its first message comes back to it.
    send_text(&mut c, "c is here");
    assert_eq!(recv_text(&mut c), "c is here");
    assert_eq!(recv_text(&mut a), "c is here");
    send_text(&mut a, "hello from a");
    assert_eq!(recv_text(&mut a), "hello from a");
    assert_eq!(recv_text(&mut c), "hello from a");
}

#[test]
fn unsupported_version_is_426_naming_13() {
    let server = TestServer::start(config());
    let reply = server.http(&upgrade_request(
        "/echo",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
    ));
    assert_eq!(reply.status, 426);
    assert_eq!(reply.header("sec-websocket-version"), Some("13"));
}

#[test]
fn missing_or_bad_key_is_400() {
    let server = TestServer::start(config());
    let missing = server.http(&upgrade_request("/echo", "Sec-WebSocket-Version: 13\r\n"));
    assert_eq!(missing.status, 400);
    assert!(missing.body.contains("Sec-WebSocket-Key"));
    let bad =
        server.http(&upgrade_request("/echo", "Sec-WebSocket-Key: nope\r\nSec-WebSocket-Version: 13\r\n"));
    assert_eq!(bad.status, 400);
}

#[test]
fn a_key_that_is_not_16_bytes_is_400() {
    let server = TestServer::start(config());
    // 22 characters and `==`, but the 22nd carries bits past the 16th byte.
    let long = server.http(&upgrade_request(
        "/echo",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\nSec-WebSocket-Version: 13\r\n",
    ));
    assert_eq!(long.status, 400, "{long:?}");
}

#[test]
fn an_upgrade_that_says_a_field_twice_or_brings_a_body_is_400() {
    let server = TestServer::start(config());
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let version = "Sec-WebSocket-Version: 13\r\n";
    let cases = [
        (format!("Host: u\r\n{key}{version}"), "more than one Host header"),
        (format!("{key}{key}{version}"), "more than one Sec-WebSocket-Key header"),
        (format!("{key}{version}Sec-WebSocket-Version: 8\r\n"), "more than one Sec-WebSocket-Version header"),
        (format!("{key}{version}Content-Length: 6\r\n"), "a WebSocket upgrade has no body"),
        (format!("{key}{version}Transfer-Encoding: chunked\r\n"), "a WebSocket upgrade has no body"),
        // A proxy that reads the second length would take what follows
        // for a body, and the frames for another request.
        (
            format!("{key}{version}Content-Length: 0\r\nContent-Length: 5\r\n"),
            "more than one Content-Length header",
        ),
    ];
    for (headers, why) in cases {
        let reply = server.http(&upgrade_request("/echo", &headers));
        assert_eq!(reply.status, 400, "{headers:?}: {reply:?}");
        assert!(reply.body.contains(why), "{headers:?}: {reply:?}");
    }
    // An empty body said outright is no body, however many zeros say it.
    for zero in ["0", "00"] {
        let mut stream = tcp(server.addr());
        let request = upgrade_request("/echo", &format!("{key}{version}Content-Length: {zero}\r\n"));
        stream.write_all(request.as_bytes()).unwrap();
        let head = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 101 "), "{zero}: {head:?}");
    }
    // Nor may a plain request name two hosts.
    let reply = server.http("GET /healthz HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n");
    assert_eq!(reply.status, 400, "{reply:?}");
}

#[test]
fn upgrade_without_connection_header_is_400() {
    let server = TestServer::start(config());
    let request = "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(server.http(request).status, 400);
}

#[test]
fn upgrade_to_unknown_path_is_404_and_counted() {
    let server = TestServer::start(config());
    let err = server.try_connect("/nowhere").unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    assert_eq!(server.stats()["upgrades_refused"]["not_found"], 1);
}

#[test]
fn frames_sent_with_the_request_are_not_lost() {
    let server = TestServer::start(config());
    let early = frame(true, TEXT, b"sent before the 101", true);
    let mut client = RawClient::upgrade(server.addr(), "/echo", &early);
    let (opcode, payload) = client.read_frame().unwrap();
    assert_eq!(opcode, TEXT);
    assert_eq!(payload, b"sent before the 101");
}

#[test]
fn an_upgrade_may_name_its_target_as_an_absolute_uri() {
    let server = TestServer::start(config());
    let hello = frame(true, TEXT, b"absolute", true);
    let mut client = RawClient::upgrade(server.addr(), &format!("http://{}/echo", server.addr()), &hello);
    assert_eq!(client.read_frame().unwrap(), (TEXT, b"absolute".to_vec()));
    // The page's origin is compared with the target's host, not with Host.
    let mut page = tcp(server.addr());
    let request = upgrade_request(
        "HTTP://chat.example:8080/echo",
        "Origin: http://chat.example:8080\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    page.write_all(request.as_bytes()).unwrap();
    let head = read_head(&mut page);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
}

fn ws_and_http_clients_interleave_on_one_port(scheme: Scheme) {
    let server = TestServer::start_scheme(scheme, config());
    let mut clients: Vec<_> = (0..5).map(|_| server.connect("/echo")).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(server.get("/healthz").status, 200);
        send_text(client, &i.to_string());
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(recv_text(client), i.to_string());
    }
}

crate::both_schemes!(same_port_serves_http_and_websocket_at_once, ws_and_http_clients_interleave_on_one_port,);

/// The head of the answer to an upgrade on /echo offering `offered`.
fn offer(server: &TestServer, offered: Option<&str>) -> String {
    use std::io::Write;
    let mut stream = crate::support::raw::tcp(server.addr());
    let protocol = offered.map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n")).unwrap_or_default();
    let request = upgrade_request(
        "/echo",
        &format!("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{protocol}"),
    );
    stream.write_all(request.as_bytes()).unwrap();
    crate::support::raw::read_head(&mut stream)
}

#[test]
fn the_clients_first_supported_subprotocol_is_chosen() {
    let server = TestServer::start(switchboard::Config {
        subprotocols: vec!["chat.v2".into(), "chat.v1".into()],
        ..config()
    });
    let head = offer(&server, Some("chat.v1, chat.v2"));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("\r\nSec-WebSocket-Protocol: chat.v1\r\n"), "{head}");
    let head = offer(&server, Some("mqtt, chat.v2"));
    assert!(head.contains("\r\nSec-WebSocket-Protocol: chat.v2\r\n"), "{head}");
}

#[test]
fn no_common_subprotocol_means_none_is_named() {
    let server = TestServer::start(switchboard::Config { subprotocols: vec!["chat.v1".into()], ..config() });
    for offered in [Some("mqtt"), None] {
        let head = offer(&server, offered);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(!head.to_ascii_lowercase().contains("sec-websocket-protocol"), "{head}");
    }
}
