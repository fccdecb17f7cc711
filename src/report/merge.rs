//! `ringfetch merge`: one summary from the `--json` summaries of several runs (the shards of one list
//! on several machines), and one result file from their result lines. Latency percentiles come from
//! the runs' histograms added together (`latency_histogram`), never from averaged percentiles.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::summary::{Report, Summary, UrlCounts};
use crate::error::{describe, ErrorKind, UsageError};
use crate::units::MAX_DURATION;

/// The merged summary of `files`. Runs are taken to have run side by side: the elapsed time is the
/// longest one's, so `rps` is the combined rate.
pub fn summaries(files: &[PathBuf]) -> Result<Summary, UsageError> {
    let mut report = Report::default();
    let mut elapsed = 0.0f64;
    let mut threads = 0usize;
    let mut urls: Vec<String> = Vec::new();
    let (mut fetch_end, mut interrupted) = (false, false);
    for path in files {
        let v = read_summary(path)?;
        let count = |value: &Value, what: &str| count(value, what, path);
        let num = |key: &str| count(&v[key], key);
        let mut one = Report {
            requests: num("requests")?,
            bytes: num("bytes")?,
            connections_opened: num("connections_opened")?,
            retries: num("retries")?,
            resent: num("resent")?,
            reads: num("reads")?,
            writes: num("writes")?,
            tls_handshakes: num("tls_handshakes")?,
            tls_resumed: num("tls_resumed")?,
            ..Report::default()
        };
        for kind in ErrorKind::ALL {
            let i = kind.index();
            one.errors[i] = count(&v["errors"][kind.as_str()], "errors")?;
            one.first_errors[i] = v["error_examples"][kind.as_str()]
                .as_str()
                .map(str::to_string);
        }
        if let Some(status) = v["status"].as_object() {
            for (code, n) in status {
                one.status
                    .add_n(status_code(code, path)?, count(n, "status")?);
            }
        }
        let buckets: Vec<(u64, u64)> = v["latency_histogram"]
            .as_array()
            .ok_or_else(|| {
                UsageError(format!(
                    "{}: no latency_histogram; it was written by a ringfetch older than merge",
                    path.display()
                ))
            })?
            .iter()
            .map(|pair| bucket(pair, path))
            .collect::<Result<_, _>>()?;
        one.latency.record_buckets(&buckets);
        one.timeline = match v["timeline"].as_array() {
            Some(t) => t
                .iter()
                .map(|n| count(n, "timeline"))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        // Per-URL counts line up by URL, whatever order each run listed them in.
        if let Some(list) = v["urls"].as_array() {
            one.per_url = vec![UrlCounts::default(); urls.len()];
            for u in list {
                let Some(url) = u["url"].as_str() else {
                    continue;
                };
                let i = match urls.iter().position(|known| known == url) {
                    Some(i) => i,
                    None => {
                        urls.push(url.to_string());
                        one.per_url.push(UrlCounts::default());
                        urls.len() - 1
                    }
                };
                let c = &mut one.per_url[i];
                c.requests = count(&u["requests"], "urls")?;
                c.errors = count(&u["errors"], "urls")?;
                if let Some(status) = u["status"].as_object() {
                    for (code, n) in status {
                        c.status.push((status_code(code, path)?, count(n, "urls")?));
                    }
                }
            }
        }
        one.not_fetched = num("not_fetched")?;
        fetch_end |= v.get("not_fetched").is_some();
        interrupted |= v["interrupted"].as_bool().unwrap_or(false);
        report.merge(&one);
        let run = v["elapsed_s"].as_f64().unwrap_or(0.0);
        if !(0.0..=MAX_DURATION.as_secs_f64()).contains(&run) {
            return Err(UsageError(format!(
                "{}: elapsed_s {run} is not the length of a run in seconds; is it a ringfetch summary?",
                path.display()
            )));
        }
        elapsed = elapsed.max(run);
        threads += num("threads")? as usize;
    }
    let merged =
        Summary::new(&report, Duration::from_secs_f64(elapsed), threads).with_urls(&report, &urls);
    // The shards of one fetch: interrupted when any was, and every URL any left without a line.
    Ok(if fetch_end {
        merged.with_fetch_end(&report, interrupted)
    } else {
        merged
    })
}

/// Largest count a summary may hold: 2^53, JSON's exact integers. No run makes 9×10^15 requests, and
/// the sum of a few thousand such counts cannot overflow.
const MOST_COUNT: u64 = 1 << 53;

/// A count of a summary: absent (an older ringfetch, or a kind that never happened) is 0; anything
/// but a whole number up to `MOST_COUNT` is refused, naming the field.
fn count(value: &Value, what: &str, path: &Path) -> Result<u64, UsageError> {
    match value {
        Value::Null => Ok(0),
        v => v.as_u64().filter(|&n| n <= MOST_COUNT).ok_or_else(|| {
            UsageError(format!(
                "{}: {what} holds {v}, not a count a run makes; is it a ringfetch summary?",
                path.display()
            ))
        }),
    }
}

/// An HTTP status code as a key of `status`: three digits.
fn status_code(key: &str, path: &Path) -> Result<u16, UsageError> {
    key.parse()
        .ok()
        .filter(|c| (100..=999).contains(c))
        .ok_or_else(|| {
            UsageError(format!(
                "{}: status {key:?} is not an HTTP status code",
                path.display()
            ))
        })
}

/// One `[microseconds, count]` pair of `latency_histogram`; latencies past the longest run refused.
fn bucket(pair: &Value, path: &Path) -> Result<(u64, u64), UsageError> {
    let longest = MAX_DURATION.as_micros() as u64;
    match pair.as_array().map(Vec::as_slice) {
        Some([us, n]) => match (
            us.as_u64().filter(|&us| us <= longest),
            count(n, "latency_histogram", path),
        ) {
            (Some(us), Ok(n)) => Ok((us, n)),
            _ => Err(bad_bucket(pair, path)),
        },
        _ => Err(bad_bucket(pair, path)),
    }
}

fn bad_bucket(pair: &Value, path: &Path) -> UsageError {
    UsageError(format!(
        "{}: latency_histogram entry {pair} is not [microseconds, count]; is it a ringfetch summary?",
        path.display()
    ))
}

/// The last JSON object in the file: a summary may follow other output.
fn read_summary(path: &Path) -> Result<Value, UsageError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        UsageError(format!(
            "{}: cannot read it: {}",
            path.display(),
            describe(&e)
        ))
    })?;
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(text.trim()) {
        return Ok(v);
    }
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(|v| v.is_object() && v.get("requests").is_some())
        .ok_or_else(|| {
            UsageError(format!(
                "{}: no ringfetch --json summary in it",
                path.display()
            ))
        })
}

/// What joining result files found wrong.
#[derive(Debug)]
pub enum JoinError {
    Usage(UsageError),
    /// Two lines for one index: the shards overlapped, or one file was given twice.
    Duplicate(String),
    Write(io::Error),
}

/// Copies the result lines of `files` to `out`, each index at most once. Returns the line count.
pub fn results(files: &[PathBuf], out: &mut dyn Write) -> Result<u64, JoinError> {
    let mut seen: HashSet<u64> = HashSet::new();
    let mut lines = 0u64;
    for path in files {
        let file = File::open(path).map_err(|e| {
            JoinError::Usage(UsageError(format!(
                "{}: cannot read it: {}",
                path.display(),
                describe(&e)
            )))
        })?;
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(JoinError::Write)?;
            if line.trim().is_empty() {
                continue;
            }
            let index = serde_json::from_str::<Value>(&line)
                .ok()
                .and_then(|v| v["index"].as_u64())
                .ok_or_else(|| {
                    JoinError::Usage(UsageError(format!(
                        "{} line {}: not a ringfetch result line",
                        path.display(),
                        n + 1
                    )))
                })?;
            if !seen.insert(index) {
                return Err(JoinError::Duplicate(format!(
                    "index {index} appears twice (again in {} line {}): the shards overlap, or a file is \
                     given twice",
                    path.display(),
                    n + 1
                )));
            }
            out.write_all(line.as_bytes()).map_err(JoinError::Write)?;
            out.write_all(b"\n").map_err(JoinError::Write)?;
            lines += 1;
        }
    }
    out.flush().map_err(JoinError::Write)?;
    Ok(lines)
}
