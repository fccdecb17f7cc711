//! One JSON line per URL. Each worker renders its lines into its own buffer and hands whole buffers to the
//! shared sink, so lines never interleave and the lock is taken once per 64 KiB, not once per URL.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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

/// Where result lines go: a file, stdout, or nowhere (no `-o`).
#[derive(Clone)]
pub struct Sink {
    out: Option<Arc<Mutex<Box<dyn Write + Send>>>>,
    /// The reader of the results went away (`ringfetch fetch … -o - | head`): fetching more is
    /// pointless, so the run stops feeding URLs and ends quietly.
    gone: Arc<AtomicBool>,
}

impl Sink {
    pub fn new(out: Option<Box<dyn Write + Send>>) -> Sink {
        Sink {
            out: out.map(|w| Arc::new(Mutex::new(w))),
            gone: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn reader_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    pub fn enabled(&self) -> bool {
        self.out.is_some()
    }

    fn write(&self, bytes: &[u8]) -> io::Result<()> {
        let Some(out) = &self.out else { return Ok(()) };
        // A worker that panicked while holding the lock left whole lines behind; keep writing.
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        let res = out.write_all(bytes);
        if matches!(&res, Err(e) if e.kind() == io::ErrorKind::BrokenPipe) {
            self.gone.store(true, Ordering::Relaxed);
        }
        res
    }

    pub fn flush(&self) -> io::Result<()> {
        let Some(out) = &self.out else { return Ok(()) };
        out.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

/// A worker's pending lines.
pub struct Lines {
    sink: Sink,
    buf: Vec<u8>,
    /// The first write error; later lines are dropped and the run reports it at the end.
    pub failed: Option<io::Error>,
}

const FLUSH_AT: usize = 64 * 1024;

impl Lines {
    pub fn new(sink: Sink) -> Lines {
        Lines {
            sink,
            buf: Vec::with_capacity(FLUSH_AT + 1024),
            failed: None,
        }
    }

    pub fn push(&mut self, line: &ResultLine<'_>) {
        if !self.sink.enabled() || self.failed.is_some() {
            return;
        }
        line.write_json(&mut self.buf);
        self.buf.push(b'\n');
        if self.buf.len() >= FLUSH_AT {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if let Err(e) = self.sink.write(&self.buf) {
            self.failed.get_or_insert(e);
        }
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        assert_eq!(
            serde_json::to_string(&line).unwrap(),
            r#"{"index":3,"url":"http://h/\"q\"","status":200,"body_bytes":10,"elapsed_ms":1.5,"attempts":1,"error":null}"#
        );
    }
}
