//! The `switchboard` binary's handler: rooms by path, an echo endpoint, and the demo page.
//!
//! | path | behaviour |
//! | --- | --- |
//! | `GET /` | the chat page, embedded in the binary, with its Content-Security-Policy |
//! | `GET /page.js`, `GET /page.css` | the page's script and style sheet |
//! | `GET /rooms/<room>` | `{"room": "<room>", "members": N}`: who is in a room, for the page; with credentials configured, only for a client that presents them, as an upgrade must |
//! | `/ws/<room>` | every message goes to every member of `<room>`, the sender included |
//! | `/echo` | every message goes back to its sender |
//!
//! **Names are vouched for.** The page sends `{"name": ..., "text": ..., "id": ...}`
//! and shows the `name` of what it receives, so without credentials anyone
//! can post under any name. When a client was admitted with a JWT, its
//! [`verified_name`](Connection::verified_name) (the token's `sub`, or the
//! claim [`Access::jwt_name_claim`](crate::Access::jwt_name_claim) names)
//! replaces the `name` of every JSON object it sends to a room, and is
//! added to one that has none: the room sees who the token says, not who
//! the client says. Its other messages go to the room as they are: the
//! page shows text that is not a JSON object as it came, under no name, so
//! it impersonates no one. One exception: a text that a browser would read
//! as a JSON object (it starts with `{`) but that the server cannot read
//! as one, or that would grow past the name when written again, is not
//! relayed, as the server cannot put the name in it. Clients admitted with
//! a bearer token or none are relayed as they are.

use std::sync::Arc;

use log::debug;
use serde_json::{Map, Value};
use tungstenite::Message;

use crate::error::Refusal;
use crate::handler::{Accept, Connection, Handler};
use crate::http::{Request, Response};
use crate::hub::HubHandle;

/// The chat page served at `/`.
const PAGE: &str = include_str!("page/index.html");
/// The page's script, served at `/page.js`.
const PAGE_SCRIPT: &str = include_str!("page/page.js");
/// The page's style sheet, served at `/page.css`.
const PAGE_STYLE: &str = include_str!("page/page.css");

/// What the page may do, sent with it as its `Content-Security-Policy`: run
/// the script and apply the style sheet of its own origin (never inline
/// ones, so that HTML slipped into the page cannot run), talk to its own
/// origin (the WebSocket, `ws:`/`wss:` included, and `/rooms/`), show its
/// empty `data:` icon, and nothing else. It sets no `<base>`, its forms never
/// submit (the script handles them), and no other page may frame it.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                           img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The longest room name, in bytes.
pub const MAX_ROOM_NAME: usize = 128;

/// Rooms by path, an echo endpoint and the demo page; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoomsHandler;

/// Which endpoint a connection is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A member of this room.
    Room(Arc<str>),
    /// The echo endpoint.
    Echo,
}

impl Handler for RoomsHandler {
    type State = Endpoint;

    fn on_upgrade(&self, request: &Request) -> Result<Accept<Endpoint>, Refusal> {
        if request.path() == "/echo" {
            return Ok(Accept::new(Endpoint::Echo));
        }
        match request.path().strip_prefix("/ws/") {
            Some(room) if is_room_name(room) => {
                let room: Arc<str> = room.into();
                Ok(Accept::new(Endpoint::Room(room.clone())).join(room))
            }
            _ => Err(Refusal::not_found()),
        }
    }

    /// `/rooms` and everything under it: who is in a room is for those who
    /// may join it. The page and its files are not: a visitor must be able
    /// to load the page to give it a token.
    fn needs_credentials(&self, request: &Request) -> bool {
        let path = request.path();
        path == "/rooms" || path.starts_with("/rooms/")
    }

    fn on_request(&self, request: &Request, hub: &HubHandle) -> Option<Response> {
        match request.path() {
            // X-Frame-Options says frame-ancestors 'none' to browsers too old for CSP.
            "/" => {
                return Some(
                    Response::html(PAGE)
                        .header("Content-Security-Policy", PAGE_POLICY)
                        .header("X-Frame-Options", "DENY"),
                );
            }
            "/page.js" => return Some(Response::embedded("text/javascript; charset=utf-8", PAGE_SCRIPT)),
            "/page.css" => return Some(Response::embedded("text/css; charset=utf-8", PAGE_STYLE)),
            _ => {}
        }
        let room = request.path().strip_prefix("/rooms/").filter(|room| is_room_name(room))?;
        let members = hub.room_size(room).ok()?;
        Some(Response::json(serde_json::json!({ "room": room, "members": members }).to_string()))
    }

    fn on_message(&self, connection: &Connection, endpoint: &mut Endpoint, message: Message) {
        let sent = match endpoint {
            Endpoint::Echo => connection.send(message),
            Endpoint::Room(room) => {
                let message = match connection.verified_name() {
                    Some(name) => match named(name, message) {
                        Ok(message) => message,
                        Err(Unnamable) => {
                            debug!(
                                "connection {}: message not relayed: it starts like a JSON object, \
                                 but cannot be given the sender's verified name",
                                connection.id()
                            );
                            return;
                        }
                    },
                    None => message,
                };
                connection.hub().send_to_room(room.clone(), message)
            }
        };
        if let Err(e) = sent {
            debug!("connection {}: message not relayed: {e}", connection.id());
        }
    }
}

/// A text a browser would read as a JSON object, which the server cannot
/// give a name to.
#[derive(Debug, PartialEq, Eq)]
struct Unnamable;

/// `message` with its `"name"` set to `name`, when it is a JSON object;
/// any other message as it is.
///
/// A browser's `JSON.parse` reads some texts that serde_json refuses (an
/// escaped lone surrogate, a number past `f64`, nesting deeper than 128),
/// or that are not read here (nesting deeper than [`MAX_NESTING`]), and
/// reads a text as an object exactly when it starts with `{` after
/// whitespace. So a text that starts with `{` and that is not read is
/// refused here, rather than relayed with whatever name it holds. The object is written
/// again from what was read, so a repeated `"name"` is gone, not only the
/// first; and as writing again can make it longer (`1e9` is written
/// `1000000000.0`), one that grows by more than the name is refused too,
/// so that a message never grows past the size limits it was checked
/// against by much more than a name.
///
/// Out of line: its JSON work would otherwise widen the frame of every
/// room message's handling, named or not, on the connection thread's stack.
#[inline(never)]
fn named(name: &str, message: Message) -> Result<Message, Unnamable> {
    let Message::Text(text) = &message else {
        return Ok(message);
    };
    if !text.trim_start_matches([' ', '\t', '\n', '\r']).starts_with('{') {
        return Ok(message);
    }
    if nested_deeper_than(text, MAX_NESTING) {
        return Err(Unnamable);
    }
    let mut object: Map<String, Value> = serde_json::from_str(text).map_err(|_| Unnamable)?;
    object.insert("name".to_owned(), Value::String(name.to_owned()));
    let named = Value::Object(object).to_string();
    // What the name may add: `"name":` and a comma, and the name itself.
    let room_for_the_name = r#""name":,"#.len() + Value::String(name.to_owned()).to_string().len();
    if named.len() > text.len() + room_for_the_name {
        return Err(Unnamable);
    }
    Ok(Message::text(named))
}

/// The deepest a message's JSON may nest to be given a name. serde_json
/// reads, writes and drops a value by recursion, a few hundred bytes of
/// stack a level, and the pages of stack a thread touches stay resident for
/// its connection's life: measured, one message nested 127 deep left each
/// connection 24 KiB more resident, 32 deep 5.4 KiB, 16 deep 0.6 KiB. A
/// chat message is a few levels deep.
const MAX_NESTING: usize = 16;

/// Returns true if and only if `json` opens more than `limit` objects or
/// arrays inside one another, counting brackets outside strings; malformed
/// text is left to the parser.
fn nested_deeper_than(json: &str, limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for byte in json.bytes() {
        match (in_string, byte) {
            (true, _) if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (true, b'"') | (false, b'"') => in_string = !in_string,
            (false, b'{' | b'[') => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            (false, b'}' | b']') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A room is one path segment of 1 to 128 bytes, taken as written
/// (percent-encoding included), so that two clients spelling it the same way
/// meet.
fn is_room_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_ROOM_NAME && !name.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(message: Result<Message, Unnamable>) -> String {
        match message {
            Ok(Message::Text(text)) => text.as_str().to_owned(),
            other => panic!("expected a text, got {other:?}"),
        }
    }

    #[test]
    fn a_json_object_gets_the_verified_name() {
        let named = |json: &str| text(named("alice", Message::text(json)));
        assert_eq!(named(r#"{"name":"mallory","text":"hi"}"#), r#"{"name":"alice","text":"hi"}"#);
        assert_eq!(named(r#" {"text":"hi"}"#), r#"{"name":"alice","text":"hi"}"#);
        assert_eq!(
            named(r#"{"name":"mallory","name":"eve","text":"hi"}"#),
            r#"{"name":"alice","text":"hi"}"#
        );
        assert_eq!(named("{}"), r#"{"name":"alice"}"#);
    }

    #[test]
    fn an_object_nested_too_deep_is_not_named_nor_read() {
        let deep = |levels: usize| format!("{}1{}", r#"{"a":"#.repeat(levels), "}".repeat(levels));
        assert!(named("alice", Message::text(deep(MAX_NESTING))).is_ok());
        assert_eq!(named("alice", Message::text(deep(MAX_NESTING + 1))), Err(Unnamable));
        assert_eq!(named("alice", Message::text(deep(127))), Err(Unnamable));
        // Brackets inside strings, escaped quotes included, do not count.
        let quoted = format!(r#"{{"text":"{}\"{}"}}"#, "[".repeat(100), "{".repeat(100));
        assert!(named("alice", Message::text(quoted)).is_ok());
    }

    #[test]
    fn other_messages_are_relayed_as_they_are() {
        for other in ["hi", r#"["mallory","hi"]"#, r#""{\"name\":\"mallory\"}""#, "42", "null", ""] {
            assert_eq!(text(named("alice", Message::text(other))), other);
        }
        let binary = Message::binary(&br#"{"name":"mallory"}"#[..]);
        assert_eq!(named("alice", binary.clone()), Ok(binary));
    }

    #[test]
    fn an_object_the_server_cannot_name_is_not_relayed() {
        for unreadable in [
            r#"{"name":"mallory","text":"\ud800"}"#,
            r#"{"name":"mallory","n":1e400}"#,
            r#"{"name":"mallory","text":"hi"} trailing"#,
            "{not json",
        ] {
            assert_eq!(named("alice", Message::text(unreadable)), Err(Unnamable), "{unreadable}");
        }
        let growing = format!(r#"{{"name":"mallory","n":[{}1e9]}}"#, "1e9,".repeat(100));
        assert_eq!(named("alice", Message::text(growing)), Err(Unnamable));
    }

    #[test]
    fn room_names_are_single_bounded_segments() {
        assert!(is_room_name("lobby"));
        assert!(is_room_name("caf%C3%A9"));
        assert!(!is_room_name(""));
        assert!(!is_room_name("a/b"));
        assert!(!is_room_name(&"x".repeat(MAX_ROOM_NAME + 1)));
    }
}
