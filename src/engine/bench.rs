//! One worker's share of a `bench`: a fixed set of connections, each sending the same request as fast as
//! the pipeline window allows (closed loop), or at the times a `--rate` schedule sets (open loop), until
//! the duration ends (`-d`) or the request budget is spent (`-n`). Failures are counted and the
//! connection is re-opened; nothing is retried.
//!
//! Open loop, as wrk2 does it: request k of this worker is due at `start + k / rate`. Due requests wait
//! in a queue until a connection has room; each one's latency runs from when it was due, so a server
//! that stalls is charged for every request it held back (coordinated omission corrected), and the
//! service time (from the actual write) is reported beside it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::conn::{self, End, Env, Workload};
use crate::config::Stop;
use crate::error::FetchError;
use crate::http::client::{Connection, Fate};
use crate::http::pipeline::{InFlight, Unanswered};
use crate::http::response::Head;
use crate::net;
use crate::report::summary::{Report, UrlCounts};

/// One origin of a bench: where to connect and its URLs' requests, each with the URL's index in the
/// run's list (for per-URL counts).
#[derive(Clone, Debug)]
pub struct BenchTarget {
    pub addrs: Vec<SocketAddr>,
    pub requests: Vec<(u32, Vec<u8>)>,
    /// https: the name the certificate must carry.
    pub tls_name: Option<Box<str>>,
}

pub struct BenchSettings {
    pub targets: Vec<BenchTarget>,
    pub head_request: bool,
    /// `Connection: close` on every request (`--no-keepalive`).
    pub closes: bool,
    pub depth: usize,
    pub refill_at: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub tls: std::sync::Arc<rustls::ClientConfig>,
    pub no_tls_resume: bool,
    /// Open loop: requests per second for the whole run (shared out over the workers).
    pub rate: Option<f64>,
    /// Load before the measured part of the run, excluded from every statistic.
    pub warmup: Duration,
    /// Each connection picks its origin's URLs at random instead of in turn.
    pub random: bool,
    /// New connections per second for the whole run at the start (a ramp), or all at once.
    pub connect_rate: Option<f64>,
    pub threads: usize,
    /// URLs in the run (the per-URL counts' length).
    pub urls: usize,
    /// Connection-count mode (`--hold`): open every connection, prove it with one request, hold them
    /// all open this long (with `--rate`'s requests spread over them, if given), then close them.
    pub hold: Option<Duration>,
    /// The direct transport, or None for tcp.
    pub direct: Option<super::transport::DirectSettings>,
}

pub struct BenchShard {
    pub(super) env: Env,
    /// This worker's TLS configuration, with its own session cache.
    pub(super) tls: std::sync::Arc<rustls::ClientConfig>,
    /// Requests this worker may still send (`-n`), or u64::MAX.
    pub(super) budget: Cell<u64>,
    pub(super) stopped: Cell<bool>,
    /// Wakes connections still waiting for their connect when the run ends.
    pub(super) stop: tokio::sync::Notify,
    pub(super) report: RefCell<Report>,
    pub(super) head_request: bool,
    /// Open loop: when each request waiting for a connection was due, oldest first.
    pub(super) due: Option<RefCell<VecDeque<Instant>>>,
    /// Wakes idle connections when requests fall due.
    pub(super) wake: tokio::sync::Notify,
    /// Start of the measured part (after the warm-up): the timeline counts seconds from here.
    pub(super) measured: Cell<Instant>,
    pub(super) random: bool,
    pub(super) urls: usize,
    pub(super) hold: Option<super::hold::Hold>,
    pub(super) dialer: RefCell<net::Dialer>,
}

/// When this worker started and stopped, beside its counters.
pub struct BenchOutcome {
    pub report: Report,
    pub started: Instant,
    pub ended: Instant,
}

impl BenchShard {
    /// Runs `connections` connections, connection j of this worker loading target `targets[first + j *
    /// stride]` (round-robin over the whole run's connections).
    pub async fn run(
        settings: std::sync::Arc<BenchSettings>,
        connections: Vec<usize>,
        stop: Stop,
        rate: Option<f64>,
        live: std::sync::Arc<super::progress::Live>,
        worker: usize,
    ) -> BenchOutcome {
        let shard = Rc::new(BenchShard {
            tls: net::tls::worker_config(&settings.tls, settings.no_tls_resume),
            env: {
                let mut env = Env::new(settings.timeout, settings.depth, settings.refill_at);
                // A load generator pipelines whatever method it is given: that is the load asked for.
                env.rules.closes = settings.closes;
                env
            },
            budget: Cell::new(match stop {
                Stop::Requests(n) => n,
                Stop::After(_) => u64::MAX,
            }),
            stopped: Cell::new(false),
            stop: tokio::sync::Notify::new(),
            report: RefCell::new(Report::default()),
            head_request: settings.head_request,
            due: rate.map(|_| RefCell::new(VecDeque::new())),
            wake: tokio::sync::Notify::new(),
            measured: Cell::new(Instant::now()),
            random: settings.random,
            urls: settings.urls,
            hold: settings.hold.map(|duration| super::hold::Hold {
                duration,
                connections: connections.len(),
                settled: Cell::new(0),
                live: Cell::new(0),
                peak: Cell::new(0),
                until: Cell::new(None),
                started: Instant::now(),
                rss_before: crate::sys::rss_kib().unwrap_or(0),
                kernel_before: crate::sys::tcp_kernel_bytes().unwrap_or(0),
                tasks: Cell::new(0),
                progress: tokio::sync::Notify::new(),
            }),
            dialer: RefCell::new(net::Dialer::Tcp),
        });
        let direct = super::transport::start_worker(&settings.direct, &shard.dialer);
        shard.reset_report(rate.is_some());
        let started = Instant::now();
        shard.measured.set(started);
        // A ramp: this worker's k-th connection starts k / (its share of --connect-rate) in.
        let ramp = settings
            .connect_rate
            .map(|r| Duration::from_secs_f64(settings.threads as f64 / r));
        let mut tasks = Vec::new();
        if shard.hold.is_some() {
            tasks.push(tokio_uring::spawn(super::hold::launch(
                shard.clone(),
                settings.clone(),
                connections,
                started,
                ramp,
            )));
        } else {
            tasks.reserve(connections.len());
            for (k, j) in connections.into_iter().enumerate() {
                let target = settings.targets[j % settings.targets.len()].clone();
                let start_at = ramp.map(|step| started + step * k as u32);
                tasks.push(tokio_uring::spawn(Self::connection(
                    shard.clone(),
                    target,
                    settings.connect_timeout,
                    j,
                    start_at,
                )));
            }
        }
        let ticker = tokio_uring::spawn(Self::tick(
            shard.clone(),
            stop,
            started,
            settings.warmup,
            (live, worker),
        ));
        // The schedule ends with the run: -d at R/s is R·d requests, however late the ticker notices.
        let end = match stop {
            Stop::After(d) if shard.hold.is_none() => Some(started + settings.warmup + d),
            _ => None,
        };
        let scheduler =
            rate.map(|r| tokio_uring::spawn(Self::schedule(shard.clone(), r, started, end)));
        for t in tasks {
            let _ = t.await;
        }
        // Connections handed to the ring (`--hold` over direct) stay open until the hold ends.
        loop {
            let stopped = shard.stop.notified();
            if shard.stopped.get() || shard.hold.is_none() {
                break;
            }
            stopped.await;
        }
        let ended = Instant::now();
        ticker.abort();
        if let Some(s) = scheduler {
            s.abort();
        }
        let ring = super::transport::finish_worker(direct, &shard.dialer).await;
        let started = shard.measured.get();
        let mut report = std::mem::take(&mut *shard.report.borrow_mut());
        report.reads = shard.env.reads.get();
        report.writes = shard.env.writes.get();
        report.ring = ring;
        BenchOutcome {
            report,
            started,
            ended,
        }
    }

    /// Fires timeouts, ends the warm-up (clearing its statistics) and ends the run at its duration.
    async fn tick(
        shard: Rc<Self>,
        stop: Stop,
        started: Instant,
        warmup: Duration,
        (live, worker): (std::sync::Arc<super::progress::Live>, usize),
    ) {
        let period = (shard.env.rules.timeout / 20)
            .clamp(Duration::from_millis(10), Duration::from_millis(100));
        let mut warming = !warmup.is_zero();
        loop {
            let now = Instant::now();
            let next = if warming {
                (now + period).min(started + warmup)
            } else {
                now + period
            };
            tokio::time::sleep_until(next.into()).await;
            let now = Instant::now();
            if warming && now >= started + warmup {
                warming = false;
                shard.measured.set(now);
                let open_loop = shard.report.borrow().open_loop;
                shard.reset_report(open_loop);
            }
            let held = shard
                .hold
                .as_ref()
                .and_then(|h| h.until.get())
                .is_some_and(|until| now >= until);
            if held {
                shard.stopped.set(true);
                shard.env.watchdog.stop_all();
                shard.stop.notify_waiters();
                shard.wake.notify_waiters();
                return;
            }
            if let Stop::After(d) = stop {
                if shard.hold.is_none() && now >= started + warmup + d {
                    shard.stopped.set(true);
                    shard.env.watchdog.stop_all();
                    shard.stop.notify_waiters();
                    shard.wake.notify_waiters();
                    return;
                }
            }
            shard.env.watchdog.tick(now);
            let report = shard.report.borrow();
            live.publish(worker, report.requests, report.error_count());
        }
    }

    /// Open loop: puts each request in the queue at the time it is due and wakes idle connections.
    /// Timers fire at millisecond granularity, so requests fall due in small bursts; each keeps its own
    /// due time, so the bursts do not show in the latencies.
    async fn schedule(shard: Rc<Self>, rate: f64, started: Instant, end: Option<Instant>) {
        let Some(due) = &shard.due else {
            return;
        };
        let interval = Duration::from_secs_f64(1.0 / rate);
        let mut k: u32 = 0;
        let mut next = started;
        loop {
            tokio::time::sleep_until(next.into()).await;
            let now = Instant::now();
            let mut added = false;
            let over = |at: Instant| end.is_some_and(|e| at >= e);
            while next <= now && !over(next) && !shard.stopped.get() && shard.budget.get() > 0 {
                due.borrow_mut().push_back(next);
                if shard.budget.get() != u64::MAX {
                    shard.budget.set(shard.budget.get() - 1);
                }
                added = true;
                k = k.wrapping_add(1);
                // From the start each time, so rounding does not accumulate.
                next = started + interval * k;
            }
            if added {
                shard.wake.notify_waiters();
            }
            if shard.stopped.get() || shard.budget.get() == 0 || over(next) {
                shard.wake.notify_waiters();
                return;
            }
        }
    }

    async fn connection(
        shard: Rc<Self>,
        target: BenchTarget,
        connect_timeout: Duration,
        id: usize,
        start_at: Option<Instant>,
    ) {
        if !shard.wait_until(start_at).await {
            return;
        }
        let mut backoff = Duration::from_millis(1);
        let work = BenchConn::new(&shard, &target, id, false);
        while !shard.stopped.get() && (shard.budget.get() > 0 || shard.has_due()) {
            let Some(connected) = shard.open(&target, connect_timeout).await else {
                return;
            };
            match connected {
                Ok(io) => {
                    shard.report.borrow_mut().connected(io.tls_resumed());
                    backoff = Duration::from_millis(1);
                    if conn::drive(&shard.env, &work, &io, false).await == End::Stopped {
                        return;
                    }
                }
                Err(err) => {
                    // A refused or failing connect is one failed request; back off so a dead server
                    // is not hammered in a tight loop.
                    if shard.budget.get() != u64::MAX {
                        shard.budget.set(shard.budget.get() - 1);
                    }
                    shard.report.borrow_mut().error(&err);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
    }
}

impl BenchShard {
    /// Waits for a connection's start in the ramp; false when the run ended first.
    pub(super) async fn wait_until(&self, at: Option<Instant>) -> bool {
        if let Some(at) = at {
            tokio::select! {
                _ = tokio::time::sleep_until(at.into()) => {}
                _ = self.stop.notified() => return false,
            }
        }
        !self.stopped.get()
    }

    /// Connects to `target`; None when the run ended first. A connect the server does not answer (a
    /// full backlog) must not hold the run past its end; the abandoned connect is left to the kernel
    /// and closes when it completes.
    pub(super) async fn open(
        &self,
        target: &BenchTarget,
        timeout: Duration,
    ) -> Option<Result<net::Transport, FetchError>> {
        let dialer = self.dialer.borrow().clone();
        tokio::select! {
            connected = net::connect(
                &dialer,
                &target.addrs,
                timeout,
                target.tls_name.as_deref().map(|name| (&self.tls, name)),
            ) => Some(connected),
            _ = self.stop.notified() => None,
        }
    }

    fn has_due(&self) -> bool {
        self.due.as_ref().is_some_and(|d| !d.borrow().is_empty())
    }

    /// A clean report (at the start and when the warm-up ends), with room for per-URL counts.
    fn reset_report(&self, open_loop: bool) {
        let mut report = self.report.borrow_mut();
        *report = Report::default();
        report.open_loop = open_loop;
        if self.urls > 1 {
            report.per_url = vec![UrlCounts::default(); self.urls];
        }
    }
}

pub(super) struct BenchConn<'a> {
    pub(super) shard: &'a Rc<BenchShard>,
    pub(super) requests: &'a [(u32, Vec<u8>)],
    pub(super) cursor: Cell<usize>,
    pub(super) rng: Cell<u64>,
    /// `--hold`: the one request that proves the connection live is still to be sent.
    pub(super) proof: Cell<bool>,
    /// `--hold`: this connection has answered.
    pub(super) answered: Cell<bool>,
    /// `--hold`: end the connection's task once it has answered (the ring keeps the connection).
    pub(super) detach: Cell<bool>,
}

impl<'a> BenchConn<'a> {
    /// A connection's workload; with `proof`, it first sends the one request that proves it live.
    pub(super) fn new(
        shard: &'a Rc<BenchShard>,
        target: &'a BenchTarget,
        id: usize,
        proof: bool,
    ) -> Self {
        BenchConn {
            shard,
            requests: &target.requests,
            // Connections of one origin start at different URLs, so each URL is loaded from the start.
            cursor: Cell::new(id),
            // Any odd seed gives a full-period xorshift; distinct per connection.
            rng: Cell::new((id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            proof: Cell::new(proof),
            answered: Cell::new(false),
            detach: Cell::new(false),
        }
    }

    /// Appends the next request to the batch, due at `due`, written at `now`.
    fn push(
        &self,
        out: &mut Vec<u8>,
        conn: &mut Connection<(Instant, u32)>,
        due: Instant,
        now: Instant,
    ) {
        let (url, request) = self.pick();
        out.extend_from_slice(request);
        conn.sent((due, *url), now, self.shard.head_request);
    }

    /// The next request: the origin's URLs in turn, or at random with `--random`.
    fn pick(&self) -> &(u32, Vec<u8>) {
        let n = self.requests.len();
        let i = if n == 1 {
            0
        } else if self.shard.random {
            let mut x = self.rng.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.rng.set(x);
            (x % n as u64) as usize
        } else {
            let i = self.cursor.get() % n;
            self.cursor.set(i + 1);
            i
        };
        &self.requests[i]
    }
}

impl Workload for BenchConn<'_> {
    /// When the request was due (its send time in a closed loop, its scheduled time in an open one),
    /// and which URL it is.
    type Ticket = (Instant, u32);

    fn fill(
        &self,
        out: &mut Vec<u8>,
        conn: &mut Connection<(Instant, u32)>,
        max: usize,
        now: Instant,
    ) -> usize {
        let s = self.shard;
        if s.stopped.get() {
            return 0;
        }
        if s.hold.is_some() && self.proof.replace(false) {
            self.push(out, conn, now, now);
            return 1;
        }
        if s.hold.is_some() && (s.due.is_none() || !self.answered.get()) {
            return 0;
        }
        if let Some(due) = &s.due {
            let mut due = due.borrow_mut();
            let n = max.min(due.len());
            for intended in due.drain(..n) {
                self.push(out, conn, intended, now);
            }
            return n;
        }
        let n = (max as u64).min(s.budget.get()) as usize;
        if s.budget.get() != u64::MAX {
            s.budget.set(s.budget.get() - n as u64);
        }
        for _ in 0..n {
            self.push(out, conn, now, now);
        }
        n
    }

    async fn idle(&self) -> bool {
        let s = self.shard;
        if s.hold.is_some() {
            if self.detach.get() && self.answered.get() {
                return false;
            }
            // Held open until the hold ends, taking --rate's requests as they fall due.
            loop {
                let woken = s.wake.notified();
                let stopped = s.stop.notified();
                if s.stopped.get() {
                    return false;
                }
                if s.has_due() {
                    return true;
                }
                tokio::select! {
                    _ = woken => {}
                    _ = stopped => {}
                }
            }
        }
        if s.due.is_none() {
            return !s.stopped.get() && s.budget.get() > 0;
        }
        loop {
            // Created before the checks, so a wake-up between them is not missed.
            let woken = s.wake.notified();
            if s.stopped.get() || (s.budget.get() == 0 && !s.has_due()) {
                return false;
            }
            if s.has_due() {
                return true;
            }
            woken.await;
        }
    }

    fn on_head(&self, (_, url): (Instant, u32), head: &Head) {
        let mut r = self.shard.report.borrow_mut();
        r.status.add(head.status);
        if let Some(u) = r.per_url.get_mut(url as usize) {
            u.add_status(head.status);
        }
    }

    fn on_body(&self, _: (Instant, u32), data: &[u8]) -> Result<(), FetchError> {
        self.shard.report.borrow_mut().bytes += data.len() as u64;
        Ok(())
    }

    fn on_done(&self, done: InFlight<(Instant, u32)>, now: Instant) {
        let (due, url) = done.ticket;
        if let Some(hold) = &self.shard.hold {
            if !self.answered.replace(true) {
                hold.live.set(hold.live.get() + 1);
                hold.peak.set(hold.peak.get().max(hold.live.get()));
                hold.settle(&self.shard.report);
            }
        }
        let mut r = self.shard.report.borrow_mut();
        r.requests += 1;
        if let Some(u) = r.per_url.get_mut(url as usize) {
            u.requests += 1;
        }
        let second = now
            .saturating_duration_since(self.shard.measured.get())
            .as_secs() as usize;
        match r.timeline.get_mut(second) {
            Some(n) => *n += 1,
            None => {
                r.timeline.resize(second, 0);
                r.timeline.push(1);
            }
        }
        r.latency.record(now.saturating_duration_since(due));
        if r.open_loop {
            r.service.record(now.saturating_duration_since(done.sent));
        }
    }

    fn on_left(&self, (_, url): (Instant, u32), fate: Fate, err: &FetchError) {
        let s = self.shard;
        let charged = match fate {
            Fate::Failed => true,
            Fate::Unanswered(Unanswered::Failed) => !s.stopped.get(),
            Fate::Unanswered(Unanswered::Bystander) => false,
        };
        match charged {
            true => {
                let mut r = s.report.borrow_mut();
                r.error(err);
                if let Some(u) = r.per_url.get_mut(url as usize) {
                    u.errors += 1;
                }
            }
            // Never answered through no fault of its own: it goes back into the budget.
            false => {
                if s.budget.get() != u64::MAX {
                    s.budget.set(s.budget.get() + 1);
                }
            }
        }
    }
}
