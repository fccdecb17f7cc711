//! The engine: starts one pinned tokio-uring runtime per worker, shards the work across them, joins
//! them and merges their reports. `runtime` builds the rings, `limits` fits connections to the fd limit,
//! `shard` runs a worker's part of a fetch, `bench` a worker's part of a load test, `conn` is the hot
//! path both share, `deadline` fires timeouts.
//!
//! Sharding policy (docs/DESIGN.md): the URL list is read by the main thread and handed out in batches
//! through one bounded queue that idle workers pull from, so a single-origin list keeps every worker
//! busy and a slow worker never holds back the others. Each worker pools its own connections.

pub mod batching;
pub mod bench;
pub mod conn;
pub mod deadline;
pub mod fetch;
pub mod hold;
pub mod interrupt;
pub mod limits;
pub mod pace;
pub mod panic;
pub mod progress;
pub mod transport;

use std::io::{self, BufReader};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::HttpPlan;
use crate::config::{BenchPlan, EnginePlan, FetchPlan, Input, Output, Stop};
use crate::error::{Failure, UsageError};
use crate::input::{Entry, Line, Lines};
use crate::report::jsonl::{self, ResultLine, Sink, Target};
use crate::report::resume::Done;
use crate::report::summary::Report;
use crate::runtime::{self, RingSetup};
use crate::serve;
use bench::{BenchSettings, BenchShard, BenchTarget};
use fetch::{FetchSettings, FetchShard, ShardLimits};
use interrupt::Interrupt;
use limits::FdLimit;

/// URLs per batch handed to a worker: large enough that the queue's lock is rare, small enough that a
/// short list still spreads over the workers (`batch_size`).
const BATCH: usize = 64;

/// Most URLs per batch: each batch handed over can wake the worker, and with the reader on the
/// worker's CPU (`taskset -c 1 ringfetch fetch …`) that is a switch of thread both ways; at 64 a
/// batch, a million URLs at `-c 4096 -p 16` took 62,627 context switches.
const BATCH_MAX: usize = 1024;

/// URLs per batch for workers with `cap` requests in flight each: up to a worker's share of -c, so
/// that a worker never takes far more than it can have in flight while the others wait at the end
/// of the list (a slow origin's worker would hold them), and never under `BATCH`.
fn batch_size(cap: usize) -> usize {
    cap.clamp(BATCH, BATCH_MAX)
}

/// The outcome of a run, for the summary.
pub struct RunReport {
    pub report: Report,
    pub elapsed: Duration,
    pub threads: usize,
    /// A problem that ended the run early or lost output (exit status 1).
    pub failure: Option<String>,
    /// `fetch` was interrupted: by this signal (exit status 128 + signal), or by `failure`.
    pub interrupted: Option<Interrupted>,
}

/// How an interrupted `fetch` ended.
#[derive(Clone, Copy, Debug)]
pub struct Interrupted {
    /// SIGINT or SIGTERM; None when a failed write of the results stopped the run.
    pub signal: Option<i32>,
    /// The list came on stdin, so the URLs after the last one read could not be counted.
    pub rest_uncounted: bool,
}

/// Splits `total` into `parts` near-equal shares.
fn share(total: usize, parts: usize, i: usize) -> usize {
    total / parts + usize::from(i < total % parts)
}

fn start(engine: &EnginePlan, http: &HttpPlan) -> io::Result<(RingSetup, FdLimit)> {
    let setup = RingSetup::probe()?;
    let limit = limits::raise_nofile();
    if engine.verbose {
        eprintln!("ringfetch: {}", setup.describe());
    }
    if http.insecure {
        eprintln!(
            "ringfetch: warning: --insecure: https certificates are not verified; connections are encrypted \
             but the servers are not authenticated"
        );
    }
    Ok((setup, limit))
}

/// Prints a clamp's warning line, or with `--strict` refuses to run (a usage error, exit 2).
fn warn_or_refuse(warning: Option<String>, strict: bool) -> Result<(), UsageError> {
    match warning {
        Some(line) if strict => {
            let why = line.trim_start_matches("ringfetch: warning: ");
            Err(UsageError(format!("--strict: {why}")))
        }
        Some(line) => {
            eprintln!("{line}");
            Ok(())
        }
        None => Ok(()),
    }
}

/// The `-v` line about workers, once their number is final.
fn describe_workers(verbose: bool, threads: usize, cpus: &[usize], limit: FdLimit, budget: usize) {
    if verbose {
        let room = if budget >= usize::MAX / 1024 {
            "no descriptor per connection (direct)".to_string()
        } else {
            format!("room for {budget} connections")
        };
        eprintln!(
            "ringfetch: {threads} worker{} on CPUs {:?}; open-file limit {} (hard {}), {room}",
            if threads == 1 { "" } else { "s" },
            (0..threads)
                .map(|i| cpus[i % cpus.len()])
                .collect::<Vec<_>>(),
            limit.soft,
            limit.hard
        );
    }
}

/// The `-v` line about the direct transport.
fn describe_direct(verbose: bool, direct: &Option<transport::DirectSettings>) {
    if let (true, Some(d)) = (verbose, direct) {
        eprintln!(
            "ringfetch: direct descriptors: {} fixed-file slots per worker{}{}",
            d.slots,
            match d.buffers {
                Some(pool) => format!(
                    ", receiving into {} buffers of {} bytes{}",
                    pool.count,
                    pool.size,
                    if pool.incremental {
                        " (consumed incrementally: a receive takes only the bytes it needs)"
                    } else {
                        ""
                    }
                ),
                None => String::new(),
            },
            if d.sources.is_empty() {
                String::new()
            } else {
                format!(", {} source addresses", d.sources.len())
            }
        );
    }
}

pub fn run_fetch(plan: FetchPlan) -> Result<RunReport, Failure> {
    panic::arm();
    let (setup, limit) = start(&plan.engine, &plan.http)?;
    let mut threads = plan.engine.threads;
    // A connection holds its socket, and with --save-dir the file of the body it is receiving.
    let fds_per_conn = 1 + u64::from(plan.save_dir.is_some());
    let budget = limits::connection_budget(limit, threads, fds_per_conn);
    // Requests in flight need this many connections at most (pipelined `-p` deep).
    let wanted = plan.concurrency.div_ceil(plan.http.depth);
    let (direct, why) = transport::choose(
        plan.http.transport,
        !plan.http.source_addrs.is_empty(),
        limit,
    )?;
    let budget = match direct {
        // A body being saved still needs a descriptor.
        Some(_) if plan.save_dir.is_some() => limits::connection_budget(limit, threads, 1),
        Some(_) => usize::MAX / plan.http.depth.max(1),
        None => budget,
    };
    let mut budget = budget;
    let direct = direct.map(|max_slots| {
        // Connections a fetch keeps open: those in flight, and idle ones kept alive for origins met
        // again, as many as descriptors would allow and the workers asked for hold, so they never
        // add a worker (before, rings were sized for the requests in flight only, and a list over
        // 10,000 origins failed 94% of its URLs with "all 576 direct-descriptor slots of this worker
        // are in use" once idle connections filled them).
        let room = threads.saturating_mul(transport::ring_room(max_slots));
        let kept = limits::connection_budget(limit, threads, 1).min(room);
        let planned = kept.max(wanted).min(budget);
        let (settings, workers, capacity) = transport::DirectSettings::plan(
            max_slots,
            threads,
            planned,
            // Every request in flight may be on a connection of its own (a list over many origins).
            plan.concurrency,
            limit.soft,
            false,
            setup.single_issuer,
            plan.http.source_addrs.clone(),
            plan.http.ring_buffers,
        );
        threads = workers;
        // Never more open than the rings hold (past it, idle ones make room), nor than the workers
        // could start (a very low open-file limit): -c is clamped below.
        budget = planned.min(capacity);
        settings
    });
    let setup = RingSetup {
        small: direct.is_some() && threads > plan.engine.cpus.len(),
        ..setup
    };
    // Each request in flight needs a connection unless pipelined.
    let max_in_flight = budget.saturating_mul(plan.http.depth);
    let (concurrency, warning) =
        limits::clamp(plan.concurrency, max_in_flight, limit, "concurrency (-c)");
    warn_or_refuse(warning, plan.http.strict)?;
    if plan.engine.verbose {
        eprintln!("{why}");
    }
    describe_workers(
        plan.engine.verbose,
        threads,
        &plan.engine.cpus,
        limit,
        budget,
    );
    describe_direct(plan.engine.verbose, &direct);
    let sink = Sink::new(match plan.output {
        None => None,
        Some(Output::Stdout) => Some(Target::Stdout(io::stdout())),
        Some(Output::File(f, path)) => Some(Target::File(f, path)),
    });
    let (tx, rx) = async_channel::bounded::<Vec<Line>>(threads * 2);
    let interrupt = Arc::new(Interrupt::new(rx.clone()));
    // Before the workers start, so that they inherit the blocked signals.
    interrupt.watch_signals(plan.http.timeout.min(interrupt::GRACE));
    let settings = Arc::new(FetchSettings {
        template: plan.http.template.clone(),
        depth: plan.http.depth,
        refill_at: plan.http.refill_at,
        timeout: plan.http.timeout,
        connect_timeout: plan.http.connect_timeout,
        retries: plan.retries,
        max_body: plan.max_body,
        save_dir: plan.save_dir.clone(),
        conns_per_host: plan.conns_per_host,
        sink: sink.clone(),
        tls: plan.http.tls.clone(),
        no_tls_resume: plan.http.no_tls_resume,
        resolver: plan.http.resolver.clone(),
        direct,
        interrupt: interrupt.clone(),
        follow: plan.follow,
        compressed: plan.compressed,
        pacer: plan
            .host_interval
            .map(|every| Arc::new(pace::Pacer::new(every))),
        retry_status: plan.retry_status.into(),
        retry_max_wait: plan.retry_max_wait,
        meta: plan.meta,
        proxies: plan.proxies,
    });
    let started = Instant::now();
    let show_progress =
        !plan.http.json && !plan.quiet && std::io::IsTerminal::is_terminal(&io::stderr());
    let live = show_progress.then(|| Arc::new(progress::FetchLive::new(threads)));
    if let (Some(live), Some(path)) = (&live, &plan.list_path) {
        let kept = plan.resume.as_ref().map_or(0, |d| d.count());
        live.count_in_background(path.clone(), plan.shard, kept);
    }
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drawer = live.clone().map(|live| {
        let finished = finished.clone();
        std::thread::spawn(move || progress::show_fetch(&live, &finished))
    });
    let workers_live = live.clone();
    let workers = runtime::spawn_workers(&setup, &plan.engine.cpus, threads, "fetch", move |i| {
        let limits = ShardLimits {
            cap: share(concurrency, threads, i).max(1),
            conn_budget: share(budget, threads, i).max(1),
        };
        let slot = workers_live.clone().map(|l| (l, i));
        let shard = FetchShard::new(settings.clone(), limits, slot);
        let rx = rx.clone();
        async move { shard.clone().run(rx).await }
    })?;

    let stdin = matches!(plan.input, Input::Stdin);
    let reader: Box<dyn io::BufRead> = match plan.input {
        Input::Stdin => Box::new(BufReader::with_capacity(256 * 1024, io::stdin())),
        Input::File(f) => Box::new(BufReader::with_capacity(256 * 1024, f)),
    };
    let mut list = Lines::new(reader, plan.shard);
    let batch = batch_size(concurrency / threads.max(1));
    let (mut report, mut failure, mut unsent) =
        feed(&mut list, plan.resume.as_deref(), &tx, &sink, batch);
    drop(tx);

    for w in workers {
        match w.join() {
            Ok(Ok(r)) => report.merge(&r),
            Ok(Err(e)) => failure = Some(format!("a worker could not start its io_uring: {e}")),
            Err(_) => failure = Some("a worker thread panicked; results are incomplete".into()),
        }
    }
    finished.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(drawer) = drawer {
        let _ = drawer.join();
    }
    let stopped = interrupt.level() != interrupt::Level::Running;
    if stopped && !stdin {
        // The rest of the list is not fetched either: count it, so the summary can say how much.
        unsent += list
            .filter(|e| matches!(e, Ok(Entry::Url(_) | Entry::Bad(_))))
            .count() as u64;
    }
    sink.flush();
    if sink.reader_gone() {
        // The reader of our output went away (`| head`): end quietly, as ripgrep does.
        std::process::exit(0);
    }
    if let Some(f) = sink.failure() {
        failure.get_or_insert(f);
    }
    // URLs fetched whose lines could not be written are as good as not fetched: --resume refetches.
    report.not_fetched += unsent + sink.lost();
    Ok(RunReport {
        report,
        elapsed: started.elapsed(),
        threads,
        failure,
        interrupted: stopped.then(|| Interrupted {
            signal: interrupt.signal(),
            rest_uncounted: stdin,
        }),
    })
}

/// The main thread reads the list and feeds the workers; `send_blocking` waits while they are busy,
/// so memory stays bounded by the queue, not by the list. Lines that cannot be URLs get their result
/// here, as no worker could do more with them; with `--resume`, lines whose result is kept are skipped.
/// Returns their report, why reading stopped early, and the URLs read but never handed to a worker
/// (the run was interrupted).
fn feed(
    list: &mut Lines<Box<dyn io::BufRead>>,
    done: Option<&Done>,
    tx: &async_channel::Sender<Vec<Line>>,
    sink: &Sink,
    size: usize,
) -> (Report, Option<String>, u64) {
    let mut report = Report::default();
    let mut failure = None;
    let mut unsent = 0u64;
    let mut rejected = jsonl::Lines::new(sink.clone());
    let mut batch = Vec::with_capacity(size);
    let kept = |index: u64| done.is_some_and(|d| d.contains(index));
    for entry in list.by_ref() {
        // A full batch goes at once. So does a partial one when the next line needs a read: from a
        // slow producer (`tail -f | ringfetch fetch`) that read may wait for minutes, and the lines
        // already read must not wait with it. A file or a fast pipe brings thousands of lines per
        // read, so batches stay full but for one per read.
        let send = match entry {
            Ok(Entry::Url(line)) if kept(line.index) => false,
            Ok(Entry::Url(line)) => {
                batch.push(line);
                batch.len() == size
            }
            Ok(Entry::Drained) => {
                rejected.flush();
                !batch.is_empty()
            }
            Ok(Entry::Bad(bad)) if kept(bad.index) => false,
            Ok(Entry::Bad(bad)) => {
                report.error(&bad.error);
                rejected.push(&ResultLine {
                    index: bad.index,
                    url: &bad.shown,
                    status: None,
                    body_bytes: 0,
                    elapsed_ms: 0.0,
                    attempts: 0,
                    error: Some(bad.error.to_string()),
                    path: None,
                    final_url: None,
                    redirects: None,
                    encoding: None,
                    wire_bytes: None,
                    meta: None,
                });
                false
            }
            Err(e) => {
                failure = Some(format!(
                    "reading the URL list failed: {e}; the URLs before it were fetched"
                ));
                break;
            }
        };
        if send {
            // Nobody reads the results any more (`| head`): stop feeding and end quietly.
            if sink.reader_gone() {
                batch.clear();
                break;
            }
            rejected.flush();
            let full = std::mem::replace(&mut batch, Vec::with_capacity(size));
            if let Err(closed) = tx.send_blocking(full) {
                unsent += closed.0.len() as u64;
                break;
            }
        }
    }
    if !batch.is_empty() && !sink.reader_gone() {
        if let Err(closed) = tx.send_blocking(batch) {
            unsent += closed.0.len() as u64;
        }
    }
    rejected.flush();
    (report, failure, unsent)
}

/// What `bench` loads, for the summary's first line.
pub struct BenchRun {
    pub run: RunReport,
    pub label: String,
    /// The URLs loaded, by index (for the per-URL counts).
    pub urls: Vec<String>,
    /// The transport chosen, as `--transport` names it ("tcp" or "direct"), for `--report`.
    pub transport: &'static str,
}

pub fn run_bench(plan: BenchPlan) -> Result<BenchRun, Failure> {
    panic::arm();
    let (setup, limit) = start(&plan.engine, &plan.http)?;
    let mut cpus = plan.engine.cpus.clone();
    let mut targets = plan.targets.clone();
    let mut threads = plan.engine.threads;
    let embedded = targets.is_empty();
    if embedded {
        // Half the allowed CPUs serve, the other half load; on one CPU both share it.
        let server_cpus: Vec<usize> = cpus[..cpus.len() / 2].to_vec();
        let server_cpus = if server_cpus.is_empty() {
            cpus.clone()
        } else {
            server_cpus
        };
        if cpus.len() > 1 {
            cpus = cpus[cpus.len() / 2..].to_vec();
        }
        if plan.engine.threads == plan.engine.cpus.len() {
            threads = cpus.len();
        }
        let server = serve::start(
            &setup,
            "127.0.0.1:0".parse().expect("a literal address"),
            server_cpus.len(),
            &server_cpus,
            serve::Options {
                body_size: plan.body_size,
                // Its only client is this process, which closes every connection at the end: an
                // idle timeout would cut a `--hold` longer than it (before: 60 s) short.
                timeouts: serve::Timeouts {
                    idle: Duration::from_secs(365 * 24 * 3600),
                    ..serve::Timeouts::default()
                },
                ..serve::Options::default()
            },
        )?;
        eprintln!(
            "ringfetch: no URL given; benchmarking the built-in server at http://{}/ ({} byte bodies, server on CPU {:?}, client on CPU {:?})",
            server.addr, plan.body_size, server_cpus, cpus
        );
        targets.push(
            crate::target::Target::parse(&format!("http://{}/", server.addr))
                .map_err(io::Error::other)?,
        );
    }
    // The built-in server holds the other end of each connection in this same process.
    let fds_per_conn = 1 + u64::from(embedded);
    let budget = limits::connection_budget(limit, threads, fds_per_conn);
    let (direct, why) = transport::choose(
        plan.http.transport,
        !plan.http.source_addrs.is_empty(),
        limit,
    )?;
    if plan.engine.verbose {
        eprintln!("{why}");
    }
    // Direct sockets need no descriptor; the built-in server's still do.
    let budget = match direct {
        Some(_) if embedded => limits::connection_budget(limit, threads, 1),
        Some(_) => usize::MAX,
        None => budget,
    };
    let (connections, warning) = limits::clamp(plan.connections, budget, limit, "connections (-c)");
    warn_or_refuse(warning, plan.http.strict)?;
    // A load test needs its targets' addresses before the clock starts.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // One bench target per origin, holding all of that origin's URLs: connections go to origins
    // round-robin and cycle through their origin's URLs.
    let mut bench_targets: Vec<BenchTarget> = Vec::new();
    let mut origins: Vec<&crate::target::Origin> = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let request = (i as u32, plan.http.template.render(&t.path, &t.authority));
        if let Some(k) = origins.iter().position(|o| **o == t.origin) {
            bench_targets[k].requests.push(request);
            continue;
        }
        let addrs = rt
            .block_on(plan.http.resolver.resolve(&t.origin.host, t.origin.port))
            .map_err(io::Error::other)?;
        origins.push(&t.origin);
        bench_targets.push(BenchTarget {
            addrs,
            requests: vec![request],
            tls_name: (t.origin.scheme == crate::target::Scheme::Https)
                .then(|| t.origin.host_text()),
        });
    }
    // Before any connect: what the kernel will refuse at this count.
    let loopback = bench_targets
        .iter()
        .any(|t| t.addrs.first().is_some_and(|a| a.ip().is_loopback()));
    for line in limits::KernelLimits::read().warnings(connections as u64, loopback) {
        warn_or_refuse(Some(line), plan.http.strict)?;
    }
    let destinations: Vec<_> = bench_targets
        .iter()
        .map(|t| t.addrs.first().copied())
        .collect();
    let mut sources = plan.http.source_addrs.clone();
    let connections = match limits::port_range() {
        Some(range) => {
            let ports = usize::from(range.1 - range.0) + 1;
            if direct.is_some() && sources.is_empty() {
                sources = transport::auto_sources(connections, &destinations, ports);
                if plan.engine.verbose && !sources.is_empty() {
                    eprintln!(
                        "ringfetch: connecting from {} source addresses ({} to {}): one has {ports} ports toward each destination",
                        sources.len(),
                        sources[0],
                        sources[sources.len() - 1]
                    );
                }
            }
            let (allowed, warning) =
                limits::clamp_ports(connections, &destinations, range, sources.len().max(1));
            warn_or_refuse(warning, plan.http.strict)?;
            allowed
        }
        None => connections,
    };
    let mut capacity = connections;
    let direct = direct.map(|max_slots| {
        let (settings, workers, holds) = transport::DirectSettings::plan(
            max_slots,
            threads,
            connections,
            // One response lands at a time per connection at depth 1; a pipelined batch (16 × 1 KiB)
            // fits one buffer of the default pool, and spread over 2 KiB ones it cost more
            // (`-c 1000 -p 16` against serve: 955k → 915k responses/s): the default then.
            if plan.http.depth > 1 { 0 } else { connections },
            limit.soft,
            plan.hold.is_some(),
            setup.single_issuer,
            sources,
            plan.http.ring_buffers,
        );
        threads = workers;
        capacity = holds;
        settings
    });
    // Fewer workers than the connections need (a very low open-file limit): one line, or --strict.
    let (connections, warning) = limits::clamp(connections, capacity, limit, "connections (-c)");
    warn_or_refuse(warning, plan.http.strict)?;
    let setup = RingSetup {
        small: direct.is_some() && threads > cpus.len(),
        ..setup
    };
    let urls: Vec<String> = targets
        .iter()
        .map(|t| format!("{}://{}{}", t.origin.scheme.as_str(), t.authority, t.path))
        .collect();
    let label = match urls.len() {
        1..=3 => format!("bench {}", urls.join(" ")),
        n => format!("bench {} and {} more URLs", urls[0], n - 1),
    };
    let settings = Arc::new(BenchSettings {
        targets: bench_targets,
        head_request: plan.http.template.head,
        closes: plan.http.template.closes,
        depth: plan.http.depth,
        refill_at: plan.http.refill_at,
        timeout: plan.http.timeout,
        connect_timeout: plan.http.connect_timeout,
        tls: plan.http.tls.clone(),
        no_tls_resume: plan.http.no_tls_resume,
        rate: plan.rate,
        warmup: plan.warmup,
        random: plan.random,
        urls: targets.len(),
        connect_rate: plan.connect_rate,
        threads: threads.min(connections).max(1),
        hold: plan.hold,
        direct: direct.clone(),
    });
    let threads = threads.min(connections).max(1);
    describe_workers(plan.engine.verbose, threads, &cpus, limit, budget);
    describe_direct(plan.engine.verbose, &direct);
    let transport = if direct.is_some() { "direct" } else { "tcp" };
    let stop = plan.stop;
    let (plan_stop, warmup) = (plan.stop, plan.warmup);
    // A live line only for a person watching: not under --json, not into a file or a pipe.
    let show_progress = !plan.http.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let live = Arc::new(progress::Live::new(threads));
    let shared = live.clone();
    let workers = runtime::spawn_workers(&setup, &cpus, threads, "bench", move |i| {
        let mine: Vec<usize> = (i..connections).step_by(threads).collect();
        let stop = match stop {
            Stop::Requests(n) => Stop::Requests(share(n as usize, threads, i) as u64),
            other => other,
        };
        let rate = settings.rate.map(|r| r / threads as f64);
        BenchShard::run(settings.clone(), mine, stop, rate, shared.clone(), i)
    })?;
    if show_progress {
        progress::show(&live, &workers, plan_stop, warmup);
    }
    let mut report = Report::default();
    let mut span: Option<(Instant, Instant)> = None;
    let mut failure = None;
    for w in workers {
        match w.join() {
            Ok(Ok(outcome)) => {
                report.merge(&outcome.report);
                span = Some(match span {
                    None => (outcome.started, outcome.ended),
                    Some((s, e)) => (s.min(outcome.started), e.max(outcome.ended)),
                });
            }
            Ok(Err(e)) => failure = Some(format!("a worker could not start its io_uring: {e}")),
            Err(_) => failure = Some("a worker thread panicked; results are incomplete".into()),
        }
    }
    let elapsed = span.map(|(s, e)| e - s).unwrap_or_default();
    Ok(BenchRun {
        run: RunReport {
            report,
            elapsed,
            threads,
            failure,
            interrupted: None,
        },
        label,
        urls,
        transport,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_a_workers_share_of_c_between_64_and_1024() {
        assert_eq!(batch_size(0), 64);
        assert_eq!(batch_size(10), 64);
        assert_eq!(batch_size(512), 512);
        assert_eq!(batch_size(4096), 1024);
    }

    #[test]
    fn shares_add_up() {
        for total in [0, 1, 7, 1024] {
            for parts in 1..5 {
                let sum: usize = (0..parts).map(|i| share(total, parts, i)).sum();
                assert_eq!(sum, total);
            }
        }
    }
}
