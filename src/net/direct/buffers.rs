//! The provided-buffer ring: the worker's pool of receive buffers, lent to the kernel, which picks one
//! only when bytes arrive for a connection. All of the pool's `unsafe` lives here: the two anonymous
//! mappings (the ring of entries and the buffers), their registration, the entries we write into the
//! ring and the bytes we read out of a buffer the kernel filled.
//!
//! A pool may be registered for incremental consumption where the kernel can (`IOU_PBUF_RING_INC`,
//! Linux 6.12; `direct::load_pool` says which pools): a receive takes only the bytes it needs from the
//! buffer at the head of the ring, and the next receive, for this connection or another, continues in
//! the same buffer. Each completion is then a
//! `Piece` of a buffer; the buffer goes back to the kernel once the kernel has filled it (a completion
//! without `F_BUF_MORE`) and every piece of it has been consumed. So one pool of large buffers serves
//! a pipelined batch in one completion and thousands of connections' small responses alike (a 1 KiB
//! response no longer takes a 16 KiB buffer). On an older kernel every completion takes its buffer
//! whole, as one piece, and the same accounting holds.
//!
//! What keeps it sound is one ordering, kept by `Ring`'s field order: the ring (and with it the
//! kernel's registration) is dropped before the pool unmaps the memory it points at.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring7::{types, Submitter};

/// Buffer groups a pool is split into (fewer for a pool under 16 buffers). A multishot receive draws
/// from one group, so the kernel itself stops a connection at one group's buffers: a connection that
/// never reads cannot take the whole pool in the one kernel pass that runs before user space sees any
/// of its completions (seen: 1,024 of 1,024 buffers taken by one hoarding client in a single burst,
/// which the share's cancel, sent after the first completions were reaped, came too late to stop).
const GROUPS: u16 = 8;

/// `IOU_PBUF_RING_INC` (include/uapi/linux/io_uring.h; io-uring 0.7 keeps its `sys` private).
const PBUF_RING_INC: u16 = 2;

/// The provided-buffer rings: `count` buffers of `size` bytes in `GROUPS` groups, each lent to the
/// kernel through a ring of entries it takes from the head while we append at the tail. A buffer's
/// id is its index in the pool (group = id / per group). Anonymous mappings, so pages the kernel
/// never fills cost no memory.
pub(super) struct BufPool {
    groups: Vec<Group>,
    /// Buffers per group (a power of two), and its log2: a buffer's group is `bid >> shift`.
    per: u16,
    shift: u32,
    bufs: *mut u8,
    bufs_len: usize,
    size: u32,
    /// Per buffer, by id.
    uses: Vec<Cell<Use>>,
    /// Where `fullest` starts looking.
    turn: Cell<u16>,
    /// Registered with `IOU_PBUF_RING_INC`: a buffer may carry many completions.
    incremental: Cell<bool>,
    /// Pieces one connection may hold before its receive is cancelled (`Receiving::filled`): one
    /// group's worth, which is also the most one receive can take. A piece lies in one buffer, so
    /// this also bounds the buffers a connection that never reads keeps from going back.
    pub(super) share: usize,
    /// A reader is parked on an empty pool (`wait_for_buffers`): the next buffer back wakes `back`.
    parked: Cell<bool>,
    pub(super) back: tokio::sync::Notify,
}

/// Where a completion's bytes are: `bid`'s bytes `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Piece {
    pub(super) bid: u16,
    pub(super) start: u32,
    pub(super) end: u32,
}

/// What one buffer holds while it is out of our hands: how far the kernel has filled it, the pieces
/// of it not consumed yet, and whether the kernel is done with it (it then counts as lent).
#[derive(Clone, Copy, Default)]
struct Use {
    filled: u32,
    pieces: u32,
    done: bool,
}

/// One group's ring of entries.
struct Group {
    ring: *mut types::BufRingEntry,
    ring_len: usize,
    tail: Cell<u16>,
    lent: Cell<u16>,
}

impl BufPool {
    pub(super) fn new(count: u16, size: u32) -> io::Result<BufPool> {
        assert!(count.is_power_of_two());
        let groups = if count >= 2 * GROUPS { GROUPS } else { 1 };
        let per = count / groups;
        let bufs_len = usize::from(count) * size as usize;
        let bufs = map(bufs_len)?;
        let mut pool = BufPool {
            groups: Vec::with_capacity(usize::from(groups)),
            per,
            shift: per.trailing_zeros(),
            bufs,
            bufs_len,
            size,
            uses: vec![Cell::new(Use::default()); usize::from(count)],
            turn: Cell::new(0),
            incremental: Cell::new(false),
            share: share(count).min(usize::from(per)),
            parked: Cell::new(false),
            back: tokio::sync::Notify::new(),
        };
        let ring_len = usize::from(per) * std::mem::size_of::<types::BufRingEntry>();
        for _ in 0..groups {
            // On failure, `pool` drops and unmaps the buffers and every group made so far.
            let ring = map(ring_len)?.cast();
            pool.groups.push(Group {
                ring,
                ring_len,
                tail: Cell::new(0),
                lent: Cell::new(0),
            });
        }
        Ok(pool)
    }

    /// Registers each group with `submitter`'s ring as buffer group 0, 1, ... (consumed
    /// incrementally if `incremental` and the kernel has it) and lends it every buffer. The caller
    /// keeps the pool alive until that ring is dropped (`Ring`'s field order).
    pub(super) fn register(&self, submitter: &Submitter<'_>, incremental: bool) -> io::Result<()> {
        for (bgid, g) in self.groups.iter().enumerate() {
            let register = |flags| {
                // SAFETY: the entries and the buffers they point at are this pool's mappings, which
                // are unmapped only when the pool drops; `Ring` drops its io_uring (and with it the
                // kernel's registration) before its pool, so the kernel never holds a pointer into
                // freed memory.
                unsafe {
                    submitter.register_buf_ring_with_flags(
                        g.ring as u64,
                        self.per,
                        bgid as u16,
                        flags,
                    )
                }
            };
            if bgid == 0 && incremental {
                // A kernel before 6.12 refuses the flag (EINVAL): whole buffers then.
                match register(PBUF_RING_INC) {
                    Ok(()) => self.incremental.set(true),
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => register(0)?,
                    Err(e) => return Err(e),
                }
            } else {
                register(if self.incremental.get() {
                    PBUF_RING_INC
                } else {
                    0
                })?;
            }
        }
        for bid in 0..self.per * self.groups.len() as u16 {
            self.put(bid);
        }
        for g in self.groups.iter() {
            self.publish(g);
        }
        Ok(())
    }

    #[inline]
    fn group(&self, bid: u16) -> &Group {
        &self.groups[usize::from(bid >> self.shift)]
    }

    #[inline]
    fn put(&self, bid: u16) {
        let g = self.group(bid);
        let tail = g.tail.get();
        let idx = usize::from(tail & (self.per - 1));
        // SAFETY: idx < per, the number of entries mapped at `g.ring`; the kernel only reads entries
        // between its head and the published tail, and this one is past the tail until `publish`.
        let entry = unsafe { &mut *g.ring.add(idx) };
        // SAFETY: bid < count, so the buffer lies inside the `bufs` mapping.
        entry.set_addr(unsafe { self.bufs.add(usize::from(bid) * self.size as usize) } as u64);
        entry.set_len(self.size);
        entry.set_bid(bid);
        g.tail.set(tail.wrapping_add(1));
    }

    #[inline]
    fn publish(&self, g: &Group) {
        // SAFETY: the tail field lives in the first entry of the mapped ring (the kernel's layout), is
        // 2-byte aligned, and the kernel only reads it: a release store publishes the entries before it.
        let tail = unsafe { &*(types::BufRingEntry::tail(g.ring).cast::<AtomicU16>()) };
        tail.store(g.tail.get(), Ordering::Release);
    }

    /// Whether buffers are consumed incrementally (see the module's comment).
    pub(super) fn incremental(&self) -> bool {
        self.incremental.get()
    }

    /// A completion named buffer `bid` with `len` bytes, and `more` (`F_BUF_MORE`) if the kernel
    /// will go on filling it: the piece it filled. Without `more` the kernel is done with the buffer,
    /// which counts as lent until its last piece is consumed.
    #[inline]
    pub(super) fn received(&self, bid: u16, len: u32, more: bool) -> Piece {
        let cell = &self.uses[usize::from(bid)];
        let mut u = cell.get();
        let start = u.filled;
        // A kernel that fills whole buffers never says `more`; the clamp keeps a piece inside its
        // buffer whatever a completion says.
        let end = start.saturating_add(len).min(self.size);
        u.filled = end;
        u.pieces += 1;
        if !more || !self.incremental.get() {
            u.done = true;
            let g = self.group(bid);
            g.lent.set(g.lent.get() + 1);
        }
        cell.set(u);
        Piece { bid, start, end }
    }

    /// A piece was consumed: its buffer goes back to the kernel when it was the last one of a buffer
    /// the kernel is done with, and the readers parked on an empty pool are woken.
    #[inline]
    pub(super) fn consumed(&self, piece: Piece) {
        let cell = &self.uses[usize::from(piece.bid)];
        let mut u = cell.get();
        u.pieces = u.pieces.saturating_sub(1);
        if u.pieces > 0 || !u.done {
            cell.set(u);
            return;
        }
        cell.set(Use::default());
        let g = self.group(piece.bid);
        g.lent.set(g.lent.get().saturating_sub(1));
        self.put(piece.bid);
        self.publish(g);
        if self.parked.replace(false) {
            self.back.notify_waiters();
        }
    }

    /// Buffers not back with the kernel: filled, or holding pieces not consumed yet (a leak at the
    /// end of a ring unless 0).
    pub(super) fn lent(&self) -> u32 {
        self.uses
            .iter()
            .filter(|u| {
                let u = u.get();
                u.done || u.pieces > 0
            })
            .count() as u32
    }

    /// The group a receive should draw from: the one with the most buffers left (as far as the
    /// completions reaped so far tell), None when every group is empty. Ties go round the groups:
    /// receives armed together (thousands of new connections in one turn, before any completion)
    /// would otherwise all draw from group 0, an eighth of the pool.
    #[inline]
    pub(super) fn fullest(&self) -> Option<u16> {
        let n = self.groups.len();
        let first = usize::from(self.turn.get()) % n;
        self.turn.set(((first + 1) % n) as u16);
        let (bgid, lent) = (0..n)
            .map(|k| (first + k) % n)
            .map(|i| (i as u16, self.groups[i].lent.get()))
            .min_by_key(|&(_, lent)| lent)?;
        (lent < self.per).then_some(bgid)
    }

    /// A reader is about to wait on `back`: the next `recycle` must wake it.
    #[inline]
    pub(super) fn wait_for_buffers(&self) {
        self.parked.set(true);
    }

    /// The bytes of `piece`.
    #[inline]
    pub(super) fn bytes(&self, piece: Piece) -> &[u8] {
        debug_assert!(piece.start <= piece.end && piece.end <= self.size);
        // SAFETY: bid < count and start <= end <= size (`received`), so the range lies inside the
        // buffer; the kernel wrote these bytes before posting the completion that named them and
        // writes only past them (an incremental buffer fills forward) until the buffer is recycled,
        // which waits for this piece's `consumed`, after this borrow ends.
        unsafe {
            std::slice::from_raw_parts(
                self.bufs
                    .add(usize::from(piece.bid) * self.size as usize + piece.start as usize),
                (piece.end - piece.start) as usize,
            )
        }
    }
}

impl Drop for BufPool {
    fn drop(&mut self) {
        // SAFETY: every region was mapped in `new` with these lengths; the ring that used them was
        // dropped before (field order in `Ring`).
        unsafe {
            for g in self.groups.iter() {
                libc::munmap(g.ring.cast(), g.ring_len);
            }
            libc::munmap(self.bufs.cast(), self.bufs_len);
        }
    }
}

/// A connection's share of a pool of `count` buffers: an eighth, and at least two (one being read, one
/// being filled). One connection that never reads leaves seven eighths to the others; it takes eight
/// such connections to empty the pool, and then readers park rather than spin.
fn share(count: u16) -> usize {
    usize::from(count / 8).max(2)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Receives draw from the group with the most buffers left; none once every group is empty; a
    /// buffer back makes its group the choice again. (Unregistered: only our side of the rings.)
    #[test]
    fn receives_draw_from_the_fullest_group() {
        let pool = BufPool::new(64, 16).unwrap();
        assert_eq!((pool.per, pool.groups.len(), pool.share), (8, 8, 8));
        assert_eq!(pool.fullest(), Some(0));
        assert_eq!(pool.fullest(), Some(1), "ties go round the groups");
        for bid in 0..8 {
            pool.received(bid, 16, false);
        }
        assert_eq!(
            pool.fullest(),
            Some(2),
            "group 0 is empty; the turn is at 2"
        );
        for bid in 8..64 {
            pool.received(bid, 16, false);
        }
        assert_eq!(pool.fullest(), None);
        assert_eq!(pool.lent(), 64);
        pool.consumed(Piece {
            bid: 42,
            start: 0,
            end: 16,
        });
        assert_eq!(pool.fullest(), Some(5), "buffer 42 is group 5's");
        assert_eq!(pool.lent(), 63);
    }

    /// Against the kernel: receives continue in the buffer the last one left off (one buffer, three
    /// pieces), the one that fills it ends it (no `F_BUF_MORE`), the rest goes to the next buffer,
    /// and a filled buffer goes back only after its last piece is consumed. On a kernel without
    /// incremental buffers each receive takes a buffer whole, and the same accounting holds.
    #[test]
    fn receives_fill_a_buffer_piece_by_piece_and_it_goes_back_after_the_last() {
        use io_uring7::{cqueue, opcode, squeue, IoUring};
        let pool = BufPool::new(8, 64).unwrap();
        let mut ring = IoUring::new(8).unwrap();
        pool.register(&ring.submitter(), true).unwrap();
        let mut fds = [0; 2];
        // SAFETY: a plain socketpair into a two-element array.
        let made =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
        assert_eq!(made, 0);
        let mut recv = |bytes: &[u8]| {
            // SAFETY: writes from a live slice to our own socket.
            let n = unsafe { libc::write(fds[1], bytes.as_ptr().cast(), bytes.len()) };
            assert_eq!(n, bytes.len() as isize);
            let sqe = opcode::Recv::new(types::Fd(fds[0]), std::ptr::null_mut(), 0)
                .buf_group(0)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT);
            // SAFETY: no pointer of ours in the entry; the buffers are the pool's, registered above.
            unsafe { ring.submission().push(&sqe).unwrap() };
            ring.submit_and_wait(1).unwrap();
            let cqe = ring.completion().next().unwrap();
            let bid = cqueue::buffer_select(cqe.flags()).expect("a buffer was picked");
            pool.received(bid, cqe.result() as u32, cqueue::buffer_more(cqe.flags()))
        };
        let a = recv(b"0123456789");
        let b = recv(&[b'x'; 50]);
        // 60 bytes in; 10 more: 4 fill the first buffer, the other 6 wait for the next receive.
        let c = recv(b"ABCDEFGHIJ");
        let d = recv(b"");
        // SAFETY: closes the two fds made above.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        assert_eq!(pool.bytes(a), b"0123456789");
        assert_eq!(pool.bytes(b), &[b'x'; 50][..]);
        assert_eq!(pool.bytes(d), b"EFGHIJ");
        let release = crate::sys::kernel_release();
        let mut version = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse().unwrap_or(0));
        let (major, minor): (u32, u32) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
        assert_eq!(
            pool.incremental(),
            (major, minor) >= (6, 12),
            "kernel {release}"
        );
        if !pool.incremental() {
            assert_eq!(pool.bytes(c), b"ABCDEFGHIJ");
            return;
        }
        assert_eq!(pool.bytes(c), b"ABCD");
        assert_eq!((a.bid, a.start, a.end), (b.bid, 0, 10));
        assert_eq!((b.start, b.end, c.start, c.end), (10, 60, 60, 64));
        assert_eq!(c.bid, a.bid);
        assert_ne!(d.bid, a.bid);
        assert_eq!(d.start, 0);
        assert_eq!(
            pool.lent(),
            2,
            "the first buffer is filled; the second holds a piece"
        );
        pool.consumed(c);
        pool.consumed(a);
        assert_eq!(pool.lent(), 2, "a piece of the first is still out");
        pool.consumed(b);
        assert_eq!(pool.lent(), 1, "the first is back");
        pool.consumed(d);
        assert_eq!(
            pool.lent(),
            0,
            "the kernel still fills the second: not lent"
        );
        drop(ring);
    }

    /// A pool too small for eight groups of two is one group, whose share stays within it.
    #[test]
    fn a_small_pool_is_one_group() {
        let pool = BufPool::new(8, 16).unwrap();
        assert_eq!((pool.per, pool.groups.len(), pool.share), (8, 1, 2));
    }
}
