//! An HTTP response: status, headers and body, written in one go.

use std::borrow::Cow;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Refusal;

/// An HTTP response to a plain (non-WebSocket) request.
///
/// Every response but `101 Switching Protocols` carries `Connection: close`:
/// the server answers one request per connection, which keeps a thread from
/// being held by an idle keep-alive client. Each carries `Content-Length`,
/// but for `204 No Content` and `304 Not Modified`: those never have a
/// body, and one given to them is not sent. Each also carries
/// `X-Content-Type-Options: nosniff`, so that a browser takes each body for
/// what its `Content-Type` says: a JSON or text answer, whatever a client
/// put in it, is never run as a script or applied as a style sheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(Cow<'static, str>, String)>,
    body: Cow<'static, [u8]>,
}

impl Response {
    /// A response with this status, no extra headers and an empty body.
    pub fn new(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: Cow::Borrowed(b"") }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body.into().into_bytes())
    }

    /// A `200 text/html` response from a page embedded in the binary.
    pub fn html(page: &'static str) -> Self {
        Response::embedded("text/html; charset=utf-8", page)
    }

    /// A `200` response from a file embedded in the binary, of this
    /// `Content-Type`.
    pub fn embedded(content_type: &'static str, file: &'static str) -> Self {
        Response::new(200).header("Content-Type", content_type).body(file.as_bytes())
    }

    /// A `200 application/json` response.
    pub fn json(body: String) -> Self {
        Response::new(200).header("Content-Type", "application/json").body(body.into_bytes())
    }

    /// Adds a header. `Content-Length` and `Date` are the server's to
    /// write: one given here is left out, as is a `Transfer-Encoding`. A
    /// `204` or `304` goes without a body, and without `Content-Length`.
    ///
    /// # Panics
    ///
    /// When `name` is not an HTTP token, or `value` holds a CR, LF or NUL:
    /// a value taken from a client could otherwise end the header and write
    /// others (response splitting). A handler that panics so is answered
    /// 500.
    pub fn header(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        assert!(super::is_token(&name), "the header name {name:?} is not an HTTP token");
        assert!(!value.contains(['\r', '\n', '\0']), "the value of header {name} holds a CR, LF or NUL");
        self.headers.push((name, value));
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Cow<'static, [u8]>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// Whether the status never has a body (RFC 9110 §6.4.1): a 204 or a
    /// 304. Neither carries `Content-Length` either: a 204 must not (§8.6),
    /// and in a 304 it would be the length of the 200 the client holds,
    /// which the server does not know.
    pub(crate) fn is_bodiless(&self) -> bool {
        matches!(self.status, 204 | 304)
    }

    /// The response as it goes on the wire; with `head_only` (a `HEAD`
    /// request) the headers are as for `GET`, without the body.
    pub(crate) fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(256 + self.body.len());
        let _ = write!(bytes, "HTTP/1.1 {} {}\r\n", self.status, reason_phrase(self.status));
        let closing = self.status != 101;
        // One Connection header: its own options (a 426's Upgrade), then close.
        let mut connection = None;
        for (name, value) in &self.headers {
            // The body goes whole, with the server's Content-Length: a
            // handler's length, or its Transfer-Encoding beside that
            // length, would have the client read the body wrong. The Date
            // is the server's too, and comes once.
            if closing
                && ["content-length", "transfer-encoding", "date"]
                    .iter()
                    .any(|own| name.eq_ignore_ascii_case(own))
            {
                continue;
            }
            if closing && name.eq_ignore_ascii_case("connection") {
                connection = Some(value);
                continue;
            }
            let _ = write!(bytes, "{name}: {value}\r\n");
        }
        let bodiless = self.is_bodiless();
        if closing {
            // RFC 9110 §6.6.1: an origin server with a clock dates its
            // answers (a 101 may go without, and goes quicker so).
            if let Some(date) = http_date(SystemTime::now()) {
                let _ = write!(bytes, "Date: {date}\r\n");
            }
            bytes.extend_from_slice(b"X-Content-Type-Options: nosniff\r\n");
            if !bodiless {
                let _ = write!(bytes, "Content-Length: {}\r\n", self.body.len());
            }
            match connection {
                Some(options) => {
                    let _ = write!(bytes, "Connection: {options}, close\r\n");
                }
                None => bytes.extend_from_slice(b"Connection: close\r\n"),
            }
        }
        bytes.extend_from_slice(b"\r\n");
        if !head_only && !bodiless {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// `now` as an HTTP date; `None` for a clock set before 1970 or past the
/// year 9999, which the format cannot hold (httpdate panics on them, and
/// this runs on the accept loop): RFC 9110 §6.6.1 has a server without a
/// reliable clock send no Date.
fn http_date(now: SystemTime) -> Option<String> {
    const YEAR_10000: u64 = 253_402_300_800;
    let since = now.duration_since(UNIX_EPOCH).ok()?;
    (since.as_secs() < YEAR_10000).then(|| httpdate::fmt_http_date(now))
}

impl From<Refusal> for Response {
    fn from(refusal: Refusal) -> Self {
        let mut response = Response::text(refusal.status, format!("{}\n", refusal.reason));
        match refusal.status {
            // RFC 7235 §3.1 asks a 401 to say how to authenticate: RFC 6750's bearer token.
            401 => response = response.header("WWW-Authenticate", "Bearer"),
            405 => response = response.header("Allow", "GET, HEAD"),
            426 => {
                response = response
                    .header("Upgrade", "websocket")
                    .header("Connection", "Upgrade")
                    .header("Sec-WebSocket-Version", "13")
            }
            // Too many from one address, or from everyone: come back later
            // (RFC 6585 §4, RFC 9110 §15.6.4), which the README promises.
            429 | 503 => response = response.header("Retry-After", "1"),
            _ => {}
        }
        response
    }
}

/// The reason phrase of the statuses this server uses.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        // The reason phrase is optional (RFC 9112 §4): the status is what counts.
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The response as written, but for its Date, which is checked.
    fn written(response: &Response, head_only: bool) -> String {
        let text = String::from_utf8(response.to_bytes(head_only)).unwrap();
        let Some(at) = text.find("Date: ") else {
            assert_eq!(response.status, 101, "an answer without a Date: {text}");
            return text;
        };
        let end = at + text[at..].find("\r\n").unwrap() + 2;
        let date = httpdate::parse_http_date(&text[at + 6..end - 2]).unwrap();
        let age = SystemTime::now().duration_since(date).unwrap_or_default();
        assert!(age < std::time::Duration::from_secs(5), "{text}");
        format!("{}{}", &text[..at], &text[end..])
    }

    #[test]
    fn a_clock_the_date_format_cannot_hold_gives_no_date() {
        let seconds = std::time::Duration::from_secs;
        assert_eq!(http_date(UNIX_EPOCH - seconds(1)), None);
        assert_eq!(http_date(UNIX_EPOCH + seconds(253_402_300_800)), None);
        assert_eq!(http_date(UNIX_EPOCH).as_deref(), Some("Thu, 01 Jan 1970 00:00:00 GMT"));
        assert!(http_date(UNIX_EPOCH + seconds(253_402_300_799)).is_some_and(|d| d.contains("9999")));
    }

    #[test]
    fn the_date_is_the_servers() {
        let text = String::from_utf8(
            Response::text(200, "ok\n").header("Date", "Thu, 01 Jan 1970 00:00:00 GMT").to_bytes(false),
        )
        .unwrap();
        assert_eq!(text.matches("Date: ").count(), 1, "{text}");
        assert!(!text.contains("1970"), "{text}");
    }

    #[test]
    fn text_response_has_length_and_closes() {
        let text = written(&Response::text(200, "ok\n"), false);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\nok\n"
        );
    }

    #[test]
    fn head_request_gets_headers_only() {
        let text = written(&Response::text(200, "ok\n"), true);
        assert!(text.ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"), "{text}");
    }

    #[test]
    fn upgrade_required_names_the_protocol() {
        let text = written(&Response::from(Refusal::new(426, "use a WebSocket client")), false);
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("Upgrade: websocket\r\n"));
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
        let connections: Vec<&str> = text.lines().filter(|line| line.starts_with("Connection:")).collect();
        assert_eq!(connections, ["Connection: Upgrade, close"], "one Connection header: {text}");
    }

    #[test]
    fn too_many_and_busy_say_when_to_come_back() {
        for status in [429, 503] {
            let text = written(&Response::from(Refusal::new(status, "later")), false);
            assert!(text.contains("\r\nRetry-After: 1\r\n"), "{text}");
        }
    }

    #[test]
    #[should_panic(expected = "holds a CR, LF or NUL")]
    fn a_header_value_cannot_write_another_header() {
        let _ = Response::text(200, "ok").header("X-Name", "bob\r\nSet-Cookie: session=stolen");
    }

    #[test]
    #[should_panic(expected = "is not an HTTP token")]
    fn a_header_name_must_be_a_token() {
        let _ = Response::text(200, "ok").header("X Name", "bob");
    }

    #[test]
    fn content_length_is_the_servers_to_write() {
        let text = written(&Response::text(200, "ok\n").header("Content-Length", "99"), false);
        assert_eq!(text.matches("Content-Length").count(), 1, "{text}");
        assert!(text.contains("Content-Length: 3\r\n"), "{text}");
    }

    #[test]
    fn no_content_and_not_modified_have_neither_length_nor_body() {
        for status in [204, 304] {
            let response = Response::text(status, "dropped").header("Content-Length", "7");
            for head_only in [false, true] {
                let text = written(&response, head_only);
                assert!(!text.contains("Content-Length"), "{text}");
                assert!(text.ends_with("Connection: close\r\n\r\n"), "{text}");
            }
        }
    }

    #[test]
    fn switching_protocols_has_no_body_headers() {
        let text = written(&Response::new(101).header("Upgrade", "websocket"), false);
        assert_eq!(text, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
    }
}
