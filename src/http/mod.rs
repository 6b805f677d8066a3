//! The HTTP side of the one port: request heads, responses, and the routes
//! answered without a WebSocket.

pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod routes;

pub use self::request::Request;
pub use self::response::Response;
