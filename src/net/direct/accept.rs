//! `serve`: multishot accept into slots the kernel allocates. An accepting ring keeps no free list (the
//! kernel picks the slot), so a slot may come back from the kernel before we reaped its old close.

use std::future::poll_fn;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::task::Poll;

use io_uring7::{opcode, types};

use super::conn::Conn;
use super::slots::{Shared, State};
use super::user_data::{user_data, Op};
use super::Ring;

/// Free slots below which a ring accepts one connection at a time.
const ACCEPT_MARGIN: usize = 64;

impl Ring {
    /// `serve`: accepts connections on `listener` into fixed slots the kernel allocates (multishot
    /// accept). Call `accept` to take them.
    pub fn listen(&self, listener: RawFd) {
        self.listeners.borrow_mut().push((listener, false));
        self.arm_accepts();
    }

    /// As `listen`, one connection at a time and only while a slot is free. A multishot accept takes
    /// a connection off the listen queue before it finds the table full, and the kernel then resets
    /// it; a listener that descriptor accepts also serve (`serve --transport auto`) must leave such
    /// connections queued for them instead.
    pub fn listen_one_at_a_time(&self, listener: RawFd) {
        self.single_accepts.set(true);
        self.listen(listener);
    }

    fn arm_accepts(&self) {
        // A nearly full table gets single accepts too: the multishot that fills it resets one
        // connection at most (its ENFILE ends it), and the rest wait in the listen queue.
        let free = self
            .slots
            .borrow()
            .iter()
            .filter(|s| s.state == State::Free)
            .count();
        let single = self.single_accepts.get() || free < ACCEPT_MARGIN;
        if single && free == 0 {
            // Re-armed by `accept` when a close frees a slot (`closed` wakes it).
            return;
        }
        let mut entries = Vec::new();
        for (i, (fd, armed)) in self.listeners.borrow_mut().iter_mut().enumerate() {
            if !*armed {
                *armed = true;
                let data = user_data(Op::Accept, i as u32, 0);
                entries.push(if single {
                    opcode::Accept::new(types::Fd(*fd), std::ptr::null_mut(), std::ptr::null_mut())
                        .file_index(Some(types::DestinationSlot::auto_target()))
                        .build()
                        .user_data(data)
                } else {
                    opcode::AcceptMulti::new(types::Fd(*fd))
                        .allocate_file_index(true)
                        .build()
                        .user_data(data)
                });
                if single {
                    // One accept in flight per ring: one free slot is all it is sure of.
                    break;
                }
            }
        }
        for e in entries {
            self.push(&[e]);
        }
    }

    /// An accept completed on listener number `listener`: `res` is the slot the kernel chose.
    pub(super) fn accept_done(&self, listener: u32, res: i32, more: bool) {
        if res >= 0 {
            let slot = res as u32;
            let mut slots = self.slots.borrow_mut();
            if let Some(s) = slots.get_mut(slot as usize) {
                if s.state != State::Free {
                    // The kernel reused a slot whose close we have not reaped yet: whatever still
                    // completes for the old connection must not reach the new one.
                    s.gen = s.gen.wrapping_add(1);
                }
                if s.state.is_closing() {
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
}
