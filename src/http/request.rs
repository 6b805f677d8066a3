//! Reading an HTTP request head within a deadline and a size cap, parsed by httparse.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use crate::auth::{Proof, TokenDigest};
use crate::close::is_timeout;
use crate::error::Refusal;
use crate::stream::Socket;

/// An HTTP request head, as a [`Handler`](crate::Handler) sees it.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    path: String,
    query: Option<String>,
    http_minor: u8,
    headers: Vec<(String, String)>,
    peer: SocketAddr,
    client: IpAddr,
    identity: Option<String>,
    verified_name: Option<String>,
    credentials_expire: Option<SystemTime>,
    credential: Option<TokenDigest>,
}

impl Request {
    /// The method, such as `GET`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path without the query string, such as `/ws/lobby`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query string without the `?`, if there is one.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The value of the first header with this name (compared without regard
    /// to case). Bytes that are not UTF-8 are replaced with U+FFFD.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every header, in the order the client sent them.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Returns true if and only if the header `name` (any case) came more
    /// than once: for one that may come only once, the request is ambiguous.
    pub(crate) fn repeats(&self, name: &str) -> bool {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).nth(1).is_some()
    }

    /// The address the connection comes from: the client itself, or the
    /// proxy in front of it. An IPv4 peer of a dual-stack listener is given
    /// in its IPv4 form, not as `::ffff:a.b.c.d`.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The client's address: the peer's, or, when the peer is a trusted
    /// proxy ([`Access::trusted_proxies`](crate::Access::trusted_proxies)),
    /// the address it forwards in `X-Forwarded-For`; an IPv4 address is
    /// always in its IPv4 form.
    pub fn client_ip(&self) -> IpAddr {
        self.client
    }

    /// Who the client proved to be at the upgrade, when credentials are
    /// configured ([`Access`](crate::Access)): a JWT's `sub`, or the name of
    /// the token presented (`token <n>` for the n-th of
    /// [`Access::tokens`](crate::Access::tokens) when it has none).
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// The name a JWT vouches for, from its name claim
    /// ([`Access::jwt_name_claim`](crate::Access::jwt_name_claim), `sub` by
    /// default): the name to show others for this client, whatever it calls
    /// itself. `None` when the client presented a bearer token, which names
    /// no one, or no credentials at all.
    pub fn verified_name(&self) -> Option<&str> {
        self.verified_name.as_deref()
    }

    /// When the credentials the client presented stop being good: a JWT's
    /// `exp`, with its leeway. `None` for a bearer token, a JWT without
    /// `exp`, or no credentials.
    pub fn credentials_expire(&self) -> Option<SystemTime> {
        self.credentials_expire
    }

    /// The length of the body the head declares (`Content-Length`), which
    /// parsing has checked to be one number; `u64::MAX` for a number past
    /// it.
    pub(crate) fn declared_length(&self) -> Option<u64> {
        self.header("content-length").map(|length| length.trim().parse().unwrap_or(u64::MAX))
    }

    /// What the credentials that admitted the request stand on, if any
    /// were asked for: see [`Proof::credential`](crate::auth::Proof).
    pub(crate) fn credential(&self) -> Option<TokenDigest> {
        self.credential
    }

    /// Takes what the client's credentials proved.
    pub(crate) fn admit(&mut self, proof: Proof) {
        self.identity = Some(proof.identity);
        self.verified_name = proof.verified_name;
        self.credentials_expire = proof.expires;
        self.credential = Some(proof.credential);
    }

    /// Believes the `X-Forwarded-For` header, as the peer is a trusted proxy.
    /// The client is the rightmost address not itself a trusted proxy: those
    /// to its left were written by the client, or by proxies no one vouches
    /// for, and may be made up. Each entry is an address, with or without a
    /// port (`192.0.2.7:5000`, `[2001:db8::1]:5000`, `[2001:db8::1]`), and is
    /// taken in its canonical form: `::ffff:192.0.2.7` is `192.0.2.7`.
    pub(crate) fn believe_forwarded_for(&mut self, trusted: impl Fn(IpAddr) -> bool) {
        let mut client = None;
        for entry in self.list("x-forwarded-for").rev() {
            match forwarded_address(entry) {
                Some(address) if trusted(address) => continue,
                Some(address) => client = Some(address),
                // Nothing to the left of a malformed entry can be believed.
                None => {}
            }
            break;
        }
        if let Some(client) = client {
            self.client = client;
        }
    }

    /// The comma-separated items of every header `name`, trimmed, in order.
    fn list(&self, name: &str) -> impl DoubleEndedIterator<Item = &str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
    }

    /// Returns true if and only if the request is HTTP/1.1 (or a later 1.x).
    pub fn is_http11(&self) -> bool {
        self.http_minor >= 1
    }

    /// Returns true if and only if some header `name` lists `token` among its
    /// comma-separated values, compared without regard to case, as
    /// `Connection: keep-alive, Upgrade` lists `upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.list(name).any(|t| t.eq_ignore_ascii_case(token))
    }

    /// The subprotocols the client offers (`Sec-WebSocket-Protocol`), in its
    /// order of preference.
    pub fn subprotocols(&self) -> impl Iterator<Item = &str> {
        self.list("sec-websocket-protocol").filter(|p| !p.is_empty())
    }

    /// Returns true if and only if the client asks to switch to WebSocket
    /// (`Upgrade: websocket`). Whether the request is a *valid* upgrade is
    /// checked separately, so a broken one gets a 400 that says why.
    pub fn wants_websocket(&self) -> bool {
        self.has_token("upgrade", "websocket")
    }
}

/// The address in one `X-Forwarded-For` entry, canonical, or `None` if the
/// entry is not an address. Proxies write the client's port too, the IPv6
/// address then in brackets, and some bracket an IPv6 address without one.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let address = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|with_port| with_port.ip()))
        .ok()
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse::<Ipv6Addr>().ok().map(IpAddr::V6))?;
    Some(address.to_canonical())
}

/// A request head and whatever the client sent after it in the same reads
/// (the first WebSocket frames, if the client did not wait for the 101).
/// Handed out boxed: the connection's HTTP phase holds it while it routes,
/// and every byte of that frame stays resident, with the stack beneath it,
/// for as long as the connection lives (see `connection::serve`).
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) request: Request,
    pub(crate) rest: Vec<u8>,
}

/// Why no request head could be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The client sent something the server answers with this refusal
    /// (400 malformed, 408 too slow, 414 or 431 too large).
    Refused(Refusal),
    /// The client went away, or sent nothing at all: there is no one to answer.
    Gone,
}

/// A source of request bytes whose reads can be given a deadline.
pub(crate) trait HeadSource: Read {
    /// Makes the next reads give up at `deadline`.
    fn set_deadline(&mut self, deadline: Instant) -> io::Result<()>;

    /// Says that the head did not come whole, so its client is still
    /// sending: called once, before the second read.
    fn expect_more(&mut self);
}

impl HeadSource for Socket {
    fn set_deadline(&mut self, deadline: Instant) -> io::Result<()> {
        Socket::set_deadline(self, deadline)
    }

    fn expect_more(&mut self) {
        self.ack_at_once();
    }
}

/// The caps on a request head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    pub(crate) max_size: usize,
    pub(crate) max_headers: usize,
    /// When the whole head must be in, whatever the rate.
    pub(crate) deadline: Instant,
    /// The slowest the head may arrive after [`HEAD_GRACE`], in bytes per
    /// second; 0 for no such rule.
    pub(crate) min_rate: u32,
    /// The path's round trip, added to the grace: over TLS the client
    /// answers the server's flights, and on a path whose round trip is
    /// longer than the grace, a handshake could never finish. Zero where
    /// the head answers nothing (plain HTTP).
    pub(crate) round_trip: Duration,
    /// True if the source's first read already gives up by its deadline
    /// without being told: an accepted socket inherits the listener's read
    /// timeout (see [`first_read_timeout`]). A head that arrives in one
    /// read, the usual case, then costs no system call for its deadline.
    pub(crate) first_read_timed: bool,
}

/// How long a request head may take before the rate rule applies: a whole
/// head usually arrives at once, and a client on a slow link sends its
/// first segment within this.
pub(crate) const HEAD_GRACE: Duration = Duration::from_secs(1);

/// The read timeout an accepted socket should carry into its first read:
/// the handshake timeout, or with a rate rule the grace before it, which
/// is when a client that has sent nothing is given up on.
pub(crate) fn first_read_timeout(handshake: Duration, min_rate: u32) -> Duration {
    if min_rate == 0 { handshake } else { handshake.min(HEAD_GRACE) }
}

impl HeadLimits {
    /// When the head must be complete, now that `received` bytes of it have
    /// come since `started`: the grace and the round trip, and a second more
    /// for every `min_rate` bytes (Apache's mod_reqtimeout), never past
    /// `deadline`.
    pub(crate) fn due(&self, started: Instant, received: usize) -> Instant {
        if self.min_rate == 0 {
            return self.deadline;
        }
        let earned = Duration::from_secs_f64(received as f64 / f64::from(self.min_rate));
        (started + HEAD_GRACE + self.round_trip + earned).min(self.deadline)
    }
}

/// Reads and parses one request head. The whole head must arrive before
/// `limits.deadline`, however the client spreads its bytes over time, and
/// after the first second at least `limits.min_rate` bytes a second: a
/// client trickling one byte at a time is cut off long before the deadline.
#[inline(never)]
pub(crate) fn read_head(
    source: &mut impl HeadSource,
    peer: SocketAddr,
    limits: HeadLimits,
) -> Result<Box<Head>, HeadError> {
    // Read straight into the heap buffer: a buffer on this thread's stack
    // would stay resident for the whole life of a WebSocket connection. It
    // is larger than glibc's per-thread cache takes (1 KiB), so once freed
    // it goes back to the shared heap (it is the right size for the
    // WebSocket's read buffer, allocated next) rather than stay cached for
    // this thread, unused, for as long as the connection lives.
    let mut buf = Vec::with_capacity(HEAD_BUFFER);
    let started = Instant::now();
    loop {
        let due = limits.due(started, buf.len());
        if Instant::now() >= due {
            return Err(too_slow(&buf));
        }
        if !(buf.is_empty() && limits.first_read_timed) {
            source.set_deadline(due).map_err(|_| HeadError::Gone)?;
        }
        let start = buf.len();
        let room = (limits.max_size + 1 - start).min(HEAD_BUFFER);
        buf.resize(start + room, 0);
        let read = source.read(&mut buf[start..]);
        buf.truncate(start + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => return Err(HeadError::Gone),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return Err(too_slow(&buf)),
            Err(_) => return Err(HeadError::Gone),
        }
        if let Some((request, len)) = parse(&buf, peer, limits.max_headers)? {
            // The buffer holds a byte over the limit, to tell a head that
            // ends there from one that goes on.
            if len > limits.max_size {
                return Err(HeadError::Refused(too_large(&buf)));
            }
            let rest = buf.split_off(len);
            return Ok(Box::new(Head { request, rest }));
        }
        if buf.len() > limits.max_size {
            return Err(HeadError::Refused(too_large(&buf)));
        }
        if start == 0 {
            source.expect_more();
        }
    }
}

/// A head over the size limit: 414 when the request line alone is, so
/// that the client learns its target (a query string, most often) is what
/// is too long, else 431.
#[inline(never)]
fn too_large(buf: &[u8]) -> Refusal {
    // Empty lines before a request line are skipped (and counted); a
    // head of nothing else is too large, not its target.
    let (line, whole) = request_line(buf);
    if whole || line.is_empty() {
        Refusal::new(431, "request head too large")
    } else {
        Refusal::new(414, "request target too long")
    }
}

/// The request head is read in reads of at most this many bytes.
const HEAD_BUFFER: usize = 2048;

/// A client that sent nothing before the deadline is not answered (it may be
/// a port scan or a preconnect); one that started a request gets 408.
fn too_slow(buf: &[u8]) -> HeadError {
    if buf.is_empty() {
        HeadError::Gone
    } else {
        HeadError::Refused(Refusal::new(408, "request head not received in time"))
    }
}

/// Parses `buf` as far as it goes: `Ok(None)` while the head is incomplete.
fn parse(buf: &[u8], peer: SocketAddr, max_headers: usize) -> Result<Option<(Request, usize)>, HeadError> {
    let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::Refused(Refusal::new(431, "too many header fields")));
        }
        // HTTP/2.0 or 1.2, say: the status for a version the server does not
        // speak (RFC 9110 §15.6.6), rather than for a malformed head.
        // A version that comes in pieces (`HTTP/2`, then `.0`) is waited for.
        Err(httparse::Error::Version) if names_a_version(buf) => {
            let (_, whole) = request_line(buf);
            return if whole {
                Err(HeadError::Refused(Refusal::new(505, "this server speaks HTTP/1.1")))
            } else {
                Ok(None)
            };
        }
        Err(e) => {
            return Err(HeadError::Refused(Refusal::bad_request(format!("malformed request head: {e}"))));
        }
    };
    let method = parsed.method.unwrap_or_default();
    let (authority, target) = match parsed.path.unwrap_or("/") {
        // The asterisk form, the server as a whole (RFC 9112 §3.2.4): only
        // OPTIONS has it, and then gets the 405 any method but GET and HEAD
        // gets.
        "*" if method == "OPTIONS" => (None, "*"),
        target => split_target(target)?,
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (target, None),
    };
    let mut request = Request {
        method: method.to_owned(),
        path: if path.is_empty() { "/".to_owned() } else { path.to_owned() },
        query,
        http_minor: parsed.version.unwrap_or(0),
        headers: parsed
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
            .collect(),
        peer,
        // An IPv4 client of a dual-stack listener is known by its IPv4 address.
        client: peer.ip().to_canonical(),
        identity: None,
        verified_name: None,
        credentials_expire: None,
        credential: None,
    };
    check_framing(&request, authority.is_some()).map_err(HeadError::Refused)?;
    if let Some(authority) = authority {
        // RFC 9112 §3.2.2: the target's authority is the host meant, and
        // the Host header, which HTTP/1.1 still asks for, is not heeded.
        if let Some((_, host)) =
            request.headers.iter_mut().find(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            authority.clone_into(host);
        }
    }
    Ok(Some((request, len)))
}

/// The request line in `buf`, after the empty lines a client may send
/// first (RFC 9112 §2.2, which httparse skips too), without its line
/// ending, or as much of it as has come; and whether it is whole.
fn request_line(buf: &[u8]) -> (&[u8], bool) {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let (line, whole) = match buf[start..].iter().position(|&b| b == b'\n') {
        Some(end) => (&buf[start..start + end], true),
        None => (&buf[start..], false),
    };
    (line.strip_suffix(b"\r").unwrap_or(line), whole)
}

/// Whether the request line in `buf` is a method, a target and a version,
/// one space apart, the version `HTTP/` and two digits around a dot (RFC
/// 9112 §3), whichever it is; or, while the line is not whole, may still
/// be. A line with a space in its target ends in a version too, but is
/// malformed, not of another version.
fn names_a_version(buf: &[u8]) -> bool {
    const VERSION: &[u8] = b"HTTP/#.#";
    let (line, whole) = request_line(buf);
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    matches!(parts[..], [method, target, version] if !method.is_empty() && !target.is_empty()
        && (version.len() == VERSION.len() || !whole && version.len() < VERSION.len())
        && version.iter().zip(VERSION).all(|(&b, &p)| if p == b'#' { b.is_ascii_digit() } else { b == p }))
}

/// Checks what every request must get right whatever it asks for: which
/// host it is for, and where it ends. `target_names_host` when the target
/// is in the absolute form, whose authority the Host header stands aside
/// for.
fn check_framing(request: &Request, target_names_host: bool) -> Result<(), Refusal> {
    // RFC 9112 §3.2: an HTTP/1.1 request without a Host, with two (which
    // leave it open which site is meant, and a proxy before us may have
    // read the other), or with one that is no host is answered 400.
    if request.repeats("host") {
        return Err(Refusal::bad_request("more than one Host header"));
    }
    match request.header("host").map(str::trim) {
        None if request.is_http11() => return Err(Refusal::bad_request("missing Host header")),
        // An empty Host names no host, which is what an HTTP/1.0 request
        // without one says, and what an absolute target makes up for (RFC
        // 9112 §3.2.2); an HTTP/1.1 path alone then names none at all.
        Some("") if request.is_http11() && !target_names_host => {
            return Err(Refusal::bad_request("the Host header is empty"));
        }
        Some("") => {}
        Some(host) if !is_authority(host) => {
            return Err(Refusal::bad_request("the Host header is not a host and port"));
        }
        _ => {}
    }
    // RFC 9112 §6.3: a second Content-Length, which a proxy may read where
    // we read the first, is how one request is smuggled inside another, and
    // a length that is not a number leaves where the request ends to guess.
    if request.repeats("content-length") {
        return Err(Refusal::bad_request("more than one Content-Length header"));
    }
    let number = |length: &str| !length.is_empty() && length.bytes().all(|b| b.is_ascii_digit());
    if request.header("content-length").is_some_and(|length| !number(length.trim())) {
        return Err(Refusal::bad_request("the Content-Length header is not a number"));
    }
    Ok(())
}

/// Whether `authority` is a URI's authority without its userinfo (RFC
/// 3986 §3.2.2, §3.2.3): a name or an IPv4 address, or an IPv6 address in
/// brackets, then a port if a colon follows. The host may not be empty: an
/// `http` URI with an empty host is invalid (RFC 9110 §4.2.1), and every
/// target this server takes is one.
fn is_authority(authority: &str) -> bool {
    let (host_is_good, after_host) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let Some((address, after)) = bracketed.split_once(']') else { return false };
            // A zone (`[fe80::1%25eth0]`, RFC 6874) is no part of the address.
            let address = address.split_once("%25").map_or(address, |(address, _zone)| address);
            (address.parse::<std::net::Ipv6Addr>().is_ok(), after)
        }
        None => {
            let (name, after) = authority.split_at(authority.find(':').unwrap_or(authority.len()));
            let is_name = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b));
            (!name.is_empty() && is_name, after)
        }
    };
    // RFC 3986 lets a port be empty, and any digits; TCP's end at 65535.
    let port_is_good = |port: &str| {
        port.is_empty() || (port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok())
    };
    host_is_good && after_host.strip_prefix(':').map_or(after_host.is_empty(), port_is_good)
}

/// Splits a request target into its authority, when it has one, and the
/// path with its query. Servers must take the absolute form
/// (`http://host:port/path?query`) as well as the usual `/path?query`
/// (RFC 9112 §3.2.2), and RFC 6455 (§4.2.1) names it for the upgrade.
fn split_target(target: &str) -> Result<(Option<&str>, &str), HeadError> {
    let refused = |why: &'static str| HeadError::Refused(Refusal::bad_request(why));
    // A fragment is the client's own business, never sent (RFC 9110 §7.1;
    // RFC 9112 §3.2's forms have none).
    if target.contains('#') {
        return Err(refused("request target must not hold a fragment (#)"));
    }
    if target.starts_with('/') {
        return Ok((None, target));
    }
    let scheme_ends = target.find("://").ok_or_else(|| refused("request target must be an absolute path"))?;
    if !["http", "https"].iter().any(|scheme| target[..scheme_ends].eq_ignore_ascii_case(scheme)) {
        return Err(refused("request target must be an http or https URI, or an absolute path"));
    }
    let rest = &target[scheme_ends + 3..];
    let (authority, path) = rest.find(['/', '?']).map_or((rest, ""), |at| rest.split_at(at));
    // It stands for the Host header, and is held to the same rule; RFC
    // 9110 §4.2.4: userinfo in an http URI is an error.
    if !is_authority(authority) {
        return Err(refused("request target must name a host and port, and no user"));
    }
    // The path may be empty, before a query or not: it is then "/".
    Ok((Some(authority), path))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::time::Duration;

    /// A GET request for `target` from 127.0.0.1 with these headers, and
    /// a Host if they have none.
    pub(crate) fn request(target: &str, headers: &[(&str, &str)]) -> Request {
        let mut head: String = headers.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
        if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
            head.push_str("Host: t\r\n");
        }
        let text = format!("GET {target} HTTP/1.1\r\n{head}\r\n");
        parse(text.as_bytes(), "127.0.0.1:1".parse().unwrap(), 64).ok().flatten().unwrap().0
    }

    #[test]
    fn an_absolute_target_names_the_host_and_the_path() {
        let absolute = request("HTTP://chat.example:8080/ws/a?x=1", &[("Host", "elsewhere")]);
        assert_eq!((absolute.path(), absolute.query()), ("/ws/a", Some("x=1")));
        assert_eq!(absolute.header("host"), Some("chat.example:8080"), "the target's authority, not Host");
        let bare = request("https://chat.example?x=1", &[("Host", "a")]);
        assert_eq!(
            (bare.path(), bare.query(), bare.header("host")),
            ("/", Some("x=1"), Some("chat.example"))
        );
        for target in [
            "ftp://chat.example/",
            "http://user@chat.example/",
            "http:///ws",
            "ws/a",
            "*",
            "http://a\"<b>/ws",
            "/ws/a#b",
            "/healthz?x#y",
            "http://a/#b",
        ] {
            let text = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            let parsed = parse(text.as_bytes(), "127.0.0.1:1".parse().unwrap(), 64);
            assert!(matches!(parsed, Err(HeadError::Refused(Refusal { status: 400, .. }))), "{target}");
        }
    }

    /// Hands out its chunks one read at a time, then times out; counts the
    /// calls to `expect_more`.
    struct Trickle(VecDeque<Vec<u8>>, usize);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.pop_front() {
                Some(chunk) => {
                    let n = chunk.len().min(buf.len());
                    buf[..n].copy_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        self.0.push_front(chunk[n..].to_vec());
                    }
                    Ok(n)
                }
                None => Err(io::ErrorKind::WouldBlock.into()),
            }
        }
    }

    impl HeadSource for Trickle {
        fn set_deadline(&mut self, _: Instant) -> io::Result<()> {
            Ok(())
        }

        fn expect_more(&mut self) {
            self.1 += 1;
        }
    }

    fn read(chunks: &[&[u8]]) -> Result<Box<Head>, HeadError> {
        read_counting(chunks).0
    }

    /// Reads a head from `chunks`, and counts the calls to `expect_more`.
    fn read_counting(chunks: &[&[u8]]) -> (Result<Box<Head>, HeadError>, usize) {
        let mut source = Trickle(chunks.iter().map(|c| c.to_vec()).collect(), 0);
        let limits = HeadLimits {
            max_size: 512,
            max_headers: 8,
            deadline: Instant::now() + Duration::from_secs(5),
            min_rate: 0,
            round_trip: Duration::ZERO,
            first_read_timed: false,
        };
        (read_head(&mut source, "127.0.0.1:1".parse().unwrap(), limits), source.1)
    }

    #[test]
    fn a_head_in_pieces_asks_for_its_client_to_be_answered_at_once() {
        let (whole, calls) = read_counting(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]);
        assert!(whole.is_ok());
        assert_eq!(calls, 0, "a head that came whole is answered with the response");
        let (pieces, calls) = read_counting(&[b"GET / HTTP/1.1\r\n", b"Host: a\r\n", b"\r\n"]);
        assert!(pieces.is_ok());
        assert_eq!(calls, 1, "once, after the first piece");
    }

    fn status(result: Result<Box<Head>, HeadError>) -> u16 {
        match result {
            Err(HeadError::Refused(refusal)) => refusal.status,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn after_the_grace_each_byte_earns_its_share_of_a_second() {
        let started = Instant::now();
        let limits = HeadLimits {
            max_size: 8192,
            max_headers: 8,
            deadline: started + Duration::from_secs(10),
            min_rate: 500,
            round_trip: Duration::ZERO,
            first_read_timed: false,
        };
        assert_eq!(limits.due(started, 0), started + HEAD_GRACE);
        assert_eq!(limits.due(started, 250), started + HEAD_GRACE + Duration::from_millis(500));
        assert_eq!(
            limits.due(started, 100_000),
            started + Duration::from_secs(10),
            "never past the deadline"
        );
        let no_rule = HeadLimits { min_rate: 0, ..limits };
        assert_eq!(no_rule.due(started, 0), started + Duration::from_secs(10));
        let far = HeadLimits { round_trip: Duration::from_millis(1500), ..limits };
        assert_eq!(
            far.due(started, 250),
            started + HEAD_GRACE + Duration::from_millis(2000),
            "a long round trip is waited for"
        );
        assert_eq!(first_read_timeout(Duration::from_secs(10), 500), HEAD_GRACE);
        assert_eq!(first_read_timeout(Duration::from_secs(10), 0), Duration::from_secs(10));
        assert_eq!(first_read_timeout(Duration::from_millis(300), 500), Duration::from_millis(300));
    }

    #[test]
    fn head_split_across_reads_is_assembled() {
        let head = read(&[b"GET /ws/lob", b"by?x=1 HTTP/1.1\r\nHost: a\r\n", b"Upgrade: WebSocket\r\n\r\n"])
            .unwrap();
        assert_eq!(head.request.path(), "/ws/lobby");
        assert_eq!(head.request.query(), Some("x=1"));
        assert_eq!(head.request.header("host"), Some("a"));
        assert!(head.request.wants_websocket());
        assert!(head.request.is_http11());
        assert!(head.rest.is_empty());
    }

    #[test]
    fn bytes_after_the_head_are_kept() {
        let head = read(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\x81\x80"]).unwrap();
        assert_eq!(head.rest, b"\x81\x80");
    }

    #[test]
    fn connection_tokens_are_matched_in_lists() {
        let head = read(&[b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\r\n"]).unwrap();
        assert!(head.request.has_token("connection", "upgrade"));
        assert!(!head.request.has_token("connection", "close"));
    }

    #[test]
    fn an_http11_request_names_one_host_that_is_a_host() {
        let status_of = |head: &str| match read(&[head.as_bytes()]) {
            Ok(_) => 200,
            Err(HeadError::Refused(refusal)) => refusal.status,
            Err(other) => panic!("{other:?}"),
        };
        let good = ["a", "chat.example:8080", "127.0.0.1:1", "[::1]:9001", "[::1]", "xn--bcher-kva.example"];
        for host in good.into_iter().chain(["A.Example.", "a:", "[fe80::1%25eth0]:1", "a:00080", "a:65535"]) {
            assert_eq!(status_of(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")), 200, "{host:?}");
        }
        let bad =
            ["a b", "a/b", "a@b", "a\"b", "caf\u{e9}.example", "x:y", "x:1:2", "[::1", "::1]", "[::1]x"];
        let empty = ["", " ", ":80", ":"];
        for host in
            bad.into_iter().chain(["[zz]:1", "::1", "x:99999", "x:+1", "x:65536", "[::1]:x"]).chain(empty)
        {
            assert_eq!(status_of(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")), 400, "{host:?}");
        }
        assert_eq!(status_of("GET / HTTP/1.1\r\n\r\n"), 400, "no Host");
        assert_eq!(status_of("GET http://a/ HTTP/1.1\r\n\r\n"), 400, "no Host, whatever the target");
        assert_eq!(status_of("GET / HTTP/1.0\r\n\r\n"), 200, "HTTP/1.0 had no Host");
        assert_eq!(status_of("GET / HTTP/1.0\r\nHost:\r\n\r\n"), 200, "nor an empty one");
        assert_eq!(status_of("GET http://a/ HTTP/1.1\r\nHost:\r\n\r\n"), 200, "the target names the host");
        assert_eq!(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    }

    #[test]
    fn a_content_length_is_one_number() {
        let status_of =
            |length: &str| match read(&[format!("GET / HTTP/1.1\r\nHost: a\r\n{length}\r\n").as_bytes()]) {
                Ok(_) => 200,
                Err(HeadError::Refused(refusal)) => refusal.status,
                Err(other) => panic!("{other:?}"),
            };
        assert_eq!(status_of("Content-Length: 0\r\n"), 200);
        assert_eq!(status_of("Content-Length:  12 \r\n"), 200);
        for bad in ["abc", "1,2", "-1", "+1", "", "0x10", "1 2"] {
            assert_eq!(status_of(&format!("Content-Length: {bad}\r\n")), 400, "{bad:?}");
        }
        assert_eq!(status_of("Content-Length: 3\r\nContent-Length: 3\r\n"), 400);
    }

    #[test]
    fn another_version_is_505_and_a_garbled_one_400() {
        for version in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9"] {
            let head = format!("GET / {version}\r\nHost: a\r\n\r\n");
            assert_eq!(status(read(&[head.as_bytes()])), 505, "{version}");
            let after_empty_lines = format!("\r\n\n{head}");
            assert_eq!(status(read(&[after_empty_lines.as_bytes()])), 505, "{version} after empty lines");
            // In pieces: within the version, and between its CR and LF.
            for split in [head.find("HTTP/").unwrap() + 6, head.find('\n').unwrap()] {
                let (first, rest) = head.split_at(split);
                assert_eq!(
                    status(read(&[first.as_bytes(), rest.as_bytes()])),
                    505,
                    "{first:?}, then the rest"
                );
            }
        }
        for version in ["HTTP/1.10", "HTTQ/1.1", "HTTP/x.1"] {
            let head = format!("GET / {version}\r\nHost: a\r\n\r\n");
            assert_eq!(status(read(&[head.as_bytes()])), 400, "{version}");
        }
        // Of version 1.1, but with a space too many: malformed.
        for line in ["GET /ws/room name HTTP/1.1", "GET /healthz  HTTP/1.1", "GET  /healthz HTTP/1.1"] {
            let head = format!("{line}\r\nHost: a\r\n\r\n");
            assert_eq!(status(read(&[head.as_bytes()])), 400, "{line:?}");
        }
    }

    #[test]
    fn options_may_ask_about_the_whole_server() {
        let head = read(&[b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"]).unwrap();
        assert_eq!((head.request.method(), head.request.path()), ("OPTIONS", "*"));
        assert_eq!(status(read(&[b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"])), 400, "only OPTIONS");
    }

    #[test]
    fn garbage_is_400() {
        assert_eq!(status(read(&[b"\x16\x03\x01\x02\x00 hello\r\n\r\n"])), 400);
    }

    #[test]
    fn oversized_head_is_431() {
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(600));
        assert_eq!(status(read(&[long.as_bytes()])), 431);
    }

    #[test]
    fn a_request_line_over_the_limit_is_414() {
        let long = format!("GET /ws/a?{} HTTP/1.1\r\n\r\n", "a".repeat(600));
        assert_eq!(status(read(&[long.as_bytes()])), 414);
        let after_empty_lines = format!("\r\n{long}");
        assert_eq!(status(read(&[after_empty_lines.as_bytes()])), 414);
        assert_eq!(status(read(&["\r\n".repeat(300).as_bytes()])), 431, "empty lines alone");
    }

    #[test]
    fn too_many_headers_is_431() {
        let many: String = (0..9).map(|i| format!("X-{i}: 1\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(status(read(&[head.as_bytes()])), 431);
    }

    #[test]
    fn stalled_head_is_408_but_silence_is_not_answered() {
        assert_eq!(status(read(&[b"GET / HT"])), 408);
        assert!(matches!(read(&[]), Err(HeadError::Gone)));
    }

    #[test]
    fn forwarded_for_is_read_right_to_left_past_trusted_proxies() {
        let mut request = request("/", &[("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.0.0.2")]);
        request.believe_forwarded_for(|ip| ip.to_string().starts_with("10."));
        assert_eq!(request.client_ip().to_string(), "203.0.113.7");
    }

    #[test]
    fn forwarded_for_entries_may_carry_a_port() {
        for (entry, client) in [
            ("203.0.113.7:5000", "203.0.113.7"),
            ("[2001:db8::1]:5000", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
        ] {
            let mut request =
                request("/", &[("X-Forwarded-For", &format!("6.6.6.6, {entry}, 10.0.0.2:443"))]);
            request.believe_forwarded_for(|ip| ip.to_string().starts_with("10."));
            assert_eq!(request.client_ip().to_string(), client, "{entry}");
        }
    }

    #[test]
    fn forwarded_for_entries_are_canonical() {
        let mut request = request("/", &[("X-Forwarded-For", "::ffff:203.0.113.7, [::ffff:10.0.0.2]:80")]);
        request.believe_forwarded_for(|ip| ip == IpAddr::from([10, 0, 0, 2]));
        assert_eq!(request.client_ip(), IpAddr::from([203, 0, 113, 7]));
    }

    #[test]
    fn a_malformed_forwarded_for_entry_stops_the_walk() {
        for entry in ["2001:db8::1:5000:x", "[203.0.113.7]", "203.0.113.7:port", "[2001:db8::1", "unknown"] {
            let mut request = request("/", &[("X-Forwarded-For", &format!("6.6.6.6, {entry}"))]);
            request.believe_forwarded_for(|_| false);
            assert_eq!(request.client_ip().to_string(), "127.0.0.1", "{entry}");
        }
    }

    #[test]
    fn an_ipv4_mapped_peer_is_known_by_its_ipv4_address() {
        let text = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let peer = "[::ffff:192.0.2.7]:4000".parse().unwrap();
        let (request, _) = parse(text.as_bytes(), peer, 8).ok().flatten().unwrap();
        assert_eq!(request.client_ip(), IpAddr::from([192, 0, 2, 7]));
    }

    #[test]
    fn garbage_in_forwarded_for_is_ignored() {
        let mut request = request("/", &[("X-Forwarded-For", "not an address")]);
        request.believe_forwarded_for(|_| false);
        assert_eq!(request.client_ip().to_string(), "127.0.0.1");
    }
}
