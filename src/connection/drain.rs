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
//!   up on, and its connection ends; the outboxes waiting here are looked at
//!   four times per write timeout;
//! * the close timeout: once a close frame that the connection's thread did
//!   not send itself has left (a slow consumer, the application, shutdown,
//!   the idle timeout), the client has that long to answer before it is hung
//!   up on, so that its thread stops waiting; and a close that has not even
//!   left within the write timeout and the close timeout together is given
//!   up on too, however slowly the client takes bytes meanwhile;
//! * every connection's heartbeat ([`super::heartbeat`]): a quiet client is
//!   pinged, and one quiet for the idle timeout is closed.
//!
//! An outbox is held here by an `Arc` for as long as its socket is
//! registered: its descriptor cannot be closed, and its number reused by a
//! new connection, before it is deregistered. When the server stops, every
//! connection still open is hung up on, so that no thread outlives it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::sync::{Arc, Weak};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TryRecvError, unbounded};
use log::{debug, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::heartbeat::{Expiry, Heartbeats};
use super::outbox::{Failure, Outbox, Resumed, Stall};
use crate::config::Timeouts;

/// The waker's token; outboxes use their connection's number, which starts at 1.
const WAKE: Token = Token(0);

/// Jobs handed over without waking the drain thread, which takes them at
/// its next turn (a heartbeat tick at the latest), until this many wait.
const LAZY_JOBS: usize = 1024;

/// What the drain thread is asked to do.
#[derive(Debug)]
pub(crate) enum Job {
    /// This outbox's socket is full: finish writing it when it has room.
    Finish(Arc<Outbox>),
    /// This outbox has a close to see through, or, its connection's thread
    /// done, what was queued to finish: hang up if that is not done when its
    /// time is up.
    TimeClose(Weak<Outbox>, CloseStage),
    /// A new connection: keep its heartbeat.
    Watch(Weak<Outbox>),
    /// A connection watched already is to be closed at a set time.
    Expire(Weak<Outbox>, Expiry),
    /// End the thread, hanging up on every connection still open.
    Stop,
}

/// How far a close has got, which says how long it has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseStage {
    /// Queued: it has the write timeout to leave and the close timeout to be
    /// answered.
    Queued,
    /// Sent, with the FIN after it: it has the close timeout to be answered.
    Sent,
}

/// A cloneable way to hand work to the drain thread. It never waits. The
/// queue holds at most six jobs per connection (new, its expiry, full, full
/// again for a close that cuts in, two closes),
/// and only for connections opened since the drain thread's last turn,
/// which comes at least once a heartbeat tick and as soon as a thousand
/// jobs wait: it is bounded by the number of connections.
#[derive(Debug, Clone)]
pub(crate) struct DrainHandle {
    jobs: Sender<Job>,
    waker: Option<Arc<Waker>>,
}

impl DrainHandle {
    /// Finishes writing `outbox`, whose socket's buffer is full.
    pub(crate) fn finish(&self, outbox: Arc<Outbox>) {
        self.hand(Job::Finish(outbox), true);
    }

    /// Hangs up on `outbox`'s connection when the close at `stage` has had
    /// its time, unless it is through by then (see
    /// [`Outbox::close_timed_out`]).
    pub(crate) fn time_close(&self, outbox: Weak<Outbox>, stage: CloseStage) {
        // A queued close has seconds to go: no hurry to tell the thread.
        self.hand(Job::TimeClose(outbox, stage), stage == CloseStage::Sent);
    }

    /// Keeps the heartbeat of a new connection.
    pub(crate) fn watch(&self, outbox: Weak<Outbox>) {
        self.hand(Job::Watch(outbox), false);
    }

    /// Closes `outbox`'s connection as `expiry` says, unless it has ended by
    /// then.
    pub(crate) fn expire(&self, outbox: Weak<Outbox>, expiry: Expiry) {
        self.hand(Job::Expire(outbox, expiry), false);
    }

    /// Ends the drain thread; every connection it knows of is hung up on.
    pub(crate) fn stop(&self) {
        self.hand(Job::Stop, true);
    }

    /// Queues `job`, and wakes the thread if `urgent` or enough jobs wait.
    fn hand(&self, job: Job, urgent: bool) {
        // Fails only once the thread has ended, at the end of a shutdown:
        // the job is dropped with everything else.
        if self.jobs.send(job).is_err() {
            return;
        }
        if urgent || self.jobs.len() >= LAZY_JOBS {
            if let Some(waker) = &self.waker {
                // An eventfd write: it fails only when the counter is full,
                // and mio then resets it and writes again.
                let _ = waker.wake();
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
    waiting: HashMap<Token, Arc<Outbox>>,
    /// When the outboxes waiting are next looked at for the write timeout.
    next_write_check: Instant,
    closes: BinaryHeap<Reverse<CloseTimer>>,
    /// Numbers the close timers, to order those due at the same instant.
    counter: u64,
    timeouts: Timeouts,
    heartbeats: Heartbeats,
}

/// When a close has had its time.
#[derive(Debug)]
struct CloseTimer {
    at: Instant,
    seq: u64,
    outbox: Weak<Outbox>,
}

impl PartialEq for CloseTimer {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for CloseTimer {}

impl PartialOrd for CloseTimer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for CloseTimer {
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
            next_write_check: Instant::now() + timeouts.write / 4,
            closes: BinaryHeap::new(),
            counter: 0,
            timeouts: *timeouts,
            heartbeats: Heartbeats::new(timeouts.ping_interval, timeouts.idle),
        };
        Ok((drain, DrainHandle { jobs: jobs_tx, waker: Some(waker) }))
    }

    /// The thread's body: until [`DrainHandle::stop`], or until every
    /// handle is gone.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self.next_due().saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
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
                    Ok(Job::TimeClose(outbox, stage)) => self.time_close(outbox, stage),
                    Ok(Job::Watch(outbox)) => self.heartbeats.watch(outbox),
                    Ok(Job::Expire(outbox, expiry)) => self.heartbeats.expire(&outbox, expiry),
                    Ok(Job::Stop) | Err(TryRecvError::Disconnected) => return self.stop(),
                    Err(TryRecvError::Empty) => break,
                }
            }
            let now = Instant::now();
            self.check_writes(now);
            self.expire_closes(now);
            self.heartbeats.tick(now);
        }
    }

    /// When something is next due: a close, a look at the outboxes waiting,
    /// a heartbeat tick.
    fn next_due(&self) -> Instant {
        let mut due = self.heartbeats.due();
        if let Some(Reverse(close)) = self.closes.peek() {
            due = due.min(close.at);
        }
        if !self.waiting.is_empty() {
            due = due.min(self.next_write_check);
        }
        due
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
        match registered {
            Ok(()) => {
                self.waiting.insert(token, outbox);
            }
            Err(e) => {
                warn!("connection {}: cannot wait for its socket: {e}; hanging up", outbox.id());
                outbox.hang_up(Failure::Send(e));
            }
        }
    }

    /// The socket behind `token` has room: write.
    fn resume(&mut self, token: Token) {
        let Some(outbox) = self.waiting.get(&token) else {
            return;
        };
        if outbox.resume() == Resumed::Done {
            self.release(token);
        }
    }

    /// Stops waiting on an outbox's socket and lets the outbox go: its
    /// descriptor is deregistered while the `Arc` still keeps it open.
    fn release(&mut self, token: Token) {
        if let Some(outbox) = self.waiting.remove(&token) {
            let fd = outbox.fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
    }

    /// Hangs up on the outboxes waiting whose socket has taken no bytes for
    /// the write timeout, if it is time to look.
    fn check_writes(&mut self, now: Instant) {
        if now < self.next_write_check {
            return;
        }
        self.next_write_check = now + self.timeouts.write / 4;
        let timeout = self.timeouts.write;
        let mut done = Vec::new();
        for (token, outbox) in &self.waiting {
            match outbox.check_write_timeout(timeout) {
                Stall::Waiting => {}
                Stall::Over | Stall::TimedOut => done.push(*token),
            }
        }
        for token in done {
            self.release(token);
        }
    }

    fn time_close(&mut self, outbox: Weak<Outbox>, stage: CloseStage) {
        let after = match stage {
            CloseStage::Queued => self.timeouts.write + self.timeouts.close,
            CloseStage::Sent => self.timeouts.close,
        };
        self.counter += 1;
        self.closes.push(Reverse(CloseTimer { at: Instant::now() + after, seq: self.counter, outbox }));
    }

    /// Hangs up on the connections whose close has had its time.
    fn expire_closes(&mut self, now: Instant) {
        while self.closes.peek().is_some_and(|Reverse(close)| close.at <= now) {
            let Some(Reverse(close)) = self.closes.pop() else { break };
            if let Some(outbox) = close.outbox.upgrade() {
                outbox.close_timed_out();
            }
        }
    }

    /// The server has stopped: hangs up on every connection still open, so
    /// that its thread, blocked reading, ends, and its socket is closed.
    /// Those the heartbeat has closed already (idle, expired) are no longer
    /// watched, but their close may still wait here, or for its answer.
    fn stop(mut self) {
        let mut open = self.heartbeats.open();
        open.extend(self.waiting.values().cloned());
        open.extend(self.closes.drain().filter_map(|Reverse(close)| close.outbox.upgrade()));
        open.sort_unstable_by_key(|outbox| outbox.id().0);
        open.dedup_by_key(|outbox| outbox.id().0);
        if !open.is_empty() {
            debug!("drain stopping: hanging up on {} connections still open", open.len());
        }
        for outbox in open {
            outbox.hang_up(Failure::Stopped);
        }
        let tokens: Vec<Token> = self.waiting.keys().copied().collect();
        for token in tokens {
            self.release(token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::thread;
    use std::time::Duration;

    use socket2::SockRef;

    use crate::close::CloseReason;
    use crate::frame::Frame;
    use crate::hub::ConnectionId;
    use crate::metrics::Metrics;

    /// A drain thread running with these timeouts.
    struct Running {
        handle: DrainHandle,
        thread: Option<thread::JoinHandle<()>>,
    }

    impl Running {
        fn start(timeouts: Timeouts) -> Self {
            let (drain, handle) = Drain::new(&timeouts).unwrap();
            Running { handle, thread: Some(thread::spawn(move || drain.run())) }
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.handle.stop();
            let _ = self.thread.take().map(thread::JoinHandle::join);
        }
    }

    /// An outbox over one end of a loopback connection whose buffers are
    /// small, so that a few kilobytes fill it; and the other end.
    fn connection(drain: &DrainHandle) -> (Arc<Outbox>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        SockRef::from(&ours).set_send_buffer_size(4096).unwrap();
        SockRef::from(&peer).set_recv_buffer_size(4096).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let outbox = Outbox::new(
            ConnectionId(7),
            Arc::new(ours),
            Vec::new(),
            1 << 20,
            drain.clone(),
            Arc::new(Metrics::default()),
        )
        .unwrap();
        (outbox, peer)
    }

    fn timeouts(write: Duration) -> Timeouts {
        Timeouts { write, close: Duration::from_millis(100), ..Timeouts::default() }
    }

    /// Sends 1 KiB frames until the socket is full; returns what they make.
    fn fill(outbox: &Arc<Outbox>) -> Vec<u8> {
        let mut sent = Vec::new();
        for i in 0..1000 {
            let frame = Frame::binary(vec![(i % 251) as u8; 1024]);
            sent.extend_from_slice(frame.as_bytes());
            outbox.send(frame).unwrap();
            if outbox.is_stalled() {
                return sent;
            }
        }
        panic!("1000 KiB never filled a 4 KiB socket");
    }

    #[test]
    fn a_full_socket_is_finished_once_its_peer_reads() {
        let drain = Running::start(timeouts(Duration::from_secs(10)));
        let (outbox, mut peer) = connection(&drain.handle);
        let mut expected = fill(&outbox);
        // Queued behind the stall, for the drain thread to send.
        let more = Frame::text("and the rest");
        outbox.send(more.clone()).unwrap();
        expected.extend_from_slice(more.as_bytes());
        let mut received = vec![0u8; expected.len()];
        peer.read_exact(&mut received).unwrap();
        assert!(received == expected, "the bytes arrive whole and in order");
        // Let go, the outbox sends directly again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while outbox.is_stalled() && Instant::now() < deadline {
            thread::yield_now();
        }
        let last = Frame::text("direct");
        outbox.send(last.clone()).unwrap();
        let mut received = vec![0u8; last.len()];
        peer.read_exact(&mut received).unwrap();
        assert_eq!(received, last.as_bytes());
    }

    #[test]
    fn a_socket_that_takes_nothing_is_hung_up_after_the_write_timeout() {
        let drain = Running::start(timeouts(Duration::from_millis(100)));
        let (outbox, _peer) = connection(&drain.handle);
        fill(&outbox);
        // More than the peer's socket can hold, queued behind the stall.
        for _ in 0..512 {
            outbox.send(Frame::binary(vec![0u8; 1024])).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while outbox.failure().is_none() && Instant::now() < deadline {
            thread::yield_now();
        }
        assert_eq!(
            outbox.failure().as_deref(),
            Some(
                "its socket took no bytes for the write timeout: the client keeps its window shut (it reads nothing)"
            )
        );
        assert!(!outbox.is_stalled());
    }

    #[test]
    fn stopping_hangs_up_on_a_connection_the_heartbeat_closed_whose_close_waits() {
        let drain = Running::start(Timeouts {
            ping_interval: Duration::from_millis(40),
            ..timeouts(Duration::from_secs(10))
        });
        let (outbox, _peer) = connection(&drain.handle);
        fill(&outbox);
        // Expired now: the heartbeat queues its close, behind the stall, and
        // stops watching it.
        let reason = CloseReason::Lifetime;
        drain.handle.expire(Arc::downgrade(&outbox), Expiry { at: Instant::now(), reason });
        let deadline = Instant::now() + Duration::from_secs(10);
        while outbox.closed_with().is_none() && Instant::now() < deadline {
            thread::yield_now();
        }
        assert!(outbox.closed_with().is_some(), "the heartbeat never closed it");
        drop(drain);
        assert_eq!(outbox.failure().as_deref(), Some("the server stopped"));
    }

    #[test]
    fn stopping_hangs_up_on_every_connection() {
        let drain = Running::start(timeouts(Duration::from_secs(10)));
        let (outbox, mut peer) = connection(&drain.handle);
        drop(drain);
        assert_eq!(outbox.failure().as_deref(), Some("the server stopped"));
        let mut byte = [0u8];
        assert_eq!(peer.read(&mut byte).unwrap(), 0, "the peer sees the end");
    }
}
