//! `idle`: hold N connections in a room and measure what each costs the server and the machine.
//!
//! Samples are taken before the first connection and once all are open and
//! the server's thread count has stopped changing (a thread-per-connection
//! server may start a connection's second thread just after the upgrade).
//! At the end of the hold one connection says something in the room, and
//! every connection should hear it: a server that only pretends to hold its
//! connections would lose those messages.
//!
//! A server may not survive the load (a thread-per-connection server runs
//! into the machine's thread or memory-map limits). The server is looked
//! at twice a second while connections open, so if it dies, the figures
//! come from its last look alive, with the number of connections it held
//! then.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{Client, Ending};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::event_loop::{Clients, Context, Driver, Finished};
use crate::latency::Latency;
use crate::numbers::{grouped, millis};
use crate::payload::{HEADER_LEN, Kind, Payload};
use crate::progress::Progress;
use crate::report::{Connections, Report, Resources, Throughput};
use crate::run::{Phase, Run, Shared};
use crate::scenario::{CLOSE_TIMEOUT, LoadSettings, Merged, deal, start_loops};
use crate::sequence::SequenceCounts;
use crate::system::{ProcessSample, mem_available_kib};

/// How often the server is sampled while waiting for it to settle.
const SETTLE_EVERY: Duration = Duration::from_millis(100);
/// The thread count must stay the same this long to count as settled.
const SETTLED_FOR: Duration = Duration::from_secs(1);
/// How often the server is looked at while connections open.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// What the connections cost at one moment: the server, this tool and the
/// machine, with how many connections were open.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Look {
    /// `None` if there is no server to look at, or it is gone.
    server: Option<ProcessSample>,
    own: ProcessSample,
    available_kib: u64,
    open: u64,
}

impl Look {
    fn take(server_pid: Option<u32>, open: u64) -> Result<Look> {
        let read_error = |path: &str| {
            let path = path.into();
            move |source| Error::Read { path, source }
        };
        Ok(Look {
            server: server_pid.and_then(|pid| ProcessSample::of(pid).ok()),
            own: ProcessSample::own().map_err(read_error("/proc/self"))?,
            available_kib: mem_available_kib().map_err(read_error("/proc/meminfo"))?,
            open,
        })
    }
}

/// What `idle` is told (the server's process, to sample, is in [`LoadSettings`]).
#[derive(Debug, Clone)]
pub struct IdleSettings {
    /// Connections to hold.
    pub connections: usize,
    /// The room's path.
    pub path: String,
    /// The bound on waiting for the server's thread count to settle.
    pub settle_timeout: Duration,
}

/// Runs the scenario.
///
/// # Errors
///
/// [`Error::Setup`] if no connection opens; [`Error::Read`] if /proc cannot
/// be read; thread and poller failures.
pub fn run(load: &LoadSettings, idle: &IdleSettings) -> Result<Report> {
    let before = Look::take(load.server_pid, 0)?;
    if let (Some(pid), None) = (load.server_pid, before.server) {
        let source = io::Error::new(io::ErrorKind::NotFound, "no such process");
        return Err(Error::Read { path: format!("/proc/{pid}").into(), source });
    }

    let clock = Clock::start();
    let shared = Shared::new();
    let title = load.title(load.case.as_deref().unwrap_or("idle"));
    let mut run = Run::new(shared.clone(), Progress::new(title, "sent", "received"));
    let plans = deal(idle.connections, load.threads)
        .into_iter()
        .enumerate()
        .map(|(i, conns)| (load.dials(&idle.path, &conns), IdleDriver::new(conns.len(), i == 0)))
        .collect();
    // The loops start connecting as soon as they start.
    let began = Instant::now();
    start_loops(&mut run, "idle", load, plans, &shared, clock)?;

    let wanted = idle.connections as u64;
    run.enter(Phase::Setup);
    // Looks along the way, so that a server that dies before all
    // connections are open still leaves figures, taken at fewer of them.
    let mut last_alive = None;
    let mut next_look = Instant::now();
    run.wait_until(load.setup_timeout, |r| {
        if load.server_pid.is_some() && Instant::now() >= next_look {
            next_look = Instant::now() + LOOK_EVERY;
            if let Ok(look) = Look::take(load.server_pid, r.open()) {
                last_alive = latest_alive(last_alive, look);
            }
        }
        r.opened + r.failed >= wanted
    });
    let setup = began.elapsed();
    let opened = run.reading().opened;
    if opened == 0 {
        return Err(Error::Setup { what: "connections open", done: 0, wanted, waited: load.setup_timeout });
    }
    let settled = match load.server_pid {
        Some(pid) => {
            let settled = settle(pid, idle.settle_timeout);
            if !settled {
                run.progress().note("server thread count still changing; sampling anyway");
            }
            settled
        }
        None => true,
    };
    let now = Look::take(load.server_pid, run.reading().open())?;
    // A server that ran out of threads or memory may have died under the
    // load: that is a result to report, not a reason to report nothing.
    let server_gone = load.server_pid.is_some() && now.server.is_none();
    let after = match (server_gone, last_alive) {
        (true, Some(look)) => {
            let at = grouped(look.open as f64);
            run.progress().note(&format!(
                "the server process is gone (exited or crashed); figures are from the last look, at {at} connections"
            ));
            look
        }
        (true, None) => {
            run.progress().note("the server process is gone (exited or crashed)");
            now
        }
        (false, _) => now,
    };
    let measured = run.measure(load.duration, load.server_pid, |_| false);
    run.wait_until(load.drain, |r| r.received >= r.open());
    run.enter(Phase::Close);
    run.wait_until(CLOSE_TIMEOUT, |r| r.open() == 0);
    let finished = run.finish()?;

    let merged = Merged::from(&finished);
    let mut roll_call = Latency::new();
    let mut messages = SequenceCounts::default();
    for Finished { driver, .. } in &finished {
        roll_call.merge(&driver.latency);
        messages.sent += driver.expected();
        messages.received += driver.heard.iter().filter(|&&h| h).count() as u64;
        messages.corrupt += driver.corrupt;
        messages.duplicated += driver.duplicated;
    }
    messages.lost = messages.sent.saturating_sub(messages.received);

    let held = after.open;
    let per = |before: u64, after: u64| (after as f64 - before as f64) / held.max(1) as f64;
    let server = before.server.zip(after.server);
    let resources = Resources {
        server_pid: load.server_pid,
        server_before: before.server,
        server_after: after.server,
        rss_kib_per_connection: server.map(|(b, a)| per(b.rss_kib, a.rss_kib)),
        threads_per_connection: server.map(|(b, a)| per(b.threads, a.threads)),
        fds_per_connection: server.map(|(b, a)| per(b.fds, a.fds)),
        // MemAvailable rises again when a dead server's memory is freed.
        mem_available_kib_per_connection: (held > 0 && (after.server.is_some() || load.server_pid.is_none()))
            .then(|| per(after.available_kib, before.available_kib)),
        held,
        tool_rss_kib_per_connection: per(before.own.rss_kib, after.own.rss_kib),
        settled: settled && !server_gone,
    };
    let description = format!("{} idle connections held on {}", idle.connections, idle.path);
    let mut report = load.report("idle", "idle".to_owned(), &idle.path, description);
    report.measured_s = measured.seconds;
    report.cpu = measured.cpu;
    let upgrades = merged.upgrades.summary();
    report.connections = Connections { wanted, opened, upgrade: upgrades };
    report.throughput = Throughput {
        per_second: opened as f64 / setup.as_secs_f64().max(1e-9),
        unit: "connections opened".to_owned(),
        // Opened while setting up; the CPU is measured while holding them.
        per_server_cpu_second: None,
    };
    report.latency_of = "connect and upgrade".to_owned();
    report.latency = upgrades;
    report.messages = messages;
    report.endings = merged.endings;
    report.resources = Some(resources);
    if server_gone {
        report.details.insert("server_gone".to_owned(), 1.0);
    }
    let roll_call = roll_call.summary();
    report.details.insert("roll_call_p50_ms".to_owned(), roll_call.p50_us / 1e3);
    report.details.insert("roll_call_max_ms".to_owned(), roll_call.max_us / 1e3);
    print_roll_call(&report, roll_call.max_us);
    Ok(report)
}

fn print_roll_call(report: &Report, roll_call_max_us: f64) {
    let m = &report.messages;
    if m.sent == 0 {
        eprintln!("{} {}: no roll call: no connection was open by then", report.case, report.label);
        return;
    }
    eprintln!(
        "{} {}: roll call heard by {} of {} connections, the last after {} ms",
        report.case,
        report.label,
        grouped(m.received as f64),
        grouped(m.sent as f64),
        millis(roll_call_max_us)
    );
}

/// The look to keep of `kept` and `new`: the newer, unless the server's
/// thread count fell. A process that is dying loses its threads before its
/// /proc entry; a look at it then would count a few hundred threads for
/// thousands of connections.
fn latest_alive(kept: Option<Look>, new: Look) -> Option<Look> {
    let threads = |look: &Look| look.server.map(|s| s.threads);
    match (&kept, threads(&new)) {
        (_, None) => kept,
        (Some(old), Some(now)) if threads(old) > Some(now) => kept,
        _ => Some(new),
    }
}

/// Waits until the server's thread count has stayed the same for
/// [`SETTLED_FOR`], at most `timeout`. Returns whether it settled.
fn settle(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    let mut since = Instant::now();
    while Instant::now() < deadline {
        let Ok(sample) = ProcessSample::of(pid) else { return false };
        let threads = Some(sample.threads);
        if threads != last {
            last = threads;
            since = Instant::now();
        } else if since.elapsed() >= SETTLED_FOR {
            return true;
        }
        thread::sleep(SETTLE_EVERY);
    }
    false
}

/// The idle scenario's side of one event loop.
#[derive(Debug)]
struct IdleDriver {
    /// Per slot: the upgrade completed.
    opened: Vec<bool>,
    /// Per slot: the connection ended before the roll call.
    gone_early: Vec<bool>,
    /// Per slot: the roll call arrived.
    heard: Vec<bool>,
    /// This loop's first open connection calls the roll, if this is the first loop.
    calls_roll: bool,
    called: bool,
    corrupt: u64,
    /// Roll calls heard a second time.
    duplicated: u64,
    latency: Latency,
}

impl IdleDriver {
    fn new(slots: usize, calls_roll: bool) -> Self {
        IdleDriver {
            opened: vec![false; slots],
            gone_early: vec![false; slots],
            heard: vec![false; slots],
            calls_roll,
            called: false,
            corrupt: 0,
            duplicated: 0,
            latency: Latency::new(),
        }
    }

    /// Connections that were in the room when the roll was called.
    fn expected(&self) -> u64 {
        self.opened.iter().zip(&self.gone_early).filter(|&(&opened, &gone)| opened && !gone).count() as u64
    }
}

impl Driver for IdleDriver {
    fn on_open(&mut self, slot: usize, _client: &mut Client, _cx: &mut Context) {
        self.opened[slot] = true;
    }

    fn on_message(&mut self, slot: usize, _client: &mut Client, message: &[u8], cx: &mut Context) {
        match Payload::decode(message) {
            Some(payload) if payload.kind == Kind::Data && self.heard[slot] => self.duplicated += 1,
            Some(payload) if payload.kind == Kind::Data => {
                self.heard[slot] = true;
                cx.delivered(payload.sent, &mut self.latency);
            }
            Some(_) => {}
            None => self.corrupt += 1,
        }
    }

    fn on_end(&mut self, slot: usize, _ending: &Ending, cx: &mut Context) {
        if cx.phase < Phase::Drain {
            self.gone_early[slot] = true;
        }
    }

    fn on_tick(&mut self, clients: &mut Clients<'_>, cx: &mut Context) -> Option<Instant> {
        if self.calls_roll && !self.called && cx.phase == Phase::Drain {
            for slot in 0..clients.len() {
                if let Some(client) = clients.open(slot) {
                    client.send(Payload::data(0, 0, cx.clock.now()).encode(HEADER_LEN));
                    self.called = true;
                    cx.tally.sent += 1;
                    break;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(threads: Option<u64>, open: u64) -> Look {
        let sample = |threads| ProcessSample { rss_kib: 1000, threads, fds: 10 };
        Look { server: threads.map(sample), own: sample(1), available_kib: 0, open }
    }

    #[test]
    fn the_newest_look_at_a_live_server_is_kept() {
        let kept = latest_alive(None, look(Some(3), 0));
        let kept = latest_alive(kept, look(Some(203), 100));
        assert_eq!(kept, Some(look(Some(203), 100)));
        // A server that is not thread-per-connection keeps its thread count.
        assert_eq!(latest_alive(kept, look(Some(203), 200)), Some(look(Some(203), 200)));
    }

    #[test]
    fn a_dying_or_gone_server_does_not_replace_the_last_look() {
        let kept = Some(look(Some(16_003), 8000));
        assert_eq!(latest_alive(kept, look(Some(250), 8100)), kept);
        assert_eq!(latest_alive(kept, look(None, 8100)), kept);
    }
}
