//! Fewer, larger reads for pipelined connections: the receive low-water mark (SO_RCVLOWAT) predicted
//! from the sizes of the responses so far, and the rescue of a read that waits too long. A tuning of
//! the pump (`engine::conn`); the HTTP rules never see it.

use std::time::{Duration, Instant};

use crate::net::buffers::READ_BUF;
use crate::net::Transport;

/// Fewer, larger reads. A server answering a pipeline writes one response at a time, and a read that is
/// always armed completes once per response: one io_uring op, one task wake-up and one recv per
/// response, most of the client's CPU at `-p 16`. When the responses on a connection have had the same
/// size for a while, the socket's receive low-water mark (SO_RCVLOWAT, which the kernel's readiness
/// check honours) is raised to `refill_at` responses, so one read takes a refill's worth at once.
/// Receives are submitted with POLL_FIRST so the kernel does not first grab the one response already
/// there.
///
/// The mark is only a prediction: it stays below what the responses already requested will bring
/// (`pipe.len() - 1` responses, leaving the one in progress as slack), and if a read still waits much
/// longer than that many responses usually take (the server changed its response size), the mark drops
/// back to one byte, which wakes the read at once, and batching pauses until sizes are stable again.
#[derive(Default)]
pub(crate) struct ReadBatching {
    /// Pipelining is on (`-p` above 1): without it a read never waits for more than one response.
    enabled: bool,
    /// Bytes of the response being received so far (head and body as consumed).
    current: usize,
    /// Size of the last complete response, and how many in a row had that size.
    last: usize,
    same: u32,
    /// SO_RCVLOWAT as last set on the socket (0 and 1 both mean the kernel default).
    lowat: usize,
    /// Average wait per response of recent reads (a moving average), and this read's start and count.
    pace: Duration,
    submitted: Option<Instant>,
    completed: u32,
}

/// Responses of one size in a row before batching starts.
const STABLE: u32 = 16;
/// A batched read is rescued after waiting this many times as long as its responses usually take, and
/// never sooner than `RESCUE_MIN`.
const RESCUE_FACTOR: u32 = 4;
const RESCUE_MIN: Duration = Duration::from_millis(10);
/// Highest mark: well inside a read buffer and the socket's receive buffer.
const MAX_LOWAT: usize = READ_BUF / 2;

impl ReadBatching {
    /// Batching happens only with pipelining (`-p` above 1).
    pub fn new(enabled: bool) -> ReadBatching {
        ReadBatching {
            enabled,
            ..ReadBatching::default()
        }
    }

    #[inline]
    pub fn consumed(&mut self, bytes: usize) {
        self.current += bytes;
    }

    #[inline]
    pub fn response_done(&mut self) {
        if self.current == self.last {
            self.same = self.same.saturating_add(1);
        } else {
            self.last = self.current;
            self.same = 0;
        }
        self.current = 0;
        self.completed += 1;
    }

    /// The read that started at `submitted` has been parsed; fold its wait per response into the pace.
    #[inline]
    pub fn read_done(&mut self, now: Instant) {
        if let (Some(start), n @ 1..) = (self.submitted.take(), self.completed) {
            let sample = now.saturating_duration_since(start) / n;
            self.pace = if self.pace.is_zero() {
                sample
            } else {
                (self.pace * 7 + sample) / 8
            };
        }
        self.completed = 0;
    }

    /// Sets the mark for the next read, with `in_flight` responses expected.
    #[inline]
    pub fn adjust(&mut self, io: &Transport, refill_at: usize, in_flight: usize) {
        if !self.enabled {
            return;
        }
        let want = if self.same >= STABLE && in_flight >= 2 {
            (refill_at.min(in_flight - 1) * self.last).clamp(1, MAX_LOWAT)
        } else {
            1
        };
        if want != self.lowat.max(1) {
            io.set_recv_lowat(want);
            self.lowat = want;
        }
    }

    /// A read that waits for one response starts waiting now (a direct socket waits for its bytes
    /// before it takes a buffer: see `Transport::receive`).
    fn waiting(&mut self) {
        // Only reads that wait for one response measure the pace (a batched read's wait includes
        // the batching itself), and only where batching can happen at all.
        if self.enabled && self.lowat <= 1 && self.submitted.is_none() {
            self.submitted = Some(Instant::now());
        }
    }

    /// Awaits `read` (a receive of `io`: `Transport::receive` or `wait_received`), rescuing it when
    /// a batch it waits for is late.
    pub async fn receive<T>(
        &mut self,
        io: &Transport,
        read: impl std::future::Future<Output = T>,
    ) -> T {
        if self.lowat <= 1 {
            self.waiting();
            return read.await;
        }
        let responses = (self.lowat / self.last.max(1)).max(1) as u32;
        let patience = (self.pace * responses * RESCUE_FACTOR).max(RESCUE_MIN);
        tokio::pin!(read);
        tokio::select! {
            biased;
            done = &mut read => done,
            _ = tokio::time::sleep(patience) => {
                // Lowering the mark makes the kernel re-check readiness (tcp_set_rcvlowat), so the
                // pending read completes with what has arrived. The read itself is never dropped.
                io.set_recv_lowat(1);
                self.lowat = 1;
                self.same = 0;
                read.await
            }
        }
    }
}
