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
//!   come from the worker's pool only when bytes arrive, so an idle connection owns none. ENOBUFS (the
//!   pool ran dry) ends the multishot; the next read re-arms it.
//! - Send is SEND with MSG_WAITALL (a short send is retried by the kernel), one in flight per
//!   connection, from the connection's send buffer, kept until the completion. `send_now` does not
//!   wait for that completion (it only reports a failure), so a request costs one task wake-up.
//! - Close cancels the armed receive and closes the slot; the slot is reused only once every operation
//!   on it has completed, so no late completion can land on the next connection.
//!
//! Everything here is single-threaded (`Rc`, `Cell`): a ring belongs to one worker.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Poll, Waker};

use io_uring7::{cqueue, opcode, squeue, types, IoUring};
use tokio::io::unix::AsyncFd;

/// Operation kinds, in the top byte of `user_data`; the slot is in the low 32 bits and the slot's
/// generation in between, so a completion can never be credited to a later connection on its slot.
const CONNECT: u64 = 1;
const CHAIN: u64 = 2;
const RECV: u64 = 3;
const SEND: u64 = 4;
const CLOSE: u64 = 5;
const CANCEL: u64 = 6;
const SHUTDOWN: u64 = 7;
const ACCEPT: u64 = 8;
const SOCKOPT: u64 = 9;

fn user_data(kind: u64, slot: u32, gen: u32) -> u64 {
    kind << 56 | u64::from(gen & 0xFF_FFFF) << 32 | u64::from(slot)
}

fn split(ud: u64) -> (u64, u32, u32) {
    (ud >> 56, (ud >> 32) as u32 & 0xFF_FFFF, ud as u32)
}

/// The option value of both socket options set in the connect chain; it must outlive the SQE.
static ONE: i32 = 1;

/// The buffer group of the worker's pool (one pool per ring).
const BGID: u16 = 0;

/// Sizes of a worker's ring and pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSize {
    /// Fixed-file slots: connections this ring can hold (at most RLIMIT_NOFILE).
    pub slots: u32,
    /// Provided buffers (a power of two) and the size of each.
    pub buffers: u16,
    pub buffer_size: u32,
    pub sq: u32,
    pub cq: u32,
}

impl RingSize {
    /// A ring for a load test or a fetch: few connections, large buffers for a pipeline's responses.
    pub fn load(slots: u32) -> RingSize {
        RingSize {
            slots,
            buffers: 1024,
            buffer_size: 16 * 1024,
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
            buffers: 128,
            buffer_size: 2048,
            sq: 512,
            cq: 4096,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Free,
    /// A connection (or the socket being connected) owns the slot.
    Open,
    /// `bench --hold`: open and proven, owned by the ring until `close_held`.
    Held,
    /// Closed or being closed; freed once its operations have all completed.
    Closing,
}

struct Slot {
    gen: u32,
    state: State,
    shared: Option<Rc<Shared>>,
}

/// What the driver and a connection's futures share about one slot.
#[derive(Default)]
struct Shared {
    /// Received (buffer id, length), oldest first, and how much of the front one was consumed.
    rx: RefCell<VecDeque<(u16, u32)>>,
    rx_off: Cell<u32>,
    eof: Cell<bool>,
    /// A receive error (negative errno), 0 for none.
    err: Cell<i32>,
    recv_armed: Cell<bool>,
    reader: Cell<Option<Waker>>,
    /// The send in flight: its buffer (kept alive here until the completion) and result.
    sending: Cell<bool>,
    send_buf: RefCell<Vec<u8>>,
    send_res: Cell<Option<i32>>,
    writer: Cell<Option<Waker>>,
    /// The send in flight came from `send_now`: nobody waits for its completion, which only reports
    /// a failure (through `err`, to the reader, marked by `send_failed` so it is told as a send's).
    detached: Cell<bool>,
    send_failed: Cell<bool>,
    /// The connect chain: in flight, its result, and the addresses it reads (kept alive until the
    /// connect completes).
    connecting: Cell<bool>,
    connect_res: Cell<Option<i32>>,
    addrs: RefCell<Option<Box<Addrs>>>,
    connector: Cell<Option<Waker>>,
    /// The connect future was dropped before its completion (a connect timeout).
    abandoned: Cell<bool>,
    /// SO_RCVLOWAT's value, read by the kernel when the SETSOCKOPT is issued (see `set_recv_lowat`).
    lowat: Cell<i32>,
    closed: Cell<bool>,
}

/// A connect's destination and optional source, read by the kernel when the chain runs.
type Addrs = (socket2::SockAddr, Option<socket2::SockAddr>);

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
        let pool = BufPool::new(size.buffers, size.buffer_size)?;
        // SAFETY: the ring memory and the buffers it points at live in `pool`, which is dropped after
        // the ring (field order), so the kernel never sees them freed while registered.
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                pool.ring as u64,
                size.buffers,
                BGID,
                0,
            )?;
        }
        pool.publish_all();
        let fd = uring.as_raw_fd();
        // SAFETY: the fd is the ring's, which lives in `uring`; `notify` is declared first, so it is
        // deregistered before the ring (and its fd) is dropped.
        let notify =
            unsafe { AsyncFd::register_with_interest(RingFd(fd), tokio::io::Interest::READABLE) }
                .map_err(|e| e.into_parts().1)?;
        let slots = (0..size.slots)
            .map(|_| Slot {
                gen: 0,
                state: State::Free,
                shared: None,
            })
            .collect();
        Ok(Rc::new(Ring {
            notify,
            uring: RefCell::new(uring),
            pool,
            slots: RefCell::new(slots),
            free: RefCell::new((0..size.slots).rev().collect()),
            dirty: Cell::new(false),
            flush: tokio::sync::Notify::new(),
            freed: tokio::sync::Notify::new(),
            closing: Cell::new(0),
            stopping: Cell::new(false),
            scratch: RefCell::new(Vec::with_capacity(256)),
            stats: Cell::new(Stats::default()),
            accepted: RefCell::new(VecDeque::new()),
            acceptor: Cell::new(None),
            listeners: RefCell::new(Vec::new()),
        }))
    }

    pub fn stats(&self) -> Stats {
        Stats {
            lent: u64::from(self.pool.lent.get()),
            unclosed: self.open() as u64,
            ..self.stats.get()
        }
    }

    fn count(&self, bump: impl FnOnce(&mut Stats)) {
        let mut s = self.stats.get();
        bump(&mut s);
        self.stats.set(s);
    }

    /// The state of `slot` and what its connection shares, if the slot is still `gen`'s.
    fn owner(&self, slot: u32, gen: u32) -> Option<(State, Option<Rc<Shared>>)> {
        let slots = self.slots.borrow();
        let s = slots.get(slot as usize)?;
        (s.gen & 0xFF_FFFF == gen).then(|| (s.state, s.shared.clone()))
    }

    /// Slots in use, held ones included.
    pub fn open(&self) -> usize {
        self.slots
            .borrow()
            .len()
            .saturating_sub(self.free.borrow().len())
    }

    /// Waits (up to `limit`) until every connection's close has completed and no operation is in
    /// flight, so counters are final and held connections went out with a FIN.
    pub async fn settle(&self, limit: std::time::Duration) {
        let until = std::time::Instant::now() + limit;
        while self.open() > 0 && std::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// The driver: reaps completions when the ring's fd is readable and submits what was queued.
    /// Runs until `stop`.
    pub async fn drive(self: Rc<Self>) {
        loop {
            tokio::select! {
                biased;
                ready = self.notify.readable() => match ready {
                    Ok(mut guard) => guard.clear_ready(),
                    Err(_) => return,
                },
                _ = self.flush.notified() => {}
            }
            self.reap();
            self.submit();
            if self.stopping.get() {
                return;
            }
        }
    }

    /// Ends the driver after one more turn (which submits anything still queued).
    pub fn stop(&self) {
        self.stopping.set(true);
        self.flush.notify_one();
    }

    fn submit(&self) {
        if !self.dirty.replace(false) {
            return;
        }
        loop {
            let res = self.uring.borrow().submit();
            match res {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // The completion queue is full: make room, then submit again.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => self.reap(),
                Err(_) => break,
            }
        }
        self.count(|s| s.submits += 1);
    }

    fn push(&self, entries: &[squeue::Entry]) {
        loop {
            let mut uring = self.uring.borrow_mut();
            let mut sq = uring.submission();
            // A chain must not be split across two submits.
            if sq.capacity() - sq.len() >= entries.len() {
                // SAFETY: every pointer in these entries (addresses, option values, send buffers)
                // is kept alive until its completion: in `Shared`, in `pool` or static.
                unsafe { sq.push_multiple(entries).expect("room was checked") };
                break;
            }
            drop(sq);
            drop(uring);
            self.dirty.set(true);
            self.submit();
        }
        if !self.dirty.replace(true) {
            self.flush.notify_one();
        }
    }

    fn reap(&self) {
        let mut batch = std::mem::take(&mut *self.scratch.borrow_mut());
        loop {
            batch.clear();
            {
                let mut uring = self.uring.borrow_mut();
                batch.extend(uring.completion().take(256));
            }
            if batch.is_empty() {
                // Completions that found the queue full wait in the kernel's overflow list (no
                // loss: FEAT_NODROP); only an enter with GETEVENTS moves them in, which `submit`
                // adds when the ring flags the overflow. Without it they would wait for the next
                // submit, possibly forever.
                let overflowed = self.uring.borrow_mut().submission().cq_overflow();
                if overflowed && self.uring.borrow().submit().is_ok() {
                    continue;
                }
                break;
            }
            self.count(|s| s.completions += batch.len() as u64);
            for cqe in &batch {
                self.complete(cqe);
            }
        }
        *self.scratch.borrow_mut() = batch;
    }

    fn complete(&self, cqe: &cqueue::Entry) {
        let (kind, gen, slot) = split(cqe.user_data());
        let res = cqe.result();
        let flags = cqe.flags();
        let bid = cqueue::buffer_select(flags);
        if bid.is_some() {
            self.pool.lent.set(self.pool.lent.get() + 1);
        }
        if kind == ACCEPT {
            return self.accept_done(slot, res, cqueue::more(flags));
        }
        if kind == CLOSE {
            return self.closed(slot, gen);
        }
        let Some((state, Some(sh))) = self.owner(slot, gen) else {
            // Nothing owns the slot any more: give back any buffer.
            if let Some(bid) = bid {
                self.pool.recycle(bid);
            }
            return;
        };
        match kind {
            RECV => {
                let more = cqueue::more(flags);
                if !more {
                    sh.recv_armed.set(false);
                }
                match (res, bid) {
                    (n, Some(bid)) if n > 0 => {
                        if state == State::Open {
                            sh.rx.borrow_mut().push_back((bid, n as u32));
                        } else {
                            self.pool.recycle(bid);
                        }
                    }
                    (0, _) => sh.eof.set(true),
                    (e, _) if e == -libc::ENOBUFS => {
                        self.count(|s| s.enobufs += 1);
                    }
                    (e, _) if e < 0 && e != -libc::ECANCELED => sh.err.set(e),
                    _ => {}
                }
                if let Some(w) = sh.reader.take() {
                    w.wake();
                }
            }
            SEND => {
                sh.sending.set(false);
                if sh.detached.replace(false) {
                    // MSG_WAITALL: anything short of the whole buffer is a failure of the connection.
                    let whole = sh.send_buf.borrow().len() as i32;
                    if res < whole && sh.err.get() == 0 {
                        sh.err.set(if res < 0 { res } else { -libc::EPIPE });
                        sh.send_failed.set(true);
                        if let Some(w) = sh.reader.take() {
                            w.wake();
                        }
                    }
                } else {
                    sh.send_res.set(Some(res));
                }
                if let Some(w) = sh.writer.take() {
                    w.wake();
                }
            }
            // A link before Connect failed. Its flags carry SKIP_SUCCESS, so the kernel posts nothing
            // for the rest of the chain (Connect included): this ends the connect.
            CHAIN | CONNECT if sh.connect_res.get().is_none() => {
                sh.connecting.set(false);
                sh.addrs.borrow_mut().take();
                sh.connect_res.set(Some(res));
                if let Some(w) = sh.connector.take() {
                    w.wake();
                }
                if sh.abandoned.get() {
                    // Nobody waits for this connection (a connect timeout): close what it opened.
                    self.release(slot);
                }
            }
            _ => {}
        }
        // Only a closing or held slot can be freed; a completion for an open one (every receive and
        // send of a live connection) needs no second look at the slot table. An abandoned connect's
        // release above leaves its slot closing until the close completes, which `closed` handles.
        if state != State::Open {
            self.try_free(slot);
        }
    }

    /// A slot's close completed. A held connection closes with no state of its own (so closing a
    /// million of them allocates nothing) and frees its slot at once.
    fn closed(&self, slot: u32, gen: u32) {
        match self.owner(slot, gen) {
            Some((State::Closing, Some(sh))) => {
                sh.closed.set(true);
                self.try_free(slot);
            }
            Some((State::Closing, None)) => self.free_slot(slot),
            _ => {}
        }
    }

    fn free_slot(&self, slot: u32) {
        let mut slots = self.slots.borrow_mut();
        let s = &mut slots[slot as usize];
        if s.state == State::Closing {
            self.closing.set(self.closing.get() - 1);
        }
        s.shared = None;
        s.state = State::Free;
        s.gen = s.gen.wrapping_add(1);
        // A ring that accepts lets the kernel pick free slots; only a connecting ring keeps the list.
        if self.listeners.borrow().is_empty() {
            self.free.borrow_mut().push(slot);
            self.freed.notify_one();
        }
    }

    /// Frees a closing slot once nothing is in flight on it; drops a held connection's shared state
    /// once its receive has ended.
    fn try_free(&self, slot: u32) {
        let mut slots = self.slots.borrow_mut();
        let s = &mut slots[slot as usize];
        let Some(sh) = &s.shared else { return };
        let idle = !sh.recv_armed.get() && !sh.sending.get() && !sh.connecting.get();
        if !idle {
            return;
        }
        match s.state {
            State::Closing if sh.closed.get() => {
                for (bid, _) in sh.rx.borrow_mut().drain(..) {
                    self.pool.recycle(bid);
                }
                drop(slots);
                self.free_slot(slot);
            }
            State::Held => {
                for (bid, _) in sh.rx.borrow_mut().drain(..) {
                    self.pool.recycle(bid);
                }
                s.shared = None;
            }
            _ => {}
        }
    }

    /// Ends a slot's connection: cancels its receive and closes the socket (FIN, as close(2) does).
    fn release(&self, slot: u32) {
        let (gen, armed) = {
            let mut slots = self.slots.borrow_mut();
            let s = &mut slots[slot as usize];
            if s.state == State::Closing || s.state == State::Free {
                return;
            }
            s.state = State::Closing;
            self.closing.set(self.closing.get() + 1);
            let armed = s.shared.as_ref().is_some_and(|sh| sh.recv_armed.get());
            (s.gen, armed)
        };
        if armed {
            self.push(&[opcode::AsyncCancel::new(user_data(RECV, slot, gen))
                .build()
                .user_data(user_data(CANCEL, slot, gen))]);
        }
        self.push(&[opcode::Close::new(types::Fixed(slot))
            .build()
            .user_data(user_data(CLOSE, slot, gen))]);
    }

    /// Opens a connection to `dst` (from `src`'s address with a port the kernel picks at connect,
    /// IP_BIND_ADDRESS_NO_PORT, when given).
    pub async fn connect(
        self: &Rc<Self>,
        dst: SocketAddr,
        src: Option<std::net::IpAddr>,
    ) -> io::Result<Conn> {
        // A connection that just closed gives its slot back once its close completes (the driver's
        // next turn): churning connections (--no-keepalive) wait for that rather than fail.
        let slot = loop {
            let freed = self.freed.notified();
            if let Some(slot) = self.free.borrow_mut().pop() {
                break slot;
            }
            if self.closing.get() == 0 {
                return Err(io::Error::other(format!(
                    "all {} direct-descriptor slots of this worker are in use",
                    self.slots.borrow().len()
                )));
            }
            freed.await;
        };
        let sh = Rc::new(Shared::default());
        let gen = {
            let mut slots = self.slots.borrow_mut();
            let s = &mut slots[slot as usize];
            s.state = State::Open;
            s.shared = Some(sh.clone());
            s.gen
        };
        let addrs = Box::new((
            socket2::SockAddr::from(dst),
            src.map(|ip| socket2::SockAddr::from(SocketAddr::new(ip, 0))),
        ));
        let domain = if dst.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let link = squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS;
        let chain_ud = user_data(CHAIN, slot, gen);
        let target = types::DestinationSlot::try_from_slot_target(slot)
            .map_err(|_| io::Error::other("slot out of range"))?;
        let mut chain = Vec::with_capacity(5);
        chain.push(
            // No SOCK_CLOEXEC: a fixed file has no descriptor to close on exec (the kernel refuses it).
            opcode::Socket::new(domain, libc::SOCK_STREAM, 0)
                .file_index(Some(target))
                .build()
                .flags(link)
                .user_data(chain_ud),
        );
        // Both options are switched on with the static ONE, which outlives any SQE.
        let enable = |level: i32, name: i32| {
            opcode::SetSockOpt::new(
                types::Fixed(slot),
                level as u32,
                name as u32,
                &ONE as *const i32 as *const libc::c_void,
                4,
            )
            .build()
            .flags(link)
            .user_data(chain_ud)
        };
        chain.push(enable(libc::IPPROTO_TCP, libc::TCP_NODELAY));
        if let Some(src) = &addrs.1 {
            chain.push(enable(libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT));
            chain.push(
                opcode::Bind::new(types::Fixed(slot), src.as_ptr().cast(), src.len())
                    .build()
                    .flags(link)
                    .user_data(chain_ud),
            );
        }
        chain.push(
            opcode::Connect::new(types::Fixed(slot), addrs.0.as_ptr().cast(), addrs.0.len())
                .build()
                .user_data(user_data(CONNECT, slot, gen)),
        );
        *sh.addrs.borrow_mut() = Some(addrs);
        sh.connecting.set(true);
        self.push(&chain);
        let pending = PendingConnect {
            ring: self.clone(),
            slot,
            gen,
            sh: sh.clone(),
            done: false,
        };
        pending.wait().await
    }

    /// `serve`: accepts connections on `listener` into fixed slots the kernel allocates (multishot
    /// accept). Call `accept` to take them.
    pub fn listen(&self, listener: RawFd) {
        self.listeners.borrow_mut().push((listener, false));
        self.arm_accepts();
    }

    fn arm_accepts(&self) {
        let mut entries = Vec::new();
        for (i, (fd, armed)) in self.listeners.borrow_mut().iter_mut().enumerate() {
            if !*armed {
                *armed = true;
                entries.push(
                    opcode::AcceptMulti::new(types::Fd(*fd))
                        .allocate_file_index(true)
                        .build()
                        .user_data(user_data(ACCEPT, i as u32, 0)),
                );
            }
        }
        for e in entries {
            self.push(&[e]);
        }
    }

    fn accept_done(&self, listener: u32, res: i32, more: bool) {
        if res >= 0 {
            let slot = res as u32;
            let mut slots = self.slots.borrow_mut();
            if let Some(s) = slots.get_mut(slot as usize) {
                if s.state != State::Free {
                    // The kernel reused a slot whose close we have not reaped yet: whatever still
                    // completes for the old connection must not reach the new one.
                    s.gen = s.gen.wrapping_add(1);
                }
                if s.state == State::Closing {
                    self.closing.set(self.closing.get() - 1);
                }
                s.state = State::Open;
                s.shared = Some(Rc::new(Shared::default()));
                self.accepted.borrow_mut().push_back(Ok(slot));
            }
        } else {
            self.accepted.borrow_mut().push_back(Err(res));
        }
        if !more {
            if let Some(l) = self.listeners.borrow_mut().get_mut(listener as usize) {
                l.1 = false;
            }
        }
        if let Some(w) = self.acceptor.take() {
            w.wake();
        }
    }

    /// The next accepted connection. An error (the table is full: ENFILE) leaves the accept to be
    /// re-armed by the next call.
    pub async fn accept(self: &Rc<Self>) -> io::Result<Conn> {
        poll_fn(|cx| {
            if let Some(next) = self.accepted.borrow_mut().pop_front() {
                return Poll::Ready(match next {
                    Ok(slot) => Ok(self.conn(slot)),
                    Err(e) => Err(io::Error::from_raw_os_error(-e)),
                });
            }
            self.arm_accepts();
            self.acceptor.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    fn conn(self: &Rc<Self>, slot: u32) -> Conn {
        let slots = self.slots.borrow();
        let s = &slots[slot as usize];
        Conn {
            ring: self.clone(),
            slot,
            gen: s.gen,
            sh: s.shared.clone().expect("an open slot has its shared state"),
        }
    }

    /// Closes every held connection (FIN), at the end of `bench --hold`.
    pub fn close_held(&self) {
        let held: Vec<u32> = self
            .slots
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == State::Held)
            .map(|(i, _)| i as u32)
            .collect();
        for slot in held {
            self.release(slot);
        }
    }

    /// Shuts a connection down (SHUT_RDWR) so whatever waits on it completes: the watchdog's timeout.
    fn interrupt(&self, slot: u32, gen: u32) {
        let live = self
            .slots
            .borrow()
            .get(slot as usize)
            .is_some_and(|s| s.gen == gen && s.state == State::Open);
        if live {
            self.shutdown(slot, gen, libc::SHUT_RDWR);
        }
    }

    fn shutdown(&self, slot: u32, gen: u32, how: i32) {
        self.push(&[opcode::Shutdown::new(types::Fixed(slot), how)
            .build()
            .user_data(user_data(SHUTDOWN, slot, gen))]);
    }
}

/// The result the driver puts in `res` when an operation completes; `waker` is woken then.
async fn completion(res: &Cell<Option<i32>>, waker: &Cell<Option<Waker>>) -> i32 {
    poll_fn(|cx| match res.get() {
        Some(r) => Poll::Ready(r),
        None => {
            waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    })
    .await
}

/// A connect in flight. Dropped before its completion (a connect timeout), it cancels the connect and
/// the slot is closed when the completion comes.
struct PendingConnect {
    ring: Rc<Ring>,
    slot: u32,
    gen: u32,
    sh: Rc<Shared>,
    done: bool,
}

impl PendingConnect {
    async fn wait(mut self) -> io::Result<Conn> {
        let res = completion(&self.sh.connect_res, &self.sh.connector).await;
        self.done = true;
        let conn = Conn {
            ring: self.ring.clone(),
            slot: self.slot,
            gen: self.gen,
            sh: self.sh.clone(),
        };
        if res < 0 {
            // Dropping the connection closes the slot (the socket may exist even though connect failed).
            drop(conn);
            return Err(io::Error::from_raw_os_error(-res));
        }
        Ok(conn)
    }
}

impl Drop for PendingConnect {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.sh.connector.take();
        if self.sh.connect_res.get().is_some() {
            // Completed, but nobody took the connection.
            self.ring.release(self.slot);
            self.ring.try_free(self.slot);
        } else {
            self.sh.abandoned.set(true);
            self.ring.push(&[
                opcode::AsyncCancel::new(user_data(CONNECT, self.slot, self.gen))
                    .build()
                    .user_data(user_data(CANCEL, self.slot, self.gen)),
            ]);
        }
    }
}

/// One connection on a fixed slot. Dropping it closes the connection.
pub struct Conn {
    ring: Rc<Ring>,
    slot: u32,
    gen: u32,
    sh: Rc<Shared>,
}

/// What the watchdog needs to interrupt a direct connection.
#[derive(Clone)]
pub struct Handle {
    ring: Rc<Ring>,
    slot: u32,
    gen: u32,
}

impl Handle {
    pub fn interrupt(&self) {
        self.ring.interrupt(self.slot, self.gen);
    }
}

impl Conn {
    pub fn handle(&self) -> Handle {
        Handle {
            ring: self.ring.clone(),
            slot: self.slot,
            gen: self.gen,
        }
    }

    fn arm_recv(&self) {
        if self.sh.recv_armed.replace(true) {
            return;
        }
        self.ring.count(|s| s.rearms += 1);
        self.ring
            .push(&[opcode::RecvMulti::new(types::Fixed(self.slot), BGID)
                .build()
                .user_data(user_data(RECV, self.slot, self.gen))]);
    }

    /// Waits until received bytes, the end of the stream or an error are there.
    pub async fn readable(&self) {
        poll_fn(|cx| {
            if !self.sh.rx.borrow().is_empty() || self.sh.eof.get() || self.sh.err.get() != 0 {
                return Poll::Ready(());
            }
            self.arm_recv();
            self.sh.reader.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    fn ended(&self) -> io::Result<usize> {
        match self.sh.err.get() {
            0 => Ok(0),
            e if self.sh.send_failed.get() => Err(io::Error::other(crate::error::FetchError::io(
                "cannot send the request",
                &io::Error::from_raw_os_error(-e),
            ))),
            e => Err(io::Error::from_raw_os_error(-e)),
        }
    }

    /// Copies what has arrived into the spare capacity of `buf` (after its `len()`), giving each
    /// pool buffer back as soon as it is consumed. Ok(0) is the end of the stream.
    pub async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        self.readable().await;
        if buf.capacity() == buf.len() {
            buf.reserve(16 * 1024);
        }
        let mut copied = 0;
        let mut rx = self.sh.rx.borrow_mut();
        while let Some(&(bid, len)) = rx.front() {
            let off = self.sh.rx_off.get();
            let data = &self.ring.pool.buffer(bid)[off as usize..len as usize];
            let room = buf.capacity() - buf.len();
            let n = data.len().min(room);
            buf.extend_from_slice(&data[..n]);
            copied += n;
            if n < data.len() {
                self.sh.rx_off.set(off + n as u32);
                break;
            }
            rx.pop_front();
            self.sh.rx_off.set(0);
            self.ring.pool.recycle(bid);
        }
        if copied > 0 {
            return (Ok(copied), buf);
        }
        (self.ended(), buf)
    }

    /// Hands the next received chunk to `f`, in place in the pool buffer, and gives the buffer back
    /// after. Ok(false) is the end of the stream. `serve` parses requests this way, with no buffer of
    /// its own unless a request spans two chunks.
    pub async fn recv_with(&self, f: impl FnOnce(&[u8])) -> io::Result<bool> {
        self.readable().await;
        let front = self.sh.rx.borrow_mut().pop_front();
        match front {
            Some((bid, len)) => {
                let off = self.sh.rx_off.replace(0);
                f(&self.ring.pool.buffer(bid)[off as usize..len as usize]);
                self.ring.pool.recycle(bid);
                Ok(true)
            }
            None => self.ended().map(|_| false),
        }
    }

    /// Queues all of `buf` as one send and returns at once, when no send is in flight (WouldBlock
    /// otherwise): the bytes are copied into the connection's send buffer, which stays alive until the
    /// completion. Nobody waits for that completion, so a request costs one wake-up (its response),
    /// not two; a send that fails fails the connection's receive side, where the reader sees it.
    pub fn send_now(&self, buf: &[u8]) -> io::Result<usize> {
        if self.sh.sending.get() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.sh.err.get() {
            0 => {}
            e => return Err(io::Error::from_raw_os_error(-e)),
        }
        let mut b = self.sh.send_buf.borrow_mut();
        b.clear();
        b.extend_from_slice(buf);
        self.sh.detached.set(true);
        self.push_send(b.as_ptr(), b.len() as u32);
        Ok(buf.len())
    }

    /// Waits until no send is in flight (a `send_now` still under way owns the send buffer).
    async fn send_idle(&self) {
        poll_fn(|cx| {
            if self.sh.sending.get() {
                self.sh.writer.set(Some(cx.waker().clone()));
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }

    /// Sends all of `buf` (MSG_WAITALL: the kernel retries a short send itself).
    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.send_idle().await;
        let mut sent = 0;
        *self.sh.send_buf.borrow_mut() = buf;
        let res = loop {
            let (ptr, len) = {
                let b = self.sh.send_buf.borrow();
                if sent >= b.len() {
                    break Ok(());
                }
                (b[sent..].as_ptr(), (b.len() - sent) as u32)
            };
            self.push_send(ptr, len);
            let res = completion(&self.sh.send_res, &self.sh.writer).await;
            if res <= 0 {
                break Err(if res == 0 {
                    io::Error::from(io::ErrorKind::WriteZero)
                } else {
                    io::Error::from_raw_os_error(-res)
                });
            }
            sent += res as usize;
        };
        let buf = std::mem::take(&mut *self.sh.send_buf.borrow_mut());
        (res, buf)
    }

    /// Sets SO_RCVLOWAT, so the armed receive completes only once that many bytes are there (the
    /// readiness check that re-arms a multishot receive honours the mark, as epoll's does). Issued
    /// through the ring, in order with the operations around it; no completion unless it fails.
    pub fn set_recv_lowat(&self, bytes: usize) {
        self.sh.lowat.set(bytes.clamp(1, i32::MAX as usize) as i32);
        self.ring.push(&[opcode::SetSockOpt::new(
            types::Fixed(self.slot),
            libc::SOL_SOCKET as u32,
            libc::SO_RCVLOWAT as u32,
            self.sh.lowat.as_ptr() as *const libc::c_void,
            4,
        )
        .build()
        .flags(squeue::Flags::SKIP_SUCCESS)
        .user_data(user_data(SOCKOPT, self.slot, self.gen))]);
    }

    /// Queues `bytes` as this connection's last send, without waiting (TLS's close_notify just before
    /// the connection is dropped): the send goes out before the close that follows it in the ring.
    /// Skipped if a send is still in flight.
    pub fn send_last(&self, bytes: &[u8]) {
        if self.sh.sending.get() {
            return;
        }
        let mut buf = self.sh.send_buf.borrow_mut();
        buf.clear();
        buf.extend_from_slice(bytes);
        self.push_send(buf.as_ptr(), buf.len() as u32);
    }

    /// The one send in flight, from `send_buf` (which keeps the bytes alive until its completion).
    fn push_send(&self, ptr: *const u8, len: u32) {
        self.sh.send_res.set(None);
        self.sh.sending.set(true);
        self.ring
            .push(&[opcode::Send::new(types::Fixed(self.slot), ptr, len)
                .flags(libc::MSG_WAITALL | libc::MSG_NOSIGNAL)
                .build()
                .user_data(user_data(SEND, self.slot, self.gen))]);
    }

    /// Ends our sending side (FIN); the receiving side stays open.
    pub fn shutdown_write(&self) {
        self.ring.shutdown(self.slot, self.gen, libc::SHUT_WR);
    }

    /// `bench --hold`: hands the open connection to the ring, which keeps it (and nothing else: its
    /// receive is cancelled, its state freed) until `Ring::close_held`.
    pub fn hold(self) {
        let ring = self.ring.clone();
        let slot = self.slot;
        {
            let mut slots = ring.slots.borrow_mut();
            slots[slot as usize].state = State::Held;
        }
        if self.sh.recv_armed.get() {
            ring.push(&[opcode::AsyncCancel::new(user_data(RECV, slot, self.gen))
                .build()
                .user_data(user_data(CANCEL, slot, self.gen))]);
        }
        // Dropping `self` sees the Held state and leaves the socket open.
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Whatever arrived and was not read goes back to the pool now.
        for (bid, _) in self.sh.rx.borrow_mut().drain(..) {
            self.ring.pool.recycle(bid);
        }
        self.sh.rx_off.set(0);
        let held = self.ring.slots.borrow()[self.slot as usize].state == State::Held;
        if !held {
            self.ring.release(self.slot);
        }
        self.ring.try_free(self.slot);
    }
}

/// The provided-buffer ring: `count` buffers of `size` bytes, lent to the kernel through a ring of
/// entries it takes from the head while we append at the tail. Anonymous mappings, so pages the
/// kernel never fills cost no memory.
struct BufPool {
    ring: *mut types::BufRingEntry,
    ring_len: usize,
    bufs: *mut u8,
    bufs_len: usize,
    count: u16,
    size: u32,
    tail: Cell<u16>,
    /// Buffers the kernel filled that are not back yet.
    lent: Cell<u32>,
}

impl BufPool {
    fn new(count: u16, size: u32) -> io::Result<BufPool> {
        assert!(count.is_power_of_two());
        let ring_len = usize::from(count) * std::mem::size_of::<types::BufRingEntry>();
        let bufs_len = usize::from(count) * size as usize;
        let ring = map(ring_len)?;
        let bufs = match map(bufs_len) {
            Ok(b) => b,
            Err(e) => {
                // SAFETY: `ring` was mapped just above with this length and is not used after.
                unsafe { libc::munmap(ring.cast(), ring_len) };
                return Err(e);
            }
        };
        Ok(BufPool {
            ring: ring.cast(),
            ring_len,
            bufs,
            bufs_len,
            count,
            size,
            tail: Cell::new(0),
            lent: Cell::new(0),
        })
    }

    fn publish_all(&self) {
        for bid in 0..self.count {
            self.put(bid);
        }
        self.publish();
    }

    fn put(&self, bid: u16) {
        let tail = self.tail.get();
        let idx = usize::from(tail & (self.count - 1));
        // SAFETY: idx < count, the number of entries mapped at `ring`; the kernel only reads entries
        // between its head and the published tail, and this one is past the tail until `publish`.
        let entry = unsafe { &mut *self.ring.add(idx) };
        // SAFETY: bid < count, so the buffer lies inside the `bufs` mapping.
        entry.set_addr(unsafe { self.bufs.add(usize::from(bid) * self.size as usize) } as u64);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail.set(tail.wrapping_add(1));
    }

    fn publish(&self) {
        // SAFETY: the tail field lives in the first entry of the mapped ring (the kernel's layout), is
        // 2-byte aligned, and the kernel only reads it: a release store publishes the entries before it.
        let tail = unsafe { &*(types::BufRingEntry::tail(self.ring).cast::<AtomicU16>()) };
        tail.store(self.tail.get(), Ordering::Release);
    }

    /// Gives buffer `bid` back to the kernel.
    fn recycle(&self, bid: u16) {
        self.lent.set(self.lent.get().saturating_sub(1));
        self.put(bid);
        self.publish();
    }

    fn buffer(&self, bid: u16) -> &[u8] {
        // SAFETY: bid < count; the kernel wrote this buffer before posting the completion that named
        // it and does not touch it again until it is recycled, which happens after this borrow ends.
        unsafe {
            std::slice::from_raw_parts(
                self.bufs.add(usize::from(bid) * self.size as usize),
                self.size as usize,
            )
        }
    }
}

impl Drop for BufPool {
    fn drop(&mut self) {
        // SAFETY: both regions were mapped in `new` with these lengths; the ring that used them was
        // dropped before (field order in `Ring`).
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_len);
            libc::munmap(self.bufs.cast(), self.bufs_len);
        }
    }
}

fn map(len: usize) -> io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping with no address hint; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
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
