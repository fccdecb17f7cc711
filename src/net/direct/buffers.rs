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

/// The buffer group of the worker's pool (one pool per ring).
pub(super) const BGID: u16 = 0;

/// The provided-buffer ring: `count` buffers of `size` bytes, lent to the kernel through a ring of
/// entries it takes from the head while we append at the tail. Anonymous mappings, so pages the
/// kernel never fills cost no memory.
pub(super) struct BufPool {
    ring: *mut types::BufRingEntry,
    ring_len: usize,
    bufs: *mut u8,
    bufs_len: usize,
    count: u16,
    size: u32,
    tail: Cell<u16>,
    /// Buffers the kernel filled that are not back yet.
    pub(super) lent: Cell<u32>,
    /// Buffers one connection may hold before its receive is cancelled (`Receiving::filled`).
    pub(super) share: usize,
    /// A reader is parked on an empty pool (`wait_for_buffers`): the next buffer back wakes `back`.
    parked: Cell<bool>,
    pub(super) back: tokio::sync::Notify,
}

impl BufPool {
    pub(super) fn new(count: u16, size: u32) -> io::Result<BufPool> {
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
            share: share(count),
            parked: Cell::new(false),
            back: tokio::sync::Notify::new(),
        })
    }

    /// Registers the pool with `submitter`'s ring as buffer group `BGID` and lends it every buffer.
    /// The caller keeps the pool alive until that ring is dropped (`Ring`'s field order).
    pub(super) fn register(&self, submitter: &Submitter<'_>) -> io::Result<()> {
        // SAFETY: the entries and the buffers they point at are this pool's mappings, which are
        // unmapped only when the pool drops; `Ring` drops its io_uring (and with it the kernel's
        // registration) before its pool, so the kernel never holds a pointer into freed memory.
        unsafe {
            submitter.register_buf_ring_with_flags(self.ring as u64, self.count, BGID, 0)?;
        }
        self.publish_all();
        Ok(())
    }

    fn publish_all(&self) {
        for bid in 0..self.count {
            self.put(bid);
        }
        self.publish();
    }

    #[inline]
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

    #[inline]
    fn publish(&self) {
        // SAFETY: the tail field lives in the first entry of the mapped ring (the kernel's layout), is
        // 2-byte aligned, and the kernel only reads it: a release store publishes the entries before it.
        let tail = unsafe { &*(types::BufRingEntry::tail(self.ring).cast::<AtomicU16>()) };
        tail.store(self.tail.get(), Ordering::Release);
    }

    /// Gives buffer `bid` back to the kernel, and wakes the readers parked on an empty pool.
    #[inline]
    pub(super) fn recycle(&self, bid: u16) {
        self.lent.set(self.lent.get().saturating_sub(1));
        self.put(bid);
        self.publish();
        if self.parked.replace(false) {
            self.back.notify_waiters();
        }
    }

    /// Every buffer is lent out (as far as the completions reaped so far tell).
    #[inline]
    pub(super) fn is_dry(&self) -> bool {
        self.lent.get() >= u32::from(self.count)
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
        // SAFETY: both regions were mapped in `new` with these lengths; the ring that used them was
        // dropped before (field order in `Ring`).
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_len);
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
