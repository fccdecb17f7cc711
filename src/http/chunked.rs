//! Chunked transfer coding (RFC 9112 §7.1) as a byte-in, state-out machine. It hands back the ranges of
//! chunk data so the caller can count or save them in place; it never copies a body.

use std::ops::Range;

use crate::error::{ErrorKind, FetchError};

/// Longest chunk-size line (size, extensions, CRLF) we wait for before calling the peer broken.
const MAX_SIZE_LINE: usize = 4096;
/// Longest trailer section we wait for.
const MAX_TRAILERS: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting `hex-size [;ext] CRLF`; `scanned` bytes of it were already searched for its end.
    /// The line is parsed once it has ended: httparse starts over on every call, so a peer that
    /// trickles a long line would otherwise cost quadratic time.
    Size {
        scanned: usize,
    },
    /// Inside chunk data, with this many bytes still to come.
    Data(u64),
    /// Chunk data ended; expecting its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    /// After the last chunk; `scanned` bytes were already searched for the section's end, so a peer
    /// that trickles its trailers costs linear time, not quadratic.
    Trailers {
        scanned: usize,
    },
    Done,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkStep {
    /// Everything given was consumed or is an incomplete line: read more.
    NeedMore,
    /// Body bytes at this range of the input.
    Data(Range<usize>),
    /// The terminating empty line was consumed; the body is complete.
    Done,
}

#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size { scanned: 0 },
        }
    }
}

impl ChunkedDecoder {
    /// Decodes from the start of `buf`. Returns how many bytes were consumed (always including a returned
    /// data range) and what was found. Call again with the rest of the input after `Data`.
    pub fn decode(&mut self, buf: &[u8]) -> Result<(usize, ChunkStep), FetchError> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.state {
                State::Size { scanned } => {
                    if rest.is_empty() {
                        return Ok((pos, ChunkStep::NeedMore));
                    }
                    // httparse reads an empty line as size 0; a size needs at least one digit.
                    if !rest[0].is_ascii_hexdigit() {
                        return Err(bad_chunk(rest));
                    }
                    let from = scanned.min(rest.len());
                    if !rest[from..].contains(&b'\n') {
                        if rest.len() > MAX_SIZE_LINE {
                            return Err(size_line_too_long());
                        }
                        self.state = State::Size {
                            scanned: rest.len(),
                        };
                        return Ok((pos, ChunkStep::NeedMore));
                    }
                    match httparse::parse_chunk_size(rest) {
                        // The limits hold however the line arrives, whole or a byte at a time.
                        Ok(httparse::Status::Complete((used, _))) if used > MAX_SIZE_LINE => {
                            return Err(size_line_too_long())
                        }
                        Ok(httparse::Status::Complete((used, 0))) => {
                            pos += used;
                            self.state = State::Trailers { scanned: 0 };
                        }
                        Ok(httparse::Status::Complete((used, size))) => {
                            pos += used;
                            self.state = State::Data(size);
                        }
                        Ok(httparse::Status::Partial) if rest.len() > MAX_SIZE_LINE => {
                            return Err(size_line_too_long())
                        }
                        Ok(httparse::Status::Partial) => return Ok((pos, ChunkStep::NeedMore)),
                        Err(_) => return Err(bad_chunk(rest)),
                    }
                }
                State::Data(remaining) => {
                    if rest.is_empty() {
                        return Ok((pos, ChunkStep::NeedMore));
                    }
                    let take = remaining.min(rest.len() as u64) as usize;
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok((pos + take, ChunkStep::Data(pos..pos + take)));
                }
                State::DataEnd => match rest {
                    [] | [b'\r'] => return Ok((pos, ChunkStep::NeedMore)),
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = State::Size { scanned: 0 };
                    }
                    [b'\n', ..] => {
                        pos += 1;
                        self.state = State::Size { scanned: 0 };
                    }
                    _ => {
                        return Err(FetchError::new(
                            ErrorKind::Protocol,
                            format!(
                                "chunk data not followed by CRLF (found \"{}\"); the chunk size does not match the data sent",
                                super::snippet(rest, 16)
                            ),
                        ))
                    }
                },
                State::Trailers { scanned } => {
                    let end = match rest {
                        [] | [b'\r'] => None,
                        [b'\r', b'\n', ..] => Some(2),
                        [b'\n', ..] => Some(1),
                        _ => {
                            // The end is a newline followed by an empty line: its first byte may
                            // be among the last ones searched before.
                            let from = scanned.saturating_sub(3).min(rest.len());
                            end_of_block(&rest[from..]).map(|e| e + from)
                        }
                    };
                    match end {
                        Some(n) if n > MAX_TRAILERS => return Err(trailers_too_large()),
                        Some(n) => {
                            self.state = State::Done;
                            return Ok((pos + n, ChunkStep::Done));
                        }
                        None if rest.len() > MAX_TRAILERS => return Err(trailers_too_large()),
                        None => {
                            self.state = State::Trailers {
                                scanned: rest.len(),
                            };
                            return Ok((pos, ChunkStep::NeedMore));
                        }
                    }
                }
                State::Done => return Ok((pos, ChunkStep::Done)),
            }
        }
    }
}

/// Finds the end of a header-like block (the byte after its empty line), accepting CRLF or bare LF.
pub(crate) fn end_of_block(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = buf[from..].iter().position(|&b| b == b'\n') {
        let nl = from + i;
        match buf.get(nl + 1..) {
            Some([b'\n', ..]) => return Some(nl + 2),
            Some([b'\r', b'\n', ..]) => return Some(nl + 3),
            _ => from = nl + 1,
        }
    }
    None
}

fn bad_chunk(rest: &[u8]) -> FetchError {
    let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    FetchError::new(
        ErrorKind::Protocol,
        format!(
            "invalid chunk size line \"{}\"; the server's chunked encoding is broken",
            super::snippet(&rest[..line_end], 40)
        ),
    )
}

fn size_line_too_long() -> FetchError {
    FetchError::new(
        ErrorKind::Protocol,
        "chunk-size line longer than 4 KiB; the server's chunked encoding is broken",
    )
}

fn trailers_too_large() -> FetchError {
    FetchError::new(
        ErrorKind::Protocol,
        "chunked trailer section larger than 64 KiB",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split at `split` (two deliveries, like two reads) and returns the body and whether
    /// the decoder finished, and how many bytes it left unconsumed.
    fn decode_split(input: &[u8], split: usize) -> Result<(Vec<u8>, bool, usize), FetchError> {
        let mut dec = ChunkedDecoder::default();
        let mut body = Vec::new();
        let mut buffered: Vec<u8> = Vec::new();
        let mut consumed = 0;
        for part in [&input[..split], &input[split..]] {
            buffered.extend_from_slice(part);
            loop {
                let (used, step) = dec.decode(&buffered)?;
                if let ChunkStep::Data(r) = &step {
                    body.extend_from_slice(&buffered[r.clone()]);
                }
                buffered.drain(..used);
                consumed += used;
                match step {
                    ChunkStep::Done => return Ok((body, true, input.len() - consumed)),
                    ChunkStep::NeedMore => break,
                    ChunkStep::Data(_) => {}
                }
            }
        }
        Ok((body, false, input.len() - consumed))
    }

    fn every_split(input: &[u8], body: &[u8], leftover: usize) {
        for split in 0..=input.len() {
            let (got, done, left) = decode_split(input, split).unwrap();
            assert!(done, "not done at split {split}");
            assert_eq!(got, body, "split {split}");
            assert_eq!(left, leftover, "split {split}");
        }
    }

    #[test]
    fn simple_chunks_at_every_split() {
        every_split(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world", 0);
    }

    #[test]
    fn extensions_trailers_and_following_bytes() {
        let input = b"5;name=val;x\r\nhello\r\nA ; ext\r\n0123456789\r\n0;last\r\nX-Trailer: 1\r\nY: 2\r\n\r\nHTTP/1.1";
        every_split(input, b"hello0123456789", 8);
    }

    #[test]
    fn uppercase_hex_and_bare_lf() {
        // Size lines need CRLF (httparse); the CRLF after data and the final empty line may be bare LF.
        every_split(
            b"1A\r\n abcdefghijklmnopqrstuvwxy\n0\r\n\n",
            b" abcdefghijklmnopqrstuvwxy",
            0,
        );
    }

    #[test]
    fn rejects_bad_sizes() {
        for bad in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"\r\nhello",
            b"-5\r\nhello",
            b"11111111111111111\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
        ] {
            let err = decode_split(bad, bad.len()).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Protocol, "{bad:?}");
        }
    }

    #[test]
    fn endless_size_line_is_an_error_not_a_wait() {
        let mut line = b"5;".to_vec();
        line.extend(std::iter::repeat_n(b'a', 5000));
        let err = decode_split(&line, line.len()).unwrap_err();
        assert!(err.message.contains("4 KiB"), "{}", err.message);
    }

    #[test]
    fn incomplete_stays_incomplete() {
        let (body, done, _) = decode_split(b"5\r\nhel", 3).unwrap();
        assert_eq!(body, b"hel");
        assert!(!done);
    }

    #[test]
    fn block_end_finder() {
        assert_eq!(end_of_block(b"a: b\r\n\r\nrest"), Some(8));
        assert_eq!(end_of_block(b"a: b\n\nrest"), Some(6));
        assert_eq!(end_of_block(b"a: b\r\n"), None);
    }
}
