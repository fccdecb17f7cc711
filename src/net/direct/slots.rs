//! The slot table: one entry per fixed file of the ring, saying who owns it and which generation of
//! connection is on it, and what a connection's futures share with the driver (`Shared`). A slot is
//! reused only once its close and every other operation on it have completed; `Ring::try_free` is the
//! one place that decides it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

use io_uring7::{opcode, types};

use super::connect::Addrs;
use super::user_data::{current, user_data, Op};
use super::Ring;

/// Who owns a slot. A slot goes Free → Open (a connect or an accept) → [Held] → Closing (its close
/// is queued) → Closed (the close completed) → Free, and leaves Closed only once nothing else is in
/// flight on it (`Ring::try_free`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum State {
    Free,
    /// A connection (or the socket being connected) owns the slot.
    Open,
    /// `bench --hold`: open and proven, owned by the ring until `close_held`.
    Held,
    /// Its close is queued or in flight.
    Closing,
    /// Its close completed; other operations on it may still be in flight.
    Closed,
}

impl State {
    /// A close is queued for an open or held slot; None if one already was (or the slot is free).
    pub(super) fn release(self) -> Option<State> {
        match self {
            State::Open | State::Held => Some(State::Closing),
            State::Closing | State::Closed | State::Free => None,
        }
    }

    /// The slot's close completed.
    pub(super) fn close_completed(self) -> Option<State> {
        (self == State::Closing).then_some(State::Closed)
    }

    /// Counted in `Ring::closing`: the slot comes free soon.
    pub(super) fn is_closing(self) -> bool {
        matches!(self, State::Closing | State::Closed)
    }
}

/// What `Ring::try_free` does with a slot, decided from its state and whether anything is in flight
/// on it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Disposal {
    Keep,
    /// Closed and idle: the slot is reusable.
    Free,
    /// Held and idle: the connection stays, its shared state goes (a held connection costs the slot).
    DropShared,
}

impl Disposal {
    pub(super) fn of(state: State, idle: bool) -> Disposal {
        match state {
            _ if !idle => Disposal::Keep,
            State::Closed => Disposal::Free,
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
    /// Received (buffer id, length), oldest first, and how much of the front one was consumed.
    pub(super) rx: RefCell<VecDeque<(u16, u32)>>,
    pub(super) rx_off: Cell<u32>,
    /// How the receiving side ended, if it did.
    pub(super) inbound: Cell<Inbound>,
    /// The multishot receive is armed (its last completion, without F_MORE, has not come).
    pub(super) recv_armed: Cell<bool>,
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
}

impl Shared {
    /// No receive, send or connect in flight. Shutdowns, cancels and SETSOCKOPTs are not counted: the
    /// generation keeps their late completions from the next connection, and the kernel reads
    /// SETSOCKOPT's value (in `lowat`) when it issues it, before the close queued after it.
    pub(super) fn idle(&self) -> bool {
        !self.recv_armed.get() && !self.send.get().in_flight() && !self.connect.get().in_flight()
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

    /// A slot's close completed. A held connection closes with no state of its own (so closing a
    /// million of them allocates nothing) and frees its slot at once.
    pub(super) fn closed(&self, slot: u32, gen: u32) {
        {
            let mut slots = self.slots.borrow_mut();
            let Some(s) = slots.get_mut(slot as usize) else {
                return;
            };
            if !current(s.gen, gen) {
                return;
            }
            let Some(closed) = s.state.close_completed() else {
                return;
            };
            s.state = closed;
        }
        self.try_free(slot);
    }

    /// Frees a closed slot once nothing is in flight on it; drops a held connection's shared state
    /// once its receive has ended.
    pub(super) fn try_free(&self, slot: u32) {
        let mut slots = self.slots.borrow_mut();
        let s = &mut slots[slot as usize];
        let idle = s.shared.as_ref().is_none_or(|sh| sh.idle());
        match Disposal::of(s.state, idle) {
            Disposal::Keep => return,
            Disposal::DropShared => {}
            Disposal::Free => {
                if s.state.is_closing() {
                    self.closing.set(self.closing.get() - 1);
                }
                s.state = State::Free;
                s.gen = s.gen.wrapping_add(1);
            }
        }
        if let Some(sh) = s.shared.take() {
            for (bid, _) in sh.rx.borrow_mut().drain(..) {
                self.pool.recycle(bid);
            }
        }
        // A ring that accepts lets the kernel pick free slots; only a connecting ring keeps the list.
        if s.state == State::Free && self.listeners.borrow().is_empty() {
            self.free.borrow_mut().push(slot);
            self.freed.notify_one();
        }
    }

    /// Ends a slot's connection: cancels its receive and closes the socket (FIN, as close(2) does).
    pub(super) fn release(&self, slot: u32) {
        let (gen, armed) = {
            let mut slots = self.slots.borrow_mut();
            let s = &mut slots[slot as usize];
            let Some(closing) = s.state.release() else {
                return;
            };
            s.state = closing;
            self.closing.set(self.closing.get() + 1);
            let armed = s.shared.as_ref().is_some_and(|sh| sh.recv_armed.get());
            (s.gen, armed)
        };
        if armed {
            self.push(&[opcode::AsyncCancel::new(user_data(Op::Recv, slot, gen))
                .build()
                .user_data(user_data(Op::Cancel, slot, gen))]);
        }
        self.push(&[opcode::Close::new(types::Fixed(slot))
            .build()
            .user_data(user_data(Op::Close, slot, gen))]);
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
        Close,
    }

    fn complete(op: Op, state: &mut State, sh: &Shared) {
        match op {
            Op::Connect => {
                let (done, _) = sh.connect.get().complete(-libc::ECANCELED).unwrap();
                sh.connect.set(done);
            }
            Op::Receive => sh.recv_armed.set(false),
            Op::Send => sh.send.set(sh.send.get().complete(-libc::ECANCELED).0),
            Op::Close => *state = state.close_completed().unwrap(),
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
    fn a_slot_is_reusable_only_once_every_operation_completed() {
        let ops = [Op::Connect, Op::Receive, Op::Send, Op::Close];
        for detached in [false, true] {
            for order in orders(&ops) {
                // A connection timed out mid-connect with a receive armed and a send in flight,
                // and was released.
                let sh = Shared::default();
                sh.connect.set(Connecting::Abandoned);
                sh.recv_armed.set(true);
                sh.send.set(if detached {
                    Sending::Detached
                } else {
                    Sending::Pending
                });
                let mut state = State::Open.release().unwrap();
                for (done, &op) in order.iter().enumerate() {
                    assert_eq!(
                        Disposal::of(state, sh.idle()),
                        Disposal::Keep,
                        "{order:?} at {done}"
                    );
                    complete(op, &mut state, &sh);
                }
                assert_eq!(Disposal::of(state, sh.idle()), Disposal::Free, "{order:?}");
            }
        }
    }

    #[test]
    fn only_an_open_or_held_slot_is_released_and_only_a_closing_one_closes() {
        assert_eq!(State::Open.release(), Some(State::Closing));
        assert_eq!(State::Held.release(), Some(State::Closing));
        for twice in [State::Closing, State::Closed, State::Free] {
            assert_eq!(twice.release(), None);
        }
        assert_eq!(State::Closing.close_completed(), Some(State::Closed));
        for other in [State::Free, State::Open, State::Held, State::Closed] {
            assert_eq!(other.close_completed(), None);
        }
        for s in [
            State::Free,
            State::Open,
            State::Held,
            State::Closing,
            State::Closed,
        ] {
            assert_eq!(s.is_closing(), matches!(s, State::Closing | State::Closed));
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
