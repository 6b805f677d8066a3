//! One run's phases (setup, measure, drain, close) and the threads that carry them out.
//!
//! The main thread is the conductor: it starts the load threads, moves the
//! shared [`Phase`] on when a condition holds or a deadline passes, prints
//! progress meanwhile, and collects each thread's results at the end. Load
//! threads only read the phase; an event loop sleeping in `poll` is woken
//! by its mio `Waker` so that it sees a change at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::Waker;

use crate::error::{Error, Result};
use crate::meter::{Meter, Reading};
use crate::progress::Progress;
use crate::system::{CpuUse, CpuWatch};

/// Where a run is. Phases only move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Connecting, upgrading, joining rooms. Nothing is measured yet.
    Setup,
    /// The measured interval: load is applied.
    Measure,
    /// No new load; messages still in flight may arrive.
    Drain,
    /// Connections are closed with a close handshake.
    Close,
    /// Everything stops; whatever is still open is dropped.
    Stop,
}

impl Phase {
    const ALL: [Phase; 5] = [Phase::Setup, Phase::Measure, Phase::Drain, Phase::Close, Phase::Stop];

    /// Its name in progress lines.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Measure => "measure",
            Phase::Drain => "drain",
            Phase::Close => "close",
            Phase::Stop => "stop",
        }
    }
}

/// What the conductor and the load threads share: the phase and the meter.
#[derive(Debug)]
pub struct Shared {
    phase: AtomicU8,
    /// The live counters.
    pub meter: Meter,
}

impl Shared {
    /// A run in [`Phase::Setup`] with zeroed counters.
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared { phase: AtomicU8::new(Phase::Setup as u8), meter: Meter::default() })
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        let n = self.phase.load(Ordering::Acquire);
        Phase::ALL.get(usize::from(n)).copied().unwrap_or(Phase::Stop)
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.fetch_max(phase as u8, Ordering::AcqRel);
    }
}

/// How the measured interval went.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// How long it really lasted, seconds.
    pub seconds: f64,
    /// CPU use meanwhile.
    pub cpu: CpuUse,
}

/// The conductor of one run, over load threads that each return a `T`.
///
/// Dropping it (say, on an early error) stops and joins every thread.
pub struct Run<T> {
    shared: Arc<Shared>,
    threads: Vec<(String, JoinHandle<Result<T>>)>,
    wakers: Vec<Arc<Waker>>,
    progress: Progress,
}

impl<T: Send + 'static> Run<T> {
    /// A run with no threads yet.
    pub fn new(shared: Arc<Shared>, progress: Progress) -> Self {
        Run { shared, threads: Vec::new(), wakers: Vec::new(), progress }
    }

    /// Starts a load thread; `waker`, if any, is woken at every phase change.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the system will not start another thread.
    pub fn spawn(
        &mut self,
        name: String,
        waker: Option<Arc<Waker>>,
        body: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<()> {
        let handle = thread::Builder::new()
            .name(name.clone())
            .spawn(body)
            .map_err(|source| Error::Spawn { name: name.clone(), source })?;
        self.threads.push((name, handle));
        self.wakers.extend(waker);
        Ok(())
    }

    /// The live counters now.
    pub fn reading(&self) -> Reading {
        self.shared.meter.read()
    }

    /// The progress printer, for scenario notes.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Moves every thread on to `phase`.
    pub fn enter(&mut self, phase: Phase) {
        self.shared.set_phase(phase);
        for waker in &self.wakers {
            // A loop that cannot be woken still sees the phase on its next event.
            let _ = waker.wake();
        }
        let reading = self.reading();
        self.progress.rebase(&reading);
        self.progress.note(&format!(
            "{}: {} open, {} sent, {} received, {} failed",
            phase.name(),
            reading.open(),
            reading.sent,
            reading.received,
            reading.failed
        ));
    }

    /// Waits until `done` holds for the counters, every thread has ended, or
    /// `timeout` passes, printing progress meanwhile. Returns whether `done` held.
    pub fn wait_until(&mut self, timeout: Duration, mut done: impl FnMut(&Reading) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let reading = self.reading();
            if done(&reading) {
                return true;
            }
            if Instant::now() >= deadline || self.threads.iter().all(|(_, t)| t.is_finished()) {
                return false;
            }
            self.progress.tick(self.shared.phase(), &reading);
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The measured interval: enters [`Phase::Measure`], and after
    /// `duration`, or earlier once `enough` holds (a count cap was reached)
    /// or every thread has ended, [`Phase::Drain`]. Returns how long it
    /// really lasted, timed from phase change to phase change as the
    /// threads count, and the CPU this tool and the server (`server_pid`)
    /// used meanwhile.
    pub fn measure(
        &mut self,
        duration: Duration,
        server_pid: Option<u32>,
        enough: impl FnMut(&Reading) -> bool,
    ) -> Measured {
        let cpu = CpuWatch::start(server_pid);
        let began = Instant::now();
        self.enter(Phase::Measure);
        self.wait_until(duration, enough);
        let seconds = began.elapsed().as_secs_f64();
        self.enter(Phase::Drain);
        Measured { seconds, cpu: cpu.finish() }
    }

    /// Stops every thread and collects what each returned, in spawning order.
    ///
    /// # Errors
    ///
    /// The first thread's error, or [`Error::Panicked`] for a thread that
    /// panicked (a bug in the tool).
    pub fn finish(mut self) -> Result<Vec<T>> {
        self.enter(Phase::Stop);
        let mut results = Vec::new();
        for (name, handle) in std::mem::take(&mut self.threads) {
            results.push(handle.join().map_err(|_| Error::Panicked { name })??);
        }
        Ok(results)
    }
}

impl<T> Drop for Run<T> {
    fn drop(&mut self) {
        self.shared.set_phase(Phase::Stop);
        for waker in &self.wakers {
            let _ = waker.wake();
        }
        for (_, handle) in self.threads.drain(..) {
            // Results of an abandoned run are of no use; errors already reported.
            let _ = handle.join();
        }
    }
}
