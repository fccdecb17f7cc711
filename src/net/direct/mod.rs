//! The direct-descriptor transport: sockets that live only in an io_uring's fixed-file table, so one
//! process can hold far more connections than RLIMIT_NOFILE allows descriptors (../shared/C1M.md).
//!
//! Each worker owns one [`Ring`]: an io-uring 0.7 ring beside tokio-uring's own, with a sparse table of
//! `slots` fixed files and a provided-buffer ring. One driver task per worker notices completions
//! through the ring's fd in tokio's epoll (COOP_TASKRUN; never DEFER_TASKRUN, whose deferred work only
//! runs inside `io_uring_enter(GETEVENTS)`, which nothing here calls) and submits what connections
//! queued since its last turn, so a tick's worth of sends goes in one `io_uring_enter`.
//!
//! - Connect is one linked chain on an explicit slot: Socket → SetSockOpt(TCP_NODELAY) →
//!   [SetSockOpt(IP_BIND_ADDRESS_NO_PORT) → Bind] → Connect; only Connect posts on success.
//! - Receive is one multishot RECV per connection, armed on the first read and kept armed: buffers
//!   come from the worker's pool only when bytes arrive, so an idle connection owns none. The pool is
//!   shared, so a connection that holds its share of it unread (a peer flooding a connection nobody
//!   reads) has its receive cancelled until it has read what it holds, and the pool is eight buffer
//!   groups of one share each, a receive armed in the fullest, so that the kernel stops a flood at one
//!   group even before the cancel lands; ENOBUFS (the receive's group ran dry)
//!   ends the multishot, and the next read re-arms it only once a buffer has come back, so an empty
//!   pool parks its readers rather than spinning them (`slots::Receiving`).
//! - Send is SEND with MSG_WAITALL (a short send is retried by the kernel), one in flight per
//!   connection, from the connection's send buffer, kept until the completion. `send_now` does not
//!   wait for that completion (it only reports a failure), so a request costs one task wake-up.
//! - Close cancels the armed receive (and a connect still under way) and closes the slot once every
//!   operation on it has completed (receive, send, shutdown, cancel): closing a fixed file frees the
//!   slot for the next connect or accept at once, while an operation still in flight would go on, on
//!   the old socket or, resolved late, on the next connection's (`slots::State`).
//!
//! Everything here is single-threaded (`Rc`, `Cell`): a ring belongs to one worker.
//!
//! Where things live. `Ring` is one type; each file below adds the `impl Ring` block of its concept, so
//! a concept's code sits together while the ring's fields stay in one place (here):
//! - `mod.rs`: `Ring`'s fields and construction, `RingSize`, `Stats`, and the kernel check
//!   (`require`, `available`).
//! - `user_data.rs`: what a completion's `user_data` says (operation kind, slot, generation).
//! - `driver.rs`: the driver task: submit, reap, and the dispatch of each completion to its concept.
//!   Split from `mod.rs` because it is the one loop every completion goes through.
//! - `slots.rs`: the slot table, what a connection shares with the driver, and the states of a slot
//!   (`State`) and of the operations on it (`Inbound`, `Sending`, `Connecting`): when a slot is
//!   released, and the one rule (`Disposal`) for when it may be reused. These are plain enums with
//!   pure transitions, tested there without a ring.
//! - `connect.rs`: the connect chain and a connect abandoned by its future.
//! - `accept.rs`: `serve`'s multishot accept into slots the kernel picks.
//! - `conn.rs`: `Conn` and `Handle`: receive, send, shutdown, hold, close on drop, and the driver's
//!   side of receive and send completions.
//! - `buffers.rs`: the provided-buffer ring, and all of its `unsafe`.

mod accept;
mod buffers;
mod conn;
mod connect;
mod driver;
mod slots;
mod user_data;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::task::Waker;

use io_uring7::{cqueue, opcode, IoUring};
use tokio::io::unix::AsyncFd;

use buffers::BufPool;
use slots::Slot;

pub use conn::{Conn, Handle};

/// Sizes of a worker's ring and pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSize {
    /// Fixed-file slots: connections this ring can hold (at most RLIMIT_NOFILE).
    pub slots: u32,
    /// The provided buffers.
    pub pool: PoolSize,
    pub sq: u32,
    pub cq: u32,
}

/// The pool memory of a load ring (`RingSize::load`): 1,024 buffers of 16 KiB, or more and smaller
/// ones for a ring with many responses arriving at once (`load_pool`).
const LOAD_POOL_BYTES: u32 = 16 << 20;

/// A ring's buffer pool: `count` buffers (a power of two) of `size` bytes, consumed incrementally
/// or whole (see `buffers`); also what `--ring-buffers` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSize {
    pub count: u16,
    pub size: u32,
    pub incremental: bool,
}

/// A load ring's pool for `receivers` responses that may arrive at once (bench's connections at
/// depth 1, the requests in flight for a fetch). Up to 512 receivers: 1,024 buffers of 16 KiB taken
/// whole, where a pipelined batch lands in one buffer. Past that, each receive taking a whole buffer
/// would run the pool dry (every response takes one; each receive that lands on a dry group ends with
/// ENOBUFS and is armed again: 8.8 such ends per response with 4,096 requests in flight over 10,000
/// origins). So where the kernel consumes buffers incrementally (`incremental`, Linux 6.12: a
/// receive takes only the bytes it needs) the same 1,024 of 16 KiB are shared that way (300,000 URLs
/// over 10,000 origins at `-c 4096 -p 16`: 0.03 such ends per response), and elsewhere the pool has
/// two buffers per receiver, up to 8,192 of 2 KiB, in the same 16 MiB. Not incremental below 512
/// receivers: a pipelined bench against nginx spent 6–8% more CPU per response with it (the whole
/// 16 MiB cycles through the cache instead of the first pages of each buffer).
pub fn load_pool(receivers: usize, incremental: bool) -> PoolSize {
    let whole = |count: u16| PoolSize {
        count,
        size: LOAD_POOL_BYTES / u32::from(count),
        incremental: false,
    };
    if receivers <= 512 {
        return whole(1024);
    }
    if incremental {
        return PoolSize {
            incremental: true,
            ..whole(1024)
        };
    }
    whole(
        receivers
            .saturating_mul(2)
            .clamp(1024, 8192)
            .next_power_of_two() as u16,
    )
}

/// Whether this kernel consumes provided buffers incrementally (`IOU_PBUF_RING_INC`): found once, by
/// registering a two-buffer pool with a scratch ring.
pub fn incremental_buffers() -> bool {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        let Ok(pool) = BufPool::new(2, 64) else {
            return false;
        };
        // Declared after the pool, so dropped before it (the registration points into the pool).
        let Ok(ring) = IoUring::new(2) else {
            return false;
        };
        pool.register(&ring.submitter(), true).is_ok() && pool.incremental()
    })
}

impl RingSize {
    /// A ring for a load test or a fetch: few connections, large buffers for a pipeline's responses.
    pub fn load(slots: u32) -> RingSize {
        RingSize {
            slots,
            pool: load_pool(0, false),
            sq: 4096,
            cq: 32768,
        }
    }

    /// A ring for holding many mostly idle connections (`bench --hold`, `serve` at scale): the fixed
    /// memory per ring is what each connection pays, so the pool and queues are small. Larger
    /// responses still arrive, over several buffers.
    pub fn scale(slots: u32) -> RingSize {
        RingSize {
            slots,
            pool: PoolSize {
                count: 128,
                size: 2048,
                incremental: false,
            },
            sq: 512,
            cq: 4096,
        }
    }
}

struct RingFd(RawFd);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Counters for `-v` and the tests.
#[derive(Default, Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub submits: u64,
    pub completions: u64,
    /// Multishot receives ended by an empty buffer pool.
    pub enobufs: u64,
    /// Receives armed (once per connection, again after each end).
    pub rearms: u64,
    /// Receives cancelled because their connection held its share of the pool unread.
    pub capped: u64,
    /// Pool buffers still lent out when the ring finished (a leak unless 0).
    pub lent: u64,
    /// Slots whose close had not completed when the ring finished (a leak unless 0).
    pub unclosed: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.submits += o.submits;
        self.completions += o.completions;
        self.enobufs += o.enobufs;
        self.rearms += o.rearms;
        self.capped += o.capped;
        self.lent += o.lent;
        self.unclosed += o.unclosed;
    }
}

/// A worker's direct-descriptor ring. Fields drop in order: the epoll registration, then the ring (the
/// kernel stops using the buffers), then the buffers.
pub struct Ring {
    notify: AsyncFd<RingFd>,
    uring: RefCell<IoUring>,
    pool: BufPool,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    dirty: Cell<bool>,
    flush: tokio::sync::Notify,
    /// A slot came free: wakes a connect waiting for one.
    freed: tokio::sync::Notify,
    /// A close completed (its local port is free): wakes every connect that found none.
    closed: tokio::sync::Notify,
    /// Slots whose close is under way (they come free soon).
    closing: Cell<usize>,
    stopping: Cell<bool>,
    scratch: RefCell<Vec<cqueue::Entry>>,
    stats: Cell<Stats>,
    /// `serve`: slots the kernel allocated for accepted connections, not yet taken, and the listeners
    /// whose multishot accept is armed.
    accepted: RefCell<VecDeque<Result<u32, i32>>>,
    acceptor: Cell<Option<Waker>>,
    listeners: RefCell<Vec<(RawFd, bool)>>,
    /// `listen_one_at_a_time`: single accepts, armed only while a slot is free.
    single_accepts: Cell<bool>,
    /// `peek_held`: looks still in flight, those that found the connection not quietly open, and a
    /// wake-up when the last completes.
    peeking: Cell<usize>,
    peeked_gone: Cell<u64>,
    peeks_done: tokio::sync::Notify,
    /// Where a peek's byte lands (never read). A peek never waits in the kernel (MSG_DONTWAIT: it is
    /// answered inside the submit that issues it), and this field comes after `uring`, so it is
    /// freed after the ring in any case.
    peek_byte: Box<std::cell::UnsafeCell<[u8; 1]>>,
}

impl Ring {
    /// Builds the ring, its fixed-file table and its buffer pool, and registers its fd with tokio's
    /// reactor. Call inside the worker's runtime.
    pub fn new(size: RingSize, single_issuer: bool) -> io::Result<Rc<Ring>> {
        let mut b = IoUring::builder();
        b.setup_coop_taskrun().setup_cqsize(size.cq).setup_clamp();
        if single_issuer {
            b.setup_single_issuer();
        }
        let uring = b.build(size.sq)?;
        uring.submitter().register_files_sparse(size.slots)?;
        let pool = BufPool::new(size.pool.count, size.pool.size)?;
        pool.register(&uring.submitter(), size.pool.incremental)?;
        let fd = uring.as_raw_fd();
        // SAFETY: the fd is the ring's, which lives in `uring`; `notify` is declared first, so it is
        // deregistered before the ring (and its fd) is dropped.
        let notify =
            unsafe { AsyncFd::register_with_interest(RingFd(fd), tokio::io::Interest::READABLE) }
                .map_err(|e| e.into_parts().1)?;
        let slots = (0..size.slots).map(|_| Slot::free()).collect();
        Ok(Rc::new(Ring {
            notify,
            uring: RefCell::new(uring),
            pool,
            slots: RefCell::new(slots),
            free: RefCell::new((0..size.slots).rev().collect()),
            dirty: Cell::new(false),
            flush: tokio::sync::Notify::new(),
            freed: tokio::sync::Notify::new(),
            closed: tokio::sync::Notify::new(),
            closing: Cell::new(0),
            stopping: Cell::new(false),
            scratch: RefCell::new(Vec::with_capacity(256)),
            stats: Cell::new(Stats::default()),
            accepted: RefCell::new(VecDeque::new()),
            acceptor: Cell::new(None),
            listeners: RefCell::new(Vec::new()),
            single_accepts: Cell::new(false),
            peeking: Cell::new(0),
            peeked_gone: Cell::new(0),
            peeks_done: tokio::sync::Notify::new(),
            peek_byte: Box::new(std::cell::UnsafeCell::new([0])),
        }))
    }

    pub fn stats(&self) -> Stats {
        Stats {
            lent: u64::from(self.pool.lent()),
            unclosed: self.open() as u64,
            ..self.stats.get()
        }
    }

    /// Waits (up to `limit`) until every connection's close has completed and no operation is in
    /// flight, so counters are final and held connections went out with a FIN.
    pub async fn settle(&self, limit: std::time::Duration) {
        let until = std::time::Instant::now() + limit;
        while self.open() > 0 && std::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}

/// The largest fixed-file table a ring may register under an open-file limit of `soft`: the kernel
/// refuses a table larger than RLIMIT_NOFILE (EMFILE), and 2^20 is its own cap.
pub fn table_max(soft: u64) -> u32 {
    soft.clamp(1, 1 << 20) as u32
}

/// `--transport direct` asked for explicitly: an error that says why this kernel cannot run it and
/// what to do instead.
pub fn require() -> io::Result<()> {
    available().map_err(|why| {
        io::Error::other(format!(
            "--transport direct: {why}; the direct transport needs Linux 6.11 or later, use --transport tcp"
        ))
    })
}

/// Whether this kernel can run the direct transport: a ring with a sparse file table, a buffer ring,
/// and the opcodes of the connect chain (Bind needs 6.11, SetSockOpt 6.7). Found once at start.
pub fn available() -> Result<(), String> {
    let ring = IoUring::new(8).map_err(|e| format!("io_uring unavailable: {e}"))?;
    ring.submitter()
        .register_files_sparse(8)
        .map_err(|e| format!("no sparse fixed-file table: {e}"))?;
    let mut probe = io_uring7::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("cannot probe opcodes: {e}"))?;
    for (name, code) in [
        ("socket", opcode::Socket::CODE),
        ("connect", opcode::Connect::CODE),
        ("bind (Linux 6.11)", opcode::Bind::CODE),
        ("uring_cmd setsockopt (Linux 6.7)", opcode::SetSockOpt::CODE),
        ("recv", opcode::RecvMulti::CODE),
        ("send", opcode::Send::CODE),
        ("close", opcode::Close::CODE),
        ("accept", opcode::AcceptMulti::CODE),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("the kernel lacks io_uring {name}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{load_pool, PoolSize};

    #[test]
    fn a_pool_has_two_buffers_per_receiver_in_the_same_memory() {
        let whole = |count, size| PoolSize {
            count,
            size,
            incremental: false,
        };
        // Up to 512 receivers: the pool a pipelined batch fits one buffer of, incremental or not.
        for incremental in [false, true] {
            assert_eq!(load_pool(0, incremental), whole(1024, 16 * 1024));
            assert_eq!(load_pool(512, incremental), whole(1024, 16 * 1024));
        }
        assert_eq!(load_pool(513, false), whole(2048, 8 * 1024));
        assert_eq!(load_pool(4096, false), whole(8192, 2 * 1024));
        // Never past 8,192 buffers of 2 KiB (a response of one buffer's head and 1 KiB body).
        assert_eq!(load_pool(1_000_000, false), whole(8192, 2 * 1024));
        assert_eq!(load_pool(usize::MAX, false), whole(8192, 2 * 1024));
    }

    #[test]
    fn many_receivers_share_large_buffers_where_the_kernel_consumes_them_by_the_byte() {
        for receivers in [513, 4096, usize::MAX] {
            let pool = load_pool(receivers, true);
            assert_eq!(
                (pool.count, pool.size, pool.incremental),
                (1024, 16 * 1024, true)
            );
        }
    }
}
