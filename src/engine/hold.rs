//! `bench --hold`, the connection-count mode: opens a worker's connections (at the ramp's pace, a few
//! hundred connecting at once at most), proves each with one request, holds them open for the hold, and
//! settles the counts the summary reports (peak, ramp, memory per connection). A proven direct
//! connection is handed to its ring (`Transport::hold`) so it costs only its slot. Connecting, the
//! requests themselves and their statistics are `bench`'s; the ring is `net::direct`'s.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::bench::{BenchConn, BenchSettings, BenchShard, BenchTarget};
use super::conn;
use crate::report::summary::{HoldReport, Report};

/// `--hold`: this worker's connections, as they come up.
pub(super) struct Hold {
    pub(super) duration: Duration,
    /// This worker's connections: when all have answered or failed, the hold starts.
    pub(super) connections: usize,
    pub(super) settled: Cell<usize>,
    /// Answered and still open, and the most at once.
    pub(super) live: Cell<usize>,
    pub(super) peak: Cell<usize>,
    /// When the hold ends (set once all are settled).
    pub(super) until: Cell<Option<Instant>>,
    pub(super) started: Instant,
    pub(super) rss_before: u64,
    pub(super) kernel_before: u64,
    /// Connection tasks still running, and a wake-up each time one settles or ends (the launcher
    /// paces itself on `settled`).
    pub(super) tasks: Cell<usize>,
    pub(super) progress: tokio::sync::Notify,
}

impl Hold {
    pub(super) fn settle(&self, report: &RefCell<Report>) {
        self.settled.set(self.settled.get() + 1);
        self.progress.notify_waiters();
        if self.settled.get() == self.connections && self.until.get().is_none() {
            let now = Instant::now();
            self.until.set(Some(now + self.duration));
            report.borrow_mut().hold = Some(HoldReport {
                peak: self.peak.get() as u64,
                ramp: now - self.started,
                rss_before_kib: self.rss_before,
                rss_up_kib: crate::sys::rss_kib().unwrap_or(0),
                kernel_before_bytes: self.kernel_before,
                kernel_up_bytes: crate::sys::tcp_kernel_bytes().unwrap_or(0),
            });
        }
    }
}

/// `--hold`: starts this worker's connections, at the ramp's pace when `--connect-rate` is given,
/// never more than a few hundred connecting at once over all workers (a burst of SYNs past the
/// server's backlog only comes back as retransmissions a second later). Ends when every task has:
/// at once for a proven direct connection (handed to the ring), at the end of the hold for others.
pub(super) async fn launch(
    shard: Rc<BenchShard>,
    settings: std::sync::Arc<BenchSettings>,
    connections: Vec<usize>,
    started: Instant,
    ramp: Option<Duration>,
) {
    // Connections of one worker between connect and proof at most: a few hundred in flight over
    // the whole run keep up with the kernel's ~45k connects/s, and each one in flight holds a task
    // (and over tcp a read buffer: memory that `user_bytes_per_conn` counts).
    let connecting = (1024 / settings.threads.max(1)).clamp(16, 256);
    let Some(hold) = &shard.hold else { return };
    let targets: Rc<[BenchTarget]> = settings.targets.clone().into();
    // Connection k starts once fewer than `connecting` of the k before it are unsettled (neither
    // answered nor failed yet).
    'launch: for (k, j) in connections.into_iter().enumerate() {
        let start_at = ramp.map(|step| started + step * k as u32);
        if !shard.wait_until(start_at).await {
            break;
        }
        loop {
            let settled = hold.progress.notified();
            let stopped = shard.stop.notified();
            if shard.stopped.get() {
                break 'launch;
            }
            if k - hold.settled.get() < connecting {
                break;
            }
            tokio::select! {
                _ = settled => {}
                _ = stopped => {}
            }
        }
        hold.tasks.set(hold.tasks.get() + 1);
        let (shard, targets) = (shard.clone(), targets.clone());
        let connect_timeout = settings.connect_timeout;
        tokio_uring::spawn(async move {
            let target = &targets[j % targets.len()];
            connection(&shard, target, connect_timeout, j).await;
            if let Some(hold) = &shard.hold {
                hold.tasks.set(hold.tasks.get() - 1);
                hold.progress.notify_waiters();
            }
        });
    }
    // Proven direct connections end their task at once; the others when the hold ends.
    loop {
        let progress = hold.progress.notified();
        if hold.tasks.get() == 0 {
            break;
        }
        progress.await;
    }
}

/// `--hold`: one connection, proved by one request, then held until the hold ends: by the ring
/// (direct, no `--rate`: the task ends and the connection costs only its slot) or by this task.
async fn connection(
    shard: &Rc<BenchShard>,
    target: &BenchTarget,
    connect_timeout: Duration,
    id: usize,
) {
    let Some(hold) = &shard.hold else { return };
    let Some(connected) = shard.open(target, connect_timeout).await else {
        return;
    };
    let io = match connected {
        Ok(io) => io,
        Err(err) => {
            shard.report.borrow_mut().error(&err);
            hold.settle(&shard.report);
            return;
        }
    };
    shard.report.borrow_mut().connected(io.tls_resumed());
    let detach = io.can_hold() && shard.due.is_none();
    let work = BenchConn::new(shard, target, id, true);
    work.detach.set(detach);
    conn::drive(&shard.env, &work, &io, false).await;
    if !work.answered.get() {
        // Failed before answering its proof request (on_failed / on_unanswered counted it).
        hold.settle(&shard.report);
        return;
    }
    if detach && !shard.stopped.get() {
        io.hold();
    } else {
        // Dropping the transport closes the connection in good order (FIN; close_notify over TLS).
        hold.live.set(hold.live.get() - 1);
    }
}
