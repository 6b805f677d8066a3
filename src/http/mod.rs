//! The HTTP side of the one port: request heads, responses, and the routes
//! answered without a WebSocket.

pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod routes;

pub use self::request::Request;
pub use self::response::Response;

/// Whether `text` is an HTTP token (RFC 9110 §5.6.2): a header's name, or a
/// subprotocol's.
pub(crate) fn is_token(text: &str) -> bool {
    let tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    !text.is_empty() && text.bytes().all(tchar)
}
