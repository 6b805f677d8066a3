//! Turning an HTTP request into a WebSocket: checking the upgrade request as
//! RFC 6455 §4.2.1 asks, and writing the 101 answer ourselves.
//!
//! The server reads and parses the request head itself (tungstenite's own
//! handshake cannot answer a plain GET), so it also answers the upgrade
//! itself, then hands the socket to tungstenite with
//! `WebSocket::from_partially_read`.

use tungstenite::handshake::derive_accept_key;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::auth::Credentials;
use crate::config::Access;
use crate::error::Refusal;
use crate::http::{Request, Response};
use crate::log_text::Untrusted;
use crate::origin;

/// What an upgrade request must pass before its handler is asked (the rules
/// of RFC 6455, the Origin check, and credentials when they are configured),
/// and the subprotocols it may be offered once accepted. Plain requests that
/// are private ([`Access::private_metrics`], [`Handler::needs_credentials`])
/// must pass its credential check too.
///
/// [`Handler::needs_credentials`]: crate::Handler::needs_credentials
#[derive(Debug)]
pub(crate) struct Gate {
    allowed_origins: Vec<String>,
    /// Replaced whole on a reload; an upgrade checks against the ones it
    /// found when it began.
    credentials: RwLock<Option<Arc<Credentials>>>,
    /// Whether `/metrics` and `/stats` need credentials; set with them.
    private_metrics: AtomicBool,
    subprotocols: Vec<String>,
}

impl Gate {
    pub(crate) fn new(access: &Access, subprotocols: &[String]) -> Self {
        Gate {
            allowed_origins: access.allowed_origins.clone(),
            credentials: RwLock::new(Credentials::new(access).map(Arc::new)),
            private_metrics: AtomicBool::new(access.private_metrics),
            subprotocols: subprotocols.to_vec(),
        }
    }

    /// The subprotocol to speak: the handler's choice, which the client must
    /// have offered, or else the first the client offers that the server
    /// speaks.
    pub(crate) fn subprotocol(
        &self,
        request: &Request,
        chosen: Option<String>,
    ) -> Result<Option<String>, Refusal> {
        match chosen {
            Some(chosen) if request.subprotocols().any(|offered| offered == chosen) => Ok(Some(chosen)),
            Some(chosen) => {
                log::error!(
                    "the handler chose subprotocol \"{}\", which the client did not offer",
                    Untrusted(&chosen)
                );
                Err(Refusal::new(500, "internal error"))
            }
            None => Ok(request
                .subprotocols()
                .find(|offered| self.subprotocols.iter().any(|s| s == offered))
                .map(str::to_owned)),
        }
    }

    fn credentials(&self) -> Option<Arc<Credentials>> {
        // A reader that panicked left nothing half-written: the lock guards one Arc.
        self.credentials.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// From now on, checks upgrades and private requests against the
    /// credentials of `access` (tokens, JWT key and name claim), and makes
    /// `/metrics` and `/stats` private as it says; upgrades under way keep
    /// theirs.
    pub(crate) fn set_credentials(&self, access: &Access) {
        let credentials = Credentials::new(access).map(Arc::new);
        *self.credentials.write().unwrap_or_else(PoisonError::into_inner) = credentials;
        self.private_metrics.store(access.private_metrics, Ordering::Relaxed);
    }

    /// The origins allowed, as the server started: a reload keeps them.
    pub(crate) fn allowed_origins(&self) -> &[String] {
        &self.allowed_origins
    }

    /// Whether `/metrics` and `/stats` need credentials.
    pub(crate) fn metrics_are_private(&self) -> bool {
        self.private_metrics.load(Ordering::Relaxed)
    }

    /// Checks `request` in that order (400/426, then 403 for the origin,
    /// then 401/403 for credentials) and records who the client is.
    pub(crate) fn check(&self, request: &mut Request) -> Result<(), Refusal> {
        check(request)?;
        origin::check(request, &self.allowed_origins)?;
        self.check_credentials(request)
    }

    /// Checks the credentials `request` presents, as for an upgrade (401
    /// without, 403 when wrong), and records who the client is; every
    /// request passes when no credentials are configured.
    pub(crate) fn check_credentials(&self, request: &mut Request) -> Result<(), Refusal> {
        if let Some(credentials) = self.credentials() {
            let proof = credentials.check(request)?;
            request.admit(proof);
        }
        Ok(())
    }
}

/// Checks that `request` is a well-formed WebSocket upgrade, so that the
/// handler is only asked about requests the server could accept.
pub(crate) fn check(request: &Request) -> Result<(), Refusal> {
    if !request.is_http11() {
        return Err(Refusal::bad_request("a WebSocket upgrade needs HTTP/1.1"));
    }
    // What follows the head is the WebSocket's: a body declared as well
    // would be read as frames by us and as the body by a proxy before us.
    // A length of zero ("0", or "00") declares none.
    if request.header("transfer-encoding").is_some() || request.declared_length().is_some_and(|n| n > 0) {
        return Err(Refusal::bad_request("a WebSocket upgrade has no body"));
    }
    // RFC 6455 §11.3.1 and §11.3.5: each may come once.
    for name in ["Sec-WebSocket-Key", "Sec-WebSocket-Version"] {
        if request.repeats(name) {
            return Err(Refusal::bad_request(format!("more than one {name} header")));
        }
    }
    if !request.has_token("connection", "upgrade") {
        return Err(Refusal::bad_request("missing `Connection: Upgrade`"));
    }
    if request.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(Refusal::new(426, "unsupported WebSocket version; this server speaks version 13"));
    }
    match request.header("sec-websocket-key") {
        Some(key) if is_valid_key(key.trim()) => Ok(()),
        Some(_) => Err(Refusal::bad_request("Sec-WebSocket-Key is not 16 bytes of base64")),
        None => Err(Refusal::bad_request("missing Sec-WebSocket-Key")),
    }
}

/// A key is 16 random bytes in base64: 22 characters and `==`. The 22nd
/// holds the last byte's two low bits and four zero bits, so it is one of
/// `A`, `Q`, `g` and `w`; any other decodes to more than 16 bytes.
fn is_valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() == 24
        && bytes.ends_with(b"==")
        && bytes[..21].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        && matches!(bytes[21], b'A' | b'Q' | b'g' | b'w')
}

/// The `101 Switching Protocols` answer to a request that passed [`check`],
/// naming the subprotocol agreed, if any.
pub(crate) fn switching_protocols(request: &Request, subprotocol: Option<&str>) -> Response {
    let key = request.header("sec-websocket-key").unwrap_or_default().trim();
    let response = Response::new(101)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Accept", derive_accept_key(key.as_bytes()));
    match subprotocol {
        Some(subprotocol) => response.header("Sec-WebSocket-Protocol", subprotocol),
        None => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_key_from_rfc_6455() {
        // RFC 6455 §1.3: this key must be answered with this accept value.
        assert!(is_valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn a_reload_replaces_the_credentials_and_whether_metrics_are_private() {
        use crate::auth::Token;
        use crate::http::request::tests::request;
        let bearer = |token: &str| request("/metrics", &[("Authorization", &format!("Bearer {token}"))]);
        let gate = Gate::new(
            &Access { tokens: vec![Token::new("old")], private_metrics: true, ..Access::default() },
            &[],
        );
        assert!(gate.metrics_are_private());
        let mut admitted = bearer("old");
        gate.check_credentials(&mut admitted).unwrap();
        assert_eq!(admitted.identity(), Some("token 1"));
        assert_eq!(gate.check_credentials(&mut request("/metrics", &[])).unwrap_err().status, 401);

        gate.set_credentials(&Access { tokens: vec![Token::new("new")], ..Access::default() });
        assert!(!gate.metrics_are_private());
        assert_eq!(gate.check_credentials(&mut bearer("old")).unwrap_err().status, 403);
        gate.check_credentials(&mut bearer("new")).unwrap();

        gate.set_credentials(&Access::default());
        gate.check_credentials(&mut request("/metrics", &[])).unwrap();
    }

    #[test]
    fn malformed_keys_are_rejected() {
        assert!(!is_valid_key("short=="));
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZQ!="));
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZQAA"));
    }
}
