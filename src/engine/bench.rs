//! One worker's share of a `bench`: a fixed set of connections, each sending the same request as fast as
//! the pipeline window allows (closed loop), or at the times a `--rate` schedule sets (open loop), until
//! the duration ends (`-d`) or the request budget is spent (`-n`). Failures are counted and the
//! connection is re-opened; nothing is retried.
//!
//! Open loop, as wrk2 does it: request k of this worker is due at `start + k / rate`. Due requests wait
//! in a queue until a connection has room; each one's latency runs from when it was due, so a server
//! that stalls is charged for every request it held back (coordinated omission corrected), and the
//! service time (from the actual write) is reported beside it.
//!
//! Which model a worker runs is one `Load`, chosen when it starts; each connection sees it as its
//! `Pace`, and every callback dispatches on that in one `match`. `--hold` (connections proved and held
//! open) lives in `hold`; this file keeps the two loops, the schedule, and the worker's start, ticks and
//! finish that all three share. The pump is `conn`'s, the HTTP rules `http::client`'s.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::conn::{self, End, Env, Workload};
use super::hold::{self, Held, Hold};
use crate::config::Stop;
use crate::error::{ErrorKind, FetchError};
use crate::http::client::{Connection, Fate, Start};
use crate::http::pipeline::{InFlight, Unanswered};
use crate::http::response::Head;
use crate::net;
use crate::report::summary::{Report, Tally, UrlCounts};

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

/// How this worker's requests are paced: chosen once when it starts, from `-n`/`-d`, `--rate` and
/// `--hold`, and never changed.
pub(super) enum Load {
    /// As fast as each connection's pipeline allows.
    Closed(Budget),
    /// At the times the `--rate` schedule sets.
    Open(Schedule),
    /// `--hold`: connections proved and held open (taking `--rate`'s requests, if given).
    Hold(Rc<Hold>),
}

impl Load {
    /// The `--rate` schedule, under either model that has one.
    fn schedule(&self) -> Option<&Schedule> {
        match self {
            Load::Closed(_) => None,
            Load::Open(schedule) => Some(schedule),
            Load::Hold(hold) => hold.rate.as_ref(),
        }
    }
}

/// Requests this worker may still send: its share of `-n`, or no limit (`-d`, `--hold`).
pub(super) enum Budget {
    Unlimited,
    Left(Cell<u64>),
}

impl Budget {
    fn new(stop: Stop) -> Budget {
        match stop {
            Stop::Requests(n) => Budget::Left(Cell::new(n)),
            Stop::After(_) => Budget::Unlimited,
        }
    }

    /// Takes up to `n` requests out of the budget; how many it gave.
    fn take(&self, n: u64) -> u64 {
        match self {
            Budget::Unlimited => n,
            Budget::Left(left) => {
                let n = n.min(left.get());
                left.set(left.get() - n);
                n
            }
        }
    }

    /// A request that was never answered through no fault of its own goes back.
    fn refund(&self) {
        if let Budget::Left(left) = self {
            left.set(left.get() + 1);
        }
    }

    fn spent(&self) -> bool {
        matches!(self, Budget::Left(left) if left.get() == 0)
    }
}

/// Open loop: the requests that fell due and wait for a connection with room.
pub(super) struct Schedule {
    /// When each waiting request was due, oldest first.
    due: RefCell<VecDeque<Instant>>,
    /// Requests still to put in the queue.
    budget: Budget,
    /// Wakes idle connections when requests fall due, and when the run ends.
    pub(super) wake: tokio::sync::Notify,
}

impl Schedule {
    pub(super) fn new(budget: Budget) -> Schedule {
        Schedule {
            due: RefCell::new(VecDeque::new()),
            budget,
            wake: tokio::sync::Notify::new(),
        }
    }

    pub(super) fn has_due(&self) -> bool {
        !self.due.borrow().is_empty()
    }
}

pub struct BenchShard {
    pub(super) env: Env,
    /// This worker's TLS configuration, with its own session cache.
    tls: std::sync::Arc<rustls::ClientConfig>,
    pub(super) load: Load,
    pub(super) stopped: Cell<bool>,
    /// Wakes connections still waiting for their connect when the run ends.
    pub(super) stop: tokio::sync::Notify,
    pub(super) report: RefCell<Report>,
    head_request: bool,
    /// Start of the measured part (after the warm-up): the timeline counts seconds from here.
    measured: Cell<Instant>,
    random: bool,
    urls: usize,
    dialer: RefCell<net::Dialer>,
    /// Whether any connection of this worker ever connected: a run that has never reached its
    /// server gives up after --connect-timeout (`unreachable`).
    reached: Cell<bool>,
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
        // A ramp: this worker's k-th connection starts k / (its share of --connect-rate) in.
        let ramp = settings
            .connect_rate
            .map(|r| Duration::from_secs_f64(settings.threads as f64 / r));
        let load = match (settings.hold, rate) {
            (Some(duration), rate) => Load::Hold(Rc::new(Hold::new(
                duration,
                connections.len(),
                rate.map(|_| Schedule::new(Budget::new(stop))),
                hold::Opening {
                    ramp: ramp.map_or(Duration::ZERO, |step| step * connections.len() as u32),
                    stall: settings.connect_timeout + settings.timeout,
                },
            ))),
            (None, Some(_)) => Load::Open(Schedule::new(Budget::new(stop))),
            (None, None) => Load::Closed(Budget::new(stop)),
        };
        let shard = Rc::new(BenchShard {
            tls: net::tls::worker_config(&settings.tls, settings.no_tls_resume),
            env: {
                let mut env = Env::new(settings.timeout, settings.depth, settings.refill_at);
                // A load generator pipelines whatever method it is given: that is the load asked for.
                env.rules.closes = settings.closes;
                env
            },
            load,
            stopped: Cell::new(false),
            stop: tokio::sync::Notify::new(),
            report: RefCell::new(Report::default()),
            head_request: settings.head_request,
            measured: Cell::new(Instant::now()),
            random: settings.random,
            urls: settings.urls,
            dialer: RefCell::new(net::Dialer::Tcp),
            reached: Cell::new(false),
        });
        let direct = super::transport::start_worker(&settings.direct, &shard.dialer);
        shard.reset_report();
        let started = Instant::now();
        shard.measured.set(started);
        // The loops end with -d (the schedule too: -d at R/s is R·d requests, however late the ticker
        // notices); a hold ends when its own clock says.
        let end = match (&shard.load, stop) {
            (Load::Closed(_) | Load::Open(_), Stop::After(d)) => {
                Some(started + settings.warmup + d)
            }
            _ => None,
        };
        let mut tasks = Vec::new();
        match &shard.load {
            Load::Closed(_) | Load::Open(_) => {
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
            Load::Hold(hold) => tasks.push(tokio_uring::spawn(hold::launch(
                shard.clone(),
                hold.clone(),
                settings.clone(),
                connections,
                started,
                ramp,
            ))),
        }
        let ticker = tokio_uring::spawn(Self::tick(
            shard.clone(),
            started,
            end,
            settings.warmup,
            (live, worker),
        ));
        let scheduler =
            rate.map(|r| tokio_uring::spawn(Self::schedule(shard.clone(), r, started, end)));
        for t in tasks {
            let _ = t.await;
        }
        let ended = Instant::now();
        ticker.abort();
        if let Some(s) = scheduler {
            s.abort();
        }
        if let (Load::Hold(_), Some(w)) = (&shard.load, &direct) {
            // Before the held connections close: which of them the server dropped meanwhile.
            let gone = w.ring.peek_held(Duration::from_secs(1)).await;
            shard.report.borrow_mut().held_but_closed(gone);
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

    /// Fires timeouts, ends the warm-up (clearing its statistics) and ends the run: at `end` for the
    /// loops, when the hold is over for `--hold`.
    async fn tick(
        shard: Rc<Self>,
        started: Instant,
        end: Option<Instant>,
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
                shard.reset_report();
            }
            let over = match &shard.load {
                Load::Closed(_) | Load::Open(_) => end.is_some_and(|end| now >= end),
                Load::Hold(hold) => hold.over(now, &shard.report),
            };
            if over {
                if matches!(shard.load, Load::Hold(_)) {
                    // Before they are stopped: which held connections the server dropped (those
                    // its ring holds are looked at when the worker finishes).
                    let gone = shard.env.watchdog.idle_gone();
                    shard.report.borrow_mut().held_but_closed(gone);
                }
                shard.end_run();
                return;
            }
            shard.env.watchdog.tick(now);
            let report = shard.report.borrow();
            live.publish(worker, report.requests, report.error_count());
        }
    }

    /// Ends the run: connections stop at their next event, idle ones and pending connects are woken.
    fn end_run(&self) {
        self.stopped.set(true);
        self.env.watchdog.stop_all();
        self.stop.notify_waiters();
        if let Some(schedule) = self.load.schedule() {
            schedule.wake.notify_waiters();
        }
    }

    /// Open loop: puts each request in the queue at the time it is due and wakes idle connections.
    /// Timers fire at millisecond granularity, so requests fall due in small bursts; each keeps its own
    /// due time, so the bursts do not show in the latencies.
    async fn schedule(shard: Rc<Self>, rate: f64, started: Instant, end: Option<Instant>) {
        let Some(schedule) = shard.load.schedule() else {
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
            while next <= now && !over(next) && !shard.stopped.get() && schedule.budget.take(1) == 1
            {
                schedule.due.borrow_mut().push_back(next);
                added = true;
                k = k.wrapping_add(1);
                // From the start each time, so rounding does not accumulate.
                next = started + interval * k;
            }
            if added {
                schedule.wake.notify_waiters();
            }
            if shard.stopped.get() || schedule.budget.spent() || over(next) {
                schedule.wake.notify_waiters();
                return;
            }
        }
    }

    /// Closed or open loop: one connection, re-opened after each failure until the run ends or there
    /// is nothing left to send.
    async fn connection(
        shard: Rc<Self>,
        target: BenchTarget,
        connect_timeout: Duration,
        id: usize,
        start_at: Option<Instant>,
    ) {
        let (budget, schedule, pace) = match &shard.load {
            Load::Closed(budget) => (budget, None, Pace::Closed(budget)),
            Load::Open(schedule) => (&schedule.budget, Some(schedule), Pace::Open(schedule)),
            // Held connections are opened by `hold::launch`, once each.
            Load::Hold(_) => return,
        };
        let work = BenchConn::new(&shard, &target, id, pace);
        if shard.wait_until(start_at).await {
            Self::connect_and_load(&shard, &target, connect_timeout, &work, budget, schedule).await;
        }
        // Every way out of the loop above passes here, so each connection is counted once.
        work.standing
            .get()
            .count(&mut shard.report.borrow_mut(), false);
    }

    /// The loop of `connection`: ends when the run does or nothing is left to send.
    async fn connect_and_load(
        shard: &Rc<Self>,
        target: &BenchTarget,
        connect_timeout: Duration,
        work: &BenchConn<'_>,
        budget: &Budget,
        schedule: Option<&Schedule>,
    ) {
        let mut backoff = Duration::from_millis(1);
        // This connection's first try, until it connects once.
        let mut trying_since = Some(Instant::now());
        while !shard.stopped.get() && (!budget.spent() || schedule.is_some_and(Schedule::has_due)) {
            work.standing.set(work.standing.get().connecting());
            let Some(connected) = shard.open(target, connect_timeout).await else {
                return;
            };
            match connected {
                Ok(io) => {
                    shard.reached.set(true);
                    trying_since = None;
                    shard.report.borrow_mut().connected(io.tls_resumed());
                    work.standing.set(work.standing.get().connected());
                    backoff = Duration::from_millis(1);
                    if conn::drive(&shard.env, work, &io, Start::Open).await.end == End::Stopped {
                        return;
                    }
                }
                Err(err) => {
                    // A refused or failing connect is one failed request; back off so a dead server
                    // is not hammered in a tight loop.
                    budget.take(1);
                    work.standing.set(work.standing.get().failed(err.kind));
                    shard.report.borrow_mut().error(&err);
                    // Never connected: retrying covers a server still starting, but past
                    // --connect-timeout it is a wrong address or a server that is down, and with -n
                    // the backoff would stretch the run to minutes (-n 10000 -c 1: 83 minutes). The
                    // connection stops (its standing says why); when no connection of the worker
                    // ever reached a server, so does the run.
                    if trying_since.is_some_and(|t| t.elapsed() >= connect_timeout) {
                        if !shard.reached.get() {
                            unreachable(&err, connect_timeout);
                            shard.end_run();
                        }
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
    }
}

/// Says once per process why connections stopped early: they never reached a server.
fn unreachable(err: &FetchError, waited: Duration) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        eprintln!(
            "ringfetch: connections that reached no server within --connect-timeout ({waited:?}) \
             stopped trying; the last attempt: {err}"
        );
    }
}

/// How far one of the run's connections got, over all its reconnections. Each ends the run counted
/// in exactly one of `Tally`'s buckets (`count`), so a connection the server never answered is
/// reported as such instead of vanishing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Standing {
    /// Not tried yet (its start in the ramp, or its turn in `--hold`'s opening, has not come).
    NotStarted,
    /// Trying to connect; the kind of the last failed attempt, if any.
    Connecting(Option<ErrorKind>),
    /// Connected, no request written yet.
    Connected,
    /// A request written, no response yet; the kind of the failure that ended its last connection.
    Asked(Option<ErrorKind>),
    /// A response arrived: from here nothing changes it.
    Answered,
}

impl Standing {
    /// A connect begins (the first, or again after a failure).
    pub(super) fn connecting(self) -> Standing {
        match self {
            Standing::NotStarted => Standing::Connecting(None),
            other => other,
        }
    }

    pub(super) fn connected(self) -> Standing {
        match self {
            Standing::NotStarted | Standing::Connecting(_) => Standing::Connected,
            other => other,
        }
    }

    fn sent(self) -> Standing {
        match self {
            Standing::Answered => Standing::Answered,
            Standing::Asked(why) => Standing::Asked(why),
            _ => Standing::Asked(None),
        }
    }

    /// A connect, or a connection with a request on it, failed with `kind`: the latest reason wins,
    /// the stage reached stays (a connection that never asked anything is not unanswered).
    pub(super) fn failed(self, kind: ErrorKind) -> Standing {
        match self {
            Standing::NotStarted | Standing::Connecting(_) => Standing::Connecting(Some(kind)),
            Standing::Asked(_) => Standing::Asked(Some(kind)),
            Standing::Connected | Standing::Answered => self,
        }
    }

    /// Counts this connection in `report`'s tally, at its end. `held`: under `--hold` every
    /// connection is meant to be opened, so one never tried is a shortfall, not an unused one.
    pub(super) fn count(self, report: &mut Report, held: bool) {
        let tally = report.tally.get_or_insert_with(Tally::default);
        let add = |map: &mut std::collections::BTreeMap<&'static str, u64>, why: &'static str| {
            *map.entry(why).or_default() += 1;
        };
        match self {
            Standing::NotStarted if held => add(&mut tally.unconnected, "not-started"),
            Standing::NotStarted | Standing::Connected => tally.unused += 1,
            Standing::Connecting(why) => add(
                &mut tally.unconnected,
                why.map_or("connecting", ErrorKind::as_str),
            ),
            Standing::Asked(why) => add(
                &mut tally.unanswered,
                why.map_or("waiting", ErrorKind::as_str),
            ),
            Standing::Answered => tally.answered += 1,
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

    /// A clean report (at the start and when the warm-up ends), with room for per-URL counts.
    fn reset_report(&self) {
        let mut report = self.report.borrow_mut();
        *report = Report::default();
        report.tally = Some(Tally::default());
        report.open_loop = self.load.schedule().is_some();
        if self.urls > 1 {
            report.per_url = vec![UrlCounts::default(); self.urls];
        }
    }
}

/// A connection's view of its worker's `Load`, with what it keeps of its own.
pub(super) enum Pace<'a> {
    Closed(&'a Budget),
    Open(&'a Schedule),
    /// `--hold`: where this connection's proof stands, and who keeps it once proven.
    Held(Held<'a>),
}

pub(super) struct BenchConn<'a> {
    shard: &'a Rc<BenchShard>,
    requests: &'a [(u32, Vec<u8>)],
    cursor: Cell<usize>,
    rng: Cell<u64>,
    pace: Pace<'a>,
    /// How far this connection got over the run, for the tally at its end.
    pub(super) standing: Cell<Standing>,
}

impl<'a> BenchConn<'a> {
    pub(super) fn new(
        shard: &'a Rc<BenchShard>,
        target: &'a BenchTarget,
        id: usize,
        pace: Pace<'a>,
    ) -> Self {
        BenchConn {
            shard,
            requests: &target.requests,
            // Connections of one origin start at different URLs, so each URL is loaded from the start.
            cursor: Cell::new(id),
            // Any odd seed gives a full-period xorshift; distinct per connection.
            rng: Cell::new((id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            pace,
            standing: Cell::new(Standing::NotStarted),
        }
    }

    /// Appends the next request to the batch, due at `due`, written at `now`.
    pub(super) fn push(
        &self,
        out: &mut Vec<u8>,
        conn: &mut Connection<(Instant, u32)>,
        due: Instant,
        now: Instant,
    ) {
        let (url, request) = self.pick();
        out.extend_from_slice(request);
        conn.sent((due, *url), now, self.shard.head_request);
        self.standing.set(self.standing.get().sent());
    }

    /// Appends up to `max` of the requests that fell due, oldest first.
    pub(super) fn push_due(
        &self,
        schedule: &Schedule,
        out: &mut Vec<u8>,
        conn: &mut Connection<(Instant, u32)>,
        max: usize,
        now: Instant,
    ) -> usize {
        let mut due = schedule.due.borrow_mut();
        let n = max.min(due.len());
        for intended in due.drain(..n) {
            self.push(out, conn, intended, now);
        }
        n
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
        if self.shard.stopped.get() {
            return 0;
        }
        match &self.pace {
            Pace::Closed(budget) => {
                let n = budget.take(max as u64) as usize;
                for _ in 0..n {
                    self.push(out, conn, now, now);
                }
                n
            }
            Pace::Open(schedule) => self.push_due(schedule, out, conn, max, now),
            Pace::Held(held) => held.fill(self, out, conn, max, now),
        }
    }

    async fn idle(&self) -> bool {
        let s = self.shard;
        match &self.pace {
            Pace::Closed(budget) => !s.stopped.get() && !budget.spent(),
            Pace::Open(schedule) => loop {
                // Created before the checks, so a wake-up between them is not missed.
                let woken = schedule.wake.notified();
                if s.stopped.get() || (schedule.budget.spent() && !schedule.has_due()) {
                    return false;
                }
                if schedule.has_due() {
                    return true;
                }
                woken.await;
            },
            Pace::Held(held) => held.idle(s).await,
        }
    }

    fn on_head(&self, (_, url): (Instant, u32), head: &Head, _: &[u8]) {
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
        self.standing.set(Standing::Answered);
        match &self.pace {
            Pace::Closed(_) | Pace::Open(_) => {}
            Pace::Held(held) => held.answered(&self.shard.report),
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
        if charged {
            self.standing.set(self.standing.get().failed(err.kind));
            let mut r = s.report.borrow_mut();
            r.error(err);
            if let Some(u) = r.per_url.get_mut(url as usize) {
                u.errors += 1;
            }
            return;
        }
        // Written and still unanswered when the run ended: the server may have served it, so it is
        // reported beside the responses rather than dropped.
        if s.stopped.get() {
            s.report.borrow_mut().in_flight_at_end += 1;
        }
        // Never answered through no fault of its own: it goes back into the budget (a hold has none).
        match &self.pace {
            Pace::Closed(budget) => budget.refund(),
            Pace::Open(schedule) => schedule.budget.refund(),
            Pace::Held(_) => {}
        }
    }
}
