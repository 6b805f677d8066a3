//! An event-loop thread: one mio `Poll` owning many client connections, handing their events to a scenario's driver.
//!
//! Holding 10,000 connections next to a server that spends two threads on
//! each of its own leaves no room for a thread per client connection on a
//! machine with about 32k threads, so a load thread owns thousands of
//! non-blocking sockets and sleeps in `epoll_wait` until one is ready.
//! Readiness is edge-triggered: after an event the loop reads until the
//! socket would block, or it would never hear of those bytes again.
//!
//! The loop does the connection work that every scenario shares (connect
//! gradually, upgrade, time out, read, flush, close at the end, count how
//! each connection ended); the scenario's [`Driver`] decides what to send
//! and what a message means.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};
use tungstenite::protocol::WebSocketConfig;

use crate::client::{Client, Ending, Step};
use crate::clock::{Clock, Nanos};
use crate::error::{Error, Result};
use crate::latency::Latency;
use crate::meter::Tally;
use crate::outcome::Endings;
use crate::run::{Phase, Shared};
use crate::target::Dial;

/// The token of the loop's waker; every other token is a slot number.
const WAKE: Token = Token(usize::MAX);
/// Readiness events taken from the kernel per `poll`.
const EVENTS: usize = 1024;
/// The most messages read from one connection per round: a server that
/// sends as fast as the loop reads must not keep it from the others, nor
/// from seeing that the run is over.
const READS_PER_ROUND: usize = 1024;

/// What the loop tells its driver with every call.
#[derive(Debug)]
pub struct Context {
    /// The run's phase as this round of the loop saw it.
    pub phase: Phase,
    /// When this round began (for scheduling, not for latency: read the clock for that).
    pub now: Instant,
    /// The run's clock, whose readings travel in the messages.
    pub clock: Clock,
    /// Counts for the shared meter.
    pub tally: Tally,
}

impl Context {
    /// Counts a message delivered now that was sent at `sent` (a reading of
    /// the run's clock), its latency into `latency`. Returns true if and
    /// only if it arrived during the measurement.
    pub fn delivered(&mut self, sent: Nanos, latency: &mut Latency) -> bool {
        let took = self.clock.since(sent);
        latency.record(took);
        self.tally.received += 1;
        self.tally.latency_ns += u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.phase == Phase::Measure
    }
}

/// A scenario's part in an event loop: what to do when a connection opens,
/// when a message arrives, when a connection ends, and on every round.
///
/// Slots are the positions in the loop's plan: slot `i` is the connection
/// to `plan[i]`. A driver keeps its per-connection state in its own vector
/// indexed by slot.
pub trait Driver {
    /// The connection in `slot` has completed its upgrade.
    fn on_open(&mut self, slot: usize, client: &mut Client, cx: &mut Context);
    /// A data message arrived on the connection in `slot`.
    fn on_message(&mut self, slot: usize, client: &mut Client, message: &[u8], cx: &mut Context);
    /// The connection in `slot` has ended and is gone.
    fn on_end(&mut self, slot: usize, ending: &Ending, cx: &mut Context);
    /// Called every round of the loop, after the events: time-driven work
    /// (start sending, publish at a rate). Returns when it next needs a call
    /// even if no event arrives.
    fn on_tick(&mut self, clients: &mut Clients<'_>, cx: &mut Context) -> Option<Instant>;
}

/// The loop's connections, as a driver sees them in [`Driver::on_tick`].
#[derive(Debug)]
pub struct Clients<'a> {
    slots: &'a mut [Option<Client>],
    touched: &'a mut Vec<usize>,
}

impl Clients<'_> {
    /// The open connection in `slot`, if it is open.
    pub fn open(&mut self, slot: usize) -> Option<&mut Client> {
        let client = self.slots.get_mut(slot)?.as_mut().filter(|c| c.is_open())?;
        // The loop checks touched connections for an ending after the tick.
        self.touched.push(slot);
        Some(client)
    }

    /// How many slots the loop has.
    pub fn len(&self) -> usize {
        self.slots.len()
    }
}

/// How the loop connects.
#[derive(Debug, Clone)]
pub struct Connecting {
    /// tungstenite's settings for every client connection.
    pub websocket: WebSocketConfig,
    /// A connection not open this long after its connect is given up.
    pub timeout: Duration,
    /// Connects and upgrades under way at once, per loop. A burst of
    /// thousands would overflow the server's listen backlog, and a dropped
    /// SYN costs a one-second retransmission.
    pub at_once: usize,
}

/// What a loop hands back when it stops.
#[derive(Debug)]
pub struct Finished<D> {
    /// The driver, with whatever it gathered.
    pub driver: D,
    /// Connect-to-open times of the connections that opened.
    pub upgrades: Latency,
    /// How the connections ended.
    pub endings: Endings,
}

/// One event-loop thread's state. Build it on the conductor's thread (so
/// the waker can be kept there), then move it into its thread and `run` it.
pub struct EventLoop<D> {
    poll: Poll,
    waker: Arc<Waker>,
    /// Per slot, where it connects.
    addrs: Vec<SocketAddr>,
    /// Per slot, the local address it connects from, if not the system's choice.
    sources: Vec<Option<IpAddr>>,
    urls: Vec<String>,
    slots: Vec<Option<Client>>,
    /// Slots in the order they started connecting, until they open or end.
    pending: VecDeque<usize>,
    /// Next slot to start connecting.
    next_slot: usize,
    connecting: usize,
    open: usize,
    closing: bool,
    settings: Connecting,
    driver: D,
    shared: Arc<Shared>,
    clock: Clock,
    upgrades: Latency,
    endings: Endings,
    touched: Vec<usize>,
    /// Slots left with input still unread at the end of a round.
    behind: Vec<usize>,
}

impl<D> std::fmt::Debug for EventLoop<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop").field("slots", &self.slots.len()).field("open", &self.open).finish()
    }
}

impl<D: Driver> EventLoop<D> {
    /// A loop that will open one connection per item of `dials`.
    ///
    /// # Errors
    ///
    /// [`Error::Poll`] if the system will not create the poller or waker.
    pub fn new(
        dials: &[Dial],
        settings: Connecting,
        driver: D,
        shared: Arc<Shared>,
        clock: Clock,
    ) -> Result<Self> {
        let poll = Poll::new().map_err(Error::Poll)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE).map_err(Error::Poll)?);
        Ok(EventLoop {
            poll,
            waker,
            addrs: dials.iter().map(|dial| dial.target.addr()).collect(),
            sources: dials.iter().map(|dial| dial.from).collect(),
            urls: dials.iter().map(Dial::url).collect(),
            slots: dials.iter().map(|_| None).collect(),
            pending: VecDeque::new(),
            next_slot: 0,
            connecting: 0,
            open: 0,
            closing: false,
            settings,
            driver,
            shared,
            clock,
            upgrades: Latency::new(),
            endings: Endings::default(),
            touched: Vec::new(),
            behind: Vec::new(),
        })
    }

    /// The waker that makes the loop look at the phase at once.
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// The thread body: runs until the phase is [`Phase::Stop`], or until
    /// every connection has closed in [`Phase::Close`].
    ///
    /// # Errors
    ///
    /// [`Error::Poll`] if waiting for events fails.
    pub fn run(mut self) -> Result<Finished<D>> {
        let mut events = Events::with_capacity(EVENTS);
        let mut ready = Vec::with_capacity(EVENTS);
        loop {
            let phase = self.shared.phase();
            let now = Instant::now();
            let mut cx = Context { phase, now, clock: self.clock, tally: Tally::default() };
            if phase == Phase::Stop {
                break;
            }
            if phase == Phase::Setup {
                self.start_connections(&mut cx);
            }
            if phase >= Phase::Close {
                if !self.closing {
                    self.close_all(&mut cx);
                }
                if self.open == 0 && self.connecting == 0 {
                    self.shared.meter.add(&mut cx.tally);
                    break;
                }
            }
            self.expire(&mut cx);
            let wake = self.tick(&mut cx);
            self.shared.meter.add(&mut cx.tally);

            let deadline = [wake, self.next_expiry()].into_iter().flatten().min();
            let timeout = match self.behind.is_empty() {
                true => deadline.map(|at| at.saturating_duration_since(Instant::now())),
                false => Some(Duration::ZERO),
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Poll(e)),
            }
            ready.clear();
            ready.extend(self.behind.drain(..).map(Token));
            for event in events.iter().filter(|event| event.token() != WAKE) {
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    if let Some(client) = self.slots.get_mut(event.token().0).and_then(Option::as_mut) {
                        client.readable(event.is_read_closed() || event.is_error());
                    }
                }
                ready.push(event.token());
            }
            // The phase may have moved on while the loop slept (that is what
            // the waker is for): handle the events in the phase they arrived in.
            let phase = self.shared.phase();
            let mut cx = Context { phase, now: Instant::now(), clock: self.clock, tally: Tally::default() };
            for &Token(slot) in &ready {
                self.ready(slot, &mut cx);
            }
            self.shared.meter.add(&mut cx.tally);
        }
        self.abandon_all();
        Ok(Finished { driver: self.driver, upgrades: self.upgrades, endings: self.endings })
    }

    /// Starts connecting more slots, keeping `at_once` under way.
    fn start_connections(&mut self, cx: &mut Context) {
        while self.connecting < self.settings.at_once && self.next_slot < self.slots.len() {
            let slot = self.next_slot;
            self.next_slot += 1;
            self.connecting += 1;
            let registry = self.poll.registry();
            match Client::connect(
                registry,
                Token(slot),
                self.sources[slot],
                self.addrs[slot],
                &self.urls[slot],
            ) {
                Ok(client) => {
                    self.slots[slot] = Some(client);
                    self.pending.push_back(slot);
                }
                Err(ending) => self.ended(slot, false, ending, cx),
            }
        }
    }

    /// Handles a readiness event on `slot`: connect and upgrade, flush, read.
    fn ready(&mut self, slot: usize, cx: &mut Context) {
        let Some(client) = self.slots.get_mut(slot).and_then(Option::as_mut) else { return };
        if !client.is_open() {
            match client.advance(self.settings.websocket) {
                Step::Waiting => {
                    self.settle(slot, cx);
                    return;
                }
                Step::Opened(took) => {
                    self.upgrades.record(took);
                    self.connecting -= 1;
                    self.open += 1;
                    cx.tally.opened += 1;
                    self.driver.on_open(slot, client, cx);
                }
            }
        }
        // Readiness is edge-triggered: whatever can be written or read now must
        // be, or no event will say so again. That includes bytes that came
        // with the 101 and wait in tungstenite's buffer.
        client.flush();
        let mut reads = 0;
        while let Some(message) = client.recv() {
            self.driver.on_message(slot, client, &message, cx);
            reads += 1;
            if reads == READS_PER_ROUND {
                self.behind.push(slot);
                break;
            }
        }
        self.settle(slot, cx);
    }

    /// Runs the driver's tick, then settles every connection it touched.
    fn tick(&mut self, cx: &mut Context) -> Option<Instant> {
        let mut clients = Clients { slots: &mut self.slots, touched: &mut self.touched };
        let wake = self.driver.on_tick(&mut clients, cx);
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for &slot in &touched {
            self.settle(slot, cx);
        }
        touched.clear();
        self.touched = touched;
        wake
    }

    /// If the connection in `slot` has ended, removes it and counts how.
    fn settle(&mut self, slot: usize, cx: &mut Context) {
        let Some(client) = self.slots.get_mut(slot).and_then(Option::as_mut) else { return };
        let opened = client.has_opened();
        if let Some(ending) = client.take_ending() {
            self.slots[slot] = None;
            self.ended(slot, opened, ending, cx);
        }
    }

    /// Books a connection that has ended: counts, and tells the driver.
    fn ended(&mut self, slot: usize, opened: bool, ending: Ending, cx: &mut Context) {
        if opened {
            self.open -= 1;
            cx.tally.closed += 1;
        } else {
            self.connecting -= 1;
        }
        if !ending.is_expected() {
            cx.tally.failed += 1;
            // The first one says what kind of trouble this is; the report counts the rest.
            if self.endings.troubles() == 0 {
                eprintln!("first trouble on {}: {ending}", self.urls[slot]);
            }
        }
        self.endings.record(&ending);
        self.driver.on_end(slot, &ending, cx);
    }

    /// Gives up on connections that have been connecting for too long.
    fn expire(&mut self, cx: &mut Context) {
        while let Some(&slot) = self.pending.front() {
            match self.slots[slot].as_mut() {
                Some(client) if !client.is_open() => {
                    if client.started() + self.settings.timeout > cx.now {
                        break;
                    }
                    client.time_out();
                    self.settle(slot, cx);
                }
                // Opened or ended since: no longer pending.
                _ => {}
            }
            self.pending.pop_front();
        }
    }

    /// When the oldest pending connection times out.
    fn next_expiry(&self) -> Option<Instant> {
        self.pending
            .iter()
            .filter_map(|&slot| self.slots[slot].as_ref())
            .find(|client| !client.is_open())
            .map(|client| client.started() + self.settings.timeout)
    }

    /// Begins the close handshake on every open connection and gives up on
    /// those still connecting.
    fn close_all(&mut self, cx: &mut Context) {
        self.closing = true;
        for slot in 0..self.slots.len() {
            if let Some(client) = self.slots[slot].as_mut() {
                if client.is_open() {
                    client.close();
                } else {
                    client.time_out();
                }
            }
            self.settle(slot, cx);
        }
    }

    /// At [`Phase::Stop`]: whatever is still open is dropped and counted.
    fn abandon_all(&mut self) {
        for slot in 0..self.slots.len() {
            if self.slots[slot].take().is_some() {
                self.endings.record(&Ending::Abandoned);
            }
        }
    }
}
