//! An entry point for the fuzz target in `fuzz/`: the request-head parser
//! and the router, fed arbitrary bytes as a connection thread would be.
//! Compiled only with the `fuzzing` feature; not part of the public API.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::auth::{Secret, Token};
use crate::config::Access;
use crate::http::request::{HeadError, HeadLimits, HeadSource, read_head};
use crate::http::routes::{Route, route};
use crate::hub::{Hub, HubHandle};
use crate::metrics::Metrics;
use crate::rooms::RoomsHandler;
use crate::upgrade::Gate;

/// Bytes that arrive in one piece, then nothing.
struct Arrived<'a>(&'a [u8]);

impl Read for Arrived<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.0.read(buf)
    }
}

impl HeadSource for Arrived<'_> {
    fn set_deadline(&mut self, _: Instant) -> io::Result<()> {
        Ok(())
    }

    fn expect_more(&mut self) {}
}

/// What the router needs, made once per process: a running hub, and a gate
/// with every check switched on, and the access rules it was made from.
fn world() -> &'static (HubHandle, Gate, Arc<Metrics>, Access) {
    static WORLD: OnceLock<(HubHandle, Gate, Arc<Metrics>, Access)> = OnceLock::new();
    WORLD.get_or_init(|| {
        let metrics = Arc::new(Metrics::default());
        let (hub, handle) = Hub::new(64);
        std::thread::spawn(move || hub.run());
        let access = Access {
            allowed_origins: vec!["https://app.example".into()],
            tokens: vec![Token::new("token")],
            jwt_secret: Some(Secret::new("key")),
            jwt_previous_secrets: vec![Secret::new("previous key")],
            jwt_name_claim: None,
            jwt_audience: None,
            private_metrics: true,
            trusted_proxies: vec!["10.0.0.0/8".parse().expect("a valid network")],
        };
        let gate = Gate::new(&access, &["chat.v1".to_owned()]);
        (handle, gate, metrics, access)
    })
}

/// Parses `bytes` as a request head from a trusted proxy, routes it, and
/// renders the answer. Any panic is a bug.
pub fn parse_and_route(bytes: &[u8]) {
    let (hub, gate, metrics, access) = world();
    let peer: SocketAddr = "10.1.2.3:40000".parse().expect("a valid address");
    let limits = HeadLimits {
        max_size: 8192,
        max_headers: 64,
        deadline: Instant::now() + Duration::from_secs(5),
        min_rate: 0,
        round_trip: Duration::ZERO,
        first_read_timed: false,
    };
    let mut head = match read_head(&mut Arrived(bytes), peer, limits) {
        Ok(head) => head,
        Err(HeadError::Refused(refusal)) => {
            let _ = crate::http::Response::from(refusal).to_bytes(false);
            return;
        }
        Err(HeadError::Gone) => return,
    };
    // As the server does for a peer it trusts.
    if access.trusts(peer.ip()) {
        head.request.believe_forwarded_for(|address| access.trusts(address));
    }
    match route(&mut head.request, &RoomsHandler, gate, hub, metrics) {
        Route::Answer(response) => {
            let _ = response.to_bytes(head.request.method() == "HEAD");
        }
        Route::Upgrade(accept) => {
            let response = crate::upgrade::switching_protocols(&head.request, accept.subprotocol.as_deref());
            let _ = response.to_bytes(false);
        }
    }
}
