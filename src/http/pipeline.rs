//! Per-connection pipeline bookkeeping: the FIFO that ties each response to its request (RFC 9112 §9.3.2:
//! responses come in request order), the send policy (when to refill the window), and what happens to
//! requests a connection leaves unanswered.

use std::collections::VecDeque;
use std::time::Instant;

/// One request on the wire, waiting for its response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight<T> {
    /// The workload's handle for this request.
    pub ticket: T,
    /// When its batch was handed to the kernel: latency and `--timeout` count from here.
    pub sent: Instant,
    pub head_request: bool,
}

/// The requests written on one connection and not yet answered, oldest first. Its capacity is the
/// pipeline depth, allocated once.
#[derive(Debug)]
pub struct Pipeline<T> {
    queue: VecDeque<InFlight<T>>,
    depth: usize,
    refill_at: usize,
}

impl<T: Copy> Pipeline<T> {
    pub fn new(depth: usize, refill_at: usize) -> Pipeline<T> {
        debug_assert!(depth >= 1 && refill_at >= 1 && (refill_at < depth || depth == 1));
        Pipeline {
            queue: VecDeque::with_capacity(depth),
            depth,
            refill_at,
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn free(&self) -> usize {
        self.depth - self.queue.len()
    }

    /// The send policy. Every write costs ≈2 µs of kernel time on loopback, so refill only once `refill_at`
    /// slots are free. Waiting for the whole window (wrk's Lua pipelining) would be cheaper still but
    /// stalls against servers that cork their last response (nginx `tcp_nopush on`), so `refill_at` stays
    /// below the depth. An empty window is always refilled.
    pub fn wants_refill(&self) -> bool {
        self.queue.is_empty() || self.free() >= self.refill_at
    }

    pub fn push(&mut self, entry: InFlight<T>) {
        debug_assert!(self.queue.len() < self.depth);
        self.queue.push_back(entry);
    }

    pub fn front(&self) -> Option<&InFlight<T>> {
        self.queue.front()
    }

    pub fn pop(&mut self) -> Option<InFlight<T>> {
        self.queue.pop_front()
    }

    /// Empties the FIFO, oldest first, when the connection ends.
    pub fn drain(&mut self) -> impl Iterator<Item = InFlight<T>> + '_ {
        self.queue.drain(..)
    }
}

/// The default refill threshold for a depth: a quarter of the window, at least 1, below the depth.
/// Measured in docs/PERFORMANCE.md; `--refill-at` overrides it.
pub fn default_refill_at(depth: usize) -> usize {
    (depth / 4).clamp(1, depth.saturating_sub(1).max(1))
}

/// Why a request that was written got no response on its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// The server ended the connection in good order before it (`Connection: close`, HTTP/1.0, a
    /// close-delimited body), or we ended it over another response that broke our own limit: the server
    /// never had a chance to answer it.
    Bystander,
    /// Its connection failed (reset, unannounced close, timeout, broken framing) before any byte of its
    /// response arrived.
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send again without charging `--retries`.
    Resend,
    /// Send again and charge one retry.
    Retry,
    /// Report the failure.
    GiveUp,
}

/// RFC 9112 §9.3.1: only idempotent requests are retransmitted automatically, and a request whose
/// failure is not its own (a bystander) does not spend its retries.
pub fn verdict(why: Unanswered, idempotent: bool, retries_used: u32, retries: u32) -> Verdict {
    match why {
        _ if !idempotent => Verdict::GiveUp,
        Unanswered::Bystander => Verdict::Resend,
        Unanswered::Failed if retries_used < retries => Verdict::Retry,
        Unanswered::Failed => Verdict::GiveUp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refill_threshold() {
        assert_eq!(default_refill_at(1), 1);
        assert_eq!(default_refill_at(2), 1);
        assert_eq!(default_refill_at(4), 1);
        assert_eq!(default_refill_at(16), 4);
        assert_eq!(default_refill_at(64), 16);
        for depth in 2..200 {
            assert!(default_refill_at(depth) < depth);
        }
    }

    #[test]
    fn window_policy() {
        let now = Instant::now();
        let mut p: Pipeline<u32> = Pipeline::new(16, 4);
        assert!(p.wants_refill());
        for t in 0..16 {
            p.push(InFlight {
                ticket: t,
                sent: now,
                head_request: false,
            });
        }
        assert!(!p.wants_refill());
        for expect in 0..3 {
            assert_eq!(p.pop().unwrap().ticket, expect);
            assert!(!p.wants_refill(), "3 free slots must not trigger a write");
        }
        p.pop();
        assert!(p.wants_refill());
        let rest: Vec<u32> = p.drain().map(|f| f.ticket).collect();
        assert_eq!(rest, (4..16).collect::<Vec<_>>());
    }

    #[test]
    fn retry_rules() {
        use Unanswered::*;
        use Verdict::*;
        assert_eq!(verdict(Bystander, true, 5, 0), Resend);
        assert_eq!(verdict(Failed, true, 0, 2), Retry);
        assert_eq!(verdict(Failed, true, 2, 2), GiveUp);
        assert_eq!(verdict(Failed, false, 0, 2), GiveUp);
        assert_eq!(verdict(Bystander, false, 0, 2), GiveUp);
    }
}
