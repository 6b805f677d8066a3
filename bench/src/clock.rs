//! The run's clock: nanoseconds since the run began, the time every message carries.
//!
//! A message's send time travels inside its payload, so the sender and the
//! receiver must read the same clock. Both live in this process, so a single
//! monotonic origin, copied into every thread, is enough: no wall clock, no
//! clock skew, and eight bytes on the wire.

use std::time::{Duration, Instant};

/// Nanoseconds since the run's origin.
pub type Nanos = u64;

/// A monotonic clock shared by every thread of one run. Cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn start() -> Self {
        Clock { origin: Instant::now() }
    }

    /// Nanoseconds since the origin. A run would need 584 years to overflow.
    pub fn now(&self) -> Nanos {
        self.at(Instant::now())
    }

    /// The reading of this clock at `instant`.
    pub fn at(&self, instant: Instant) -> Nanos {
        u64::try_from(instant.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// How long ago `then` was, or zero if `then` is in the future (a corrupt payload).
    pub fn since(&self, then: Nanos) -> Duration {
        Duration::from_nanos(self.now().saturating_sub(then))
    }
}
