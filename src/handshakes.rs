//! Connections still in their handshake: a budget of their own, overall and
//! per address, and the policy that decides who gives way when the server
//! is full.
//!
//! A thread-per-client server is most exposed before a client has said
//! what it wants: a socket that connects and then trickles its request
//! holds a thread and a connection slot for as long as the handshake
//! timeout allows, and a few hundred of them, from a few addresses, fill a
//! server. An event-loop server holds such a socket for the price of a few
//! bytes. So here, sockets still in their handshake are counted apart:
//!
//! * one address may have at most `max_per_address` of them that have
//!   lasted longer than a real client's handshake does (past it, 429): a
//!   burst of fast handshakes from one address, as from a busy NAT or a
//!   page that opens many sockets at once, is not held against it;
//! * when there are `max` of them, or the server is at its connection limit,
//!   a newcomer takes the place of the **oldest** connection still in its
//!   handshake that has lasted longer than a real client's handshake does
//!   on its path (over TLS the client's answers come a round trip later):
//!   it is answered 408 and closed ("shed"). If none has, the newcomer is
//!   refused 503.
//!
//! A real client's request head arrives at once, so the handshakes that
//! last are those that trickle: they give way, and established
//! connections, which have finished their handshake, never do. Nor does a
//! client of a burst that came all at once, its head whole, whose thread
//! has not read it yet: the burst's last comers are told to come back.

use std::collections::VecDeque;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use log::Level;

use crate::admission::client_key;
use crate::error::Refusal;
use crate::http::request::HEAD_GRACE;
use crate::hub::ConnectionId;
use crate::metrics::Metrics;
use crate::refusal_log::RefusalLog;

/// The handshakes under way, and their limits.
#[derive(Debug)]
pub(crate) struct Handshakes {
    book: Mutex<Book>,
    max: usize,
    /// 0: no per-address limit.
    max_per_address: usize,
    metrics: Arc<Metrics>,
    /// Sheds, summed up in the log as refusals at the door are.
    log: RefusalLog,
}

#[derive(Debug, Default)]
struct Book {
    /// The handshakes under way, oldest first.
    under_way: VecDeque<Entry>,
    /// Connections shed whose thread has not yet seen it.
    shed: Vec<ConnectionId>,
}

/// A handshake that has lasted this long is stalled: a real client's
/// request head arrives at once, and the rate rule gives a head this long
/// before it must keep up.
const STALLED: Duration = HEAD_GRACE;

#[derive(Debug)]
struct Entry {
    id: ConnectionId,
    /// `None` for a trusted proxy's connection, counted by the client it
    /// forwards once its request names it.
    address: Option<u128>,
    started: Instant,
    /// The socket, once its thread has it: what a shed wakes, in its TLS
    /// handshake as in its request head.
    socket: Option<Weak<TcpStream>>,
    /// Added to [`STALLED`] for this connection: over TLS the client's
    /// flights come a round trip after the server's (see
    /// [`HeadLimits::round_trip`](crate::http::request::HeadLimits)).
    round_trip: Duration,
}

impl Entry {
    /// Whether the handshake has lasted longer than a real client's would,
    /// on its path.
    fn stalled(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.started) >= STALLED + self.round_trip
    }
}

/// Whether `entry` has lasted [`STALLED`], the least any stalled one has:
/// the handshakes are in the order they began, so the stalled ones are
/// among those at the front for which this holds.
fn past_stalled(now: Instant) -> impl Fn(&&Entry) -> bool {
    move |entry| now.saturating_duration_since(entry.started) >= STALLED
}

/// One connection's place among the handshakes, held by its thread until
/// its request head has been read.
#[derive(Debug)]
pub(crate) struct Handshake {
    handshakes: Arc<Handshakes>,
    id: ConnectionId,
    /// When the connection was accepted: its handshake's duration counts
    /// from here.
    started: Instant,
    /// False once [`end`](Handshake::end) has taken it off the book.
    under_way: bool,
}

/// The connection was shed: it is to be answered 408 and closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shed;

impl Handshakes {
    /// At most `max` handshakes at once, and `max_per_address` from one
    /// client address (0: no limit).
    pub(crate) fn new(max: usize, max_per_address: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        let log = RefusalLog::new(
            Level::Warn,
            module_path!(),
            "connection",
            " still in its handshake, to make room for a newcomer",
        );
        Arc::new(Handshakes { book: Mutex::new(Book::default()), max, max_per_address, metrics, log })
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // Nothing under this lock can panic but an allocation failing.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the handshake of connection `id` from `address` (`None` for a
    /// trusted proxy's). Past the per-address limit of stalled handshakes,
    /// 429. Past `max`, room is made only once the connection has been
    /// admitted ([`make_room`](Handshakes::make_room)): a newcomer refused
    /// for other reasons must not cost another client its handshake.
    pub(crate) fn begin(
        self: &Arc<Self>,
        id: ConnectionId,
        address: Option<IpAddr>,
    ) -> Result<Handshake, Refusal> {
        let address = address.map(client_key);
        let now = Instant::now();
        {
            let mut book = self.book();
            if address.is_some() && self.max_per_address > 0 {
                let stalled = book
                    .under_way
                    .iter()
                    .take_while(past_stalled(now))
                    .filter(|entry| entry.address == address && entry.stalled(now))
                    .count();
                if stalled >= self.max_per_address {
                    return Err(Refusal::new(429, "too many stalled connections from your address"));
                }
            }
            book.under_way.push_back(Entry {
                id,
                address,
                started: now,
                socket: None,
                round_trip: Duration::ZERO,
            });
        }
        self.metrics.handshake_began();
        Ok(Handshake { handshakes: self.clone(), id, started: now, under_way: true })
    }

    /// Past the budget of handshakes under way, sheds the oldest but
    /// `newcomer`'s, which has been admitted. Returns false if it could not:
    /// the newcomer is then to be refused.
    pub(crate) fn make_room(&self, newcomer: ConnectionId) -> bool {
        let over = self.book().under_way.len() > self.max;
        !over || self.shed_oldest(newcomer)
    }

    /// Sheds the oldest stalled handshake but `newcomer`'s: takes it off
    /// the book and wakes its thread, which answers 408. Returns true if
    /// and only if there was one to shed.
    pub(crate) fn shed_oldest(&self, newcomer: ConnectionId) -> bool {
        let now = Instant::now();
        let shed = {
            let mut book = self.book();
            let Some(place) = book
                .under_way
                .iter()
                .take_while(past_stalled(now))
                .position(|entry| entry.id != newcomer && entry.stalled(now))
            else {
                return false;
            };
            let entry = book.under_way.remove(place).expect("Bug: a position found is in range");
            book.shed.push(entry.id);
            entry
        };
        self.metrics.handshake_ended();
        self.metrics.handshake_shed();
        self.log.note(408);
        // Its thread, if blocked reading, wakes with the end of the stream
        // (a TLS handshake fails with it) and finds itself shed; one that
        // has not read yet finds out when it first tries. It can still
        // write its answer.
        if let Some(tcp) = shed.socket.and_then(|socket| socket.upgrade()) {
            let _ = tcp.shutdown(Shutdown::Read);
        }
        true
    }
}

impl Handshakes {
    /// Logs the sheds counted so far, if a summary is due.
    pub(crate) fn sweep(&self) {
        self.log.sweep();
    }

    /// Logs what is left to log, as the server stops.
    pub(crate) fn finish(&self) {
        self.log.finish();
    }
}

impl Book {
    /// Takes connection `id` off the book: `Err(Shed)` if it had been shed.
    fn end(&mut self, id: ConnectionId) -> Result<(), Shed> {
        if let Some(place) = self.under_way.iter().position(|entry| entry.id == id) {
            self.under_way.remove(place);
            return Ok(());
        }
        match self.shed.iter().position(|shed| *shed == id) {
            Some(place) => {
                self.shed.swap_remove(place);
                Err(Shed)
            }
            None => Ok(()),
        }
    }
}

impl Handshake {
    /// When the connection was accepted.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Tells the book which socket this handshake reads, before anything
    /// is read from it (a TLS handshake included), so that a shed can wake
    /// it, and the round trip its client's answers take. `Err(Shed)` if the
    /// connection was shed already.
    pub(crate) fn reading(&self, tcp: &Arc<TcpStream>, round_trip: Duration) -> Result<(), Shed> {
        let mut book = self.handshakes.book();
        if let Some(entry) = book.under_way.iter_mut().find(|entry| entry.id == self.id) {
            entry.socket = Some(Arc::downgrade(tcp));
            entry.round_trip = round_trip;
            return Ok(());
        }
        if book.shed.contains(&self.id) { Err(Shed) } else { Ok(()) }
    }

    /// Returns true if and only if the connection has been shed: a TLS
    /// handshake that failed may have failed for that.
    pub(crate) fn is_shed(&self) -> bool {
        self.handshakes.book().shed.contains(&self.id)
    }

    /// The request head has been read, or the handshake failed: the
    /// connection leaves the handshakes. `Err(Shed)` if it had been shed
    /// meanwhile, which its answer must say.
    pub(crate) fn end(mut self) -> Result<(), Shed> {
        self.take_off()
    }

    fn take_off(&mut self) -> Result<(), Shed> {
        if !std::mem::take(&mut self.under_way) {
            return Ok(());
        }
        let ended = self.handshakes.book().end(self.id);
        if ended.is_ok() {
            self.handshakes.metrics.handshake_ended();
        }
        ended
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        let _ = self.take_off();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn handshakes(max: usize, max_per_address: usize) -> Arc<Handshakes> {
        Handshakes::new(max, max_per_address, Arc::new(Metrics::default()))
    }

    /// Makes the handshakes under way look `age` old.
    fn age(handshakes: &Handshakes, age: Duration) {
        for entry in &mut handshakes.book().under_way {
            entry.started -= age;
        }
    }

    #[test]
    fn one_address_gets_429_past_its_limit_of_stalled_handshakes_and_others_do_not() {
        let handshakes = handshakes(100, 2);
        // A burst of fresh handshakes is not held against an address.
        let burst: Vec<_> =
            (1..=5).map(|n| handshakes.begin(ConnectionId(n), ip("10.0.0.1")).unwrap()).collect();
        drop(burst);
        let _a = handshakes.begin(ConnectionId(11), ip("10.0.0.1")).unwrap();
        let b = handshakes.begin(ConnectionId(12), ip("10.0.0.1")).unwrap();
        age(&handshakes, STALLED);
        assert_eq!(handshakes.begin(ConnectionId(13), ip("10.0.0.1")).unwrap_err().status, 429);
        let _c = handshakes.begin(ConnectionId(14), ip("10.0.0.2")).unwrap();
        assert_eq!(b.end(), Ok(()));
        let _d = handshakes.begin(ConnectionId(15), ip("10.0.0.1")).unwrap();
    }

    #[test]
    fn past_the_budget_the_oldest_is_shed_once_it_has_stalled() {
        let handshakes = handshakes(2, 0);
        let oldest = handshakes.begin(ConnectionId(1), ip("10.0.0.1")).unwrap();
        let middle = handshakes.begin(ConnectionId(2), ip("10.0.0.2")).unwrap();
        let newest = handshakes.begin(ConnectionId(3), ip("10.0.0.3")).unwrap();
        assert_eq!(handshakes.book().under_way.len(), 3, "nobody is shed before the newcomer is admitted");
        // A burst, all fresh: the newcomer is the one refused.
        assert!(!handshakes.make_room(ConnectionId(3)));
        assert_eq!(newest.end(), Ok(()));
        let newest = handshakes.begin(ConnectionId(4), ip("10.0.0.3")).unwrap();
        age(&handshakes, STALLED);
        assert!(handshakes.make_room(ConnectionId(4)));
        assert_eq!(oldest.end(), Err(Shed));
        assert_eq!(middle.end(), Ok(()));
        assert_eq!(newest.end(), Ok(()));
    }

    #[test]
    fn a_handshake_on_a_long_path_is_stalled_a_round_trip_later() {
        let handshakes = handshakes(1, 1);
        let far = handshakes.begin(ConnectionId(1), ip("10.0.0.1")).unwrap();
        let round_trip = Duration::from_secs(2);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = Arc::new(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
        assert_eq!(far.reading(&tcp, round_trip), Ok(()));
        let near = handshakes.begin(ConnectionId(2), ip("10.0.0.2")).unwrap();
        age(&handshakes, STALLED);
        // Not held against its address, and not shed: the near one is.
        let _again = handshakes.begin(ConnectionId(3), ip("10.0.0.1")).unwrap();
        assert!(handshakes.shed_oldest(ConnectionId(3)));
        assert_eq!(near.end(), Err(Shed));
        age(&handshakes, round_trip);
        assert_eq!(handshakes.begin(ConnectionId(4), ip("10.0.0.1")).unwrap_err().status, 429);
        assert!(handshakes.shed_oldest(ConnectionId(3)));
        assert_eq!(far.end(), Err(Shed));
    }

    #[test]
    fn the_newcomer_never_sheds_itself() {
        let handshakes = handshakes(10, 0);
        let newcomer = handshakes.begin(ConnectionId(1), None).unwrap();
        assert!(!handshakes.shed_oldest(ConnectionId(1)));
        assert_eq!(newcomer.end(), Ok(()));
    }

    #[test]
    fn a_finished_handshake_is_never_shed() {
        let handshakes = handshakes(10, 0);
        let done = handshakes.begin(ConnectionId(1), ip("10.0.0.1")).unwrap();
        assert_eq!(done.end(), Ok(()));
        let _newcomer = handshakes.begin(ConnectionId(2), ip("10.0.0.2")).unwrap();
        assert!(!handshakes.shed_oldest(ConnectionId(2)), "only the newcomer is under way");
    }

    #[test]
    fn a_shed_address_gets_its_place_back() {
        let handshakes = handshakes(10, 1);
        let first = handshakes.begin(ConnectionId(1), ip("10.0.0.1")).unwrap();
        age(&handshakes, STALLED);
        assert!(handshakes.shed_oldest(ConnectionId(2)));
        let _again = handshakes.begin(ConnectionId(3), ip("10.0.0.1")).unwrap();
        drop(first);
    }
}
