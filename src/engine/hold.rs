//! `bench --hold`, the connection-count mode: opens a worker's connections (at the ramp's pace, a few
//! hundred connecting at once at most), proves each with one request, holds them open until the hold
//! ends, and settles the counts the summary reports (peak, ramp, memory per connection). A proven direct
//! connection with nothing more to send is handed to its ring (`Transport::hold`), so it costs only its
//! slot. Connecting, the requests themselves, `--rate`'s schedule and the statistics are `bench`'s; the
//! ring is `net::direct`'s.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::bench::{BenchConn, BenchSettings, BenchShard, BenchTarget, Pace, Schedule, Standing};
use super::conn;
use crate::http::client::{Connection, Start};
use crate::report::summary::{HoldReport, Report};

/// `--hold`: this worker's connections, as they come up.
pub(super) struct Hold {
    duration: Duration,
    /// `--rate`'s requests, spread over the proven connections, if given.
    pub(super) rate: Option<Schedule>,
    /// This worker's connections: when all have answered or failed, the hold starts.
    connections: usize,
    settled: Cell<usize>,
    /// Answered and still open, and the most at once.
    live: Cell<usize>,
    peak: Cell<usize>,
    phase: Cell<Phase>,
    started: Instant,
    /// When the opening gives up on connections not yet proved (`Opening`).
    opening: Opening,
    /// The last proof, or the start: the opening's stall clock runs from here.
    proved_at: Cell<Instant>,
    rss_before: u64,
    kernel_before: u64,
    /// Connection tasks still running, and a wake-up each time one settles or ends (the launcher
    /// paces itself on `settled`).
    tasks: Cell<usize>,
    progress: tokio::sync::Notify,
}

/// How long the opening may take. A server that stops answering (its open-file limit reached, its
/// backlog full) must not keep the run opening forever: connections launch a few hundred at a time
/// and each stuck one takes a whole --timeout to fail, so 2,000 of them took minutes. The opening
/// ends once no connection has been proved for `stall` (as long as one may take to connect and
/// answer) after the ramp's last scheduled start; the hold then begins with what is up, and the
/// connections never tried are counted as `not-started`.
#[derive(Clone, Copy)]
pub(super) struct Opening {
    /// The ramp's length (`--connect-rate`), zero without one.
    pub ramp: Duration,
    /// --connect-timeout + --timeout.
    pub stall: Duration,
}

/// Where a worker's hold stands.
#[derive(Clone, Copy)]
enum Phase {
    /// Connections are still coming up (or failing).
    Opening,
    /// Every connection has settled; the hold runs until then.
    Holding { until: Instant },
}

/// Where a held connection's proof stands.
#[derive(Clone, Copy, PartialEq)]
enum Proof {
    Unsent,
    Sent,
    Answered,
}

/// A held connection's part of its `Pace`.
pub(super) struct Held<'a> {
    hold: &'a Hold,
    proof: &'a Cell<Proof>,
    /// Once proven, the ring keeps the connection and its task ends (direct, no `--rate`); otherwise
    /// the task keeps it until the hold ends.
    detach: bool,
}

impl Hold {
    pub(super) fn new(
        duration: Duration,
        connections: usize,
        rate: Option<Schedule>,
        opening: Opening,
    ) -> Hold {
        let now = Instant::now();
        Hold {
            duration,
            rate,
            connections,
            settled: Cell::new(0),
            live: Cell::new(0),
            peak: Cell::new(0),
            phase: Cell::new(Phase::Opening),
            started: now,
            opening,
            proved_at: Cell::new(now),
            rss_before: crate::sys::rss_kib().unwrap_or(0),
            kernel_before: crate::sys::tcp_kernel_bytes().unwrap_or(0),
            tasks: Cell::new(0),
            progress: tokio::sync::Notify::new(),
        }
    }

    /// Whether the hold has run its course. It starts once every connection has settled, or once the
    /// opening has stalled (`Opening`): then it starts here.
    pub(super) fn over(&self, now: Instant, report: &RefCell<Report>) -> bool {
        match self.phase.get() {
            Phase::Opening => {
                let from = self.proved_at.get().max(self.started + self.opening.ramp);
                if now >= from + self.opening.stall {
                    self.begin(report);
                }
                false
            }
            Phase::Holding { until } => now >= until,
        }
    }

    fn opening(&self) -> bool {
        matches!(self.phase.get(), Phase::Opening)
    }

    /// One connection answered its proof or failed; the last one starts the hold.
    fn settle(&self, report: &RefCell<Report>) {
        self.settled.set(self.settled.get() + 1);
        self.progress.notify_waiters();
        if self.settled.get() == self.connections {
            self.begin(report);
        }
    }

    /// Opening → Holding: the ramp is over, so its cost is measured now.
    fn begin(&self, report: &RefCell<Report>) {
        let Phase::Opening = self.phase.get() else {
            return;
        };
        let now = Instant::now();
        self.phase.set(Phase::Holding {
            until: now + self.duration,
        });
        report.borrow_mut().hold = Some(HoldReport {
            peak: self.peak.get() as u64,
            closed: 0,
            ramp: now - self.started,
            rss_before_kib: self.rss_before,
            rss_up_kib: crate::sys::rss_kib().unwrap_or(0),
            kernel_before_bytes: self.kernel_before,
            kernel_up_bytes: crate::sys::tcp_kernel_bytes().unwrap_or(0),
        });
        // The launcher stops launching.
        self.progress.notify_waiters();
    }
}

impl Held<'_> {
    /// The proof request first, nothing while it is out, then `--rate`'s requests as they fall due.
    pub(super) fn fill(
        &self,
        work: &BenchConn<'_>,
        out: &mut Vec<u8>,
        conn: &mut Connection<(Instant, u32)>,
        max: usize,
        now: Instant,
    ) -> usize {
        match (self.proof.get(), &self.hold.rate) {
            (Proof::Unsent, _) => {
                self.proof.set(Proof::Sent);
                work.push(out, conn, now, now);
                1
            }
            (Proof::Sent, _) | (Proof::Answered, None) => 0,
            (Proof::Answered, Some(schedule)) => work.push_due(schedule, out, conn, max, now),
        }
    }

    /// Held open until the hold ends, taking `--rate`'s requests as they fall due; a detached
    /// connection ends its task as soon as it is proven.
    pub(super) async fn idle(&self, shard: &BenchShard) -> bool {
        if self.detach && self.proof.get() == Proof::Answered {
            return false;
        }
        loop {
            // Created before the checks, so a wake-up between them is not missed.
            let stopped = shard.stop.notified();
            let woken = self.hold.rate.as_ref().map(|s| s.wake.notified());
            if shard.stopped.get() {
                return false;
            }
            if self.hold.rate.as_ref().is_some_and(Schedule::has_due) {
                return true;
            }
            match woken {
                Some(woken) => tokio::select! {
                    _ = woken => {}
                    _ = stopped => {}
                },
                None => stopped.await,
            }
        }
    }

    /// A response arrived: the first one proves the connection live.
    pub(super) fn answered(&self, report: &RefCell<Report>) {
        if self.proof.replace(Proof::Answered) != Proof::Answered {
            let hold = self.hold;
            hold.live.set(hold.live.get() + 1);
            hold.peak.set(hold.peak.get().max(hold.live.get()));
            hold.proved_at.set(Instant::now());
            hold.settle(report);
        }
    }
}

/// Starts this worker's connections, at the ramp's pace when `--connect-rate` is given, never more
/// than a few hundred connecting at once over all workers (a burst of SYNs past the server's backlog
/// only comes back as retransmissions a second later). Ends when the hold does: connections handed to
/// the ring stay open until then, though their tasks ended at once.
pub(super) async fn launch(
    shard: Rc<BenchShard>,
    hold: Rc<Hold>,
    settings: std::sync::Arc<BenchSettings>,
    connections: Vec<usize>,
    started: Instant,
    ramp: Option<Duration>,
) {
    // Connections of one worker between connect and proof at most: a few hundred in flight over
    // the whole run keep up with the kernel's ~45k connects/s, and each one in flight holds a task
    // (and over tcp a read buffer: memory that `user_bytes_per_conn` counts).
    let connecting = (1024 / settings.threads.max(1)).clamp(16, 256);
    let targets: Rc<[BenchTarget]> = settings.targets.clone().into();
    // Connection k starts once fewer than `connecting` of the k before it are unsettled (neither
    // answered nor failed yet), while the opening lasts.
    let total = connections.len();
    let mut launched = 0;
    'launch: for (k, j) in connections.into_iter().enumerate() {
        let start_at = ramp.map(|step| started + step * k as u32);
        if !shard.wait_until(start_at).await {
            break;
        }
        loop {
            let settled = hold.progress.notified();
            let stopped = shard.stop.notified();
            if shard.stopped.get() || !hold.opening() {
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
        launched += 1;
        hold.tasks.set(hold.tasks.get() + 1);
        let (shard, hold, targets) = (shard.clone(), hold.clone(), targets.clone());
        let connect_timeout = settings.connect_timeout;
        tokio_uring::spawn(async move {
            let target = &targets[j % targets.len()];
            connection(&shard, &hold, target, connect_timeout, j).await;
            hold.tasks.set(hold.tasks.get() - 1);
            hold.progress.notify_waiters();
        });
    }
    // The ones the opening never reached are reported, not forgotten.
    for _ in launched..total {
        Standing::NotStarted.count(&mut shard.report.borrow_mut(), true);
    }
    // Proven direct connections end their task at once; the others when the hold ends.
    loop {
        let progress = hold.progress.notified();
        if hold.tasks.get() == 0 {
            break;
        }
        progress.await;
    }
    loop {
        let stopped = shard.stop.notified();
        if shard.stopped.get() {
            break;
        }
        stopped.await;
    }
}

/// One connection, proved by one request, then held until the hold ends: by the ring (direct, no
/// `--rate`: the task ends and the connection costs only its slot) or by this task.
async fn connection(
    shard: &Rc<BenchShard>,
    hold: &Hold,
    target: &BenchTarget,
    connect_timeout: Duration,
    id: usize,
) {
    let Some(connected) = shard.open(target, connect_timeout).await else {
        Standing::Connecting(None).count(&mut shard.report.borrow_mut(), true);
        return;
    };
    let io = match connected {
        Ok(io) => io,
        Err(err) => {
            let mut report = shard.report.borrow_mut();
            report.error(&err);
            Standing::Connecting(Some(err.kind)).count(&mut report, true);
            drop(report);
            hold.settle(&shard.report);
            return;
        }
    };
    shard.report.borrow_mut().connected(io.tls_resumed());
    let proof = Cell::new(Proof::Unsent);
    let held = Held {
        hold,
        proof: &proof,
        detach: io.can_hold() && hold.rate.is_none(),
    };
    let detach = held.detach;
    let work = BenchConn::new(shard, target, id, Pace::Held(held));
    work.standing.set(Standing::Connected);
    conn::drive(&shard.env, &work, &io, Start::Open).await;
    // Proved or not, this is as far as it gets: a detached connection is the ring's from here.
    work.standing
        .get()
        .count(&mut shard.report.borrow_mut(), true);
    if proof.get() != Proof::Answered {
        // Failed before answering its proof request (on_left counted it).
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
