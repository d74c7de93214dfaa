//! Per-worker latency histogram, cheap enough to stay on in production.
//!
//! [`LatencyRecorder`] is a fixed array of `AtomicU64` counts in HdrHistogram's log-linear bucket
//! layout (lowest discernible value 1 ns, 3 significant digits, highest trackable value
//! [`LatencyRecorder::HIGHEST_NS`]; larger values are clamped). One writer (the worker's I/O
//! loop) records with plain `Relaxed` load + store, no RMW; readers merge any number of workers
//! into an [`hdrhistogram::Histogram`] with the same bounds, so every bucket maps onto exactly
//! one of the histogram's buckets and percentiles are as precise as HdrHistogram's own.
//!
//! The engine itself is clock-free: the I/O loop measures dequeue -> verdict per batch and calls
//! [`LatencyRecorder::record`] with the batch's packet count.

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// 2 * 10^3 rounded up to a power of two: 3 significant decimal digits.
const SUB_BUCKET_COUNT_MAGNITUDE: u32 = 11;
const SUB_BUCKET_HALF_COUNT_MAGNITUDE: u32 = SUB_BUCKET_COUNT_MAGNITUDE - 1;
const SUB_BUCKET_HALF_COUNT: usize = 1 << SUB_BUCKET_HALF_COUNT_MAGNITUDE;
const SUB_BUCKET_MASK: u64 = (1 << SUB_BUCKET_COUNT_MAGNITUDE) - 1;
/// log2 of the highest trackable value (2^36 ns ~ 68.7 s).
const HIGHEST_MAGNITUDE: u32 = 36;
const BUCKET_COUNT: usize = (HIGHEST_MAGNITUDE - SUB_BUCKET_COUNT_MAGNITUDE + 1) as usize;
const COUNTS_LEN: usize = (BUCKET_COUNT + 1) * SUB_BUCKET_HALF_COUNT;

/// Per-worker latency histogram (single writer, lock-free readers).
#[derive(Debug)]
pub struct LatencyRecorder {
    counts: Box<[AtomicU64]>,
}

/// Percentiles of a merged histogram, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    /// Values above this are recorded as this.
    pub const HIGHEST_NS: u64 = (1 << HIGHEST_MAGNITUDE) - 1;

    pub fn new() -> Self {
        Self { counts: (0..COUNTS_LEN).map(|_| AtomicU64::new(0)).collect() }
    }

    #[inline]
    fn index_of(value: u64) -> usize {
        let v = value.min(Self::HIGHEST_NS);
        let pow2_ceiling = 64 - (v | SUB_BUCKET_MASK).leading_zeros();
        let bucket = pow2_ceiling - SUB_BUCKET_COUNT_MAGNITUDE;
        let sub = (v >> bucket) as usize;
        (((bucket + 1) as usize) << SUB_BUCKET_HALF_COUNT_MAGNITUDE) + sub - SUB_BUCKET_HALF_COUNT
    }

    /// The lowest value of the bucket at `index` (inverse of `index_of` up to bucket width).
    fn value_of(index: usize) -> u64 {
        let mut bucket = (index >> SUB_BUCKET_HALF_COUNT_MAGNITUDE) as i64 - 1;
        let mut sub = (index & (SUB_BUCKET_HALF_COUNT - 1)) + SUB_BUCKET_HALF_COUNT;
        if bucket < 0 {
            sub -= SUB_BUCKET_HALF_COUNT;
            bucket = 0;
        }
        (sub as u64) << bucket
    }

    /// Records `count` samples of `value_ns`. Single writer only (plain load + store).
    #[inline]
    pub fn record(&self, value_ns: u64, count: u64) {
        let i = Self::index_of(value_ns);
        if let Some(c) = self.counts.get(i) {
            c.store(c.load(Relaxed).wrapping_add(count), Relaxed);
        }
    }

    /// A histogram with bounds matching this layout, ready for [`LatencyRecorder::merge_into`].
    pub fn new_histogram() -> Histogram<u64> {
        // The bounds are constants that hdrhistogram accepts (1 <= low, high >= 2 * low, sigfig 3).
        Histogram::new_with_bounds(1, Self::HIGHEST_NS, 3).expect("constant histogram bounds are valid")
    }

    /// Adds this recorder's counts into `h` (which should come from [`Self::new_histogram`]).
    pub fn merge_into(&self, h: &mut Histogram<u64>) {
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.load(Relaxed);
            if n != 0 {
                // Saturating: a histogram with smaller bounds than ours clamps instead of failing.
                h.saturating_record_n(Self::value_of(i), n);
            }
        }
    }

    /// Total samples recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Merges several workers and summarizes.
    pub fn summarize<'a>(recorders: impl IntoIterator<Item = &'a LatencyRecorder>) -> LatencySummary {
        let mut h = Self::new_histogram();
        for r in recorders {
            r.merge_into(&mut h);
        }
        LatencySummary::from_histogram(&h)
    }
}

impl LatencySummary {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_hdrhistogram_buckets() {
        let h = LatencyRecorder::new_histogram();
        for v in [0u64, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 123_456, 9_999_999, 1 << 30] {
            let i = LatencyRecorder::index_of(v);
            let low = LatencyRecorder::value_of(i);
            assert!(h.equivalent(low, v), "value {v} bucket low {low}");
            assert!(low <= v);
        }
        assert!(LatencyRecorder::index_of(u64::MAX) < COUNTS_LEN);
    }

    #[test]
    fn percentiles_merge_across_workers() {
        let a = LatencyRecorder::new();
        let b = LatencyRecorder::new();
        a.record(1_000, 90);
        b.record(50_000, 9);
        b.record(2_000_000, 1);
        let s = LatencyRecorder::summarize([&a, &b]);
        assert_eq!(s.count, 100);
        assert!((999..=1001).contains(&s.p50), "{s:?}");
        assert!((49_950..=50_050).contains(&s.p99), "{s:?}");
        assert!((1_998_000..=2_002_000).contains(&s.max), "{s:?}");
        assert_eq!(a.count() + b.count(), 100);
    }
}
