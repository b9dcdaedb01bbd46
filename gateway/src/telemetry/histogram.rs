//! A fixed-size log-linear latency histogram: constant memory whatever the
//! number of observations, percentiles within ~3 %.

use std::sync::Mutex;

use packgate_protocol::LatencySummary;

/// Sub-buckets per power of two; the relative error is 1 / SUB_BUCKETS.
const SUB_BUCKETS: usize = 32;
/// Powers of two covered, from 1 µs to ~2^36 µs (19 hours).
const MAGNITUDES: usize = 37;

#[derive(Debug)]
struct Buckets {
    counts: Vec<u64>,
    total: u64,
    max_us: u64,
}

/// Latencies in microseconds, recorded from any task.
#[derive(Debug)]
pub struct LatencyHistogram {
    name: &'static str,
    inner: Mutex<Buckets>,
}

fn bucket_of(us: u64) -> usize {
    if us < SUB_BUCKETS as u64 {
        return us as usize;
    }
    let magnitude = 63 - us.leading_zeros() as usize; // floor(log2)
    let shift = magnitude - 5; // SUB_BUCKETS = 2^5
    let sub = ((us >> shift) as usize) - SUB_BUCKETS;
    ((magnitude - 4) * SUB_BUCKETS + sub).min(MAGNITUDES * SUB_BUCKETS - 1)
}

fn bucket_upper_us(index: usize) -> u64 {
    if index < SUB_BUCKETS {
        return index as u64;
    }
    let magnitude = index / SUB_BUCKETS + 4;
    let sub = (index % SUB_BUCKETS) as u64;
    let shift = magnitude - 5;
    ((SUB_BUCKETS as u64 + sub + 1) << shift) - 1
}

impl LatencyHistogram {
    /// An empty histogram named for its summaries.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            inner: Mutex::new(Buckets {
                counts: vec![0; MAGNITUDES * SUB_BUCKETS],
                total: 0,
                max_us: 0,
            }),
        }
    }

    /// Records one latency.
    pub fn record_us(&self, us: u64) {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        b.counts[bucket_of(us)] += 1;
        b.total += 1;
        b.max_us = b.max_us.max(us);
    }

    /// Percentiles so far (p50, p99, max) in milliseconds.
    pub fn summary(&self) -> LatencySummary {
        let b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        summarize(self.name, &b.counts, b.total, b.max_us)
    }

    /// Where the histogram stands now, for
    /// [`summary_since`](Self::summary_since).
    pub fn mark(&self) -> LatencyMark {
        let b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        LatencyMark {
            counts: b.counts.clone(),
        }
    }

    /// Percentiles of what was recorded after `mark` (a benchmark's
    /// steady state, without its start-up). The max is exact when it
    /// falls in the highest bucket reached since, else that bucket's
    /// upper bound (within 1/32).
    pub fn summary_since(&self, mark: &LatencyMark) -> LatencySummary {
        let b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let counts: Vec<u64> = b
            .counts
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(mark.counts.get(i).copied().unwrap_or(0)))
            .collect();
        let total = counts.iter().sum();
        let max_us = counts.iter().rposition(|n| *n > 0).map_or(0, |top| {
            if bucket_of(b.max_us) == top {
                b.max_us
            } else {
                bucket_upper_us(top)
            }
        });
        summarize(self.name, &counts, total, max_us)
    }
}

/// The counts of a [`LatencyHistogram`] at one moment.
#[derive(Debug, Clone, Default)]
pub struct LatencyMark {
    counts: Vec<u64>,
}

/// p50, p99 and max of `total` latencies spread over `counts`.
fn summarize(name: &str, counts: &[u64], total: u64, max_us: u64) -> LatencySummary {
    let quantile = |q: f64| -> f64 {
        if total == 0 {
            return 0.0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_upper_us(index).min(max_us) as f64 / 1000.0;
            }
        }
        max_us as f64 / 1000.0
    };
    LatencySummary {
        name: name.to_owned(),
        count: total,
        p50_ms: quantile(0.50),
        p99_ms: quantile(0.99),
        max_ms: max_us as f64 / 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let h = LatencyHistogram::new("t");
        for us in 1..=10_000u64 {
            h.record_us(us);
        }
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert!((s.p50_ms - 5.0).abs() / 5.0 < 0.04, "{s:?}");
        assert!((s.p99_ms - 9.9).abs() / 9.9 < 0.04, "{s:?}");
        assert_eq!(s.max_ms, 10.0);
    }

    #[test]
    fn a_summary_since_a_mark_leaves_out_what_came_before() {
        let h = LatencyHistogram::new("t");
        // A slow start-up, then a steady state of 1 to 10 ms.
        for _ in 0..500 {
            h.record_us(120_000);
        }
        let mark = h.mark();
        for us in 1..=10_000u64 {
            h.record_us(us);
        }
        let since = h.summary_since(&mark);
        assert_eq!(since.count, 10_000);
        assert!((since.p99_ms - 9.9).abs() / 9.9 < 0.04, "{since:?}");
        assert!((since.max_ms - 10.0).abs() / 10.0 < 0.04, "{since:?}");
        let all = h.summary();
        assert_eq!(all.count, 10_500);
        assert_eq!(all.max_ms, 120.0);
        assert!(all.p99_ms > 100.0, "{all:?}");
        // A mark of nothing (the default) summarises everything.
        let from_start = h.summary_since(&LatencyMark::default());
        assert_eq!(from_start.count, 10_500);
        assert_eq!(from_start.max_ms, 120.0);
        // Nothing since the last mark.
        let empty = h.summary_since(&h.mark());
        assert_eq!((empty.count, empty.p99_ms, empty.max_ms), (0, 0.0, 0.0));
    }

    #[test]
    fn empty_is_zero() {
        let s = LatencyHistogram::new("t").summary();
        assert_eq!((s.count, s.p50_ms, s.max_ms), (0, 0.0, 0.0));
    }

    proptest! {
        #[test]
        fn bucket_bounds_hold_the_value(us in 0u64..(1 << 36)) {
            let index = bucket_of(us);
            prop_assert!(bucket_upper_us(index) >= us);
            prop_assert!(bucket_upper_us(index) as f64 <= us as f64 * (1.0 + 1.0 / 16.0) + 1.0);
        }
    }
}
