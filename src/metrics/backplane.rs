//! What the Redis backplane counts, on a node that has one.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::{Metrics, counter, gauge};

/// What the Redis backplane counts; see [`Metrics::with_backplane`].
#[derive(Debug)]
pub(super) struct Backplane {
    /// 1 while both Redis connections are up, else 0.
    up: Gauge,
    published: Counter,
    received: Counter,
    not_relayed: Counter,
    rejected: Counter,
    reconnects: Counter,
    subscriptions: Gauge,
}

impl Backplane {
    /// Registers the backplane's figures, and its identity: `node_id`.
    pub(super) fn register(r: &mut Registry, node_id: &str) -> Self {
        r.register(
            "backplane",
            "This node's backplane identity",
            Info::new([("node_id", node_id.to_owned())]),
        );
        Backplane {
            up: gauge(r, "backplane_up", "1 while both Redis connections are up, else 0"),
            published: counter(
                r,
                "backplane_published",
                "Room messages published to Redis for the other nodes",
            ),
            received: counter(
                r,
                "backplane_received",
                "Room messages received from other nodes and delivered here",
            ),
            not_relayed: counter(
                r,
                "backplane_not_relayed",
                "Room messages delivered here but not to the other nodes: Redis down, slow, or failing",
            ),
            rejected: counter(
                r,
                "backplane_rejected",
                "Messages on a room channel that were not a well-formed switchboard envelope",
            ),
            reconnects: counter(
                r,
                "backplane_reconnects",
                "Times the backplane came back up after being down",
            ),
            subscriptions: gauge(
                r,
                "backplane_subscriptions",
                "Room channels this node is subscribed to: the rooms it has members in",
            ),
        }
    }
}

impl Metrics {
    fn backplane(&self) -> Option<&Backplane> {
        self.backplane.as_ref()
    }

    pub(crate) fn backplane_up(&self, up: bool) {
        if let Some(backplane) = self.backplane() {
            backplane.up.set(i64::from(up));
        }
    }

    pub(crate) fn backplane_published(&self, n: usize) {
        if let Some(backplane) = self.backplane() {
            backplane.published.inc_by(n as u64);
        }
    }

    pub(crate) fn backplane_received(&self) {
        if let Some(backplane) = self.backplane() {
            backplane.received.inc();
        }
    }

    pub(crate) fn backplane_not_relayed(&self, n: usize) {
        if let Some(backplane) = self.backplane() {
            backplane.not_relayed.inc_by(n as u64);
        }
    }

    pub(crate) fn backplane_rejected(&self) {
        if let Some(backplane) = self.backplane() {
            backplane.rejected.inc();
        }
    }

    pub(crate) fn backplane_reconnected(&self) {
        if let Some(backplane) = self.backplane() {
            backplane.reconnects.inc();
        }
    }

    pub(crate) fn backplane_subscriptions(&self, rooms: usize) {
        if let Some(backplane) = self.backplane() {
            backplane.subscriptions.set(i64::try_from(rooms).unwrap_or(i64::MAX));
        }
    }

    /// Messages not relayed to other nodes so far.
    pub(crate) fn backplane_not_relayed_total(&self) -> u64 {
        self.backplane().map_or(0, |b| b.not_relayed.get())
    }
}
