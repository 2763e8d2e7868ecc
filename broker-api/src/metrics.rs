//! Metrics a store can expose to the broker's `/metrics` (see [`crate::Store::store_metrics`]):
//! a lock-free latency histogram and the samples a store hands over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the buckets of [`LatencyHistogram`]: 50 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// A histogram of durations, updated without locks from any thread.
#[derive(Debug)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last slot is above every bound.
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: (0..=LATENCY_BUCKETS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// The counts now, cumulative per bound as Prometheus wants them.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = Vec::with_capacity(LATENCY_BUCKETS.len());
        let mut acc = 0;
        for b in &self.buckets[..LATENCY_BUCKETS.len()] {
            acc += b.load(Ordering::Relaxed);
            cumulative.push(acc);
        }
        let count = acc + self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            bounds: LATENCY_BUCKETS,
            cumulative,
            count,
            sum_secs: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Bucket upper bounds in seconds.
    pub bounds: &'static [f64],
    /// Observations at or below each bound (cumulative), one per bound.
    pub cumulative: Vec<u64>,
    /// All observations (the `+Inf` bucket).
    pub count: u64,
    /// Sum of all observations in seconds.
    pub sum_secs: f64,
}

/// The value of one store metric sample.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// A count that only grows.
    Counter(u64),
    /// A value that goes up and down.
    Gauge(f64),
    /// A latency distribution.
    Histogram(HistogramSnapshot),
}

/// One sample of a store-specific metric. Samples sharing a `name` must share `help` and the
/// kind of value, and differ in their labels; label sets must stay small and bounded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreMetric {
    /// The metric name, `broker_` prefixed (e.g. `broker_log_fsync_duration_seconds`).
    pub name: &'static str,
    /// One line on what it measures.
    pub help: &'static str,
    /// Label names and values.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: MetricValue,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = LatencyHistogram::new();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative[0], 1);
        assert_eq!(*s.cumulative.last().unwrap(), 2);
        let i = LATENCY_BUCKETS.iter().position(|b| *b == 0.005).unwrap();
        assert_eq!(s.cumulative[i], 2);
        assert!((s.sum_secs - 60.00301).abs() < 1e-6);
    }
}
