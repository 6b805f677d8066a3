//! Latency histogram: every sample kept to three significant digits, summarised as percentiles.
//!
//! Each thread records into its own [`Latency`] (no sharing on the hot path)
//! and the histograms are merged at the end of the run. A histogram keeps
//! every sample, bucketed with a bounded relative error (0.1 %), so p99.9 and
//! the maximum are real figures rather than the averages of averages that a
//! per-second summary would give.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The shortest latency told apart: 1 µs. Nothing crosses a socket faster.
const LOWEST_NS: u64 = 1_000;
/// The longest latency recorded as itself: 10 minutes, the longest run.
/// Anything longer is recorded as 10 minutes.
const HIGHEST_NS: u64 = 600_000_000_000;

/// A histogram of durations.
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Self {
        let histogram = Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, 3)
            .unwrap_or_else(|e| panic!("Bug: constant histogram bounds rejected: {e}"));
        Latency { histogram }
    }

    /// Records one sample.
    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(nanos.clamp(LOWEST_NS, HIGHEST_NS));
    }

    /// Adds every sample of `other` to this histogram.
    pub fn merge(&mut self, other: &Latency) {
        // Every Latency has the same bounds, so adding cannot fail.
        self.histogram.add(&other.histogram).unwrap_or_else(|e| panic!("Bug: histograms disagree: {e}"));
    }

    /// The percentiles that a report shows.
    pub fn summary(&self) -> LatencySummary {
        if self.histogram.is_empty() {
            return LatencySummary::default();
        }
        let micros = |nanos: u64| nanos as f64 / 1_000.0;
        let at = |quantile: f64| micros(self.histogram.value_at_quantile(quantile));
        LatencySummary {
            count: self.histogram.len(),
            min_us: micros(self.histogram.min()),
            mean_us: self.histogram.mean() / 1_000.0,
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: micros(self.histogram.max()),
        }
    }
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

/// Percentiles of one histogram, in microseconds (to 0.1 %).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// The fastest sample.
    pub min_us: f64,
    /// The arithmetic mean.
    pub mean_us: f64,
    /// The median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// The slowest sample.
    pub max_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// Within the histogram's 0.1 % error (plus one bucket).
    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= expected * 0.002 + 1.0
    }

    #[test]
    fn percentiles_of_one_to_a_thousand() {
        let mut latency = Latency::new();
        for n in 1..=1000 {
            latency.record(us(n));
        }
        let s = latency.summary();
        assert_eq!(s.count, 1000);
        assert!(close(s.p50_us, 500.0), "{s:?}");
        assert!(close(s.p99_us, 990.0), "{s:?}");
        assert!(close(s.p999_us, 999.0), "{s:?}");
        assert!(close(s.max_us, 1000.0), "{s:?}");
        assert!(close(s.min_us, 1.0), "{s:?}");
        assert!(close(s.mean_us, 500.5), "{s:?}");
    }

    #[test]
    fn one_outlier_shows_in_max_and_p999_only() {
        let mut latency = Latency::new();
        for _ in 0..999 {
            latency.record(us(100));
        }
        latency.record(Duration::from_secs(2));
        let s = latency.summary();
        assert!(close(s.p50_us, 100.0) && close(s.p99_us, 100.0), "{s:?}");
        assert!(close(s.max_us, 2_000_000.0), "{s:?}");
    }

    #[test]
    fn merging_keeps_every_sample() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        a.record(us(10));
        b.record(us(30));
        b.record(us(50));
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 3);
        assert!(close(s.p50_us, 30.0) && close(s.max_us, 50.0), "{s:?}");
    }

    #[test]
    fn out_of_range_samples_are_clamped_not_dropped() {
        let mut latency = Latency::new();
        latency.record(Duration::ZERO);
        latency.record(Duration::from_secs(100_000));
        let s = latency.summary();
        assert_eq!(s.count, 2);
        assert!(close(s.min_us, 1.0), "{s:?}");
        assert!(close(s.max_us, 600_000_000.0), "{s:?}");
    }

    #[test]
    fn an_empty_histogram_summarises_to_zeros() {
        assert_eq!(Latency::new().summary(), LatencySummary::default());
    }
}
