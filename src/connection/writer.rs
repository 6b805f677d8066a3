//! The writer: the only thread that writes to a client's socket.
//!
//! Every byte a client receives passes through here, in one order: messages
//! from the hub, pongs and close replies from the reader, pings on a ticker.
//! The writer drains whatever is queued in the outbox and hands it to the
//! kernel with one vectored write per batch, so a busy client costs one system
//! call per batch rather than one per message, and no bytes are copied into a
//! per-connection buffer.

use std::io::{self, IoSlice, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Select, TryRecvError};

use super::outbox::{OutboxReceiver, Signal};

use crate::frame::Frame;
use crate::metrics::Metrics;
use crate::stream::Hangup;

/// The most frames handed to the kernel in one write. Small enough to bound
/// the iovec array, large enough that a backlog is written in few calls.
const MAX_BATCH: usize = 64;

/// A connection's writer; [`Writer::run`] is the body of its thread.
#[derive(Debug)]
pub(crate) struct Writer<W> {
    pub(crate) wire: W,
    pub(crate) outbox: OutboxReceiver,
    pub(crate) ping_interval: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) metrics: Arc<Metrics>,
}

impl<W: Write + Hangup> Writer<W> {
    /// Writes until the connection is over, and returns the close frame it
    /// wrote, if it wrote one. On a write error it hangs up, so that the
    /// reader, blocked on the same socket, wakes and ends too.
    pub(crate) fn run(mut self) -> io::Result<Option<Frame>> {
        let result = self.serve();
        if result.is_err() {
            self.wire.hang_up();
        }
        result
    }

    fn serve(&mut self) -> io::Result<Option<Frame>> {
        let mut next_ping = Instant::now() + self.ping_interval;
        loop {
            // A signal wins over a busy outbox, so it is looked at first.
            match self.outbox.signals.try_recv() {
                Ok(Signal::Wake) | Err(_) => {}
                Ok(Signal::Close(close)) => return self.close_now(close),
                Ok(Signal::ReaderDone) => return self.drain(),
            }
            // Pings go out on time even while messages flow: a client that
            // only listens has nothing else to answer, and its reader would
            // close it as idle.
            if Instant::now() >= next_ping {
                self.write(&[Frame::ping()])?;
                next_ping = Instant::now() + self.ping_interval;
            }
            if let Ok(frame) = self.outbox.frames.try_recv() {
                if let Some(close) = self.write_batch(frame)? {
                    self.await_reader();
                    return Ok(Some(close));
                }
                continue;
            }
            // Nothing queued: sleep until a signal or a ping is due.
            let until_ping = next_ping.saturating_duration_since(Instant::now());
            match self.sleep(until_ping) {
                Ok(Signal::Wake) | Err(RecvTimeoutError::Timeout) => {}
                Ok(Signal::Close(close)) => return self.close_now(close),
                Ok(Signal::ReaderDone) => return self.drain(),
                // Every sender is gone: the hub has dropped the connection
                // and the reader has ended.
                Err(RecvTimeoutError::Disconnected) => return self.drain(),
            }
        }
    }

    /// Waits for a signal, at most `timeout`, parking at once. A plain
    /// `recv` spins and yields before it parks; measured with
    /// switchboard-bench on one core, that spinning steals time from the
    /// threads with work to do (echo: 51,000 against 57,000 messages a
    /// second) and buys nothing for a busy room, whose writers the hub wakes
    /// once per batch anyway.
    fn sleep(&self, timeout: Duration) -> Result<Signal, RecvTimeoutError> {
        let mut select = Select::new();
        select.recv(&self.outbox.signals);
        match select.ready_timeout(timeout) {
            Ok(_) => self.outbox.signals.try_recv().map_err(|e| match e {
                TryRecvError::Empty => RecvTimeoutError::Timeout,
                TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            }),
            Err(_) => Err(RecvTimeoutError::Timeout),
        }
    }

    /// Writes `close` ahead of what is queued, and ends.
    fn close_now(&mut self, close: Frame) -> io::Result<Option<Frame>> {
        self.write(std::slice::from_ref(&close))?;
        self.await_reader();
        Ok(Some(close))
    }

    /// Writes `first` and whatever else is queued behind it, up to a batch,
    /// stopping after a close frame; returns that close frame.
    fn write_batch(&mut self, first: Frame) -> io::Result<Option<Frame>> {
        let mut batch = Vec::with_capacity((self.outbox.len() + 1).min(MAX_BATCH));
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            let is_close = frame.is_close();
            batch.push(frame);
            if !is_close && batch.len() < MAX_BATCH {
                next = self.outbox.frames.try_recv().ok();
            }
        }
        self.outbox.release(&batch);
        self.write(&batch)?;
        Ok(batch.pop().filter(Frame::is_close))
    }

    /// The reader is done: writes what is still queued (a close reply, the
    /// last messages), then stops.
    fn drain(&mut self) -> io::Result<Option<Frame>> {
        while let Ok(frame) = self.outbox.frames.try_recv() {
            if let Some(close) = self.write_batch(frame)? {
                return Ok(Some(close));
            }
        }
        Ok(None)
    }

    /// After a close frame, the reader is waiting for the client's reply (or
    /// has just read the client's close). Nothing more will be written, so
    /// say so with a FIN; give the reader `close_timeout`, then hang up so
    /// that it stops waiting.
    ///
    /// Hanging up at once would be worse than rude: a client that has not
    /// read its last frames yet (a slow consumer, by definition) would never
    /// get the close frame, because closing a socket with unread input makes
    /// the kernel send RST and drop what it had not yet sent.
    fn await_reader(&mut self) {
        self.wire.end_output();
        let deadline = Instant::now() + self.close_timeout;
        loop {
            match self.outbox.signals.recv_deadline(deadline) {
                Ok(Signal::ReaderDone) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Signal::Wake | Signal::Close(_)) => {}
                Err(RecvTimeoutError::Timeout) => {
                    self.wire.hang_up();
                    return;
                }
            }
        }
    }

    /// Writes frames with as few system calls as the kernel allows.
    fn write(&mut self, frames: &[Frame]) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f.as_bytes())).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match self.wire.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wire.flush()?;
        let messages = frames.iter().filter(|f| f.is_message()).count();
        let bytes = frames.iter().map(Frame::len).sum();
        self.metrics.written(messages, bytes);
        for close in frames.iter().filter_map(Frame::close_frame) {
            self.metrics.close_sent(close.code);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::outbox::{Outbox, outbox};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::thread;

    /// Records what is written, and how many calls it took.
    #[derive(Clone, Default)]
    struct Wire {
        bytes: Arc<Mutex<Vec<u8>>>,
        calls: Arc<AtomicUsize>,
        hung_up: Arc<AtomicBool>,
    }

    impl Write for Wire {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut bytes = self.bytes.lock().unwrap();
            let before = bytes.len();
            for buf in bufs {
                bytes.extend_from_slice(buf);
            }
            Ok(bytes.len() - before)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Hangup for Wire {
        fn hang_up(&self) {
            self.hung_up.store(true, Ordering::SeqCst);
        }

        fn end_output(&self) {}
    }

    struct Setup {
        wire: Wire,
        outbox: Outbox,
        writer: Writer<Wire>,
    }

    fn setup(ping_interval: Duration) -> Setup {
        let wire = Wire::default();
        let (outbox, outbox_rx) = outbox(1 << 20);
        let writer = Writer {
            wire: wire.clone(),
            outbox: outbox_rx,
            ping_interval,
            close_timeout: Duration::from_millis(50),
            metrics: Arc::new(Metrics::default()),
        };
        Setup { wire, outbox, writer }
    }

    #[test]
    fn queued_frames_go_out_in_one_write() {
        let s = setup(Duration::from_secs(60));
        for i in 0..10 {
            s.outbox.push(Frame::text(i.to_string())).unwrap();
        }
        s.outbox.signal(Signal::ReaderDone);
        assert_eq!(s.writer.run().unwrap(), None);
        let expected: Vec<u8> =
            (0..10).flat_map(|i| Frame::text(i.to_string()).as_bytes().to_vec()).collect();
        assert_eq!(*s.wire.bytes.lock().unwrap(), expected);
        assert_eq!(s.wire.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn idle_writer_pings() {
        let s = setup(Duration::from_millis(10));
        let outbox = s.outbox.clone();
        let wire = s.wire.clone();
        let handle = thread::spawn(move || s.writer.run());
        let deadline = Instant::now() + Duration::from_secs(5);
        while wire.bytes.lock().unwrap().len() < 4 && Instant::now() < deadline {
            thread::yield_now();
        }
        outbox.signal(Signal::ReaderDone);
        handle.join().unwrap().unwrap();
        assert_eq!(&wire.bytes.lock().unwrap()[..4], b"\x89\x00\x89\x00");
    }

    #[test]
    fn close_signal_jumps_the_queue_and_hangs_up() {
        let s = setup(Duration::from_secs(60));
        s.outbox.push(Frame::text("queued")).unwrap();
        let close = Frame::close(None);
        s.outbox.signal(Signal::Close(close.clone()));
        let written = s.writer.run().unwrap().unwrap();
        assert!(written.same_as(&close));
        assert_eq!(*s.wire.bytes.lock().unwrap(), close.as_bytes());
        assert!(s.wire.hung_up.load(Ordering::SeqCst));
    }

    #[test]
    fn nothing_after_a_close_frame_is_written() {
        let s = setup(Duration::from_secs(60));
        let close = Frame::close(None);
        s.outbox.push(Frame::text("before")).unwrap();
        s.outbox.push_close(close.clone()).unwrap();
        s.outbox.push(Frame::text("after")).unwrap();
        s.outbox.signal(Signal::ReaderDone);
        let written = s.writer.run().unwrap().unwrap();
        assert!(written.same_as(&close));
        let mut expected = Frame::text("before").as_bytes().to_vec();
        expected.extend_from_slice(close.as_bytes());
        assert_eq!(*s.wire.bytes.lock().unwrap(), expected);
        assert!(!s.wire.hung_up.load(Ordering::SeqCst));
    }

    #[test]
    fn reader_that_never_finishes_is_hung_up_on_after_close_timeout() {
        let s = setup(Duration::from_secs(60));
        s.outbox.push_close(Frame::close(None)).unwrap();
        let _outbox = s.outbox;
        assert!(s.writer.run().unwrap().is_some());
        assert!(s.wire.hung_up.load(Ordering::SeqCst));
    }
}
