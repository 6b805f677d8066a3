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
    /// Adds `n` to one of the backplane's counters, if there is a backplane.
    fn backplane_add(&self, counter: fn(&Backplane) -> &Counter, n: usize) {
        if let Some(backplane) = &self.backplane {
            counter(backplane).inc_by(n as u64);
        }
    }

    pub(crate) fn backplane_up(&self, up: bool) {
        if let Some(backplane) = &self.backplane {
            backplane.up.set(i64::from(up));
        }
    }

    pub(crate) fn backplane_published(&self, n: usize) {
        self.backplane_add(|b| &b.published, n);
    }

    pub(crate) fn backplane_received(&self) {
        self.backplane_add(|b| &b.received, 1);
    }

    pub(crate) fn backplane_not_relayed(&self, n: usize) {
        self.backplane_add(|b| &b.not_relayed, n);
    }

    pub(crate) fn backplane_rejected(&self) {
        self.backplane_add(|b| &b.rejected, 1);
    }

    pub(crate) fn backplane_reconnected(&self) {
        self.backplane_add(|b| &b.reconnects, 1);
    }

    pub(crate) fn backplane_subscriptions(&self, rooms: usize) {
        if let Some(backplane) = &self.backplane {
            backplane.subscriptions.set(i64::try_from(rooms).unwrap_or(i64::MAX));
        }
    }

    /// Messages not relayed to other nodes so far.
    pub(crate) fn backplane_not_relayed_total(&self) -> u64 {
        self.backplane.as_ref().map_or(0, |b| b.not_relayed.get())
    }
}
