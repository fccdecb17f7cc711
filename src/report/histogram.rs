//! Latency distribution per worker (HdrHistogram, microseconds, 3 significant digits), merged once at
//! the end: no shared atomics on the hot path, unlike wrk's shared histogram.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded exactly: one hour. Longer ones are clamped to it.
const MAX_US: u64 = 3_600_000_000;

pub struct Latency {
    histogram: Histogram<u64>,
}

/// Percentiles in microseconds, as printed and as serialized in `--json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
            histogram: Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds"),
        }
    }
}

impl Latency {
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_US)
            .clamp(1, MAX_US);
        self.histogram.saturating_record(us);
    }

    pub fn merge(&mut self, other: &Latency) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn summary(&self) -> LatencySummary {
        if self.histogram.is_empty() {
            return LatencySummary::default();
        }
        let q = |p: f64| self.histogram.value_at_quantile(p);
        LatencySummary {
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p999: q(0.999),
            max: self.histogram.max(),
            mean: (self.histogram.mean() * 10.0).round() / 10.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut a = Latency::default();
        let mut b = Latency::default();
        for us in 1..=1000u64 {
            let target = if us % 2 == 0 { &mut a } else { &mut b };
            target.record(Duration::from_micros(us));
        }
        a.merge(&b);
        let s = a.summary();
        assert_eq!(a.count(), 1000);
        assert_eq!(s.p50, 500);
        assert_eq!(s.p90, 900);
        assert_eq!(s.p99, 990);
        assert_eq!(s.p999, 999);
        assert_eq!(s.max, 1000);
        assert!((s.mean - 500.5).abs() < 1.0, "{}", s.mean);
    }

    #[test]
    fn extremes_are_clamped_not_lost() {
        let mut l = Latency::default();
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(10_000));
        assert_eq!(l.count(), 2);
        assert!(l.summary().max >= MAX_US - MAX_US / 1000);
    }
}
