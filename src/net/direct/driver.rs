//! The ring's driver: one task per worker that waits for the ring's fd in tokio's epoll, reaps every
//! completion and hands each to the concept it belongs to (receive and send to `conn`, the connect
//! chain to `connect`, accepts to `accept`, closes to `slots`), then submits what the connections
//! queued since its last turn, so a tick's sends go in one `io_uring_enter`.

use std::rc::Rc;

use io_uring7::{cqueue, squeue};

use super::slots::State;
use super::user_data::{split, Op};
use super::{Ring, Stats};

impl Ring {
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
            if self.submit() {
                // Operations the kernel completed inside that submit (a send into a socket with
                // room, most of them) are in the queue already: taking them now spares a wake-up
                // from epoll for each (which found nothing else to do).
                self.reap();
            }
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

    pub(super) fn count(&self, bump: impl FnOnce(&mut Stats)) {
        let mut s = self.stats.get();
        bump(&mut s);
        self.stats.set(s);
    }

    /// Submits what was queued; false if nothing was.
    pub(super) fn submit(&self) -> bool {
        if !self.dirty.replace(false) {
            return false;
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
        true
    }

    /// Queues `entries` (one SQE or one linked chain) for the driver's next submit.
    pub(super) fn push(&self, entries: &[squeue::Entry]) {
        loop {
            let mut uring = self.uring.borrow_mut();
            let mut sq = uring.submission();
            // A chain must not be split across two submits.
            if sq.capacity() - sq.len() >= entries.len() {
                // SAFETY: every pointer in these entries (addresses, option values, send buffers)
                // is kept alive until its completion: in `Shared`, in `pool`, static, or the ring's
                // own `peek_byte`, which is dropped after the ring itself.
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
        let (op, gen, slot) = split(cqe.user_data());
        let res = cqe.result();
        let flags = cqe.flags();
        let piece = cqueue::buffer_select(flags).and_then(|bid| {
            let piece = self
                .pool
                .received(bid, res.max(0) as u32, cqueue::buffer_more(flags));
            // A buffer named with no bytes (never seen) goes straight back: no piece to hand on.
            if res > 0 {
                return Some(piece);
            }
            self.pool.consumed(piece);
            None
        });
        match op {
            Some(Op::Accept) => return self.accept_done(slot, res, cqueue::more(flags)),
            Some(Op::Close) => return self.closed(slot, gen),
            Some(Op::Peek) => return self.peeked(res),
            _ => {}
        }
        let Some((state, Some(sh))) = self.owner(slot, gen) else {
            // Nothing owns the slot any more: give back any piece of a buffer.
            if let Some(piece) = piece {
                self.pool.consumed(piece);
            }
            return;
        };
        match op {
            Some(Op::Recv) => {
                self.recv_done(slot, gen, state, &sh, res, piece, cqueue::more(flags))
            }
            Some(Op::Send) => self.send_done(&sh, res),
            Some(Op::Chain | Op::Connect) => self.connect_done(&sh, res),
            Some(Op::Cancel | Op::Shutdown) => self.other_done(&sh),
            // A SETSOCKOPT posts only if it failed; nothing waits for it (see `Shared::idle`).
            Some(Op::SockOpt) | Some(Op::Accept) | Some(Op::Close) | Some(Op::Peek) | None => {}
        }
        // Only a released or held slot changes here; a completion for an open one (every receive and
        // send of a live connection) needs no second look at the slot table.
        if state != State::Open {
            self.try_free(slot);
        }
    }
}
