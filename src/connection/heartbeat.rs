//! Pings and the idle close: what a connection's thread does when its client
//! has been quiet.
//!
//! The thread spends the connection's life blocked reading its socket, with
//! a read timeout. A read that times out means the client has sent nothing,
//! not even a pong, for that long: past the idle timeout in all, it is
//! closed; otherwise it is pinged, and a live client answers. So a client
//! that talks is never pinged, and no timer thread is needed, nor a system
//! call while data flows.

use std::time::Duration;

/// One connection's quiet time, counted in read timeouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heartbeat {
    ping_interval: Duration,
    idle: Duration,
    /// How long the client has been quiet.
    quiet: Duration,
    /// The read timeout in force.
    wait: Duration,
}

/// What to do about a read that timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beat {
    /// Ping the client, and from now on wait `rewait` for each read, if set.
    Ping { rewait: Option<Duration> },
    /// The client has been quiet for the idle timeout: close it.
    Idle,
}

impl Heartbeat {
    /// Pings after `ping_interval` of quiet, closes after `idle`; the ping
    /// interval is less than the idle timeout (the configuration checks).
    pub(crate) fn new(ping_interval: Duration, idle: Duration) -> Self {
        let wait = ping_interval.min(idle);
        Heartbeat { ping_interval, idle, quiet: Duration::ZERO, wait }
    }

    /// The read timeout to start with.
    pub(crate) fn wait(&self) -> Duration {
        self.wait
    }

    /// A read timed out; `heard` says whether the client sent anything
    /// since the previous time out.
    pub(crate) fn timed_out(&mut self, heard: bool) -> Beat {
        if heard {
            self.quiet = Duration::ZERO;
        }
        self.quiet += self.wait;
        if self.quiet >= self.idle {
            return Beat::Idle;
        }
        // The last wait before the idle timeout may be shorter than a ping
        // interval, so that the close comes on time.
        let wait = self.ping_interval.min(self.idle - self.quiet);
        let rewait = (wait != self.wait).then_some(wait);
        self.wait = wait;
        Beat::Ping { rewait }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_silent_client_is_pinged_then_closed_on_time() {
        let mut heart = Heartbeat::new(secs(20), secs(50));
        assert_eq!(heart.wait(), secs(20));
        assert_eq!(heart.timed_out(false), Beat::Ping { rewait: None });
        assert_eq!(heart.timed_out(false), Beat::Ping { rewait: Some(secs(10)) });
        assert_eq!(heart.timed_out(false), Beat::Idle, "20 + 20 + 10 seconds of quiet");
    }

    #[test]
    fn a_client_that_answers_is_never_idle() {
        let mut heart = Heartbeat::new(secs(20), secs(30));
        assert_eq!(heart.timed_out(false), Beat::Ping { rewait: Some(secs(10)) });
        for _ in 0..10 {
            assert!(matches!(heart.timed_out(true), Beat::Ping { .. }));
        }
    }

    #[test]
    fn after_a_short_wait_the_next_quiet_spell_waits_a_whole_interval() {
        let mut heart = Heartbeat::new(secs(20), secs(50));
        heart.timed_out(false);
        heart.timed_out(false);
        assert_eq!(heart.timed_out(true), Beat::Ping { rewait: Some(secs(20)) });
    }
}
