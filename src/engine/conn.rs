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
        // A direct socket's bytes are parsed where they landed, in its ring's buffers; the others are
        // received into `rx`.
        let in_place = io.in_place();
        let take = || rx.take(&env.pool);
        // `copied`: None when the bytes wait in the transport's buffers (in place), else what a
        // copying receive returned, with its buffer.
        let (send_failed, copied) = {
            // Pinned here and lent by reference: moving the future into `batching.receive` cost a
            // memcpy of its state per response (1% of the samples at depth 1).
            let receive = std::pin::pin!(async {
                if in_place {
                    io.wait_received().await;
                    None
                } else {
                    Some(io.receive(take).await)
                }
            });
            // What the socket did not take at once goes out through the ring, with the next
            // receive submitted beside it so neither waits for the other.
            if flush {
                let ((written, sent), copied) = tokio::join!(
                    io.flush(std::mem::take(&mut out)),
                    batching.receive(io, receive)
                );
                out = sent;
                out.clear();
                (written.err(), copied)
            } else {
                (None, batching.receive(io, receive).await)
            }
        };
        let res = copied.map(|(res, buf)| {
            rx.put(buf);
            res
        });
        if let (Fired::No, Some(e)) = (watch.fired(), send_failed) {
            // A server may answer before it has read the whole request (413 while a large body is
            // still being sent) and then close: its answer counts; the failed send only ends the
            // connection.
            let now = Instant::now();
            let _ = received(work, conn, rx, &env.pool, &mut batching, now, io, res);
            conn.fail(FetchError::io("cannot send the request", &e));
            break;
        }
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
        match received(work, conn, rx, &env.pool, &mut batching, now, io, res) {
            Received::More => {}
            Received::Ended => break,
            Received::Eof => {
                if let Some(done) = conn.eof(rx.data().len(), io.closed_cleanly()) {
                    work.on_done(done, now);
                }
                break;
            }
            Received::Failed(e) => {
                conn.lost(FetchError::io("connection failed while reading", &e));
                break;
            }
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

/// What a receive brought, once delivered.
enum Received {
    /// Bytes, delivered: the connection goes on.
    More,
    /// Bytes, and the connection ended on them (`deliver`'s false).
    Ended,
    /// The end of the stream, with nothing before it.
    Eof,
    /// The receive failed.
    Failed(std::io::Error),
}

/// Delivers what a receive brought: from `rx` after a copying receive that returned `copied`, or
/// (None) in place from the transport's buffers.
#[allow(clippy::too_many_arguments)]
fn received<W: Workload>(
    work: &W,
    conn: &mut Connection<W::Ticket>,
    rx: &mut RecvBuf,
    pool: &Pool,
    batching: &mut ReadBatching,
    now: Instant,
    io: &Transport,
    copied: Option<std::io::Result<usize>>,
) -> Received {
    let Some(res) = copied else {
        let mut alive = true;
        return match io.each_received(|chunk| {
            alive = deliver_chunk(work, conn, rx, pool, batching, now, chunk);
            alive
        }) {
            Ok(true) if alive => Received::More,
            Ok(true) => Received::Ended,
            Ok(false) => Received::Eof,
            Err(e) => Received::Failed(e),
        };
    };
    match res {
        Ok(0) => Received::Eof,
        Ok(_) if deliver(work, conn, rx, batching, now) => Received::More,
        Ok(_) => Received::Ended,
        Err(e) => Received::Failed(e),
    }
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
    let (used, alive) = feed(work, conn, rx.data(), batching, now);
    rx.consume(used);
    alive
}

/// Delivers `chunk`, received bytes the transport lends in place: parsed where they lie when
/// nothing is left from before (only a response cut off at the chunk's end is copied, into `rx`,
/// to be completed by the next), else appended to what is left and delivered from `rx`. False when
/// the connection has ended.
fn deliver_chunk<W: Workload>(
    work: &W,
    conn: &mut Connection<W::Ticket>,
    rx: &mut RecvBuf,
    pool: &Pool,
    batching: &mut ReadBatching,
    now: Instant,
    chunk: &[u8],
) -> bool {
    if !rx.data().is_empty() {
        rx.append(pool, chunk);
        return deliver(work, conn, rx, batching, now);
    }
    let (used, alive) = feed(work, conn, chunk, batching, now);
    if alive && used < chunk.len() {
        rx.append(pool, &chunk[used..]);
    }
    alive
}

/// Decodes `data` and hands each event to the workload: the bytes consumed, and false once the
/// connection has ended (on `Ended`, or a body the workload refused).
fn feed<W: Workload>(
    work: &W,
    conn: &mut Connection<W::Ticket>,
    data: &[u8],
    batching: &mut ReadBatching,
    now: Instant,
) -> (usize, bool) {
    let mut at = 0;
    loop {
        let rest = &data[at..];
        let (used, event) = conn.decode(rest);
        batching.consumed(used);
        match event {
            Event::NeedMore => return (at + used, true),
            Event::Ended => return (at, false),
            Event::Head(ticket, head) => work.on_head(ticket, &head, &rest[..used]),
            Event::Body(ticket, range) => {
                if let Err(e) = work.on_body(ticket, &rest[range]) {
                    conn.fail(e);
                    return (at + used, false);
                }
            }
            Event::Done(done) => {
                batching.response_done();
                work.on_done(done, now);
            }
        }
        at += used;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Writes down what it is told, merging a response's body pieces (how bytes are cut into reads is
    /// not an event).
    #[derive(Default)]
    struct Record(RefCell<Vec<String>>);

    impl Record {
        fn push(&self, event: String) {
            self.0.borrow_mut().push(event);
        }
    }

    impl Workload for Record {
        type Ticket = u32;
        fn fill(&self, _: &mut Vec<u8>, _: &mut Connection<u32>, _: usize, _: Instant) -> usize {
            0
        }
        async fn idle(&self) -> bool {
            false
        }
        fn on_head(&self, t: u32, head: &Head, _: &[u8]) {
            self.push(format!("head {t} {}", head.status));
        }
        fn on_body(&self, t: u32, data: &[u8]) -> Result<(), FetchError> {
            let text = String::from_utf8_lossy(data);
            let mut events = self.0.borrow_mut();
            let prefix = format!("body {t} ");
            match events.last_mut() {
                Some(last) if last.starts_with(&prefix) => last.push_str(&text),
                _ => events.push(prefix + &text),
            }
            Ok(())
        }
        fn on_done(&self, done: InFlight<u32>, _: Instant) {
            self.push(format!("done {}", done.ticket));
        }
        fn on_left(&self, t: u32, _: Fate, _: &FetchError) {
            self.push(format!("left {t}"));
        }
    }

    const STREAM: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n\
        Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nHTTP/1.1 404 Not Found\r\n\
        Content-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz";

    /// Delivers `chunks` as a direct socket lends them, in place, and returns what the workload was
    /// told and how many bytes were left over in `rx`.
    fn deliver_chunks(chunks: &[&[u8]]) -> (Vec<String>, usize) {
        let rules = Rules {
            depth: 4,
            refill_at: 1,
            timeout: Duration::from_secs(5),
            closes: false,
            idempotent: true,
        };
        let mut conn = Connection::new(rules, Start::Open);
        let now = Instant::now();
        for t in 0..4 {
            conn.sent(t, now, false);
        }
        let work = Record::default();
        let pool = Pool::new(64);
        let mut rx = RecvBuf::default();
        let mut batching = ReadBatching::new(true);
        for chunk in chunks {
            assert!(deliver_chunk(
                &work,
                &mut conn,
                &mut rx,
                &pool,
                &mut batching,
                now,
                chunk
            ));
        }
        (work.0.into_inner(), rx.data().len())
    }

    /// Parsing in place gives the same events however the bytes are cut into chunks: at every split
    /// offset into two, and at every pair of offsets into three (a response may begin in one chunk,
    /// continue in `rx`, and end in a third).
    #[test]
    fn in_place_delivery_is_the_same_at_every_split() {
        let (whole, left) = deliver_chunks(&[STREAM]);
        assert_eq!(
            whole,
            [
                "head 0 200",
                "body 0 hello",
                "done 0",
                "head 1 200",
                "body 1 abcde",
                "done 1",
                "head 2 404",
                "done 2",
                "head 3 200",
                "body 3 xyz",
                "done 3"
            ]
        );
        assert_eq!(left, 0);
        for i in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(i);
            assert_eq!(deliver_chunks(&[a, b]), (whole.clone(), 0), "split at {i}");
            for j in i..=STREAM.len() {
                let (b, c) = STREAM[i..].split_at(j - i);
                assert_eq!(
                    deliver_chunks(&[a, b, c]),
                    (whole.clone(), 0),
                    "split at {i} and {j}"
                );
            }
        }
    }

    /// A chunk that ends inside a response leaves that response's unconsumed bytes in `rx` (copied
    /// out of the transport's buffer, which goes back to its pool), and nothing more.
    #[test]
    fn a_response_cut_off_in_place_is_copied_and_finished_later() {
        // Inside the last head's terminator: that head, incomplete, is what is left.
        let cut = STREAM.len() - 4;
        let last = STREAM.len() - b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz".len();
        let (events, left) = deliver_chunks(&[&STREAM[..cut]]);
        assert_eq!(events.last().map(String::as_str), Some("done 2"));
        assert_eq!(left, cut - last);
        assert_eq!(
            deliver_chunks(&[&STREAM[..cut], &STREAM[cut..]]).0.len(),
            11
        );
    }
}
