//! `fetch --resume`: what an earlier run's result file already holds. Its lines that got a response
//! are kept; a torn last line, lines that ended in an error and lines that are not ours are dropped,
//! so that the run fetches exactly the indexes left and the file ends with one line per index. The
//! kept indexes are a bitset (a bit per line of the list: 1.25 MB for ten million), not the lines.

use std::io::{self, BufRead, Read, Seek, Write};

use serde::de::IgnoredAny;
use serde::Deserialize;

/// Indexes above this are not from a list ringfetch could have read; such a line is dropped rather
/// than let it size the bitset.
const MAX_INDEX: u64 = 1 << 32;

/// The indexes of the list that already have their result.
#[derive(Debug, Default)]
pub struct Done {
    bits: Vec<u64>,
}

impl Done {
    /// Indexes kept.
    pub fn count(&self) -> u64 {
        self.bits.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    pub fn contains(&self, index: u64) -> bool {
        let word = (index / 64) as usize;
        self.bits
            .get(word)
            .is_some_and(|w| w & (1 << (index % 64)) != 0)
    }

    /// Marks `index`; false when it was marked already.
    fn insert(&mut self, index: u64) -> bool {
        let word = (index / 64) as usize;
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let bit = 1 << (index % 64);
        let fresh = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        fresh
    }
}

/// What `keep` found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Kept {
    /// Lines kept: their URLs are not fetched again.
    pub kept: u64,
    /// Lines that ended in an error: their URLs are fetched again.
    pub retried: u64,
    /// A last line without its newline (the run was killed while writing it).
    pub torn: bool,
    /// Lines that are not result lines, or repeat an index already kept.
    pub foreign: u64,
}

/// The fields of a result line that decide whether it is kept.
#[derive(Deserialize)]
struct Line {
    index: u64,
    status: Option<IgnoredAny>,
    error: Option<IgnoredAny>,
}

/// Copies the lines of `from` worth keeping to `to`, and returns their indexes with the counts.
pub fn keep(from: impl BufRead, mut to: impl Write) -> io::Result<(Done, Kept)> {
    let mut done = Done::default();
    let mut kept = Kept::default();
    for line in from.split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        // serde does not check the strings it skips: a line that is not UTF-8 (not one ringfetch
        // wrote) would otherwise be kept, and the file would hold a line that is not JSON.
        let parsed = std::str::from_utf8(&line)
            .ok()
            .and_then(|text| serde_json::from_str::<Line>(text).ok());
        match parsed {
            Some(l) if l.index < MAX_INDEX && l.status.is_some() && l.error.is_none() => {
                if done.insert(l.index) {
                    to.write_all(&line)?;
                    to.write_all(b"\n")?;
                    kept.kept += 1;
                } else {
                    kept.foreign += 1;
                }
            }
            Some(l) if l.index < MAX_INDEX => kept.retried += 1,
            _ => kept.foreign += 1,
        }
    }
    to.flush()?;
    Ok((done, kept))
}

/// Rewrites the result file at `path` to the lines worth keeping (through a new file renamed into
/// place, so an interruption here leaves the old file whole) and returns the indexes kept.
pub fn resume_file(path: &std::path::Path) -> io::Result<(Done, Kept)> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e),
    };
    // A last line without its newline is torn: only the bytes up to the last newline are read as
    // results. Found from the end, so the file is streamed, never held (a million lines is 150 MB).
    let len = file.metadata()?.len();
    let whole = whole_lines(&mut file, len)?;
    file.seek(io::SeekFrom::Start(0))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.resume"));
    let mut out = io::BufWriter::new(
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?,
    );
    let from = io::BufReader::with_capacity(1 << 20, file.take(whole));
    let (done, mut kept) = keep(from, &mut out)?;
    kept.torn = whole < len;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok((done, kept))
}

/// The length of `file`'s first `len` bytes up to and including its last newline.
fn whole_lines(file: &mut std::fs::File, len: u64) -> io::Result<u64> {
    let mut block = vec![0u8; 64 * 1024];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let part = &mut block[..(end - start) as usize];
        file.seek(io::SeekFrom::Start(start))?;
        file.read_exact(part)?;
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"index":0,"url":"http://h/0","status":200,"body_bytes":5,"elapsed_ms":1.0,"attempts":1,"error":null}"#;
    const ERR: &str = r#"{"index":1,"url":"http://h/1","status":null,"body_bytes":0,"elapsed_ms":0.0,"attempts":3,"error":"connect: refused"}"#;
    const CUT: &str = r#"{"index":2,"url":"http://h/2","status":200,"body_bytes":3,"elapsed_ms":1.0,"attempts":1,"error":"io: connection closed with 7 bytes of the body still to come"}"#;
    const STATUS_404: &str = r#"{"index":3,"url":"http://h/3","status":404,"body_bytes":0,"elapsed_ms":1.0,"attempts":1,"error":null}"#;

    #[test]
    fn keeps_responses_and_drops_errors_repeats_and_junk() {
        let text = format!("{OK}\n{ERR}\n{CUT}\n{STATUS_404}\nnot json\n{OK}\n\n");
        let mut out = Vec::new();
        let (done, kept) = keep(text.as_bytes(), &mut out).unwrap();
        assert_eq!(
            kept,
            Kept {
                kept: 2,
                retried: 2,
                torn: false,
                foreign: 2
            }
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{OK}\n{STATUS_404}\n")
        );
        assert!(done.contains(0) && done.contains(3));
        assert!(
            !done.contains(1)
                && !done.contains(2)
                && !done.contains(64)
                && !done.contains(u64::MAX)
        );
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_the_file_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        // Cut inside its last field, the torn line would still parse as a whole result.
        let torn = &STATUS_404[..STATUS_404.len() - 1];
        std::fs::write(&path, format!("{OK}\n{ERR}\n{torn}")).unwrap();
        let (done, kept) = resume_file(&path).unwrap();
        assert!(kept.torn);
        assert_eq!((kept.kept, kept.retried, kept.foreign), (1, 1, 0));
        assert!(done.contains(0) && !done.contains(3));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{OK}\n"));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "the temporary file is renamed into place");
        // A missing file resumes nothing.
        let (done, kept) = resume_file(&dir.path().join("absent")).unwrap();
        assert_eq!((kept, done.contains(0)), (Kept::default(), false));
    }

    #[test]
    fn indexes_past_any_list_are_not_ours() {
        let line = OK.replace("\"index\":0", &format!("\"index\":{}", u64::MAX));
        let (done, kept) = keep(line.as_bytes(), Vec::new()).unwrap();
        assert_eq!((kept.kept, kept.foreign), (0, 1));
        assert!(done.bits.is_empty());
    }
}
