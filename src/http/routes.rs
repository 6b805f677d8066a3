//! Where a request goes: to the built-in routes, to the handler, or to an upgrade.

use crate::error::Refusal;
use crate::handler::{Accept, Handler};
use crate::http::{Request, Response};
use crate::hub::HubHandle;
use crate::metrics::{self, Metrics};
use crate::upgrade::Gate;

/// What the server does with a request.
#[derive(Debug)]
pub(crate) enum Route<S> {
    /// Answer over HTTP and close.
    Answer(Response),
    /// Switch to WebSocket, as the handler accepted.
    Upgrade(Accept<S>),
}

/// Decides what to do with `request`. An upgrade request goes to the handler
/// once it has passed the [`Gate`]; a plain GET or HEAD goes to the
/// built-in routes, then to the handler, once it has passed the gate's
/// credential check if it is private (`/metrics` and `/stats` with
/// [`Access::private_metrics`](crate::Access::private_metrics), or what the
/// handler says [needs credentials](Handler::needs_credentials)).
#[inline(never)]
pub(crate) fn route<H: Handler>(
    request: &mut Request,
    handler: &H,
    gate: &Gate,
    hub: &HubHandle,
    metrics: &Metrics,
) -> Route<H::State> {
    let refuse = |refusal: Refusal| Route::Answer(Response::from(refusal));
    // A HEAD that asks for an upgrade is answered as a plain HEAD: it asks
    // for the headers of a GET's answer, a server may ignore an Upgrade
    // (RFC 9110 §7.8), and a 405 would contradict its own `Allow: GET, HEAD`.
    if request.wants_websocket() && request.method() != "HEAD" {
        if request.method() != "GET" {
            return refuse(Refusal::new(405, "a WebSocket upgrade must use GET"));
        }
        if let Err(refusal) = gate.check(request) {
            return refuse(refusal);
        }
        let mut accept = match handler.on_upgrade(request) {
            Ok(accept) => accept,
            Err(refusal) => return Route::Answer(checked(Response::from(refusal), REFUSAL)),
        };
        return match gate.subprotocol(request, accept.subprotocol.take()) {
            Ok(subprotocol) => {
                accept.subprotocol = subprotocol;
                Route::Upgrade(accept)
            }
            Err(refusal) => refuse(refusal),
        };
    }
    if request.method() != "GET" && request.method() != "HEAD" {
        return refuse(Refusal::new(405, "only GET and HEAD are served"));
    }
    let private = match request.path() {
        "/healthz" => false,
        "/metrics" | "/stats" => gate.metrics_are_private(),
        _ => handler.needs_credentials(request),
    };
    if private {
        if let Err(refusal) = gate.check_credentials(request) {
            return refuse(refusal);
        }
    }
    if let Some(response) = builtin(request, metrics) {
        return Route::Answer(response);
    }
    if let Some(response) = handler.on_request(request, hub) {
        return Route::Answer(checked(response, ANSWER));
    }
    match handler.on_upgrade(request) {
        Ok(_) => refuse(Refusal::new(426, "this endpoint speaks WebSocket only")),
        Err(refusal) => Route::Answer(checked(Response::from(refusal), REFUSAL)),
    }
}

/// The statuses a handler's answer may have: any that ends a request (an
/// informational one, 1xx, promises another answer).
const ANSWER: std::ops::RangeInclusive<u16> = 200..=599;
/// The statuses a handler's refusal may have: an error's (a 101 would tell
/// the client the connection switched protocols, a 200 that the upgrade it
/// was refused went well).
const REFUSAL: std::ops::RangeInclusive<u16> = 400..=599;

/// What the handler answered, or a 500 if its status is not in `allowed`.
/// A body given to a 204 or a 304 is dropped: the client reads none.
fn checked(response: Response, allowed: std::ops::RangeInclusive<u16>) -> Response {
    let status = response.status();
    if !allowed.contains(&status) {
        log::error!("the handler answered a request with status {status}; answering 500");
        return Response::from(Refusal::new(500, "the server could not answer"));
    }
    if response.is_bodiless() && !response.body_bytes().is_empty() {
        let length = response.body_bytes().len();
        log::warn!("the handler gave its {status} answer a body of {length} bytes; it is left out");
        return response.body(&b""[..]);
    }
    response
}

/// The routes every server has, whatever its handler.
fn builtin(request: &Request, metrics: &Metrics) -> Option<Response> {
    match request.path() {
        "/healthz" => Some(healthz()),
        "/metrics" => Some(prometheus(metrics)),
        "/stats" => Some(stats(metrics)),
        _ => None,
    }
}

/// `GET /healthz`: the process accepts and answers.
fn healthz() -> Response {
    Response::text(200, "ok\n")
}

/// `GET /metrics`: the registry in the Prometheus text format.
fn prometheus(metrics: &Metrics) -> Response {
    Response::new(200)
        .header("Content-Type", metrics::CONTENT_TYPE)
        .body(metrics.to_prometheus().into_bytes())
}

/// `GET /stats`: the same figures as JSON.
fn stats(metrics: &Metrics) -> Response {
    Response::json(metrics.to_json())
}
