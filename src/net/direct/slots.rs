//! The slot table: one entry per fixed file of the ring, saying who owns it and which generation of
//! connection is on it, and what a connection's futures share with the driver (`Shared`). A slot is
//! reused only once its close and every other operation on it have completed; `Ring::try_free` is the
//! one place that decides it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

use io_uring7::{opcode, types};

use super::buffers::Piece;
use super::connect::Addrs;
use super::user_data::{current, user_data, Op};
use super::Ring;

/// Who owns a slot. A slot goes Free → Open (a connect or an accept) → [Held] → Draining (released:
/// what is still in flight on it is being cancelled) → Closing (nothing else is in flight; its close is
/// queued) → Free (the close completed). The close waits for every other operation because closing a
/// fixed file ends the slot, not the socket: an operation still in flight would go on with the socket
/// while a connect or the kernel's accept put the next connection on the slot. A SHUTDOWN issued then
/// (io-wq runs it late) would resolve the slot to the next connection and cut it, and the send buffer
/// the old send still reads would be dropped with the old `Shared`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum State {
    Free,
    /// A connection (or the socket being connected) owns the slot.
    Open,
    /// `bench --hold`: open and proven, owned by the ring until `close_held`.
    Held,
    /// Released: its close waits until nothing else is in flight on it.
    Draining,
    /// Its close is queued or in flight, and nothing else is.
    Closing,
}

impl State {
    /// The connection on an open or held slot ends; None if it already did (or the slot is free).
    pub(super) fn release(self) -> Option<State> {
        match self {
            State::Open | State::Held => Some(State::Draining),
            State::Draining | State::Closing | State::Free => None,
        }
    }

    /// The slot's close completed: it is free.
    pub(super) fn close_completed(self) -> Option<State> {
        (self == State::Closing).then_some(State::Free)
    }

    /// Counted in `Ring::closing`: the slot comes free soon.
    pub(super) fn is_closing(self) -> bool {
        matches!(self, State::Draining | State::Closing)
    }
}

/// What `Ring::try_free` does with a slot, decided from its state and whether anything is in flight
/// on it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Disposal {
    Keep,
    /// Released and idle: queue its close (Draining → Closing).
    Close,
    /// Held and idle: the connection stays, its shared state goes (a held connection costs the slot).
    DropShared,
}

impl Disposal {
    pub(super) fn of(state: State, idle: bool) -> Disposal {
        match state {
            _ if !idle => Disposal::Keep,
            State::Draining => Disposal::Close,
            State::Held => Disposal::DropShared,
            State::Free | State::Open | State::Closing => Disposal::Keep,
        }
    }
}

pub(super) struct Slot {
    pub(super) gen: u32,
    pub(super) state: State,
    pub(super) shared: Option<Rc<Shared>>,
}

impl Slot {
    pub(super) fn free() -> Slot {
        Slot {
            gen: 0,
            state: State::Free,
            shared: None,
        }
    }
}

/// What the driver and a connection's futures share about one slot.
#[derive(Default)]
pub(super) struct Shared {
    /// Received pieces of pool buffers, oldest first, and how much of the front one was consumed.
    pub(super) rx: RefCell<VecDeque<Piece>>,
    pub(super) rx_off: Cell<u32>,
    /// How the receiving side ended, if it did.
    pub(super) inbound: Cell<Inbound>,
    /// The multishot receive: armed or not, and why not.
    pub(super) recv: Cell<Receiving>,
    pub(super) reader: Cell<Option<Waker>>,
    /// The one send: in flight or not, and its buffer (kept alive here until the completion).
    pub(super) send: Cell<Sending>,
    pub(super) send_buf: RefCell<Vec<u8>>,
    pub(super) writer: Cell<Option<Waker>>,
    /// The connect chain, and the addresses it reads (kept alive until the connect completes).
    pub(super) connect: Cell<Connecting>,
    pub(super) addrs: RefCell<Option<Box<Addrs>>>,
    pub(super) connector: Cell<Option<Waker>>,
    /// SO_RCVLOWAT's value, read by the kernel when the SETSOCKOPT is issued (see `set_recv_lowat`).
    pub(super) lowat: Cell<i32>,
    /// Cancels and shutdowns in flight: each posts one completion, which the slot's close waits for.
    pub(super) others: Cell<u16>,
}

impl Shared {
    /// Nothing in flight on the slot: no receive, send, connect, cancel or shutdown. A SETSOCKOPT is
    /// not counted (it posts nothing on success): it runs when it is issued, so before the close that
    /// is queued after it, and the kernel reads its value (in `lowat`) then.
    pub(super) fn idle(&self) -> bool {
        !self.recv.get().in_flight()
            && !self.send.get().in_flight()
            && !self.connect.get().in_flight()
            && self.others.get() == 0
    }
}

/// The connection's multishot receive. It takes a pool buffer whenever bytes arrive, whether or not
/// the connection reads them, so two rules keep one connection from draining the pool that every
/// connection of the worker shares: a connection holding its share of the pool has its receive
/// cancelled (`Capped`) and re-armed only when it has read everything it holds; a receive ended by an
/// empty pool (`Starved`) is re-armed only once a buffer has come back, so an empty pool parks its
/// readers instead of making them re-arm into ENOBUFS over and over.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(super) enum Receiving {
    /// Not armed: the next read arms it.
    #[default]
    Idle,
    Armed,
    /// Armed, with a cancel queued: the connection holds its share of the pool.
    Capped,
    /// Ended by an empty pool (ENOBUFS).
    Starved,
}

impl Receiving {
    /// Its final completion (without F_MORE) has not come.
    #[inline]
    pub(super) fn in_flight(self) -> bool {
        matches!(self, Receiving::Armed | Receiving::Capped)
    }

    /// A read found nothing received: Some(Armed) if a receive must be armed for it now, None if one
    /// is in flight or (starved) the pool has nothing to give.
    #[inline]
    pub(super) fn arm(self, pool_dry: bool) -> Option<Receiving> {
        match self {
            Receiving::Idle => Some(Receiving::Armed),
            Receiving::Starved if !pool_dry => Some(Receiving::Armed),
            Receiving::Starved | Receiving::Armed | Receiving::Capped => None,
        }
    }

    /// A buffer arrived and the connection now holds `held` of them: Some(Capped) if that is its
    /// `share` and the receive must be cancelled.
    #[inline]
    pub(super) fn filled(self, held: usize, share: usize) -> Option<Receiving> {
        (self == Receiving::Armed && held >= share).then_some(Receiving::Capped)
    }

    /// Its final completion came with `res`.
    #[inline]
    pub(super) fn ended(self, res: i32) -> Receiving {
        if res == -libc::ENOBUFS {
            Receiving::Starved
        } else {
            Receiving::Idle
        }
    }
}

/// The receiving side. An error outranks the end of the stream: a reader told of the end first would
/// take a broken response for a complete one.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(super) enum Inbound {
    #[default]
    Open,
    /// The peer's FIN.
    Eof,
    /// A receive failed (negative errno).
    Failed(i32),
    /// A detached send failed (negative errno): the reader tells it as a send's failure.
    SendFailed(i32),
}

impl Inbound {
    /// Nothing more will arrive.
    #[inline]
    pub(super) fn at_end(self) -> bool {
        self != Inbound::Open
    }

    /// The error that ended it, if any.
    #[inline]
    pub(super) fn error(self) -> Option<i32> {
        match self {
            Inbound::Open | Inbound::Eof => None,
            Inbound::Failed(e) | Inbound::SendFailed(e) => Some(e),
        }
    }

    /// The peer's FIN arrived; an error already there stays.
    #[inline]
    pub(super) fn eof(self) -> Inbound {
        match self {
            Inbound::Open => Inbound::Eof,
            ended => ended,
        }
    }

    /// A receive failed with `errno`. It replaces an earlier error's code, but a send's failure stays
    /// told as a send's.
    #[inline]
    pub(super) fn recv_failed(self, errno: i32) -> Inbound {
        match self {
            Inbound::SendFailed(_) => Inbound::SendFailed(errno),
            _ => Inbound::Failed(errno),
        }
    }

    /// A detached send failed with `errno`; None if an error was already there (the first one wins).
    #[inline]
    pub(super) fn send_failed(self, errno: i32) -> Option<Inbound> {
        self.error().is_none().then_some(Inbound::SendFailed(errno))
    }
}

/// The connection's one send, as an operation's lifecycle: submitted, then either someone looks at
/// its result (`Pending` → `Done`) or nobody will (`Detached` → `Idle`, a failure going to the reader).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(super) enum Sending {
    #[default]
    Idle,
    /// In flight; its result is kept (`write_all` waits for it, `send_last` does not).
    Pending,
    /// In flight from `send_now`: nobody waits for it.
    Detached,
    /// Completed with this result, kept for `write_all`.
    Done(i32),
}

impl Sending {
    #[inline]
    pub(super) fn in_flight(self) -> bool {
        matches!(self, Sending::Pending | Sending::Detached)
    }

    /// The send completed with `res`: what it becomes, and whether it was detached (then `res` is
    /// for the reader, if anyone's).
    #[inline]
    pub(super) fn complete(self, res: i32) -> (Sending, bool) {
        match self {
            Sending::Detached => (Sending::Idle, true),
            _ => (Sending::Done(res), false),
        }
    }
}

/// The connect chain, as an operation's lifecycle: `InFlight` → `Done`, or `InFlight` → `Abandoned`
/// (its future was dropped: a connect timeout) → `Done`, after which the ring closes what it opened.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(super) enum Connecting {
    /// No connect was issued (an accepted connection).
    #[default]
    Idle,
    InFlight,
    Abandoned,
    /// Completed with this result (the first completion of the chain; later ones are ignored).
    Done(i32),
}

impl Connecting {
    #[inline]
    pub(super) fn in_flight(self) -> bool {
        matches!(self, Connecting::InFlight | Connecting::Abandoned)
    }

    /// A completion of the chain came with `res`: Some(abandoned) if it ends the connect, None if the
    /// connect had already ended.
    #[inline]
    pub(super) fn complete(self, res: i32) -> Option<(Connecting, bool)> {
        match self {
            Connecting::Done(_) => None,
            was => Some((Connecting::Done(res), was == Connecting::Abandoned)),
        }
    }
}

impl Ring {
    /// The state of `slot` and what its connection shares, if the slot is still `gen`'s.
    pub(super) fn owner(&self, slot: u32, gen: u32) -> Option<(State, Option<Rc<Shared>>)> {
        let slots = self.slots.borrow();
        let s = slots.get(slot as usize)?;
        current(s.gen, gen).then(|| (s.state, s.shared.clone()))
    }

    /// Slots in use, held ones included.
    pub fn open(&self) -> usize {
        self.slots
            .borrow()
            .len()
            .saturating_sub(self.free.borrow().len())
    }

    /// A slot's close completed: it is free (nothing else was in flight on it when the close was
    /// queued, and nothing was issued on it after).
    pub(super) fn closed(&self, slot: u32, gen: u32) {
        let mut slots = self.slots.borrow_mut();
        let Some(s) = slots.get_mut(slot as usize) else {
            return;
        };
        if !current(s.gen, gen) {
            return;
        }
        let Some(free) = s.state.close_completed() else {
            return;
        };
        s.state = free;
        s.gen = s.gen.wrapping_add(1);
        self.closing.set(self.closing.get() - 1);
        // A ring that accepts lets the kernel pick free slots; only a connecting ring keeps the list,
        // and only its connects wait for a close (a slot, or the local port it held).
        if self.listeners.borrow().is_empty() {
            self.free.borrow_mut().push(slot);
            self.freed.notify_one();
            self.closed.notify_waiters();
        } else if let Some(w) = self.acceptor.take() {
            // An accept may be waiting for a free slot to be armed.
            w.wake();
        }
    }

    /// Closes a released slot once nothing is in flight on it; drops a held connection's shared state
    /// once its receive has ended. The one place that decides when a slot's close is queued.
    pub(super) fn try_free(&self, slot: u32) {
        let gen = {
            let mut slots = self.slots.borrow_mut();
            let s = &mut slots[slot as usize];
            let idle = s.shared.as_ref().is_none_or(|sh| sh.idle());
            let disposal = Disposal::of(s.state, idle);
            if disposal == Disposal::Keep {
                return;
            }
            if let Some(sh) = s.shared.take() {
                for piece in sh.rx.borrow_mut().drain(..) {
                    self.pool.consumed(piece);
                }
            }
            if disposal == Disposal::DropShared {
                return;
            }
            s.state = State::Closing;
            s.gen
        };
        self.push(&[opcode::Close::new(types::Fixed(slot))
            .build()
            .user_data(user_data(Op::Close, slot, gen))]);
    }

    /// Ends a slot's connection: cancels what is in flight on it (its receive, a connect still under
    /// way); `try_free` closes the socket (FIN, as close(2) does) once all of it has completed. A send
    /// in flight is not cancelled: it is the response or the close_notify the peer is owed.
    pub(super) fn release(&self, slot: u32) {
        let (gen, sh) = {
            let mut slots = self.slots.borrow_mut();
            let s = &mut slots[slot as usize];
            let Some(draining) = s.state.release() else {
                return;
            };
            s.state = draining;
            self.closing.set(self.closing.get() + 1);
            (s.gen, s.shared.clone())
        };
        if let Some(sh) = sh {
            if sh.recv.get().in_flight() {
                self.cancel(&sh, Op::Recv, slot, gen);
            }
            if sh.connect.get().in_flight() {
                self.cancel(&sh, Op::Connect, slot, gen);
            }
        }
        self.try_free(slot);
    }

    /// Cancels the operation `op` on the slot (matched by its user_data); counted in `others` until
    /// the cancel's own completion.
    pub(super) fn cancel(&self, sh: &Shared, op: Op, slot: u32, gen: u32) {
        sh.others.set(sh.others.get() + 1);
        self.push(&[opcode::AsyncCancel::new(user_data(op, slot, gen))
            .build()
            .user_data(user_data(Op::Cancel, slot, gen))]);
    }

    /// A cancel or a shutdown on the slot completed.
    pub(super) fn other_done(&self, sh: &Shared) {
        sh.others.set(sh.others.get().saturating_sub(1));
    }

    /// At the end of `bench --hold`, before `close_held`: how many held connections are no longer
    /// quietly open, because the server closed or reset them during the hold, or wrote to them
    /// unasked (a `408` before closing). One nonblocking receive of a byte with MSG_PEEK on each:
    /// EAGAIN is quietly open; an end of stream, an error or a byte are not. Waits up to `limit`,
    /// or 5 µs per held connection if longer (a million take about a second here), for the answers
    /// (each completes at once: MSG_DONTWAIT never waits for data); one still missing counts as open.
    pub async fn peek_held(&self, limit: std::time::Duration) -> u64 {
        let held: Vec<(u32, u32)> = self
            .slots
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == State::Held)
            .map(|(i, s)| (i as u32, s.gen))
            .collect();
        let limit = limit.max(std::time::Duration::from_micros(5) * held.len() as u32);
        self.peeked_gone.set(0);
        self.peeking.set(self.peeking.get() + held.len());
        for (slot, gen) in held {
            self.push(&[opcode::Recv::new(
                types::Fixed(slot),
                self.peek_byte.get().cast::<u8>(),
                1,
            )
            .flags(libc::MSG_PEEK | libc::MSG_DONTWAIT)
            .build()
            .user_data(user_data(Op::Peek, slot, gen))]);
        }
        let _ = tokio::time::timeout(limit, async {
            loop {
                let done = self.peeks_done.notified();
                if self.peeking.get() == 0 {
                    break;
                }
                done.await;
            }
        })
        .await;
        self.peeked_gone.get()
    }

    /// A peek of `peek_held` completed with `res`.
    pub(super) fn peeked(&self, res: i32) {
        if res != -libc::EAGAIN {
            self.peeked_gone.set(self.peeked_gone.get() + 1);
        }
        self.peeking.set(self.peeking.get().saturating_sub(1));
        if self.peeking.get() == 0 {
            self.peeks_done.notify_waiters();
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An operation on a slot, completed by the driver in some order.
    #[derive(Clone, Copy, Debug)]
    enum Op {
        Connect,
        Receive,
        Send,
        Shutdown,
        /// The cancels `release` queues: of the receive and of the connect.
        CancelReceive,
        CancelConnect,
    }

    fn complete(op: Op, sh: &Shared) {
        match op {
            Op::Connect => {
                let (done, _) = sh.connect.get().complete(-libc::ECANCELED).unwrap();
                sh.connect.set(done);
            }
            Op::Receive => sh.recv.set(sh.recv.get().ended(-libc::ECANCELED)),
            Op::Send => sh.send.set(sh.send.get().complete(-libc::ECANCELED).0),
            Op::Shutdown | Op::CancelReceive | Op::CancelConnect => {
                sh.others.set(sh.others.get() - 1)
            }
        }
    }

    fn orders(ops: &[Op]) -> Vec<Vec<Op>> {
        if ops.len() <= 1 {
            return vec![ops.to_vec()];
        }
        let mut all = Vec::new();
        for i in 0..ops.len() {
            let mut rest = ops.to_vec();
            let first = rest.remove(i);
            for mut tail in orders(&rest) {
                tail.insert(0, first);
                all.push(tail);
            }
        }
        all
    }

    #[test]
    fn a_slot_is_closed_and_reused_only_once_every_operation_completed() {
        let ops = [
            Op::Connect,
            Op::Receive,
            Op::Send,
            Op::Shutdown,
            Op::CancelReceive,
            Op::CancelConnect,
        ];
        for detached in [false, true] {
            for order in orders(&ops) {
                // A connection timed out mid-connect with a receive armed, a send in flight and the
                // watchdog's shutdown under way, and was released (which cancels two of them).
                let sh = Shared::default();
                sh.connect.set(Connecting::Abandoned);
                sh.recv.set(Receiving::Armed);
                sh.send.set(if detached {
                    Sending::Detached
                } else {
                    Sending::Pending
                });
                sh.others.set(3);
                let state = State::Open.release().unwrap();
                for (done, &op) in order.iter().enumerate() {
                    assert_eq!(
                        Disposal::of(state, sh.idle()),
                        Disposal::Keep,
                        "{order:?} at {done}"
                    );
                    complete(op, &sh);
                }
                assert_eq!(Disposal::of(state, sh.idle()), Disposal::Close, "{order:?}");
                // Only the close is in flight now; once it completes the slot is free.
                assert_eq!(Disposal::of(State::Closing, true), Disposal::Keep);
                assert_eq!(State::Closing.close_completed(), Some(State::Free));
            }
        }
    }

    #[test]
    fn only_an_open_or_held_slot_is_released_and_only_a_closing_one_closes() {
        assert_eq!(State::Open.release(), Some(State::Draining));
        assert_eq!(State::Held.release(), Some(State::Draining));
        for twice in [State::Draining, State::Closing, State::Free] {
            assert_eq!(twice.release(), None);
        }
        assert_eq!(State::Closing.close_completed(), Some(State::Free));
        for other in [State::Free, State::Open, State::Held, State::Draining] {
            assert_eq!(other.close_completed(), None);
        }
        for s in [
            State::Free,
            State::Open,
            State::Held,
            State::Draining,
            State::Closing,
        ] {
            assert_eq!(
                s.is_closing(),
                matches!(s, State::Draining | State::Closing)
            );
        }
    }

    #[test]
    fn a_receive_holding_its_share_is_cancelled_and_rearmed_only_by_a_read() {
        let share = 4;
        // Below its share it stays armed; at it, it is cancelled once.
        assert_eq!(Receiving::Armed.filled(share - 1, share), None);
        assert_eq!(
            Receiving::Armed.filled(share, share),
            Some(Receiving::Capped)
        );
        assert_eq!(Receiving::Capped.filled(share + 1, share), None);
        // A cancelled receive is still in flight until its final completion; no read re-arms it
        // before that.
        assert!(Receiving::Capped.in_flight());
        assert_eq!(Receiving::Capped.arm(false), None);
        let ended = Receiving::Capped.ended(-libc::ECANCELED);
        assert_eq!(ended, Receiving::Idle);
        assert!(!ended.in_flight());
        // The next read (which comes only once the connection consumed what it held) re-arms it.
        assert_eq!(ended.arm(true), Some(Receiving::Armed));
        assert_eq!(Receiving::Armed.arm(false), None);
    }

    #[test]
    fn a_receive_ended_by_an_empty_pool_waits_for_a_buffer_back() {
        let starved = Receiving::Armed.ended(-libc::ENOBUFS);
        assert_eq!(starved, Receiving::Starved);
        assert!(!starved.in_flight());
        // Re-arming into a pool that is still dry would end at once: the reader parks instead.
        assert_eq!(starved.arm(true), None);
        assert_eq!(starved.arm(false), Some(Receiving::Armed));
        // Any other end (the peer's FIN, an error, a cancel) is re-armed by the next read.
        for res in [0, -libc::ECONNRESET, -libc::ECANCELED] {
            assert_eq!(Receiving::Armed.ended(res), Receiving::Idle);
        }
    }

    #[test]
    fn a_held_slot_keeps_its_connection_and_drops_its_state_once_idle() {
        assert_eq!(Disposal::of(State::Held, false), Disposal::Keep);
        assert_eq!(Disposal::of(State::Held, true), Disposal::DropShared);
        for live in [State::Free, State::Open, State::Closing] {
            assert_eq!(Disposal::of(live, true), Disposal::Keep);
        }
    }

    #[test]
    fn an_error_outranks_the_end_of_the_stream() {
        let eof = Inbound::Open.eof();
        assert!(eof.at_end());
        assert_eq!(eof.error(), None);
        assert_eq!(
            eof.recv_failed(-libc::ECONNRESET),
            Inbound::Failed(-libc::ECONNRESET)
        );
        assert_eq!(
            eof.send_failed(-libc::EPIPE),
            Some(Inbound::SendFailed(-libc::EPIPE))
        );
        assert_eq!(
            Inbound::Failed(-libc::ECONNRESET).eof(),
            Inbound::Failed(-libc::ECONNRESET)
        );
        assert!(!Inbound::Open.at_end());
    }

    #[test]
    fn a_failed_send_stays_told_as_a_send() {
        let failed = Inbound::Open.send_failed(-libc::EPIPE).unwrap();
        // The first error wins over a second send's.
        assert_eq!(failed.send_failed(-libc::ECONNRESET), None);
        assert_eq!(Inbound::Failed(-libc::EIO).send_failed(-libc::EPIPE), None);
        // A receive error after it changes the code, not whose failure it is.
        assert_eq!(
            failed.recv_failed(-libc::ECONNRESET),
            Inbound::SendFailed(-libc::ECONNRESET)
        );
        assert_eq!(failed.error(), Some(-libc::EPIPE));
    }

    #[test]
    fn a_send_keeps_its_result_unless_detached() {
        assert!(!Sending::Idle.in_flight());
        assert!(Sending::Pending.in_flight());
        assert!(Sending::Detached.in_flight());
        assert!(!Sending::Done(5).in_flight());
        assert_eq!(Sending::Pending.complete(5), (Sending::Done(5), false));
        assert_eq!(Sending::Detached.complete(5), (Sending::Idle, true));
    }

    #[test]
    fn a_connect_ends_at_its_first_completion() {
        let (done, abandoned) = Connecting::InFlight.complete(0).unwrap();
        assert_eq!((done, abandoned), (Connecting::Done(0), false));
        assert!(!done.in_flight());
        // A timed-out connect: the ring closes what it opened.
        let (done, abandoned) = Connecting::Abandoned.complete(-libc::ECANCELED).unwrap();
        assert_eq!(
            (done, abandoned),
            (Connecting::Done(-libc::ECANCELED), true)
        );
        // A failed link ended it; the links after it are ignored.
        assert_eq!(
            Connecting::Done(-libc::EINVAL).complete(-libc::ECANCELED),
            None
        );
    }
}
