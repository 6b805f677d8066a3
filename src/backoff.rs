//! When to try again: exponential backoff with jitter.
//!
//! Shared by the client's reconnecting lines and the Redis backplane's
//! connections: both retry something that may be down for a while, and
//! both should not hammer it, nor all come back in the same instant.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

/// Doubles the wait after each failed attempt, up to a ceiling, and spreads
/// every wait at random between half and one and a half times its value, so
/// that clients dropped together by a restarting server do not all come
/// back in the same instant.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Backoff { first, max, next: first }
    }

    /// The wait before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next.mul_f64(0.5 + random_fraction());
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Starts again from the first wait, after a connection that held.
    pub(crate) fn reset(&mut self) {
        self.next = self.first;
    }
}

/// A number in [0, 1), from std alone: each `RandomState` is keyed afresh,
/// and hashing the current instant with it is random enough for jitter.
fn random_fraction() -> f64 {
    let bits = RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_ceiling_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        for expected in [100, 200, 400, 800, 800] {
            let delay = backoff.next_delay().as_millis() as u64;
            assert!((expected / 2..expected * 3 / 2).contains(&delay), "{delay} ms for {expected} ms");
        }
        backoff.reset();
        assert!(backoff.next_delay() < Duration::from_millis(150));
    }

    #[test]
    fn jitter_spreads() {
        let draws: Vec<f64> = (0..100).map(|_| random_fraction()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        assert!(draws.iter().any(|d| *d < 0.3) && draws.iter().any(|d| *d > 0.7));
    }
}
