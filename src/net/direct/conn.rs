//! One connection's I/O on its slot: the multishot receive (armed on the first read, kept armed) and
//! the reads that copy out of the pool's buffers, the one send in flight, shutdown, and close on drop.
//! The driver's side of receive and send (what a completion changes) is here too, beside the code that
//! waits for it.

use std::future::{poll_fn, Future};
use std::io;
use std::rc::Rc;
use std::task::Poll;

use io_uring7::{opcode, squeue, types};

use super::buffers::Piece;
use super::slots::{Inbound, Sending, Shared, State};
use super::user_data::{user_data, Op};
use super::Ring;

/// One connection on a fixed slot. Dropping it closes the connection.
pub struct Conn {
    pub(super) ring: Rc<Ring>,
    pub(super) slot: u32,
    pub(super) gen: u32,
    pub(super) sh: Rc<Shared>,
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

    /// Whether the peer has neither closed nor reset the connection, nor sent anything that waits
    /// unread, as far as its receive has seen (see `net::Kill::quietly_open`). A connection whose
    /// receive is not armed counts as open: nothing says otherwise.
    pub fn quietly_open(&self) -> bool {
        match self.ring.owner(self.slot, self.gen) {
            Some((_, Some(sh))) => sh.inbound.get() == Inbound::Open && sh.rx.borrow().is_empty(),
            _ => false,
        }
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

    /// Arms the receive if a read needs one: true if a receive is in flight (now or already), false
    /// if it ended on an empty pool and the pool has still nothing to give.
    fn arm_recv(&self) -> bool {
        let now = self.sh.recv.get();
        if now.in_flight() {
            return true;
        }
        let group = self.ring.pool.fullest();
        let Some(armed) = now.arm(group.is_none()) else {
            return false;
        };
        // An idle receive arms even on an empty pool (its ENOBUFS leaves it Starved, to park).
        let group = group.unwrap_or(0);
        self.sh.recv.set(armed);
        self.ring.count(|s| s.rearms += 1);
        self.ring
            .push(&[opcode::RecvMulti::new(types::Fixed(self.slot), group)
                .build()
                .user_data(user_data(Op::Recv, self.slot, self.gen))]);
        true
    }

    /// Waits until received bytes, the end of the stream or an error are there. A receive ended by an
    /// empty pool waits here for a buffer to come back before it re-arms, not in a loop of ENOBUFS.
    pub async fn readable(&self) {
        let mut back = std::pin::pin!(self.ring.pool.back.notified());
        poll_fn(|cx| loop {
            if !self.sh.rx.borrow().is_empty() || self.sh.inbound.get().at_end() {
                return Poll::Ready(());
            }
            // The reader's wake-up also ends a parked wait: the watchdog's `interrupt`.
            self.sh.reader.set(Some(cx.waker().clone()));
            if self.arm_recv() {
                return Poll::Pending;
            }
            self.ring.pool.wait_for_buffers();
            if back.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            back.set(self.ring.pool.back.notified());
        })
        .await
    }

    fn ended(&self) -> io::Result<usize> {
        match self.sh.inbound.get() {
            Inbound::Open | Inbound::Eof => Ok(0),
            Inbound::SendFailed(e) => Err(io::Error::other(crate::error::FetchError::io(
                "cannot send the request",
                &io::Error::from_raw_os_error(-e),
            ))),
            Inbound::Failed(e) => Err(io::Error::from_raw_os_error(-e)),
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
        while let Some(&piece) = rx.front() {
            let off = self.sh.rx_off.get();
            let data = &self.ring.pool.bytes(piece)[off as usize..];
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
            self.ring.pool.consumed(piece);
        }
        if copied > 0 {
            return (Ok(copied), buf);
        }
        (self.ended(), buf)
    }

    /// Hands the oldest received chunk to `f`, in place in the pool buffer, and gives the buffer back
    /// after; None when nothing has arrived. The chunk stays queued while `f` runs (not borrowed: it
    /// may do anything but read this connection), so a panic in `f` leaves it to the close.
    fn next_chunk<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let piece = self.sh.rx.borrow().front().copied()?;
        let off = self.sh.rx_off.replace(0);
        let r = f(&self.ring.pool.bytes(piece)[off as usize..]);
        self.sh.rx.borrow_mut().pop_front();
        self.ring.pool.consumed(piece);
        Some(r)
    }

    /// Hands every received chunk to `f` in place, oldest first (`next_chunk`); `f` takes all of a
    /// chunk (what it cannot use yet it copies), and its false stops the handing (the rest is given
    /// back at the close). Ok(false): nothing had arrived, which after `readable` is the end of the
    /// stream; an error is the receive's failure.
    pub fn each_received(&self, mut f: impl FnMut(&[u8]) -> bool) -> io::Result<bool> {
        let mut any = false;
        while let Some(go) = self.next_chunk(&mut f) {
            any = true;
            if !go {
                break;
            }
        }
        if any {
            return Ok(true);
        }
        self.ended().map(|_| false)
    }

    /// Hands the next received chunk to `f` (`next_chunk`). Ok(false) is the end of the stream.
    /// `serve` parses requests this way, with no buffer of its own unless a request spans two chunks.
    pub async fn recv_with(&self, f: impl FnOnce(&[u8])) -> io::Result<bool> {
        self.readable().await;
        match self.next_chunk(f) {
            Some(()) => Ok(true),
            None => self.ended().map(|_| false),
        }
    }

    /// Queues all of `buf` as one send and returns at once, when no send is in flight (WouldBlock
    /// otherwise): the bytes are copied into the connection's send buffer, which stays alive until the
    /// completion. Nobody waits for that completion, so a request costs one wake-up (its response),
    /// not two; a send that fails fails the connection's receive side, where the reader sees it.
    pub fn send_now(&self, buf: &[u8]) -> io::Result<usize> {
        if self.sh.send.get().in_flight() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if let Some(e) = self.sh.inbound.get().error() {
            return Err(io::Error::from_raw_os_error(-e));
        }
        let mut b = self.sh.send_buf.borrow_mut();
        b.clear();
        b.extend_from_slice(buf);
        self.push_send(b.as_ptr(), b.len() as u32, Sending::Detached);
        Ok(buf.len())
    }

    /// Waits until no send is in flight (a `send_now` still under way owns the send buffer).
    async fn send_idle(&self) {
        poll_fn(|cx| {
            if self.sh.send.get().in_flight() {
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
            self.push_send(ptr, len, Sending::Pending);
            let res = poll_fn(|cx| match self.sh.send.get() {
                Sending::Done(res) => Poll::Ready(res),
                _ => {
                    self.sh.writer.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            })
            .await;
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
        .user_data(user_data(Op::SockOpt, self.slot, self.gen))]);
    }

    /// The close that ends this connection resets it (SO_LINGER 0; see `Transport::abort_on_close`).
    /// Issued through the ring ahead of the close, which the ring submits only after this connection
    /// is dropped and its operations ended; no completion unless it fails.
    pub fn abort_on_close(&self) {
        self.ring.push(&[opcode::SetSockOpt::new(
            types::Fixed(self.slot),
            libc::SOL_SOCKET as u32,
            libc::SO_LINGER as u32,
            (&crate::sys::ABORT_ON_CLOSE as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        )
        .build()
        .flags(squeue::Flags::SKIP_SUCCESS)
        .user_data(user_data(Op::SockOpt, self.slot, self.gen))]);
    }

    /// Queues `bytes` as this connection's last send, without waiting (TLS's close_notify just before
    /// the connection is dropped): the send goes out before the close that follows it in the ring.
    /// Skipped if a send is still in flight.
    pub fn send_last(&self, bytes: &[u8]) {
        if self.sh.send.get().in_flight() {
            return;
        }
        let mut buf = self.sh.send_buf.borrow_mut();
        buf.clear();
        buf.extend_from_slice(bytes);
        self.push_send(buf.as_ptr(), buf.len() as u32, Sending::Pending);
    }

    /// The one send in flight, from `send_buf` (which keeps the bytes alive until its completion);
    /// `how` is `Pending` or `Detached`.
    fn push_send(&self, ptr: *const u8, len: u32, how: Sending) {
        self.sh.send.set(how);
        self.ring
            .push(&[opcode::Send::new(types::Fixed(self.slot), ptr, len)
                .flags(libc::MSG_WAITALL | libc::MSG_NOSIGNAL)
                .build()
                .user_data(user_data(Op::Send, self.slot, self.gen))]);
    }

    /// Ends our sending side (FIN); the receiving side stays open.
    pub fn shutdown_write(&self) {
        self.ring
            .shutdown(&self.sh, self.slot, self.gen, libc::SHUT_WR);
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
        if self.sh.recv.get().in_flight() {
            ring.cancel(&self.sh, Op::Recv, slot, self.gen);
        }
        // Dropping `self` sees the Held state and leaves the socket open.
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Whatever arrived and was not read goes back to the pool now.
        for piece in self.sh.rx.borrow_mut().drain(..) {
            self.ring.pool.consumed(piece);
        }
        self.sh.rx_off.set(0);
        let held = self.ring.slots.borrow()[self.slot as usize].state == State::Held;
        if held {
            self.ring.try_free(self.slot);
        } else {
            self.ring.release(self.slot);
        }
    }
}

impl Ring {
    /// A receive completed: bytes in a piece of a pool buffer, the end of the stream, or an error. Without
    /// F_MORE the multishot has ended and the next read re-arms it. A connection that now holds its
    /// share of the pool has its receive cancelled (`Receiving::filled`).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn recv_done(
        &self,
        slot: u32,
        gen: u32,
        state: State,
        sh: &Shared,
        res: i32,
        piece: Option<Piece>,
        more: bool,
    ) {
        if !more {
            sh.recv.set(sh.recv.get().ended(res));
        }
        // The driver hands on a piece only with bytes in it, so without one `res` says why none came.
        match piece {
            Some(piece) => {
                if state == State::Open {
                    let held = {
                        let mut rx = sh.rx.borrow_mut();
                        rx.push_back(piece);
                        rx.len()
                    };
                    if let Some(capped) = sh.recv.get().filled(held, self.pool.share) {
                        sh.recv.set(capped);
                        self.count(|s| s.capped += 1);
                        self.cancel(sh, Op::Recv, slot, gen);
                        // Now, not at the end of this turn: the multishot takes more buffers at every
                        // system call this thread makes until the cancel is in (COOP_TASKRUN runs
                        // its task work there), and the turn may make several.
                        self.submit();
                    }
                } else {
                    self.pool.consumed(piece);
                }
            }
            None if res == 0 => sh.inbound.set(sh.inbound.get().eof()),
            None if res == -libc::ENOBUFS => self.count(|s| s.enobufs += 1),
            None if res < 0 && res != -libc::ECANCELED => {
                sh.inbound.set(sh.inbound.get().recv_failed(res))
            }
            None => {}
        }
        if let Some(w) = sh.reader.take() {
            w.wake();
        }
    }

    /// A send completed. A detached one (`send_now`) has nobody waiting: a failure goes to the reader.
    #[inline]
    pub(super) fn send_done(&self, sh: &Shared, res: i32) {
        let (next, detached) = sh.send.get().complete(res);
        sh.send.set(next);
        // MSG_WAITALL: anything short of the whole buffer is a failure of the connection.
        if detached && res < sh.send_buf.borrow().len() as i32 {
            let errno = if res < 0 { res } else { -libc::EPIPE };
            if let Some(failed) = sh.inbound.get().send_failed(errno) {
                sh.inbound.set(failed);
                if let Some(w) = sh.reader.take() {
                    w.wake();
                }
            }
        }
        if let Some(w) = sh.writer.take() {
            w.wake();
        }
    }

    /// Shuts a connection down (SHUT_RDWR) so whatever waits on it completes: the watchdog's timeout.
    /// A reader with no receive in flight (parked on an empty pool) would see nothing of the shutdown,
    /// so it is told the end of the stream at once, as a read after shutdown(2) is.
    fn interrupt(&self, slot: u32, gen: u32) {
        let Some((State::Open, Some(sh))) = self.owner(slot, gen) else {
            return;
        };
        self.shutdown(&sh, slot, gen, libc::SHUT_RDWR);
        if !sh.recv.get().in_flight() {
            sh.inbound.set(sh.inbound.get().eof());
            if let Some(w) = sh.reader.take() {
                w.wake();
            }
        }
    }

    /// A SHUTDOWN on the slot, counted in `others` until its completion (io-wq runs it, possibly
    /// late: the slot's close waits for it, so it cannot land on the next connection).
    fn shutdown(&self, sh: &Shared, slot: u32, gen: u32, how: i32) {
        sh.others.set(sh.others.get() + 1);
        self.push(&[opcode::Shutdown::new(types::Fixed(slot), how)
            .build()
            .user_data(user_data(Op::Shutdown, slot, gen))]);
    }
}
