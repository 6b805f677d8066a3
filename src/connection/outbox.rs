//! A client's outbox: the frames waiting for its writer, bounded by bytes.
//!
//! The bound is a byte budget kept in an atomic counter beside a crossbeam
//! channel, not the channel's own slot count, for two measured reasons:
//!
//! * crossbeam's `bounded(n)` allocates and touches all `n` slots when it is
//!   created. A bound large enough to ride out a burst (a writer thread not
//!   scheduled for a few milliseconds while the hub relays thousands of
//!   frames) would cost every idle connection ~24 bytes per slot. The list
//!   channel underneath allocates 31 slots at a time, as frames arrive, and
//!   frees them as they leave: an idle outbox costs almost nothing.
//! * Memory is bytes. Sixty-four queued 1 MiB messages and sixty-four queued
//!   chat lines are not the same risk; a byte budget treats them as what they
//!   are.
//!
//! Queuing a frame and waking the writer are separate steps. The writer
//! sleeps on its signal line, not on the queue, so that whoever queues
//! decides when to wake it: the reader rings after each frame, but the hub
//! rings once after a batch of commands, so that a writer woken for a room
//! busy with messages finds many frames waiting and writes them with one
//! system call, instead of being woken (a futex wake and a context switch)
//! for every frame.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::frame::Frame;

/// What each queued frame costs beyond its own bytes: its channel slot, and
/// a share of the block and reference count around it.
const FRAME_OVERHEAD: usize = 64;

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The budget is spent: the client is not keeping up.
    Full,
    /// The writer has ended.
    Closed,
}

/// What a writer is told besides its frames, on its signal line.
#[derive(Debug)]
pub(crate) enum Signal {
    /// Frames were queued: write them.
    Wake,
    /// Send this close frame now, ahead of whatever the outbox holds, and
    /// end. The hub uses it when the outbox is full (slow consumer) or when
    /// the application closes the connection.
    Close(Frame),
    /// The reader has finished: write what is already queued, then stop.
    ReaderDone,
}

/// Room on the signal line for two wake-ups (the hub's and the reader's,
/// ringing at once), one close from the hub and the reader's "done": all it
/// can ever hold, so that a close or a "done" is never turned away.
const SIGNALS: usize = 4;

/// The sending side of an outbox. Cloned for the hub, the reader and the
/// handler's [`Connection`](crate::Connection).
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    frames: Sender<Frame>,
    signals: Sender<Signal>,
    queued: Arc<AtomicUsize>,
    budget: usize,
}

/// The receiving side, owned by the writer.
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    pub(crate) frames: Receiver<Frame>,
    pub(crate) signals: Receiver<Signal>,
    queued: Arc<AtomicUsize>,
}

/// A new outbox that holds at most `budget` bytes of frames.
pub(crate) fn outbox(budget: usize) -> (Outbox, OutboxReceiver) {
    let (frames, receiver) = unbounded();
    let (signals, signals_rx) = bounded(SIGNALS);
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Outbox { frames, signals, queued: queued.clone(), budget },
        OutboxReceiver { frames: receiver, signals: signals_rx, queued },
    )
}

fn cost(frame: &Frame) -> usize {
    frame.len() + FRAME_OVERHEAD
}

impl Outbox {
    /// Queues `frame` if the budget allows, without waiting and without
    /// waking the writer: [`ring`](Outbox::ring) when done queuing.
    pub(crate) fn push(&self, frame: Frame) -> Result<(), Refused> {
        let cost = cost(&frame);
        let before = self.queued.fetch_add(cost, Ordering::AcqRel);
        if before + cost > self.budget {
            self.queued.fetch_sub(cost, Ordering::AcqRel);
            return Err(Refused::Full);
        }
        self.frames.send(frame).map_err(|_| Refused::Closed)
    }

    /// Queues a close frame whatever the budget: it is at most 127 bytes, and
    /// nothing is written after it, so it cannot be used to grow memory.
    pub(crate) fn push_close(&self, close: Frame) -> Result<(), Refused> {
        debug_assert!(close.is_close());
        self.queued.fetch_add(cost(&close), Ordering::AcqRel);
        self.frames.send(close).map_err(|_| Refused::Closed)
    }

    /// Wakes the writer, if it sleeps, to write what is queued. A wake-up
    /// already waiting will do: rings before the writer looks cost nothing.
    pub(crate) fn ring(&self) {
        if self.signals.is_empty() {
            let _ = self.signals.try_send(Signal::Wake);
        }
    }

    /// Sends a close or the reader's "done" down the signal line.
    pub(crate) fn signal(&self, signal: Signal) {
        // Only full if the writer has stopped reading its signals: it has
        // ended, and there is no one left to tell.
        let _ = self.signals.try_send(signal);
    }
}

impl OutboxReceiver {
    /// Gives back the budget of frames the writer has taken out.
    pub(crate) fn release(&self, frames: &[Frame]) {
        self.queued.fetch_sub(frames.iter().map(cost).sum(), Ordering::AcqRel);
    }

    /// The number of frames waiting.
    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_counts_bytes_and_is_given_back() {
        let frame = Frame::text("x".repeat(34));
        assert_eq!(cost(&frame), 100);
        let (outbox, receiver) = outbox(250);
        assert_eq!(outbox.push(frame.clone()), Ok(()));
        assert_eq!(outbox.push(frame.clone()), Ok(()));
        assert_eq!(outbox.push(frame.clone()), Err(Refused::Full));
        let taken: Vec<Frame> = receiver.frames.try_iter().take(1).collect();
        receiver.release(&taken);
        assert_eq!(outbox.push(frame), Ok(()));
    }

    #[test]
    fn close_fits_even_when_full() {
        let (outbox, receiver) = outbox(100);
        assert_eq!(outbox.push(Frame::text("x".repeat(34))), Ok(()));
        assert_eq!(outbox.push_close(Frame::close(None)), Ok(()));
        assert_eq!(receiver.len(), 2);
    }

    #[test]
    fn writer_gone_is_closed() {
        let (outbox, receiver) = outbox(1000);
        drop(receiver);
        assert_eq!(outbox.push(Frame::text("x")), Err(Refused::Closed));
    }
}
