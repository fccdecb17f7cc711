//! Response framing (RFC 9112 §6): httparse reads the head in place; this file decides how long the body
//! is and hands back body ranges. One `ResponseDecoder` serves every response on a connection in turn.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::chunked::{end_of_block, ChunkStep, ChunkedDecoder};
use super::{fold_content_length, snippet, BadLength};
use crate::error::{ErrorKind, FetchError};

/// A response head larger than this is refused: no real server needs it and it bounds our buffers.
pub const MAX_HEAD: usize = 64 * 1024;
/// Header fields parsed on the stack; a head with more (up to MAX_HEAD) falls back to the heap.
const MAX_HEADERS: usize = 128;

/// What the head of a final (non-1xx) response says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// The connection may carry the next request after this response (§9.3).
    pub keep_alive: bool,
    pub body: BodyKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// HEAD, 1xx, 204, 304, or Content-Length: 0.
    Empty,
    Length(u64),
    Chunked,
    /// No length given: the body runs until the server closes (§6.3 rule 8).
    UntilClose,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read more bytes; nothing (further) can be decoded from what is buffered.
    NeedMore,
    /// The head of the final response; interim 1xx responses are skipped silently.
    Head(Head),
    /// Body bytes at this range of the given buffer.
    Body(Range<usize>),
    /// The response is complete; the decoder is ready for the next one.
    Done,
}

#[derive(Clone, Debug)]
enum State {
    /// Waiting for a head; `scanned` bytes were already searched for its end, so a trickling peer costs
    /// linear time, not quadratic.
    Head {
        scanned: usize,
    },
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    /// Body complete (or empty); `Done` is due.
    Finished,
}

impl State {
    /// The body state a head leads to.
    fn after(head: &Head) -> State {
        match head.body {
            BodyKind::Empty => State::Finished,
            BodyKind::Length(n) => State::Length(n),
            BodyKind::Chunked => State::Chunked(ChunkedDecoder::default()),
            BodyKind::UntilClose => State::UntilClose,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ResponseDecoder {
    state: State,
    /// The bytes of the last head parsed whole (interim responses included), with what they said.
    /// A server answering the same request again usually sends the same head byte for byte (nginx
    /// changes only its Date, once a second); comparing ~250 bytes costs a tenth of parsing them, and
    /// identical bytes cannot frame differently.
    last_head: Vec<u8>,
    last: Option<(Head, bool)>,
}

/// Heads longer than this are not kept for comparison.
const REMEMBER_HEAD: usize = 1024;

impl Default for ResponseDecoder {
    fn default() -> Self {
        ResponseDecoder {
            state: State::Head { scanned: 0 },
            last_head: Vec::new(),
            last: None,
        }
    }
}

impl ResponseDecoder {
    /// Decodes from the start of `buf`, the unconsumed bytes of the connection. `head_request` says whether
    /// the request this response answers was a HEAD (its response has no body, whatever it says).
    /// Returns the bytes consumed and the step; consumed bytes never need to be shown again.
    pub fn decode(&mut self, buf: &[u8], head_request: bool) -> Result<(usize, Step), FetchError> {
        match &mut self.state {
            State::Head { scanned } => {
                if *scanned == 0 {
                    if let Some((head, for_head_request)) = self.last {
                        let n = self.last_head.len();
                        if for_head_request == head_request
                            && buf.get(..n) == Some(&self.last_head[..])
                        {
                            self.state = State::after(&head);
                            return Ok((n, Step::Head(head)));
                        }
                    }
                }
                let fresh = *scanned == 0;
                let (n, step) = decode_head(buf, scanned, head_request)?;
                if let Step::Head(head) = &step {
                    self.state = State::after(head);
                    // Only heads parsed from one buffer in one go are remembered, so `n` bytes of
                    // `buf` are exactly that head.
                    if fresh && n <= REMEMBER_HEAD {
                        self.last_head.clear();
                        self.last_head.extend_from_slice(&buf[..n]);
                        self.last = Some((*head, head_request));
                    } else {
                        self.last = None;
                    }
                }
                Ok((n, step))
            }
            State::Length(remaining) => {
                if buf.is_empty() {
                    return Ok((0, Step::NeedMore));
                }
                let take = (*remaining).min(buf.len() as u64) as usize;
                *remaining -= take as u64;
                if *remaining == 0 {
                    self.state = State::Finished;
                }
                Ok((take, Step::Body(0..take)))
            }
            State::Chunked(chunked) => {
                let (used, step) = chunked.decode(buf)?;
                Ok(match step {
                    ChunkStep::NeedMore => (used, Step::NeedMore),
                    ChunkStep::Data(r) => (used, Step::Body(r)),
                    ChunkStep::Done => {
                        self.state = State::Head { scanned: 0 };
                        (used, Step::Done)
                    }
                })
            }
            State::UntilClose => {
                if buf.is_empty() {
                    Ok((0, Step::NeedMore))
                } else {
                    Ok((buf.len(), Step::Body(0..buf.len())))
                }
            }
            State::Finished => {
                self.state = State::Head { scanned: 0 };
                Ok((0, Step::Done))
            }
        }
    }

    /// The peer closed the connection. Returns true when that completes the current response (a
    /// close-delimited body); false when no response was under way. A response cut short is an error.
    pub fn close(&mut self, buffered: usize) -> Result<bool, FetchError> {
        match self.state {
            State::UntilClose => {
                self.state = State::Head { scanned: 0 };
                Ok(true)
            }
            State::Head { .. } if buffered == 0 => Ok(false),
            State::Head { .. } => Err(FetchError::new(
                ErrorKind::Io,
                "connection closed in the middle of a response head",
            )),
            State::Length(remaining) => Err(FetchError::new(
                ErrorKind::Io,
                format!("connection closed with {remaining} bytes of the body still to come"),
            )),
            State::Chunked(_) => Err(FetchError::new(
                ErrorKind::Io,
                "connection closed before the last chunk of a chunked body",
            )),
            State::Finished => Ok(false),
        }
    }
}

fn decode_head(
    buf: &[u8],
    scanned: &mut usize,
    head_request: bool,
) -> Result<(usize, Step), FetchError> {
    let mut consumed = 0;
    loop {
        let rest = &buf[consumed..];
        if rest.is_empty() {
            return Ok((consumed, Step::NeedMore));
        }
        // First try: parse straight away, as the whole head usually arrived in one read. After a
        // partial head, wait for its blank line before parsing again: httparse restarts from the first
        // byte on every call, so a trickling peer would otherwise cost quadratic time.
        let first_try = *scanned == 0;
        let end = if first_try {
            rest.len().min(MAX_HEAD)
        } else {
            let from = scanned.saturating_sub(3).min(rest.len());
            match end_of_block(&rest[from..]) {
                Some(e) if e + from > MAX_HEAD => return Err(head_too_large()),
                Some(e) => e + from,
                None if rest.len() > MAX_HEAD => return Err(head_too_large()),
                None => {
                    *scanned = rest.len();
                    return Ok((consumed, Step::NeedMore));
                }
            }
        };
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let parsed = match parse(&rest[..end], &mut headers, head_request)? {
            // Rare (cookie-heavy or debugging servers): a heap array with room for one field per
            // line parsed, which MAX_HEAD bounds, so the head limit is the only limit.
            Err(httparse::Error::TooManyHeaders) => {
                let lines = rest[..end].iter().filter(|&&b| b == b'\n').count() + 1;
                let mut heap = Vec::with_capacity(lines);
                heap.resize_with(lines, MaybeUninit::uninit);
                parse(&rest[..end], &mut heap, head_request)?
            }
            other => other,
        };
        match parsed {
            Ok(Parsed::Interim(len)) => {
                // RFC 9110 §15.2: interim responses precede the final one; skip them.
                *scanned = 0;
                consumed += len;
                continue;
            }
            Ok(Parsed::Final(len, head)) => {
                *scanned = 0;
                return Ok((consumed + len, Step::Head(head)));
            }
            Ok(Parsed::Partial) if first_try => {
                if rest.len() >= MAX_HEAD {
                    return Err(head_too_large());
                }
                *scanned = rest.len();
                return Ok((consumed, Step::NeedMore));
            }
            // The blank line found was leading empty lines that httparse skips; look past it.
            Ok(Parsed::Partial) => *scanned = end + 3,
            Err(err) => {
                let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
                return Err(FetchError::new(
                    ErrorKind::Protocol,
                    format!(
                        "malformed response ({}) in \"{}\"; the server does not speak HTTP/1.x",
                        describe(err),
                        snippet(&rest[..line_end], 60)
                    ),
                ));
            }
        }
    }
}

/// A head parsed by httparse, framed when it is the final one.
enum Parsed {
    Partial,
    /// A 1xx response of this many bytes.
    Interim(usize),
    Final(usize, Head),
}

/// Parses one head into `headers`. The outer error is a framing problem; the inner one is what
/// httparse refused, including running out of `headers`.
fn parse<'b>(
    bytes: &'b [u8],
    headers: &mut [MaybeUninit<httparse::Header<'b>>],
    head_request: bool,
) -> Result<Result<Parsed, httparse::Error>, FetchError> {
    let mut response = httparse::Response::new(&mut []);
    let status = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        bytes,
        headers,
    ) {
        Ok(status) => status,
        Err(err) => return Ok(Err(err)),
    };
    let httparse::Status::Complete(len) = status else {
        return Ok(Ok(Parsed::Partial));
    };
    let code = response.code.unwrap_or(0);
    let minor = response.version.unwrap_or(1);
    if code == 101 {
        return Err(FetchError::new(
            ErrorKind::Protocol,
            "unexpected 101 Switching Protocols: ringfetch never asks to upgrade",
        ));
    }
    if (100..200).contains(&code) {
        return Ok(Ok(Parsed::Interim(len)));
    }
    let head = frame(code, minor, response.headers, head_request)?;
    Ok(Ok(Parsed::Final(len, head)))
}

fn head_too_large() -> FetchError {
    FetchError::new(
        ErrorKind::Protocol,
        "response head larger than 64 KiB; the server sent too many or too long header fields",
    )
}

/// RFC 9112 §6.3, the body-length rules, in their order.
fn frame(
    status: u16,
    minor: u8,
    headers: &[httparse::Header<'_>],
    head_request: bool,
) -> Result<Head, FetchError> {
    let mut keep_alive = minor >= 1;
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked_last = false;
    for h in headers {
        let name = h.name.as_bytes();
        // Only three fields matter for framing; their lengths differ, so compare lengths first (most
        // fields of a typical response are skipped on that alone).
        match name.len() {
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                // Rule 5: a list of identical values is one value; anything else is unrecoverable.
                fold_content_length(h.value, &mut length).map_err(|bad| match bad {
                    BadLength::Invalid => FetchError::new(
                        ErrorKind::Protocol,
                        format!(
                            "invalid Content-Length \"{}\"; the response cannot be framed",
                            snippet(h.value, 40)
                        ),
                    ),
                    BadLength::Conflicting => FetchError::new(
                        ErrorKind::Protocol,
                        "conflicting Content-Length values; the response cannot be framed",
                    ),
                })?;
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                transfer_encoding = true;
                // The final coding decides; earlier header lines are overridden by later ones.
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                chunked_last = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && minor == 0 {
                        keep_alive = true;
                    }
                }
            }
            _ => {}
        }
    }
    // Rule 1: these responses never have a body, whatever their headers say.
    if head_request || status == 204 || status == 304 {
        return Ok(Head {
            status,
            keep_alive,
            body: BodyKind::Empty,
        });
    }
    // Rules 3–4: Transfer-Encoding wins over Content-Length, but such a message (or TE in HTTP/1.0) is
    // smuggling-shaped, so the connection is not reused after it.
    if transfer_encoding {
        let keep_alive = keep_alive && length.is_none() && minor >= 1 && chunked_last;
        let body = if chunked_last {
            BodyKind::Chunked
        } else {
            BodyKind::UntilClose
        };
        return Ok(Head {
            status,
            keep_alive,
            body,
        });
    }
    Ok(match length {
        Some(0) => Head {
            status,
            keep_alive,
            body: BodyKind::Empty,
        },
        Some(n) => Head {
            status,
            keep_alive,
            body: BodyKind::Length(n),
        },
        // Rule 8: close-delimited; the connection ends with the body.
        None => Head {
            status,
            keep_alive: false,
            body: BodyKind::UntilClose,
        },
    })
}

fn describe(err: httparse::Error) -> &'static str {
    match err {
        httparse::Error::Status => "invalid status code",
        httparse::Error::Version => "invalid HTTP version",
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Token => "invalid token",
        // Not reached: a head within MAX_HEAD has fewer fields than lines, and gets that many.
        httparse::Error::TooManyHeaders => "too many header fields",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Decoded {
        status: u16,
        keep_alive: bool,
        body: Vec<u8>,
    }

    /// Decodes a whole stream of responses delivered in two reads split at `split`; `heads` says which
    /// requests were HEAD. Returns the complete responses and whether the stream ended cleanly.
    fn decode_all(
        input: &[u8],
        split: usize,
        heads: &[bool],
        closed: bool,
    ) -> Result<Vec<Decoded>, FetchError> {
        let mut dec = ResponseDecoder::default();
        let mut out: Vec<Decoded> = Vec::new();
        let mut current: Option<Decoded> = None;
        let mut buffered: Vec<u8> = Vec::new();
        for part in [&input[..split], &input[split..]] {
            buffered.extend_from_slice(part);
            loop {
                let head_request = heads.get(out.len()).copied().unwrap_or(false);
                let (used, step) = dec.decode(&buffered, head_request)?;
                let data = buffered[..used].to_vec();
                buffered.drain(..used);
                match step {
                    Step::NeedMore => break,
                    Step::Head(h) => {
                        current = Some(Decoded {
                            status: h.status,
                            keep_alive: h.keep_alive,
                            body: Vec::new(),
                        })
                    }
                    Step::Body(r) => current.as_mut().unwrap().body.extend_from_slice(&data[r]),
                    Step::Done => out.push(current.take().unwrap()),
                }
            }
        }
        if closed && dec.close(buffered.len())? {
            out.push(current.take().unwrap());
        }
        Ok(out)
    }

    fn at_every_split(input: &[u8], heads: &[bool], closed: bool) -> Vec<Decoded> {
        let first = decode_all(input, input.len(), heads, closed).unwrap();
        for split in 0..=input.len() {
            assert_eq!(
                decode_all(input, split, heads, closed).unwrap(),
                first,
                "split at {split}"
            );
        }
        first
    }

    fn ok(status: u16, keep_alive: bool, body: &[u8]) -> Decoded {
        Decoded {
            status,
            keep_alive,
            body: body.to_vec(),
        }
    }

    #[test]
    fn content_length_pipelined() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nnopHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            at_every_split(input, &[], false),
            [
                ok(200, true, b"hello"),
                ok(404, true, b"nop"),
                ok(200, true, b"")
            ]
        );
    }

    #[test]
    fn repeated_heads_are_recognised_and_changes_are_not_missed() {
        let same = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let longer = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789";
        let closing = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nby";
        let mut input = Vec::new();
        for part in [&same[..], same, same, longer, same, closing] {
            input.extend_from_slice(part);
        }
        assert_eq!(
            at_every_split(&input, &[], false),
            [
                ok(200, true, b"ok"),
                ok(200, true, b"ok"),
                ok(200, true, b"ok"),
                ok(200, true, b"01234567890123456789"),
                ok(200, true, b"ok"),
                ok(200, false, b"by"),
            ]
        );
        // The same bytes answering a HEAD request mean no body.
        let twice = [&same[..38], &same[..]].concat();
        assert_eq!(
            at_every_split(&twice, &[true], false),
            [ok(200, true, b""), ok(200, true, b"ok")]
        );
    }

    #[test]
    fn chunked_with_trailers_then_next() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(
            at_every_split(input, &[], false),
            [ok(200, true, b"abc"), ok(200, true, b"hi")]
        );
    }

    #[test]
    fn close_delimited() {
        let input = b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nuntil the end";
        assert_eq!(
            at_every_split(input, &[], true),
            [ok(200, false, b"until the end")]
        );
    }

    #[test]
    fn no_body_for_head_204_304() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\nHTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
        assert_eq!(
            at_every_split(input, &[true], false),
            [
                ok(200, true, b""),
                ok(204, true, b""),
                ok(304, true, b""),
                ok(200, true, b"x")
            ]
        );
    }

    #[test]
    fn interim_responses_are_skipped() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(at_every_split(input, &[], false), [ok(200, true, b"ok")]);
    }

    #[test]
    fn switching_protocols_is_refused() {
        let err =
            decode_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", 0, &[], false).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Protocol);
    }

    #[test]
    fn keep_alive_rules() {
        let input = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na";
        assert_eq!(at_every_split(input, &[], false), [ok(200, false, b"a")]);
        let input = b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na";
        assert_eq!(at_every_split(input, &[], false), [ok(200, false, b"a")]);
        let input = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\na";
        assert_eq!(at_every_split(input, &[], false), [ok(200, true, b"a")]);
    }

    #[test]
    fn transfer_encoding_beats_content_length_and_closes() {
        let input =
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        assert_eq!(at_every_split(input, &[], false), [ok(200, false, b"ok")]);
    }

    #[test]
    fn same_length_twice_is_fine() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(at_every_split(input, &[], false), [ok(200, true, b"ok")]);
    }

    #[test]
    fn many_header_lines_fit_as_long_as_the_head_does() {
        for fields in [MAX_HEADERS - 1, MAX_HEADERS, MAX_HEADERS + 1, 1000] {
            let mut input = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..fields {
                input.extend_from_slice(format!("Set-Cookie: c{i}=1\r\n").as_bytes());
            }
            // The framing field comes last, so it is only seen if every field before it was parsed.
            input.extend_from_slice(b"Content-Length: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n");
            assert!(input.len() < MAX_HEAD);
            let want = [ok(200, true, b"ok"), ok(204, true, b"")];
            assert_eq!(decode_all(&input, input.len(), &[], false).unwrap(), want);
            for split in (0..input.len()).step_by(97) {
                assert_eq!(
                    decode_all(&input, split, &[], false).unwrap(),
                    want,
                    "{fields} fields, split at {split}"
                );
            }
        }
    }

    #[test]
    fn content_length_may_have_leading_zeros() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 0005\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 000000000000000000000000002\r\n\r\nhiHTTP/1.1 200 OK\r\nContent-Length: 000\r\n\r\n";
        assert_eq!(
            at_every_split(input, &[], false),
            [
                ok(200, true, b"hello"),
                ok(200, true, b"hi"),
                ok(200, true, b"")
            ]
        );
        assert_eq!(super::super::parse_length(b"0005"), Some(5));
        assert_eq!(
            super::super::parse_length(b"00000000000000000000018446744073709551615"),
            Some(u64::MAX)
        );
        assert_eq!(super::super::parse_length(b"018446744073709551616"), None);
        assert_eq!(super::super::parse_length(b"00 5"), None);
    }

    #[test]
    fn framing_errors() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HELLO\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        ] {
            let err = decode_all(bad, bad.len(), &[], false).unwrap_err();
            assert_eq!(
                err.kind,
                ErrorKind::Protocol,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn huge_head_is_refused_even_without_its_end() {
        let mut input = b"HTTP/1.1 200 OK\r\n".to_vec();
        // 1 KiB fields, so the head outgrows 64 KiB with few of them.
        let field = format!("X-Padding: {}\r\n", "a".repeat(1024));
        while input.len() <= MAX_HEAD {
            input.extend_from_slice(field.as_bytes());
        }
        let err = decode_all(&input, input.len(), &[], false).unwrap_err();
        assert!(err.message.contains("64 KiB"), "{}", err.message);
        input.extend_from_slice(b"\r\n");
        for split in [0, 100, MAX_HEAD - 10, input.len()] {
            let err = decode_all(&input, split, &[], false).unwrap_err();
            assert!(
                err.message.contains("64 KiB"),
                "split {split}: {}",
                err.message
            );
        }
    }

    #[test]
    fn truncated_bodies_are_io_errors_at_close() {
        for cut in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            b"HTTP/1.1 200 OK\r\nContent-",
        ] {
            let err = decode_all(cut, cut.len(), &[], true).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Io);
        }
        assert!(decode_all(b"", 0, &[], true).unwrap().is_empty());
    }
}

#[cfg(test)]
mod trickle {
    use super::*;

    #[test]
    fn one_byte_at_a_time() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: y\r\n\r\n";
        let mut dec = ResponseDecoder::default();
        let mut buffered = Vec::new();
        let mut steps = Vec::new();
        for &b in input.iter() {
            buffered.push(b);
            loop {
                let (used, step) = dec.decode(&buffered, false).unwrap();
                buffered.drain(..used);
                if step == Step::NeedMore {
                    break;
                }
                steps.push(step);
            }
        }
        assert!(matches!(steps[0], Step::Head(_)), "{steps:?}");
        assert_eq!(steps.last(), Some(&Step::Done), "{steps:?}");
    }
}
