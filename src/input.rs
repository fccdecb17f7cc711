//! The URL list: one URL per line, blank lines and `#` comments skipped, each remaining line numbered
//! (its `index`), `--shard K/N` applied. Pure: it reads from any `BufRead` and yields lines one at a
//! time, so a 10-million-line list never sits in memory, and neither does one 100 MB line.
//!
//! Lines end at LF, CRLF or a lone CR (old Mac files); a UTF-8 byte order mark before the first line
//! is dropped. A line that cannot be a URL (longer than `MAX_LINE`, or not UTF-8) still counts and
//! comes out as a `BadLine`, so it gets its `invalid-url` result like any other unusable URL.

use std::io::{self, BufRead};

use crate::error::{ErrorKind, FetchError};

/// Longest line read as a URL. Servers refuse request targets far shorter (nginx's default is 8 KiB),
/// so a longer line is a broken list (a missing newline, a binary file), not a URL. The cap also
/// bounds what one line can cost in memory: the rest of the line is read and dropped.
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

/// What the list yields, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Url(Line),
    Bad(BadLine),
    /// Everything the reader had buffered is consumed: the next entry needs a read, which may wait
    /// for a slow producer. A caller holding lines back hands them on now.
    Drained,
}

pub struct Lines<R> {
    reader: R,
    shard: Option<(u64, u64)>,
    next_index: u64,
    /// The current line, up to `MAX_LINE` bytes of it; it may span several reads.
    raw: Vec<u8>,
    /// Bytes of the current line dropped past `MAX_LINE`, and whether any of them was not whitespace.
    dropped: u64,
    dropped_text: bool,
    /// `raw` holds a finished line, to be cleared before the next one is read.
    finished: bool,
    /// No line finished yet: a BOM may still be at the start of `raw`.
    first: bool,
    /// The reader's buffer is empty, so the next `fill_buf` reads from the source.
    drained: bool,
    /// Bytes were consumed since the last `Entry::Drained`.
    consumed: bool,
}

/// How far `read_line` got.
enum Progress {
    Line,
    Drained,
    End,
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
            finished: false,
            first: true,
            drained: true,
            consumed: false,
        }
    }

    /// Reads up to the end of the next physical line into `raw` (at most `MAX_LINE` bytes of it).
    /// Stops early, keeping the part read, when the next read could wait and bytes were consumed
    /// since the last such stop: a half-written line must not hold back the lines before it.
    fn read_line(&mut self) -> io::Result<Progress> {
        if std::mem::take(&mut self.finished) {
            self.raw.clear();
            self.dropped = 0;
            self.dropped_text = false;
        }
        loop {
            if self.drained && std::mem::take(&mut self.consumed) {
                return Ok(Progress::Drained);
            }
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                // A last line without its newline is still a line.
                if self.raw.is_empty() && self.dropped == 0 {
                    return Ok(Progress::End);
                }
                self.finished = true;
                return Ok(Progress::Line);
            }
            let end = buf.iter().position(|&b| b == b'\n' || b == b'\r');
            let piece = &buf[..end.unwrap_or(buf.len())];
            let room = MAX_LINE.saturating_sub(self.raw.len());
            let (kept, rest) = piece.split_at(piece.len().min(room));
            self.raw.extend_from_slice(kept);
            if !rest.is_empty() {
                self.dropped += rest.len() as u64;
                self.dropped_text |= !rest.iter().all(u8::is_ascii_whitespace);
            }
            // A CR ends the line; so does a CRLF, whose LF is taken along when it is already here
            // (one arriving later ends an empty line, which is skipped).
            let used = match end {
                Some(e) if buf[e] == b'\r' && buf.get(e + 1) == Some(&b'\n') => e + 2,
                Some(e) => e + 1,
                None => buf.len(),
            };
            self.drained = used == buf.len();
            self.consumed = true;
            self.reader.consume(used);
            if end.is_some() {
                self.finished = true;
                return Ok(Progress::Line);
            }
        }
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.read_line() {
                Ok(Progress::End) => return None,
                Ok(Progress::Drained) => return Some(Ok(Entry::Drained)),
                Ok(Progress::Line) => {}
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
                Ok(Entry::Bad(BadLine {
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
                Ok(url) => Ok(Entry::Url(Line {
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
        numbered(Lines::new(bytes, shard))
    }

    fn numbered(list: Lines<impl BufRead>) -> Vec<(u64, String)> {
        list.filter_map(|l| match l.unwrap() {
            Entry::Url(l) => Some((l.index, l.url)),
            Entry::Bad(b) => Some((b.index, format!("BAD {}", b.error))),
            Entry::Drained => None,
        })
        .collect()
    }

    fn lines(text: &str, shard: Option<(u64, u64)>) -> Vec<(u64, String)> {
        lines_of(text.as_bytes(), shard)
    }

    /// A source that hands out one of `reads` per read, as a pipe from a slow producer does.
    struct Pipe(Vec<Vec<u8>>);

    impl io::Read for Pipe {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let Some(next) = self.0.first_mut() else {
                return Ok(0);
            };
            let n = next.len().min(out.len());
            out[..n].copy_from_slice(&next[..n]);
            next.drain(..n);
            if next.is_empty() {
                self.0.remove(0);
            }
            Ok(n)
        }
    }

    /// The same list through a reader that hands out `step` bytes per read.
    fn lines_in_pieces(bytes: &[u8], step: usize) -> Vec<(u64, String)> {
        let reads = bytes.chunks(step).map(<[u8]>::to_vec).collect();
        numbered(Lines::new(
            io::BufReader::with_capacity(7, Pipe(reads)),
            None,
        ))
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
        let Entry::Bad(bad) = got[0].clone() else {
            panic!("{got:?}")
        };
        assert_eq!(bad.index, 0);
        assert_eq!(bad.error.kind, ErrorKind::InvalidUrl);
        assert!(bad.error.message.contains("not valid UTF-8"), "{bad:?}");
        assert!(bad.error.message.contains("0xff at offset 9"), "{bad:?}");
        assert_eq!(bad.shown, "http://h/\u{fffd}");
        assert!(matches!(&got[1], Entry::Url(l) if l.index == 1), "{got:?}");
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
        let Some(Ok(Entry::Bad(bad))) = list.next() else {
            panic!("not a bad line")
        };
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
    fn drained_comes_before_every_read_that_could_wait() {
        let reads = [
            &b"http://a/\r\n# a comment\n\n"[..],
            b"http://b/\nhttp://c",
            b"/\r",
            b"\n",
        ];
        let pipe = Pipe(reads.iter().map(|r| r.to_vec()).collect());
        let got: Vec<String> = Lines::new(io::BufReader::with_capacity(64, pipe), None)
            .map(|e| match e.unwrap() {
                Entry::Url(l) => l.url,
                Entry::Bad(b) => format!("BAD {}", b.error),
                Entry::Drained => "drained".into(),
            })
            .collect();
        // The comment and blank line after a/ and the half line c/ must not hold back what
        // precedes them; lines already buffered go out together.
        assert_eq!(
            got,
            [
                "http://a/",
                "drained",
                "http://b/",
                "drained",
                "http://c/",
                "drained",
                "drained"
            ]
        );
        // A file read in one piece is drained once, at its end.
        let got: Vec<Entry> = Lines::new(&b"http://a/\nhttp://b/\n"[..], None)
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], Entry::Drained);
    }
}
