//! Byte buffers lent to connections only while they hold bytes, so an idle connection holds none: one
//! `Pool` type for the pump's read buffers, TLS's ciphertext buffers and serve's response buffers,
//! each pool per worker thread and bounded, and `RecvBuf`, a connection's unconsumed bytes.

use std::cell::RefCell;

/// Size of a pooled read buffer: one read takes a full window of typical small responses (16 × 1 KiB).
pub const READ_BUF: usize = 32 * 1024;
/// Grow the buffer when less than this is free at its end, so reads stay large.
const MIN_SPARE: usize = 4 * 1024;
/// Buffers kept for reuse per pool: enough for every busy connection of a typical run; past a burst
/// of many more, the rest are freed, so idle connections do not keep a burst's memory.
const KEEP: usize = 256;
/// Move unparsed bytes to the front before a read when there are at most this many.
const COMPACT_BELOW: usize = 4 * 1024;

/// Free buffers of one size, for one thread.
pub struct Pool {
    free: RefCell<Vec<Vec<u8>>>,
    /// A new buffer's capacity; one grown past 4 times this is freed instead of kept.
    size: usize,
}

impl Pool {
    pub const fn new(size: usize) -> Pool {
        Pool {
            free: RefCell::new(Vec::new()),
            size,
        }
    }

    /// A cleared buffer with at least `size` bytes of capacity.
    #[inline]
    pub fn take(&self) -> Vec<u8> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    /// Keeps `buf` for reuse, unless enough are kept or it is of another size.
    #[inline]
    pub fn give(&self, mut buf: Vec<u8>) {
        if (self.size..=4 * self.size).contains(&buf.capacity()) {
            buf.clear();
            let mut free = self.free.borrow_mut();
            if free.len() < KEEP {
                free.push(buf);
            }
        }
    }
}

/// A connection's received bytes: `buf[start..]` is not yet consumed. The buffer is borrowed from the
/// worker's pool only while a response is expected, so idle connections hold no read buffer.
#[derive(Default)]
pub struct RecvBuf {
    buf: Option<Vec<u8>>,
    start: usize,
}

impl RecvBuf {
    #[inline]
    pub fn data(&self) -> &[u8] {
        match &self.buf {
            Some(b) => &b[self.start..],
            None => &[],
        }
    }

    #[inline]
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if let Some(b) = &mut self.buf {
            if self.start == b.len() {
                b.clear();
                self.start = 0;
            }
        }
    }

    /// The buffer to read into, with room at its end.
    pub fn take(&mut self, pool: &Pool) -> Vec<u8> {
        let mut b = self.buf.take().unwrap_or_else(|| pool.take());
        // Keep reads at the front of the buffer: moving a partial response (usually under 1 KiB) is
        // cheaper than letting reads walk through the whole buffer, which spreads the kernel's copies
        // and our parsing over the whole buffer of every connection and out of the CPU caches.
        let held = b.len() - self.start;
        if self.start > 0 && (held <= COMPACT_BELOW || b.capacity() - b.len() < MIN_SPARE) {
            b.copy_within(self.start.., 0);
            b.truncate(held);
            self.start = 0;
        }
        // A head larger than the buffer: grow (the decoder caps heads at 64 KiB).
        if b.capacity() - b.len() < MIN_SPARE {
            b.reserve(READ_BUF);
        }
        b
    }

    /// Appends `bytes` received elsewhere (a transport's own buffer) to what is unconsumed.
    pub fn append(&mut self, pool: &Pool, bytes: &[u8]) {
        let mut b = self.take(pool);
        b.extend_from_slice(bytes);
        self.put(b);
    }

    #[inline]
    pub fn put(&mut self, buf: Vec<u8>) {
        self.buf = Some(buf);
    }

    /// Returns the buffer to the pool when it holds nothing.
    #[inline]
    pub fn release(&mut self, pool: &Pool) {
        if self.data().is_empty() {
            if let Some(b) = self.buf.take() {
                self.start = 0;
                pool.give(b);
            }
        }
    }
}
