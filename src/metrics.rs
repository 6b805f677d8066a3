//! Atomic counters shared by every thread, and their two renderings:
//! Prometheus text for `/metrics` and JSON for `/stats`.
//!
//! Counters are the one piece of state threads share without a channel: each
//! is a relaxed atomic that threads only ever add to, so no thread waits on
//! another to count.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use serde::Serialize;
use tungstenite::protocol::frame::coding::CloseCode;

/// The HTTP statuses the server answers with, each with the label used for
/// refused upgrades. Anything else is counted as `other`.
const STATUSES: [(u16, &str); 13] = [
    (200, "ok"),
    (204, "no_content"),
    (400, "bad_request"),
    (401, "unauthorized"),
    (403, "forbidden"),
    (404, "not_found"),
    (405, "method_not_allowed"),
    (408, "timeout"),
    (426, "upgrade_required"),
    (429, "too_many_requests"),
    (431, "head_too_large"),
    (500, "internal_error"),
    (503, "unavailable"),
];

/// The close codes the server sends; anything else is counted as `other`.
const CLOSE_CODES: [u16; 7] = [1000, 1001, 1002, 1007, 1008, 1009, 1011];

/// Counters indexed by HTTP status.
#[derive(Debug, Default)]
struct ByStatus([AtomicU64; STATUSES.len() + 1]);

impl ByStatus {
    fn add(&self, status: u16) {
        let slot = STATUSES.iter().position(|(s, _)| *s == status).unwrap_or(STATUSES.len());
        self.0[slot].fetch_add(1, Relaxed);
    }

    fn snapshot(&self, label: impl Fn(u16, &'static str) -> String) -> BTreeMap<String, u64> {
        let names = STATUSES.iter().map(|&(status, name)| label(status, name)).chain(["other".to_owned()]);
        names.zip(&self.0).map(|(name, n)| (name, n.load(Relaxed))).filter(|(_, n)| *n > 0).collect()
    }
}

/// Counters indexed by close code.
#[derive(Debug, Default)]
struct ByCloseCode([AtomicU64; CLOSE_CODES.len() + 1]);

impl ByCloseCode {
    fn add(&self, code: CloseCode) {
        let code = u16::from(code);
        let slot = CLOSE_CODES.iter().position(|c| *c == code).unwrap_or(CLOSE_CODES.len());
        self.0[slot].fetch_add(1, Relaxed);
    }

    fn snapshot(&self) -> BTreeMap<String, u64> {
        let names = CLOSE_CODES.iter().map(u16::to_string).chain(["other".to_owned()]);
        names.zip(&self.0).map(|(name, n)| (name, n.load(Relaxed))).filter(|(_, n)| *n > 0).collect()
    }
}

/// Everything the server counts.
#[derive(Debug)]
pub(crate) struct Metrics {
    started: Instant,
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    http_responses: ByStatus,
    upgrades_refused: ByStatus,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    slow_consumer_closes: AtomicU64,
    writes_stalled: AtomicU64,
    write_timeouts: AtomicU64,
    close_frames_sent: ByCloseCode,
    close_frames_received: AtomicU64,
    connections_dropped: AtomicU64,
    threads_refused: AtomicU64,
    /// Connection threads alive, serving a client or parked.
    threads_alive: AtomicU64,
    threads_parked: AtomicU64,
    threads_started: AtomicU64,
    threads_reused: AtomicU64,
    handshakes: AtomicU64,
    connections_shed: AtomicU64,
    connections_refused: ByStatus,
    rate_limit_closes: AtomicU64,
    tls_handshakes_failed: AtomicU64,
    /// Present when the node shares rooms through Redis.
    backplane: Option<BackplaneCounters>,
}

/// What the Redis backplane counts; see [`Metrics::with_backplane`].
#[derive(Debug, Default)]
struct BackplaneCounters {
    node_id: String,
    /// 1 while both Redis connections are up, else 0.
    up: AtomicU64,
    published: AtomicU64,
    received: AtomicU64,
    not_relayed: AtomicU64,
    rejected: AtomicU64,
    reconnects: AtomicU64,
    subscriptions: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            http_responses: ByStatus::default(),
            upgrades_refused: ByStatus::default(),
            messages_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            slow_consumer_closes: AtomicU64::new(0),
            writes_stalled: AtomicU64::new(0),
            write_timeouts: AtomicU64::new(0),
            close_frames_sent: ByCloseCode::default(),
            close_frames_received: AtomicU64::new(0),
            connections_dropped: AtomicU64::new(0),
            threads_refused: AtomicU64::new(0),
            threads_alive: AtomicU64::new(0),
            threads_parked: AtomicU64::new(0),
            threads_started: AtomicU64::new(0),
            threads_reused: AtomicU64::new(0),
            handshakes: AtomicU64::new(0),
            connections_shed: AtomicU64::new(0),
            connections_refused: ByStatus::default(),
            rate_limit_closes: AtomicU64::new(0),
            tls_handshakes_failed: AtomicU64::new(0),
            backplane: None,
        }
    }
}

impl Metrics {
    /// Counters for a node that shares rooms through Redis as `node_id`.
    pub(crate) fn with_backplane(node_id: &str) -> Self {
        let backplane = BackplaneCounters { node_id: node_id.to_owned(), ..BackplaneCounters::default() };
        Metrics { backplane: Some(backplane), ..Metrics::default() }
    }

    /// Adds `n` to one backplane counter; does nothing without a backplane.
    fn backplane_add(&self, counter: impl Fn(&BackplaneCounters) -> &AtomicU64, n: u64) {
        if let Some(backplane) = &self.backplane {
            counter(backplane).fetch_add(n, Relaxed);
        }
    }

    pub(crate) fn backplane_up(&self, up: bool) {
        if let Some(backplane) = &self.backplane {
            backplane.up.store(u64::from(up), Relaxed);
        }
    }

    pub(crate) fn backplane_published(&self, n: usize) {
        self.backplane_add(|b| &b.published, n as u64);
    }

    pub(crate) fn backplane_received(&self) {
        self.backplane_add(|b| &b.received, 1);
    }

    pub(crate) fn backplane_not_relayed(&self, n: usize) {
        self.backplane_add(|b| &b.not_relayed, n as u64);
    }

    pub(crate) fn backplane_rejected(&self) {
        self.backplane_add(|b| &b.rejected, 1);
    }

    pub(crate) fn backplane_reconnected(&self) {
        self.backplane_add(|b| &b.reconnects, 1);
    }

    pub(crate) fn backplane_subscriptions(&self, rooms: usize) {
        if let Some(backplane) = &self.backplane {
            backplane.subscriptions.store(rooms as u64, Relaxed);
        }
    }

    /// Messages not relayed to other nodes so far.
    pub(crate) fn backplane_not_relayed_total(&self) -> u64 {
        self.backplane.as_ref().map_or(0, |b| b.not_relayed.load(Relaxed))
    }

    pub(crate) fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    pub(crate) fn open_connections(&self) -> u64 {
        self.connections_open.load(Relaxed)
    }

    pub(crate) fn http_response(&self, status: u16) {
        self.http_responses.add(status);
    }

    pub(crate) fn upgrade_refused(&self, status: u16) {
        self.upgrades_refused.add(status);
    }

    pub(crate) fn message_in(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn written(&self, messages: usize, bytes: usize) {
        self.messages_out.fetch_add(messages as u64, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn slow_consumer(&self) {
        self.slow_consumer_closes.fetch_add(1, Relaxed);
    }

    pub(crate) fn write_stalled(&self) {
        self.writes_stalled.fetch_add(1, Relaxed);
    }

    pub(crate) fn write_timed_out(&self) {
        self.write_timeouts.fetch_add(1, Relaxed);
    }

    pub(crate) fn close_sent(&self, code: CloseCode) {
        self.close_frames_sent.add(code);
    }

    pub(crate) fn close_received(&self) {
        self.close_frames_received.fetch_add(1, Relaxed);
    }

    pub(crate) fn dropped(&self) {
        self.connections_dropped.fetch_add(1, Relaxed);
    }

    pub(crate) fn thread_refused(&self) {
        self.threads_refused.fetch_add(1, Relaxed);
    }

    pub(crate) fn thread_started(&self) {
        self.threads_started.fetch_add(1, Relaxed);
    }

    pub(crate) fn thread_began(&self) {
        self.threads_alive.fetch_add(1, Relaxed);
    }

    pub(crate) fn thread_ended(&self) {
        self.threads_alive.fetch_sub(1, Relaxed);
    }

    pub(crate) fn thread_parked(&self) {
        self.threads_parked.fetch_add(1, Relaxed);
    }

    pub(crate) fn thread_unparked(&self) {
        self.threads_parked.fetch_sub(1, Relaxed);
    }

    pub(crate) fn thread_reused(&self) {
        self.threads_reused.fetch_add(1, Relaxed);
    }

    pub(crate) fn handshake_began(&self) {
        self.handshakes.fetch_add(1, Relaxed);
    }

    pub(crate) fn handshake_ended(&self) {
        self.handshakes.fetch_sub(1, Relaxed);
    }

    pub(crate) fn handshake_shed(&self) {
        self.connections_shed.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_refused(&self, status: u16) {
        self.connections_refused.add(status);
    }

    pub(crate) fn rate_limited(&self) {
        self.rate_limit_closes.fetch_add(1, Relaxed);
    }

    pub(crate) fn tls_handshake_failed(&self) {
        self.tls_handshakes_failed.fetch_add(1, Relaxed);
    }

    /// The figures as they are now.
    pub(crate) fn stats(&self) -> Stats {
        Stats {
            uptime_seconds: self.started.elapsed().as_secs(),
            connections_open: self.connections_open.load(Relaxed),
            connections_total: self.connections_total.load(Relaxed),
            http_responses: self.http_responses.snapshot(|status, _| status.to_string()),
            upgrades_refused: self.upgrades_refused.snapshot(|_, name| name.to_owned()),
            messages_in: self.messages_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            slow_consumer_closes: self.slow_consumer_closes.load(Relaxed),
            writes_stalled: self.writes_stalled.load(Relaxed),
            write_timeouts: self.write_timeouts.load(Relaxed),
            close_frames_sent: self.close_frames_sent.snapshot(),
            close_frames_received: self.close_frames_received.load(Relaxed),
            connections_dropped: self.connections_dropped.load(Relaxed),
            threads_refused: self.threads_refused.load(Relaxed),
            threads: self.threads_alive.load(Relaxed),
            threads_parked: self.threads_parked.load(Relaxed),
            threads_started: self.threads_started.load(Relaxed),
            threads_reused: self.threads_reused.load(Relaxed),
            handshakes: self.handshakes.load(Relaxed),
            connections_shed: self.connections_shed.load(Relaxed),
            connections_refused: self.connections_refused.snapshot(|status, _| status.to_string()),
            rate_limit_closes: self.rate_limit_closes.load(Relaxed),
            tls_handshakes_failed: self.tls_handshakes_failed.load(Relaxed),
            backplane: self.backplane.as_ref().map(|b| BackplaneStats {
                node_id: b.node_id.clone(),
                up: b.up.load(Relaxed) == 1,
                published: b.published.load(Relaxed),
                received: b.received.load(Relaxed),
                not_relayed: b.not_relayed.load(Relaxed),
                rejected: b.rejected.load(Relaxed),
                reconnects: b.reconnects.load(Relaxed),
                subscriptions: b.subscriptions.load(Relaxed),
            }),
        }
    }
}

/// The backplane's part of [`Stats`].
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BackplaneStats {
    node_id: String,
    up: bool,
    published: u64,
    received: u64,
    not_relayed: u64,
    rejected: u64,
    reconnects: u64,
    subscriptions: u64,
}

/// A snapshot of the counters: the body of `/stats`, and the figures behind
/// `/metrics`. Labelled counters list only the labels seen so far.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Stats {
    uptime_seconds: u64,
    connections_open: u64,
    connections_total: u64,
    http_responses: BTreeMap<String, u64>,
    upgrades_refused: BTreeMap<String, u64>,
    messages_in: u64,
    bytes_in: u64,
    messages_out: u64,
    bytes_out: u64,
    slow_consumer_closes: u64,
    writes_stalled: u64,
    write_timeouts: u64,
    close_frames_sent: BTreeMap<String, u64>,
    close_frames_received: u64,
    connections_dropped: u64,
    threads_refused: u64,
    threads: u64,
    threads_parked: u64,
    threads_started: u64,
    threads_reused: u64,
    handshakes: u64,
    connections_shed: u64,
    connections_refused: BTreeMap<String, u64>,
    rate_limit_closes: u64,
    tls_handshakes_failed: u64,
    /// Only on a node with a backplane.
    #[serde(skip_serializing_if = "Option::is_none")]
    backplane: Option<BackplaneStats>,
}

impl Stats {
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("Bug: stats always serialize")
    }

    /// The Prometheus text exposition format, version 0.0.4.
    pub(crate) fn to_prometheus(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut one = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = write!(out, "# HELP switchboard_{name} {help}\n# TYPE switchboard_{name} {kind}\n");
            let _ = writeln!(out, "switchboard_{name} {value}");
        };
        one("uptime_seconds", "gauge", "Seconds since the server started.", self.uptime_seconds);
        one("connections_open", "gauge", "WebSocket connections open now.", self.connections_open);
        one("connections_total", "counter", "WebSocket connections opened.", self.connections_total);
        one("messages_in_total", "counter", "Text and binary messages received.", self.messages_in);
        one("bytes_in_total", "counter", "Payload bytes of the messages received.", self.bytes_in);
        one(
            "messages_out_total",
            "counter",
            "Text and binary messages written to clients.",
            self.messages_out,
        );
        one(
            "bytes_out_total",
            "counter",
            "Bytes written to WebSocket clients, frame headers included.",
            self.bytes_out,
        );
        one(
            "slow_consumer_closes_total",
            "counter",
            "Clients closed (1008) because their outbox was full.",
            self.slow_consumer_closes,
        );
        one(
            "writes_stalled_total",
            "counter",
            "Times a client's socket had no room and its outbox was handed to the drain thread.",
            self.writes_stalled,
        );
        one(
            "write_timeouts_total",
            "counter",
            "Clients hung up on because their socket took no bytes for the write timeout.",
            self.write_timeouts,
        );
        one(
            "close_frames_received_total",
            "counter",
            "Close handshakes started by clients.",
            self.close_frames_received,
        );
        one(
            "connections_dropped_total",
            "counter",
            "WebSocket connections that ended without a close handshake.",
            self.connections_dropped,
        );
        one(
            "threads_refused_total",
            "counter",
            "Connections answered 503 because no thread could be started for them.",
            self.threads_refused,
        );
        one(
            "threads",
            "gauge",
            "Connection threads alive: serving a client, or parked waiting for the next one.",
            self.threads,
        );
        one(
            "threads_parked",
            "gauge",
            "Connection threads parked, waiting for the next client.",
            self.threads_parked,
        );
        one("threads_started_total", "counter", "Connection threads started.", self.threads_started);
        one(
            "threads_reused_total",
            "counter",
            "Clients served by a parked thread rather than a new one.",
            self.threads_reused,
        );
        one(
            "handshakes",
            "gauge",
            "Connections still in their handshake: TLS and the request head not yet read.",
            self.handshakes,
        );
        one(
            "connections_shed_total",
            "counter",
            "Connections shed from their handshake (408) to make room for a newcomer.",
            self.connections_shed,
        );
        one(
            "rate_limit_closes_total",
            "counter",
            "Clients closed (1008) for sending faster than their message rate limit.",
            self.rate_limit_closes,
        );
        one(
            "tls_handshakes_failed_total",
            "counter",
            "TLS handshakes that failed or timed out.",
            self.tls_handshakes_failed,
        );
        if let Some(b) = &self.backplane {
            one("backplane_up", "gauge", "1 while both Redis connections are up, else 0.", u64::from(b.up));
            one(
                "backplane_published_total",
                "counter",
                "Room messages published to Redis for the other nodes.",
                b.published,
            );
            one(
                "backplane_received_total",
                "counter",
                "Room messages received from other nodes and delivered here.",
                b.received,
            );
            one(
                "backplane_not_relayed_total",
                "counter",
                "Room messages delivered here but not to the other nodes: Redis down, slow, or failing.",
                b.not_relayed,
            );
            one(
                "backplane_rejected_total",
                "counter",
                "Messages on a room channel that were not a well-formed switchboard envelope.",
                b.rejected,
            );
            one(
                "backplane_reconnects_total",
                "counter",
                "Times the backplane came back up after being down.",
                b.reconnects,
            );
            one(
                "backplane_subscriptions",
                "gauge",
                "Room channels this node is subscribed to: the rooms it has members in.",
                b.subscriptions,
            );
            // Node ids are limited to characters that need no escaping.
            let _ = write!(
                out,
                "# HELP switchboard_backplane_info This node's backplane identity.\n\
                 # TYPE switchboard_backplane_info gauge\nswitchboard_backplane_info{{node_id=\"{}\"}} 1\n",
                b.node_id
            );
        }
        let mut labelled = |name: &str, help: &str, label: &str, values: &BTreeMap<String, u64>| {
            let _ = write!(out, "# HELP switchboard_{name} {help}\n# TYPE switchboard_{name} counter\n");
            for (key, value) in values {
                let _ = writeln!(out, "switchboard_{name}{{{label}=\"{key}\"}} {value}");
            }
        };
        labelled("http_responses_total", "Plain HTTP responses, by status.", "status", &self.http_responses);
        labelled(
            "upgrades_refused_total",
            "WebSocket upgrade requests refused, by reason.",
            "reason",
            &self.upgrades_refused,
        );
        labelled(
            "connections_refused_total",
            "Connections refused at admission, before any thread: 503 at capacity, 429 per address.",
            "status",
            &self.connections_refused,
        );
        labelled(
            "close_frames_sent_total",
            "Close frames sent to clients, by close code.",
            "code",
            &self.close_frames_sent,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_every_figure() {
        let metrics = Metrics::default();
        metrics.connection_opened();
        metrics.upgrade_refused(404);
        metrics.upgrade_refused(599);
        metrics.close_sent(CloseCode::Size);
        metrics.http_response(200);
        let text = metrics.stats().to_prometheus();
        assert!(text.contains("switchboard_connections_open 1\n"), "{text}");
        assert!(text.contains("switchboard_connections_total 1\n"));
        assert!(text.contains("switchboard_upgrades_refused_total{reason=\"not_found\"} 1\n"));
        assert!(text.contains("switchboard_upgrades_refused_total{reason=\"other\"} 1\n"));
        assert!(text.contains("switchboard_close_frames_sent_total{code=\"1009\"} 1\n"));
        assert!(text.contains("switchboard_http_responses_total{status=\"200\"} 1\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("switchboard_"), "{line}");
        }
    }

    #[test]
    fn backplane_figures_show_only_with_a_backplane() {
        let plain = Metrics::default().stats();
        assert!(!plain.to_prometheus().contains("backplane"));
        assert!(!plain.to_json().contains("backplane"));
        let metrics = Metrics::with_backplane("node-a");
        metrics.backplane_up(true);
        metrics.backplane_published(3);
        metrics.backplane_not_relayed(2);
        let text = metrics.stats().to_prometheus();
        assert!(text.contains("switchboard_backplane_up 1\n"), "{text}");
        assert!(text.contains("switchboard_backplane_published_total 3\n"));
        assert!(text.contains("switchboard_backplane_not_relayed_total 2\n"));
        assert!(text.contains("switchboard_backplane_info{node_id=\"node-a\"} 1\n"));
        let json: serde_json::Value = serde_json::from_str(&metrics.stats().to_json()).unwrap();
        assert_eq!(json["backplane"]["node_id"], "node-a");
        assert_eq!(json["backplane"]["up"], true);
        assert_eq!(json["backplane"]["not_relayed"], 2);
    }

    #[test]
    fn json_has_the_same_figures() {
        let metrics = Metrics::default();
        metrics.message_in(5);
        metrics.written(2, 14);
        let json: serde_json::Value = serde_json::from_str(&metrics.stats().to_json()).unwrap();
        assert_eq!(json["messages_in"], 1);
        assert_eq!(json["bytes_in"], 5);
        assert_eq!(json["messages_out"], 2);
        assert_eq!(json["bytes_out"], 14);
    }
}
