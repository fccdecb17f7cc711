//! One client connection's HTTP/1.1 rules, sans-IO. A `Connection` is told what was written, fed the
//! connection's unconsumed bytes, the end of the stream and failures, and answers: how many requests may
//! be written now, what each received byte means (a head, body bytes, a complete response), when the
//! oldest request times out, and, once it has ended, what became of every request still on it. It never
//! sees a socket, a buffer pool, a timer or a transport: `engine::conn` moves the bytes.
//!
//! The rules, each with the test at the bottom of this file that fails when it breaks:
//! 1. Pipelining up to the depth, refilled by the send policy (`Pipeline::wants_refill`): `window_*`.
//! 2. After a failed connection to the origin, one request alone until its response has arrived
//!    (RFC 9112 §9.3.2, the TCP-reset problem of §9.6): `probe_*`.
//! 3. One request at a time when they are not idempotent (§9.3.2) or when they carry
//!    `Connection: close`: `lone_*`.
//! 4. After a response that ends the connection (`Connection: close`, HTTP/1.0, a close-delimited
//!    body) nothing more is written, and the requests behind it are bystanders, re-sent without
//!    spending retries (§9.6): `close_*`.
//! 5. Bytes that answer no request end the connection as a protocol error: `stray_*`.
//! 6. HEAD, 1xx, 204 and 304 responses have no body, inside a pipeline too (§6.3 rule 1):
//!    `bodiless_*`.
//! 7. A close-delimited body ends with the connection; over TLS only after close_notify, else it may be
//!    truncated (§9.8): `eof_*`.
//! 8. A failure charges the request whose response had begun (it is not sent again) and the requests
//!    behind it (they may be retried); a response that broke our own limit leaves the ones behind it
//!    blameless: `failed_*`.
//! 9. `--timeout` counts from the oldest unanswered request's write: `deadline_*`.
//! 10. A close or reset between responses, after the server answered at least one on this
//!     connection, is the server ending the connection (a keep-alive limit, an HTTP/1.0 server): the
//!     requests behind are bystanders, and an origin that does it after its first response is not
//!     pipelined to again (`Start::Single`): `ended_*`.
//! 11. A panic while the connection was pumped (a bug of ours) ends it: the oldest request fails as
//!     `internal` and is not sent again (it may be what panics), the ones behind it are bystanders:
//!     `panicked_*`.

use std::ops::Range;
use std::time::{Duration, Instant};

use super::pipeline::{InFlight, Pipeline, Unanswered};
use super::response::{BodyKind, Head, ResponseDecoder, Step};
use crate::error::{ErrorKind, FetchError};

/// What every connection of a run is told at its start.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// Most requests written and unanswered.
    pub depth: usize,
    /// Refill once this many are free (the send policy, `Pipeline::wants_refill`).
    pub refill_at: usize,
    /// How long the oldest request may wait for its complete response.
    pub timeout: Duration,
    /// Requests carry `Connection: close`: one per connection.
    pub closes: bool,
    /// Requests are idempotent; otherwise nothing is pipelined behind one (§9.3.2).
    pub idempotent: bool,
}

/// How a connection starts, from what earlier connections to its origin showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Pipelined from the first request.
    Open,
    /// The last connection failed: one request first (rule 2).
    Probe,
    /// The origin ended a connection after its first response: one request at a time, always
    /// (rule 10). Pipelined requests would only be reset with the connection.
    Single,
}

/// Where the connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The last connection to this origin failed: one request, nothing behind it, until a response
    /// arrives (§9.3.2).
    Probing,
    /// One request at a time for the whole connection (`Start::Single`).
    Single,
    /// Requests are pipelined up to the depth.
    Open,
    /// Nothing more is written: the server said the connection ends after its current response, or
    /// our own request said so. It ends after the responses already under way.
    Closing,
    /// Over: nothing more is read or written; `finish` says what became of the requests left.
    Ended(End),
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Nothing in flight and nothing more to do.
    Idle,
    /// The server ended the connection in good order (`Connection: close`, a close-delimited body).
    Closed,
    /// Reset, timeout, broken framing: the next connection to this origin starts with one request.
    Failed,
    /// The run was stopped.
    Stopped,
}

/// How a connection ended, and how many responses it completed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub end: End,
    pub answered: u32,
}

/// Whether a byte of the oldest request's response has arrived: from then on it is never sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Response {
    Awaited,
    Begun,
}

/// What the bytes fed to `decode` meant.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<T> {
    /// Nothing (more) can be decoded from the bytes given: receive more.
    NeedMore,
    /// The head of the final response to this request (interim 1xx responses are skipped).
    Head(T, Head),
    /// Body bytes of the response to this request, at this range of the bytes given.
    Body(T, Range<usize>),
    /// The response to this request is complete.
    Done(InFlight<T>),
    /// The connection has ended (`state()` says how): nothing more is read or written.
    Ended,
}

/// What became of a request still on the connection when it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Its response had begun: it ends with the connection's error and is not sent again.
    Failed,
    /// No byte of its response arrived: the workload decides whether to send it again
    /// (`pipeline::verdict`).
    Unanswered(Unanswered),
}

pub struct Connection<T> {
    rules: Rules,
    state: State,
    pipe: Pipeline<T>,
    decoder: ResponseDecoder,
    response: Response,
    /// Responses completed on this connection.
    answered: u32,
    /// Why it failed, once it has.
    error: Option<FetchError>,
}

impl<T: Copy> Connection<T> {
    pub fn new(rules: Rules, start: Start) -> Connection<T> {
        Connection {
            rules,
            state: match start {
                Start::Open => State::Open,
                Start::Probe => State::Probing,
                Start::Single => State::Single,
            },
            pipe: Pipeline::new(rules.depth, rules.refill_at),
            decoder: ResponseDecoder::default(),
            response: Response::Awaited,
            answered: 0,
            error: None,
        }
    }

    /// Responses completed on this connection.
    pub fn answered(&self) -> u32 {
        self.answered
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Requests written and not yet answered.
    #[inline]
    pub fn in_flight(&self) -> usize {
        self.pipe.len()
    }

    /// Nothing is in flight and the connection may still carry requests.
    #[inline]
    pub fn is_idle(&self) -> bool {
        self.pipe.is_empty() && matches!(self.state, State::Open | State::Probing | State::Single)
    }

    /// How many requests may be written now (rules 1–4).
    #[inline]
    pub fn writable(&self) -> usize {
        let lone = usize::from(self.pipe.is_empty());
        match self.state {
            State::Probing | State::Single => lone,
            State::Open if self.rules.closes || !self.rules.idempotent => lone,
            State::Open if self.pipe.wants_refill() => self.pipe.free(),
            _ => 0,
        }
    }

    /// A request was written at `at`; `head_request` when it is a HEAD (its response has no body).
    #[inline]
    pub fn sent(&mut self, ticket: T, at: Instant, head_request: bool) {
        debug_assert!(self.writable() > 0);
        self.pipe.push(InFlight {
            ticket,
            sent: at,
            head_request,
        });
        if self.rules.closes && matches!(self.state, State::Open | State::Single) {
            self.state = State::Closing;
        }
    }

    /// When the oldest request times out (rule 9); None with nothing in flight.
    #[inline]
    pub fn deadline(&self) -> Option<Instant> {
        self.pipe.front().map(|f| f.sent + self.rules.timeout)
    }

    /// Decodes from the start of `buf`, the connection's unconsumed bytes. Returns the bytes consumed
    /// (never to be shown again) and what they meant. Call again until `NeedMore` or `Ended`.
    #[inline]
    pub fn decode(&mut self, buf: &[u8]) -> (usize, Event<T>) {
        if let State::Ended(_) = self.state {
            return (0, Event::Ended);
        }
        let Some(front) = self.pipe.front() else {
            if buf.is_empty() {
                return (0, Event::NeedMore);
            }
            // Rule 5: nothing is waiting for these bytes, so the server and we disagree on where
            // its responses end.
            self.fail(FetchError::new(
                ErrorKind::Protocol,
                format!("the server sent {} bytes that answer no request", buf.len()),
            ));
            return (0, Event::Ended);
        };
        let (ticket, head_request) = (front.ticket, front.head_request);
        if !buf.is_empty() {
            self.response = Response::Begun;
        }
        let (used, step) = match self.decoder.decode(buf, head_request) {
            Ok(decoded) => decoded,
            Err(e) => {
                self.fail(e);
                return (0, Event::Ended);
            }
        };
        let event = match step {
            Step::NeedMore => Event::NeedMore,
            Step::Head(head) => {
                // Rule 4: the server ends the connection after this response.
                if !head.keep_alive || head.body == BodyKind::UntilClose {
                    self.close();
                }
                Event::Head(ticket, head)
            }
            Step::Body(range) => Event::Body(ticket, range),
            Step::Done => {
                let done = self.complete(buf.len() > used);
                // Rule 4: the response that said so was the last one on this connection.
                if self.state == State::Closing {
                    self.state = State::Ended(End::Closed);
                }
                Event::Done(done)
            }
        };
        (used, event)
    }

    /// The peer ended the stream; `buffered` bytes are still unconsumed, and `clean` says the end is
    /// known to be the peer's (always over TCP; after close_notify over TLS). Returns the request a
    /// close-delimited body answered (rule 7).
    pub fn eof(&mut self, buffered: usize, clean: bool) -> Option<InFlight<T>> {
        if let State::Ended(_) = self.state {
            return None;
        }
        if self.pipe.is_empty() {
            self.state = State::Ended(End::Closed);
            return None;
        }
        match self.decoder.close(buffered) {
            Ok(true) if !clean => {
                self.fail(FetchError::new(
                    ErrorKind::Tls,
                    "the server closed the connection without TLS close_notify, so the body that \
                     ends with the connection may be truncated (RFC 9112 §9.8)",
                ));
                None
            }
            Ok(true) => {
                let done = self.complete(false);
                self.state = State::Ended(End::Closed);
                Some(done)
            }
            Ok(false) => {
                self.lost(FetchError::new(
                    ErrorKind::Io,
                    "the server closed the connection before responding",
                ));
                None
            }
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    /// The peer closed or reset the connection (a receive error). Between responses, after it answered
    /// at least one here, that is the server ending the connection (rule 10); otherwise it failed.
    pub fn lost(&mut self, err: FetchError) {
        if self.answered > 0 && self.response == Response::Awaited {
            if !matches!(self.state, State::Ended(_)) {
                self.state = State::Ended(End::Closed);
            }
        } else {
            self.fail(err);
        }
    }

    /// The connection failed (a send error, a timeout, a body the workload refused).
    pub fn fail(&mut self, err: FetchError) {
        if let State::Ended(_) = self.state {
            return;
        }
        self.error = Some(err);
        self.state = State::Ended(End::Failed);
    }

    /// The pump panicked (rule 11): whatever state the panic left, the connection ends here, failed.
    pub fn panicked(&mut self, err: FetchError) {
        debug_assert_eq!(err.kind, ErrorKind::Internal);
        self.error = Some(err);
        self.state = State::Ended(End::Failed);
        self.response = Response::Begun;
    }

    /// The oldest request's deadline passed (rule 9).
    pub fn time_out(&mut self) {
        let limit = self.rules.timeout.as_secs_f64();
        self.fail(FetchError::new(
            ErrorKind::Timeout,
            format!(
                "no complete response within {limit:.1}s (--timeout); the server is slow or stalled, raise --timeout to wait longer",
            ),
        ));
    }

    /// The run is over.
    pub fn stop(&mut self) {
        if !matches!(self.state, State::Ended(_)) {
            self.state = State::Ended(End::Stopped);
        }
    }

    /// Nothing is in flight and nothing more will be: the connection ends in good order.
    pub fn end_idle(&mut self) {
        debug_assert!(self.pipe.is_empty());
        if !matches!(self.state, State::Ended(_)) {
            self.state = State::Ended(End::Idle);
        }
    }

    /// How it ended, and what became of each request still on it, oldest first (rules 4 and 8).
    pub fn finish(mut self) -> Leftovers<T> {
        let end = match self.state {
            State::Ended(end) => end,
            // Dropped while still open: nothing more will be read, as when stopped.
            _ => End::Stopped,
        };
        let error = match (end, self.error.take()) {
            (End::Failed, Some(e)) => e,
            (End::Closed, _) => FetchError::new(ErrorKind::Io, "the server closed the connection"),
            _ => FetchError::new(ErrorKind::Io, "stopped"),
        };
        let (first, behind) = match end {
            End::Failed => (
                match self.response {
                    Response::Begun => Fate::Failed,
                    Response::Awaited => Fate::Unanswered(Unanswered::Failed),
                },
                // Only a response that broke our own limit, or our own bug, leaves the ones behind it
                // blameless.
                if matches!(error.kind, ErrorKind::TooLarge | ErrorKind::Internal) {
                    Unanswered::Bystander
                } else {
                    Unanswered::Failed
                },
            ),
            _ => (
                Fate::Unanswered(Unanswered::Bystander),
                Unanswered::Bystander,
            ),
        };
        Leftovers {
            end,
            answered: self.answered,
            error,
            pipe: self.pipe,
            first: Some(first),
            behind,
        }
    }

    /// The server will write nothing after its current response: rule 4.
    fn close(&mut self) {
        if matches!(self.state, State::Open | State::Probing | State::Single) {
            self.state = State::Closing;
        }
    }

    /// The oldest request is answered; `more` bytes already follow its response.
    #[inline]
    fn complete(&mut self, more: bool) -> InFlight<T> {
        // Called only for a response decoded for the front request, so the FIFO is not empty.
        let done = self
            .pipe
            .pop()
            .expect("a response answers the oldest request");
        self.answered += 1;
        self.response = if more {
            Response::Begun
        } else {
            Response::Awaited
        };
        if self.state == State::Probing {
            self.state = State::Open;
        }
        done
    }
}

/// The requests a connection left, with the error that ended it.
pub struct Leftovers<T> {
    pub end: End,
    /// Responses completed on the connection.
    pub answered: u32,
    /// Why the requests left were not answered.
    pub error: FetchError,
    pipe: Pipeline<T>,
    first: Option<Fate>,
    behind: Unanswered,
}

impl<T: Copy> Iterator for Leftovers<T> {
    type Item = (T, Fate);

    fn next(&mut self) -> Option<(T, Fate)> {
        let f = self.pipe.pop()?;
        let fate = self.first.take().unwrap_or(Fate::Unanswered(self.behind));
        Some((f.ticket, fate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        depth: 16,
        refill_at: 4,
        timeout: Duration::from_secs(10),
        closes: false,
        idempotent: true,
    };

    /// What a connection made of some bytes: its events (body bytes of one response joined, so how
    /// the bytes were split does not show), then how it ended and what became of each request left.
    #[derive(Debug, PartialEq, Eq)]
    struct Trace {
        events: Vec<String>,
        end: Option<End>,
        error: Option<ErrorKind>,
        left: Vec<(u32, Fate)>,
    }

    /// A connection with requests 0..n written (those in `heads` are HEAD requests).
    fn with_requests(rules: Rules, probe: bool, n: u32, heads: &[u32]) -> Connection<u32> {
        let start = if probe { Start::Probe } else { Start::Open };
        let mut c = Connection::new(rules, start);
        let at = Instant::now();
        for t in 0..n {
            c.sent(t, at, heads.contains(&t));
        }
        c
    }

    /// Feeds `pieces` one after another as the pump does (each appended to what is unconsumed, then
    /// decoded until it needs more or the connection ends), then the end of the stream if `eof` says
    /// so (`Some(clean)`), and finishes the connection.
    fn drive(mut c: Connection<u32>, pieces: &[&[u8]], eof: Option<bool>) -> Trace {
        let mut events: Vec<String> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut ended = false;
        'feed: for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                let (used, event) = c.decode(&buf);
                match event {
                    Event::NeedMore => {
                        buf.drain(..used);
                        break;
                    }
                    Event::Ended => {
                        ended = true;
                        break 'feed;
                    }
                    Event::Head(t, head) => events.push(format!("head {t} {}", head.status)),
                    Event::Body(t, range) => {
                        let text = String::from_utf8_lossy(&buf[range]).into_owned();
                        let prefix = format!("body {t} ");
                        match events.last_mut() {
                            Some(last) if last.starts_with(&prefix) => last.push_str(&text),
                            _ => events.push(prefix + &text),
                        }
                    }
                    Event::Done(done) => events.push(format!("done {}", done.ticket)),
                }
                buf.drain(..used);
            }
        }
        if let (false, Some(clean)) = (ended, eof) {
            if let Some(done) = c.eof(buf.len(), clean) {
                events.push(format!("done {}", done.ticket));
            }
        }
        finish(c, events)
    }

    fn finish(c: Connection<u32>, events: Vec<String>) -> Trace {
        let ended = matches!(c.state(), State::Ended(_));
        let mut left = c.finish();
        let leftovers: Vec<(u32, Fate)> = left.by_ref().collect();
        Trace {
            events,
            end: ended.then_some(left.end),
            error: (left.end == End::Failed).then_some(left.error.kind),
            left: leftovers,
        }
    }

    /// Drives the same bytes whole and split at every offset into two pieces and into three: every
    /// split must give the same trace, which is returned.
    fn every_split(make: impl Fn() -> Connection<u32>, wire: &[u8], eof: Option<bool>) -> Trace {
        let whole = drive(make(), &[wire], eof);
        for i in 0..=wire.len() {
            let split = drive(make(), &[&wire[..i], &wire[i..]], eof);
            assert_eq!(split, whole, "split at {i}");
            let j = (i + 7).min(wire.len());
            let split = drive(make(), &[&wire[..i], &wire[i..j], &wire[j..]], eof);
            assert_eq!(split, whole, "split at {i} and {j}");
        }
        whole
    }

    /// Feeds `OK` until the oldest request's response is done.
    fn answer_oldest(c: &mut Connection<u32>) {
        let mut buf = OK;
        loop {
            let (used, event) = c.decode(buf);
            buf = &buf[used..];
            if matches!(event, Event::Done(_)) {
                return;
            }
        }
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

    #[test]
    fn window_refills_by_the_send_policy() {
        let mut c: Connection<u32> = Connection::new(RULES, Start::Open);
        assert_eq!(c.writable(), 16);
        let at = Instant::now();
        for t in 0..16 {
            c.sent(t, at, false);
        }
        assert_eq!(c.writable(), 0);
        let wire = OK.repeat(4);
        let mut buf = &wire[..];
        let mut done = 0;
        while done < 4 {
            let (used, event) = c.decode(buf);
            buf = &buf[used..];
            if let Event::Done(d) = event {
                assert_eq!(d.ticket, done);
                done += 1;
                let expect = if done < 4 { 0 } else { 4 };
                assert_eq!(c.writable(), expect, "after {done} responses");
            }
        }
        assert_eq!(c.in_flight(), 12);
        assert_eq!(c.state(), State::Open);
    }

    #[test]
    fn probe_sends_one_request_until_a_response_arrives() {
        let mut c: Connection<u32> = Connection::new(RULES, Start::Probe);
        assert_eq!(c.state(), State::Probing);
        assert_eq!(c.writable(), 1);
        c.sent(0, Instant::now(), false);
        assert_eq!(c.writable(), 0, "nothing behind the probe");
        let (used, event) = c.decode(OK);
        assert_eq!(used, OK.len() - 5);
        assert!(matches!(event, Event::Head(0, _)));
        assert_eq!(c.writable(), 0, "a head alone does not end the probe");
        let (_, event) = c.decode(&OK[used..]);
        assert!(matches!(event, Event::Body(0, _)));
        let (_, event) = c.decode(&[]);
        assert!(matches!(event, Event::Done(_)));
        assert_eq!(c.state(), State::Open);
        assert_eq!(c.writable(), 16);
    }

    #[test]
    fn lone_requests_when_they_close_the_connection() {
        let rules = Rules {
            closes: true,
            ..RULES
        };
        let mut c: Connection<u32> = Connection::new(rules, Start::Open);
        assert_eq!(c.writable(), 1);
        c.sent(0, Instant::now(), false);
        assert_eq!(c.state(), State::Closing);
        assert_eq!(c.writable(), 0);
        let t = every_split(|| with_requests(rules, false, 1, &[]), OK, None);
        assert_eq!(t.events, strings(&["head 0 200", "body 0 hello", "done 0"]));
        assert_eq!(t.end, Some(End::Closed));
    }

    #[test]
    fn lone_requests_when_they_are_not_idempotent() {
        let rules = Rules {
            idempotent: false,
            ..RULES
        };
        let mut c: Connection<u32> = Connection::new(rules, Start::Open);
        assert_eq!(c.writable(), 1);
        c.sent(0, Instant::now(), false);
        assert_eq!(c.writable(), 0, "nothing pipelined behind a POST");
        answer_oldest(&mut c);
        assert_eq!(c.writable(), 1);
        assert_eq!(c.state(), State::Open);
    }

    #[test]
    fn close_announced_by_the_server_leaves_the_rest_as_bystanders() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi";
        let t = every_split(|| with_requests(RULES, false, 3, &[]), wire, None);
        assert_eq!(t.events, strings(&["head 0 200", "body 0 hi", "done 0"]));
        assert_eq!(t.end, Some(End::Closed));
        let bystander = Fate::Unanswered(Unanswered::Bystander);
        assert_eq!(t.left, vec![(1, bystander), (2, bystander)]);

        // HTTP/1.0 without keep-alive says the same.
        let wire = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        let t = every_split(|| with_requests(RULES, false, 2, &[]), wire, None);
        assert_eq!(t.end, Some(End::Closed));
        assert_eq!(t.left, vec![(1, bystander)]);

        // Nothing more is written once the head said so.
        let mut c = with_requests(RULES, false, 1, &[]);
        let (_, event) = c.decode(wire);
        assert!(matches!(event, Event::Head(0, _)));
        assert_eq!((c.state(), c.writable()), (State::Closing, 0));
    }

    #[test]
    fn stray_bytes_after_the_last_response_end_the_connection() {
        let wire = [OK, b"HTTP/1.1 200 OK\r\n"].concat();
        let t = every_split(|| with_requests(RULES, false, 1, &[]), &wire, None);
        assert_eq!(t.events, strings(&["head 0 200", "body 0 hello", "done 0"]));
        assert_eq!(
            (t.end, t.error),
            (Some(End::Failed), Some(ErrorKind::Protocol))
        );
        assert!(t.left.is_empty());
    }

    #[test]
    fn bodiless_responses_inside_a_pipeline() {
        let wire = [
            // 0: HEAD: the length describes the body a GET would get.
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"[..],
            // 1: 204 and 2: 304 have no body whatever they say.
            b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            // 3: an interim response first, then the final one.
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            OK,
        ]
        .concat();
        let t = every_split(|| with_requests(RULES, false, 4, &[0]), &wire, None);
        let expect = [
            "head 0 200",
            "done 0",
            "head 1 204",
            "done 1",
            "head 2 304",
            "done 2",
            "head 3 200",
            "body 3 hello",
            "done 3",
        ];
        assert_eq!(t.events, strings(&expect));
        assert_eq!(t.end, None, "still open");
    }

    #[test]
    fn eof_completes_a_close_delimited_body() {
        let wire = b"HTTP/1.1 200 OK\r\n\r\nall of it";
        let t = every_split(|| with_requests(RULES, false, 2, &[]), wire, Some(true));
        assert_eq!(
            t.events,
            strings(&["head 0 200", "body 0 all of it", "done 0"])
        );
        assert_eq!(t.end, Some(End::Closed));
        assert_eq!(t.left, vec![(1, Fate::Unanswered(Unanswered::Bystander))]);
        // Nothing is written behind a body that ends with the connection.
        let mut c = with_requests(RULES, false, 1, &[]);
        c.decode(wire);
        assert_eq!(c.writable(), 0);
    }

    #[test]
    fn eof_without_close_notify_may_have_truncated_the_body() {
        let wire = b"HTTP/1.1 200 OK\r\n\r\nall of it";
        let t = every_split(|| with_requests(RULES, false, 2, &[]), wire, Some(false));
        assert_eq!(t.events, strings(&["head 0 200", "body 0 all of it"]));
        assert_eq!((t.end, t.error), (Some(End::Failed), Some(ErrorKind::Tls)));
        // Its response had begun: not sent again; the one behind it may be retried.
        let failed = Fate::Unanswered(Unanswered::Failed);
        assert_eq!(t.left, vec![(0, Fate::Failed), (1, failed)]);
        // A length-framed body is complete without close_notify.
        let t = every_split(|| with_requests(RULES, false, 1, &[]), OK, Some(false));
        assert_eq!(t.events, strings(&["head 0 200", "body 0 hello", "done 0"]));
        assert_eq!(t.end, Some(End::Closed));
    }

    #[test]
    fn eof_before_a_response_or_inside_one() {
        let failed = Fate::Unanswered(Unanswered::Failed);
        // Before any byte: unanswered, retryable.
        let t = drive(with_requests(RULES, false, 2, &[]), &[], Some(true));
        assert_eq!((t.end, t.error), (Some(End::Failed), Some(ErrorKind::Io)));
        assert_eq!(t.left, vec![(0, failed), (1, failed)]);
        // Inside a head or a body: the response had begun.
        for cut in [10, OK.len() - 2] {
            let t = every_split(
                || with_requests(RULES, false, 2, &[]),
                &OK[..cut],
                Some(true),
            );
            assert_eq!((t.end, t.error), (Some(End::Failed), Some(ErrorKind::Io)));
            assert_eq!(t.left, vec![(0, Fate::Failed), (1, failed)], "cut at {cut}");
        }
        // After the last response, with nothing in flight: a clean end.
        let t = every_split(|| with_requests(RULES, false, 1, &[]), OK, Some(true));
        assert_eq!(t.end, Some(End::Closed));
        assert!(t.left.is_empty());
    }

    #[test]
    fn failed_connection_charges_the_response_begun_and_those_behind_it() {
        let failed = Fate::Unanswered(Unanswered::Failed);
        let bystander = Fate::Unanswered(Unanswered::Bystander);
        let reset = || FetchError::new(ErrorKind::Io, "reset");
        // No byte yet: every request is unanswered and may be retried.
        let mut c = with_requests(RULES, false, 3, &[]);
        c.fail(reset());
        let t = finish(c, vec![]);
        assert_eq!(t.left, vec![(0, failed), (1, failed), (2, failed)]);
        // The second response had begun (its first bytes followed the first response).
        let wire = [OK, b"HTTP/1.1 2"].concat();
        let mut c = with_requests(RULES, false, 3, &[]);
        let mut buf = &wire[..];
        loop {
            let (used, event) = c.decode(buf);
            buf = &buf[used..];
            if event == Event::NeedMore {
                break;
            }
        }
        c.fail(reset());
        let t = finish(c, vec![]);
        assert_eq!(t.left, vec![(1, Fate::Failed), (2, failed)]);
        // A response over our own limit leaves the ones behind it blameless.
        let mut c = with_requests(RULES, false, 3, &[]);
        c.decode(OK);
        c.fail(FetchError::new(ErrorKind::TooLarge, "over --max-body"));
        let t = finish(c, vec![]);
        assert_eq!(t.error, Some(ErrorKind::TooLarge));
        assert_eq!(
            t.left,
            vec![(0, Fate::Failed), (1, bystander), (2, bystander)]
        );
        // A malformed response fails the connection by itself.
        let t = every_split(
            || with_requests(RULES, false, 2, &[]),
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
            None,
        );
        assert_eq!(
            (t.end, t.error),
            (Some(End::Failed), Some(ErrorKind::Protocol))
        );
        assert_eq!(t.left, vec![(0, Fate::Failed), (1, failed)]);
    }

    #[test]
    fn panicked_pump_fails_the_oldest_alone() {
        let bystander = Fate::Unanswered(Unanswered::Bystander);
        let bug = || FetchError::new(ErrorKind::Internal, "a connection task panicked");
        // Before any byte, inside a head, and after a whole response: a panic overrides whatever state
        // it left.
        for (wire, answered) in [
            (&b""[..], 0u32),
            (b"HTTP/1.1 200 OK\r\nContent-Le", 0),
            (OK, 1),
        ] {
            let mut c = with_requests(RULES, false, 3, &[]);
            let mut buf = wire;
            loop {
                let (used, event) = c.decode(buf);
                buf = &buf[used..];
                if event == Event::NeedMore {
                    break;
                }
            }
            c.panicked(bug());
            let t = finish(c, vec![]);
            assert_eq!(
                (t.end, t.error),
                (Some(End::Failed), Some(ErrorKind::Internal))
            );
            let mut want = vec![(answered, Fate::Failed)];
            want.extend((answered + 1..3).map(|i| (i, bystander)));
            assert_eq!(t.left, want, "after {wire:?}");
        }
        let mut c = with_requests(RULES, false, 1, &[]);
        c.stop();
        c.panicked(bug());
        let t = finish(c, vec![]);
        assert_eq!(t.left, vec![(0, Fate::Failed)]);
    }

    #[test]
    fn deadline_counts_from_the_oldest_request() {
        let mut c: Connection<u32> = Connection::new(RULES, Start::Open);
        assert_eq!(c.deadline(), None);
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        c.sent(0, t0, false);
        c.sent(1, t1, false);
        assert_eq!(c.deadline(), Some(t0 + RULES.timeout));
        answer_oldest(&mut c);
        assert_eq!(c.deadline(), Some(t1 + RULES.timeout));
        c.time_out();
        let t = finish(c, vec![]);
        assert_eq!(
            (t.end, t.error),
            (Some(End::Failed), Some(ErrorKind::Timeout))
        );
        assert_eq!(t.left, vec![(1, Fate::Unanswered(Unanswered::Failed))]);
    }

    #[test]
    fn ended_by_a_close_or_reset_between_responses_after_answering() {
        let bystander = Fate::Unanswered(Unanswered::Bystander);
        // A close after one answer: the server's keep-alive limit, not a failure.
        let t = every_split(|| with_requests(RULES, false, 3, &[]), OK, Some(true));
        assert_eq!(t.events, strings(&["head 0 200", "body 0 hello", "done 0"]));
        assert_eq!(t.end, Some(End::Closed));
        assert_eq!(t.left, vec![(1, bystander), (2, bystander)]);
        // A reset there (unread pipelined requests make the server's kernel send one) likewise.
        let mut c = with_requests(RULES, false, 3, &[]);
        answer_oldest(&mut c);
        c.decode(&[]);
        c.lost(FetchError::new(ErrorKind::Io, "reset"));
        let t = finish(c, vec![]);
        assert_eq!(t.end, Some(End::Closed));
        assert_eq!(t.left, vec![(1, bystander), (2, bystander)]);
        // Before any answer on this connection it is a failure, with retries spent.
        let mut c = with_requests(RULES, false, 2, &[]);
        c.lost(FetchError::new(ErrorKind::Io, "reset"));
        let t = finish(c, vec![]);
        assert_eq!(t.end, Some(End::Failed));
        let failed = Fate::Unanswered(Unanswered::Failed);
        assert_eq!(t.left, vec![(0, failed), (1, failed)]);
    }

    #[test]
    fn ended_origins_get_one_request_at_a_time() {
        let mut c: Connection<u32> = Connection::new(RULES, Start::Single);
        for t in 0..3 {
            assert_eq!(c.writable(), 1);
            c.sent(t, Instant::now(), false);
            assert_eq!(c.writable(), 0, "nothing behind request {t}");
            answer_oldest(&mut c);
            assert_eq!(c.state(), State::Single);
        }
        assert_eq!(c.answered(), 3);
    }

    #[test]
    fn stopped_and_idle_ends() {
        let mut c = with_requests(RULES, false, 2, &[]);
        c.stop();
        let t = finish(c, vec![]);
        assert_eq!(t.end, Some(End::Stopped));
        let bystander = Fate::Unanswered(Unanswered::Bystander);
        assert_eq!(t.left, vec![(0, bystander), (1, bystander)]);
        let mut c: Connection<u32> = Connection::new(RULES, Start::Open);
        assert!(c.is_idle());
        c.end_idle();
        let t = finish(c, vec![]);
        assert_eq!((t.end, t.left), (Some(End::Idle), vec![]));
    }
}
