//! The counters each worker keeps (plain fields, no atomics), their merge, and the summary printed at
//! the end: aligned text for people, one JSON object (`--json`) for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::histogram::{Latency, LatencySummary};
use crate::error::{ErrorKind, FetchError};

/// One worker's counters, summed once at the end.
#[derive(Default)]
pub struct Report {
    /// Responses received in full.
    pub requests: u64,
    pub errors: [u64; ErrorKind::ALL.len()],
    /// The first message seen of each kind, so a summary can say what went wrong, not only how often.
    pub first_errors: [Option<String>; ErrorKind::ALL.len()],
    pub status: StatusCounts,
    /// Body bytes (de-chunked).
    pub bytes: u64,
    /// From when each request was due (its write, in a closed loop) to its last byte.
    pub latency: Latency,
    /// Open loop (`--rate`): from each request's actual write to its last byte.
    pub open_loop: bool,
    /// `bench`: responses completed in each second of the measured run.
    pub timeline: Vec<u64>,
    /// `bench` over several URLs: counts per URL, by the URL's index in the run's list.
    pub per_url: Vec<UrlCounts>,
    /// `bench --hold`.
    pub hold: Option<HoldReport>,
    pub service: Latency,
    pub connections_opened: u64,
    /// Transmissions charged to `--retries`.
    pub retries: u64,
    /// Requests sent again because a connection closed before answering them.
    pub resent: u64,
    /// `fetch` interrupted: URLs dropped without a result line, for `--resume`.
    pub not_fetched: u64,
    /// Read and write operations submitted to the ring.
    pub reads: u64,
    pub writes: u64,
    /// TLS handshakes completed, and how many of them resumed an earlier session.
    pub tls_handshakes: u64,
    pub tls_resumed: u64,
    /// The direct transport's rings (`-v`): submits, completions, and receives ended because the
    /// buffer pool ran dry (each one re-armed).
    pub ring: crate::net::direct::Stats,
    /// `bench`: where each of the run's connections ended up; None for `fetch`.
    pub tally: Option<Tally>,
    /// `bench`: requests written and still unanswered when the run ended (neither answered nor
    /// failed): the server may have served them, the run did not see it.
    pub in_flight_at_end: u64,
}

/// `bench`: each of the run's connections (`-c`), counted once, over all its reconnections, by how
/// far it got. A connection the server leaves in its backlog (connected, never answered) is a
/// connection the run did not measure, and must not pass for one it did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// At least one response arrived on it.
    pub answered: u64,
    /// Connected, but never had a request to send (`-n` spent, or `--rate` gave it none).
    pub unused: u64,
    /// Connected and sent a request, never a response. By why: `waiting` (still waiting when the run
    /// ended) or the error kind that ended its last connection (`timeout`, `io`, …).
    pub unanswered: BTreeMap<&'static str, u64>,
    /// Never connected. By why: `connecting` (still connecting when the run ended), `not-started`
    /// (`--hold`: its opening ran out of time before it was tried) or the kind of its last connect
    /// failure (`connect`, `tls`).
    pub unconnected: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn merge(&mut self, o: &Tally) {
        self.answered += o.answered;
        self.unused += o.unused;
        for (why, n) in &o.unanswered {
            *self.unanswered.entry(why).or_default() += n;
        }
        for (why, n) in &o.unconnected {
            *self.unconnected.entry(why).or_default() += n;
        }
    }

    pub fn unanswered_count(&self) -> u64 {
        self.unanswered.values().sum()
    }

    pub fn unconnected_count(&self) -> u64 {
        self.unconnected.values().sum()
    }

    /// Every connection, each counted once.
    pub fn total(&self) -> u64 {
        self.answered + self.unused + self.unanswered_count() + self.unconnected_count()
    }
}

/// `bench --hold`: how the connections came up.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HoldReport {
    /// Connections open and answered at the same time, at most.
    pub peak: u64,
    /// Of those, found no longer quietly open at the end of the hold: closed or reset by the
    /// server during it, or written to unasked.
    pub closed: u64,
    /// From the start until every connection had answered (or failed).
    pub ramp: Duration,
    pub rss_before_kib: u64,
    pub rss_up_kib: u64,
    pub kernel_before_bytes: u64,
    pub kernel_up_bytes: u64,
}

impl HoldReport {
    /// Workers of one process: peaks add up (they hold at once), the rest is process- or machine-wide.
    fn merge(&mut self, o: &HoldReport) {
        self.peak += o.peak;
        self.closed += o.closed;
        self.ramp = self.ramp.max(o.ramp);
        self.rss_before_kib = self.rss_before_kib.min(o.rss_before_kib);
        self.rss_up_kib = self.rss_up_kib.max(o.rss_up_kib);
        self.kernel_before_bytes = self.kernel_before_bytes.min(o.kernel_before_bytes);
        self.kernel_up_bytes = self.kernel_up_bytes.max(o.kernel_up_bytes);
    }
}

/// One URL's share of a bench.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UrlCounts {
    pub requests: u64,
    pub errors: u64,
    /// Status code → responses; a URL rarely sees more than two codes, so a short list.
    pub status: Vec<(u16, u64)>,
}

impl UrlCounts {
    pub fn add_status(&mut self, code: u16) {
        match self.status.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => self.status.push((code, 1)),
        }
    }

    fn merge(&mut self, other: &UrlCounts) {
        self.requests += other.requests;
        self.errors += other.errors;
        for &(code, n) in &other.status {
            match self.status.iter_mut().find(|(c, _)| *c == code) {
                Some((_, m)) => *m += n,
                None => self.status.push((code, n)),
            }
        }
    }
}

/// A URL's line in the `--json` summary.
#[derive(Debug, Serialize)]
pub struct UrlSummary {
    pub url: String,
    pub requests: u64,
    pub errors: u64,
    pub status: BTreeMap<String, u64>,
}

impl Report {
    /// `bench --hold`: `n` more held connections were found closed by the server at the hold's end
    /// (those tasks held, then those the ring held).
    pub fn held_but_closed(&mut self, n: u64) {
        if let Some(h) = self.hold.as_mut() {
            h.closed += n;
        }
    }

    /// Counts a connection that was established; `tls` says whether its session was resumed.
    pub fn connected(&mut self, tls: Option<bool>) {
        self.connections_opened += 1;
        if let Some(resumed) = tls {
            self.tls_handshakes += 1;
            self.tls_resumed += u64::from(resumed);
        }
    }

    /// Counts one failure, keeping its message when it is the first of its kind.
    pub fn error(&mut self, err: &FetchError) {
        let i = err.kind.index();
        self.errors[i] += 1;
        if self.first_errors[i].is_none() {
            self.first_errors[i] = Some(err.to_string());
        }
    }

    pub fn merge(&mut self, other: &Report) {
        self.requests += other.requests;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        for (a, b) in self.first_errors.iter_mut().zip(&other.first_errors) {
            if a.is_none() {
                a.clone_from(b);
            }
        }
        self.status.merge(&other.status);
        self.bytes += other.bytes;
        self.latency.merge(&other.latency);
        self.open_loop |= other.open_loop;
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize(other.timeline.len(), 0);
        }
        for (a, b) in self.timeline.iter_mut().zip(&other.timeline) {
            *a += b;
        }
        if self.per_url.len() < other.per_url.len() {
            self.per_url
                .resize(other.per_url.len(), UrlCounts::default());
        }
        for (a, b) in self.per_url.iter_mut().zip(&other.per_url) {
            a.merge(b);
        }
        match (&mut self.hold, &other.hold) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => self.hold = Some(*b),
            _ => {}
        }
        self.service.merge(&other.service);
        self.connections_opened += other.connections_opened;
        self.retries += other.retries;
        self.resent += other.resent;
        self.not_fetched += other.not_fetched;
        self.reads += other.reads;
        self.writes += other.writes;
        self.tls_handshakes += other.tls_handshakes;
        self.tls_resumed += other.tls_resumed;
        self.ring.add(&other.ring);
        match (&mut self.tally, &other.tally) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => self.tally = Some(b.clone()),
            _ => {}
        }
        self.in_flight_at_end += other.in_flight_at_end;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// Responses per status code: a flat array, as counting one is on the hot path (httparse accepts any
/// three digits, so 0–999).
#[derive(Clone)]
pub struct StatusCounts(Box<[u64; 1000]>);

impl Default for StatusCounts {
    fn default() -> Self {
        StatusCounts(Box::new([0; 1000]))
    }
}

impl StatusCounts {
    pub fn add(&mut self, code: u16) {
        self.0[usize::from(code).min(999)] += 1;
    }

    pub fn add_n(&mut self, code: u16, n: u64) {
        self.0[usize::from(code).min(999)] += n;
    }

    pub fn merge(&mut self, other: &StatusCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// Codes seen, ascending, with their counts.
    pub fn iter(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        (0u16..).zip(self.0.iter().copied()).filter(|&(_, n)| n > 0)
    }
}

/// The `--json` schema. Field names are a contract; new fields may be added, none renamed.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub requests: u64,
    pub errors: BTreeMap<&'static str, u64>,
    /// One example message per error kind ("kind: message").
    pub error_examples: BTreeMap<&'static str, String>,
    pub status: BTreeMap<String, u64>,
    pub bytes: u64,
    pub elapsed_s: f64,
    pub rps: f64,
    pub latency_us: LatencySummary,
    /// Open loop only: the service time (from the actual write), beside `latency_us` (from the time
    /// each request was due, coordinated omission corrected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_us: Option<LatencySummary>,
    /// `--percentiles`: the latency at each percentile asked for, keyed as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentiles_us: Option<BTreeMap<String, u64>>,
    /// `bench`: responses completed in each second of the run (the last second may be partial).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<u64>,
    /// `bench` over several URLs: each URL's counts, in the order given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<UrlSummary>,
    /// The latency histogram itself, `[[µs, count], …]`, so `ringfetch merge` combines runs exactly.
    pub latency_histogram: Vec<(u64, u64)>,
    /// `bench --hold`: connections open and answered at once, at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_connections: Option<u64>,
    /// `bench --hold`: held connections the server closed, reset or wrote to during the hold (a look
    /// at each at its end); `peak_connections` minus this were still open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_during_hold: Option<u64>,
    /// `bench --hold`: connections per second until all had answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_rate: Option<f64>,
    /// `bench --hold`: this process's RSS growth per held connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_bytes_per_conn: Option<u64>,
    /// `bench --hold`: growth of the machine's TCP kernel memory (sockstat buffers, and the socket
    /// slabs where readable) per held connection; on loopback it includes the server's end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_bytes_per_conn: Option<u64>,
    pub connections_opened: u64,
    pub threads: usize,
    pub retries: u64,
    pub resent: u64,
    pub reads: u64,
    pub writes: u64,
    pub tls_handshakes: u64,
    pub tls_resumed: u64,
    /// `fetch`: the run was interrupted (SIGINT, SIGTERM, or its results could not be written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<bool>,
    /// `fetch`: URLs left without a result line by the interruption; `--resume` fetches them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_fetched: Option<u64>,
    /// `bench`: the run's connections (`-c`, after any clamp), each counted in exactly one of the
    /// four below.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections_answered: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections_unanswered: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections_unconnected: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections_unused: Option<u64>,
    /// `bench`: why the unanswered ones were not answered, reason → count (`Tally::unanswered`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unanswered_why: Option<BTreeMap<&'static str, u64>>,
    /// `bench`: why the unconnected ones never connected, reason → count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unconnected_why: Option<BTreeMap<&'static str, u64>>,
    /// `bench`: requests written and unanswered when the run ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight_at_end: Option<u64>,
}

impl Summary {
    /// Adds how a `fetch` ended: interrupted or not, and the URLs it left without a line.
    pub fn with_fetch_end(mut self, report: &Report, interrupted: bool) -> Summary {
        self.interrupted = Some(interrupted);
        self.not_fetched = Some(report.not_fetched);
        self
    }

    /// Adds the per-URL counts, `urls[i]` naming the URL of index i.
    pub fn with_urls(mut self, report: &Report, urls: &[String]) -> Summary {
        self.urls = report
            .per_url
            .iter()
            .zip(urls)
            .map(|(c, url)| UrlSummary {
                url: url.clone(),
                requests: c.requests,
                errors: c.errors,
                status: c.status.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            })
            .collect();
        self
    }

    /// Adds the `--percentiles` line.
    pub fn with_percentiles(
        mut self,
        report: &Report,
        points: Option<&[(String, f64)]>,
    ) -> Summary {
        self.percentiles_us = points.map(|p| report.latency.at(p));
        self
    }

    pub fn new(report: &Report, elapsed: Duration, threads: usize) -> Summary {
        let secs = elapsed.as_secs_f64();
        Summary {
            requests: report.requests,
            errors: ErrorKind::ALL
                .iter()
                .filter(|k| report.errors[k.index()] > 0)
                .map(|k| (k.as_str(), report.errors[k.index()]))
                .collect(),
            error_examples: ErrorKind::ALL
                .iter()
                .filter_map(|k| Some((k.as_str(), report.first_errors[k.index()].clone()?)))
                .collect(),
            status: report
                .status
                .iter()
                .map(|(code, n)| (code.to_string(), n))
                .collect(),
            bytes: report.bytes,
            elapsed_s: (secs * 1000.0).round() / 1000.0,
            rps: if secs > 0.0 {
                (report.requests as f64 / secs * 10.0).round() / 10.0
            } else {
                0.0
            },
            latency_us: report.latency.summary(),
            service_us: report.open_loop.then(|| report.service.summary()),
            percentiles_us: None,
            timeline: report.timeline.clone(),
            urls: Vec::new(),
            latency_histogram: report.latency.buckets(),
            peak_connections: report.hold.map(|h| h.peak),
            closed_during_hold: report.hold.map(|h| h.closed),
            connect_rate: report
                .hold
                .map(|h| (h.peak as f64 / h.ramp.as_secs_f64().max(1e-6) * 10.0).round() / 10.0),
            user_bytes_per_conn: report
                .hold
                .map(|h| h.rss_up_kib.saturating_sub(h.rss_before_kib) * 1024 / h.peak.max(1)),
            kernel_bytes_per_conn: report
                .hold
                .map(|h| h.kernel_up_bytes.saturating_sub(h.kernel_before_bytes) / h.peak.max(1)),
            connections_opened: report.connections_opened,
            threads,
            retries: report.retries,
            resent: report.resent,
            reads: report.reads,
            writes: report.writes,
            tls_handshakes: report.tls_handshakes,
            tls_resumed: report.tls_resumed,
            interrupted: None,
            not_fetched: None,
            connections: report.tally.as_ref().map(Tally::total),
            connections_answered: report.tally.as_ref().map(|t| t.answered),
            connections_unanswered: report.tally.as_ref().map(Tally::unanswered_count),
            connections_unconnected: report.tally.as_ref().map(Tally::unconnected_count),
            connections_unused: report.tally.as_ref().map(|t| t.unused),
            unanswered_why: report.tally.as_ref().map(|t| t.unanswered.clone()),
            unconnected_why: report.tally.as_ref().map(|t| t.unconnected.clone()),
            in_flight_at_end: report.tally.is_some().then_some(report.in_flight_at_end),
        }
    }

    /// `bench`: connections that carried no response, connected or not (`--fail-if unanswered`).
    pub fn never_answered(&self) -> u64 {
        self.connections_unanswered.unwrap_or(0) + self.connections_unconnected.unwrap_or(0)
    }

    /// The line that says a share of the connections was never answered, with the likely cause and
    /// what to check; None when every connection that had something to send was answered.
    fn unanswered_line(&self) -> Option<String> {
        let never = self.never_answered();
        let total = self.connections?;
        if never == 0 {
            return None;
        }
        let mut why: Vec<(&str, u64)> = self
            .unanswered_why
            .iter()
            .chain(self.unconnected_why.iter())
            .flatten()
            .map(|(k, n)| (*k, *n))
            .collect();
        // The most common reason first: it names the cause.
        why.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let listed: Vec<String> = why.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let cause = match why.first().map(|w| w.0) {
            Some("waiting" | "timeout") => {
                "the server accepted or answered only some of them: it likely hit its open-file \
                 limit or its listen backlog; check `ulimit -n` of the server and its backlog \
                 (net.core.somaxconn)"
            }
            Some("connect" | "connecting") => {
                "connections were refused or not accepted in time: check that the server listens, \
                 its listen backlog (net.core.somaxconn) and --connect-timeout"
            }
            Some("not-started") => {
                "the connections that did open were not answered within --connect-timeout + \
                 --timeout, so the hold began without the rest: check the server's open-file limit \
                 and backlog"
            }
            Some("io" | "protocol") => {
                "the server reset or closed them before answering: check its logs and its \
                 connection limits"
            }
            _ => "check the errors above",
        };
        Some(format!(
            "{never} of {total} connections were never answered within the run ({}): {cause}",
            listed.join(", ")
        ))
    }

    pub fn to_json(&self) -> String {
        // Plain maps, numbers and strings always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// wrk-like aligned text. `what` names the run, e.g. "fetch" or "bench http://…".
    pub fn to_text(&self, what: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "ringfetch {what}: {} responses in {:.2}s with {} thread{}",
            self.requests,
            self.elapsed_s,
            self.threads,
            if self.threads == 1 { "" } else { "s" }
        );
        let _ = writeln!(s, "  {:<12}{:.0}/s", "throughput", self.rps);
        if let (Some(true), Some(n)) = (self.interrupted, self.not_fetched) {
            let _ = writeln!(s, "  {:<12}{n} URLs without a result line", "interrupted");
        }
        let rows = [
            ("latency", Some(&self.latency_us)),
            ("service", self.service_us.as_ref()),
        ];
        for (name, l) in rows {
            let Some(l) = l else { continue };
            let _ = writeln!(
                s,
                "  {:<12}p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}",
                name,
                us(l.p50 as f64),
                us(l.p90 as f64),
                us(l.p99 as f64),
                us(l.p999 as f64),
                us(l.max as f64),
                us(l.mean)
            );
        }
        if let Some(points) = &self.percentiles_us {
            let mut sorted: Vec<(&String, &u64)> = points.iter().collect();
            sorted.sort_by(|a, b| {
                let key = |s: &str| s.parse::<f64>().unwrap_or(0.0);
                key(a.0).total_cmp(&key(b.0))
            });
            let text: Vec<String> = sorted
                .iter()
                .map(|(p, v)| format!("p{p} {}", us(**v as f64)))
                .collect();
            let _ = writeln!(s, "  {:<12}{}", "percentiles", text.join("  "));
        }
        if self.service_us.is_some() {
            let _ = writeln!(
                s,
                "  {:<12}latency runs from when each request was due (--rate), service from its write",
                ""
            );
        }
        let status: Vec<String> = self
            .status
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        let _ = writeln!(
            s,
            "  {:<12}{}",
            "status",
            if status.is_empty() {
                "-".into()
            } else {
                status.join("  ")
            }
        );
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let _ = writeln!(
            s,
            "  {:<12}{}",
            "errors",
            if errors.is_empty() {
                "0".into()
            } else {
                errors.join("  ")
            }
        );
        for example in self.error_examples.values() {
            let _ = writeln!(s, "  {:<12}{example}", "e.g.");
        }
        let _ = writeln!(s, "  {:<12}{} body bytes", "transfer", bytes(self.bytes));
        let _ = writeln!(
            s,
            "  {:<12}{} opened, {} retried, {} re-sent; {} reads, {} writes",
            "connections",
            self.connections_opened,
            self.retries,
            self.resent,
            self.reads,
            self.writes
        );
        if let (Some(peak), Some(rate), Some(user), Some(kernel)) = (
            self.peak_connections,
            self.connect_rate,
            self.user_bytes_per_conn,
            self.kernel_bytes_per_conn,
        ) {
            let _ = writeln!(
                s,
                "  {:<12}{peak} open and answered at once, {rate:.0} connections/s until all were up; \
                 {user} B user memory and {kernel} B kernel memory per connection",
                "held"
            );
            match self.closed_during_hold {
                Some(0) | None => {
                    let _ = writeln!(s, "  {:<12}all {peak} still open at the end", "");
                }
                Some(gone) => {
                    let _ = writeln!(
                        s,
                        "  {:<12}{} still open at the end: the server closed or reset {gone} \
                         during the hold (an idle timeout? check its keep-alive timeout)",
                        "",
                        peak.saturating_sub(gone)
                    );
                }
            }
        }
        if self.tls_handshakes > 0 {
            let _ = writeln!(
                s,
                "  {:<12}{} handshakes, {} resumed",
                "tls", self.tls_handshakes, self.tls_resumed
            );
        }
        if let (Some(total), Some(answered)) = (self.connections, self.connections_answered) {
            let _ = writeln!(
                s,
                "  {:<12}{total} in the run: {answered} answered, {} unanswered, {} never connected, \
                 {} unused; {} requests in flight at the end",
                "reach",
                self.connections_unanswered.unwrap_or(0),
                self.connections_unconnected.unwrap_or(0),
                self.connections_unused.unwrap_or(0),
                self.in_flight_at_end.unwrap_or(0),
            );
        }
        if let Some(line) = self.unanswered_line() {
            let _ = writeln!(s, "  {:<12}{line}", "unanswered");
        }
        s
    }
}

fn us(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.2}s", v / 1e6)
    } else if v >= 1000.0 {
        format!("{:.2}ms", v / 1e3)
    } else {
        format!("{v:.0}us")
    }
}

pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_schema() {
        let mut a = Report {
            requests: 3,
            ..Default::default()
        };
        a.error(&FetchError::new(
            ErrorKind::Timeout,
            "no complete response within 1.0s",
        ));
        for _ in 0..3 {
            a.status.add(200);
        }
        a.latency.record(Duration::from_micros(100));
        let mut b = Report {
            requests: 2,
            bytes: 10,
            connections_opened: 2,
            ..Default::default()
        };
        b.status.add(200);
        b.status.add(404);
        a.merge(&b);
        let s = Summary::new(&a, Duration::from_secs(2), 2);
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["requests"], 5);
        assert_eq!(v["errors"]["timeout"], 1);
        assert_eq!(v["status"]["200"], 4);
        assert_eq!(v["status"]["404"], 1);
        assert_eq!(v["bytes"], 10);
        assert_eq!(v["rps"], 2.5);
        assert_eq!(v["elapsed_s"], 2.0);
        assert_eq!(v["connections_opened"], 2);
        assert_eq!(v["threads"], 2);
        for p in ["p50", "p90", "p99", "p999", "max", "mean"] {
            assert!(v["latency_us"][p].is_number(), "{p}");
        }
        let text = s.to_text("fetch");
        assert!(
            text.contains("timeout: 1") && text.contains("404: 1"),
            "{text}"
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(us(999.0), "999us");
        assert_eq!(us(1500.0), "1.50ms");
        assert_eq!(us(2_500_000.0), "2.50s");
        assert_eq!(bytes(10), "10 B");
        assert_eq!(bytes(10 * 1024 * 1024), "10.0 MiB");
    }
}
