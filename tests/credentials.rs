//! Verifies that a JWT is taken only within its `nbf` and `exp` (give or
//! take the leeway), and that the name a room shows for its holder is the
//! one the token vouches for, not one the client picks.

use serde_json::{Value, json};
use switchboard::{Access, Config, Secret, Timeouts, Token};

use crate::support::jwt::{KEY, jwt, now};
use crate::support::raw::upgrade_request;
use crate::support::{Client, Reply, TestServer, config, ms, recv_close, recv_text, send_text};

/// A server taking JWTs signed with [`KEY`], the bearer token `letmein`,
/// and naming users by `name_claim`.
fn server(name_claim: Option<&str>) -> TestServer {
    TestServer::start(Config {
        access: Access {
            tokens: vec![Token::new("letmein")],
            jwt_secret: Some(Secret::new(KEY)),
            jwt_name_claim: name_claim.map(str::to_owned),
            ..Access::default()
        },
        ..config()
    })
}

/// The answer to an upgrade on `room` with `token`, which must be a refusal
/// (a 101 would leave the connection open).
fn refusal(server: &TestServer, room: &str, token: &str) -> Reply {
    server.http(&upgrade_request(&format!("/ws/{room}?access_token={token}"), ""))
}

fn join(server: &TestServer, room: &str, token: &str) -> Client {
    server.connect(&format!("/ws/{room}?access_token={token}"))
}

/// The next message `client` receives, read as JSON.
fn recv_json(client: &mut Client) -> Value {
    let text = recv_text(client);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
}

#[test]
fn jwt_a_day_before_its_nbf_is_403() {
    let server = server(None);
    let reply = refusal(&server, "lobby", &jwt(json!({ "sub": "alice", "nbf": now() + 86_400 })));
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains("not yet valid"), "{}", reply.body);
}

#[test]
fn jwt_a_few_seconds_before_its_nbf_is_admitted_within_the_leeway() {
    let server = server(None);
    let mut early = join(&server, "lobby", &jwt(json!({ "sub": "alice", "nbf": now() + 5 })));
    send_text(&mut early, "hi");
    assert_eq!(recv_text(&mut early), "hi");
}

#[test]
fn jwt_expired_beyond_the_leeway_is_403() {
    let server = server(None);
    let reply = refusal(&server, "lobby", &jwt(json!({ "sub": "alice", "exp": now() - 120 })));
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains("expired"), "{}", reply.body);
}

#[test]
fn a_jwt_holder_is_shown_by_its_sub_whatever_name_it_sends() {
    let server = server(None);
    let mut alice = join(&server, "lobby", &jwt(json!({ "sub": "alice" })));
    let mut other = join(&server, "lobby", &jwt(json!({ "sub": "bob" })));
    send_text(&mut alice, r#"{"name":"mallory","text":"hi"}"#);
    for member in [&mut alice, &mut other] {
        assert_eq!(recv_json(member), json!({ "name": "alice", "text": "hi" }));
    }
    // Text that is not a JSON object names no one, and goes as it came.
    send_text(&mut alice, "plain words");
    assert_eq!(recv_text(&mut other), "plain words");
}

#[test]
fn a_bearer_token_holder_is_relayed_as_it_writes() {
    let server = server(None);
    let mut holder = join(&server, "lobby", "letmein");
    let mut other = join(&server, "lobby", &jwt(json!({ "sub": "bob" })));
    send_text(&mut holder, r#"{"name":"carol","text":"hi"}"#);
    assert_eq!(recv_text(&mut other), r#"{"name":"carol","text":"hi"}"#);
}

#[test]
fn the_name_claim_the_operator_names_is_shown() {
    let server = server(Some("preferred_username"));
    let token = jwt(json!({ "sub": "u-17", "preferred_username": "Alice Liddell" }));
    let mut alice = join(&server, "lobby", &token);
    let mut other = join(&server, "lobby", &jwt(json!({ "sub": "u-18", "preferred_username": "Bob" })));
    send_text(&mut alice, r#"{"name":"u-18","text":"hi"}"#);
    assert_eq!(recv_json(&mut other), json!({ "name": "Alice Liddell", "text": "hi" }));
}

#[test]
fn a_jwt_without_its_name_claim_is_403() {
    let server = server(None);
    let reply = refusal(&server, "lobby", &jwt(json!({ "name": "alice" })));
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains(r#""sub" claim"#), "{}", reply.body);

    let server = self::server(Some("preferred_username"));
    let reply = refusal(&server, "lobby", &jwt(json!({ "sub": "alice" })));
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains(r#""preferred_username" claim"#), "{}", reply.body);
    let reply = refusal(&server, "lobby", &jwt(json!({ "sub": "alice", "preferred_username": 7 })));
    assert_eq!(reply.status, 403);
}

#[test]
fn a_connection_is_closed_with_1008_when_its_jwt_expires() {
    let server = TestServer::start(Config {
        access: Access { jwt_secret: Some(Secret::new(KEY)), ..Access::default() },
        timeouts: Timeouts { ping_interval: ms(100), ..Timeouts::default() },
        ..config()
    });
    // Expired 29 s ago: still taken for a second, within the 30 s leeway.
    let mut client = join(&server, "lobby", &jwt(json!({ "sub": "alice", "exp": now() - 29 })));
    let close = recv_close(&mut client).expect("a close frame");
    assert_eq!((u16::from(close.code), close.reason.as_str()), (1008, "credentials expired"));
    // A token with an hour to go is left alone meanwhile.
    let mut lasting = join(&server, "lobby", &jwt(json!({ "sub": "bob" })));
    send_text(&mut lasting, "{\"text\": \"still here\"}");
    assert_eq!(recv_json(&mut lasting)["text"], "still here");
}
