//! THE hot path: one HTTP/1.1 connection's loop. Write a batch of pipelined requests in one write, read,
//! parse every response already buffered, complete them, refill when the send policy says so. The same
//! loop serves `fetch` and `bench`; what differs (where requests come from, what a response means) is
//! the `Workload`. Steady state allocates nothing: the write buffer and the pipeline FIFO are reused,
//! read buffers come from the worker's pool, headers are parsed in place.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use super::deadline::{Fired, Watchdog};
use crate::error::{ErrorKind, FetchError};
use crate::http::pipeline::{InFlight, Pipeline, Unanswered};
use crate::http::response::{Head, ResponseDecoder, Step};
use crate::net::Transport;

/// Size of a pooled read buffer: one read takes a full window of typical small responses (16 × 1 KiB).
const READ_BUF: usize = 32 * 1024;
/// Grow the buffer when less than this is free at its end, so reads stay large.
const MIN_SPARE: usize = 4 * 1024;
/// Read buffers kept for reuse per worker: enough for every busy connection of a typical run; past a
/// burst of many more, the rest are freed, so idle connections do not keep a burst's memory.
const POOL_MAX: usize = 256;
/// Move unparsed bytes to the front before a read when there are at most this many.
const COMPACT_BELOW: usize = 4 * 1024;

/// What a connection serves. Callbacks are synchronous and cheap; only `idle` waits.
pub(crate) trait Workload {
    type Ticket: Copy;

    /// Appends up to `max` request heads to `out` and records each in `pipe` (sent at `now`).
    /// Returns how many were added.
    fn fill(
        &self,
        out: &mut Vec<u8>,
        pipe: &mut Pipeline<Self::Ticket>,
        max: usize,
        now: Instant,
    ) -> usize;

    /// Called with nothing in flight: waits until there may be work (true) or the connection should
    /// close (false).
    async fn idle(&self) -> bool;

    fn on_head(&self, ticket: Self::Ticket, head: &Head);

    /// Body bytes of the response to `ticket`, in order. An error ends the request and the connection.
    fn on_body(&self, ticket: Self::Ticket, data: &[u8]) -> Result<(), FetchError>;

    /// The response to this request is complete; `now` is when its last byte was read.
    fn on_done(&self, done: InFlight<Self::Ticket>, now: Instant);

    /// The request ends with `err` after its response started: no retry.
    fn on_failed(&self, ticket: Self::Ticket, err: FetchError);

    /// The request got no response byte on this connection; the workload decides whether to send it
    /// again (`http::pipeline::verdict`).
    fn on_unanswered(&self, ticket: Self::Ticket, why: Unanswered, err: &FetchError);
}

/// A worker's resources shared by all its connections.
pub(crate) struct Env {
    pub pool: RefCell<Vec<Vec<u8>>>,
    pub watchdog: Watchdog,
    pub timeout: Duration,
    pub depth: usize,
    pub refill_at: usize,
    /// Requests carry `Connection: close`: one per connection.
    pub closes: bool,
    pub reads: Cell<u64>,
    pub writes: Cell<u64>,
    pub scratch: Cell<Vec<u8>>,
}

impl Env {
    pub fn new(timeout: Duration, depth: usize, refill_at: usize) -> Env {
        Env {
            pool: RefCell::new(Vec::new()),
            watchdog: Watchdog::default(),
            timeout,
            depth,
            refill_at,
            closes: false,
            reads: Cell::new(0),
            writes: Cell::new(0),
            scratch: Cell::new(Vec::new()),
        }
    }
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Nothing in flight and nothing more to do.
    Idle,
    /// The server ended the connection in good order (`Connection: close`, a close-delimited body).
    Closed,
    /// Reset, timeout, broken framing: the next connection to this origin starts with one request.
    Failed,
    /// The run was stopped.
    Stopped,
}

enum Outcome {
    Idle,
    Closed,
    Failed(FetchError),
    Stopped,
}

/// Runs one connection until it has nothing to do, the server closes it, or it fails. With `probe`, the
/// first request goes alone and pipelining starts after its response (RFC 9112 §9.3.2, after a failed
/// connection).
pub(crate) async fn drive<W: Workload>(
    env: &Env,
    work: &W,
    io: &Transport,
    mut probe: bool,
) -> End {
    let registration = env.watchdog.register(io.kill());
    let watch = &registration.watch;
    let mut pipe: Pipeline<W::Ticket> = Pipeline::new(env.depth, env.refill_at);
    let mut out: Vec<u8> = Vec::new();
    let mut rx = RecvBuf::default();
    let mut decoder = ResponseDecoder::default();
    let mut batching = ReadBatching {
        enabled: env.depth > 1,
        ..ReadBatching::default()
    };
    // The server announced the end of the connection: send nothing more.
    let mut closing = false;
    // A byte of the oldest request's response has arrived, so it must not be sent again.
    let mut started = false;
    // The transport hands over bytes that have arrived: take a read buffer only once they are there,
    // and give it back as soon as nothing in it is left unparsed.
    let lends = io.reads_arrived_bytes();

    let outcome = 'conn: loop {
        let mut batch = false;
        if !closing && pipe.wants_refill() {
            let max = if probe || env.closes {
                usize::from(pipe.is_empty())
            } else {
                pipe.free()
            };
            let now = Instant::now();
            let was_empty = pipe.is_empty();
            if max > 0 {
                // Requests are written into the worker's scratch buffer, which every connection uses
                // and so stays in the CPU cache; only what the socket does not take at once is kept.
                let mut scratch = env.scratch.take();
                let mut failed = None;
                if work.fill(&mut scratch, &mut pipe, max, now) > 0 {
                    if was_empty {
                        watch.arm(now + env.timeout);
                    }
                    closing |= env.closes;
                    env.writes.set(env.writes.get() + 1);
                    match io.send_now(&scratch) {
                        Ok(n) => {
                            out.extend_from_slice(&scratch[n..]);
                            batch = n < scratch.len() || io.unsent();
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            out.extend_from_slice(&scratch);
                            batch = true;
                        }
                        Err(e) => failed = Some(e),
                    }
                }
                scratch.clear();
                env.scratch.set(scratch);
                if let Some(e) = failed {
                    break Outcome::Failed(FetchError::io("cannot send the request", &e));
                }
            }
        }

        if pipe.is_empty() {
            watch.disarm();
            if !rx.data().is_empty() {
                break Outcome::Failed(FetchError::new(
                    ErrorKind::Protocol,
                    format!(
                        "the server sent {} bytes that answer no request",
                        rx.data().len()
                    ),
                ));
            }
            rx.release(&env.pool);
            if closing || !work.idle().await {
                break Outcome::Idle;
            }
            if watch.fired() != Fired::No {
                break Outcome::Stopped;
            }
            continue;
        }

        batching.adjust(io, env.refill_at, pipe.len());
        if lends && !batch && batching.lowat <= 1 {
            batching.waiting();
            io.readable().await;
        }
        let buf = rx.take(&env.pool);
        // What the socket did not take at once goes out through the ring, with the next read
        // submitted beside it so neither waits for the other.
        let (res, buf) = if batch {
            let ((written, sent), received) =
                tokio::join!(io.write_all(out), batching.receive(io, buf));
            out = sent;
            out.clear();
            if let (Fired::No, Err(e)) = (watch.fired(), written) {
                rx.put(received.1);
                break Outcome::Failed(FetchError::io("cannot send the request", &e));
            }
            received
        } else {
            batching.receive(io, buf).await
        };
        rx.put(buf);
        env.reads.set(env.reads.get() + 1);
        match watch.fired() {
            Fired::Stop => break Outcome::Stopped,
            Fired::Timeout => break Outcome::Failed(timeout(env.timeout)),
            Fired::No => {}
        }
        let now = Instant::now();
        match res {
            Ok(0) => match decoder.close(rx.data().len()) {
                Ok(true) if !io.closed_cleanly() => break Outcome::Failed(FetchError::new(
                    ErrorKind::Tls,
                    "the server closed the connection without TLS close_notify, so the body that \
                         ends with the connection may be truncated (RFC 9112 §9.8)",
                )),
                Ok(true) => {
                    if let Some(done) = pipe.pop() {
                        work.on_done(done, now);
                    }
                    break Outcome::Closed;
                }
                Ok(false) => {
                    break Outcome::Failed(FetchError::new(
                        ErrorKind::Io,
                        "the server closed the connection before responding",
                    ))
                }
                Err(e) => break Outcome::Failed(e),
            },
            Ok(_) => started = true,
            Err(e) => break Outcome::Failed(FetchError::io("connection failed while reading", &e)),
        }

        // Parse everything buffered before reading again: one read often holds many responses.
        while let Some(front) = pipe.front() {
            let (used, step) = match decoder.decode(rx.data(), front.head_request) {
                Ok(decoded) => decoded,
                Err(e) => break 'conn Outcome::Failed(e),
            };
            let ticket = front.ticket;
            batching.consumed(used);
            match step {
                Step::NeedMore => {
                    rx.consume(used);
                    break;
                }
                Step::Head(head) => {
                    closing |= !head.keep_alive;
                    work.on_head(ticket, &head);
                    rx.consume(used);
                }
                Step::Body(range) => {
                    let res = work.on_body(ticket, &rx.data()[range]);
                    rx.consume(used);
                    if let Err(e) = res {
                        break 'conn Outcome::Failed(e);
                    }
                }
                Step::Done => {
                    rx.consume(used);
                    batching.response_done();
                    if let Some(done) = pipe.pop() {
                        work.on_done(done, now);
                    }
                    started = !rx.data().is_empty();
                    probe = false;
                    if closing {
                        break 'conn Outcome::Closed;
                    }
                    match pipe.front() {
                        Some(next) => watch.arm(next.sent + env.timeout),
                        None => watch.disarm(),
                    }
                }
            }
        }
        batching.read_done(now);
        if lends {
            rx.release(&env.pool);
        }
    };

    rx.release(&env.pool);
    match outcome {
        Outcome::Idle => End::Idle,
        Outcome::Closed => {
            let err = FetchError::new(ErrorKind::Io, "the server closed the connection");
            for f in pipe.drain() {
                work.on_unanswered(f.ticket, Unanswered::Bystander, &err);
            }
            End::Closed
        }
        Outcome::Stopped => {
            let err = FetchError::new(ErrorKind::Io, "stopped");
            for f in pipe.drain() {
                work.on_unanswered(f.ticket, Unanswered::Bystander, &err);
            }
            End::Stopped
        }
        Outcome::Failed(err) => {
            // A failed connection charges every request it leaves unanswered: nothing says the server
            // will do better with them. Only when we ended the connection over one response that broke
            // our own limit are the requests behind it blameless.
            let behind = if err.kind == ErrorKind::TooLarge {
                Unanswered::Bystander
            } else {
                Unanswered::Failed
            };
            let mut rest = pipe.drain();
            if let Some(front) = rest.next() {
                if started {
                    work.on_failed(front.ticket, err.clone());
                } else {
                    work.on_unanswered(front.ticket, Unanswered::Failed, &err);
                }
            }
            for f in rest {
                work.on_unanswered(f.ticket, behind, &err);
            }
            End::Failed
        }
    }
}

/// Fewer, larger reads. A server answering a pipeline writes one response at a time, and a read that is
/// always armed completes once per response: one io_uring op, one task wake-up and one recv per
/// response, most of the client's CPU at `-p 16`. When the responses on a connection have had the same
/// size for a while, the socket's receive low-water mark (SO_RCVLOWAT, which the kernel's readiness
/// check honours) is raised to `refill_at` responses, so one read takes a refill's worth at once.
/// Receives are submitted with POLL_FIRST so the kernel does not first grab the one response already
/// there.
///
/// The mark is only a prediction: it stays below what the responses already requested will bring
/// (`pipe.len() - 1` responses, leaving the one in progress as slack), and if a read still waits much
/// longer than that many responses usually take (the server changed its response size), the mark drops
/// back to one byte, which wakes the read at once, and batching pauses until sizes are stable again.
#[derive(Default)]
struct ReadBatching {
    /// Pipelining is on (`-p` above 1): without it a read never waits for more than one response.
    enabled: bool,
    /// Bytes of the response being received so far (head and body as consumed).
    current: usize,
    /// Size of the last complete response, and how many in a row had that size.
    last: usize,
    same: u32,
    /// SO_RCVLOWAT as last set on the socket (0 and 1 both mean the kernel default).
    lowat: usize,
    /// Average wait per response of recent reads (a moving average), and this read's start and count.
    pace: Duration,
    submitted: Option<Instant>,
    completed: u32,
}

/// Responses of one size in a row before batching starts.
const STABLE: u32 = 16;
/// A batched read is rescued after waiting this many times as long as its responses usually take, and
/// never sooner than `RESCUE_MIN`.
const RESCUE_FACTOR: u32 = 4;
const RESCUE_MIN: Duration = Duration::from_millis(10);
/// Highest mark: well inside a read buffer and the socket's receive buffer.
const MAX_LOWAT: usize = READ_BUF / 2;

impl ReadBatching {
    fn consumed(&mut self, bytes: usize) {
        self.current += bytes;
    }

    fn response_done(&mut self) {
        if self.current == self.last {
            self.same = self.same.saturating_add(1);
        } else {
            self.last = self.current;
            self.same = 0;
        }
        self.current = 0;
        self.completed += 1;
    }

    /// The read that started at `submitted` has been parsed; fold its wait per response into the pace.
    fn read_done(&mut self, now: Instant) {
        if let (Some(start), n @ 1..) = (self.submitted.take(), self.completed) {
            let sample = now.saturating_duration_since(start) / n;
            self.pace = if self.pace.is_zero() {
                sample
            } else {
                (self.pace * 7 + sample) / 8
            };
        }
        self.completed = 0;
    }

    /// Sets the mark for the next read, with `in_flight` responses expected.
    fn adjust(&mut self, io: &Transport, refill_at: usize, in_flight: usize) {
        if !self.enabled {
            return;
        }
        let want = if self.same >= STABLE && in_flight >= 2 {
            (refill_at.min(in_flight - 1) * self.last).clamp(1, MAX_LOWAT)
        } else {
            1
        };
        if want != self.lowat.max(1) {
            io.set_recv_lowat(want);
            self.lowat = want;
        }
    }

    /// A read that waits for one response starts waiting now (the reader may wait for the bytes
    /// before it submits the read itself: see `reads_arrived_bytes`).
    fn waiting(&mut self) {
        // Only reads that wait for one response measure the pace (a batched read's wait includes
        // the batching itself), and only where batching can happen at all.
        if self.enabled && self.lowat <= 1 && self.submitted.is_none() {
            self.submitted = Some(Instant::now());
        }
    }

    async fn receive(&mut self, io: &Transport, buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
        if self.lowat <= 1 {
            self.waiting();
            return io.read(buf).await;
        }
        let responses = (self.lowat / self.last.max(1)).max(1) as u32;
        let patience = (self.pace * responses * RESCUE_FACTOR).max(RESCUE_MIN);
        let read = io.read(buf);
        tokio::pin!(read);
        tokio::select! {
            biased;
            done = &mut read => done,
            _ = tokio::time::sleep(patience) => {
                // Lowering the mark makes the kernel re-check readiness (tcp_set_rcvlowat), so the
                // pending read completes with what has arrived. The read itself is never dropped.
                io.set_recv_lowat(1);
                self.lowat = 1;
                self.same = 0;
                read.await
            }
        }
    }
}

fn timeout(limit: Duration) -> FetchError {
    FetchError::new(
        ErrorKind::Timeout,
        format!(
            "no complete response within {:.1}s (--timeout); the server is slow or stalled, raise --timeout to wait longer",
            limit.as_secs_f64()
        ),
    )
}

/// A connection's received bytes: `buf[start..]` is not yet consumed. The buffer is borrowed from the
/// worker's pool only while a response is expected, so idle connections hold no read buffer.
#[derive(Default)]
struct RecvBuf {
    buf: Option<Vec<u8>>,
    start: usize,
}

impl RecvBuf {
    fn data(&self) -> &[u8] {
        match &self.buf {
            Some(b) => &b[self.start..],
            None => &[],
        }
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if let Some(b) = &mut self.buf {
            if self.start == b.len() {
                b.clear();
                self.start = 0;
            }
        }
    }

    /// The buffer to read into, with room at its end.
    fn take(&mut self, pool: &RefCell<Vec<Vec<u8>>>) -> Vec<u8> {
        let mut b = self.buf.take().unwrap_or_else(|| {
            pool.borrow_mut()
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(READ_BUF))
        });
        // Keep reads at the front of the buffer: moving a partial response (usually under 1 KiB) is
        // cheaper than letting reads walk through the whole buffer, which spreads the kernel's copies
        // and our parsing over the whole buffer of every connection and out of the CPU caches.
        let held = b.len() - self.start;
        if self.start > 0 && (held <= COMPACT_BELOW || b.capacity() - b.len() < MIN_SPARE) {
            b.copy_within(self.start.., 0);
            b.truncate(held);
            self.start = 0;
        }
        // A head larger than the buffer: grow (the decoder caps heads at 64 KiB).
        if b.capacity() - b.len() < MIN_SPARE {
            b.reserve(READ_BUF);
        }
        b
    }

    fn put(&mut self, buf: Vec<u8>) {
        self.buf = Some(buf);
    }

    /// Returns the buffer to the pool when it holds nothing.
    fn release(&mut self, pool: &RefCell<Vec<Vec<u8>>>) {
        if self.data().is_empty() {
            if let Some(mut b) = self.buf.take() {
                b.clear();
                self.start = 0;
                let mut pool = pool.borrow_mut();
                if b.capacity() <= 4 * READ_BUF && pool.len() < POOL_MAX {
                    pool.push(b);
                }
            }
        }
    }
}
