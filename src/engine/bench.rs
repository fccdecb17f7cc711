//! One worker's share of a `bench`: a fixed set of connections, each sending the same request as fast as
//! the pipeline window allows, until the duration ends (`-d`) or the request budget is spent (`-n`).
//! Failures are counted and the connection is re-opened; nothing is retried.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::conn::{self, End, Env, Workload};
use crate::config::Stop;
use crate::error::FetchError;
use crate::http::pipeline::{InFlight, Pipeline, Unanswered};
use crate::http::response::Head;
use crate::net;
use crate::report::summary::Report;

/// One bench target: where to connect and the request to repeat.
#[derive(Clone, Debug)]
pub struct BenchTarget {
    pub addrs: Vec<SocketAddr>,
    pub request: Vec<u8>,
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
}

pub struct BenchShard {
    env: Env,
    /// This worker's TLS configuration, with its own session cache.
    tls: std::sync::Arc<rustls::ClientConfig>,
    /// Requests this worker may still send (`-n`), or u64::MAX.
    budget: Cell<u64>,
    stopped: Cell<bool>,
    /// Wakes connections still waiting for their connect when the run ends.
    stop: tokio::sync::Notify,
    report: RefCell<Report>,
    head_request: bool,
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
    ) -> BenchOutcome {
        let shard = Rc::new(BenchShard {
            tls: net::tls::worker_config(&settings.tls, settings.no_tls_resume),
            env: Env {
                closes: settings.closes,
                ..Env::new(settings.timeout, settings.depth, settings.refill_at)
            },
            budget: Cell::new(match stop {
                Stop::Requests(n) => n,
                Stop::After(_) => u64::MAX,
            }),
            stopped: Cell::new(false),
            stop: tokio::sync::Notify::new(),
            report: RefCell::new(Report::default()),
            head_request: settings.head_request,
        });
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(connections.len());
        for j in connections {
            let target = settings.targets[j % settings.targets.len()].clone();
            let connect_timeout = settings.connect_timeout;
            tasks.push(tokio_uring::spawn(Self::connection(
                shard.clone(),
                target,
                connect_timeout,
            )));
        }
        let ticker = tokio_uring::spawn(Self::tick(shard.clone(), stop, started));
        for t in tasks {
            let _ = t.await;
        }
        let ended = Instant::now();
        ticker.abort();
        let mut report = std::mem::take(&mut *shard.report.borrow_mut());
        report.reads = shard.env.reads.get();
        report.writes = shard.env.writes.get();
        BenchOutcome {
            report,
            started,
            ended,
        }
    }

    async fn tick(shard: Rc<Self>, stop: Stop, started: Instant) {
        let period =
            (shard.env.timeout / 20).clamp(Duration::from_millis(10), Duration::from_millis(100));
        loop {
            tokio::time::sleep(period).await;
            let now = Instant::now();
            if let Stop::After(d) = stop {
                if now >= started + d {
                    shard.stopped.set(true);
                    shard.env.watchdog.stop_all();
                    shard.stop.notify_waiters();
                    return;
                }
            }
            shard.env.watchdog.tick(now);
        }
    }

    async fn connection(shard: Rc<Self>, target: BenchTarget, connect_timeout: Duration) {
        let mut backoff = Duration::from_millis(1);
        let work = BenchConn {
            shard: &shard,
            request: &target.request,
        };
        while !shard.stopped.get() && shard.budget.get() > 0 {
            // A connect the server does not answer (a full backlog) must not hold the run past its
            // end; the abandoned connect is left to the kernel and closes when it completes.
            let connected = tokio::select! {
                connected = net::connect(
                    &target.addrs,
                    connect_timeout,
                    target.tls_name.as_deref().map(|name| (&shard.tls, name)),
                ) => connected,
                _ = shard.stop.notified() => return,
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

struct BenchConn<'a> {
    shard: &'a Rc<BenchShard>,
    request: &'a [u8],
}

impl Workload for BenchConn<'_> {
    type Ticket = ();

    fn fill(&self, out: &mut Vec<u8>, pipe: &mut Pipeline<()>, max: usize, now: Instant) -> usize {
        let s = self.shard;
        if s.stopped.get() {
            return 0;
        }
        let n = (max as u64).min(s.budget.get()) as usize;
        if s.budget.get() != u64::MAX {
            s.budget.set(s.budget.get() - n as u64);
        }
        for _ in 0..n {
            out.extend_from_slice(self.request);
            pipe.push(InFlight {
                ticket: (),
                sent: now,
                head_request: s.head_request,
            });
        }
        n
    }

    async fn idle(&self) -> bool {
        !self.shard.stopped.get() && self.shard.budget.get() > 0
    }

    fn on_head(&self, _: (), head: &Head) {
        self.shard.report.borrow_mut().status.add(head.status);
    }

    fn on_body(&self, _: (), data: &[u8]) -> Result<(), FetchError> {
        self.shard.report.borrow_mut().bytes += data.len() as u64;
        Ok(())
    }

    fn on_done(&self, done: InFlight<()>, now: Instant) {
        let mut r = self.shard.report.borrow_mut();
        r.requests += 1;
        r.latency.record(now.saturating_duration_since(done.sent));
    }

    fn on_failed(&self, _: (), err: FetchError) {
        self.shard.report.borrow_mut().error(&err);
    }

    fn on_unanswered(&self, _: (), why: Unanswered, err: &FetchError) {
        let s = self.shard;
        match why {
            Unanswered::Failed if !s.stopped.get() => {
                s.report.borrow_mut().error(err);
            }
            // Never answered through no fault of its own: it goes back into the budget.
            _ => {
                if s.budget.get() != u64::MAX {
                    s.budget.set(s.budget.get() + 1);
                }
            }
        }
    }
}
