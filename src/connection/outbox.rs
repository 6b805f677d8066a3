//! A connection's outbox: the bytes waiting for its client, behind one lock,
//! and the socket they leave by.
//!
//! Every byte a client receives is appended here under the lock and leaves
//! from the front, in order: its 101, the room frames the hub relays, the
//! echoes, pongs and close frames of its own thread, its pings. Whoever holds
//! the lock may send, and every send returns at once (`MSG_DONTWAIT`, for
//! that call only): the connection's thread stays blocked reading the same
//! socket, and no one ever waits on a client while holding the lock. So
//! frames never interleave, and a frame is never cut in two by another.
//!
//! When the kernel's buffer is full, what is left stays queued and the outbox
//! is handed to the drain thread ([`super::drain`]), which finishes it when
//! the socket has room again. Until then, others only append.
//!
//! The queue is bounded by bytes, not by frames: sixty-four queued 1 MiB
//! messages and sixty-four queued chat lines are not the same risk. A client
//! whose queue would pass its budget is not reading what it is sent: it is
//! closed as a slow consumer (1008), the close going ahead of every frame not
//! yet started, rather than allowed to grow the server's memory.
//!
//! Two rules keep the locks from ever deadlocking: no thread holds two
//! outboxes' locks at once, and no thread calls the hub (whose queue may be
//! full) while holding one. Both are checked in debug builds.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::ops::{Deref, DerefMut};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use log::info;
use tungstenite::protocol::frame::coding::CloseCode;

use super::drain::{CloseStage, DrainHandle};
use crate::admission::Permit;
use crate::close::CloseReason;
use crate::frame::{Frame, Run};
use crate::hub::ConnectionId;
use crate::metrics::Metrics;
use crate::stream::{Sink, Stuck, Then};
use crate::tls::TlsStream;

/// What each queued frame costs beyond its own bytes: its slot in the queue,
/// and a share of the allocation and reference count around it.
const FRAME_OVERHEAD: usize = 64;

/// The most frames handed to the kernel in one system call: enough that a
/// backlog goes out in few calls, few enough to bound the iovec array.
const MAX_BATCH: usize = 64;

/// Over TLS, the most plaintext sealed at once, so that the sealed bytes an
/// outbox holds beside its queue stay small.
const MAX_SEAL: usize = 64 * 1024;

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The budget is spent: the client is not keeping up, and has been
    /// closed as a slow consumer.
    Full,
    /// The connection is closing or over: nothing more is sent.
    Closed,
}

/// Where a close frame goes, and who sees the closing handshake through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// Ahead of every frame not yet started (a slow consumer, the
    /// application's close). If the client does not answer within the close
    /// timeout, the drain thread hangs up, so that its reader stops waiting.
    /// What the client sends meanwhile is dropped: the server has done
    /// with it.
    Now,
    /// After everything queued, so that nothing accepted is lost, and for
    /// cause (an expiry, an idle client, the application's close frame):
    /// hung up on, and what the client sends meanwhile dropped, as for
    /// `Now`.
    Dismissed,
    /// After everything queued, so that nothing accepted is lost (shutdown's
    /// 1001); hung up on as for `Now`. What the client sends meanwhile is
    /// still taken.
    Last,
    /// After everything queued, by the connection's own thread (its own
    /// close: a limit, a protocol error), which keeps its own deadline.
    FromReader,
    /// The answer to the client's close, by the connection's own thread:
    /// ahead of every frame not yet started, as RFC 6455 asks for it as
    /// soon as practical (section 5.5.1). A client that has closed wants no
    /// more messages (a browser drops them), and what would wait for it
    /// could be megabytes.
    Reply,
}

/// What an outbox queues: a frame, or a room's messages, which the room's
/// members share.
#[derive(Debug, Clone)]
pub(crate) enum Queued {
    Frame(Frame),
    /// One or more messages for a room, and when the hub took them: their
    /// delivery latency, observed once the last of their bytes has left,
    /// counts from there.
    Room(Run, Instant),
}

impl Queued {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Queued::Frame(frame) => frame.as_bytes(),
            Queued::Room(run, _) => run.as_bytes(),
        }
    }

    /// When the hub took a room's messages; `None` for anything else.
    fn enqueued(&self) -> Option<Instant> {
        match self {
            Queued::Frame(_) => None,
            Queued::Room(_, enqueued) => Some(*enqueued),
        }
    }

    fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// The number of frames it holds.
    fn frames(&self) -> usize {
        match self {
            Queued::Frame(_) => 1,
            Queued::Room(run, _) => run.frames(),
        }
    }
}

impl From<Frame> for Queued {
    fn from(frame: Frame) -> Self {
        Queued::Frame(frame)
    }
}

/// Where a stalled outbox stands against the write timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stall {
    /// Still waiting for room, within the timeout.
    Waiting,
    /// No longer stalled: sent, or given up on.
    Over,
    /// Its socket took no bytes for the timeout: hung up on just now.
    TimedOut,
}

/// What the drain thread's turn at an outbox came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resumed {
    /// Everything is sent, or nothing more can be: the drain lets it go.
    Done,
    /// The socket is full again: the drain waits for room.
    Waiting,
}

/// A connection's outbox; see the module docs.
///
/// Every outgoing byte, pongs and closes included, is appended here under
/// the lock and leaves from the front; no one blocks while holding the lock.
#[derive(Debug)]
pub(crate) struct Outbox {
    id: ConnectionId,
    sink: Arc<dyn Sink>,
    state: Mutex<State>,
    budget: usize,
    drain: DrainHandle,
    metrics: Arc<Metrics>,
    /// The client has sent something since its heartbeat last looked; set
    /// by the connection's thread without the lock.
    heard: AtomicBool,
    /// The connection's thread is busy with a message, not reading: time
    /// spent there (waiting on a full hub, say) is not the client's silence.
    busy: AtomicBool,
    /// How many closes that jump the queue wait for the lock. Whoever holds
    /// it to write stops at the end of its current send for them: a client
    /// that keeps up would otherwise have the whole queue sent under one
    /// hold of the lock, its close's answer behind all of it.
    cutting_in: AtomicU32,
    /// A close was queued for cause ([`Closing::Now`], [`Closing::Dismissed`]):
    /// the server has done with the client, and takes nothing more from it.
    shut: AtomicBool,
}

/// What the lock guards.
#[derive(Debug)]
struct State {
    /// Bytes that leave before any queued frame: the 101 answer, and over
    /// TLS the sealed records.
    head: Vec<u8>,
    head_sent: usize,
    /// Over TLS, when the hub took each room run sealed into `head`: they
    /// are delivered once `head` has been sent.
    sealed: Vec<Instant>,
    frames: VecDeque<Queued>,
    /// Bytes of the first frame already sent. Over TLS frames are sealed
    /// whole, so it stays 0.
    front_sent: usize,
    /// The bytes of the budget that `frames` use.
    budget_used: usize,
    /// The close frame, once one is queued: nothing is queued after it.
    close: Option<Frame>,
    /// Someone other than the connection's thread closed: once the close is
    /// sent, the drain thread keeps the close timeout.
    close_timed: bool,
    output: Output,
    /// The socket's buffer was full: the drain thread is finishing the queue.
    stalled: bool,
    /// When the socket last took bytes while stalled; the write timeout
    /// counts from here.
    progress: Instant,
    /// The connection's thread has finished reading: nothing more is queued.
    reader_done: bool,
    /// The connection's place within the limits, once its thread has ended
    /// with output still going out: given back when the output ends.
    place: Option<Permit>,
    /// Why the output broke off, if it did.
    failure: Option<Failure>,
}

/// Why a connection's output broke off.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A send failed, as the peer reset the connection, say.
    Send(io::Error),
    /// The socket took no bytes for the write timeout, and why, as far as
    /// the kernel can tell.
    WriteTimeout(Stuck),
    /// The kernel gave up on the connection: the client acknowledged none
    /// of the bytes sent to it, or kept its window shut, for the write and
    /// close timeouts together (the sockets' TCP user timeout).
    KernelTimeout,
    /// The client did not answer the close in time.
    CloseTimeout,
    /// Its thread ended, and the client did not take what was still queued
    /// within the write timeout and the close timeout together.
    Unsent,
    /// The server stopped with the connection still open.
    Stopped,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Send(e) => write!(f, "a send failed: {e}"),
            Failure::WriteTimeout(stuck) => {
                write!(f, "its socket took no bytes for the write timeout")?;
                match stuck {
                    Stuck::NotReading => write!(f, ": the client keeps its window shut (it reads nothing)"),
                    Stuck::Unanswered => {
                        write!(f, ": the client acknowledges nothing (it, or the path, is gone)")
                    }
                    Stuck::Unknown => Ok(()),
                }
            }
            Failure::KernelTimeout => {
                write!(f, "it took no bytes for the write and close timeouts together (TCP user timeout)")
            }
            Failure::CloseTimeout => write!(f, "it did not answer the close in time"),
            Failure::Unsent => write!(f, "it did not take what was still queued in time"),
            Failure::Stopped => write!(f, "the server stopped"),
        }
    }
}

/// Where the connection's output stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Open,
    /// The close frame is sent and the FIN after it.
    Ended,
    /// A send failed or the connection was hung up: nothing more goes out.
    Broken,
}

/// What one write left.
#[derive(Debug)]
enum Written {
    /// Everything queued is sent.
    Empty,
    /// The kernel's buffer is full.
    Full,
    /// Stopped between two sends for a close waiting to jump the queue,
    /// which sends what is left once it holds the lock (or, when stalled,
    /// hands it back to the drain thread).
    Yielded,
    Failed(io::Error),
}

impl Outbox {
    /// An outbox for connection `id` that sends `first` (the 101 answer)
    /// before anything queued after it, and holds at most `budget` bytes of
    /// frames.
    ///
    /// # Errors
    ///
    /// Over TLS, when the answer cannot be sealed.
    pub(crate) fn new(
        id: ConnectionId,
        sink: Arc<dyn Sink>,
        first: Vec<u8>,
        budget: usize,
        drain: DrainHandle,
        metrics: Arc<Metrics>,
    ) -> io::Result<Arc<Self>> {
        let head = match sink.tls() {
            Some(tls) => {
                let mut sealed = Vec::new();
                tls.seal(&[IoSlice::new(&first)], false, &mut sealed)?;
                sealed
            }
            None => first,
        };
        let state = State {
            head,
            head_sent: 0,
            sealed: Vec::new(),
            frames: VecDeque::new(),
            front_sent: 0,
            budget_used: 0,
            close: None,
            close_timed: false,
            output: Output::Open,
            stalled: false,
            progress: Instant::now(),
            reader_done: false,
            place: None,
            failure: None,
        };
        let outbox = Arc::new(Outbox {
            id,
            sink,
            state: Mutex::new(state),
            budget,
            drain,
            metrics,
            // Its request is the first thing heard from the client: the
            // heartbeat's tick it opens in, however little of it is left,
            // does not count as a whole tick of quiet.
            heard: AtomicBool::new(true),
            busy: AtomicBool::new(false),
            cutting_in: AtomicU32::new(0),
            shut: AtomicBool::new(false),
        });
        outbox.drain.watch(Arc::downgrade(&outbox));
        Ok(outbox)
    }

    /// Appends a frame or a run without sending it: the hub appends a whole
    /// batch, then [`flush`](Self::flush)es once.
    ///
    /// [`Refused::Full`] means the client has been closed as a slow
    /// consumer; the caller should stop sending to it.
    pub(crate) fn push(self: &Arc<Self>, queued: impl Into<Queued>) -> Result<(), Refused> {
        let appended = {
            let mut state = self.lock();
            let appended = self.append(&mut state, queued.into());
            // One batch may bring a few of the largest messages: past half
            // the budget, what the socket takes now goes, so that a client
            // keeping up is not counted as slow for what one batch held.
            if appended == Err(Refused::Full) || state.budget_used > self.budget / 2 {
                self.flush_locked(&mut state);
            }
            appended
        };
        self.note_slow_consumer(appended);
        appended
    }

    /// Appends a frame or a run and sends what the socket takes now.
    pub(crate) fn send(self: &Arc<Self>, queued: impl Into<Queued>) -> Result<(), Refused> {
        let appended = {
            let mut state = self.lock();
            let appended = self.append(&mut state, queued.into());
            self.flush_locked(&mut state);
            appended
        };
        self.note_slow_consumer(appended);
        appended
    }

    /// Sends what is queued and the socket takes now, unless the drain
    /// thread is at it.
    pub(crate) fn flush(self: &Arc<Self>) {
        self.flush_locked(&mut self.lock());
    }

    /// Queues a close frame, as `closing` says, and sends what the socket
    /// takes now. Nothing is queued after it; once it is sent, the FIN
    /// follows (close_notify first, over TLS).
    ///
    /// [`Refused::Closed`] if a close is already queued or the connection
    /// is over.
    pub(crate) fn close(self: &Arc<Self>, frame: Frame, closing: Closing) -> Result<(), Refused> {
        let cuts_in = matches!(closing, Closing::Now | Closing::Reply);
        if cuts_in {
            self.cutting_in.fetch_add(1, Ordering::SeqCst);
        }
        let mut state = self.lock();
        if cuts_in {
            self.cutting_in.fetch_sub(1, Ordering::SeqCst);
        }
        let queued = self.queue_close(&mut state, frame, closing);
        if cuts_in && state.stalled && state.output == Output::Open {
            // The drain thread may have stopped for this close with room
            // still left, which epoll (edge-triggered) will not report
            // again: handing the outbox over anew has it look at once.
            self.drain.finish(self.clone());
        }
        // Also what a writer stopped for this close left, if refused.
        self.flush_locked(&mut state);
        queued
    }

    /// The close frame queued first, if any: the one the client is sent.
    pub(crate) fn closed_with(&self) -> Option<Frame> {
        self.lock().close.clone()
    }

    /// The connection's thread has finished reading: nothing more is queued,
    /// and no one need hang up to wake it. What is queued still goes out,
    /// but within the write timeout and the close timeout together, as a
    /// close that others queue must: a client that stops reading, then
    /// hangs up and takes a few bytes now and then, would otherwise keep its
    /// socket and its queue for as long as it liked.
    pub(crate) fn reader_ended(self: &Arc<Self>) {
        let mut state = self.lock();
        state.reader_done = true;
        if state.stalled {
            self.time_rest(&mut state);
        }
    }

    /// Gives what is still queued, once the connection's thread has ended,
    /// the write timeout and the close timeout together to leave.
    fn time_rest(self: &Arc<Self>, state: &mut State) {
        if state.output == Output::Open && !state.close_timed {
            state.close_timed = true;
            self.drain.time_close(Arc::downgrade(self), CloseStage::Queued);
        }
    }

    /// Keeps the connection's place within the limits for as long as what
    /// is queued is still going out, once its thread has ended: its socket
    /// and queue are still held. Gives it back at once otherwise.
    pub(crate) fn keep_place(&self, permit: Permit) {
        let mut state = self.lock();
        if state.stalled && state.output == Output::Open {
            state.place = Some(permit);
        }
    }

    /// The client has sent something: its connection is alive.
    pub(crate) fn hear(&self) {
        self.heard.store(true, Ordering::Relaxed);
    }

    /// Whether the server has closed the connection for cause: see `shut`.
    pub(crate) fn is_shut(&self) -> bool {
        self.shut.load(Ordering::Relaxed)
    }

    /// The connection's thread starts or ends handling a message.
    pub(crate) fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Relaxed);
    }

    /// Whether the client has sent anything since the last look, for its
    /// heartbeat; a thread busy with its message counts as having heard.
    pub(crate) fn take_heard(&self) -> bool {
        self.heard.swap(false, Ordering::Relaxed) | self.busy.load(Ordering::Relaxed)
    }

    /// The descriptor the drain thread waits on.
    pub(crate) fn fd(&self) -> RawFd {
        self.sink.fd()
    }

    /// The connection this outbox belongs to.
    pub(crate) fn id(&self) -> ConnectionId {
        self.id
    }

    /// The drain thread's turn: the socket has room again, so write until
    /// everything is sent or the buffer is full again.
    pub(crate) fn resume(self: &Arc<Self>) -> Resumed {
        self.resume_locked(&mut self.lock())
    }

    fn resume_locked(self: &Arc<Self>, state: &mut State) -> Resumed {
        if !state.stalled {
            return Resumed::Done;
        }
        let (written, sent) = self.write(state);
        if sent > 0 {
            state.progress = Instant::now();
        }
        if let Written::Full | Written::Yielded = written {
            return Resumed::Waiting;
        }
        state.stalled = false;
        self.settle(state, written);
        Resumed::Done
    }

    /// For the drain thread: hangs up when a stalled outbox's socket has
    /// taken no bytes for `timeout`.
    pub(crate) fn check_write_timeout(self: &Arc<Self>, timeout: Duration) -> Stall {
        let mut state = self.lock();
        if !state.stalled {
            return Stall::Over;
        }
        if state.progress.elapsed() < timeout {
            return Stall::Waiting;
        }
        // A socket tells it has room only once a good part of its buffer is
        // free (half of what it holds; megabytes, as Linux grows it): a
        // client that reads, but slowly, takes bytes all along without the
        // drain thread hearing of it. Offered them, its socket says.
        if self.resume_locked(&mut state) == Resumed::Done {
            return Stall::Over;
        }
        if state.progress.elapsed() < timeout {
            return Stall::Waiting;
        }
        self.time_out_locked(&mut state, Failure::WriteTimeout(Stuck::of(self.fd())));
        Stall::TimedOut
    }

    /// For the connection's thread: a read found that the kernel has given
    /// up on the connection ([`Failure::KernelTimeout`]).
    pub(crate) fn timed_out_in_kernel(&self) {
        self.time_out_locked(&mut self.lock(), Failure::KernelTimeout);
    }

    /// Hangs up on a client that took no bytes in time, counted as a write
    /// timeout whichever clock ran out: the drain thread's, which starts
    /// once the server's socket buffer is full, or the kernel's, which
    /// starts once the client's window shuts and so comes first when little
    /// is sent to it.
    fn time_out_locked(&self, state: &mut State, failure: Failure) {
        if state.output != Output::Broken {
            self.metrics.write_timed_out();
            // As a slow consumer's close is: the operator learns why a
            // client went without a close handshake.
            info!("connection {}: hung up: {failure}", self.id);
            self.hang_up_locked(state, failure);
        }
    }

    /// For the drain thread, once a close has had its time: hangs up if the
    /// close has not all left yet, or if the client has not answered it
    /// while the connection's thread still waits for that.
    pub(crate) fn close_timed_out(&self) {
        let mut state = self.lock();
        match (state.output, state.reader_done) {
            (Output::Open, true) if state.stalled => self.hang_up_locked(&mut state, Failure::Unsent),
            (Output::Open | Output::Ended, false) => self.hang_up_locked(&mut state, Failure::CloseTimeout),
            (Output::Open | Output::Ended, true) | (Output::Broken, _) => {}
        }
    }

    /// Gives up on the connection, for `failure`: drops what is queued and
    /// shuts the socket down both ways.
    pub(crate) fn hang_up(&self, failure: Failure) {
        self.hang_up_locked(&mut self.lock(), failure);
    }

    /// Why the output broke off, if it did: for the log line that ends the
    /// connection, written once no lock is held.
    pub(crate) fn failure(&self) -> Option<String> {
        self.lock().failure.as_ref().map(Failure::to_string)
    }

    fn lock(&self) -> Locked<'_> {
        Locked::new(&self.state)
    }

    /// Queues a frame or a run within the budget. Over it, the client is a
    /// slow consumer: it is closed with 1008, ahead of the frames not yet
    /// started.
    fn append(self: &Arc<Self>, state: &mut State, queued: Queued) -> Result<(), Refused> {
        // A close frame sent as a message still ends the conversation:
        // nothing may follow it, and the FIN and the close timeout do.
        if let Queued::Frame(frame) = &queued {
            if frame.is_close() {
                return self.queue_close(state, frame.clone(), Closing::Dismissed);
            }
        }
        if state.close.is_some() || state.reader_done || state.output != Output::Open {
            return Err(Refused::Closed);
        }
        let cost = cost(&queued);
        if state.budget_used + cost > self.budget {
            let close = Frame::close(Some(CloseReason::SlowConsumer.frame()));
            self.queue_close(state, close, Closing::Now)?;
            return Err(Refused::Full);
        }
        state.budget_used += cost;
        state.frames.push_back(queued);
        Ok(())
    }

    fn queue_close(
        self: &Arc<Self>,
        state: &mut State,
        frame: Frame,
        closing: Closing,
    ) -> Result<(), Refused> {
        if state.close.is_some() || state.reader_done || state.output != Output::Open {
            return Err(Refused::Closed);
        }
        if matches!(closing, Closing::Now | Closing::Reply) {
            // A frame partly sent must be finished, or the client would
            // read the close as the rest of it.
            let started = usize::from(state.front_sent > 0);
            let dropped: usize = state.frames.drain(started..).map(|queued| cost(&queued)).sum();
            state.budget_used -= dropped;
        }
        let queued = Queued::Frame(frame.clone());
        state.budget_used += cost(&queued);
        state.frames.push_back(queued);
        state.close = Some(frame);
        if let Closing::Now | Closing::Dismissed = closing {
            self.shut.store(true, Ordering::Relaxed);
        }
        state.close_timed = matches!(closing, Closing::Now | Closing::Dismissed | Closing::Last);
        if state.close_timed {
            self.drain.time_close(Arc::downgrade(self), CloseStage::Queued);
        }
        Ok(())
    }

    fn note_slow_consumer(&self, appended: Result<(), Refused>) {
        if appended == Err(Refused::Full) {
            self.metrics.slow_consumer();
            info!("connection {}: outbox full, closing as a slow consumer", self.id);
        }
    }

    /// Sends what the socket takes now, unless the drain thread has the
    /// outbox or nothing more can go out.
    fn flush_locked(self: &Arc<Self>, state: &mut State) {
        if state.stalled || state.output != Output::Open {
            return;
        }
        let (written, _) = self.write(state);
        self.settle(state, written);
    }

    /// Acts on what a write left: the FIN after a close, the drain thread
    /// for a full socket, or the end for a failed one.
    fn settle(self: &Arc<Self>, state: &mut State, written: Written) {
        match written {
            Written::Empty => {
                if state.reader_done {
                    // All that was queued is out: nothing more is held.
                    state.place = None;
                }
                if state.close.is_some() && state.output == Output::Open {
                    // Nothing is ever queued after a close frame: say so.
                    self.sink.shutdown(Shutdown::Write);
                    state.output = Output::Ended;
                    if state.close_timed && !state.reader_done {
                        self.drain.time_close(Arc::downgrade(self), CloseStage::Sent);
                    }
                }
            }
            Written::Full => {
                if !state.stalled {
                    state.stalled = true;
                    state.progress = Instant::now();
                    self.metrics.write_stalled();
                    self.drain.finish(self.clone());
                    // A flush of what was queued before the thread ended.
                    if state.reader_done {
                        self.time_rest(state);
                    }
                }
            }
            // The close that this write stopped for sends the rest.
            Written::Yielded => {}
            Written::Failed(e) if e.kind() == io::ErrorKind::TimedOut => {
                self.time_out_locked(state, Failure::KernelTimeout);
            }
            Written::Failed(e) => self.hang_up_locked(state, Failure::Send(e)),
        }
    }

    /// Gives up on the connection's output: drops what is queued and shuts
    /// the socket down both ways, so that its thread, blocked reading, wakes.
    /// The first failure is kept, to be logged once no lock is held.
    fn hang_up_locked(&self, state: &mut State, failure: Failure) {
        state.failure.get_or_insert(failure);
        state.output = Output::Broken;
        state.place = None;
        state.stalled = false;
        state.head = Vec::new();
        state.head_sent = 0;
        state.sealed = Vec::new();
        state.frames = VecDeque::new();
        state.front_sent = 0;
        state.budget_used = 0;
        if matches!(state.failure, Some(Failure::WriteTimeout(_) | Failure::KernelTimeout | Failure::Unsent))
        {
            self.sink.discard_unsent();
        }
        self.sink.shutdown(Shutdown::Both);
    }

    /// Sends from the front, a batch per system call, until everything is
    /// sent or the kernel's buffer is full; returns how it ended and how
    /// many bytes went out.
    fn write(&self, state: &mut State) -> (Written, usize) {
        let tls = self.sink.tls();
        let mut sent = Sent::new(&self.metrics);
        let mut bytes = 0;
        let mut calls = 0;
        let written = loop {
            if let Some(tls) = tls {
                if state.head_sent == state.head.len() {
                    if let Err(e) = state.seal(tls, &mut sent) {
                        break Written::Failed(e);
                    }
                }
            }
            let slices = state.slices(tls.is_none());
            if slices.is_empty() {
                break Written::Empty;
            }
            // A send at least, so that every write makes progress.
            if calls > 0 && self.cutting_in.load(Ordering::SeqCst) > 0 {
                break Written::Yielded;
            }
            calls += 1;
            let wanted: usize = slices.iter().map(|slice| slice.len()).sum();
            let then = if state.sends_the_end(tls.is_none()) { Then::Fin } else { Then::More };
            let result = self.sink.send(&slices, then);
            drop(slices);
            match result {
                Ok(n) => {
                    bytes += n;
                    state.advance(n, &mut sent);
                    // A short write: the buffer is full, and another try
                    // would only be told so.
                    if n < wanted {
                        break Written::Full;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Written::Full,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Written::Failed(e),
            }
        };
        sent.record();
        (written, bytes)
    }
}

#[cfg(test)]
impl Queued {
    /// Returns true if and only if both hold the very same bytes, not a copy.
    pub(crate) fn shares_bytes_with(&self, other: &Queued) -> bool {
        std::ptr::eq(self.as_bytes(), other.as_bytes())
    }
}

#[cfg(test)]
impl Outbox {
    /// Returns true if and only if the drain thread has it.
    pub(crate) fn is_stalled(&self) -> bool {
        self.lock().stalled
    }

    /// The first frame or run waiting.
    pub(crate) fn queued_front(&self) -> Option<Queued> {
        self.lock().frames.front().cloned()
    }

    /// Runs `f` with the lock held.
    #[cfg(all(test, debug_assertions))]
    pub(crate) fn while_locked(&self, f: impl FnOnce()) {
        let _held = self.lock();
        f();
    }
}

impl State {
    /// The next bytes to send, in order: what is left of the head, then, on
    /// a plain socket, up to a batch of frames.
    fn slices(&self, frames: bool) -> Vec<IoSlice<'_>> {
        let batch = if frames { self.frames.len().min(MAX_BATCH) } else { 0 };
        let mut slices = Vec::with_capacity(batch + 1);
        if self.head_sent < self.head.len() {
            slices.push(IoSlice::new(&self.head[self.head_sent..]));
        }
        for (i, queued) in self.frames.iter().take(batch).enumerate() {
            let skip = if i == 0 { self.front_sent } else { 0 };
            slices.push(IoSlice::new(&queued.as_bytes()[skip..]));
        }
        slices
    }

    /// Whether [`slices`](State::slices) hold the last bytes the
    /// connection will send: the close frame is queued, and nothing is left
    /// out of them (over TLS, everything is sealed, close_notify too). Once
    /// they are sent, the FIN follows at once.
    fn sends_the_end(&self, frames: bool) -> bool {
        self.close.is_some() && if frames { self.frames.len() <= MAX_BATCH } else { self.frames.is_empty() }
    }

    /// Takes `n` sent bytes off the front.
    fn advance(&mut self, mut n: usize, sent: &mut Sent<'_>) {
        let from_head = n.min(self.head.len() - self.head_sent);
        self.head_sent += from_head;
        n -= from_head;
        if self.head_sent == self.head.len() && !self.head.is_empty() {
            // The 101, or a batch of records: not worth keeping for later.
            self.head = Vec::new();
            self.head_sent = 0;
            for enqueued in self.sealed.drain(..) {
                sent.delivered(enqueued);
            }
        }
        while n > 0 {
            let left = self.frames[0].len() - self.front_sent;
            if n < left {
                self.front_sent += n;
                return;
            }
            n -= left;
            self.front_sent = 0;
            let queued = self.frames.pop_front().expect("Bug: bytes sent beyond the queue");
            self.taken(&queued, sent);
            if let Some(enqueued) = queued.enqueued() {
                sent.delivered(enqueued);
            }
        }
        self.shrink();
    }

    /// Over TLS, once the head is sent: seals the records waiting in the
    /// session, then the next frames (up to a batch or 64 KiB), into the
    /// head. close_notify follows the close frame.
    fn seal(&mut self, tls: &TlsStream, sent: &mut Sent<'_>) -> io::Result<()> {
        let mut count = 0;
        let mut plaintext = 0;
        for queued in self.frames.iter().take(MAX_BATCH) {
            count += 1;
            plaintext += queued.len();
            if plaintext >= MAX_SEAL {
                break;
            }
        }
        let slices: Vec<IoSlice<'_>> =
            self.frames.iter().take(count).map(|queued| IoSlice::new(queued.as_bytes())).collect();
        // The batch ends with the close frame, the last ever queued.
        let last = count > 0 && count == self.frames.len() && self.close.is_some();
        self.head.clear();
        self.head_sent = 0;
        tls.seal(&slices, last, &mut self.head)?;
        drop(slices);
        for queued in self.frames.drain(..count).collect::<Vec<_>>() {
            self.taken(&queued, sent);
            self.sealed.extend(queued.enqueued());
        }
        self.shrink();
        Ok(())
    }

    /// A frame or run has left the queue: sent, or sealed into the head.
    fn taken(&mut self, queued: &Queued, sent: &mut Sent<'_>) {
        self.budget_used -= cost(queued);
        sent.add(queued);
    }

    /// After a burst, gives back the queue's memory: an idle connection
    /// should cost little.
    fn shrink(&mut self) {
        if self.frames.is_empty() && self.frames.capacity() > MAX_BATCH {
            self.frames = VecDeque::new();
        }
    }
}

/// What a frame or run counts against the budget: its bytes, and the
/// overhead of a queued frame for each frame in it.
fn cost(queued: &Queued) -> usize {
    queued.len() + FRAME_OVERHEAD * queued.frames()
}

/// What one write sent, for the metrics: counted once per write rather than
/// once per frame.
#[derive(Debug)]
struct Sent<'a> {
    metrics: &'a Metrics,
    messages: usize,
    bytes: usize,
    close: Option<CloseCode>,
    /// The time, read once a write and only if it delivers room messages.
    now: Option<Instant>,
}

impl<'a> Sent<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        Sent { metrics, messages: 0, bytes: 0, close: None, now: None }
    }

    fn add(&mut self, queued: &Queued) {
        match queued {
            Queued::Room(run, _) => self.messages += run.frames(),
            Queued::Frame(frame) if frame.is_message() => self.messages += 1,
            Queued::Frame(frame) if frame.is_close() => {
                self.close = frame.close_frame().map(|close| close.code);
            }
            Queued::Frame(_) => {}
        }
        self.bytes += queued.len();
    }

    /// The last byte of room messages the hub took at `enqueued` has left.
    fn delivered(&mut self, enqueued: Instant) {
        let now = *self.now.get_or_insert_with(Instant::now);
        self.metrics.room_delivered(now.saturating_duration_since(enqueued));
    }

    fn record(&self) {
        if self.bytes > 0 {
            self.metrics.written(self.messages, self.bytes);
        }
        if let Some(code) = self.close {
            self.metrics.close_sent(code);
        }
    }
}

thread_local! {
    /// True while this thread holds an outbox's lock.
    static HOLDING: Cell<bool> = const { Cell::new(false) };
}

/// Checks, in debug builds, that this thread holds no outbox's lock: the hub
/// calls it before it may wait on its queue.
pub(crate) fn assert_unlocked() {
    debug_assert!(
        !HOLDING.with(Cell::get),
        "Bug: waiting (on the hub, or on a second outbox) while holding an outbox's lock"
    );
}

/// An outbox's lock, held; it notes that this thread holds one.
struct Locked<'a>(MutexGuard<'a, State>);

impl<'a> Locked<'a> {
    fn new(state: &'a Mutex<State>) -> Self {
        assert_unlocked();
        // A thread that panicked while holding the lock left the queue in
        // some state; the connection ends soon either way.
        let guard = state.lock().unwrap_or_else(PoisonError::into_inner);
        HOLDING.with(|holding| holding.set(true));
        Locked(guard)
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        HOLDING.with(|holding| holding.set(false));
    }
}

impl Deref for Locked<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        &self.0
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::connection::drain::{DrainHandle, Job};
    use crossbeam_channel::Receiver;

    /// A socket that records what it is sent, taking at most `room` bytes
    /// (then `WouldBlock`), or failing, as told.
    #[derive(Debug, Default)]
    pub(crate) struct Recorder {
        inner: Mutex<Log>,
    }

    #[derive(Debug, Default)]
    struct Log {
        bytes: Vec<u8>,
        calls: usize,
        room: Option<usize>,
        fail: bool,
        shutdowns: Vec<Shutdown>,
        /// What each send said would follow it.
        thens: Vec<Then>,
    }

    impl Recorder {
        pub(crate) fn bytes(&self) -> Vec<u8> {
            self.inner.lock().unwrap().bytes.clone()
        }

        pub(crate) fn calls(&self) -> usize {
            self.inner.lock().unwrap().calls
        }

        /// Takes at most `room` more bytes, then reports a full buffer;
        /// `None` takes everything.
        pub(crate) fn set_room(&self, room: Option<usize>) {
            self.inner.lock().unwrap().room = room;
        }

        fn fail(&self) {
            self.inner.lock().unwrap().fail = true;
        }

        fn shutdowns(&self) -> Vec<Shutdown> {
            self.inner.lock().unwrap().shutdowns.clone()
        }

        fn thens(&self) -> Vec<Then> {
            self.inner.lock().unwrap().thens.clone()
        }
    }

    impl Sink for Recorder {
        fn send(&self, bufs: &[IoSlice<'_>], then: Then) -> io::Result<usize> {
            let mut inner = self.inner.lock().unwrap();
            inner.calls += 1;
            inner.thens.push(then);
            if inner.fail {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            let mut room = inner.room.unwrap_or(usize::MAX);
            if room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let before = inner.bytes.len();
            for buf in bufs {
                let n = buf.len().min(room);
                inner.bytes.extend_from_slice(&buf[..n]);
                room -= n;
            }
            let n = inner.bytes.len() - before;
            if let Some(left) = &mut inner.room {
                *left -= n;
            }
            Ok(n)
        }

        fn shutdown(&self, how: Shutdown) {
            self.inner.lock().unwrap().shutdowns.push(how);
        }

        fn fd(&self) -> RawFd {
            -1
        }
    }

    /// An outbox over a [`Recorder`], with the drain thread's jobs kept for
    /// the test to look at.
    pub(crate) struct Recorded {
        pub(crate) outbox: Arc<Outbox>,
        pub(crate) sink: Arc<Recorder>,
        pub(crate) jobs: Receiver<Job>,
    }

    pub(crate) fn recorded(id: u64, first: &[u8], budget: usize, metrics: Arc<Metrics>) -> Recorded {
        let sink = Arc::new(Recorder::default());
        let (drain, jobs) = DrainHandle::detached();
        let outbox =
            Outbox::new(ConnectionId(id), sink.clone(), first.to_vec(), budget, drain, metrics).unwrap();
        // Every new outbox asks the drain thread to keep its heartbeat.
        assert!(matches!(jobs.try_recv(), Ok(Job::Watch(_))));
        Recorded { outbox, sink, jobs }
    }

    fn outbox(budget: usize) -> Recorded {
        recorded(1, b"HTTP/1.1 101\r\n\r\n", budget, Arc::new(Metrics::default()))
    }

    fn wire(frames: &[&Frame]) -> Vec<u8> {
        frames.iter().flat_map(|frame| frame.as_bytes().to_vec()).collect()
    }

    #[test]
    fn the_101_goes_first_and_pushed_frames_wait_for_a_flush() {
        let r = outbox(1 << 20);
        let (a, b) = (Frame::text("a"), Frame::text("b"));
        r.outbox.push(a.clone()).unwrap();
        r.outbox.push(b.clone()).unwrap();
        assert_eq!(r.sink.calls(), 0, "pushing does not send");
        r.outbox.flush();
        let mut expected = b"HTTP/1.1 101\r\n\r\n".to_vec();
        expected.extend(wire(&[&a, &b]));
        assert_eq!(r.sink.bytes(), expected);
        assert_eq!(r.sink.calls(), 1, "the 101 and both frames in one send");
    }

    #[test]
    fn a_backlog_goes_out_in_batches_of_64_frames() {
        let r = outbox(1 << 20);
        r.outbox.flush();
        let frames: Vec<Frame> = (0..130).map(|i| Frame::text(i.to_string())).collect();
        for frame in &frames {
            r.outbox.push(frame.clone()).unwrap();
        }
        r.outbox.flush();
        assert_eq!(r.sink.calls(), 1 + 3);
        assert!(r.sink.bytes().ends_with(&wire(&frames.iter().collect::<Vec<_>>())));
    }

    #[test]
    fn a_full_socket_is_handed_to_the_drain_once_and_resumed_in_order() {
        let r = outbox(1 << 20);
        r.outbox.flush();
        let start = r.sink.bytes().len();
        let frames: Vec<Frame> = (0..10).map(|i| Frame::text(format!("message {i}"))).collect();
        r.sink.set_room(Some(15));
        for frame in &frames[..5] {
            r.outbox.send(frame.clone()).unwrap();
        }
        let handed: Vec<Job> = r.jobs.try_iter().collect();
        assert!(matches!(handed.as_slice(), [Job::Finish(_)]), "{handed:?}");
        let calls = r.sink.calls();
        for frame in &frames[5..] {
            r.outbox.send(frame.clone()).unwrap();
        }
        assert_eq!(r.sink.calls(), calls, "while stalled, only the drain thread sends");
        r.sink.set_room(Some(30));
        assert_eq!(r.outbox.resume(), Resumed::Waiting);
        r.sink.set_room(None);
        assert_eq!(r.outbox.resume(), Resumed::Done);
        assert_eq!(&r.sink.bytes()[start..], wire(&frames.iter().collect::<Vec<_>>()));
        assert_eq!(r.outbox.lock().budget_used, 0);
        r.outbox.send(Frame::text("after")).unwrap();
        assert!(r.sink.bytes().ends_with(Frame::text("after").as_bytes()), "sent directly again");
    }

    #[test]
    fn over_budget_is_a_slow_consumer_whose_close_jumps_the_queue_but_not_a_started_frame() {
        let metrics = Arc::new(Metrics::default());
        let r = recorded(1, b"", 400, metrics.clone());
        let big = Frame::binary(vec![7u8; 100]);
        r.sink.set_room(Some(50));
        r.outbox.send(big.clone()).unwrap();
        r.outbox.push(big.clone()).unwrap();
        assert_eq!(r.outbox.push(big.clone()), Err(Refused::Full));
        assert_eq!(r.outbox.push(Frame::text("x")), Err(Refused::Closed), "nothing after a close");
        r.sink.set_room(None);
        assert_eq!(r.outbox.resume(), Resumed::Done);
        let close = Frame::close(Some(CloseReason::SlowConsumer.frame()));
        assert_eq!(r.sink.bytes(), wire(&[&big, &close]), "the started frame, then the close");
        assert_eq!(r.sink.shutdowns(), [Shutdown::Write], "the FIN after the close");
        assert_eq!(
            r.outbox.closed_with().and_then(|close| close.close_frame()),
            Some(CloseReason::SlowConsumer.frame())
        );
        let json = metrics.to_json();
        assert!(json.contains("\"slow_consumer_closes\": 1"), "{json}");
    }

    /// How many times room messages were counted as delivered.
    fn deliveries(metrics: &Metrics) -> u64 {
        let stats: serde_json::Value = serde_json::from_str(&metrics.to_json()).unwrap();
        stats["room_delivery_latency_seconds"]["count"].as_u64().unwrap()
    }

    #[test]
    fn a_room_run_is_delivered_once_its_last_byte_has_left_and_never_if_dropped() {
        let metrics = Arc::new(Metrics::default());
        let r = recorded(1, b"", 1 << 20, metrics.clone());
        let run = || Queued::Room(Run::new(&[Frame::text("one"), Frame::text("two")]), Instant::now());
        r.sink.set_room(Some(4));
        r.outbox.push(run()).unwrap();
        r.outbox.push(Frame::text("direct")).unwrap();
        r.outbox.flush();
        assert_eq!(deliveries(&metrics), 0, "part of a run is not delivered");
        r.sink.set_room(None);
        assert_eq!(r.outbox.resume(), Resumed::Done);
        assert_eq!(deliveries(&metrics), 1, "one run for one member; the direct frame is no room's");
        r.sink.fail();
        r.outbox.push(run()).unwrap();
        r.outbox.flush();
        assert_eq!(deliveries(&metrics), 1, "a run dropped with the connection was never delivered");
    }

    #[test]
    fn a_close_after_queued_frames_keeps_them_and_ends_with_a_fin() {
        let r = outbox(1 << 20);
        r.outbox.push(Frame::text("pending")).unwrap();
        let close = Frame::close(Some(CloseReason::Shutdown.frame()));
        r.outbox.close(close.clone(), Closing::Last).unwrap();
        assert!(r.sink.bytes().ends_with(&wire(&[&Frame::text("pending"), &close])));
        assert_eq!(r.sink.shutdowns(), [Shutdown::Write]);
        let timed: Vec<Job> = r.jobs.try_iter().collect();
        let stages: Vec<CloseStage> = timed
            .iter()
            .filter_map(|job| match job {
                Job::TimeClose(_, stage) => Some(*stage),
                _ => None,
            })
            .collect();
        assert_eq!(stages, [CloseStage::Queued, CloseStage::Sent], "{timed:?}");
        assert_eq!(r.outbox.close(Frame::close(None), Closing::Now), Err(Refused::Closed));
    }

    #[test]
    fn the_close_frame_is_sent_for_the_fin_to_join_it() {
        let r = outbox(1 << 20);
        r.outbox.send(Frame::text("a")).unwrap();
        r.outbox.close(Frame::close(None), Closing::Last).unwrap();
        assert_eq!(r.sink.thens(), [Then::More, Then::Fin], "only the last bytes wait for the FIN");
        assert_eq!(r.sink.shutdowns(), [Shutdown::Write], "and the FIN comes at once");
    }

    #[test]
    fn a_close_that_waits_for_room_is_still_sent_for_the_fin_to_join_it() {
        let r = outbox(1 << 20);
        r.sink.set_room(Some(10));
        r.outbox.send(Frame::text("a message")).unwrap();
        r.outbox.close(Frame::close(None), Closing::Last).unwrap();
        r.sink.set_room(Some(10));
        assert_eq!(r.outbox.resume(), Resumed::Waiting);
        assert!(r.sink.shutdowns().is_empty(), "no FIN before the last bytes");
        r.sink.set_room(None);
        assert_eq!(r.outbox.resume(), Resumed::Done);
        assert_eq!(r.sink.thens(), [Then::More, Then::Fin, Then::Fin]);
        assert_eq!(r.sink.shutdowns(), [Shutdown::Write]);
        assert!(r.sink.bytes().ends_with(&wire(&[&Frame::text("a message"), &Frame::close(None)])));
    }

    #[test]
    fn the_readers_own_close_needs_no_timer() {
        let r = outbox(1 << 20);
        r.outbox.close(Frame::close(None), Closing::FromReader).unwrap();
        assert_eq!(r.sink.shutdowns(), [Shutdown::Write]);
        assert!(r.jobs.is_empty());
    }

    #[test]
    fn a_failed_send_drops_the_queue_and_hangs_up() {
        let r = outbox(1 << 20);
        r.sink.fail();
        r.outbox.send(Frame::text("lost")).unwrap();
        assert_eq!(r.sink.shutdowns(), [Shutdown::Both]);
        assert_eq!(r.outbox.push(Frame::text("more")), Err(Refused::Closed));
        assert_eq!(r.outbox.lock().budget_used, 0);
    }

    #[test]
    fn a_stalled_socket_that_takes_nothing_is_hung_up_after_the_write_timeout() {
        let r = outbox(1 << 20);
        r.sink.set_room(Some(0));
        r.outbox.send(Frame::text("stuck")).unwrap();
        let timeout = Duration::from_secs(60);
        assert_eq!(r.outbox.check_write_timeout(timeout), Stall::Waiting);
        assert_eq!(r.outbox.check_write_timeout(Duration::ZERO), Stall::TimedOut);
        assert_eq!(r.outbox.check_write_timeout(Duration::ZERO), Stall::Over);
        assert_eq!(r.outbox.failure().as_deref(), Some("its socket took no bytes for the write timeout"));
        assert_eq!(r.sink.shutdowns(), [Shutdown::Both]);
        assert_eq!(r.outbox.resume(), Resumed::Done);
    }

    #[test]
    fn a_socket_that_took_bytes_unheard_is_not_timed_out() {
        let r = outbox(1 << 20);
        r.sink.set_room(Some(0));
        r.outbox.send(Frame::binary(vec![7u8; 1000])).unwrap();
        let timeout = Duration::from_secs(60);
        let long_ago = || Instant::now().checked_sub(2 * timeout).unwrap();
        // The client read a little, not enough for the socket to say so.
        r.outbox.lock().progress = long_ago();
        r.sink.set_room(Some(100));
        assert_eq!(r.outbox.check_write_timeout(timeout), Stall::Waiting);
        // Then nothing more.
        r.sink.set_room(Some(0));
        r.outbox.lock().progress = long_ago();
        assert_eq!(r.outbox.check_write_timeout(timeout), Stall::TimedOut);
    }

    #[test]
    fn after_the_reader_is_done_nothing_more_is_queued_but_the_queue_still_goes() {
        let r = outbox(1 << 20);
        r.sink.set_room(Some(0));
        r.outbox.send(Frame::text("last words")).unwrap();
        r.outbox.reader_ended();
        assert_eq!(r.outbox.push(Frame::text("too late")), Err(Refused::Closed));
        r.sink.set_room(None);
        assert_eq!(r.outbox.resume(), Resumed::Done);
        assert!(r.sink.bytes().ends_with(Frame::text("last words").as_bytes()));
        r.outbox.close_timed_out();
        assert!(r.sink.shutdowns().is_empty(), "no one to wake");
    }

    #[test]
    fn the_reply_to_a_clients_close_goes_ahead_of_unstarted_frames_and_needs_no_timer() {
        let r = recorded(1, b"", 1 << 20, Arc::new(Metrics::default()));
        let big = Frame::binary(vec![7u8; 100]);
        r.sink.set_room(Some(50));
        r.outbox.send(big.clone()).unwrap();
        r.outbox.push(Frame::text("not started")).unwrap();
        let reply = Frame::close(None);
        r.outbox.close(reply.clone(), Closing::Reply).unwrap();
        r.sink.set_room(None);
        assert_eq!(r.outbox.resume(), Resumed::Done);
        assert_eq!(r.sink.bytes(), wire(&[&big, &reply]), "the started frame, then the reply");
        assert_eq!(r.sink.shutdowns(), [Shutdown::Write]);
        assert_eq!(r.outbox.lock().budget_used, 0);
        let timed = r.jobs.try_iter().filter(|job| matches!(job, Job::TimeClose(..))).count();
        assert_eq!(timed, 0, "the connection's thread keeps its own deadline");
    }

    #[test]
    fn a_writer_that_keeps_finding_room_stops_between_sends_for_a_close_that_cuts_in() {
        let r = outbox(1 << 20);
        r.outbox.flush();
        let start = r.sink.bytes().len();
        r.sink.set_room(Some(0));
        let frames: Vec<Frame> = (0..200).map(|i| Frame::text(i.to_string())).collect();
        for frame in &frames {
            r.outbox.send(frame.clone()).unwrap();
        }
        assert!(r.outbox.is_stalled());
        r.jobs.try_iter().for_each(drop);
        // The client takes all it is sent while the drain thread writes, and
        // the answer to its close waits for the lock meanwhile.
        r.sink.set_room(None);
        r.outbox.cutting_in.fetch_add(1, Ordering::SeqCst);
        let calls = r.sink.calls();
        assert_eq!(r.outbox.resume(), Resumed::Waiting, "stopped for the close");
        assert_eq!(r.sink.calls(), calls + 1, "after the send under way");
        r.outbox.cutting_in.fetch_sub(1, Ordering::SeqCst);
        let reply = Frame::close(None);
        r.outbox.close(reply.clone(), Closing::Reply).unwrap();
        let handed: Vec<Job> = r.jobs.try_iter().collect();
        assert!(matches!(handed.as_slice(), [Job::Finish(_)]), "handed to the drain anew: {handed:?}");
        assert_eq!(r.outbox.resume(), Resumed::Done);
        let mut expected = wire(&frames[..MAX_BATCH].iter().collect::<Vec<_>>());
        expected.extend(reply.as_bytes());
        assert_eq!(&r.sink.bytes()[start..], expected, "one batch, then the reply");
        assert_eq!(r.sink.shutdowns(), [Shutdown::Write]);
    }

    #[test]
    fn what_stalls_after_the_reader_is_done_has_a_deadline_and_is_given_up_on_then() {
        // Stalled when the reader ends, or only afterwards.
        for stalled_first in [true, false] {
            let r = outbox(1 << 20);
            r.outbox.push(Frame::text("queued before the end")).unwrap();
            r.sink.set_room(Some(0));
            if stalled_first {
                r.outbox.flush();
                r.outbox.reader_ended();
            } else {
                r.outbox.reader_ended();
                r.outbox.flush();
            }
            let stages: Vec<CloseStage> = r
                .jobs
                .try_iter()
                .filter_map(|job| match job {
                    Job::TimeClose(_, stage) => Some(stage),
                    _ => None,
                })
                .collect();
            assert_eq!(stages, [CloseStage::Queued], "stalled first: {stalled_first}");
            r.outbox.close_timed_out();
            assert_eq!(r.outbox.failure().as_deref(), Some("it did not take what was still queued in time"));
            assert_eq!(r.sink.shutdowns(), [Shutdown::Both]);
        }
    }

    #[test]
    #[should_panic(expected = "holding an outbox's lock")]
    #[cfg(debug_assertions)]
    fn holding_two_outbox_locks_is_a_bug() {
        let (a, b) = (outbox(100), outbox(100));
        let _first = a.outbox.lock();
        let _second = b.outbox.lock();
    }
}
