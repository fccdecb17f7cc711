//! One JSON line per URL. Each worker renders its lines into its own buffer and hands whole buffers to the
//! shared sink, so lines never interleave and the lock is taken once per 64 KiB (or per tick), not
//! once per URL.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The contract of a result line; field names and types never change.
#[derive(Debug, Serialize)]
pub struct ResultLine<'a> {
    pub index: u64,
    pub url: &'a str,
    pub status: Option<u16>,
    pub body_bytes: u64,
    pub elapsed_ms: f64,
    pub attempts: u32,
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a str>,
    /// `-L`: the URL of the last response (the line's `url` when nothing redirected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_url: Option<&'a str>,
    /// `-L`: redirects followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirects: Option<u32>,
    /// `--compressed`: the response's content codings (`identity` for none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<&'a str>,
    /// `--compressed`: body bytes as sent, before decoding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wire_bytes: Option<u64>,
    /// `--meta`, `--include-header`, `--hash`: what the response was, and how its attempt went.
    #[serde(flatten)]
    pub meta: Option<MetaLine<'a>>,
}

/// The fields of `--meta` (content_type … reused), `--include-header` (headers) and `--hash`
/// (sha256), in this order. Times in milliseconds, rounded to microseconds.
#[derive(Debug, Serialize)]
pub struct MetaLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_length: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_ms: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ms: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<&'a str>,
}

/// One `--include-header` name (lowercase) with the response's value, or None.
pub type HeaderValue = (Box<str>, Option<Box<str>>);

/// `--include-header`: each name asked for with the response's value, or null.
#[derive(Debug)]
pub struct Headers<'a>(pub &'a [HeaderValue]);

impl Serialize for Headers<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl MetaLine<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut num = itoa::Buffer::new();
        let key = |out: &mut Vec<u8>, k: &str| {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
        };
        let opt_str = |out: &mut Vec<u8>, v: Option<&str>| match v {
            Some(v) => json_string(out, v),
            None => out.extend_from_slice(b"null"),
        };
        if let Some(v) = self.content_type {
            key(out, "content_type");
            opt_str(out, v);
        }
        if let Some(v) = self.content_length {
            key(out, "content_length");
            match v {
                Some(n) => out.extend_from_slice(num.format(n).as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
        }
        for (name, v) in [
            ("dns_ms", self.dns_ms),
            ("connect_ms", self.connect_ms),
            ("tls_ms", self.tls_ms),
            ("ttfb_ms", self.ttfb_ms),
        ] {
            if let Some(v) = v {
                key(out, name);
                match v {
                    Some(ms) => milliseconds(out, ms),
                    None => out.extend_from_slice(b"null"),
                }
            }
        }
        if let Some(r) = self.reused {
            key(out, "reused");
            out.extend_from_slice(if r { b"true" } else { b"false" });
        }
        if let Some(Headers(pairs)) = &self.headers {
            key(out, "headers");
            out.push(b'{');
            for (i, (name, value)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_string(out, name);
                out.push(b':');
                opt_str(out, value.as_deref());
            }
            out.push(b'}');
        }
        if let Some(h) = self.sha256 {
            key(out, "sha256");
            json_string(out, h);
        }
    }
}

impl ResultLine<'_> {
    /// Appends the line as JSON, written by hand: it runs once per URL, and serde's generic map
    /// serialisation cost ≈2,200 instructions a line, a quarter of a fetch's user-space CPU. The output
    /// is what serde_json writes for the same line (`tests::same_json_as_serde`).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut num = itoa::Buffer::new();
        out.extend_from_slice(b"{\"index\":");
        out.extend_from_slice(num.format(self.index).as_bytes());
        out.extend_from_slice(b",\"url\":");
        json_string(out, self.url);
        out.extend_from_slice(b",\"status\":");
        match self.status {
            Some(s) => out.extend_from_slice(num.format(s).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"body_bytes\":");
        out.extend_from_slice(num.format(self.body_bytes).as_bytes());
        out.extend_from_slice(b",\"elapsed_ms\":");
        milliseconds(out, self.elapsed_ms);
        out.extend_from_slice(b",\"attempts\":");
        out.extend_from_slice(num.format(self.attempts).as_bytes());
        out.extend_from_slice(b",\"error\":");
        match &self.error {
            Some(e) => json_string(out, e),
            None => out.extend_from_slice(b"null"),
        }
        if let Some(p) = self.path {
            out.extend_from_slice(b",\"path\":");
            json_string(out, p);
        }
        if let Some(u) = self.final_url {
            out.extend_from_slice(b",\"final_url\":");
            json_string(out, u);
        }
        if let Some(n) = self.redirects {
            out.extend_from_slice(b",\"redirects\":");
            out.extend_from_slice(num.format(n).as_bytes());
        }
        if let Some(e) = self.encoding {
            out.extend_from_slice(b",\"encoding\":");
            json_string(out, e);
        }
        if let Some(n) = self.wire_bytes {
            out.extend_from_slice(b",\"wire_bytes\":");
            out.extend_from_slice(num.format(n).as_bytes());
        }
        if let Some(meta) = &self.meta {
            meta.write_json(out);
        }
        out.push(b'}');
    }
}

/// A millisecond count with at most three decimals, always with a decimal point (as serde_json
/// writes an f64: `2.0`, `0.947`); values that are not finite become 0.0.
fn milliseconds(out: &mut Vec<u8>, ms: f64) {
    let micros = if ms.is_finite() && ms > 0.0 {
        (ms * 1000.0).round() as u64
    } else {
        0
    };
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(num.format(micros / 1000).as_bytes());
    out.push(b'.');
    let frac = micros % 1000;
    let digits = [
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ];
    let keep = if frac % 100 == 0 {
        1
    } else if frac % 10 == 0 {
        2
    } else {
        3
    };
    out.extend_from_slice(&digits[..keep]);
}

/// A JSON string (RFC 8259 §7): quotes, backslashes and control characters escaped, everything else
/// as UTF-8.
fn json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Most strings (URLs, paths) need no escape: one pass without an early exit, which the compiler
    // vectorises, then one copy, instead of a branch per byte (3.2% of fetch's samples at -p 16
    // against serve, now 0.8%).
    let plain = !bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[from..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
    out.push(b'"');
}

/// Where result lines go: a file, stdout, or nowhere (no `-o`). Workers hand over whole lines; the
/// sink writes them out once 256 KiB are pending or half a second has passed (`flush_due`, called
/// from every worker's tick), so a line reaches the file within about a second of its URL finishing
/// and a `kill -9` loses at most that. A failed write (a full disk) truncates the file back to the
/// last line written whole and stops taking lines: `--resume` continues from there.
#[derive(Clone)]
pub struct Sink {
    out: Option<Arc<Mutex<Out>>>,
    /// The reader of the results went away (`ringfetch fetch … -o - | head`): fetching more is
    /// pointless, so the run stops feeding URLs and ends quietly.
    gone: Arc<AtomicBool>,
    /// A write failed: the run stops (see `failure`).
    failed: Arc<AtomicBool>,
    /// Result lines that could not be written (from the failed write on): their URLs have no line.
    lost: Arc<AtomicU64>,
}

/// Where the bytes go.
pub enum Target {
    Stdout(io::Stdout),
    /// A file, with a name for messages.
    File(std::fs::File, std::path::PathBuf),
}

struct Out {
    target: Target,
    /// Whole lines not yet written.
    pending: Vec<u8>,
    /// Bytes written whole so far (to a file: its length, a line boundary).
    written: u64,
    last_write: Instant,
    /// What the failed write said, once one has.
    failure: Option<String>,
}

/// Pending bytes written at once past this size.
const WRITE_AT: usize = 256 * 1024;
/// Pending bytes written at least this often.
const WRITE_EVERY: Duration = Duration::from_millis(500);

impl Sink {
    pub fn new(target: Option<Target>) -> Sink {
        Sink {
            out: target.map(|target| {
                Arc::new(Mutex::new(Out {
                    target,
                    pending: Vec::with_capacity(WRITE_AT + FLUSH_AT),
                    written: 0,
                    last_write: Instant::now(),
                    failure: None,
                }))
            }),
            gone: Arc::new(AtomicBool::new(false)),
            failed: Arc::new(AtomicBool::new(false)),
            lost: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Result lines that could not be written; `--resume` fetches their URLs again.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    fn lose(&self, lines: &[u8]) {
        let n = lines.iter().filter(|&&b| b == b'\n').count() as u64;
        self.lost.fetch_add(n, Ordering::Relaxed);
    }

    pub fn reader_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// A write of the results failed; `failure` says what and what to do.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    pub fn enabled(&self) -> bool {
        self.out.is_some()
    }

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, Out>> {
        // A worker that panicked while holding the lock left whole lines behind; keep writing.
        let out = self.out.as_ref()?;
        Some(out.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Takes whole lines; writes them out when enough are pending.
    fn write(&self, bytes: &[u8]) {
        let Some(mut out) = self.lock() else { return };
        if out.failure.is_some() {
            return self.lose(bytes);
        }
        out.pending.extend_from_slice(bytes);
        if out.pending.len() >= WRITE_AT {
            self.write_out(&mut out);
        }
    }

    /// Writes pending lines out if they have waited long enough.
    pub fn flush_due(&self) {
        let Some(mut out) = self.lock() else { return };
        if !out.pending.is_empty() && out.last_write.elapsed() >= WRITE_EVERY {
            self.write_out(&mut out);
        }
    }

    /// Writes every pending line out.
    pub fn flush(&self) {
        if let Some(mut out) = self.lock() {
            self.write_out(&mut out);
        }
    }

    /// Why writing the results failed, with what to do, if it did.
    pub fn failure(&self) -> Option<String> {
        self.lock()?.failure.clone()
    }

    fn write_out(&self, out: &mut Out) {
        out.last_write = Instant::now();
        if out.pending.is_empty() || out.failure.is_some() {
            return;
        }
        let Out {
            target,
            pending,
            written,
            ..
        } = out;
        // How much of `pending` went out before an error: to a file, the lines written whole stay.
        let mut sent = 0;
        let res = match target {
            Target::Stdout(s) => s.write_all(pending).and_then(|()| s.flush()),
            Target::File(f, _) => loop {
                match f.write(&pending[sent..]) {
                    Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
                if sent == pending.len() {
                    break Ok(());
                }
            },
        };
        match res {
            Ok(()) => {
                *written += pending.len() as u64;
                pending.clear();
            }
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.gone.store(true, Ordering::Relaxed);
                pending.clear();
            }
            Err(e) => {
                let message = match target {
                    Target::Stdout(_) => format!("cannot write results to stdout: {e}"),
                    Target::File(f, path) => {
                        // Keep the lines that went out whole; a torn one would only be dropped by
                        // --resume, better none at all.
                        let whole = pending[..sent]
                            .iter()
                            .rposition(|&b| b == b'\n')
                            .map_or(0, |i| i + 1);
                        *written += whole as u64;
                        self.lose(&pending[whole..]);
                        let cut = f.set_len(*written).is_ok();
                        format!(
                            "cannot write results to {}: {e}; {}, make room and continue with --resume",
                            path.display(),
                            if cut {
                                "the file ends with its last whole line"
                            } else {
                                "its last line may be torn"
                            }
                        )
                    }
                };
                pending.clear();
                out.failure = Some(message);
                self.failed.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// A worker's pending lines.
pub struct Lines {
    sink: Sink,
    buf: Vec<u8>,
}

/// A worker hands its lines to the sink at this size (and at every tick).
const FLUSH_AT: usize = 64 * 1024;

impl Lines {
    pub fn new(sink: Sink) -> Lines {
        Lines {
            sink,
            buf: Vec::with_capacity(FLUSH_AT + 1024),
        }
    }

    pub fn push(&mut self, line: &ResultLine<'_>) {
        if !self.sink.enabled() {
            return;
        }
        if self.sink.failed() {
            self.sink.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        line.write_json(&mut self.buf);
        self.buf.push(b'\n');
        if self.buf.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// Hands the worker's lines to the sink.
    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            self.sink.write(&self.buf);
            self.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static HEADERS: std::sync::LazyLock<Vec<HeaderValue>> = std::sync::LazyLock::new(|| {
        vec![
            ("server".into(), Some("nginx \"1\"".into())),
            ("x-none".into(), None),
        ]
    });

    #[test]
    fn same_json_as_serde() {
        let strings = [
            "http://h/plain",
            "http://h/\"quoted\" and \\ back",
            "tab\there\nnew\rline\u{8}\u{c}\u{1}\u{1f}",
            "unicode é ✓ \u{7f}",
            "",
        ];
        let mut lines = Vec::new();
        for (i, url) in strings.iter().enumerate() {
            for (ms, status, error, path) in [
                (0.947, Some(200), None, None),
                (14.3, None, Some(format!("io: {url}")), None),
                (2.0, Some(404), None, Some(*url)),
                (0.0, Some(100), None, None),
                (
                    123456.789,
                    Some(599),
                    Some("timeout: x".to_string()),
                    Some("d/1"),
                ),
                (0.001, None, None, None),
            ] {
                lines.push(ResultLine {
                    index: i as u64 * 1_000_000_007,
                    url,
                    status,
                    body_bytes: u64::MAX - i as u64,
                    elapsed_ms: ms,
                    attempts: i as u32,
                    error,
                    path,
                    final_url: (i % 2 == 1).then_some(*url),
                    redirects: (i % 2 == 1).then_some(i as u32),
                    encoding: (i % 3 == 1).then_some(*url),
                    wire_bytes: (i % 3 == 1).then_some(u64::MAX - 1),
                    meta: (i % 2 == 0).then(|| MetaLine {
                        content_type: Some((i % 4 == 0).then_some(*url)),
                        content_length: Some((i % 4 == 2).then_some(i as u64 * 977)),
                        dns_ms: Some(Some(ms)),
                        connect_ms: Some((i % 4 == 0).then_some(0.001)),
                        tls_ms: Some((i % 4 == 0).then_some(12.5)),
                        ttfb_ms: Some(None),
                        reused: Some(i % 4 == 2),
                        headers: Some(Headers(&HEADERS)),
                        sha256: Some("e3b0c44298fc1c149afbf4c8996fb924"),
                    }),
                });
            }
        }
        for line in &lines {
            let mut ours = Vec::new();
            line.write_json(&mut ours);
            let theirs = serde_json::to_vec(line).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(theirs).unwrap()
            );
        }
    }

    #[test]
    fn line_shape() {
        let line = ResultLine {
            index: 3,
            url: "http://h/\"q\"",
            status: Some(200),
            body_bytes: 10,
            elapsed_ms: 1.5,
            attempts: 1,
            error: None,
            path: None,
            final_url: None,
            redirects: None,
            encoding: None,
            wire_bytes: None,
            meta: None,
        };
        assert_eq!(
            serde_json::to_string(&line).unwrap(),
            r#"{"index":3,"url":"http://h/\"q\"","status":200,"body_bytes":10,"elapsed_ms":1.5,"attempts":1,"error":null}"#
        );
    }
}
