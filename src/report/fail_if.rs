//! `bench --fail-if`: conditions on the summary that make a run fail (exit 3), for scripts and CI:
//! `p99>50ms`, `errors>0.1%`, `rps<100k`, `unanswered>0`. Each condition is `METRIC OP VALUE` with OP one of
//! `>`, `>=`, `<`, `<=`; the value takes the units the metric's flag takes elsewhere.

use std::str::FromStr;

use super::summary::Summary;
use crate::units;

/// One `--fail-if` condition, as given and as understood.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    text: String,
    metric: Metric,
    op: Op,
    /// In the metric's unit: microseconds, a count, a percentage, or responses per second.
    value: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Metric {
    /// A latency percentile (or the maximum, or the mean) of `latency_us`.
    Latency(Point),
    /// Errors of every kind, counted.
    Errors,
    /// Errors as a percentage of every request that ended (answered or failed).
    ErrorShare,
    Rps,
    Requests,
    /// `bench`: connections that carried no response (connected and never answered, or never
    /// connected), counted.
    Unanswered,
    /// The same as a percentage of the run's connections.
    UnansweredShare,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Point {
    P50,
    P90,
    P99,
    P999,
    Max,
    Mean,
}

impl Point {
    fn of(self, s: &Summary) -> f64 {
        let l = &s.latency_us;
        match self {
            Point::P50 => l.p50 as f64,
            Point::P90 => l.p90 as f64,
            Point::P99 => l.p99 as f64,
            Point::P999 => l.p999 as f64,
            Point::Max => l.max as f64,
            Point::Mean => l.mean,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Point::P50 => "p50",
            Point::P90 => "p90",
            Point::P99 => "p99",
            Point::P999 => "p99.9",
            Point::Max => "max",
            Point::Mean => "mean",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Above,
    AtLeast,
    Below,
    AtMost,
}

const METRICS: &str = "p50, p90, p99, p999, max, mean (durations: 50ms), errors (a count, or a share: 0.1%), rps (100k), requests, unanswered (connections never answered: a count, or a share: 1%)";

impl FromStr for Condition {
    type Err = String;

    fn from_str(text: &str) -> Result<Condition, String> {
        let bad = |why: String| format!("--fail-if '{text}': {why}");
        let (at, op, len) = [
            (">=", Op::AtLeast),
            ("<=", Op::AtMost),
            (">", Op::Above),
            ("<", Op::Below),
        ]
        .iter()
        .find_map(|&(s, op)| text.find(s).map(|at| (at, op, s.len())))
        .ok_or_else(|| bad("expected METRIC>VALUE (or <, >=, <=), e.g. p99>50ms".into()))?;
        let name = text[..at].trim().to_ascii_lowercase();
        let value = text[at + len..].trim();
        let latency = |point: Point| -> Result<(Metric, f64), String> {
            let d = units::duration(value).map_err(&bad)?;
            Ok((Metric::Latency(point), d.as_secs_f64() * 1e6))
        };
        let (metric, value) = match name.as_str() {
            "p50" => latency(Point::P50)?,
            "p90" => latency(Point::P90)?,
            "p99" => latency(Point::P99)?,
            "p999" | "p99.9" => latency(Point::P999)?,
            "max" => latency(Point::Max)?,
            "mean" => latency(Point::Mean)?,
            "errors" | "unanswered" => {
                let (count, share) = match name.as_str() {
                    "errors" => (Metric::Errors, Metric::ErrorShare),
                    _ => (Metric::Unanswered, Metric::UnansweredShare),
                };
                match value.strip_suffix('%') {
                    Some(p) => {
                        let p: f64 = p
                            .trim()
                            .parse()
                            .ok()
                            .filter(|p: &f64| p.is_finite() && *p >= 0.0)
                            .ok_or_else(|| bad(format!("'{value}' is not a percentage")))?;
                        (share, p)
                    }
                    None => (count, units::count(value).map_err(&bad)? as f64),
                }
            }
            "rps" => (Metric::Rps, units::rate(value).map_err(&bad)?),
            "requests" => (Metric::Requests, units::count(value).map_err(&bad)? as f64),
            _ => return Err(bad(format!("unknown metric '{name}'; one of {METRICS}"))),
        };
        Ok(Condition {
            text: text.trim().to_string(),
            metric,
            op,
            value,
        })
    }
}

impl Condition {
    /// The message saying the condition holds for `summary`, or None.
    pub fn check(&self, summary: &Summary) -> Option<String> {
        let errors: u64 = summary.errors.values().sum();
        let (actual, shown) = match self.metric {
            Metric::Latency(point) => {
                let us = point.of(summary);
                (us, format!("{} is {:.3}ms", point.name(), us / 1000.0))
            }
            Metric::Errors => (errors as f64, format!("{errors} errors")),
            Metric::ErrorShare => {
                let ended = summary.requests + errors;
                let share = if ended == 0 {
                    0.0
                } else {
                    errors as f64 * 100.0 / ended as f64
                };
                (
                    share,
                    format!("{errors} errors of {ended} requests ({share:.3}%)"),
                )
            }
            Metric::Rps => (summary.rps, format!("{:.1} responses/s", summary.rps)),
            Metric::Requests => (
                summary.requests as f64,
                format!("{} responses", summary.requests),
            ),
            Metric::Unanswered => {
                let never = summary.never_answered();
                (never as f64, format!("{never} connections never answered"))
            }
            Metric::UnansweredShare => {
                let never = summary.never_answered();
                let total = summary.connections.unwrap_or(0);
                let share = if total == 0 {
                    0.0
                } else {
                    never as f64 * 100.0 / total as f64
                };
                (
                    share,
                    format!("{never} of {total} connections never answered ({share:.3}%)"),
                )
            }
        };
        let met = match self.op {
            Op::Above => actual > self.value,
            Op::AtLeast => actual >= self.value,
            Op::Below => actual < self.value,
            Op::AtMost => actual <= self.value,
        };
        met.then(|| format!("--fail-if {}: {shown}", self.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(requests: u64, errors: u64, p99_us: u64, rps: f64) -> Summary {
        let report = crate::report::summary::Report::default();
        let mut s = Summary::new(&report, std::time::Duration::from_secs(1), 1);
        s.requests = requests;
        if errors > 0 {
            s.errors.insert("io", errors);
        }
        s.latency_us.p99 = p99_us;
        s.rps = rps;
        s
    }

    #[test]
    fn conditions_parse_with_each_metric_units() {
        let c: Condition = "p99>50ms".parse().unwrap();
        assert_eq!((c.op, c.value), (Op::Above, 50_000.0));
        let c: Condition = "rps < 100k".parse().unwrap();
        assert_eq!(
            (c.metric, c.op, c.value),
            (Metric::Rps, Op::Below, 100_000.0)
        );
        let c: Condition = "errors>=0.1%".parse().unwrap();
        assert_eq!(
            (c.metric, c.op, c.value),
            (Metric::ErrorShare, Op::AtLeast, 0.1)
        );
        let c: Condition = "ERRORS<=5".parse().unwrap();
        assert_eq!((c.metric, c.op, c.value), (Metric::Errors, Op::AtMost, 5.0));
        for bad in ["p99", "p98>1ms", "p99>fast", "errors>x%", "rps<-1"] {
            let err = bad.parse::<Condition>().unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
        assert!("p98>1ms".parse::<Condition>().unwrap_err().contains("p999"));
    }

    #[test]
    fn a_condition_holds_or_not_and_says_why() {
        let s = summary(1000, 2, 73_000, 5000.0);
        let met = |c: &str| c.parse::<Condition>().unwrap().check(&s);
        assert_eq!(
            met("p99>50ms").as_deref(),
            Some("--fail-if p99>50ms: p99 is 73.000ms")
        );
        assert_eq!(met("p99>80ms"), None);
        assert!(met("errors>0.1%").unwrap().contains("2 errors of 1002"));
        assert_eq!(met("errors>0.5%"), None);
        assert!(met("rps<10k").is_some());
        assert_eq!(met("requests<1000"), None);
        assert!(met("requests<=1000").is_some());
    }

    #[test]
    fn unanswered_connections_as_a_count_or_a_share() {
        let mut s = summary(1000, 0, 1000, 5000.0);
        // Not a bench summary: nothing is unanswered.
        let met = |s: &Summary, c: &str| c.parse::<Condition>().unwrap().check(s);
        assert_eq!(met(&s, "unanswered>0"), None);
        s.connections = Some(200);
        s.connections_unanswered = Some(30);
        s.connections_unconnected = Some(10);
        assert_eq!(
            met(&s, "unanswered>0").as_deref(),
            Some("--fail-if unanswered>0: 40 connections never answered")
        );
        assert_eq!(met(&s, "unanswered>40"), None);
        assert!(met(&s, "unanswered>=20%").unwrap().contains("40 of 200"));
        assert_eq!(met(&s, "unanswered>20%"), None);
        assert!("unanswered>lots".parse::<Condition>().is_err());
    }
}
