//! Verifies that plain HTTP requests on the WebSocket port get the right status.

use crate::support::{Scheme, TestServer, config, ms};
use switchboard::{
    Accept, Config, Connection, HubHandle, Limits, Message, Refusal, Request, Response, Timeouts,
};

fn healthz_answers_ok(scheme: Scheme) {
    let server = TestServer::start_scheme(scheme, config());
    let reply = server.get("/healthz");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.trim(), "ok");
    assert_eq!(reply.header("connection"), Some("close"));
}

#[test]
fn metrics_are_prometheus_text_named_switchboard() {
    let server = TestServer::start(config());
    server.get("/nope");
    let reply = server.get("/metrics");
    assert_eq!(reply.status, 200);
    assert!(reply.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    for name in [
        "connections_open",
        "connections_total",
        "messages_in_total",
        "bytes_in_total",
        "messages_out_total",
        "bytes_out_total",
        "slow_consumer_closes_total",
        "upgrades_refused_total",
    ] {
        assert!(
            reply.body.contains(&format!("# TYPE switchboard_{name} ")),
            "missing {name}:\n{}",
            reply.body
        );
    }
    assert!(reply.body.contains("switchboard_http_responses_total{status=\"404\"} 1\n"), "{}", reply.body);
    for line in reply.body.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("switchboard_"), "{line}");
    }
}

fn stats_are_json_with_the_same_figures(scheme: Scheme) {
    let server = TestServer::start_scheme(scheme, config());
    let mut client = server.connect("/echo");
    crate::support::send_text(&mut client, "hello");
    assert_eq!(crate::support::recv_text(&mut client), "hello");
    // The writer counts a message once its write returns, which may be just
    // after the client has read it.
    assert!(crate::support::wait_until(crate::support::PATIENCE, || server.stats()["messages_out"] == 1));
    let stats = server.stats();
    assert_eq!(stats["connections_open"], 1);
    assert_eq!(stats["connections_total"], 1);
    assert_eq!(stats["messages_in"], 1);
    assert_eq!(stats["bytes_in"], 5);
    assert_eq!(stats["messages_out"], 1);
}

#[test]
fn root_serves_the_chat_page() {
    let server = TestServer::start(config());
    let reply = server.get("/");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(reply.body.contains("<script src=\"/page.js\"></script>"));
}

#[test]
fn chat_page_carries_a_content_security_policy_and_refuses_framing() {
    let server = TestServer::start(config());
    let get = server.get("/");
    let head = server.http("HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    for reply in [&get, &head] {
        assert_eq!(reply.status, 200);
        let policy = reply.header("content-security-policy").expect("a Content-Security-Policy");
        let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(directives.contains(&directive), "{directive} in {policy}");
        }
        assert_eq!(reply.header("x-frame-options"), Some("DENY"));
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    }
}

#[test]
fn chat_page_has_no_inline_script_or_style() {
    // The policy allows only the page's own files: anything inline would be
    // refused by the browser, and the page would silently break.
    let page = TestServer::start(config()).get("/").body.to_ascii_lowercase();
    assert!(!page.contains("javascript:"), "no javascript: URL");
    let tags = page
        .split('<')
        .skip(1)
        .filter(|tag| !tag.starts_with("!--"))
        .map(|tag| tag.split('>').next().unwrap());
    let mut scripts = 0;
    for tag in tags {
        let mut words = tag.split_whitespace();
        let element = words.next().unwrap_or("");
        let attributes: Vec<&str> = words.map(|word| word.split('=').next().unwrap()).collect();
        if element == "script" {
            scripts += 1;
            assert!(attributes.contains(&"src"), "the script is a file: <{tag}>");
        }
        assert_ne!(element, "style", "no style element");
        assert!(!attributes.contains(&"style"), "no style attribute: <{tag}>");
        assert!(!attributes.iter().any(|a| a.starts_with("on")), "no event handler attribute: <{tag}>");
    }
    assert_eq!(scripts, 1);
}

#[test]
fn chat_page_script_and_style_are_served_with_their_types() {
    let server = TestServer::start(config());
    for (path, content_type, sample) in [
        ("/page.js", "text/javascript; charset=utf-8", "new WebSocket("),
        ("/page.css", "text/css; charset=utf-8", "#log"),
    ] {
        let reply = server.get(path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert!(reply.body.contains(sample), "{path}");
    }
}

#[test]
fn every_plain_answer_says_nosniff() {
    // A browser must never take a JSON or text answer, in which a client
    // may have put what it likes, for a script or a style sheet.
    let server = TestServer::start(config());
    for path in ["/healthz", "/metrics", "/stats", "/rooms/lobby", "/nothing/here", "/ws/lobby"] {
        let reply = server.get(path);
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{path}: {}", reply.head);
    }
    let refused = server.http("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("x-content-type-options"), Some("nosniff"));
}

#[test]
fn head_request_gets_headers_without_body() {
    let server = TestServer::start(config());
    let reply = server.http("HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some("3"));
    assert_eq!(reply.body, "");
}

#[test]
fn answers_are_dated_and_the_101_is_not() {
    let server = TestServer::start(config());
    for head in ["GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", "GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n"] {
        let reply = server.http(head);
        let date = reply.header("date").unwrap_or_else(|| panic!("no Date: {}", reply.head));
        assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
    }
    let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
    std::io::Write::write_all(&mut stream, crate::support::raw::upgrade_request("/echo", "").as_bytes())
        .unwrap();
    let head = crate::support::raw::read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101") && !head.to_ascii_lowercase().contains("date:"), "{head}");
}

#[test]
fn a_head_that_asks_for_an_upgrade_is_answered_as_a_head() {
    let server = TestServer::start(config());
    let head = crate::support::raw::upgrade_request("/healthz", "").replacen("GET", "HEAD", 1);
    let reply = server.http(&head);
    assert_eq!((reply.status, reply.header("content-length")), (200, Some("3")), "{}", reply.head);
    assert_eq!(reply.body, "");
    // Any other method but GET is told that an upgrade takes GET.
    let reply = server.http(&crate::support::raw::upgrade_request("/ws/a", "").replacen("GET", "POST", 1));
    assert_eq!(reply.status, 405, "{}", reply.head);
}

/// Answers `/no-content` 204 and `/not-modified` 304, each with a body and
/// a length of its own, as a careless handler might.
struct Bodiless;

impl switchboard::Handler for Bodiless {
    type State = ();

    fn on_upgrade(&self, _: &Request) -> Result<Accept<()>, Refusal> {
        Err(Refusal::not_found())
    }

    fn on_message(&self, _: &Connection, _: &mut (), _: Message) {}

    fn on_request(&self, request: &Request, _: &HubHandle) -> Option<Response> {
        let status = match request.path() {
            "/no-content" => 204,
            "/not-modified" => 304,
            _ => return None,
        };
        Some(
            Response::text(status, "not for the wire\n")
                .header("ETag", "\"v1\"")
                .header("Content-Length", "17"),
        )
    }
}

#[test]
fn no_content_and_not_modified_go_without_length_or_body() {
    let server = TestServer::start_with(config(), Bodiless);
    for (path, status) in [("/no-content", 204), ("/not-modified", 304)] {
        for method in ["GET", "HEAD"] {
            // Read to the end: the server still closes after its answer.
            let reply = server.http(&format!("{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
            assert_eq!(reply.status, status, "{method} {path}: {}", reply.head);
            assert_eq!(reply.header("content-length"), None, "{method} {path}: {}", reply.head);
            assert_eq!(reply.header("connection"), Some("close"), "{method} {path}: {}", reply.head);
            assert_eq!(reply.header("etag"), Some("\"v1\""), "{method} {path}: {}", reply.head);
            assert_eq!(reply.body, "", "{method} {path}");
        }
    }
}

#[test]
fn unknown_path_is_404() {
    let server = TestServer::start(config());
    assert_eq!(server.get("/nothing/here").status, 404);
    assert_eq!(server.get("/ws/").status, 404);
    assert_eq!(server.get("/ws/a/b").status, 404);
}

#[test]
fn other_methods_are_405() {
    let server = TestServer::start(config());
    let reply = server.http("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    assert_eq!(server.http("DELETE /ws/x HTTP/1.1\r\nHost: t\r\n\r\n").status, 405);
}

fn plain_get_on_websocket_paths_is_426(scheme: Scheme) {
    let server = TestServer::start_scheme(scheme, config());
    for path in ["/ws/lobby", "/echo"] {
        let reply = server.get(path);
        assert_eq!(reply.status, 426, "{path}");
        assert_eq!(reply.header("upgrade"), Some("websocket"));
    }
}

#[test]
fn malformed_head_is_400() {
    let server = TestServer::start(config());
    assert_eq!(server.http("GET / HTTP/1.1\r\nBad Header\r\n\r\n").status, 400);
    // The start of a TLS ClientHello, sent to the plain port.
    assert_eq!(server.http("\x16\x03\x01\x00\x05\x01\x00\x00\x01\x03\x03\r\n\r\n").status, 400);
}

#[test]
fn a_request_without_its_host_or_with_a_length_that_is_no_number_is_400() {
    let server = TestServer::start(config());
    for head in [
        "GET /healthz HTTP/1.1\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: a b/c\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
    ] {
        let reply = server.http(head);
        assert_eq!(reply.status, 400, "{head:?}: {}", reply.head);
    }
    assert_eq!(server.http("GET /healthz HTTP/1.0\r\n\r\n").status, 200, "HTTP/1.0 needs no Host");
}

#[test]
fn options_for_the_whole_server_is_405_and_another_version_505() {
    let server = TestServer::start(config());
    let reply = server.http("OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((reply.status, reply.header("allow")), (405, Some("GET, HEAD")), "{}", reply.head);
    let reply = server.http("GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n");
    assert_eq!(reply.status, 505, "{}", reply.head);
    // Counted under its own status.
    assert!(
        crate::support::wait_until(crate::support::PATIENCE, || server.stats()["http_responses"]["505"] == 1),
        "{}",
        server.stats()
    );
}

#[test]
fn oversized_head_is_431() {
    let server =
        TestServer::start(Config { limits: Limits { max_head_size: 1024, ..Limits::default() }, ..config() });
    let request = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(2000));
    assert_eq!(server.http(&request).status, 431);
}

#[test]
fn a_head_of_the_size_limit_is_taken_and_one_byte_more_is_431() {
    let server =
        TestServer::start(Config { limits: Limits { max_head_size: 1024, ..Limits::default() }, ..config() });
    let head = |size: usize| {
        let start = "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: ";
        format!("{start}{}\r\n\r\n", "a".repeat(size - start.len() - 4))
    };
    assert_eq!(head(1024).len(), 1024);
    assert_eq!(server.http(&head(1024)).status, 200);
    assert_eq!(server.http(&head(1025)).status, 431);
}

#[test]
fn a_request_line_over_the_head_size_is_414() {
    let server =
        TestServer::start(Config { limits: Limits { max_head_size: 1024, ..Limits::default() }, ..config() });
    let reply = server.http(&format!("GET /healthz?{} HTTP/1.1\r\nHost: t\r\n\r\n", "q".repeat(2000)));
    assert_eq!((reply.status, reply.body.as_str()), (414, "request target too long\n"));
}

#[test]
fn too_many_headers_is_431() {
    let server =
        TestServer::start(Config { limits: Limits { max_headers: 10, ..Limits::default() }, ..config() });
    let headers: String = (0..11).map(|i| format!("X-{i}: 1\r\n")).collect();
    assert_eq!(server.http(&format!("GET / HTTP/1.1\r\n{headers}\r\n")).status, 431);
}

#[test]
fn head_not_finished_in_time_is_408() {
    let server = TestServer::start(Config {
        timeouts: Timeouts { handshake: ms(200), ..Timeouts::default() },
        ..config()
    });
    let reply = server.http("GET / HTTP/1.1\r\nHost: t\r\n");
    assert_eq!(reply.status, 408);
}

#[test]
fn room_size_is_served_as_json() {
    let server = TestServer::start(config());
    let mut a = server.connect("/ws/counted");
    let _b = server.connect("/ws/counted");
    crate::support::send_text(&mut a, "x");
    assert_eq!(crate::support::recv_text(&mut a), "x");
    let reply = server.get("/rooms/counted");
    assert_eq!(reply.status, 200);
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body, serde_json::json!({ "room": "counted", "members": 2 }));
    let empty: serde_json::Value = serde_json::from_str(&server.get("/rooms/nobody").body).unwrap();
    assert_eq!(empty["members"], 0);
    assert_eq!(server.get("/rooms/").status, 404);
}

crate::both_schemes!(
    healthz_answers_ok,
    stats_are_json_with_the_same_figures,
    plain_get_on_websocket_paths_is_426,
);
