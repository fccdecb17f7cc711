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
        // Serializing plain numbers and strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, line);
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
