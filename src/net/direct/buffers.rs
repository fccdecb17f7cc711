//! The provided-buffer ring: the worker's pool of receive buffers, lent to the kernel, which picks one
//! only when bytes arrive for a connection. All of the pool's `unsafe` lives here: the two anonymous
//! mappings (the ring of entries and the buffers), their registration, the entries we write into the
//! ring and the bytes we read out of a buffer the kernel filled.
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
    /// Buffers one connection may hold before its receive is cancelled (`Receiving::filled`): one
    /// group's worth, which is also the most one receive can take.
    pub(super) share: usize,
    /// A reader is parked on an empty pool (`wait_for_buffers`): the next buffer back wakes `back`.
    parked: Cell<bool>,
    pub(super) back: tokio::sync::Notify,
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

    /// Registers each group with `submitter`'s ring as buffer group 0, 1, ... and lends it every
    /// buffer. The caller keeps the pool alive until that ring is dropped (`Ring`'s field order).
    pub(super) fn register(&self, submitter: &Submitter<'_>) -> io::Result<()> {
        for (bgid, g) in self.groups.iter().enumerate() {
            // SAFETY: the entries and the buffers they point at are this pool's mappings, which are
            // unmapped only when the pool drops; `Ring` drops its io_uring (and with it the kernel's
            // registration) before its pool, so the kernel never holds a pointer into freed memory.
            unsafe {
                submitter.register_buf_ring_with_flags(g.ring as u64, self.per, bgid as u16, 0)?;
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

    /// A completion named buffer `bid`: the kernel took it from its group.
    #[inline]
    pub(super) fn lend(&self, bid: u16) {
        let g = self.group(bid);
        g.lent.set(g.lent.get() + 1);
    }

    /// Gives buffer `bid` back to the kernel, and wakes the readers parked on an empty pool.
    #[inline]
    pub(super) fn recycle(&self, bid: u16) {
        let g = self.group(bid);
        g.lent.set(g.lent.get().saturating_sub(1));
        self.put(bid);
        self.publish(g);
        if self.parked.replace(false) {
            self.back.notify_waiters();
        }
    }

    /// Buffers the kernel filled that are not back yet, in all groups.
    pub(super) fn lent(&self) -> u32 {
        self.groups.iter().map(|g| u32::from(g.lent.get())).sum()
    }

    /// The group a receive should draw from: the one with the most buffers left (as far as the
    /// completions reaped so far tell), None when every group is empty.
    #[inline]
    pub(super) fn fullest(&self) -> Option<u16> {
        let (bgid, lent) = self
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (i as u16, g.lent.get()))
            .min_by_key(|&(_, lent)| lent)?;
        (lent < self.per).then_some(bgid)
    }

    /// A reader is about to wait on `back`: the next `recycle` must wake it.
    #[inline]
    pub(super) fn wait_for_buffers(&self) {
        self.parked.set(true);
    }

    /// Buffer `bid`, whole; the completion that named it says how much of it the kernel filled.
    #[inline]
    pub(super) fn buffer(&self, bid: u16) -> &[u8] {
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
        for bid in 0..8 {
            pool.lend(bid);
        }
        assert_eq!(pool.fullest(), Some(1), "group 0 is empty");
        for bid in 8..64 {
            pool.lend(bid);
        }
        assert_eq!(pool.fullest(), None);
        assert_eq!(pool.lent(), 64);
        pool.recycle(42);
        assert_eq!(pool.fullest(), Some(5), "buffer 42 is group 5's");
        assert_eq!(pool.lent(), 63);
    }

    /// A pool too small for eight groups of two is one group, whose share stays within it.
    #[test]
    fn a_small_pool_is_one_group() {
        let pool = BufPool::new(8, 16).unwrap();
        assert_eq!((pool.per, pool.groups.len(), pool.share), (8, 1, 2));
    }
}
