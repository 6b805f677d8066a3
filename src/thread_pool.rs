//! Connection threads that outlive their clients: a thread whose client has
//! gone parks, and the accept loop hands it the next socket.
//!
//! Starting a thread costs about fifteen system calls (`clone3`, its stack's
//! `mmap` and `mprotect`, a signal stack, signal masks…) and ending one as
//! many again: more than the rest of a short connection's handshake. So a
//! thread that has served a client parks, up to a bound, for a while; the
//! accept loop hands the next socket to the thread that parked last (its
//! stack is the warmest) and starts a new thread only when none is parked.
//! Each client still has one thread of its own while it lives.
//!
//! The hand-off is a mutex and a condition variable per parked thread: one
//! futex wake from the accept loop, and no spinning, as the accept loop and
//! the thread it wakes often share one core.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// What a thread of the pool runs: one client's connection, from its socket
/// to its end.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// Starts jobs on threads, reusing parked ones. Cloning gives another handle
/// to the same pool.
#[derive(Debug, Clone)]
pub(crate) struct ThreadPool {
    pool: Arc<Pool>,
}

#[derive(Debug)]
struct Pool {
    /// Every thread's name: its role, not its client, as it serves many.
    name: String,
    stack_size: usize,
    /// The most threads parked at once; a thread that finds the pool full
    /// ends.
    max_parked: usize,
    /// How long a thread stays parked before it ends.
    idle_timeout: Duration,
    parked: Mutex<Parked>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Parked {
    /// The seats of the parked threads, the last parked last.
    seats: Vec<Arc<Seat>>,
    /// Once set, no thread parks and parked ones end.
    stopped: bool,
}

/// Where one parked thread waits for its next job.
#[derive(Debug, Default)]
struct Seat {
    next: Mutex<Next>,
    called: Condvar,
}

#[derive(Default)]
enum Next {
    /// Nothing yet: keep waiting.
    #[default]
    Waiting,
    Job(Job),
    /// The pool has stopped: end.
    End,
}

impl std::fmt::Debug for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Next::Waiting => "Waiting",
            Next::Job(_) => "Job",
            Next::End => "End",
        })
    }
}

impl ThreadPool {
    /// A pool of threads called `name`, each with `stack_size` bytes of
    /// stack, keeping at most `max_parked` parked for `idle_timeout` each.
    pub(crate) fn new(
        name: &str,
        stack_size: usize,
        max_parked: usize,
        idle_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let pool = Pool {
            name: name.to_owned(),
            stack_size,
            max_parked,
            idle_timeout,
            parked: Mutex::new(Parked::default()),
            metrics,
        };
        ThreadPool { pool: Arc::new(pool) }
    }

    /// Runs `job` on the thread that parked last, or on a new thread if none
    /// is parked.
    ///
    /// # Errors
    ///
    /// When no thread is parked and none can be started (the process is at
    /// its limit of threads or memory mappings); `job` has been dropped
    /// unrun, so what it owns is freed (a caller that must still answer its
    /// client keeps the socket where the job only borrows it).
    pub(crate) fn run(&self, job: Job) -> io::Result<()> {
        let seat = self.pool.lock_parked().seats.pop();
        match seat {
            Some(seat) => {
                self.pool.metrics.thread_unparked();
                seat.call(Next::Job(job));
                Ok(())
            }
            None => self.start(job),
        }
    }

    fn start(&self, job: Job) -> io::Result<()> {
        let pool = self.pool.clone();
        std::thread::Builder::new()
            .name(self.pool.name.clone())
            .stack_size(self.pool.stack_size)
            .spawn(move || pool.work(job))?;
        self.pool.metrics.thread_started();
        Ok(())
    }

    /// Ends every parked thread, and every thread that would park from now
    /// on: the server is stopping.
    pub(crate) fn stop(&self) {
        let seats = {
            let mut parked = self.pool.lock_parked();
            parked.stopped = true;
            std::mem::take(&mut parked.seats)
        };
        for seat in seats {
            self.pool.metrics.thread_unparked();
            seat.call(Next::End);
        }
    }
}

impl Pool {
    fn lock_parked(&self) -> MutexGuard<'_, Parked> {
        // Nothing runs under this lock that can panic.
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The body of every thread: its first job, then each job it is handed
    /// while parked, until it is not called for within the idle timeout, or
    /// finds the pool full or stopped.
    fn work(&self, first: Job) {
        let _alive = Alive::new(&self.metrics);
        let seat = Arc::new(Seat::default());
        let mut job = first;
        loop {
            // A job that panics (a bug: a handler's panics are caught where
            // it is called) ends its thread, which may have been left in any
            // state; the pool just has one thread fewer.
            if panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                return;
            }
            match self.park(&seat) {
                Some(next) => job = next,
                None => return,
            }
        }
    }

    /// Parks `seat` until a job is handed to it; `None` if the thread is to
    /// end instead.
    fn park(&self, seat: &Arc<Seat>) -> Option<Job> {
        {
            let mut parked = self.lock_parked();
            if parked.stopped || parked.seats.len() >= self.max_parked {
                return None;
            }
            parked.seats.push(seat.clone());
            // Under the lock, so that the gauge never counts a thread taken
            // from the seats before it counted it parked.
            self.metrics.thread_parked();
        }
        let deadline = Instant::now() + self.idle_timeout;
        let mut next = seat.lock();
        loop {
            match std::mem::take(&mut *next) {
                Next::Job(job) => {
                    self.metrics.thread_reused();
                    return Some(job);
                }
                Next::End => return None,
                Next::Waiting => {}
            }
            let now = Instant::now();
            if now >= deadline {
                drop(next);
                if self.leave(seat) {
                    return None;
                }
                // The accept loop took this seat as its time ran out: its
                // job is on the way.
                next = seat.lock();
                next = seat
                    .called
                    .wait_while(next, |next| matches!(next, Next::Waiting))
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            next = seat.called.wait_timeout(next, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Takes `seat` out of the parked ones; false if someone took it first.
    fn leave(&self, seat: &Arc<Seat>) -> bool {
        let mut parked = self.lock_parked();
        let Some(place) = parked.seats.iter().position(|parked| Arc::ptr_eq(parked, seat)) else {
            return false;
        };
        parked.seats.remove(place);
        drop(parked);
        self.metrics.thread_unparked();
        true
    }
}

impl Seat {
    fn lock(&self) -> MutexGuard<'_, Next> {
        self.next.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `next` to the thread waiting here.
    fn call(&self, next: Next) {
        *self.lock() = next;
        self.called.notify_one();
    }
}

/// Counts a thread among the living from its start to its end, unwinding
/// included.
struct Alive<'a>(&'a Metrics);

impl<'a> Alive<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.thread_began();
        Alive(metrics)
    }
}

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        self.0.thread_ended();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{Receiver, bounded, unbounded};
    use std::thread::{self, ThreadId};

    fn pool(max_parked: usize, idle_timeout: Duration) -> (ThreadPool, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        (ThreadPool::new("test-pool", 64 * 1024, max_parked, idle_timeout, metrics.clone()), metrics)
    }

    /// One of the pool's figures, as /stats shows it.
    fn figure(metrics: &Metrics, name: &str) -> u64 {
        let stats: serde_json::Value = serde_json::from_str(&metrics.to_json()).unwrap();
        stats[name].as_u64().unwrap()
    }

    /// Waits for `condition`, at most ten seconds.
    fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "never: {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Runs a job that says which thread ran it.
    fn run_reporting(pool: &ThreadPool) -> Receiver<ThreadId> {
        let (tx, rx) = bounded(1);
        pool.run(Box::new(move || tx.send(thread::current().id()).unwrap())).ok().unwrap();
        rx
    }

    #[test]
    fn a_parked_thread_runs_the_next_job() {
        let (pool, metrics) = pool(4, Duration::from_secs(60));
        let first = run_reporting(&pool).recv().unwrap();
        eventually("the thread parks", || figure(&metrics, "threads_parked") == 1);
        let second = run_reporting(&pool).recv().unwrap();
        assert_eq!(first, second);
        assert_eq!(figure(&metrics, "threads_started"), 1);
        assert_eq!(figure(&metrics, "threads_reused"), 1);
        pool.stop();
    }

    #[test]
    fn threads_over_the_bound_end() {
        let (pool, metrics) = pool(1, Duration::from_secs(60));
        let (release, released) = unbounded::<()>();
        for _ in 0..3 {
            let released = released.clone();
            pool.run(Box::new(move || released.recv().unwrap())).ok().unwrap();
        }
        eventually("three threads", || figure(&metrics, "threads") == 3);
        assert_eq!(figure(&metrics, "threads_started"), 3);
        (0..3).for_each(|_| release.send(()).unwrap());
        eventually("two threads end", || figure(&metrics, "threads") == 1);
        assert_eq!(figure(&metrics, "threads_parked"), 1);
        pool.stop();
        eventually("the parked one ends", || figure(&metrics, "threads") == 0);
    }

    #[test]
    fn parked_threads_end_after_the_idle_timeout() {
        let (pool, metrics) = pool(4, Duration::from_millis(20));
        run_reporting(&pool).recv().unwrap();
        eventually("the thread ends", || figure(&metrics, "threads") == 0);
        assert_eq!(figure(&metrics, "threads_parked"), 0);
        // A job after that gets a new thread.
        run_reporting(&pool).recv().unwrap();
        assert_eq!(figure(&metrics, "threads_started"), 2);
    }

    #[test]
    fn a_panicking_job_ends_only_its_thread() {
        let (pool, metrics) = pool(4, Duration::from_secs(60));
        pool.run(Box::new(|| panic!("a job's bug"))).ok().unwrap();
        eventually("the thread ends", || figure(&metrics, "threads") == 0);
        assert_eq!(figure(&metrics, "threads_parked"), 0);
        run_reporting(&pool).recv().unwrap();
        eventually("the next one parks", || figure(&metrics, "threads_parked") == 1);
        pool.stop();
    }

    #[test]
    fn after_stop_no_thread_parks() {
        let (pool, metrics) = pool(4, Duration::from_secs(60));
        run_reporting(&pool).recv().unwrap();
        eventually("the thread parks", || figure(&metrics, "threads_parked") == 1);
        pool.stop();
        eventually("the parked thread ends", || figure(&metrics, "threads") == 0);
        run_reporting(&pool).recv().unwrap();
        eventually("a thread started after stop ends", || figure(&metrics, "threads") == 0);
        assert_eq!(figure(&metrics, "threads_parked"), 0);
    }
}
