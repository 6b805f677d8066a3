//! Pings and the idle close: every connection's quiet time, kept by the
//! drain thread.
//!
//! A connection's thread spends the connection's life blocked reading its
//! socket, and marks its outbox each time the client sends anything. The
//! drain thread looks at every connection once a tick (a quarter of the
//! ping interval): a client that has sent nothing, not even a pong, for the
//! ping interval is pinged, and one quiet for the idle timeout is closed
//! with 1001. So a client that talks is never pinged, and the connection's
//! thread reads with no timeout: a blocking read with a timeout arms a
//! kernel timer every time it waits, which cost 3% of the server's time
//! with a hundred echo clients.
//!
//! The same look closes a connection whose time is up ([`Expiry`]): past
//! its maximum lifetime, or its JWT's expiry.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use log::debug;

use super::outbox::{Closing, Outbox};
use crate::close::CloseReason;
use crate::frame::Frame;

/// Every connection's heartbeat; [`Heartbeats::tick`] is the drain
/// thread's turn at them.
#[derive(Debug)]
pub(crate) struct Heartbeats {
    ping_interval: Duration,
    idle: Duration,
    /// How often connections are looked at.
    every: Duration,
    next: Instant,
    beating: Vec<Beating>,
}

/// One connection, as its heartbeat knows it.
#[derive(Debug)]
struct Beating {
    outbox: Weak<Outbox>,
    quiet: Quiet,
    expiry: Option<Expiry>,
}

/// When a connection is to be closed whatever it does, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expiry {
    pub(crate) at: Instant,
    pub(crate) reason: CloseReason,
}

impl Expiry {
    /// A connection opened `now` may live `max`, less a part of up to a
    /// tenth chosen at random, so that clients that connected together are
    /// not all closed, and do not all reconnect, together.
    pub(crate) fn lifetime(now: Instant, max: Duration) -> Self {
        let random = RandomState::new().build_hasher().finish();
        let less = (random % 1000) as f64 / 10_000.0;
        Expiry { at: now + max.mul_f64(1.0 - less), reason: CloseReason::Lifetime }
    }

    /// A connection admitted with credentials good until `until` (a JWT's
    /// `exp` and its leeway).
    pub(crate) fn credentials(now: Instant, until: SystemTime) -> Self {
        // A century is as good as never, and an Instant cannot overflow.
        const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
        let left = until.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO).min(NEVER);
        Expiry { at: now + left, reason: CloseReason::CredentialsExpired }
    }
}

/// How long one client has been quiet, counted in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Quiet {
    silent: Duration,
    /// How quiet the client will have been at its next ping.
    pings_at: Duration,
}

/// What to do about a client, once a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Beat {
    Nothing,
    Ping,
    /// Quiet for the idle timeout: close it.
    Idle,
}

impl Heartbeats {
    /// Pings after `ping_interval` of quiet, closes after `idle`; the ping
    /// interval is less than the idle timeout (the configuration checks).
    pub(crate) fn new(ping_interval: Duration, idle: Duration) -> Self {
        let every = (ping_interval / 4).max(Duration::from_millis(1));
        Heartbeats { ping_interval, idle, every, next: Instant::now() + every, beating: Vec::new() }
    }

    /// Keeps the heartbeat of the connection `outbox` belongs to, until it
    /// is gone.
    pub(crate) fn watch(&mut self, outbox: Weak<Outbox>) {
        let quiet = Quiet { silent: Duration::ZERO, pings_at: self.ping_interval };
        self.beating.push(Beating { outbox, quiet, expiry: None });
    }

    /// Closes the connection `outbox` belongs to as `expiry` says; the
    /// earlier expiry wins if it has two.
    pub(crate) fn expire(&mut self, outbox: &Weak<Outbox>, expiry: Expiry) {
        if let Some(beating) = self.beating.iter_mut().rev().find(|beating| beating.outbox.ptr_eq(outbox)) {
            beating.expiry = Some(match beating.expiry {
                Some(earlier) if earlier.at <= expiry.at => earlier,
                _ => expiry,
            });
        }
    }

    /// The connections still open.
    pub(crate) fn open(&self) -> Vec<Arc<Outbox>> {
        self.beating.iter().filter_map(|beating| beating.outbox.upgrade()).collect()
    }

    /// When the next tick is due.
    pub(crate) fn due(&self) -> Instant {
        self.next
    }

    /// Pings the clients quiet for a ping interval and closes those quiet
    /// for the idle timeout, if a tick is due; forgets connections that are
    /// gone.
    pub(crate) fn tick(&mut self, now: Instant) {
        if now < self.next {
            return;
        }
        self.next = now + self.every;
        let (every, ping_interval, idle) = (self.every, self.ping_interval, self.idle);
        self.beating.retain_mut(|beating| {
            let Some(outbox) = beating.outbox.upgrade() else {
                return false;
            };
            if let Some(Expiry { reason, .. }) = beating.expiry.filter(|expiry| expiry.at <= now) {
                debug!("connection {}: {}; closing", outbox.id(), reason.text());
                let _ = outbox.close(Frame::close(Some(reason.frame())), Closing::Dismissed);
                return false;
            }
            match beating.quiet.ticked(outbox.take_heard(), every, ping_interval, idle) {
                Beat::Nothing => true,
                Beat::Ping => {
                    let _ = outbox.send(Frame::ping());
                    true
                }
                Beat::Idle => {
                    debug!("connection {}: quiet for {idle:?}; closing", outbox.id());
                    let close = Frame::close(Some(CloseReason::IdleTimeout.frame()));
                    let _ = outbox.close(close, Closing::Dismissed);
                    false
                }
            }
        });
    }
}

impl Quiet {
    /// A tick of `every` has passed; `heard` says whether the client sent
    /// anything during it.
    fn ticked(&mut self, heard: bool, every: Duration, ping_interval: Duration, idle: Duration) -> Beat {
        if heard {
            *self = Quiet { silent: Duration::ZERO, pings_at: ping_interval };
            return Beat::Nothing;
        }
        self.silent += every;
        if self.silent >= idle {
            Beat::Idle
        } else if self.silent >= self.pings_at {
            self.pings_at += ping_interval;
            Beat::Ping
        } else {
            Beat::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::recorded;
    use crate::metrics::Metrics;

    #[test]
    fn a_quiet_connection_is_pinged_then_closed_and_then_forgotten() {
        let (ping_interval, idle) = (Duration::from_millis(40), Duration::from_millis(100));
        let start = Instant::now();
        let mut heartbeats = Heartbeats::new(ping_interval, idle);
        let line = recorded(1, b"", 1000, Arc::new(Metrics::default()));
        heartbeats.watch(Arc::downgrade(&line.outbox));
        let tick = |n: u32| start + Duration::from_millis(10) * n + Duration::from_millis(1);
        // The tick it opened in counts for nothing: it may have had a
        // moment of it.
        for n in 1..=4 {
            heartbeats.tick(tick(n));
        }
        assert!(line.sink.bytes().is_empty(), "not pinged early");
        heartbeats.tick(tick(5));
        assert_eq!(line.sink.bytes(), Frame::ping().as_bytes(), "pinged after 40 ms of quiet");
        for n in 6..=11 {
            heartbeats.tick(tick(n));
        }
        let close = Frame::close(Some(CloseReason::IdleTimeout.frame()));
        assert!(line.sink.bytes().ends_with(close.as_bytes()), "closed after 100 ms");
        assert!(heartbeats.beating.is_empty(), "a closed connection is no longer watched");
    }

    #[test]
    fn a_connection_that_speaks_is_left_alone_and_a_gone_one_forgotten() {
        let start = Instant::now();
        let mut heartbeats = Heartbeats::new(Duration::from_millis(40), Duration::from_millis(100));
        let talker = recorded(1, b"", 1000, Arc::new(Metrics::default()));
        let leaver = recorded(2, b"", 1000, Arc::new(Metrics::default()));
        heartbeats.watch(Arc::downgrade(&talker.outbox));
        heartbeats.watch(Arc::downgrade(&leaver.outbox));
        drop(leaver);
        for n in 1..=20 {
            talker.outbox.hear();
            heartbeats.tick(start + Duration::from_millis(10) * n + Duration::from_millis(1));
        }
        assert!(talker.sink.bytes().is_empty(), "never pinged, never closed");
        assert_eq!(heartbeats.open().len(), 1);
    }

    #[test]
    fn an_expired_connection_is_closed_with_its_reason_the_earlier_expiry_first() {
        let start = Instant::now();
        let mut heartbeats = Heartbeats::new(Duration::from_millis(40), Duration::from_secs(60));
        let line = recorded(1, b"", 1000, Arc::new(Metrics::default()));
        let weak = Arc::downgrade(&line.outbox);
        heartbeats.watch(weak.clone());
        let at = |ms: u64| start + Duration::from_millis(ms);
        heartbeats.expire(&weak, Expiry { at: at(50), reason: CloseReason::CredentialsExpired });
        heartbeats.expire(&weak, Expiry { at: at(100), reason: CloseReason::Lifetime });
        heartbeats.tick(at(15));
        heartbeats.tick(at(30));
        assert!(line.sink.bytes().is_empty(), "not yet");
        line.outbox.hear();
        heartbeats.tick(at(60));
        let close = Frame::close(Some(CloseReason::CredentialsExpired.frame()));
        assert_eq!(line.sink.bytes(), close.as_bytes(), "closed however much it talks");
        assert!(heartbeats.beating.is_empty());
    }

    #[test]
    fn lifetimes_are_spread_over_their_last_tenth() {
        let now = Instant::now();
        let max = Duration::from_secs(1000);
        let ends: Vec<Instant> = (0..50).map(|_| Expiry::lifetime(now, max).at).collect();
        assert!(ends.iter().all(|end| *end <= now + max && *end >= now + max.mul_f64(0.9)));
        assert!(ends.iter().any(|end| *end != ends[0]), "not all at once");
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Ticks of 5 s, pings after 20 s of quiet, closes after 60 s.
    fn tick(quiet: &mut Quiet, heard: bool) -> Beat {
        quiet.ticked(heard, secs(5), secs(20), secs(60))
    }

    #[test]
    fn a_silent_client_is_pinged_every_interval_then_closed_on_time() {
        let mut quiet = Quiet { silent: Duration::ZERO, pings_at: secs(20) };
        let beats: Vec<Beat> = (0..12).map(|_| tick(&mut quiet, false)).collect();
        let pings: Vec<usize> =
            beats.iter().enumerate().filter(|(_, b)| **b == Beat::Ping).map(|(i, _)| i).collect();
        assert_eq!(pings, [3, 7], "at 20 s and 40 s of quiet");
        assert_eq!(beats[11], Beat::Idle, "at 60 s");
        assert!(beats[..11].iter().all(|b| *b != Beat::Idle));
    }

    #[test]
    fn a_client_that_answers_is_never_idle() {
        let mut quiet = Quiet { silent: Duration::ZERO, pings_at: secs(20) };
        for round in 0..10 {
            for _ in 0..3 {
                assert_eq!(tick(&mut quiet, false), Beat::Nothing, "round {round}");
            }
            assert_eq!(tick(&mut quiet, false), Beat::Ping);
            // The pong.
            assert_eq!(tick(&mut quiet, true), Beat::Nothing);
        }
    }

    #[test]
    fn a_client_that_talks_is_never_pinged() {
        let mut quiet = Quiet { silent: Duration::ZERO, pings_at: secs(20) };
        for _ in 0..100 {
            assert_eq!(tick(&mut quiet, true), Beat::Nothing);
        }
    }
}
