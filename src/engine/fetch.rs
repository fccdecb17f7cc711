//! One worker's share of a `fetch` (the fetch worker): it pulls batches of URLs from the shared input queue, keeps a
//! request queue and a connection pool per origin, and reports each URL exactly once. Everything here is
//! owned by one thread (`Rc`, `Cell`, `RefCell`); only the input queue and the result sink are shared.
//!
//! Bounds: at most `cap` requests in flight and `cap` queued per worker, at most `conns_per_host`
//! connections per origin, at most `conn_budget` connections open (the fd limit's share).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;
use tokio::sync::{Notify, OnceCell};

use super::conn::{self, End, Env, Workload};
use super::interrupt::{Interrupt, Level, GRACE};
use super::panic::Point;
use crate::error::{ErrorKind, FetchError};
use crate::http::client::{Connection, Fate, Start};
use crate::http::decode::{self, DecodeError, Decoder};
use crate::http::pipeline::{verdict, InFlight, Verdict};
use crate::http::redirect::{self, Method};
use crate::http::request::RequestTemplate;
use crate::http::response::Head;
use crate::input::Line;
use crate::net;
use crate::report::jsonl::{Headers, Lines, MetaLine, ResultLine, Sink};
use crate::report::summary::Report;
use crate::target::{self, PathIn, Scheme, Target};

/// What every worker of a fetch shares, read-only.
pub struct FetchSettings {
    pub template: RequestTemplate,
    pub depth: usize,
    pub refill_at: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retries: u32,
    pub max_body: u64,
    pub save_dir: Option<PathBuf>,
    pub conns_per_host: usize,
    pub sink: Sink,
    pub tls: Arc<rustls::ClientConfig>,
    pub no_tls_resume: bool,
    pub resolver: Arc<net::dns::Resolver>,
    /// The direct transport, or None for tcp.
    pub direct: Option<super::transport::DirectSettings>,
    /// SIGINT, SIGTERM or a failed write of the results asks the run to stop.
    pub interrupt: Arc<Interrupt>,
    /// `-L`: redirects are followed; None: a 3xx is the URL's result.
    pub follow: Option<Follow>,
    /// `--compressed`: bodies are decoded (Accept-Encoding is in the template).
    pub compressed: bool,
    /// `--host-rate`, `--host-delay`: one origin's turns, over all workers.
    pub pacer: Option<Arc<super::pace::Pacer>>,
    /// `--retry-status`: statuses that mean "try later" (idempotent requests are sent again after
    /// `Retry-After` or a backoff, at most `retries` times, apart from network retries).
    pub retry_status: Box<[u16]>,
    pub retry_max_wait: Duration,
    /// `--meta`, `--include-header`, `--hash`: what each line adds about its response.
    pub meta: Option<MetaPlan>,
    /// `--proxy`, `--noproxy` and the environment's proxies.
    pub proxies: net::proxy::Proxies,
}

/// What `--meta`, `--include-header` and `--hash sha256` add to each line.
#[derive(Clone, Debug, Default)]
pub struct MetaPlan {
    /// `--meta`: content_type, content_length, the timings and `reused`.
    pub fields: bool,
    /// `--include-header`, lowercase.
    pub headers: Box<[Box<str>]>,
    /// `--hash sha256`: of the body as kept (decoded with --compressed).
    pub sha256: bool,
}

/// One URL's `MetaPlan` answers, for its last response. Boxed on the job: only runs that ask pay.
#[derive(Default)]
struct Meta {
    content_type: Option<Box<str>>,
    content_length: Option<u64>,
    headers: Vec<(Box<str>, Option<Box<str>>)>,
    /// From the write of the request to its response's head.
    ttfb: Option<Duration>,
    conn: ConnTimes,
    reused: bool,
    sha256: Option<ring::digest::Context>,
}

/// How the connection a request went on was made: resolving its name (0 once cached), the TCP
/// connect and, over https, the handshake.
#[derive(Clone, Copy, Debug, Default)]
struct ConnTimes {
    dns: Duration,
    connect: Duration,
    tls: Option<Duration>,
}

impl Meta {
    /// The head of a new response: what it says, and a new digest for its body.
    fn head(&mut self, plan: &MetaPlan, raw: &[u8], ttfb: Duration) {
        self.ttfb = Some(ttfb);
        crate::http::with_final_headers(raw, |fields| {
            let value = |name: &str| -> Option<Box<str>> {
                fields
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).trim().into())
            };
            self.content_type = value("content-type");
            self.content_length = value("content-length").and_then(|v| v.parse().ok());
            self.headers = plan.headers.iter().map(|n| (n.clone(), value(n))).collect();
        });
        self.sha256 = plan
            .sha256
            .then(|| ring::digest::Context::new(&ring::digest::SHA256));
    }
}

/// `-L`: the requests a redirect chain may send besides the given one, rendered once.
pub struct Follow {
    /// Most redirects followed for one URL (`--max-redirs`).
    pub max: u32,
    /// GET without a body, after a 303 (or a 301/302 after POST).
    pub get: RequestTemplate,
    /// To another origin than the URL's own: without the -H credentials (`redirect::CREDENTIALS`),
    /// unless --location-trusted; the given method, and GET.
    pub foreign: RequestTemplate,
    pub foreign_get: RequestTemplate,
}

impl FetchSettings {
    /// What the next request for a URL sends: the given request, or what its redirects made of it.
    fn template(&self, chain: Option<&Chain>) -> &RequestTemplate {
        match (chain, &self.follow) {
            (Some(c), Some(f)) => match (c.method, c.foreign) {
                (Method::Given, false) => &self.template,
                (Method::Get, false) => &f.get,
                (Method::Given, true) => &f.foreign,
                (Method::Get, true) => &f.foreign_get,
            },
            _ => &self.template,
        }
    }
}

/// This worker's limits.
#[derive(Clone, Copy, Debug)]
pub struct ShardLimits {
    /// Requests in flight (and, separately, queued) at most.
    pub cap: usize,
    /// Connections open at most.
    pub conn_budget: usize,
}

/// One URL while it is being fetched.
struct Job {
    index: u64,
    url: Box<str>,
    /// The request target: mostly a slice of `url` (no allocation of its own), see `path`.
    target: JobPath,
    attempts: u32,
    retries_used: u32,
    status: Option<u16>,
    body_bytes: u64,
    sent: Instant,
    save: Body,
    /// Set once the URL redirected (`-L`).
    chain: Option<Box<Chain>>,
    /// `--compressed`: how the current response's body is decoded.
    decode: Decode,
    /// `--compressed`: body bytes as they came on the wire (before decoding).
    wire_bytes: u64,
    /// `--retry-status`: the current response says to try later, with its Retry-After.
    later: Option<Later>,
    /// Times sent again after a "try later" status.
    later_retries: u32,
    meta: Option<Box<Meta>>,
}

/// A response whose status is in `--retry-status`.
struct Later {
    retry_after: Option<Box<str>>,
}

/// How a body is decoded (`--compressed`).
enum Decode {
    /// As it comes: no content coding (or no --compressed).
    Plain,
    /// Through these codings, named as the response gave them.
    Coded(Box<Decoder>, Box<str>),
    /// A coding we cannot undo: the body fails as `protocol` (curl's rule), an empty one passes.
    Unknown(Box<str>),
}

impl Decode {
    /// The line's `encoding`.
    fn name(&self) -> &str {
        match self {
            Decode::Plain => "identity",
            Decode::Coded(_, name) | Decode::Unknown(name) => name,
        }
    }
}

fn undecodable(coding: decode::Coding, why: &str) -> FetchError {
    FetchError::new(
        ErrorKind::Protocol,
        format!(
            "cannot decode the {} body: {why}; the server sent a broken or mislabelled stream \
             (without --compressed the bytes are kept as sent)",
            coding.name()
        ),
    )
}

/// Where a job's request target is.
enum JobPath {
    /// `url[start..end]` (`Target::path_after` found it there).
    InUrl(usize, usize),
    Own(Box<str>),
}

impl Job {
    /// The request target: path and query.
    fn path(&self) -> &str {
        match &self.target {
            JobPath::InUrl(start, end) => &self.url[*start..*end],
            JobPath::Own(path) => path,
        }
    }

    fn new(index: u64, url: Box<str>, target: JobPath, now: Instant) -> Job {
        Job {
            index,
            url,
            target,
            attempts: 0,
            retries_used: 0,
            status: None,
            body_bytes: 0,
            sent: now,
            save: Body::Unsaved,
            chain: None,
            decode: Decode::Plain,
            wire_bytes: 0,
            later: None,
            later_retries: 0,
            meta: None,
        }
    }

    /// Counts and keeps `data`, decoded body bytes (or the body as sent): the one place both go.
    fn take_body(
        index: u64,
        body_bytes: &mut u64,
        save: &mut Body,
        meta: &mut Option<Box<Meta>>,
        settings: &FetchSettings,
        data: &[u8],
    ) -> Result<(), FetchError> {
        if let Some(digest) = meta.as_mut().and_then(|m| m.sha256.as_mut()) {
            digest.update(data);
        }
        *body_bytes += data.len() as u64;
        if *body_bytes > settings.max_body {
            return Err(FetchError::new(
                ErrorKind::TooLarge,
                format!(
                    "body exceeds --max-body {} bytes{}; raise --max-body to accept it",
                    settings.max_body,
                    if settings.compressed {
                        " once decoded"
                    } else {
                        ""
                    }
                ),
            ));
        }
        if let Some(dir) = &settings.save_dir {
            save.write(dir, index, data);
        }
        Ok(())
    }

    /// Feeds `data` (or with `last`, the end of the body) through the decoder.
    fn decode_body(
        &mut self,
        settings: &FetchSettings,
        data: &[u8],
        last: bool,
    ) -> Result<(), FetchError> {
        let Job {
            index,
            body_bytes,
            save,
            decode,
            meta,
            ..
        } = self;
        let mut keep =
            |piece: &[u8]| Job::take_body(*index, body_bytes, save, meta, settings, piece);
        let res = match decode {
            Decode::Plain => match last {
                true => Ok(()),
                false => return keep(data),
            },
            Decode::Unknown(name) if !data.is_empty() => {
                return Err(FetchError::new(
                    ErrorKind::Protocol,
                    format!(
                        "the body is in content coding `{name}`, which ringfetch cannot decode (it \
                         knows gzip, deflate, br and zstd); fetch it without --compressed to keep the bytes as sent"
                    ),
                ))
            }
            Decode::Unknown(_) => Ok(()),
            Decode::Coded(decoder, _) if last => decoder.finish(&mut keep),
            Decode::Coded(decoder, _) => decoder.feed(data, &mut keep),
        };
        res.map_err(|e| match e {
            DecodeError::Refused(e) => e,
            DecodeError::Corrupt(coding, why) => undecodable(coding, &why),
        })
    }
}

/// Where a URL that redirected is now and how it got there. Boxed: URLs that never redirect pay one
/// pointer for it.
struct Chain {
    /// The URL now fetched (the result line's `url` stays the line as given).
    url: Box<str>,
    /// The URL's own origin: the -H credentials go only there.
    first: target::Origin,
    hops: u32,
    /// When the first request of the chain was sent: `elapsed_ms` covers the whole chain.
    started: Instant,
    method: Method,
    foreign: bool,
    /// The URLs before this one, the last few, for the message of a loop.
    recent: VecDeque<Box<str>>,
    /// Set by the head of a redirect, taken when its response is complete.
    location: Option<Box<str>>,
}

/// URLs of a chain kept for the message of a loop.
const RECENT_URLS: usize = 3;

/// A body being saved under `--save-dir`.
enum Body {
    /// Nothing written yet (no byte arrived, or no `--save-dir`).
    Unsaved,
    /// Written to a new dot-file, renamed to its final name once complete, so a URL that fails
    /// leaves no file and the final name only ever holds a whole body.
    Writing(File, PathBuf),
    /// A write on this machine failed: the rest of the body is counted, not kept, and the URL ends
    /// with this error once its response is complete (the connection carries on).
    Failed(FetchError),
}

impl Body {
    fn write(&mut self, dir: &Path, index: u64, data: &[u8]) {
        if let Body::Unsaved = self {
            *self = match create_part(dir, index) {
                Ok((file, tmp)) => Body::Writing(file, tmp),
                Err(e) => Body::Failed(local(&dir.join(format!(".{index}.part")), &e)),
            };
        }
        if let Body::Writing(file, tmp) = self {
            if let Err(e) = file.write_all(data) {
                let err = local(tmp, &e);
                let _ = std::fs::remove_file(&*tmp);
                *self = Body::Failed(err);
            }
        }
    }

    /// The response is complete: the body goes to `fin`.
    fn keep(self, dir: &Path, index: u64, fin: &Path) -> Result<(), FetchError> {
        let tmp = match self {
            Body::Failed(e) => return Err(e),
            Body::Writing(_, tmp) => tmp,
            // An empty body was never written: it still gets its (empty) file.
            Body::Unsaved => {
                create_part(dir, index)
                    .map_err(|e| local(&dir.join(format!(".{index}.part")), &e))?
                    .1
            }
        };
        // rename(2) replaces whatever is at `fin`, a link included, without following it.
        std::fs::rename(&tmp, fin).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            local(fin, &e)
        })
    }

    /// The URL ends without its body: nothing is left behind.
    fn discard(self) {
        if let Body::Writing(file, tmp) = self {
            drop(file);
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// A new, empty `.INDEX.part` in `dir`. Created new (O_EXCL) and never through a link (O_NOFOLLOW):
/// a link planted in the directory cannot make ringfetch write a server's bytes elsewhere. A stale part
/// left by a killed run is removed first (unlink removes a link itself, not its target).
fn create_part(dir: &Path, index: u64) -> std::io::Result<(File, PathBuf)> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!(".{index}.part"));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    Ok((file, tmp))
}

/// A failure to save a body on this machine, said to be ours, not the server's.
fn local(path: &Path, e: &std::io::Error) -> FetchError {
    FetchError::new(
        ErrorKind::Io,
        format!(
            "cannot save the body to {}: {} (a problem on this machine, not the server's)",
            path.display(),
            crate::error::describe(e)
        ),
    )
}

/// One established connection, counted in its origin's `established` and the shard's `holding` while
/// this lives.
struct Established<'a>([&'a Cell<usize>; 2]);

impl<'a> Established<'a> {
    fn count(origin: &'a Cell<usize>, shard: &'a Cell<usize>) -> Established<'a> {
        for c in [origin, shard] {
            c.set(c.get() + 1);
        }
        Established([origin, shard])
    }
}

impl Drop for Established<'_> {
    fn drop(&mut self) {
        for c in self.0 {
            c.set(c.get() - 1);
        }
    }
}

/// What a connection's end means for the origins waiting in `starved`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Freed {
    /// Room (its descriptor, its local port), or at least an end: the next waiter's turn.
    Room,
    /// Its connect found no free local port and its origin went to wait for one: it freed nothing
    /// another connect could use, so waking a waiter would only make it try again.
    Nothing,
}

struct OriginState {
    key: target::Origin,
    authority: String,
    /// https: the name the certificate must carry (the host, or the address as text).
    tls_name: Option<Box<str>>,
    /// The addresses connections go to: the proxy's when there is one.
    addrs: OnceCell<Result<Vec<SocketAddr>, FetchError>>,
    /// The proxy this origin goes through, chosen once (`Proxies::for_origin`).
    proxy: Option<Arc<net::proxy::Proxy>>,
    /// Through an http proxy to an http origin: `http://authority`, put before each request's path
    /// (absolute-form), and the proxy's Proxy-Authorization line. Empty otherwise.
    absolute: Box<str>,
    authorization: Box<[u8]>,
    /// socks5 (not socks5h): the target's addresses, resolved here for the proxy.
    target_addrs: OnceCell<Result<Vec<SocketAddr>, FetchError>>,
    /// Jobs waiting for a connection, oldest first (re-sent ones go in front).
    queue: RefCell<VecDeque<usize>>,
    /// Connections open or opening.
    conns: Cell<usize>,
    /// Connections established and not yet closed.
    established: Cell<usize>,
    /// Most connections to open at once: `conns_per_host`, or after a failed connect only as many as
    /// are alive, so an origin that refuses is not hammered while another connection serves it.
    limit: Cell<usize>,
    /// Connections waiting in `idle`.
    idle: Cell<usize>,
    /// `--host-rate`: the origin's next turn, when a request had to wait for it.
    paced_until: Cell<Option<Instant>>,
    wake: Notify,
    /// How the next connection starts: after a failed one with a single request; for good one
    /// request at a time once the origin ended a connection after its first response.
    start: Cell<Start>,
    starved: Cell<bool>,
    /// In the worker's `blocked` queue.
    blocked: Cell<bool>,
    /// `scheme://authority` as the first plain URL of this origin wrote it (`FetchShard::same_origin`).
    written: std::cell::OnceCell<Box<str>>,
}

pub struct FetchShard {
    settings: Arc<FetchSettings>,
    /// This worker's TLS configuration: its own session cache, so resumption stays in the worker.
    tls: Arc<rustls::ClientConfig>,
    limits: ShardLimits,
    env: Env,
    /// How connections are opened (set when the run starts, inside the worker's runtime).
    dialer: RefCell<net::Dialer>,
    jobs: RefCell<Slab<Job>>,
    /// Origins with something queued or a connection open (`release_if_idle` frees the others).
    origins: RefCell<HashMap<target::Origin, Rc<OriginState>>>,
    /// The origin of the URL admitted last, while it is in `origins` (`same_origin`).
    last_origin: RefCell<Option<Rc<OriginState>>>,
    /// How the next connection to a freed origin starts, when not `Start::Open`; bounded.
    starts: RefCell<HashMap<target::Origin, Start>>,
    in_flight: Cell<usize>,
    queued: Cell<usize>,
    /// Jobs waiting out a "try later" status (`--retry-status`): neither queued nor in flight.
    waiting: Cell<usize>,
    open_conns: Cell<usize>,
    /// Connections established and not yet closed: each holds a local port, which its end frees.
    holding: Cell<usize>,
    /// Origins with queued jobs and no connection, waiting for the fd budget.
    starved: RefCell<VecDeque<Rc<OriginState>>>,
    /// Origins whose idle connection has jobs queued and waits for room under the request cap,
    /// oldest first: each freed request is offered to one of them (`pass_room`), so that a worker
    /// holding thousands of idle connections wakes one per response, not all of them.
    blocked: RefCell<VecDeque<Rc<OriginState>>>,
    input_done: Cell<bool>,
    /// The feeder waits here for room in the queue.
    room: Notify,
    /// Broadcast to idle connections: input finished, the run is being interrupted, or it ended.
    wake_idle: Notify,
    /// Asks one idle connection with nothing queued to close, for an origin starving for the
    /// connection budget (one notification per starving origin).
    evict: Notify,
    /// The last job or the last connection finished.
    settled: Notify,
    /// The run is being interrupted: nothing new is sent; URLs not answered are dropped without a
    /// line (`forget`), to be fetched by `--resume`.
    draining: Cell<bool>,
    /// The requests in flight were ended too (`stop_now`); connects under way give up.
    stopped: Cell<bool>,
    stopping: Notify,
    /// The live progress line's slot of this worker, when the line is shown.
    live: Option<(Arc<super::progress::FetchLive>, usize)>,
    pub report: RefCell<Report>,
    lines: RefCell<Lines>,
}

impl FetchShard {
    pub fn new(
        settings: Arc<FetchSettings>,
        limits: ShardLimits,
        live: Option<(Arc<super::progress::FetchLive>, usize)>,
    ) -> Rc<FetchShard> {
        let mut env = Env::new(settings.timeout, settings.depth, settings.refill_at);
        env.rules.closes = settings.template.closes;
        env.rules.idempotent = settings.template.idempotent;
        let lines = Lines::new(settings.sink.clone());
        Rc::new(FetchShard {
            tls: net::tls::worker_config(&settings.tls, settings.no_tls_resume),
            settings,
            limits,
            env,
            dialer: RefCell::new(net::Dialer::Tcp),
            jobs: RefCell::new(Slab::with_capacity((limits.cap * 2).min(PREALLOCATED_JOBS))),
            origins: RefCell::new(HashMap::new()),
            last_origin: RefCell::new(None),
            starts: RefCell::new(HashMap::new()),
            in_flight: Cell::new(0),
            queued: Cell::new(0),
            waiting: Cell::new(0),
            open_conns: Cell::new(0),
            holding: Cell::new(0),
            starved: RefCell::new(VecDeque::new()),
            blocked: RefCell::new(VecDeque::new()),
            input_done: Cell::new(false),
            room: Notify::new(),
            wake_idle: Notify::new(),
            evict: Notify::new(),
            settled: Notify::new(),
            draining: Cell::new(false),
            stopped: Cell::new(false),
            stopping: Notify::new(),
            live,
            report: RefCell::new(Report::default()),
            lines: RefCell::new(lines),
        })
    }

    /// Runs this worker's share of the list to the end. Returns its report.
    pub async fn run(self: Rc<Self>, input: async_channel::Receiver<Vec<Line>>) -> Report {
        let direct = super::transport::start_worker(&self.settings.direct, &self.dialer);
        let ticker = tokio_uring::spawn(Self::tick(self.clone()));
        while let Ok(batch) = input.recv().await {
            // One clock read per batch: a URL's clock starts when its batch arrives (it times a
            // failure before any request is sent; sending restarts it).
            let now = Instant::now();
            for line in batch {
                self.admit(line, now);
            }
            while self.queued.get() >= self.limits.cap {
                self.room.notified().await;
            }
        }
        self.input_done.set(true);
        self.wake_idle.notify_waiters();
        while !self.jobs.borrow().is_empty() || self.open_conns.get() > 0 {
            if self.open_conns.get() == 0 && self.queued.get() == 0 && self.waiting.get() == 0 {
                self.fail_orphans();
                continue;
            }
            self.settled.notified().await;
        }
        ticker.abort();
        let ring = super::transport::finish_worker(direct, &self.dialer).await;
        self.lines.borrow_mut().flush();
        let mut report = std::mem::take(&mut *self.report.borrow_mut());
        report.reads = self.env.reads.get();
        report.writes = self.env.writes.get();
        report.ring = ring;
        report
    }

    /// Fires timeouts, hands results to the sink a few times a second, and follows an interruption.
    async fn tick(self: Rc<Self>) {
        let period = (self.settings.timeout / 20)
            .clamp(Duration::from_millis(10), Duration::from_millis(250));
        let grace = self.settings.timeout.min(GRACE);
        let mut draining_since = None;
        loop {
            tokio::time::sleep(period).await;
            let now = Instant::now();
            self.env.watchdog.tick(now);
            self.lines.borrow_mut().flush();
            if let Some((live, i)) = &self.live {
                live.publish(*i, &self.report.borrow());
            }
            let sink = &self.settings.sink;
            sink.flush_due();
            let interrupt = &self.settings.interrupt;
            if sink.failed() {
                // Finished URLs could no longer be recorded: stop now, and let --resume continue.
                interrupt.raise(Level::Now);
            }
            match interrupt.level() {
                Level::Running => {}
                Level::Draining => {
                    self.drain();
                    if now.duration_since(*draining_since.get_or_insert(now)) >= grace {
                        self.stop_now();
                    }
                }
                Level::Now => self.stop_now(),
            }
        }
    }

    /// Sends nothing new: every URL not yet sent is dropped without a line; connections close once
    /// their requests are answered.
    fn drain(&self) {
        if self.draining.replace(true) {
            return;
        }
        let origins: Vec<Rc<OriginState>> = self.origins.borrow().values().cloned().collect();
        for origin in origins {
            let waiting: Vec<usize> = origin.queue.borrow_mut().drain(..).collect();
            self.queued.set(self.queued.get() - waiting.len());
            for key in waiting {
                self.forget(key);
            }
        }
        self.starved.borrow_mut().clear();
        self.room.notify_one();
        self.wake_idle.notify_waiters();
    }

    /// Ends the requests in flight too (the second signal, or the grace period is over).
    fn stop_now(&self) {
        self.drain();
        if !self.stopped.replace(true) {
            self.env.watchdog.stop_all();
            self.stopping.notify_waiters();
        }
    }

    /// Drops a URL that was not fetched: no line, no `.part` file; `--resume` fetches it.
    fn forget(&self, key: usize) {
        self.remove_job(key);
        self.report.borrow_mut().not_fetched += 1;
        self.after_job();
    }

    fn admit(self: &Rc<Self>, line: Line, now: Instant) {
        if self.draining.get() {
            self.report.borrow_mut().not_fetched += 1;
            return;
        }
        let (origin, target) = match self.same_origin(&line.url) {
            Some((origin, PathIn::Slice(start, end))) => (origin, JobPath::InUrl(start, end)),
            Some((origin, PathIn::Built(path))) => (origin, JobPath::Own(path.into_boxed_str())),
            None => match Target::parse_noting_origin(&line.url) {
                Ok((target, written)) => {
                    let origin = self.origin(&target);
                    if let Some(written) = written {
                        origin.written.get_or_init(|| written.into());
                    }
                    *self.last_origin.borrow_mut() = Some(origin.clone());
                    (origin, JobPath::Own(target.path.into_boxed_str()))
                }
                Err(err) => {
                    let job = Job::new(
                        line.index,
                        line.url.into_boxed_str(),
                        JobPath::Own(Box::default()),
                        now,
                    );
                    return self.report_error(&job, 0.0, err);
                }
            },
        };
        let job = Job::new(line.index, line.url.into_boxed_str(), target, now);
        let key = self.jobs.borrow_mut().insert(job);
        origin.queue.borrow_mut().push_back(key);
        self.queued.set(self.queued.get() + 1);
        self.schedule(&origin);
    }

    /// The origin of the URL admitted before, when `url` starts with it as written there, and the
    /// request target: the host is neither parsed nor looked up again (`Target::path_after`).
    fn same_origin(&self, url: &str) -> Option<(Rc<OriginState>, PathIn)> {
        let last = self.last_origin.borrow();
        let origin = last.as_ref()?;
        let path = Target::path_after(url, origin.written.get()?)?;
        Some((origin.clone(), path))
    }

    fn origin(&self, target: &Target) -> Rc<OriginState> {
        let mut origins = self.origins.borrow_mut();
        if let Some(o) = origins.get(&target.origin) {
            return o.clone();
        }
        let proxy = self.settings.proxies.for_origin(&target.origin);
        let forward = proxy.as_ref().filter(|p| !p.tunnels(target.origin.scheme));
        let o = Rc::new(OriginState {
            key: target.origin.clone(),
            authority: target.authority.clone(),
            tls_name: (target.origin.scheme == Scheme::Https).then(|| target.origin.host_text()),
            addrs: OnceCell::new(),
            absolute: forward
                .map(|_| format!("http://{}", target.authority).into())
                .unwrap_or_default(),
            authorization: forward.map(|p| p.authorization.clone()).unwrap_or_default(),
            proxy,
            target_addrs: OnceCell::new(),
            queue: RefCell::new(VecDeque::new()),
            conns: Cell::new(0),
            established: Cell::new(0),
            limit: Cell::new(self.settings.conns_per_host),
            idle: Cell::new(0),
            paced_until: Cell::new(None),
            wake: Notify::new(),
            start: Cell::new(
                self.starts
                    .borrow_mut()
                    .remove(&target.origin)
                    .unwrap_or(Start::Open),
            ),
            starved: Cell::new(false),
            blocked: Cell::new(false),
            written: std::cell::OnceCell::new(),
        });
        origins.insert(target.origin.clone(), o.clone());
        o
    }

    /// Gets queued jobs of `origin` moving: wake an idle connection, or open another one while each
    /// open connection already has a full pipeline's worth queued.
    fn schedule(self: &Rc<Self>, origin: &Rc<OriginState>) {
        let queued = origin.queue.borrow().len();
        if queued == 0 {
            return;
        }
        if origin.idle.get() > 0 {
            origin.wake.notify_one();
            return;
        }
        let conns = origin.conns.get();
        let wanted =
            conns == 0 || (conns < origin.limit.get() && queued > conns * self.settings.depth);
        if !wanted {
            return;
        }
        if origin.starved.get() {
            // It waits in `starved` for a connection to close (its turn comes from `connection`).
            return;
        }
        if self.open_conns.get() < self.limits.conn_budget {
            origin.conns.set(conns + 1);
            self.open_conns.set(self.open_conns.get() + 1);
            tokio_uring::spawn(Self::connection(self.clone(), origin.clone()));
        } else if conns == 0 {
            // Every fd is taken.
            self.wait_for_room(origin);
        }
    }

    /// `origin` needs a connection and there is no room for one (fds, or local ports toward its
    /// address): it waits in `starved`, and an idle connection of another origin is asked to close.
    fn wait_for_room(&self, origin: &Rc<OriginState>) {
        if !origin.starved.replace(true) {
            self.starved.borrow_mut().push_back(origin.clone());
        }
        self.evict.notify_one();
    }

    /// One connection to `origin`, from connect to close, then the bookkeeping that lets the worker go
    /// on: it runs even when the connection's task panicked (`engine::panic`).
    async fn connection(self: Rc<Self>, origin: Rc<OriginState>) {
        // A panic inside `drive` is caught there, with its requests; one outside it had none on the
        // connection, so only the counts below need to stay right.
        let freed = super::panic::catch(self.connect_and_drive(&origin)).await;
        origin.conns.set(origin.conns.get() - 1);
        self.open_conns.set(self.open_conns.get() - 1);
        self.schedule(&origin);
        self.release_if_idle(&origin);
        // A connect that found no local port freed none: the turn of the origins waiting for room
        // (its own among them) comes from a connection that held one, or it would only try again.
        if !matches!(freed, Ok(Freed::Nothing)) {
            // The first waiter that still has something queued (one whose queue a failed connect
            // answered meanwhile would spend the turn, and leave the others waiting for nobody).
            loop {
                let next = self.starved.borrow_mut().pop_front();
                let Some(starved) = next else { break };
                starved.starved.set(false);
                if !starved.queue.borrow().is_empty() {
                    self.schedule(&starved);
                    break;
                }
                self.release_if_idle(&starved);
            }
        }
        self.settled.notify_one();
    }

    /// Connects, serves the origin's queue, and says what ending freed.
    async fn connect_and_drive(self: &Rc<Self>, origin: &Rc<OriginState>) -> Freed {
        let resolving = Instant::now();
        let proxy = origin.proxy.as_deref();
        let resolver = &self.settings.resolver;
        let addrs = origin
            .addrs
            .get_or_init(|| async {
                match proxy {
                    // An unreachable proxy is a `connect` error, whatever the reason.
                    Some(p) => resolver.resolve(&p.host, p.port).await.map_err(|e| {
                        FetchError::new(
                            ErrorKind::Connect,
                            format!("proxy {}: {}", p.shown, e.message),
                        )
                    }),
                    None => resolver.resolve(&origin.key.host, origin.key.port).await,
                }
            })
            .await;
        // The tunnel through the proxy, when the origin needs one; socks5 is given the target's
        // address (resolved here), socks5h and http proxies its name.
        let tunnel = match proxy.filter(|p| p.tunnels(origin.key.scheme)) {
            None => Ok(None),
            Some(p) => {
                let target = match p.kind {
                    net::proxy::Kind::Socks5 if matches!(origin.key.host, net::Host::Name(_)) => {
                        origin
                            .target_addrs
                            .get_or_init(|| resolver.resolve(&origin.key.host, origin.key.port))
                            .await
                            .as_ref()
                            .map(|a| a.first().copied())
                            .map_err(Clone::clone)
                    }
                    _ => Ok(None),
                };
                target.map(|addr| Some(p.handshake(&origin.key, &origin.key.host_text(), addr)))
            }
        };
        let dns = resolving.elapsed();
        let tls = origin.tls_name.as_deref().map(|name| (&self.tls, name));
        // Created before the check, so a stop between them is not missed.
        let stopping = self.stopping.notified();
        let connected = match (addrs, tunnel) {
            _ if self.stopped.get() => Err(interrupted()),
            (Ok(addrs), Ok(tunnel)) => {
                let dialer = self.dialer.borrow().clone();
                let started = Instant::now();
                tokio::select! {
                    c = net::connect_via(&dialer, addrs, tunnel, self.settings.connect_timeout, tls) => {
                        c.map(|(io, tcp)| {
                            let times = ConnTimes {
                                dns,
                                connect: tcp,
                                tls: tls.map(|_| started.elapsed().saturating_sub(tcp)),
                            };
                            (io, times)
                        })
                    }
                    _ = stopping => Err(interrupted()),
                }
            }
            (Err(e), _) => Err(e.clone()),
            (_, Err(e)) => Err(e),
        };
        match connected {
            Ok((io, times)) => {
                self.report.borrow_mut().connected(io.tls_resumed());
                // Counted down however this arm ends (a waiter for a port relies on the counts).
                let _established = Established::count(&origin.established, &self.holding);
                origin.limit.set(self.settings.conns_per_host);
                let start = origin.start.get();
                let work = OriginWork {
                    shard: self,
                    origin,
                    times,
                    sent: Cell::new(0),
                    reset_on_close: Cell::new(false),
                };
                let ended = conn::drive(&self.env, &work, &io, start).await;
                if work.reset_on_close.get() {
                    io.abort_on_close();
                }
                origin
                    .start
                    .set(match (origin.start.get(), ended.end, ended.answered) {
                        (Start::Single, _, _) => Start::Single,
                        // RFC 9112 §9.3.2: pipeline again only once a connection has answered.
                        (_, End::Failed, _) => Start::Probe,
                        // It keeps no connection past one response: pipelined requests would only be
                        // reset with it (and may take the response with them).
                        (_, End::Closed, 1) if self.settings.depth > 1 => Start::Single,
                        _ => Start::Open,
                    });
                Freed::Room
            }
            Err(err) => {
                origin.limit.set(origin.established.get().max(1));
                if origin.established.get() == 0 && err.no_local_port() && self.holding.get() > 0 {
                    // Every local port toward its address is held, by our own connections among
                    // others (a list of many host names behind one address, more than the port
                    // range of them kept open): wait for one of ours to close, as for the fd
                    // budget, rather than fail the queue. Connections closed to make room close
                    // with a reset, so the port is free at once; the end of one that held a port
                    // gives the next waiter its turn.
                    self.wait_for_room(origin);
                    return Freed::Nothing;
                }
                // With no connection to this origin established, nobody will serve its queue: the
                // error is every queued URL's answer (a refused port fails the whole backlog at once,
                // instead of once per URL). Connections still opening find an empty queue.
                if origin.established.get() == 0 {
                    let waiting: Vec<usize> = origin.queue.borrow_mut().drain(..).collect();
                    self.queued.set(self.queued.get() - waiting.len());
                    self.room.notify_one();
                    for key in waiting {
                        self.finish_failed(key, err.clone());
                    }
                }
                Freed::Room
            }
        }
    }

    /// Sends `key` again once the server's "try later" has passed (`--retry-status`): it waits
    /// apart, neither queued nor in flight, then joins its origin's queue like a new request. An
    /// interruption drops it for `--resume`.
    fn try_later(self: &Rc<Self>, key: usize, later: Later) {
        let (wait, url) = {
            let mut jobs = self.jobs.borrow_mut();
            let job = &mut jobs[key];
            job.later_retries += 1;
            job.status = None;
            job.body_bytes = 0;
            job.wire_bytes = 0;
            std::mem::replace(&mut job.save, Body::Unsaved).discard();
            let wait = super::pace::try_later(
                later.retry_after.as_deref(),
                job.later_retries,
                self.settings.retry_max_wait,
                job.index ^ u64::from(job.attempts) << 40,
            );
            let url = job.chain.as_ref().map_or(&job.url, |c| &c.url).clone();
            (wait, url)
        };
        self.waiting.set(self.waiting.get() + 1);
        let shard = self.clone();
        tokio_uring::spawn(async move {
            let until = Instant::now() + wait;
            // In slices, so that an interruption is noticed within a quarter of a second.
            while !shard.draining.get() {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                tokio::time::sleep((until - now).min(Duration::from_millis(250))).await;
            }
            shard.waiting.set(shard.waiting.get() - 1);
            if shard.draining.get() {
                return shard.forget(key);
            }
            let Ok(target) = Target::parse(&url) else {
                return shard.forget(key);
            };
            let origin = shard.origin(&target);
            origin.queue.borrow_mut().push_back(key);
            shard.queued.set(shard.queued.get() + 1);
            shard.schedule(&origin);
        });
    }

    /// Jobs that no connection holds and no queue names, once every connection has ended: lost to a
    /// panic that escaped the pump's own catch. Each still gets its line.
    fn fail_orphans(&self) {
        let keys: Vec<usize> = self.jobs.borrow().iter().map(|(key, _)| key).collect();
        for key in keys {
            self.finish_failed(
                key,
                FetchError::new(
                    ErrorKind::Internal,
                    "its connection task panicked (a bug in ringfetch, please report it with the \
                     message printed on stderr)",
                ),
            );
        }
    }

    /// Frees an origin with nothing queued and no connection, so that memory follows the requests in
    /// flight, not the number of hosts a list names (a crawl of ten million domains touches each once).
    /// How its next connection should start, when its connections taught something, is kept in a
    /// bounded map instead.
    fn release_if_idle(&self, origin: &Rc<OriginState>) {
        if origin.conns.get() > 0 || origin.starved.get() || !origin.queue.borrow().is_empty() {
            return;
        }
        self.origins.borrow_mut().remove(&origin.key);
        let mut last = self.last_origin.borrow_mut();
        if last.as_ref().is_some_and(|l| Rc::ptr_eq(l, origin)) {
            // A freed origin must not be found again: its successor is a new one in `origins`.
            *last = None;
        }
        drop(last);
        let start = origin.start.get();
        if start != Start::Open {
            let mut starts = self.starts.borrow_mut();
            if starts.len() >= STARTS_KEPT {
                // Forgetting costs one probe or a few wasted pipelined requests, never a result.
                starts.clear();
            }
            starts.insert(origin.key.clone(), start);
        }
    }

    /// Removes a URL that ends without its body: a body being saved leaves no file.
    fn remove_job(&self, key: usize) -> Job {
        let mut job = self.jobs.borrow_mut().remove(key);
        std::mem::replace(&mut job.save, Body::Unsaved).discard();
        job
    }

    fn finish_failed(&self, key: usize, err: FetchError) {
        let job = self.remove_job(key);
        let since = job.chain.as_ref().map_or(job.sent, |c| c.started);
        let elapsed = if job.attempts == 0 {
            0.0
        } else {
            since.elapsed().as_secs_f64() * 1000.0
        };
        self.report_error(&job, elapsed, err);
        self.after_job();
    }

    /// The line of a URL that ended in `err`.
    fn report_error(&self, job: &Job, elapsed_ms: f64, err: FetchError) {
        self.report.borrow_mut().error(&err);
        let (final_url, redirects) = self.chain_fields(job);
        self.lines.borrow_mut().push(&ResultLine {
            index: job.index,
            url: &job.url,
            status: job.status,
            body_bytes: job.body_bytes,
            elapsed_ms: round3(elapsed_ms),
            attempts: job.attempts,
            error: Some(err.to_string()),
            path: None,
            final_url,
            redirects,
            encoding: (self.settings.compressed && job.status.is_some()).then(|| job.decode.name()),
            wire_bytes: (self.settings.compressed && job.status.is_some())
                .then_some(job.wire_bytes),
            meta: self.meta_line(job, None),
        });
    }

    /// The `--meta`, `--include-header` and `--hash` fields of `job`'s line, from its last response
    /// (on a line without one, only what is known: the timings of a connection made).
    fn meta_line<'a>(&self, job: &'a Job, sha256: Option<&'a str>) -> Option<MetaLine<'a>> {
        let plan = self.settings.meta.as_ref()?;
        let meta = job.meta.as_deref();
        let ms = |d: Duration| round3(d.as_secs_f64() * 1000.0);
        let answered = job.status.is_some();
        Some(MetaLine {
            content_type: plan.fields.then(|| {
                meta.and_then(|m| m.content_type.as_deref())
                    .filter(|_| answered)
            }),
            content_length: plan
                .fields
                .then(|| meta.and_then(|m| m.content_length).filter(|_| answered)),
            dns_ms: plan.fields.then(|| meta.map(|m| ms(m.conn.dns))),
            connect_ms: plan.fields.then(|| meta.map(|m| ms(m.conn.connect))),
            tls_ms: plan.fields.then(|| meta.and_then(|m| m.conn.tls).map(ms)),
            ttfb_ms: plan
                .fields
                .then(|| meta.and_then(|m| m.ttfb).filter(|_| answered).map(ms)),
            reused: plan.fields.then(|| meta.is_some_and(|m| m.reused)),
            headers: (!plan.headers.is_empty())
                .then(|| Headers(meta.map_or(&[][..], |m| &m.headers[..])))
                .filter(|_| answered),
            sha256,
        })
    }

    /// `final_url` and `redirects` of a result line: with -L only, so lines without it stay as they
    /// were.
    fn chain_fields<'a>(&self, job: &'a Job) -> (Option<&'a str>, Option<u32>) {
        match (&self.settings.follow, &job.chain) {
            (None, _) => (None, None),
            (Some(_), Some(c)) => (Some(&c.url), Some(c.hops)),
            // Never sent (an invalid URL): nothing was followed.
            (Some(_), None) if job.attempts == 0 => (None, None),
            (Some(_), None) => (Some(&job.url), Some(0)),
        }
    }

    /// Offers room under the request cap to the oldest origin whose idle connection waits for it.
    /// The woken connection passes on what it leaves (`fill` and `idle` call this again), so room
    /// and waiters never sit apart.
    fn pass_room(&self) {
        if self.in_flight.get() >= self.limits.cap {
            return;
        }
        loop {
            let Some(origin) = self.blocked.borrow_mut().pop_front() else {
                return;
            };
            origin.blocked.set(false);
            // Skipped: an origin whose connection has gone meanwhile, or was served by another.
            if origin.idle.get() > 0 && !origin.queue.borrow().is_empty() {
                origin.wake.notify_one();
                return;
            }
        }
    }

    fn after_job(&self) {
        if self.input_done.get() && self.jobs.borrow().is_empty() {
            self.wake_idle.notify_waiters();
            self.settled.notify_one();
        }
    }
}

/// Jobs a worker allocates room for at start; past it the slab grows as the run needs (a -c of
/// millions would otherwise take gigabytes before the first URL).
const PREALLOCATED_JOBS: usize = 16384;

/// Freed origins whose next connection starts other than `Start::Open`, remembered at most.
const STARTS_KEPT: usize = 4096;

fn interrupted() -> FetchError {
    FetchError::new(ErrorKind::Io, "interrupted")
}

/// Lowercase hexadecimal, for digests.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn round3(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// A connection's view of its worker: the requests of one origin.
struct OriginWork<'a> {
    shard: &'a Rc<FetchShard>,
    origin: &'a Rc<OriginState>,
    /// How this connection was made (`--meta`).
    times: ConnTimes,
    /// Requests written on it so far: the later ones went on a `reused` connection.
    sent: Cell<u32>,
    /// It closes idle while other URLs wait for a connection (to make room for a starving origin,
    /// or at the end of the input), or because the run is interrupted: with a reset
    /// (`Transport::abort_on_close`), since a run that closes thousands of connections toward one
    /// address would otherwise fill the port range toward it with TIME_WAIT, and the waiting URLs
    /// (or those of the --resume that follows) find no local port. At the very end of a run that
    /// was not interrupted, in good order.
    reset_on_close: Cell<bool>,
}

impl OriginWork<'_> {
    /// The response to `key` redirects to `location` (`-L`): the URL's next request goes to its
    /// origin's queue, like any request, and the chain grows. False when `location` names nothing
    /// fetchable: then the redirect is the URL's answer.
    fn follow(&self, key: usize, location: &str) -> bool {
        let s = self.shard;
        let Some(follow) = &s.settings.follow else {
            return false;
        };
        let mut jobs = s.jobs.borrow_mut();
        let job = &mut jobs[key];
        let Some(chain) = job.chain.as_mut() else {
            return false;
        };
        let next = redirect::resolve(&chain.url, location)
            .and_then(|url| Target::parse(&url).ok().map(|t| (url, t)));
        let Some((url, target)) = next else {
            return false;
        };
        self.release_slot();
        if chain.hops >= follow.max {
            let mut shown: Vec<&str> = chain.recent.iter().map(|u| &**u).collect();
            shown.push(&chain.url);
            let err = FetchError::new(
                ErrorKind::Protocol,
                format!(
                    "more than {} redirects (--max-redirs {}): … → {} → {url}; a loop, or raise --max-redirs",
                    follow.max,
                    follow.max,
                    shown.join(" → ")
                ),
            );
            drop(jobs);
            s.finish_failed(key, err);
            return true;
        }
        let status = job.status.unwrap_or(0);
        chain.hops += 1;
        chain.method = redirect::next_method(status, &s.settings.template.method, chain.method);
        chain.foreign = target.origin != chain.first;
        if chain.recent.len() == RECENT_URLS {
            chain.recent.pop_front();
        }
        let before = std::mem::replace(&mut chain.url, url.into_boxed_str());
        chain.recent.push_back(before);
        job.target = JobPath::Own(target.path.as_str().into());
        job.status = None;
        job.body_bytes = 0;
        // Each hop has the network retries of any request.
        job.retries_used = 0;
        drop(jobs);
        let origin = s.origin(&target);
        origin.queue.borrow_mut().push_back(key);
        s.queued.set(s.queued.get() + 1);
        s.schedule(&origin);
        true
    }

    fn release_slot(&self) {
        let s = self.shard;
        s.in_flight.set(s.in_flight.get() - 1);
        s.pass_room();
    }
}

impl Workload for OriginWork<'_> {
    type Ticket = usize;

    fn fill(
        &self,
        out: &mut Vec<u8>,
        conn: &mut Connection<usize>,
        max: usize,
        now: Instant,
    ) -> usize {
        let s = self.shard;
        let max = max.min(s.limits.cap.saturating_sub(s.in_flight.get()));
        let mut queue = self.origin.queue.borrow_mut();
        let mut jobs = s.jobs.borrow_mut();
        let mut n = 0;
        let pacer = s.settings.pacer.as_deref();
        while n < max && !queue.is_empty() {
            if let Some(Err(at)) = pacer.map(|p| p.take(&self.origin.key, now)) {
                // Not this origin's turn yet: `idle` waits for it.
                self.origin.paced_until.set(Some(at));
                break;
            }
            let Some(key) = queue.pop_front() else { break };
            let job = &mut jobs[key];
            job.attempts += 1;
            job.sent = now;
            let template = s.settings.template(job.chain.as_deref());
            template.write_via(
                out,
                &self.origin.absolute,
                job.path(),
                &self.origin.authority,
                &self.origin.authorization,
            );
            if s.settings.meta.is_some() {
                let meta = job.meta.get_or_insert_default();
                meta.conn = self.times;
                meta.reused = self.sent.get() > 0;
            }
            self.sent.set(self.sent.get() + 1);
            conn.sent(key, now, template.head);
            n += 1;
        }
        if n > 0 {
            s.queued.set(s.queued.get() - n);
            s.in_flight.set(s.in_flight.get() + n);
            if s.queued.get() < s.limits.cap {
                s.room.notify_one();
            }
        }
        // Room left over goes to an origin waiting for it (which reads this origin's queue too).
        drop((queue, jobs));
        s.pass_room();
        n
    }

    async fn idle(&self) -> bool {
        let s = self.shard;
        // Asked to close for a starving origin (`evict`), but this origin's work came first.
        let mut asked = false;
        loop {
            let queued = !self.origin.queue.borrow().is_empty();
            if asked && queued && !s.starved.borrow().is_empty() {
                // Keeping the connection: the request to close goes to another idle one.
                s.evict.notify_one();
            }
            asked = false;
            let paced = self
                .origin
                .paced_until
                .get()
                .filter(|&at| at > Instant::now());
            if queued && paced.is_none() {
                if s.in_flight.get() < s.limits.cap {
                    return true;
                }
                // Every request of the worker is taken: wait in line for one (`pass_room`).
                if !self.origin.blocked.replace(true) {
                    s.blocked.borrow_mut().push_back(self.origin.clone());
                }
            }
            if !queued {
                let making_room = !s.starved.borrow().is_empty();
                if making_room || s.input_done.get() || s.draining.get() {
                    // While other URLs wait for a connection, one of them may need its port; and
                    // an interrupted run is likely followed at once by its --resume, whose connects
                    // would find the ports toward the same addresses held by our TIME_WAITs.
                    self.reset_on_close
                        .set(making_room || s.queued.get() > 0 || s.draining.get());
                    return false;
                }
            }
            // This connection takes no room now (paced, or nothing queued): another may.
            s.pass_room();
            self.origin.idle.set(self.origin.idle.get() + 1);
            // select! builds every branch's future, enabled or not: a timer only when paced (a
            // `Sleep` built and dropped per wait read the clock and touched the timer wheel).
            let turn = async {
                match paced {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            // Any wake-up only loops to the checks above, so the order is free: `biased` spares
            // the random draw select! makes per wait (0.6% of samples over 10,000 origins).
            tokio::select! {
                biased;
                _ = self.origin.wake.notified() => {}
                _ = s.wake_idle.notified() => {}
                _ = s.evict.notified(), if !queued => asked = true,
                _ = turn, if paced.is_some() => {}
            }
            self.origin.idle.set(self.origin.idle.get() - 1);
        }
    }

    fn on_head(&self, key: usize, head: &Head, raw: &[u8]) {
        let s = self.shard;
        let mut jobs = s.jobs.borrow_mut();
        let job = &mut jobs[key];
        super::panic::injected(Point::Head, job.path());
        job.status = Some(head.status);
        if let Some(plan) = &s.settings.meta {
            let ttfb = job.sent.elapsed();
            job.meta.get_or_insert_default().head(plan, raw, ttfb);
        }
        if s.settings.compressed {
            job.wire_bytes = 0;
            job.decode = match decode::codings(raw) {
                Ok(codings) if codings.is_empty() => Decode::Plain,
                Ok(codings) => {
                    let names: Vec<&str> = codings.iter().map(|c| c.name()).collect();
                    Decode::Coded(Box::new(Decoder::new(&codings)), names.join(", ").into())
                }
                Err(name) => Decode::Unknown(name.into()),
            };
        }
        if s.settings.retry_status.contains(&head.status)
            && job.later_retries < s.settings.retries
            && s.settings.template(job.chain.as_deref()).idempotent
        {
            job.later = Some(Later {
                retry_after: super::pace::retry_after(raw).map(Into::into),
            });
            return;
        }
        if s.settings.follow.is_none() || !redirect::redirects(head.status) {
            return;
        }
        // Without a usable Location the redirect is the URL's answer (RFC 9110 §15.4).
        let Some(location) = redirect::location(raw) else {
            return;
        };
        let sent = job.sent;
        let url = &job.url;
        let chain = job.chain.get_or_insert_with(|| {
            Box::new(Chain {
                url: url.clone(),
                first: self.origin.key.clone(),
                hops: 0,
                started: sent,
                method: Method::Given,
                foreign: false,
                recent: VecDeque::new(),
                location: None,
            })
        });
        chain.location = Some(location.into());
    }

    fn on_body(&self, key: usize, data: &[u8]) -> Result<(), FetchError> {
        let s = self.shard;
        let mut jobs = s.jobs.borrow_mut();
        let job = &mut jobs[key];
        if job.later.is_some() || job.chain.as_ref().is_some_and(|c| c.location.is_some()) {
            // A redirect's or a "try later"'s own body: neither counted nor kept; the URL's body is
            // the final response's.
            return Ok(());
        }
        job.wire_bytes += data.len() as u64;
        job.decode_body(&s.settings, data, false)
    }

    fn on_done(&self, done: InFlight<usize>, now: Instant) {
        let s = self.shard;
        // One look at the job for what the response asks for next (a "try later", a redirect):
        // usually nothing, and the job is removed with the second.
        let (later, location) = {
            let mut jobs = s.jobs.borrow_mut();
            let job = &mut jobs[done.ticket];
            let location = job.chain.as_mut().and_then(|c| c.location.take());
            (job.later.take(), location)
        };
        if let Some(later) = later {
            self.release_slot();
            return s.try_later(done.ticket, later);
        }
        if let Some(location) = location {
            if self.follow(done.ticket, &location) {
                return;
            }
        }
        let mut job = s.jobs.borrow_mut().remove(done.ticket);
        self.release_slot();
        let latency = now.saturating_duration_since(done.sent);
        let elapsed = match &job.chain {
            Some(c) => now.saturating_duration_since(c.started),
            None => latency,
        };
        if let Err(err) = job.decode_body(&s.settings, &[], true) {
            std::mem::replace(&mut job.save, Body::Unsaved).discard();
            s.report_error(&job, elapsed.as_secs_f64() * 1000.0, err);
            return s.after_job();
        }
        let mut path = None;
        if let Some(dir) = &s.settings.save_dir {
            let fin = dir.join(job.index.to_string());
            let body = std::mem::replace(&mut job.save, Body::Unsaved);
            if let Err(err) = body.keep(dir, job.index, &fin) {
                s.report_error(&job, elapsed.as_secs_f64() * 1000.0, err);
                s.after_job();
                return;
            }
            path = Some(fin);
        }
        {
            let mut report = s.report.borrow_mut();
            report.requests += 1;
            report.bytes += job.body_bytes;
            report.status.add(job.status.unwrap_or(0));
            report.latency.record(latency);
        }
        let path_text = path.as_ref().map(|p| p.to_string_lossy());
        let sha256 = job
            .meta
            .as_mut()
            .and_then(|m| m.sha256.take())
            .map(|digest| hex(digest.finish().as_ref()));
        let (final_url, redirects) = s.chain_fields(&job);
        s.lines.borrow_mut().push(&ResultLine {
            index: job.index,
            url: &job.url,
            status: job.status,
            body_bytes: job.body_bytes,
            elapsed_ms: round3(elapsed.as_secs_f64() * 1000.0),
            attempts: job.attempts,
            error: None,
            path: path_text.as_deref(),
            final_url,
            redirects,
            encoding: s.settings.compressed.then(|| job.decode.name()),
            wire_bytes: s.settings.compressed.then_some(job.wire_bytes),
            meta: s.meta_line(&job, sha256.as_deref()),
        });
        s.after_job();
    }

    fn on_left(&self, key: usize, fate: Fate, err: &FetchError) {
        let s = self.shard;
        if err.kind == ErrorKind::Internal {
            super::panic::injected(Point::Left, s.jobs.borrow()[key].path());
        }
        self.release_slot();
        if s.draining.get() {
            // Unanswered or cut short by the interruption: not fetched, for --resume.
            return s.forget(key);
        }
        let decision = match fate {
            // Its response had begun: never sent again.
            Fate::Failed => Verdict::GiveUp,
            Fate::Unanswered(why) => {
                let jobs = s.jobs.borrow();
                let job = &jobs[key];
                verdict(
                    why,
                    s.settings.template.idempotent,
                    job.retries_used,
                    s.settings.retries,
                )
            }
        };
        if decision == Verdict::GiveUp {
            return s.finish_failed(key, err.clone());
        }
        {
            let mut jobs = s.jobs.borrow_mut();
            let job = &mut jobs[key];
            let mut report = s.report.borrow_mut();
            if decision == Verdict::Retry {
                job.retries_used += 1;
                report.retries += 1;
            } else {
                report.resent += 1;
            }
            job.status = None;
            job.body_bytes = 0;
            std::mem::replace(&mut job.save, Body::Unsaved).discard();
        }
        self.origin.queue.borrow_mut().push_front(key);
        s.queued.set(s.queued.get() + 1);
        // The connection that dropped it is still counted; it schedules a replacement as it closes.
    }
}
