//! `echo`: C connections to the echo path, each with exactly one message in flight; messages/s and round-trip latency.
//!
//! Each connection sends a message, waits for its echo, and sends the next,
//! so throughput is set by the server's round-trip time and by how many
//! connections keep it busy, never by a queue building up somewhere.

use std::time::{Duration, Instant};

use crate::client::{Client, Ending};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::event_loop::{Clients, Context, Driver, Finished};
use crate::latency::Latency;
use crate::payload::{Kind, Payload};
use crate::progress::Progress;
use crate::report::{Connections, Report, Throughput};
use crate::run::{Phase, Run, Shared};
use crate::scenario::{CLOSE_TIMEOUT, LoadSettings, Merged, deal, start_loops};
use crate::sequence::{Arrival, SequenceCounts, SequenceTracker};

/// What `echo` is told.
#[derive(Debug, Clone)]
pub struct EchoSettings {
    /// Connections, each with one message in flight.
    pub connections: usize,
    /// Bytes per message.
    pub size: usize,
    /// The echo path.
    pub path: String,
    /// The most messages sent in all, a backstop for the duration.
    pub max_messages: u64,
    /// The least time between two sends on one connection; `None` to send
    /// the next as soon as the echo of the last is back.
    pub interval: Option<Duration>,
}

/// Runs the scenario.
///
/// # Errors
///
/// [`Error::Setup`] if no connection opens; thread and poller failures.
pub fn run(load: &LoadSettings, echo: &EchoSettings) -> Result<Report> {
    let clock = Clock::start();
    let shared = Shared::new();
    let title = load.title(load.case.as_deref().unwrap_or("echo"));
    let mut run = Run::new(shared.clone(), Progress::new(title, "sent", "received"));
    let loops = deal(echo.connections, load.threads);
    let per_loop = (echo.max_messages / loops.len() as u64).max(1);
    let budget = per_loop * loops.len() as u64;
    let plans = loops
        .into_iter()
        .map(|streams| {
            (load.dials(&echo.path, &streams), EchoDriver::new(&streams, echo.size, per_loop, echo.interval))
        })
        .collect();
    start_loops(&mut run, "echo", load, plans, &shared, clock)?;

    let wanted = echo.connections as u64;
    run.enter(Phase::Setup);
    run.wait_until(load.setup_timeout, |r| r.opened + r.failed >= wanted);
    let opened = run.reading().opened;
    if opened == 0 {
        return Err(Error::Setup { what: "connections open", done: 0, wanted, waited: load.setup_timeout });
    }
    let measured = run.measure(load.duration, load.server_pid, |r| r.sent >= budget);
    run.wait_until(load.drain, |r| r.received >= r.sent);
    run.enter(Phase::Close);
    run.wait_until(CLOSE_TIMEOUT, |r| r.open() == 0);
    let finished = run.finish()?;

    let merged = Merged::from(&finished);
    let mut latency = Latency::new();
    let mut messages = SequenceCounts::default();
    let mut in_measure = 0;
    for Finished { driver, .. } in &finished {
        latency.merge(&driver.latency);
        in_measure += driver.received_in_measure;
        for conn in &driver.conns {
            messages += conn.tracker.counts(conn.next_seq);
        }
    }

    let description = format!(
        "{} connections to {}, {}-byte messages, one in flight each",
        echo.connections, echo.path, echo.size
    );
    let mut report = load.report("echo", "echo".to_owned(), &echo.path, description);
    report.measured_s = measured.seconds;
    report.cpu = measured.cpu;
    report.connections = Connections { wanted, opened, upgrade: merged.upgrades.summary() };
    report.throughput = Throughput::over(in_measure, &measured, "messages");
    report.paced = echo.interval.is_some();
    report.latency_of = "round trip".to_owned();
    report.latency = latency.summary();
    report.messages = messages;
    report.endings = merged.endings;
    Ok(report)
}

/// One echo connection's state.
#[derive(Debug)]
struct EchoConn {
    stream: u32,
    /// The number of the next message to send; also how many were sent.
    next_seq: u64,
    /// True while a message is out and its echo has not come back.
    waiting: bool,
    /// When the next message may go, under a rate: set once the echo of
    /// the last is back, cleared once it is sent.
    due: Option<Instant>,
    /// When the last message went.
    sent_at: Instant,
    tracker: SequenceTracker,
}

/// The echo scenario's side of one event loop.
#[derive(Debug)]
struct EchoDriver {
    conns: Vec<EchoConn>,
    size: usize,
    /// Messages this loop may still send.
    budget: u64,
    interval: Option<Duration>,
    started: bool,
    latency: Latency,
    received_in_measure: u64,
}

impl EchoDriver {
    fn new(streams: &[usize], size: usize, budget: u64, interval: Option<Duration>) -> Self {
        let conns = streams
            .iter()
            .map(|&stream| EchoConn {
                stream: u32::try_from(stream).unwrap_or(u32::MAX),
                next_seq: 0,
                waiting: false,
                due: None,
                sent_at: Instant::now(),
                tracker: SequenceTracker::new(),
            })
            .collect();
        EchoDriver {
            conns,
            size,
            budget,
            interval,
            started: false,
            latency: Latency::new(),
            received_in_measure: 0,
        }
    }

    /// Sends the connection's next message, if the budget allows.
    fn send_next(&mut self, slot: usize, client: &mut Client, cx: &mut Context) {
        if self.budget == 0 {
            return;
        }
        let conn = &mut self.conns[slot];
        let payload = Payload::data(conn.stream, conn.next_seq, cx.clock.now());
        client.send(payload.encode(self.size));
        conn.next_seq += 1;
        conn.waiting = true;
        conn.due = None;
        conn.sent_at = cx.now;
        self.budget -= 1;
        cx.tally.sent += 1;
    }
}

impl Driver for EchoDriver {
    fn on_open(&mut self, slot: usize, client: &mut Client, cx: &mut Context) {
        // A connection that opens late still joins in.
        if cx.phase == Phase::Measure {
            self.send_next(slot, client, cx);
        }
    }

    fn on_message(&mut self, slot: usize, client: &mut Client, message: &[u8], cx: &mut Context) {
        let conn = &mut self.conns[slot];
        let Some(payload) =
            Payload::decode(message).filter(|p| p.kind == Kind::Data && p.stream == conn.stream)
        else {
            conn.tracker.record_corrupt();
            return;
        };
        match conn.tracker.record(payload.seq, conn.next_seq) {
            Arrival::InOrder | Arrival::Late => {
                if cx.delivered(payload.sent, &mut self.latency) {
                    self.received_in_measure += 1;
                }
            }
            Arrival::Duplicate | Arrival::Implausible => {}
        }
        // Only the echo of the message in flight frees the connection to send.
        if conn.next_seq.checked_sub(1) == Some(payload.seq) && conn.waiting {
            conn.waiting = false;
            if cx.phase == Phase::Measure {
                match self.interval {
                    // Sent by a tick, once due.
                    Some(interval) if conn.sent_at + interval > cx.now => {
                        conn.due = Some(conn.sent_at + interval)
                    }
                    _ => self.send_next(slot, client, cx),
                }
            }
        }
    }

    fn on_end(&mut self, _slot: usize, _ending: &Ending, _cx: &mut Context) {}

    fn on_tick(&mut self, clients: &mut Clients<'_>, cx: &mut Context) -> Option<Instant> {
        if cx.phase == Phase::Measure && !self.started {
            self.started = true;
            for slot in 0..self.conns.len() {
                if let Some(client) = clients.open(slot) {
                    if !self.conns[slot].waiting {
                        self.send_next(slot, client, cx);
                    }
                }
            }
        }
        if cx.phase != Phase::Measure || self.interval.is_none() {
            return None;
        }
        for slot in 0..self.conns.len() {
            if self.conns[slot].due.is_some_and(|due| due <= cx.now) {
                if let Some(client) = clients.open(slot) {
                    self.send_next(slot, client, cx);
                }
            }
        }
        self.conns.iter().filter_map(|conn| conn.due).min()
    }
}
