//! Request framing for the built-in server (RFC 9112 §2.2, §6.3, §9.3), sans-IO: fed the unconsumed
//! bytes of a connection, one `RequestDecoder` finds each request head in place, skips the request's
//! body (counted, never kept), and says whether the connection persists after the answer, or why the
//! request is refused. Building the responses is left to `serve`.

use std::mem::MaybeUninit;

use super::chunked::end_of_block;
use super::{fold_content_length, BadLength};

/// A request head larger than this is refused with 431: it bounds what a connection buffers.
pub const MAX_HEAD: usize = 64 * 1024;
/// Header fields parsed per request, into an uninitialised array on the stack (nothing allocated).
const MAX_HEADERS: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read more bytes; nothing (further) can be decoded from what is buffered.
    NeedMore,
    /// A complete request head; its body, if any, is skipped by the next calls.
    Request(Request),
    /// The request cannot be answered; answer with the refusal's status, then close.
    Refused(Refusal),
    /// The connection ends here: a request asked to close or was refused, and nothing after it is read.
    Closed,
}

/// What a request head says about its answer and about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// Body bytes that follow the head (Content-Length); the decoder skips them before the next head.
    pub body: u64,
    /// What happens to the connection once this request is answered.
    pub persistence: Persistence,
}

/// The only method that changes the answer: a HEAD response is the head alone (RFC 9110 §9.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Head,
    Other,
}

/// Whether the connection carries another request after this one is answered (RFC 9112 §9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    KeepAlive,
    /// Answer with `Connection: close` and close (§9.6).
    Close,
}

/// Why a request is refused. The connection closes after the refusal, as what follows the refused
/// head cannot be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: httparse rejected the request line or a field line.
    MalformedHead,
    /// 400: a Content-Length that is not 1*DIGIT, or a list of them (§6.3 rule 5).
    InvalidLength,
    /// 400: Content-Length values that differ (§6.3 rule 5).
    ConflictingLengths,
    /// 400: both framings at once (§6.3 rule 3).
    LengthAndCoding,
    /// 431: the head is larger than `MAX_HEAD`.
    HeadTooLarge,
    /// 431: more than `MAX_HEADERS` fields.
    TooManyFields,
    /// 501: a transfer coding; request bodies are only ever framed by Content-Length here.
    Coding,
}

impl Refusal {
    /// The status code and reason phrase, as on a status line.
    pub fn status_line(self) -> &'static str {
        match self {
            Refusal::MalformedHead
            | Refusal::InvalidLength
            | Refusal::ConflictingLengths
            | Refusal::LengthAndCoding => "400 Bad Request",
            Refusal::HeadTooLarge | Refusal::TooManyFields => "431 Request Header Fields Too Large",
            Refusal::Coding => "501 Not Implemented",
        }
    }

    /// What was wrong, and what a client should send instead.
    pub fn why(self) -> &'static str {
        match self {
            Refusal::MalformedHead => "malformed request head; send HTTP/1.x",
            Refusal::InvalidLength => "Content-Length is not a decimal number",
            Refusal::ConflictingLengths => "conflicting Content-Length values; send one",
            Refusal::LengthAndCoding => {
                "both Transfer-Encoding and Content-Length; send only Content-Length"
            }
            Refusal::HeadTooLarge => "request head larger than 64 KiB",
            Refusal::TooManyFields => "more than 64 header fields",
            Refusal::Coding => "Transfer-Encoding in a request; send a Content-Length instead",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// Waiting for a head; `scanned` bytes were already searched for its end, so a trickling client
    /// costs linear time, not quadratic.
    Head {
        scanned: usize,
    },
    /// Skipping this many body bytes of the request just decoded.
    Body(u64),
    Closed,
}

/// One per connection, for every request on it in turn.
#[derive(Clone, Debug)]
pub struct RequestDecoder {
    state: State,
}

impl Default for RequestDecoder {
    fn default() -> Self {
        RequestDecoder {
            state: State::Head { scanned: 0 },
        }
    }
}

impl RequestDecoder {
    /// Decodes from the start of `buf`, the unconsumed bytes of the connection: skips what is left of
    /// the previous request's body, then decodes the next head. Returns the bytes consumed and the
    /// step; consumed bytes never need to be shown again.
    #[inline]
    pub fn decode(&mut self, buf: &[u8]) -> (usize, Step) {
        let (skipped, scanned) = match &mut self.state {
            State::Head { scanned } => (0, *scanned),
            State::Body(remaining) => {
                // At most buf.len(), so it fits in usize.
                let take = (*remaining).min(buf.len() as u64);
                *remaining -= take;
                if *remaining > 0 {
                    return (take as usize, Step::NeedMore);
                }
                (take as usize, 0)
            }
            State::Closed => return (0, Step::Closed),
        };
        let (used, step, next) = decode_head(&buf[skipped..], scanned);
        self.state = next;
        (skipped + used, step)
    }
}

/// Decodes a head from the start of `buf`, of which `scanned` bytes were already searched for its
/// end. Returns the bytes consumed, the step, and the state that follows.
fn decode_head(buf: &[u8], mut scanned: usize) -> (usize, Step, State) {
    // §2.2: empty lines before a request line are ignored. Consumed here, so that httparse (which
    // would skip them too, but from the first byte on every call) never sees them: otherwise a client
    // sending empty lines slowly would cost a full parse per line.
    let start = match buf.first() {
        Some(b'\r' | b'\n') if scanned == 0 => empty_lines(buf),
        _ => 0,
    };
    let rest = &buf[start..];
    if rest.is_empty() || rest == b"\r" {
        return (start, Step::NeedMore, State::Head { scanned });
    }
    let refused = |refusal| (start, Step::Refused(refusal), State::Closed);
    loop {
        // First try: parse straight away, as a whole head usually arrives in one read. After a partial
        // head, wait for its empty line before parsing again: httparse restarts from the first byte on
        // every call, so parsing each time a few bytes trickle in would cost quadratic time.
        let first_try = scanned == 0;
        let end = if first_try {
            rest.len().min(MAX_HEAD)
        } else {
            // The last 3 bytes searched may begin the empty line.
            let from = scanned.saturating_sub(3).min(rest.len());
            count_searched(rest.len() - from);
            match end_of_block(&rest[from..]) {
                Some(e) if from + e > MAX_HEAD => return refused(Refusal::HeadTooLarge),
                Some(e) => from + e,
                None if rest.len() > MAX_HEAD => return refused(Refusal::HeadTooLarge),
                None => {
                    let scanned = rest.len();
                    return (start, Step::NeedMore, State::Head { scanned });
                }
            }
        };
        count_searched(end);
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        match request.parse_with_uninit_headers(&rest[..end], &mut headers) {
            Ok(httparse::Status::Complete(len)) => {
                // A refused head is left unconsumed, like one refused before it was complete.
                let request = match frame(&request) {
                    Ok(request) => request,
                    Err(refusal) => return refused(refusal),
                };
                let next = match (request.persistence, request.body) {
                    (Persistence::Close, _) => State::Closed,
                    (Persistence::KeepAlive, 0) => State::Head { scanned: 0 },
                    (Persistence::KeepAlive, n) => State::Body(n),
                };
                return (start + len, Step::Request(request), next);
            }
            Ok(httparse::Status::Partial) if first_try => {
                if rest.len() >= MAX_HEAD {
                    return refused(Refusal::HeadTooLarge);
                }
                let scanned = rest.len();
                return (start, Step::NeedMore, State::Head { scanned });
            }
            // httparse did not take that empty line as the end of the head; look past it.
            Ok(httparse::Status::Partial) => scanned = end + 3,
            Err(httparse::Error::TooManyHeaders) => return refused(Refusal::TooManyFields),
            Err(_) => return refused(Refusal::MalformedHead),
        }
    }
}

/// The length of the empty lines (CRLF or bare LF) at the start of `buf`. Out of line: clients
/// rarely send any.
#[cold]
fn empty_lines(buf: &[u8]) -> usize {
    let mut start = 0;
    loop {
        match &buf[start..] {
            [b'\n', ..] => start += 1,
            [b'\r', b'\n', ..] => start += 2,
            _ => return start,
        }
    }
}

/// RFC 9112 §6.3, the body-length rules that apply to requests, in their order (rules 1, 2 and 8 are
/// about responses), and §9.3 for persistence.
fn frame(request: &httparse::Request<'_, '_>) -> Result<Request, Refusal> {
    let minor = request.version.unwrap_or(1);
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut close = false;
    let mut keep_alive = false;
    for h in request.headers.iter() {
        let name = h.name.as_bytes();
        // Only three fields matter; their lengths differ, so most fields are skipped on length alone.
        match name.len() {
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                // Rule 5: a list of identical values (in one field or across several) is one value;
                // anything else cannot be framed.
                fold_content_length(h.value, &mut length).map_err(|bad| match bad {
                    BadLength::Invalid => Refusal::InvalidLength,
                    BadLength::Conflicting => Refusal::ConflictingLengths,
                })?;
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => transfer_encoding = true,
            // §7.6.1: a comma-separated list of tokens, matched whole and case-insensitively, so
            // `notclose` or `closer` are other options, not `close`.
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            _ => {}
        }
    }
    // Rule 3: both framings at once is how requests are smuggled; refuse rather than pick one.
    if transfer_encoding && length.is_some() {
        return Err(Refusal::LengthAndCoding);
    }
    // Rule 4: a transfer coding. Request bodies are only skipped here, never decoded, so no coding
    // is understood (§6.1: 501 for a coding the server does not understand).
    if transfer_encoding {
        return Err(Refusal::Coding);
    }
    // Rule 5 (checked above) gives the length; rule 6: no length and no coding, no body.
    let body = length.unwrap_or(0);
    // §9.3: `close` ends the connection; otherwise HTTP/1.1 persists, and HTTP/1.0 only when asked.
    let persistence = if close || (minor == 0 && !keep_alive) {
        Persistence::Close
    } else {
        Persistence::KeepAlive
    };
    let method = if request.method == Some("HEAD") {
        Method::Head
    } else {
        Method::Other
    };
    Ok(Request {
        method,
        body,
        persistence,
    })
}

#[cfg(test)]
thread_local! {
    /// Bytes handed to the search for a head's end or to httparse, on this thread (each test has its
    /// own): a trickle that restarts from the first byte every time shows here.
    static SEARCHED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn count_searched(_bytes: usize) {
    #[cfg(test)]
    SEARCHED.with(|s| s.set(s.get() + _bytes));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything one connection's bytes decode to: the steps other than NeedMore, and how many bytes
    /// were consumed.
    #[derive(Debug, PartialEq)]
    struct Decoded {
        steps: Vec<Step>,
        consumed: usize,
    }

    /// Delivers `parts` one after the other, as reads, keeping only the unconsumed bytes between them.
    fn decode_parts(parts: &[&[u8]]) -> Decoded {
        let mut dec = RequestDecoder::default();
        let mut steps = Vec::new();
        let mut buffered: Vec<u8> = Vec::new();
        let mut consumed = 0;
        for part in parts {
            buffered.extend_from_slice(part);
            loop {
                let (used, step) = dec.decode(&buffered);
                buffered.drain(..used);
                consumed += used;
                match step {
                    Step::NeedMore => break,
                    Step::Closed => {
                        steps.push(step);
                        return Decoded { steps, consumed };
                    }
                    other => steps.push(other),
                }
            }
        }
        Decoded { steps, consumed }
    }

    /// Decodes `input` whole, then split in two at every offset, then one byte at a time, and checks
    /// that every delivery decodes the same. Returns the steps.
    fn at_every_split(input: &[u8]) -> Vec<Step> {
        let whole = decode_parts(&[input]);
        for split in 0..=input.len() {
            assert_eq!(
                decode_parts(&[&input[..split], &input[split..]]),
                whole,
                "split at {split} of {:?}",
                String::from_utf8_lossy(input)
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(decode_parts(&bytes), whole, "one byte at a time");
        whole.steps
    }

    fn get() -> Step {
        request(Method::Other, 0, Persistence::KeepAlive)
    }

    fn request(method: Method, body: u64, persistence: Persistence) -> Step {
        Step::Request(Request {
            method,
            body,
            persistence,
        })
    }

    /// The one step a single request with these header lines decodes to (split everywhere), with a
    /// second request after it that must not be answered when the first closes.
    fn one(version: &str, fields: &str) -> Step {
        let input = format!("GET / HTTP/{version}\r\n{fields}\r\nGET /next HTTP/1.1\r\n\r\n");
        let steps = at_every_split(input.as_bytes());
        match &steps[..] {
            [step, Step::Closed] | [step, _] => step.clone(),
            _ => panic!("{steps:?} for {fields:?}"),
        }
    }

    fn is_bad_request(step: &Step) -> bool {
        matches!(step, Step::Refused(r) if r.status_line() == "400 Bad Request")
    }

    #[test]
    fn pipelined_requests_and_bodies_skipped_across_splits() {
        // A body that looks like a request: skipped by its length, never parsed.
        let body = "GET /inside HTTP/1.1\r\n\r\n";
        let input = format!(
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n\
             HEAD /x HTTP/1.1\r\n\r\n\
             POST /p HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}\
             GET /last HTTP/1.1\r\n\r\n",
            body.len()
        );
        assert_eq!(
            at_every_split(input.as_bytes()),
            [
                get(),
                request(Method::Head, 0, Persistence::KeepAlive),
                request(Method::Other, body.len() as u64, Persistence::KeepAlive),
                get(),
            ]
        );
    }

    #[test]
    fn a_closing_request_ends_the_connection() {
        let input = b"HEAD / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(
            at_every_split(input),
            [request(Method::Head, 0, Persistence::Close), Step::Closed]
        );
        assert_eq!(
            decode_parts(&[input]).consumed,
            38,
            "the second is not read"
        );
    }

    #[test]
    fn empty_lines_before_a_request_are_ignored() {
        assert_eq!(
            at_every_split(b"\r\n\n\r\nGET / HTTP/1.1\r\n\r\n\r\nGET / HTTP/1.1\n\n"),
            [get(), get()]
        );
    }

    #[test]
    fn content_length_values() {
        let length = |value: &str| one("1.1", &format!("Content-Length: {value}\r\n"));
        let with_body = |n| request(Method::Other, n, Persistence::KeepAlive);
        // The body after the head is skipped; `one` puts a request there, so only check the step.
        for (value, n) in [
            ("0", 0),
            ("4", 4),
            ("4, 4", 4),
            ("4,4,4", 4),
            ("0004", 4),
            ("000000000000000000000004", 4),
            ("18446744073709551615", u64::MAX),
        ] {
            let input = format!("POST / HTTP/1.1\r\nContent-Length: {value}\r\n\r\n");
            assert_eq!(at_every_split(input.as_bytes()), [with_body(n)], "{value}");
        }
        for value in [
            "+4",
            "-1",
            " 4 4",
            "4 4",
            "",
            "4,",
            ",4",
            "4, 5",
            "0x4",
            "4.0",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            assert!(is_bad_request(&length(value)), "{value:?}");
        }
        // Across duplicate fields: identical values are one value, different ones conflict.
        let input = b"POST / HTTP/1.1\r\nContent-Length: 4\r\ncontent-length: 4\r\n\r\nbody";
        assert_eq!(at_every_split(input), [with_body(4)]);
        assert_eq!(
            one("1.1", "Content-Length: 4\r\nContent-Length: 5\r\n"),
            Step::Refused(Refusal::ConflictingLengths)
        );
    }

    #[test]
    fn refusals_close_the_connection() {
        let refused = |input: &[u8]| {
            let steps = at_every_split(input);
            match &steps[..] {
                [Step::Refused(r), Step::Closed] => *r,
                _ => panic!("{steps:?}"),
            }
        };
        let tail = "GET / HTTP/1.1\r\n\r\n";
        let te = refused(
            format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{tail}")
                .as_bytes(),
        );
        assert_eq!(te.status_line(), "501 Not Implemented");
        let both = refused(
            format!("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{tail}")
                .as_bytes(),
        );
        assert_eq!(both.status_line(), "400 Bad Request");
        assert!(both.why().contains("Transfer-Encoding"), "{both:?}");
        let bad = refused(format!("GET / HTTP/1.1\r\nno colon\r\n\r\n{tail}").as_bytes());
        assert_eq!(bad, Refusal::MalformedHead);
        let fields: String = (0..65).map(|i| format!("X-{i}: y\r\n")).collect();
        let many = refused(format!("GET / HTTP/1.1\r\n{fields}\r\n{tail}").as_bytes());
        assert_eq!(many.status_line(), "431 Request Header Fields Too Large");
        // A refusal after good requests: those are answered first.
        let input = format!("{tail}GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n{tail}");
        let steps = at_every_split(input.as_bytes());
        assert_eq!(steps.len(), 3, "{steps:?}");
        assert!(steps[0] == get() && is_bad_request(&steps[1]) && steps[2] == Step::Closed);
    }

    #[test]
    fn a_head_over_64_kib_is_refused_whole_or_trickled() {
        let input = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let too_large = [Step::Refused(Refusal::HeadTooLarge), Step::Closed];
        assert_eq!(decode_parts(&[input.as_bytes()]).steps, too_large);
        let bytes: Vec<&[u8]> = input.as_bytes().chunks(1000).collect();
        assert_eq!(decode_parts(&bytes).steps, too_large);
        // Without an end in sight, it is refused once past the limit, not when the end comes.
        let open = &input.as_bytes()[..MAX_HEAD + 10];
        let bytes: Vec<&[u8]> = open.chunks(1).collect();
        assert_eq!(decode_parts(&bytes).steps, too_large);
    }

    #[test]
    fn connection_tokens() {
        let keep = Persistence::KeepAlive;
        let close = Persistence::Close;
        let persistence = |version: &str, fields: &str| match one(version, fields) {
            Step::Request(r) => r.persistence,
            other => panic!("{other:?}"),
        };
        for (version, fields, expected) in [
            ("1.1", "", keep),
            ("1.1", "Connection: close\r\n", close),
            ("1.1", "connection: CLOSE\r\n", close),
            ("1.1", "Connection: keep-alive, close\r\n", close),
            ("1.1", "Connection: upgrade ,\tclose \r\n", close),
            ("1.1", "Connection: a\r\nConnection: close\r\n", close),
            ("1.1", "Connection: notclose\r\n", keep),
            ("1.1", "Connection: closer\r\n", keep),
            ("1.1", "Connection: close-ish, x-close\r\n", keep),
            ("1.1", "X-Connection: close\r\n", keep),
            ("1.1", "Connection: keep-alive\r\n", keep),
            ("1.0", "", close),
            ("1.0", "Connection: keep-alive\r\n", keep),
            ("1.0", "Connection: Keep-Alive\r\n", keep),
            ("1.0", "Connection: te, keep-alive\r\n", keep),
            ("1.0", "Connection: keep-alive, close\r\n", close),
            ("1.0", "Connection: keep-alive-ish\r\n", close),
            ("1.0", "Connection: notkeep-alive\r\n", close),
        ] {
            assert_eq!(
                persistence(version, fields),
                expected,
                "HTTP/{version} {fields:?}"
            );
        }
    }

    #[test]
    fn a_trickled_head_is_searched_once_not_once_per_byte() {
        // About 60 KiB in one field (a head at most 64 fields long), or 30 KiB of empty lines before a
        // small head, delivered one byte per read.
        let long_field = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(60 * 1024));
        let empty_lines = format!("{}GET / HTTP/1.1\r\n\r\n", "\r\n".repeat(15 * 1024));
        for input in [long_field, empty_lines] {
            let len = input.len();
            let before = SEARCHED.with(|s| s.get());
            let mut dec = RequestDecoder::default();
            let mut buffered: Vec<u8> = Vec::new();
            let mut steps = Vec::new();
            for &b in input.as_bytes() {
                buffered.push(b);
                let (used, step) = dec.decode(&buffered);
                buffered.drain(..used);
                if step != Step::NeedMore {
                    steps.push(step);
                }
            }
            assert_eq!(steps, [get()]);
            assert!(buffered.is_empty());
            // Each byte is searched about 4 times (the 3 before it again) and parsed once; restarting
            // from the first byte on every read would be about len² / 2.
            let searched = SEARCHED.with(|s| s.get()) - before;
            assert!(
                searched < 6 * len,
                "{searched} bytes searched for {len} bytes"
            );
        }
    }

    #[test]
    fn length_digits() {
        assert_eq!(super::super::parse_length(b"0"), Some(0));
        assert_eq!(super::super::parse_length(b"007"), Some(7));
        assert_eq!(super::super::parse_length(b""), None);
        assert_eq!(super::super::parse_length(b"1a"), None);
        assert_eq!(super::super::parse_length(b"18446744073709551616"), None);
    }
}
