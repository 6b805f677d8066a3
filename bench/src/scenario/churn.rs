//! `churn`: W workers that connect, upgrade, exchange one echo and close, over and over; handshakes/s.
//!
//! This is the cost of a connection's whole life: TCP setup, the HTTP
//! upgrade, (for a thread-per-connection server) starting and ending its
//! threads, one message each way, and the close handshake. A worker is a
//! thread here: a few workers doing one thing at a time read best as
//! straight-line blocking code, and every blocking call has a timeout.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use crate::client::{Ending, Side};
use crate::clock::Clock;
use crate::error::Result;
use crate::latency::Latency;
use crate::meter::Tally;
use crate::outcome::Endings;
use crate::payload::{Kind, Payload};
use crate::progress::Progress;
use crate::report::{Connections, Report, Throughput};
use crate::run::{Phase, Run, Shared};
use crate::scenario::LoadSettings;
use crate::sequence::{SequenceCounts, SequenceTracker};
use crate::source::{self, Sources};

/// After a failed cycle, a worker waits this long, so that a server that
/// refuses connections is not hammered in a tight loop.
const BACKOFF: Duration = Duration::from_millis(10);

/// What `churn` is told.
#[derive(Debug, Clone)]
pub struct ChurnSettings {
    /// Worker threads, each with one connection at a time.
    pub workers: usize,
    /// The echo path.
    pub path: String,
    /// Bytes in the one message of each cycle.
    pub size: usize,
    /// The most cycles in all, a backstop for the duration.
    pub max_cycles: u64,
    /// The bound on each connect, read and write.
    pub io_timeout: Duration,
    /// Cycles per second, all workers together, at most; `None` for each
    /// worker's next cycle as soon as the last has ended.
    pub rate: Option<f64>,
}

/// Runs the scenario.
///
/// # Errors
///
/// Thread failures.
pub fn run(load: &LoadSettings, churn: &ChurnSettings) -> Result<Report> {
    let clock = Clock::start();
    let shared = Shared::new();
    let title = load.title(load.case.as_deref().unwrap_or("churn"));
    let mut run = Run::new(shared.clone(), Progress::new(title, "cycles", "completed"));
    let per_worker = (churn.max_cycles / churn.workers as u64).max(1);
    let budget = per_worker * churn.workers as u64;
    for id in 0..churn.workers {
        let worker = Worker {
            id,
            workers: churn.workers,
            stream: u32::try_from(id).unwrap_or(u32::MAX),
            addr: load.target.addr(),
            sources: load.sources.clone(),
            url: load.target.url(&churn.path),
            websocket: WebSocketConfig::default().read_buffer_size(load.read_buffer),
            size: churn.size,
            budget: per_worker,
            io_timeout: churn.io_timeout,
            // Each worker takes every workers-th turn of the whole rate.
            interval: churn.rate.map(|rate| Duration::from_secs_f64(churn.workers as f64 / rate)),
            shared: Arc::clone(&shared),
            clock,
        };
        run.spawn(format!("churn-{id}"), None, move || Ok(worker.run()))?;
    }
    let measured = run.measure(load.duration, load.server_pid, |r| r.sent >= budget);
    // Workers finish the cycle they are in; each step has a timeout.
    let finished = run.finish()?;

    let mut latency = Latency::new();
    let mut upgrades = Latency::new();
    let mut endings = Endings::default();
    let mut messages = SequenceCounts::default();
    let mut in_measure = 0;
    for result in &finished {
        latency.merge(&result.latency);
        upgrades.merge(&result.upgrades);
        endings += &result.endings;
        messages += result.tracker.counts(result.sent);
        in_measure += result.completed_in_measure;
    }
    let cycles: u64 = finished.iter().map(|r| r.cycles).sum();
    let description = format!(
        "{} workers: connect, upgrade on {}, one {}-byte echo, close; repeated",
        churn.workers, churn.path, churn.size
    );
    let mut report = load.report("churn", "churn".to_owned(), &churn.path, description);
    let seconds = measured.seconds;
    report.measured_s = seconds;
    report.cpu = measured.cpu;
    report.connections =
        Connections { wanted: cycles, opened: upgrades.summary().count, upgrade: upgrades.summary() };
    report.throughput = Throughput::over(in_measure, &measured, "handshakes");
    report.paced = churn.rate.is_some();
    report.latency_of = "whole cycle".to_owned();
    report.latency = latency.summary();
    report.messages = messages;
    report.endings = endings;
    Ok(report)
}

/// One churn worker: its settings, then its thread body.
struct Worker {
    id: usize,
    workers: usize,
    stream: u32,
    addr: SocketAddr,
    sources: Sources,
    url: String,
    websocket: WebSocketConfig,
    size: usize,
    budget: u64,
    io_timeout: Duration,
    /// The least time between the starts of two of this worker's cycles.
    interval: Option<Duration>,
    shared: Arc<Shared>,
    clock: Clock,
}

/// What one worker did.
#[derive(Debug)]
struct WorkerResult {
    latency: Latency,
    upgrades: Latency,
    tracker: SequenceTracker,
    endings: Endings,
    cycles: u64,
    /// Echo requests sent: cycles that failed before sending one send none.
    sent: u64,
    completed_in_measure: u64,
}

impl Worker {
    fn run(self) -> WorkerResult {
        let mut result = WorkerResult {
            latency: Latency::new(),
            upgrades: Latency::new(),
            tracker: SequenceTracker::new(),
            endings: Endings::default(),
            cycles: 0,
            sent: 0,
            completed_in_measure: 0,
        };
        let mut tally = Tally::default();
        // The workers' turns are spread over each interval, not bunched.
        let mut next = Instant::now()
            + self.interval.map_or(Duration::ZERO, |every| every * self.id as u32 / self.workers as u32);
        while self.shared.phase() <= Phase::Measure && result.cycles < self.budget {
            if let Some(every) = self.interval {
                // Pacing, not waiting on anything: the next cycle's turn.
                thread::sleep(next.saturating_duration_since(Instant::now()));
                next += every;
                if self.shared.phase() > Phase::Measure {
                    break;
                }
            }
            let phase = self.shared.phase();
            let began = Instant::now();
            // The workers' connections, numbered in turn, take the source addresses round robin.
            let from = self.sources.pick(result.cycles as usize * self.workers + self.id);
            let outcome = self.cycle(from, &mut result.sent, &mut result.tracker, &mut result.upgrades);
            result.cycles += 1;
            tally.sent += 1;
            match outcome {
                Ok(()) => {
                    let took = began.elapsed();
                    result.latency.record(took);
                    result.endings.record(&Ending::Closed { by: Side::Client, code: None });
                    tally.received += 1;
                    tally.latency_ns += u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
                    if phase == Phase::Measure && self.shared.phase() == Phase::Measure {
                        result.completed_in_measure += 1;
                    }
                }
                Err(ending) => {
                    // The first one says what kind of trouble this is; the report counts the rest.
                    if result.endings.troubles() == 0 {
                        eprintln!("first trouble on {}: {ending}", self.url);
                    }
                    result.endings.record(&ending);
                    tally.failed += 1;
                    self.shared.meter.add(&mut tally);
                    thread::sleep(BACKOFF);
                }
            }
            self.shared.meter.add(&mut tally);
        }
        result
    }

    /// One connection's life, from the local address `from` if given, its
    /// echo request numbered `sent` (counted once it is sent). Returns how it
    /// went wrong, if it did.
    ///
    /// Each step has the I/O timeout, and the whole cycle three of them, so
    /// that a server that keeps talking without answering (pings, other
    /// frames) cannot hold the worker past the end of the run.
    fn cycle(
        &self,
        from: Option<IpAddr>,
        sent: &mut u64,
        tracker: &mut SequenceTracker,
        upgrades: &mut Latency,
    ) -> Result<(), Ending> {
        let began = Instant::now();
        let deadline = began + self.io_timeout * 3;
        let stream =
            source::connect_blocking(from, self.addr, self.io_timeout).map_err(Ending::ConnectFailed)?;
        let mut websocket =
            match tungstenite::client::client_with_config(&self.url, stream, Some(self.websocket)) {
                Ok((websocket, _response)) => websocket,
                // A blocking socket only "would block" when its timeout expires.
                Err(HandshakeError::Interrupted(_)) => return Err(Ending::TimedOut),
                Err(HandshakeError::Failure(e)) => return Err(Ending::UpgradeFailed(e)),
            };
        upgrades.record(began.elapsed());
        let seq = *sent;
        let payload = Payload::data(self.stream, seq, self.clock.now());
        websocket.send(Message::Binary(payload.encode(self.size).into())).map_err(ending)?;
        *sent += 1;
        loop {
            if Instant::now() >= deadline {
                return Err(Ending::TimedOut);
            }
            match websocket.read().map_err(ending)? {
                Message::Binary(bytes) => {
                    match Payload::decode(&bytes).filter(|p| p.kind == Kind::Data && p.stream == self.stream)
                    {
                        Some(echo) => {
                            tracker.record(echo.seq, *sent);
                            if echo.seq == seq {
                                break;
                            }
                        }
                        None => tracker.record_corrupt(),
                    }
                }
                Message::Close(frame) => {
                    return Err(Ending::Closed {
                        by: Side::Server,
                        code: Some(frame.map_or(1005, |f| f.code.into())),
                    });
                }
                _ => {}
            }
        }
        close(&mut websocket, deadline)
    }
}

/// The close handshake, to the end: our close frame, the server's reply,
/// and the server closing the TCP connection; at most until `deadline`.
fn close(websocket: &mut WebSocket<TcpStream>, deadline: Instant) -> Result<(), Ending> {
    websocket.close(None).map_err(ending)?;
    loop {
        if Instant::now() >= deadline {
            return Err(Ending::TimedOut);
        }
        match websocket.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
            Err(e) => return Err(ending(e)),
        }
    }
}

/// How a failed read or write ended the cycle.
fn ending(error: tungstenite::Error) -> Ending {
    match error {
        tungstenite::Error::Io(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Ending::TimedOut
        }
        other => Ending::Dropped(other),
    }
}
