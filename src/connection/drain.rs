//! The drain thread: one per server, it finishes the outboxes whose socket
//! was full, and keeps the deadlines that need no reader.
//!
//! Sends to a client never wait. When the kernel's buffer is full, the rest
//! stays queued in the outbox and the outbox is handed here
//! ([`DrainHandle::finish`]). The drain registers its socket with epoll (mio)
//! for writability and, each time it has room, writes under the outbox's
//! lock until the buffer is full again, since epoll is edge-triggered: it
//! reports the change to writable, not the state. Once the queue is empty it
//! lets the outbox go, and the threads that send to it write directly again.
//! No client is ever served from here: this thread only finishes writes that
//! others started.
//!
//! It also keeps the deadlines that no connection thread can keep, since
//! that thread is blocked reading:
//!
//! * the write timeout: a socket that takes no bytes for that long is hung
//!   up on, and its connection ends;
//! * the close timeout: once a close frame that the connection's thread did
//!   not send itself has left (a slow consumer, the application, shutdown,
//!   the idle timeout), the client has that long to answer before it is hung
//!   up on, so that its thread stops waiting;
//! * every connection's heartbeat ([`super::heartbeat`]): a quiet client is
//!   pinged, and one quiet for the idle timeout is closed.
//!
//! An outbox is held here by an `Arc` for as long as its socket is
//! registered: its descriptor cannot be closed, and its number reused by a
//! new connection, before it is deregistered.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use log::warn;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::heartbeat::Heartbeats;
use super::outbox::{Outbox, Resumed};
use crate::config::Timeouts;

/// The waker's token; outboxes use their connection's number, which starts at 1.
const WAKE: Token = Token(0);

/// What the drain thread is asked to do.
#[derive(Debug)]
pub(crate) enum Job {
    /// This outbox's socket is full: finish writing it when it has room.
    Finish(Arc<Outbox>),
    /// This outbox's close has been sent: hang up after the close timeout,
    /// unless its connection's thread is done by then.
    TimeClose(Weak<Outbox>),
    /// A new connection: keep its heartbeat.
    Watch(Weak<Outbox>),
    /// End the thread.
    Stop,
}

/// A cloneable way to hand work to the drain thread. It never waits: the
/// queue holds each outbox at most three times (new, full, closing), so it
/// is bounded by the number of connections.
#[derive(Debug, Clone)]
pub(crate) struct DrainHandle {
    jobs: Sender<Job>,
    waker: Option<Arc<Waker>>,
}

impl DrainHandle {
    /// Finishes writing `outbox`, whose socket's buffer is full.
    pub(crate) fn finish(&self, outbox: Arc<Outbox>) {
        self.hand(Job::Finish(outbox));
    }

    /// Hangs up on `outbox`'s connection after the close timeout, unless its
    /// thread has finished by then.
    pub(crate) fn time_close(&self, outbox: Weak<Outbox>) {
        self.hand(Job::TimeClose(outbox));
    }

    /// Keeps the heartbeat of a new connection. The drain thread is not
    /// woken for it: it takes it at its next turn, within a tick.
    pub(crate) fn watch(&self, outbox: Weak<Outbox>) {
        let _ = self.jobs.send(Job::Watch(outbox));
    }

    /// Ends the drain thread; what it still holds is dropped.
    pub(crate) fn stop(&self) {
        self.hand(Job::Stop);
    }

    fn hand(&self, job: Job) {
        // Fails only once the thread has ended, at the end of a shutdown:
        // the job is dropped with everything else.
        if self.jobs.send(job).is_ok() {
            if let Some(waker) = &self.waker {
                if let Err(e) = waker.wake() {
                    warn!("cannot wake the drain thread: {e}");
                }
            }
        }
    }

    /// A handle whose jobs go to the returned receiver, for tests.
    #[cfg(test)]
    pub(crate) fn detached() -> (DrainHandle, Receiver<Job>) {
        let (jobs, received) = unbounded();
        (DrainHandle { jobs, waker: None }, received)
    }
}

/// The drain thread's state; [`Drain::run`] is its body.
#[derive(Debug)]
pub(crate) struct Drain {
    poll: Poll,
    jobs: Receiver<Job>,
    /// The outboxes whose socket is registered, by token.
    waiting: HashMap<Token, Waiting>,
    timers: BinaryHeap<Reverse<Timer>>,
    /// Numbers the timers, and each stall, so that a timer set for an
    /// earlier stall of the same outbox is recognised as stale.
    counter: u64,
    write_timeout: Duration,
    close_timeout: Duration,
    heartbeats: Heartbeats,
}

/// An outbox waiting for room, and the stall it is waiting in.
#[derive(Debug)]
struct Waiting {
    outbox: Arc<Outbox>,
    stall: u64,
}

/// A deadline.
#[derive(Debug)]
struct Timer {
    at: Instant,
    seq: u64,
    due: Due,
}

#[derive(Debug)]
enum Due {
    /// The write timeout of the stall numbered `stall`.
    Write {
        token: Token,
        stall: u64,
    },
    Close(Weak<Outbox>),
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Timer {}

impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timer {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl Drain {
    /// A drain thread's state, with the timeouts it keeps, and its handle.
    ///
    /// # Errors
    ///
    /// When epoll cannot be set up.
    pub(crate) fn new(timeouts: &Timeouts) -> io::Result<(Drain, DrainHandle)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let (jobs_tx, jobs) = unbounded();
        let drain = Drain {
            poll,
            jobs,
            waiting: HashMap::new(),
            timers: BinaryHeap::new(),
            counter: 0,
            write_timeout: timeouts.write,
            close_timeout: timeouts.close,
            heartbeats: Heartbeats::new(timeouts.ping_interval, timeouts.idle),
        };
        Ok((drain, DrainHandle { jobs: jobs_tx, waker: Some(waker) }))
    }

    /// The thread's body: until [`DrainHandle::stop`], or until every
    /// handle is gone.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let next = self
                .timers
                .peek()
                .map_or(self.heartbeats.due(), |Reverse(timer)| timer.at.min(self.heartbeats.due()));
            let timeout = Some(next.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                panic!("Bug: epoll_wait failed: {e}");
            }
            for event in &events {
                if event.token() != WAKE {
                    self.resume(event.token());
                }
            }
            loop {
                match self.jobs.try_recv() {
                    Ok(Job::Finish(outbox)) => self.take(outbox),
                    Ok(Job::TimeClose(outbox)) => {
                        let at = Instant::now() + self.close_timeout;
                        self.set_timer(at, Due::Close(outbox));
                    }
                    Ok(Job::Watch(outbox)) => self.heartbeats.watch(outbox),
                    Ok(Job::Stop) | Err(crossbeam_channel::TryRecvError::Disconnected) => return,
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                }
            }
            self.expire();
            self.heartbeats.tick(Instant::now());
        }
    }

    /// Starts waiting for room on `outbox`'s socket. Registering reports a
    /// socket that already has room at once, so no change is missed between
    /// the full send and now.
    fn take(&mut self, outbox: Arc<Outbox>) {
        let token = Token(outbox.id().0 as usize);
        let fd = outbox.fd();
        let registry = self.poll.registry();
        let registered = match registry.register(&mut SourceFd(&fd), token, Interest::WRITABLE) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                registry.reregister(&mut SourceFd(&fd), token, Interest::WRITABLE)
            }
            other => other,
        };
        if let Err(e) = registered {
            warn!("connection {}: cannot wait for its socket: {e}; hanging up", outbox.id());
            outbox.hang_up();
            return;
        }
        self.counter += 1;
        let stall = self.counter;
        self.waiting.insert(token, Waiting { outbox, stall });
        self.set_timer(Instant::now() + self.write_timeout, Due::Write { token, stall });
    }

    /// The socket behind `token` has room: write.
    fn resume(&mut self, token: Token) {
        let Some(waiting) = self.waiting.get(&token) else {
            return;
        };
        if waiting.outbox.resume() == Resumed::Done {
            self.release(token);
        }
    }

    /// Stops waiting on an outbox's socket and lets the outbox go: its
    /// descriptor is deregistered while the `Arc` still keeps it open.
    fn release(&mut self, token: Token) {
        if let Some(waiting) = self.waiting.remove(&token) {
            let fd = waiting.outbox.fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
    }

    fn set_timer(&mut self, at: Instant, due: Due) {
        self.counter += 1;
        self.timers.push(Reverse(Timer { at, seq: self.counter, due }));
    }

    /// Acts on the deadlines that have passed.
    fn expire(&mut self) {
        let now = Instant::now();
        while self.timers.peek().is_some_and(|Reverse(timer)| timer.at <= now) {
            let Some(Reverse(timer)) = self.timers.pop() else { break };
            match timer.due {
                Due::Write { token, stall } => {
                    let Some(waiting) = self.waiting.get(&token).filter(|w| w.stall == stall) else {
                        continue;
                    };
                    match waiting.outbox.check_write_timeout(self.write_timeout) {
                        Some(next) => self.set_timer(next, Due::Write { token, stall }),
                        None => self.release(token),
                    }
                }
                Due::Close(outbox) => {
                    if let Some(outbox) = outbox.upgrade() {
                        outbox.close_timed_out();
                    }
                }
            }
        }
    }
}
