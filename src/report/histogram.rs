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

    /// The value at each quantile, keyed by its given name.
    pub fn at(&self, points: &[(String, f64)]) -> std::collections::BTreeMap<String, u64> {
        points
            .iter()
            .map(|(name, q)| {
                let v = if self.histogram.is_empty() {
                    0
                } else {
                    self.histogram.value_at_quantile(*q)
                };
                (name.clone(), v)
            })
            .collect()
    }

    /// The percentile distribution in HdrHistogram's CSV form (what `outputPercentileDistribution`
    /// writes with `useCsvFormat`, and HdrHistogram's plotter reads), values in milliseconds.
    pub fn percentile_csv(&self) -> String {
        use std::fmt::Write as _;
        let mut out =
            String::from("\"Value\",\"Percentile\",\"TotalCount\",\"1/(1-Percentile)\"\n");
        let mut total = 0u64;
        for v in self.histogram.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let inverse = if q < 1.0 {
                format!("{:.2}", 1.0 / (1.0 - q))
            } else {
                "Infinity".to_string()
            };
            let _ = writeln!(
                out,
                "{:.3},{q:.12},{total},{inverse}",
                v.value_iterated_to() as f64 / 1000.0
            );
        }
        out
    }

    /// Every recorded bucket as (highest equivalent value in µs, count): what `merge` needs to rebuild
    /// the histogram exactly from a `--json` summary.
    pub fn buckets(&self) -> Vec<(u64, u64)> {
        self.histogram
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect()
    }

    /// Adds buckets as written by `buckets`.
    pub fn record_buckets(&mut self, buckets: &[(u64, u64)]) {
        for &(us, count) in buckets {
            let _ = self.histogram.record_n(us.clamp(1, MAX_US), count);
        }
    }

    /// Points of the latency-by-percentile curve: (percentile, microseconds), for the report's chart.
    pub fn curve(&self) -> Vec<(f64, u64)> {
        if self.histogram.is_empty() {
            return Vec::new();
        }
        self.histogram
            .iter_quantiles(5)
            .map(|v| (v.quantile_iterated_to() * 100.0, v.value_iterated_to()))
            .collect()
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
    fn csv_distribution_ends_at_the_maximum_with_every_sample() {
        let mut l = Latency::default();
        for us in 1..=1000u64 {
            l.record(Duration::from_micros(us * 10));
        }
        let csv = l.percentile_csv();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("\"Value\",\"Percentile\",\"TotalCount\",\"1/(1-Percentile)\"")
        );
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert!(rows.len() > 20, "{csv}");
        let last = rows.last().unwrap();
        assert_eq!(last[2], "1000");
        assert_eq!(last[3], "Infinity");
        assert!(
            (last[0].parse::<f64>().unwrap() - 10.0).abs() < 0.02,
            "{csv}"
        );
        let percentiles: Vec<f64> = rows.iter().map(|r| r[1].parse().unwrap()).collect();
        assert!(percentiles.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn buckets_rebuild_the_same_histogram() {
        let mut a = Latency::default();
        for us in [3u64, 3, 70, 1500, 1501, 99_999, 2_000_000] {
            a.record(Duration::from_micros(us));
        }
        let mut b = Latency::default();
        b.record_buckets(&a.buckets());
        assert_eq!(a.summary(), b.summary());
        assert_eq!(b.count(), 7);
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
