//! THE hot path, as a pump: write what the connection allows, receive, feed the bytes to the sans-IO
//! `http::client::Connection`, and hand its events to the `Workload`. Every HTTP rule (what may be
//! written, what a byte means, who is charged when it ends) lives in `http::client`; this file only
//! moves bytes, lends read buffers and arms the watchdog. The same pump serves `fetch` and `bench`. Steady
//! state allocates nothing: requests go through the worker's scratch buffer, the pipeline FIFO is
//! reused, read buffers come from the worker's pool, heads are parsed in place.

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::batching::ReadBatching;
use super::deadline::{Fired, Watch, Watchdog};
use crate::error::FetchError;
use crate::http::client::{Connection, Event, Fate, Outcome, Rules, Start};
use crate::http::pipeline::InFlight;
use crate::http::response::Head;
use crate::net::buffers::{Pool, RecvBuf, READ_BUF};
use crate::net::Transport;

pub(crate) use crate::http::client::End;

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

    /// The head of the response to `ticket`; `raw` is its bytes (after any interim 1xx heads), for
    /// the rare workload that needs a header the codec does not keep (`fetch -L`'s Location).
    fn on_head(&self, ticket: Self::Ticket, head: &Head, raw: &[u8]);

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
    /// Read buffers, lent to connections while a response is expected.
    pub pool: Pool,
    pub watchdog: Watchdog,
    pub rules: Rules,
    pub reads: Cell<u64>,
    pub writes: Cell<u64>,
    pub scratch: Cell<Vec<u8>>,
}

impl Env {
    pub fn new(timeout: Duration, depth: usize, refill_at: usize) -> Env {
        Env {
            pool: Pool::new(READ_BUF),
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

/// Runs one connection until it has nothing to do, the server closes it, or it fails; `start` says
/// what earlier connections to the origin showed (`http::client::Start`).
pub(crate) async fn drive<W: Workload>(
    env: &Env,
    work: &W,
    io: &Transport,
    start: Start,
) -> Outcome {
    let registration = env.watchdog.register(io.kill());
    let mut conn = Connection::new(env.rules, start);
    let mut rx = RecvBuf::default();
    let pumped = pump(env, work, io, &mut conn, &mut rx, &registration.watch);
    if let Err(bug) = super::panic::catch(pumped).await {
        conn.panicked(bug);
    }
    rx.release(&env.pool);
    let mut left = conn.finish();
    while let Some((ticket, fate)) = left.next() {
        work.on_left(ticket, fate, &left.error);
    }
    Outcome {
        end: left.end,
        answered: left.answered,
    }
}

/// The pump's loop, until the connection has ended (its state says how).
async fn pump<W: Workload>(
    env: &Env,
    work: &W,
    io: &Transport,
    conn: &mut Connection<W::Ticket>,
    rx: &mut RecvBuf,
    watch: &Watch,
) {
    // What the socket did not take at once, for `flush`.
    let mut out: Vec<u8> = Vec::new();
    let mut batching = ReadBatching::new(env.rules.depth > 1);

    loop {
        let flush = match write(env, work, io, conn, &mut out) {
            Ok(flush) => flush,
            Err(e) => {
                conn.fail(e);
                break;
            }
        };
        // The one place the deadline is published: after every write and every batch of responses
        // (nothing awaits between them and here, so the watchdog never sees a stale one).
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
                let (got, buf) = received;
                rx.put(buf);
                // A server may answer before it has read the whole request (413 while a large body
                // is still being sent) and then close: its answer counts; the failed send only ends
                // the connection.
                if matches!(got, Ok(n) if n > 0) {
                    deliver(work, conn, rx, &mut batching, Instant::now());
                }
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
                conn.lost(FetchError::io("connection failed while reading", &e));
                break;
            }
        }
        if !deliver(work, conn, rx, &mut batching, now) {
            break;
        }
        batching.read_done(now);
        rx.release(&env.pool);
    }
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
                work.on_head(ticket, &head, &rx.data()[..used]);
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
            }
        }
    }
}
