//! A histogram observed with atomic adds alone, for the figures taken on
//! hot paths: the size of every message received, the delivery of room
//! messages to every member.
//!
//! prometheus-client's own `Histogram` takes a mutex for each observation,
//! which every connection thread would share. Here each bucket is an
//! `AtomicU64`, and so is the sum, kept in whole units (microseconds, bytes)
//! so that it too is one add: an observation is a search of a dozen bounds
//! and two relaxed adds. The count is the buckets' total, read when the
//! histogram is encoded, so `_count` always equals the `+Inf` bucket.
//! prometheus-client encodes it, as any of its own metrics.

use std::fmt;
use std::iter;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// What a histogram measures: its buckets' upper bounds, in the whole units
/// it is observed in, and how many of those make one unit of the exported
/// figure.
#[derive(Debug)]
pub(crate) struct Scale {
    bounds: &'static [u64],
    per_unit: f64,
}

/// Durations, observed in microseconds and exported in seconds: 0.5 ms to
/// 5 s.
pub(crate) static SECONDS: Scale = Scale {
    bounds: &[
        500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
        5_000_000,
    ],
    per_unit: 1e6,
};

/// Sizes in bytes: powers of 4 from 16 B to 16 MiB.
pub(crate) static BYTES: Scale = Scale {
    bounds: &[16, 64, 256, 1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24],
    per_unit: 1.0,
};

/// A histogram over a [`Scale`]; clones share the same buckets.
#[derive(Clone)]
pub(crate) struct Histogram(Arc<Inner>);

struct Inner {
    scale: &'static Scale,
    /// Observations per bucket, the last one past every bound (`+Inf`); not
    /// cumulative.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(scale: &'static Scale) -> Self {
        let buckets = (0..=scale.bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(Inner { scale, buckets, sum: AtomicU64::new(0) }))
    }

    /// Counts `value`, in the scale's whole units.
    pub(crate) fn observe(&self, value: u64) {
        let inner = &*self.0;
        let bucket = inner.scale.bounds.partition_point(|&bound| bound < value);
        inner.buckets[bucket].fetch_add(1, Relaxed);
        inner.sum.fetch_add(value, Relaxed);
    }

    /// How many values were counted, and their sum in the scale's whole
    /// units.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let inner = &*self.0;
        (inner.buckets.iter().map(|bucket| bucket.load(Relaxed)).sum(), inner.sum.load(Relaxed))
    }

    /// Counts a duration, on the [`SECONDS`] scale.
    pub(crate) fn observe_duration(&self, took: Duration) {
        self.observe(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts: Vec<u64> = self.0.buckets.iter().map(|bucket| bucket.load(Relaxed)).collect();
        f.debug_struct("Histogram").field("buckets", &counts).field("sum", &self.0.sum.load(Relaxed)).finish()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let Inner { scale, buckets, sum } = &*self.0;
        let bounds =
            scale.bounds.iter().map(|&bound| bound as f64 / scale.per_unit).chain(iter::once(f64::INFINITY));
        let buckets: Vec<(f64, u64)> =
            bounds.zip(buckets.iter().map(|bucket| bucket.load(Relaxed))).collect();
        let count = buckets.iter().map(|&(_, n)| n).sum();
        let sum = sum.load(Relaxed) as f64 / scale.per_unit;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::prometheus_text::encode;
    use prometheus_client::registry::{Registry, Unit};

    fn text(histogram: &Histogram, unit: Unit) -> String {
        let mut registry = Registry::default();
        registry.register_with_unit("h", "A histogram", unit, histogram.clone());
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn a_value_on_a_bound_falls_in_that_bucket_and_buckets_are_cumulative() {
        let sizes = Histogram::new(&BYTES);
        for size in [0, 16, 17, 64, 1 << 30] {
            sizes.observe(size);
        }
        let text = text(&sizes, Unit::Bytes);
        for line in [
            "h_bytes_bucket{le=\"16\"} 2\n",
            "h_bytes_bucket{le=\"64\"} 4\n",
            "h_bytes_bucket{le=\"1.6777216e+07\"} 4\n",
            "h_bytes_bucket{le=\"+Inf\"} 5\n",
            "h_bytes_count 5\n",
            "# TYPE h_bytes histogram\n",
        ] {
            assert!(text.contains(line), "{line:?} in:\n{text}");
        }
        // The format writes sums as floats.
        assert!(text.contains(&format!("h_bytes_sum {}.0\n", 97 + (1u64 << 30))), "{text}");
    }

    #[test]
    fn durations_are_exported_in_seconds() {
        let took = Histogram::new(&SECONDS);
        took.observe_duration(Duration::from_micros(700));
        took.observe_duration(Duration::from_secs(60));
        let text = text(&took, Unit::Seconds);
        assert!(text.contains("h_seconds_bucket{le=\"0.0005\"} 0\n"), "{text}");
        assert!(text.contains("h_seconds_bucket{le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("h_seconds_bucket{le=\"5\"} 1\n"), "{text}");
        assert!(text.contains("h_seconds_bucket{le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("h_seconds_sum 60.0007\n"), "{text}");
    }
}
