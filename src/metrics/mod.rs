//! What the server counts, kept in a prometheus-client registry: `/metrics`
//! is the registry in the Prometheus text format, and `/stats` is that same
//! text reshaped as JSON ([`json`]), so the two cannot disagree.
//!
//! Counters and gauges are the one piece of state threads share without a
//! channel: each is a relaxed atomic that threads only ever add to
//! (prometheus-client's `Counter` and `Gauge`), so no thread waits on another
//! to count. Histograms are atomics too ([`histogram`]), and are observed
//! once per event, never once per frame per member. A series by label
//! ([`labels`]) is found under the family's read lock, so it is counted
//! once per connection, response or close, never per message.

mod backplane;
mod histogram;
mod json;
mod labels;

use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, prometheus_text};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Registry, Unit};
use tungstenite::protocol::frame::coding::CloseCode;

use self::backplane::Backplane;
use self::histogram::{BYTES, Histogram, SECONDS, Scale};
use self::labels::{ByLabel, close_code_label, refusal_label, status_label};

/// The `Content-Type` of `/metrics`: the Prometheus text format, 0.0.4.
pub(crate) const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// How a connection's handshake ended: the label of its duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeEnd {
    /// The 101 was written: a WebSocket connection.
    Upgraded,
    /// A plain HTTP request was answered, whatever the status.
    Http,
    /// Anything else: an upgrade refused; a request head malformed, too
    /// slow or never sent; a TLS handshake failed; a connection shed.
    Refused,
}

impl HandshakeEnd {
    fn label(self) -> &'static str {
        match self {
            HandshakeEnd::Upgraded => "upgraded",
            HandshakeEnd::Http => "http",
            HandshakeEnd::Refused => "refused",
        }
    }
}

/// Everything the server counts; see the module docs.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    connections_open: Gauge,
    connections_total: Counter,
    http_responses: ByLabel<Counter>,
    upgrades_refused: ByLabel<Counter>,
    messages_out: Counter,
    bytes_out: Counter,
    slow_consumer_closes: Counter,
    writes_stalled: Counter,
    write_timeouts: Counter,
    close_frames_sent: ByLabel<Counter>,
    close_frames_received: Counter,
    connections_dropped: Counter,
    threads_refused: Counter,
    /// Connection threads alive, serving a client or parked.
    threads: Gauge,
    threads_parked: Gauge,
    threads_started: Counter,
    threads_reused: Counter,
    handshakes: Gauge,
    connections_shed: Counter,
    connections_refused: ByLabel<Counter>,
    rate_limit_closes: Counter,
    tls_handshakes_failed: Counter,
    /// From accept to the 101 written, or to the answer or failure that
    /// ended the connection instead, by [`HandshakeEnd`].
    handshake_duration: ByLabel<Histogram>,
    /// From the hub taking room messages to their last byte written to a
    /// member: once per member and run of messages, not per message.
    room_delivery_latency: Histogram,
    /// The payload size of every message received.
    message_size: Histogram,
    /// Present when the node shares rooms through Redis.
    backplane: Option<Backplane>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(None)
    }
}

impl Metrics {
    /// Counters for a node that shares rooms through Redis as `node_id`.
    pub(crate) fn with_backplane(node_id: &str) -> Self {
        Metrics::new(Some(node_id))
    }

    fn new(node_id: Option<&str>) -> Self {
        let mut r = Registry::with_prefix("switchboard");
        r.register_collector(Box::new(Uptime(Instant::now())));
        let message_size = histogram(
            &mut r,
            "message_size",
            "Payload sizes of the text and binary messages received",
            Unit::Bytes,
            &BYTES,
        );
        // Its count and sum: one observation a message, not three counts.
        r.register_collector(Box::new(Received(message_size.clone())));
        Metrics {
            connections_open: gauge(&mut r, "connections_open", "WebSocket connections open now"),
            connections_total: counter(&mut r, "connections", "WebSocket connections opened"),
            messages_out: counter(&mut r, "messages_out", "Text and binary messages written to clients"),
            bytes_out: counter(
                &mut r,
                "bytes_out",
                "Bytes written to WebSocket clients, frame headers included",
            ),
            slow_consumer_closes: counter(
                &mut r,
                "slow_consumer_closes",
                "Clients closed (1008) because their outbox was full",
            ),
            writes_stalled: counter(
                &mut r,
                "writes_stalled",
                "Times a client's socket had no room and its outbox was handed to the drain thread",
            ),
            write_timeouts: counter(
                &mut r,
                "write_timeouts",
                "Clients hung up on for taking no bytes: for the write timeout once their socket was full, or for the write and close timeouts together (the kernel's TCP user timeout: a shut window, or no acknowledgement from a client gone without a word)",
            ),
            close_frames_received: counter(
                &mut r,
                "close_frames_received",
                "Close handshakes started by clients",
            ),
            connections_dropped: counter(
                &mut r,
                "connections_dropped",
                "WebSocket connections that ended without a close handshake",
            ),
            threads_refused: counter(
                &mut r,
                "threads_refused",
                "Connections answered 503 because no thread could be started for them",
            ),
            threads: gauge(
                &mut r,
                "threads",
                "Connection threads alive: serving a client, or parked waiting for the next one",
            ),
            threads_parked: gauge(
                &mut r,
                "threads_parked",
                "Connection threads parked, waiting for the next client",
            ),
            threads_started: counter(&mut r, "threads_started", "Connection threads started"),
            threads_reused: counter(
                &mut r,
                "threads_reused",
                "Clients served by a parked thread rather than a new one",
            ),
            handshakes: gauge(
                &mut r,
                "handshakes",
                "Connections still in their handshake: TLS and the request head not yet read",
            ),
            connections_shed: counter(
                &mut r,
                "connections_shed",
                "Connections shed from their handshake (408) to make room for a newcomer",
            ),
            rate_limit_closes: counter(
                &mut r,
                "rate_limit_closes",
                "Clients closed (1008) for sending faster than their message rate limit",
            ),
            tls_handshakes_failed: counter(
                &mut r,
                "tls_handshakes_failed",
                "TLS handshakes that failed or timed out (a client that hangs up before it says anything, as a TCP check does, is not counted)",
            ),
            handshake_duration: ByLabel::register(
                &mut r,
                "handshake_duration_seconds",
                "Time from accepting a connection to writing its 101, or to the answer or failure that \
                 ended it instead, by outcome: upgraded, http (a plain request answered) or refused",
                "outcome",
                || Histogram::new(&SECONDS),
            ),
            room_delivery_latency: histogram(
                &mut r,
                "room_delivery_latency",
                "Time from the hub taking room messages to their last byte written to a member's socket, \
                 once per member and run of messages sent together",
                Unit::Seconds,
                &SECONDS,
            ),
            message_size,
            http_responses: ByLabel::register(
                &mut r,
                "http_responses",
                "Plain HTTP responses, by status",
                "status",
                Counter::default,
            ),
            upgrades_refused: ByLabel::register(
                &mut r,
                "upgrades_refused",
                "WebSocket upgrade requests refused, by reason",
                "reason",
                Counter::default,
            ),
            connections_refused: ByLabel::register(
                &mut r,
                "connections_refused",
                "Connections refused at admission, before any thread: 503 at capacity or shutting down, 429 per address",
                "status",
                Counter::default,
            ),
            close_frames_sent: ByLabel::register(
                &mut r,
                "close_frames_sent",
                "Close frames sent to clients, by close code",
                "code",
                Counter::default,
            ),
            backplane: node_id.map(|node_id| Backplane::register(&mut r, node_id)),
            registry: r,
        }
    }

    /// `/metrics`: the registry in the Prometheus text format ([`CONTENT_TYPE`]).
    pub(crate) fn to_prometheus(&self) -> String {
        let mut text = String::with_capacity(8 * 1024);
        prometheus_text::encode(&mut text, &self.registry).expect("Bug: encoding into a String cannot fail");
        text
    }

    /// `/stats`: the same text as JSON.
    pub(crate) fn to_json(&self) -> String {
        json::from_text(&self.to_prometheus())
    }

    pub(crate) fn connection_opened(&self) {
        self.connections_open.inc();
        self.connections_total.inc();
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.dec();
    }

    pub(crate) fn open_connections(&self) -> u64 {
        u64::try_from(self.connections_open.get()).unwrap_or(0)
    }

    pub(crate) fn http_response(&self, status: u16) {
        self.http_responses.get(status_label(status)).inc();
    }

    pub(crate) fn upgrade_refused(&self, status: u16) {
        self.upgrades_refused.get(refusal_label(status)).inc();
    }

    pub(crate) fn message_in(&self, bytes: usize) {
        self.message_size.observe(bytes as u64);
    }

    pub(crate) fn written(&self, messages: usize, bytes: usize) {
        self.messages_out.inc_by(messages as u64);
        self.bytes_out.inc_by(bytes as u64);
    }

    /// Room messages reached a member's socket `latency` after the hub took
    /// them.
    pub(crate) fn room_delivered(&self, latency: Duration) {
        self.room_delivery_latency.observe_duration(latency);
    }

    pub(crate) fn slow_consumer(&self) {
        self.slow_consumer_closes.inc();
    }

    pub(crate) fn write_stalled(&self) {
        self.writes_stalled.inc();
    }

    pub(crate) fn write_timed_out(&self) {
        self.write_timeouts.inc();
    }

    pub(crate) fn close_sent(&self, code: CloseCode) {
        self.close_frames_sent.get(close_code_label(code)).inc();
    }

    pub(crate) fn close_received(&self) {
        self.close_frames_received.inc();
    }

    pub(crate) fn dropped(&self) {
        self.connections_dropped.inc();
    }

    pub(crate) fn thread_refused(&self) {
        self.threads_refused.inc();
    }

    pub(crate) fn thread_started(&self) {
        self.threads_started.inc();
    }

    pub(crate) fn thread_began(&self) {
        self.threads.inc();
    }

    pub(crate) fn thread_ended(&self) {
        self.threads.dec();
    }

    pub(crate) fn thread_parked(&self) {
        self.threads_parked.inc();
    }

    pub(crate) fn thread_unparked(&self) {
        self.threads_parked.dec();
    }

    pub(crate) fn thread_reused(&self) {
        self.threads_reused.inc();
    }

    pub(crate) fn handshake_began(&self) {
        self.handshakes.inc();
    }

    pub(crate) fn handshake_ended(&self) {
        self.handshakes.dec();
    }

    pub(crate) fn handshake_shed(&self) {
        self.connections_shed.inc();
    }

    /// A connection accepted at `accepted` ended its handshake as `end`.
    pub(crate) fn handshake_took(&self, end: HandshakeEnd, accepted: Instant) {
        self.handshake_duration.get(end.label()).observe_duration(accepted.elapsed());
    }

    pub(crate) fn connection_refused(&self, status: u16) {
        self.connections_refused.get(status_label(status)).inc();
    }

    pub(crate) fn rate_limited(&self) {
        self.rate_limit_closes.inc();
    }

    pub(crate) fn tls_handshake_failed(&self) {
        self.tls_handshakes_failed.inc();
    }
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    registry.register(name, help, counter.clone());
    counter
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let gauge = Gauge::default();
    registry.register(name, help, gauge.clone());
    gauge
}

fn histogram(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Unit,
    scale: &'static Scale,
) -> Histogram {
    let histogram = Histogram::new(scale);
    registry.register_with_unit(name, help, unit, histogram.clone());
    histogram
}

/// `uptime_seconds`, worked out whenever the registry is encoded.
#[derive(Debug)]
struct Uptime(Instant);

impl Collector for Uptime {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let seconds = ConstGauge::new(i64::try_from(self.0.elapsed().as_secs()).unwrap_or(i64::MAX));
        let metric = encoder.encode_descriptor(
            "uptime_seconds",
            "Seconds since the server started.",
            None,
            seconds.metric_type(),
        )?;
        seconds.encode(metric)
    }
}

/// `messages_in` and `bytes_in`: the count and the sum of `message_size`,
/// worked out whenever the registry is encoded.
#[derive(Debug)]
struct Received(Histogram);

impl Collector for Received {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let (messages, bytes) = self.0.totals();
        for (name, help, total) in [
            ("messages_in", "Text and binary messages received.", messages),
            ("bytes_in", "Payload bytes of the messages received.", bytes),
        ] {
            let total = ConstCounter::new(total);
            total.encode(encoder.encode_descriptor(name, help, None, total.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(metrics: &Metrics) -> serde_json::Value {
        serde_json::from_str(&metrics.to_json()).unwrap()
    }

    #[test]
    fn prometheus_text_names_every_figure() {
        let metrics = Metrics::default();
        metrics.connection_opened();
        metrics.upgrade_refused(404);
        metrics.upgrade_refused(599);
        metrics.close_sent(CloseCode::Size);
        metrics.http_response(200);
        let text = metrics.to_prometheus();
        assert!(text.contains("switchboard_connections_open 1\n"), "{text}");
        assert!(text.contains("# TYPE switchboard_connections_total counter\n"));
        assert!(text.contains("switchboard_connections_total 1\n"));
        assert!(text.contains("switchboard_upgrades_refused_total{reason=\"not_found\"} 1\n"));
        assert!(text.contains("switchboard_upgrades_refused_total{reason=\"other\"} 1\n"));
        assert!(text.contains("switchboard_close_frames_sent_total{code=\"1009\"} 1\n"));
        assert!(text.contains("switchboard_http_responses_total{status=\"200\"} 1\n"));
        assert!(text.contains("# HELP switchboard_uptime_seconds Seconds since the server started.\n"));
        assert!(
            text.contains("# TYPE switchboard_connections_refused_total counter\n"),
            "listed while empty"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("switchboard_"), "{line}");
        }
    }

    #[test]
    fn backplane_figures_show_only_with_a_backplane() {
        let plain = Metrics::default();
        assert!(!plain.to_prometheus().contains("backplane"));
        assert!(!plain.to_json().contains("backplane"));
        let metrics = Metrics::with_backplane("node-a");
        metrics.backplane_up(true);
        metrics.backplane_published(3);
        metrics.backplane_not_relayed(2);
        let text = metrics.to_prometheus();
        assert!(text.contains("switchboard_backplane_up 1\n"), "{text}");
        assert!(text.contains("switchboard_backplane_published_total 3\n"));
        assert!(text.contains("switchboard_backplane_not_relayed_total 2\n"));
        assert!(text.contains("switchboard_backplane_info{node_id=\"node-a\"} 1\n"));
        let json = json(&metrics);
        assert_eq!(json["backplane"]["node_id"], "node-a");
        assert_eq!(json["backplane"]["up"], true);
        assert_eq!(json["backplane"]["not_relayed"], 2);
        assert_eq!(json["backplane"]["subscriptions"], 0);
    }

    #[test]
    fn json_has_the_same_figures_under_the_keys_it_always_had() {
        let metrics = Metrics::default();
        metrics.message_in(5);
        metrics.written(2, 14);
        metrics.connection_opened();
        metrics.thread_began();
        metrics.connection_refused(503);
        let json = json(&metrics);
        assert_eq!(json["messages_in"], 1);
        assert_eq!(json["bytes_in"], 5);
        assert_eq!(json["messages_out"], 2);
        assert_eq!(json["bytes_out"], 14);
        assert_eq!(json["connections_open"], 1);
        assert_eq!(json["connections_total"], 1);
        assert_eq!(json["threads"], 1);
        assert_eq!(json["connections_refused"], serde_json::json!({ "503": 1 }));
        assert_eq!(json["http_responses"], serde_json::json!({}));
        assert_eq!(json["message_size_bytes"]["count"], 1);
        assert_eq!(json["message_size_bytes"]["buckets"]["16"], 1);
        assert_eq!(json["handshake_duration_seconds"], serde_json::json!({}));
        metrics.handshake_took(HandshakeEnd::Upgraded, Instant::now());
        let json: serde_json::Value = serde_json::from_str(&metrics.to_json()).unwrap();
        assert_eq!(json["handshake_duration_seconds"]["upgraded"]["count"], 1);
        assert_eq!(json["handshake_duration_seconds"]["upgraded"]["buckets"]["+Inf"], 1);
        assert!(json["uptime_seconds"].is_u64());
        for key in [
            "uptime_seconds",
            "connections_open",
            "connections_total",
            "http_responses",
            "upgrades_refused",
            "messages_in",
            "bytes_in",
            "messages_out",
            "bytes_out",
            "slow_consumer_closes",
            "writes_stalled",
            "write_timeouts",
            "close_frames_sent",
            "close_frames_received",
            "connections_dropped",
            "threads_refused",
            "threads",
            "threads_parked",
            "threads_started",
            "threads_reused",
            "handshakes",
            "connections_shed",
            "connections_refused",
            "rate_limit_closes",
            "tls_handshakes_failed",
        ] {
            assert!(json.get(key).is_some(), "no {key} in {json}");
        }
    }
}
