//! The URL list: one URL per line, blank lines and `#` comments skipped, each remaining line numbered
//! (its `index`), `--shard K/N` applied. Pure: it reads from any `BufRead` and yields lines one at a
//! time, so a 10-million-line list never sits in memory.

use std::io::{self, BufRead};

/// One URL to fetch, as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub index: u64,
    pub url: String,
}

pub struct Lines<R> {
    reader: R,
    shard: Option<(u64, u64)>,
    next_index: u64,
    raw: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    pub fn new(reader: R, shard: Option<(u64, u64)>) -> Lines<R> {
        Lines {
            reader,
            shard,
            next_index: 0,
            raw: Vec::with_capacity(256),
        }
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = io::Result<Line>;

    fn next(&mut self) -> Option<io::Result<Line>> {
        loop {
            self.raw.clear();
            match self.reader.read_until(b'\n', &mut self.raw) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
            let text = self.raw.trim_ascii();
            if text.is_empty() || text[0] == b'#' {
                continue;
            }
            let index = self.next_index;
            self.next_index += 1;
            if let Some((k, n)) = self.shard {
                if index % n != k {
                    continue;
                }
            }
            // A line that is not UTF-8 still gets its result (invalid-url), so keep it, escaped.
            let url = String::from_utf8_lossy(text).into_owned();
            return Some(Ok(Line { index, url }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str, shard: Option<(u64, u64)>) -> Vec<(u64, String)> {
        Lines::new(text.as_bytes(), shard)
            .map(|l| l.unwrap())
            .map(|l| (l.index, l.url))
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
    fn invalid_utf8_is_kept() {
        let got: Vec<Line> = Lines::new(&b"http://h/\xff\n"[..], None)
            .map(|l| l.unwrap())
            .collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].url.starts_with("http://h/"));
    }
}
