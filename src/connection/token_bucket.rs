//! A token bucket: the per-connection message rate limit.

use std::time::Instant;

/// Holds up to `burst` tokens and gains `rate` per second; each message
/// takes one. A client may send `burst` messages at once, then `rate` a
/// second for as long as it likes.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket, or `None` when `rate` is 0 (no limit).
    pub(crate) fn new(rate: u32, burst: u32, now: Instant) -> Option<Self> {
        (rate > 0).then(|| TokenBucket {
            rate: rate.into(),
            burst: burst.into(),
            tokens: burst.into(),
            last: now,
        })
    }

    /// Takes a token; returns false if there is none.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 3, start).unwrap();
        assert!((0..3).all(|_| bucket.take(start)));
        assert!(!bucket.take(start));
        // 100 ms at 10 per second earns one.
        let later = start + Duration::from_millis(100);
        assert!(bucket.take(later));
        assert!(!bucket.take(later));
        // A long pause refills only up to the burst.
        let much_later = later + Duration::from_secs(60);
        assert!((0..3).all(|_| bucket.take(much_later)));
        assert!(!bucket.take(much_later));
    }

    #[test]
    fn zero_rate_is_no_limit() {
        assert!(TokenBucket::new(0, 10, Instant::now()).is_none());
    }
}
