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
use super::user_data::{current, user_data, CANCEL, CLOSE, RECV};
use super::Ring;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum State {
    Free,
    /// A connection (or the socket being connected) owns the slot.
    Open,
    /// `bench --hold`: open and proven, owned by the ring until `close_held`.
    Held,
    /// Closed or being closed; freed once its operations have all completed.
    Closing,
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
    pub(super) eof: Cell<bool>,
    /// A receive error (negative errno), 0 for none.
    pub(super) err: Cell<i32>,
    pub(super) recv_armed: Cell<bool>,
    pub(super) reader: Cell<Option<Waker>>,
    /// The send in flight: its buffer (kept alive here until the completion) and result.
    pub(super) sending: Cell<bool>,
    pub(super) send_buf: RefCell<Vec<u8>>,
    pub(super) send_res: Cell<Option<i32>>,
    pub(super) writer: Cell<Option<Waker>>,
    /// The send in flight came from `send_now`: nobody waits for its completion, which only reports
    /// a failure (through `err`, to the reader, marked by `send_failed` so it is told as a send's).
    pub(super) detached: Cell<bool>,
    pub(super) send_failed: Cell<bool>,
    /// The connect chain: in flight, its result, and the addresses it reads (kept alive until the
    /// connect completes).
    pub(super) connecting: Cell<bool>,
    pub(super) connect_res: Cell<Option<i32>>,
    pub(super) addrs: RefCell<Option<Box<Addrs>>>,
    pub(super) connector: Cell<Option<Waker>>,
    /// The connect future was dropped before its completion (a connect timeout).
    pub(super) abandoned: Cell<bool>,
    /// SO_RCVLOWAT's value, read by the kernel when the SETSOCKOPT is issued (see `set_recv_lowat`).
    pub(super) lowat: Cell<i32>,
    pub(super) closed: Cell<bool>,
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
    pub(super) fn try_free(&self, slot: u32) {
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
    pub(super) fn release(&self, slot: u32) {
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
