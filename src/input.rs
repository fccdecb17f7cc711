//! The URL list: one URL per line, blank lines and `#` comments skipped, each remaining line numbered
//! (its `index`), `--shard K/N` applied. Pure: it reads from any `BufRead` and yields lines one at a
//! time, so a 10-million-line list never sits in memory, and neither does one 100 MB line.
//!
//! Lines end at LF, CRLF or a lone CR (old Mac files); a UTF-8 byte order mark before the first line
//! is dropped. A line that cannot be a URL (longer than `MAX_LINE`, or not UTF-8) still counts and
//! comes out as a `BadLine`, so it gets its `invalid-url` result like any other unusable URL.

use std::io::{self, BufRead};

use crate::error::{ErrorKind, FetchError};

/// Longest line read as a URL. Servers refuse request targets far shorter (nginx 8 KiB, most CDNs
/// 16–32 KiB), so a longer line is a broken list (a missing newline, a binary file), not a URL. The
/// cap also bounds what one line can cost in memory: the rest of the line is read and dropped.
pub const MAX_LINE: usize = 64 * 1024;

/// How much of an unusable line its result shows.
const SHOWN: usize = 100;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One URL to fetch, as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub index: u64,
    pub url: String,
}

/// A numbered line that cannot be a URL: its result is this error, with `shown` as its `url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    pub index: u64,
    pub shown: String,
    pub error: FetchError,
}

pub struct Lines<R> {
    reader: R,
    shard: Option<(u64, u64)>,
    next_index: u64,
    /// The current line, up to `MAX_LINE` bytes of it.
    raw: Vec<u8>,
    /// Bytes of the current line dropped past `MAX_LINE`, and whether any of them was not whitespace.
    dropped: u64,
    dropped_text: bool,
    /// No line finished yet: a BOM may still be at the start of `raw`.
    first: bool,
    /// Everything the reader had buffered was consumed, so the next line needs a read.
    drained: bool,
}

impl<R: BufRead> Lines<R> {
    pub fn new(reader: R, shard: Option<(u64, u64)>) -> Lines<R> {
        Lines {
            reader,
            shard,
            next_index: 0,
            raw: Vec::with_capacity(256),
            dropped: 0,
            dropped_text: false,
            first: true,
            drained: true,
        }
    }

    /// True when the next line cannot come from bytes already buffered: reading it may block (a pipe
    /// whose producer is slow), so this is when a caller holding lines back should hand them on.
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// Reads up to the end of the next physical line into `raw` (at most `MAX_LINE` bytes of it).
    /// False at the end of the input with nothing read.
    fn read_line(&mut self) -> io::Result<bool> {
        self.raw.clear();
        self.dropped = 0;
        self.dropped_text = false;
        let mut any = false;
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(any);
            }
            any = true;
            let end = buf.iter().position(|&b| b == b'\n' || b == b'\r');
            let piece = &buf[..end.unwrap_or(buf.len())];
            let room = MAX_LINE.saturating_sub(self.raw.len());
            let (kept, rest) = piece.split_at(piece.len().min(room));
            self.raw.extend_from_slice(kept);
            if !rest.is_empty() {
                self.dropped += rest.len() as u64;
                self.dropped_text |= !rest.iter().all(u8::is_ascii_whitespace);
            }
            let used = end.map_or(buf.len(), |e| e + 1);
            self.drained = used == buf.len();
            self.reader.consume(used);
            // A CR ends the line; the LF of a CRLF then ends an empty line, which is skipped.
            if end.is_some() {
                return Ok(true);
            }
        }
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = io::Result<Result<Line, BadLine>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.read_line() {
                Ok(false) => return None,
                Ok(true) => {}
                Err(e) => return Some(Err(e)),
            }
            let mut raw = &self.raw[..];
            if std::mem::take(&mut self.first) {
                raw = raw.strip_prefix(BOM).unwrap_or(raw);
            }
            let text = raw.trim_ascii();
            let blank = text.is_empty() && !self.dropped_text;
            if blank || text.first() == Some(&b'#') {
                continue;
            }
            let index = self.next_index;
            self.next_index += 1;
            if let Some((k, n)) = self.shard {
                if index % n != k {
                    continue;
                }
            }
            let bad = |shown: String, message: String| {
                Ok(Err(BadLine {
                    index,
                    shown,
                    error: FetchError::new(ErrorKind::InvalidUrl, message),
                }))
            };
            if self.dropped > 0 {
                let length = self.raw.len() as u64 + self.dropped;
                return Some(bad(
                    shorten(text),
                    format!(
                        "the line is {length} bytes long, over the {} KiB limit for a URL; is a \
                         newline missing, or is the list not a text file?",
                        MAX_LINE / 1024
                    ),
                ));
            }
            return Some(match std::str::from_utf8(text) {
                Ok(url) => Ok(Ok(Line {
                    index,
                    url: url.to_string(),
                })),
                // Replacing the bad bytes (from_utf8_lossy) would fetch a URL nobody wrote.
                Err(e) => bad(
                    String::from_utf8_lossy(text).into_owned(),
                    format!(
                        "the line is not valid UTF-8 (byte 0x{:02x} at offset {}); save the list as \
                         UTF-8, with non-ASCII characters percent-encoded",
                        text[e.valid_up_to()],
                        e.valid_up_to()
                    ),
                ),
            });
        }
    }
}

/// The first `SHOWN` bytes of a line (whole characters only), marked as cut.
fn shorten(text: &[u8]) -> String {
    let cut = &text[..text.len().min(SHOWN)];
    let valid = match std::str::from_utf8(cut) {
        Ok(s) => s,
        // A character cut in half at the end is dropped; a bad byte earlier shows as U+FFFD.
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&cut[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return format!("{}…", String::from_utf8_lossy(cut)),
    };
    format!("{valid}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (index, url) for good lines; (index, "BAD " + error) for bad ones.
    fn lines_of(bytes: &[u8], shard: Option<(u64, u64)>) -> Vec<(u64, String)> {
        Lines::new(bytes, shard)
            .map(|l| match l.unwrap() {
                Ok(l) => (l.index, l.url),
                Err(b) => (b.index, format!("BAD {}", b.error)),
            })
            .collect()
    }

    fn lines(text: &str, shard: Option<(u64, u64)>) -> Vec<(u64, String)> {
        lines_of(text.as_bytes(), shard)
    }

    /// The same list through a reader that hands out `step` bytes per read, as a slow pipe does.
    fn lines_in_pieces(bytes: &[u8], step: usize) -> Vec<(u64, String)> {
        struct Trickle<'a>(&'a [u8], usize);
        impl io::Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(out.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let reader = io::BufReader::with_capacity(7, Trickle(bytes, step));
        Lines::new(reader, None)
            .map(|l| match l.unwrap() {
                Ok(l) => (l.index, l.url),
                Err(b) => (b.index, format!("BAD {}", b.error)),
            })
            .collect()
    }

    #[test]
    fn skips_blanks_and_comments() {
        let text = "# header\nhttp://a/\n\n   \nhttp://b/ \r\n#http://skipped/\n  http://c/";
        assert_eq!(
            lines(text, None),
            [
                (0, "http://a/".into()),
                (1, "http://b/".into()),
                (2, "http://c/".into())
            ]
        );
    }

    #[test]
    fn shards_keep_global_indexes() {
        let text: String = (0..10).map(|i| format!("http://h/{i}\n")).collect();
        let got = lines(&text, Some((1, 3)));
        assert_eq!(got.iter().map(|l| l.0).collect::<Vec<_>>(), [1, 4, 7]);
        assert_eq!(got[1].1, "http://h/4");
        let all: usize = (0..3).map(|k| lines(&text, Some((k, 3))).len()).sum();
        assert_eq!(all, 10);
    }

    #[test]
    fn lf_crlf_and_lone_cr_all_end_lines() {
        let want: Vec<(u64, String)> = (0..3).map(|i| (i, format!("http://h/{i}"))).collect();
        for ending in ["\n", "\r\n", "\r"] {
            let text: String = (0..3).map(|i| format!("http://h/{i}{ending}")).collect();
            assert_eq!(lines(&text, None), want, "{ending:?}");
            for step in 1..4 {
                assert_eq!(lines_in_pieces(text.as_bytes(), step), want, "{ending:?}");
            }
        }
        // Mixed endings in one file, and a CRLF split across reads.
        assert_eq!(lines("http://h/0\rhttp://h/1\r\nhttp://h/2\n", None), want);
    }

    #[test]
    fn a_bom_before_the_first_line_is_dropped() {
        let text = b"\xEF\xBB\xBFhttp://a/\n\xEF\xBB\xBFhttp://b/\n";
        let got = lines_of(text, None);
        assert_eq!(got[0], (0, "http://a/".into()));
        // Only at the very start: later it is part of the line (and no URL starts with it).
        assert_eq!(got[1], (1, "\u{feff}http://b/".into()));
        for step in 1..4 {
            assert_eq!(lines_in_pieces(text, step)[0], (0, "http://a/".into()));
        }
        // A BOM alone on the first line leaves a blank line.
        assert_eq!(
            lines_of(b"\xEF\xBB\xBF\r\nhttp://a/", None),
            [(0, "http://a/".into())]
        );
    }

    #[test]
    fn invalid_utf8_is_an_invalid_url_not_a_different_url() {
        let got: Vec<_> = Lines::new(&b"http://h/\xff\nhttp://ok/\n"[..], None)
            .map(|l| l.unwrap())
            .collect();
        let bad = got[0].clone().unwrap_err();
        assert_eq!(bad.index, 0);
        assert_eq!(bad.error.kind, ErrorKind::InvalidUrl);
        assert!(bad.error.message.contains("not valid UTF-8"), "{bad:?}");
        assert!(bad.error.message.contains("0xff at offset 9"), "{bad:?}");
        assert_eq!(bad.shown, "http://h/\u{fffd}");
        assert_eq!(got[1].clone().unwrap().index, 1);
    }

    #[test]
    fn an_over_long_line_is_reported_and_skipped_in_bounded_memory() {
        let long = format!("http://h/{}", "é".repeat(MAX_LINE));
        let text = format!("http://a/\n{long}\nhttp://b/\n");
        for got in [lines(&text, None), lines_in_pieces(text.as_bytes(), 1000)] {
            assert_eq!(got.len(), 3);
            assert_eq!(got[0], (0, "http://a/".into()));
            assert_eq!(got[1].0, 1);
            assert!(
                got[1].1.starts_with("BAD invalid-url: the line is "),
                "{}",
                got[1].1
            );
            assert!(got[1].1.contains(&format!("{} bytes", long.len())));
            assert_eq!(got[2], (2, "http://b/".into()));
        }
        let mut list = Lines::new(text.as_bytes(), None);
        list.next();
        let bad = list.next().unwrap().unwrap().unwrap_err();
        // A short prefix, cut on a character boundary.
        assert!(bad.shown.starts_with("http://h/é"), "{}", bad.shown);
        assert!(bad.shown.ends_with("é…"), "{}", bad.shown);
        assert!(bad.shown.len() <= SHOWN + "…".len());
        // Only the first MAX_LINE bytes were kept.
        assert!(
            list.raw.capacity() <= 2 * MAX_LINE,
            "{}",
            list.raw.capacity()
        );
        // Exactly MAX_LINE is still a line.
        let edge = format!("http://h/{}", "a".repeat(MAX_LINE - 9));
        assert_eq!(lines(&edge, None), [(0, edge.clone())]);
    }

    #[test]
    fn over_long_comments_and_blank_lines_stay_skipped() {
        let text = format!(
            "#{}\n{}\nhttp://a/\n",
            "c".repeat(2 * MAX_LINE),
            " ".repeat(2 * MAX_LINE)
        );
        assert_eq!(lines(&text, None), [(0, "http://a/".into())]);
    }

    #[test]
    fn drained_says_when_the_next_line_needs_a_read() {
        let reader = io::BufReader::with_capacity(64, &b"http://a/\nhttp://b/\n"[..]);
        let mut list = Lines::new(reader, None);
        assert!(list.drained());
        list.next();
        assert!(!list.drained(), "the second line is already buffered");
        list.next();
        assert!(list.drained());
    }
}
