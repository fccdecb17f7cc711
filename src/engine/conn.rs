//! THE hot path, as a pump: write what the connection allows, receive, feed the bytes to the sans-IO
//! `http::client::Connection`, and hand its events to the `Workload`. Every HTTP rule (what may be
//! written, what a byte means, who is charged when it ends) lives in `http::client`; this file only
//! moves bytes, lends read buffers and arms the watchdog. The same pump serves `fetch` and `bench`. Steady
//! state allocates nothing: requests go through the worker's scratch buffer, the pipeline FIFO is
//! reused, read buffers come from the worker's pool, heads are parsed in place.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use super::deadline::{Fired, Watch, Watchdog};
use crate::error::FetchError;
use crate::http::client::{Connection, Event, Fate, Rules};
use crate::http::pipeline::InFlight;
use crate::http::response::Head;
use crate::net::Transport;

pub(crate) use crate::http::client::End;

/// Size of a pooled read buffer: one read takes a full window of typical small responses (16 × 1 KiB).
const READ_BUF: usize = 32 * 1024;
/// Grow the buffer when less than this is free at its end, so reads stay large.
const MIN_SPARE: usize = 4 * 1024;
/// Read buffers kept for reuse per worker: enough for every busy connection of a typical run; past a
/// burst of many more, the rest are freed, so idle connections do not keep a burst's memory.
const POOL_MAX: usize = 256;
/// Move unparsed bytes to the front before a read when there are at most this many.
const COMPACT_BELOW: usize = 4 * 1024;

/// What a connection serves: where requests come from, what a response means, and waiting when
/// there is nothing to send. Callbacks are synchronous and cheap; only `idle` waits.
pub(crate) trait Workload {
    type Ticket: Copy;

    /// Appends up to `max` request heads to `out`, telling `conn` of each (`Connection::sent`, at
    /// `now`). Returns how many were added.
    fn fill(
        &self,
        out: &mut Vec<u8>,
        conn: &mut Connection<Self::Ticket>,
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

    /// The connection ended with this request on it, for `err`; `fate` says whether its response had
    /// begun (no retry) or why it went unanswered (`http::pipeline::verdict` decides on a resend).
    fn on_left(&self, ticket: Self::Ticket, fate: Fate, err: &FetchError);
}

/// A worker's resources shared by all its connections.
pub(crate) struct Env {
    pub pool: RefCell<Vec<Vec<u8>>>,
    pub watchdog: Watchdog,
    pub rules: Rules,
    pub reads: Cell<u64>,
    pub writes: Cell<u64>,
    pub scratch: Cell<Vec<u8>>,
}

impl Env {
    pub fn new(timeout: Duration, depth: usize, refill_at: usize) -> Env {
        Env {
            pool: RefCell::new(Vec::new()),
            watchdog: Watchdog::default(),
            rules: Rules {
                depth,
                refill_at,
                timeout,
                closes: false,
                idempotent: true,
            },
            reads: Cell::new(0),
            writes: Cell::new(0),
            scratch: Cell::new(Vec::new()),
        }
    }
}

/// Runs one connection until it has nothing to do, the server closes it, or it fails. With `probe`, the
/// first request goes alone (RFC 9112 §9.3.2, after a failed connection).
pub(crate) async fn drive<W: Workload>(env: &Env, work: &W, io: &Transport, probe: bool) -> End {
    let registration = env.watchdog.register(io.kill());
    let watch = &registration.watch;
    let mut conn = Connection::new(env.rules, probe);
    // What the socket did not take at once, for `flush`.
    let mut out: Vec<u8> = Vec::new();
    let mut rx = RecvBuf::default();
    let mut batching = ReadBatching {
        enabled: env.rules.depth > 1,
        ..ReadBatching::default()
    };

    loop {
        let flush = match write(env, work, io, &mut conn, &mut out) {
            Ok(flush) => flush,
            Err(e) => {
                conn.fail(e);
                break;
            }
        };
        watch.set(conn.deadline());
        if conn.in_flight() == 0 {
            rx.release(&env.pool);
            if !conn.is_idle() || !work.idle().await {
                conn.end_idle();
                break;
            }
            if watch.fired() != Fired::No {
                conn.stop();
                break;
            }
            continue;
        }

        batching.adjust(io, env.rules.refill_at, conn.in_flight());
        let take = || rx.take(&env.pool);
        // What the socket did not take at once goes out through the ring, with the next receive
        // submitted beside it so neither waits for the other.
        let (res, buf) = if flush {
            let ((written, sent), received) = tokio::join!(
                io.flush(std::mem::take(&mut out)),
                batching.receive(io, take)
            );
            out = sent;
            out.clear();
            if let (Fired::No, Err(e)) = (watch.fired(), written) {
                rx.put(received.1);
                conn.fail(FetchError::io("cannot send the request", &e));
                break;
            }
            received
        } else {
            batching.receive(io, take).await
        };
        rx.put(buf);
        env.reads.set(env.reads.get() + 1);
        match watch.fired() {
            Fired::Stop => {
                conn.stop();
                break;
            }
            Fired::Timeout => {
                conn.time_out();
                break;
            }
            Fired::No => {}
        }
        let now = Instant::now();
        match res {
            Ok(0) => {
                if let Some(done) = conn.eof(rx.data().len(), io.closed_cleanly()) {
                    work.on_done(done, now);
                }
                break;
            }
            Ok(_) => {}
            Err(e) => {
                conn.fail(FetchError::io("connection failed while reading", &e));
                break;
            }
        }
        if !deliver(work, &mut conn, &mut rx, &mut batching, watch, now) {
            break;
        }
        batching.read_done(now);
        rx.release(&env.pool);
    }

    rx.release(&env.pool);
    let mut left = conn.finish();
    while let Some((ticket, fate)) = left.next() {
        work.on_left(ticket, fate, &left.error);
    }
    left.end
}

/// Writes what the connection allows now. Returns whether bytes wait for `flush`.
fn write<W: Workload>(
    env: &Env,
    work: &W,
    io: &Transport,
    conn: &mut Connection<W::Ticket>,
    out: &mut Vec<u8>,
) -> Result<bool, FetchError> {
    let max = conn.writable();
    if max == 0 {
        return Ok(false);
    }
    // Requests are written into the worker's scratch buffer, which every connection uses and so stays
    // in the CPU cache; only what the socket does not take at once is kept.
    let mut scratch = env.scratch.take();
    let res = if work.fill(&mut scratch, conn, max, Instant::now()) == 0 {
        Ok(false)
    } else {
        env.writes.set(env.writes.get() + 1);
        match io.send_now(&scratch) {
            Ok(sent) => {
                out.extend_from_slice(&scratch[sent.taken..]);
                Ok(sent.flush)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                out.extend_from_slice(&scratch);
                Ok(true)
            }
            Err(e) => Err(FetchError::io("cannot send the request", &e)),
        }
    };
    scratch.clear();
    env.scratch.set(scratch);
    res
}

/// Feeds everything buffered to the connection before receiving again (one read often holds many
/// responses) and hands each event to the workload. False when the connection has ended.
fn deliver<W: Workload>(
    work: &W,
    conn: &mut Connection<W::Ticket>,
    rx: &mut RecvBuf,
    batching: &mut ReadBatching,
    watch: &Watch,
    now: Instant,
) -> bool {
    loop {
        let (used, event) = conn.decode(rx.data());
        batching.consumed(used);
        match event {
            Event::NeedMore => {
                rx.consume(used);
                return true;
            }
            Event::Ended => return false,
            Event::Head(ticket, head) => {
                work.on_head(ticket, &head);
                rx.consume(used);
            }
            Event::Body(ticket, range) => {
                let res = work.on_body(ticket, &rx.data()[range]);
                rx.consume(used);
                if let Err(e) = res {
                    conn.fail(e);
                    return false;
                }
            }
            Event::Done(done) => {
                rx.consume(used);
                batching.response_done();
                work.on_done(done, now);
                watch.set(conn.deadline());
            }
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

    /// A read that waits for one response starts waiting now (a direct socket waits for its bytes
    /// before it takes a buffer: see `Transport::receive`).
    fn waiting(&mut self) {
        // Only reads that wait for one response measure the pace (a batched read's wait includes
        // the batching itself), and only where batching can happen at all.
        if self.enabled && self.lowat <= 1 && self.submitted.is_none() {
            self.submitted = Some(Instant::now());
        }
    }

    async fn receive(
        &mut self,
        io: &Transport,
        take: impl FnOnce() -> Vec<u8>,
    ) -> (std::io::Result<usize>, Vec<u8>) {
        if self.lowat <= 1 {
            self.waiting();
            return io.receive(take).await;
        }
        let responses = (self.lowat / self.last.max(1)).max(1) as u32;
        let patience = (self.pace * responses * RESCUE_FACTOR).max(RESCUE_MIN);
        let read = io.receive(take);
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
