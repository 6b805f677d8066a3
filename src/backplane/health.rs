//! Whether the backplane is up: both Redis connections, logged once per change and shown as a gauge.
//!
//! The publisher and the subscriber each have a connection, and either can
//! fail on its own; the backplane is up while both are. The state is one
//! atomic byte that both threads update with compare-and-swap, so that the
//! gauge always matches the links, and so that of two threads failing
//! together only one says so: an outage is logged once when it begins and
//! once when it ends, not once per connection or per retry.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use log::{debug, error, info, warn};

use super::redaction::Passwords;
use super::{failure_text, refuses_credentials};
use crate::metrics::Metrics;

/// One of the backplane's two connections to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    Publisher,
    Subscriber,
}

impl Link {
    fn bit(self) -> u8 {
        match self {
            Link::Publisher => 0b01,
            Link::Subscriber => 0b10,
        }
    }
}

const BOTH_LINKS: u8 = 0b011;
/// The last thing logged was "up".
const SAID_UP: u8 = 0b100;
/// Something has been logged since the start.
const SAID_ANYTHING: u8 = 0b1000;
/// This outage's refused credentials have been logged.
const SAID_REFUSED: u8 = 0b1_0000;
/// Both links have been up together since the start: a later "up" is a
/// recovery.
const BEEN_UP: u8 = 0b10_0000;

/// The backplane's health; see the module docs.
///
/// Of two changes in the same instant, one from each thread, the log lines
/// may come out in either order; the gauge ends up right whatever the order.
#[derive(Debug)]
pub(crate) struct Health {
    state: AtomicU8,
    /// This node and where its Redis is (password redacted), for the log.
    redis: String,
    /// The URL's passwords, taken out of the errors logged: a server's
    /// answer may quote what it was sent.
    passwords: Passwords,
    metrics: Arc<Metrics>,
}

/// What one link's change means for the whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Both links are up for the first time, whether Redis was there at
    /// the start or came later.
    First,
    /// Both links are up again after an outage that followed a time up.
    Back,
    /// The first failure of an outage (or of the start).
    Down,
    /// Nothing to tell: the other link is still down, or already said so.
    Quiet,
}

/// The state after `link` came up, and what that means for the whole.
fn after_up(state: u8, link: Link) -> (u8, Change) {
    let mut state = state | link.bit();
    if state & BOTH_LINKS == BOTH_LINKS {
        // The outage is over; the next one's refusal is news again.
        state &= !SAID_REFUSED;
    }
    if state & BOTH_LINKS != BOTH_LINKS || state & SAID_UP != 0 {
        return (state, Change::Quiet);
    }
    let change = if state & BEEN_UP == 0 { Change::First } else { Change::Back };
    (state | SAID_UP | SAID_ANYTHING | BEEN_UP, change)
}

/// The state after `link` failed, and what that means for the whole.
fn after_down(state: u8, link: Link) -> (u8, Change) {
    let state = state & !link.bit();
    let said_down = state & SAID_ANYTHING != 0 && state & SAID_UP == 0;
    if said_down { (state, Change::Quiet) } else { ((state & !SAID_UP) | SAID_ANYTHING, Change::Down) }
}

impl Health {
    pub(crate) fn new(redis: String, passwords: Passwords, metrics: Arc<Metrics>) -> Self {
        Health { state: AtomicU8::new(0), redis, passwords, metrics }
    }

    /// `link` has connected (and, for the subscriber, subscribed).
    pub(crate) fn up(&self, link: Link) {
        let change = self.update(|state| after_up(state, link));
        self.show();
        match change {
            Change::First => info!("backplane up: {}", self.redis),
            Change::Back => {
                self.metrics.backplane_reconnected();
                info!(
                    "backplane up again: {}; {} room messages could not be relayed so far",
                    self.redis,
                    self.metrics.backplane_not_relayed_total()
                );
            }
            Change::Down | Change::Quiet => debug!("backplane: {link:?} connected: {}", self.redis),
        }
    }

    /// `link` has failed, or could not connect, because of `error`.
    pub(crate) fn failed(&self, link: Link, error: &redis::RedisError) {
        self.down(link, &failure_text(error), refuses_credentials(error));
    }

    /// `link` has failed, or could not connect, because of `error`;
    /// `refused` if that is Redis turning the node's credentials down.
    ///
    /// A refusal is logged as an error, once per outage, even when the
    /// outage was already told: an outage that began with Redis going away
    /// and goes on because it came back with another password will not end
    /// until someone puts the password right.
    pub(crate) fn down(&self, link: Link, error: &dyn Display, refused: bool) {
        let change = self.update(|state| after_down(state, link));
        self.show();
        let error = self.passwords.scrub(&error.to_string());
        let first_refusal =
            refused && self.state.fetch_or(SAID_REFUSED, Ordering::AcqRel) & SAID_REFUSED == 0;
        if first_refusal {
            error!(
                "backplane down: Redis refuses this node's credentials ({error}; {}); room messages \
                 are not relayed to other nodes until the password is put right; retrying with backoff",
                self.redis
            );
        } else if change == Change::Down {
            warn!(
                "backplane down: {error} ({}); local delivery goes on, room messages are not relayed \
                 to other nodes until Redis is back; retrying with backoff",
                self.redis
            );
        } else {
            debug!("backplane: {link:?} to {}: {error}", self.redis);
        }
    }

    /// Sets the gauge from the state. Each thread checks after setting it
    /// that the state has not changed meanwhile, so that whichever sets it
    /// last leaves the latest state shown, not the one it saw before the
    /// other thread's change.
    fn show(&self) {
        loop {
            let up = self.is_up();
            self.metrics.backplane_up(up);
            if self.is_up() == up {
                return;
            }
        }
    }

    /// Returns true if and only if both links are up, as last logged.
    pub(crate) fn is_up(&self) -> bool {
        self.state.load(Ordering::Acquire) & SAID_UP != 0
    }

    /// Applies `step` atomically; returns what it said the change means.
    fn update(&self, step: impl Fn(u8) -> (u8, Change)) -> Change {
        let mut change = Change::Quiet;
        let _ = self.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
            let (next, what) = step(state);
            change = what;
            Some(next)
        });
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Link::{Publisher, Subscriber};

    /// Runs the events from the start; returns what each one meant.
    fn replay(events: &[(Link, bool)]) -> Vec<Change> {
        let mut state = 0;
        let mut changes = Vec::new();
        for &(link, up) in events {
            let (next, change) = if up { after_up(state, link) } else { after_down(state, link) };
            state = next;
            changes.push(change);
        }
        changes
    }

    #[test]
    fn up_only_when_both_links_are_and_said_once() {
        use Change::*;
        let events = [(Publisher, true), (Subscriber, true), (Subscriber, false), (Publisher, false)];
        assert_eq!(replay(&events), [Quiet, First, Down, Quiet]);
        let events = [(Subscriber, true), (Publisher, true), (Publisher, false), (Publisher, true)];
        assert_eq!(replay(&events), [Quiet, First, Down, Back]);
    }

    #[test]
    fn a_redis_missing_at_start_is_said_once() {
        use Change::*;
        let events = [(Subscriber, false), (Publisher, false), (Subscriber, false), (Publisher, true)];
        assert_eq!(replay(&events), [Down, Quiet, Quiet, Quiet]);
        let events = [(Subscriber, false), (Publisher, true), (Subscriber, true)];
        assert_eq!(replay(&events), [Down, Quiet, First]);
    }

    #[test]
    fn the_first_connection_after_a_start_without_redis_is_no_recovery() {
        use Change::*;
        let events = [
            // Redis is missing at the start, then comes.
            (Publisher, false),
            (Subscriber, false),
            (Publisher, true),
            (Subscriber, true),
            // A real outage, and a real recovery.
            (Subscriber, false),
            (Subscriber, true),
        ];
        assert_eq!(replay(&events), [Down, Quiet, Quiet, First, Down, Back]);
        let health =
            Health::new("redis://test".into(), Passwords::default(), Arc::new(Metrics::with_backplane("n")));
        health.down(Publisher, &"connection refused", false);
        health.down(Subscriber, &"connection refused", false);
        health.up(Publisher);
        health.up(Subscriber);
        assert!(health.is_up());
        let json = health.metrics.to_json();
        assert!(json.contains("\"reconnects\": 0"), "a first connection counted as a reconnect: {json}");
        health.down(Publisher, &"connection reset", false);
        health.up(Publisher);
        let json = health.metrics.to_json();
        assert!(json.contains("\"reconnects\": 1"), "{json}");
    }

    #[test]
    fn the_gauge_and_reconnects_follow() {
        let health =
            Health::new("redis://test".into(), Passwords::default(), Arc::new(Metrics::with_backplane("n")));
        health.up(Publisher);
        assert!(!health.is_up());
        health.up(Subscriber);
        assert!(health.is_up());
        health.down(Subscriber, &"connection reset", false);
        assert!(!health.is_up());
        health.up(Subscriber);
        let json = health.metrics.to_json();
        assert!(json.contains("\"reconnects\": 1"), "{json}");
        assert!(json.contains("\"up\": true"), "{json}");
    }

    #[test]
    fn a_command_redis_did_not_answer_is_told_as_such() {
        let timeout = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::WouldBlock));
        let told = failure_text(&timeout);
        assert!(told.starts_with("Redis did not answer in time ("), "{told}");
        let reset = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(failure_text(&reset), reset.to_string());
    }

    #[test]
    fn a_refusal_is_told_once_per_outage() {
        let health =
            Health::new("redis://test".into(), Passwords::default(), Arc::new(Metrics::with_backplane("n")));
        let said = |health: &Health| health.state.load(Ordering::Acquire) & SAID_REFUSED != 0;
        health.down(Publisher, &"connection refused", false);
        assert!(!said(&health));
        health.down(Publisher, &"WRONGPASS", true);
        health.down(Subscriber, &"WRONGPASS", true);
        assert!(said(&health));
        health.up(Publisher);
        assert!(said(&health), "told once while the other link is still refused");
        health.up(Subscriber);
        assert!(!said(&health), "a later outage tells its own refusal");
    }
}
