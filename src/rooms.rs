//! The `switchboard` binary's handler: rooms by path, an echo endpoint, and the demo page.
//!
//! | path | behaviour |
//! | --- | --- |
//! | `GET /` | the chat page, embedded in the binary |
//! | `GET /rooms/<room>` | `{"room": "<room>", "members": N}`: who is in a room, for the page |
//! | `/ws/<room>` | every message goes to every member of `<room>`, the sender included |
//! | `/echo` | every message goes back to its sender |

use std::sync::Arc;

use log::debug;
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
            Endpoint::Room(room) => connection.hub().send_to_room(room.clone(), message),
        };
        if let Err(e) = sent {
            debug!("connection {}: message not relayed: {e}", connection.id());
        }
    }
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

    #[test]
    fn room_names_are_single_bounded_segments() {
        assert!(is_room_name("lobby"));
        assert!(is_room_name("caf%C3%A9"));
        assert!(!is_room_name(""));
        assert!(!is_room_name("a/b"));
        assert!(!is_room_name(&"x".repeat(MAX_ROOM_NAME + 1)));
    }
}
