//! The built-in benchmark target: answers every request with 200 and a fixed body, on the same
//! tokio-uring engine as the client. Each server thread has its own listening socket on the same port
//! (SO_REUSEPORT, so the kernel spreads connections) and its own ring. Pipelining aware: the requests
//! found in one read are answered in one write, up to `OUT_BOUND` bytes of answers at a time; nothing
//! more is read from a connection while its answers wait to go out, so what a client sends cannot
//! make the server hold more than about `OUT_BOUND` (or one response) per connection.
//!
//! Staying up against clients that take and do not give: each connection is in one `Stage`, each
//! with its own timeout (`Timeouts`); the thread's watchdog (`engine::deadline`, the same one the fetch
//! pump uses) shuts down a connection whose stage outlived its timeout, which ends its pending receive
//! or send, and the connection closes. A deadline is a cell the connection sets when its stage changes:
//! no timer, no allocation per request.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use tokio_uring::net::{TcpListener, TcpStream};

use crate::engine::deadline::{Fired, Registration, Watchdog};
use crate::http::server::{Method, Persistence, RequestDecoder, Step};
use crate::net::buffers::Pool;
use crate::net::direct::{self, Ring, RingSize};
use crate::net::{self, tcp, tls, Kill, Transport};
use crate::runtime::{spawn_workers, RingSetup};

const READ_BUF: usize = 16 * 1024;

/// Answers are built up to this many bytes (or one response, if larger) before they are written:
/// 16 KiB of pipelined `GET`s against a 1 MiB body would otherwise be ~400 MB in one buffer.
const OUT_BOUND: usize = 256 * 1024;

/// A running server: its (first) address and its threads (which run until the process ends).
pub struct Server {
    pub addr: SocketAddr,
    /// Consecutive ports from `addr`'s (`--listeners`).
    pub ports: u16,
    pub threads: Vec<std::thread::JoinHandle<io::Result<()>>>,
}

/// What the server answers and how.
#[derive(Clone, Default)]
pub struct Options {
    pub body_size: u64,
    /// Wait this long before answering what one read brought: a slow backend, for tests and for
    /// holding many connections open.
    pub delay: std::time::Duration,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Listen on this many consecutive ports (at least 1): each port has room for one ephemeral range
    /// of connections from one client address.
    pub ports: u16,
    /// Accept into each thread's io_uring fixed-file table (`--transport direct`).
    pub direct: bool,
    /// `--transport auto`: descriptors first; once the open-file limit is reached, connections past
    /// it are accepted into a fixed-file table too, where the kernel has them.
    pub spill: bool,
    pub timeouts: Timeouts,
}

/// How long a connection may stay in each `Stage` before the server closes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From accept (the first request, TLS handshake included) or from the first bytes of a later
    /// request until its head is complete: a slowloris client holds a descriptor this long at most.
    pub header: Duration,
    /// Between requests on a kept-alive connection.
    pub idle: Duration,
    /// For the client to take one chunk of answers (at most `OUT_BOUND` or one response).
    pub write: Duration,
}

impl Default for Timeouts {
    /// nginx's client_header_timeout is 60 s; a benchmark target can be stricter. The idle timeout
    /// is nginx's keepalive_timeout rounded down.
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            write: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    /// How often the watchdog looks: a fraction of the shortest timeout, so a connection outlives its
    /// timeout by at most about a quarter of it.
    fn tick(&self) -> Duration {
        (self.header.min(self.idle).min(self.write) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// What a connection is waiting for; each stage has its own timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// A request head to complete (or, on a fresh connection, to start; TLS handshake included).
    Head,
    /// The next request on a kept-alive connection.
    Idle,
    /// Our own `--delay`: no timeout.
    Delay,
    /// The client to take a chunk of answers.
    Write,
}

/// A connection's stage and its deadline in the thread's watchdog.
struct Clock<'a> {
    registration: Registration<'a>,
    timeouts: Timeouts,
    stage: Stage,
}

impl<'a> Clock<'a> {
    fn start(dog: &'a Watchdog, kill: Kill, timeouts: Timeouts) -> Clock<'a> {
        let registration = dog.register(kill);
        registration
            .watch
            .set(Some(Instant::now() + timeouts.header));
        Clock {
            registration,
            timeouts,
            stage: Stage::Head,
        }
    }

    /// Enters `stage` with a fresh timeout, except a head still arriving: its clock runs from its
    /// first bytes, or a client trickling a byte at a time would hold the connection forever.
    fn enter(&mut self, stage: Stage) {
        if stage == Stage::Head && self.stage == Stage::Head {
            return;
        }
        self.stage = stage;
        let limit = match stage {
            Stage::Head => Some(self.timeouts.header),
            Stage::Idle => Some(self.timeouts.idle),
            Stage::Delay => None,
            Stage::Write => Some(self.timeouts.write),
        };
        self.registration
            .watch
            .set(limit.map(|l| Instant::now() + l));
    }

    /// The stage outlived its timeout: the watchdog shut the connection down.
    fn expired(&self) -> bool {
        self.registration.watch.fired() != Fired::No
    }
}

/// Looks at the thread's connections' deadlines every `every`, for as long as the thread runs.
async fn watch(dog: Rc<Watchdog>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        dog.tick(Instant::now());
    }
}

/// `-v`'s line: which transport serve accepts on, and why.
pub fn describe_transport(direct: bool, spill: bool) -> String {
    match (direct, spill, direct::available()) {
        (true, _, _) => crate::engine::transport::DIRECT_ASKED.into(),
        (false, true, Ok(())) => "ringfetch: transport tcp, and direct descriptors past the open-file \
            limit (auto: a fixed-file table is capped by that limit too, so tcp first holds twice as \
            many; --transport direct for direct only)"
            .into(),
        (false, true, Err(why)) => crate::engine::transport::no_direct(&why),
        (false, false, _) => crate::engine::transport::TCP_ASKED.into(),
    }
}

/// Says once per process, on stderr, that accepting failed for want of descriptors or table slots
/// (EMFILE, ENFILE): new connections then wait in the listen backlog until others close.
fn say_full_once(e: &io::Error, direct: bool) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
        || SAID.swap(true, Ordering::Relaxed)
    {
        return;
    }
    let what = if direct {
        "raise --listeners (each listening socket has its own fixed-file table)".to_string()
    } else {
        let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft);
        format!(
            "raise the open-file limit (now {limit}: `ulimit -n`), or use --transport direct (no descriptor per connection)"
        )
    };
    eprintln!(
        "ringfetch: serve is full, it cannot accept more connections ({e}); new ones wait in the listen backlog until others close or time out; to hold more, {what}"
    );
}

/// Binds `threads` listening sockets on `addr` (port 0: a free port, shared by all) and starts one
/// server thread per socket, pinned round-robin over `cpus`.
pub fn start(
    setup: &RingSetup,
    addr: SocketAddr,
    threads: usize,
    cpus: &[usize],
    options: Options,
) -> io::Result<Server> {
    let Options {
        body_size,
        delay,
        tls,
        ports,
        direct,
        spill,
        timeouts,
    } = options;
    if direct {
        direct::require()?;
    }
    let slots = direct::table_max(
        rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft),
    );
    let single_issuer = setup.single_issuer;
    // Many rings (threads past the CPU count, or several ports each with its own ring): their fixed
    // memory adds up, so each is sized for mostly idle connections.
    let scale = threads > cpus.len() || ports > 1;
    let ports = ports.max(1);
    // Port 0 with several ports: the kernel picks the first, the next ones may be taken; try again.
    let mut attempts = if addr.port() == 0 { 20 } else { 1 };
    let (addr, listeners) = loop {
        attempts -= 1;
        match bind_all(addr, threads, ports) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempts > 0 => continue,
            other => break other?,
        }
    };
    let mut responses = Responses::new(body_size);
    responses.delay = delay;
    let listeners = std::sync::Arc::new(std::sync::Mutex::new(
        listeners.into_iter().map(Some).collect::<Vec<_>>(),
    ));
    let unclaimed = listeners.clone();
    let setup = RingSetup {
        small: direct && scale,
        ..setup.clone()
    };
    let threads = spawn_workers(&setup, cpus, threads, "serve", move |i| {
        let responses = responses.clone();
        let tls = tls.clone();
        let mine = listeners.lock().ok().and_then(|mut l| l[i].take());
        async move {
            let responses = Rc::new(responses);
            let dog = Rc::new(Watchdog::default());
            tokio_uring::spawn(watch(dog.clone(), timeouts.tick()));
            let serving = Serving {
                responses,
                tls,
                dog,
                timeouts,
            };
            if direct {
                let size = if scale {
                    RingSize::scale(slots)
                } else {
                    RingSize::load(slots)
                };
                if let Err(e) = direct_loop(
                    mine.into_iter().flatten().collect(),
                    size,
                    single_issuer,
                    serving,
                )
                .await
                {
                    // Said at once: the other threads may go on serving (this one's listening
                    // socket is closed, so the kernel sends its connections to them).
                    eprintln!("ringfetch: a server thread could not start its direct-descriptor ring: {e}");
                    return Err(io::Error::other(
                        "a server thread could not start its direct-descriptor ring (see above)",
                    ));
                }
                return Ok(());
            }
            // Made now: once the limit is reached, a new ring's own descriptor could not be had.
            let spill = spill
                .then(|| Spill::new(RingSize::scale(slots), single_issuer))
                .flatten()
                .map(Rc::new);
            let loops: Vec<_> = mine
                .into_iter()
                .flatten()
                .map(|l| {
                    let listener = TcpListener::from_std(l);
                    tokio_uring::spawn(accept_loop(listener, serving.clone(), spill.clone()))
                })
                .collect();
            for l in loops {
                let _ = l.await;
            }
            Ok(())
        }
    })?;
    let threads = threads
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let unclaimed = unclaimed.clone();
            std::thread::spawn(move || {
                let served = h
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("server thread panicked")))
                    .and_then(|served| served);
                // A thread whose runtime never started never took its listening sockets: closed
                // here, or SO_REUSEPORT would keep sending them connections nobody accepts.
                drop(unclaimed.lock().ok().and_then(|mut l| l[i].take()));
                served
            })
        })
        .collect();
    Ok(Server {
        addr,
        ports,
        threads,
    })
}

/// Per thread, one socket on each of `ports` consecutive ports from `addr`'s (SO_REUSEPORT spreads each
/// port's connections over the threads). Returns the first address and the sockets, by thread.
fn bind_all(
    addr: SocketAddr,
    threads: usize,
    ports: u16,
) -> io::Result<(SocketAddr, Vec<Vec<StdListener>>)> {
    let first = bind(addr)?;
    let addr = first.local_addr()?;
    if u32::from(addr.port()) + u32::from(ports) > 65536 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{ports} ports from {} run past port 65535", addr.port()),
        ));
    }
    let mut first = Some(first);
    let mut listeners = Vec::with_capacity(threads);
    for _ in 0..threads {
        let mut mine = Vec::with_capacity(usize::from(ports));
        for p in 0..ports {
            mine.push(match first.take() {
                Some(l) => l,
                None => bind(SocketAddr::new(addr.ip(), addr.port() + p))?,
            });
        }
        listeners.push(mine);
    }
    Ok((addr, listeners))
}

fn bind(addr: SocketAddr) -> io::Result<StdListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    // The kernel caps this at net.core.somaxconn.
    socket.listen(65535)?;
    Ok(socket.into())
}

/// The prebuilt response bytes.
#[derive(Clone)]
struct Responses {
    /// Head and body of a 200.
    full: Vec<u8>,
    /// The same head alone, for HEAD requests.
    head_len: usize,
    /// The same with `Connection: close`, for requests that asked to close (RFC 9112 §9.6).
    closing: Vec<u8>,
    closing_head_len: usize,
    delay: std::time::Duration,
}

impl Responses {
    fn new(body_size: u64) -> Responses {
        let build = |extra: &str| {
            let mut full = format!(
                "HTTP/1.1 200 OK\r\nServer: ringfetch\r\nContent-Type: application/octet-stream\r\nContent-Length: {body_size}\r\n{extra}\r\n"
            )
            .into_bytes();
            let head_len = full.len();
            // A repeating, printable pattern: easy to recognise in a capture.
            full.extend((0..body_size).map(|i| b"0123456789abcdef"[(i % 16) as usize]));
            (full, head_len)
        };
        let (full, head_len) = build("");
        let (closing, closing_head_len) = build("Connection: close\r\n");
        Responses {
            full,
            head_len,
            closing,
            closing_head_len,
            delay: std::time::Duration::ZERO,
        }
    }

    fn pick(&self, method: Method, persistence: Persistence) -> &[u8] {
        match (persistence, method) {
            (Persistence::KeepAlive, Method::Other) => &self.full,
            (Persistence::KeepAlive, Method::Head) => &self.full[..self.head_len],
            (Persistence::Close, Method::Other) => &self.closing,
            (Persistence::Close, Method::Head) => &self.closing[..self.closing_head_len],
        }
    }
}

/// What every connection of a server thread shares.
#[derive(Clone)]
struct Serving {
    responses: Rc<Responses>,
    tls: Option<Arc<rustls::ServerConfig>>,
    dog: Rc<Watchdog>,
    timeouts: Timeouts,
}

/// `--transport auto`: what a thread needs to take connections past the open-file limit into a
/// fixed-file table of its own.
struct Spill {
    ring: Rc<Ring>,
    pool: Rc<Pool>,
    started: std::cell::Cell<bool>,
}

impl Spill {
    /// The ring, made at the thread's start; None when the kernel has no direct descriptors.
    fn new(size: RingSize, single_issuer: bool) -> Option<Spill> {
        direct::available().ok()?;
        let ring = Ring::new(size, single_issuer).ok()?;
        tokio_uring::spawn(ring.clone().drive());
        Some(Spill {
            ring,
            pool: Rc::new(Pool::new(READ_BUF)),
            started: std::cell::Cell::new(false),
        })
    }

    /// Accepts from `listener` into the ring too, beside the descriptor accepts (the kernel gives
    /// each connection to one of them). One listener per ring: false once it has one.
    fn start(&self, listener: RawFd, serving: &Serving) -> bool {
        if self.started.replace(true) {
            return false;
        }
        self.ring.listen_one_at_a_time(listener);
        tokio_uring::spawn(accept_direct(
            self.ring.clone(),
            serving.clone(),
            self.pool.clone(),
        ));
        static SAID: AtomicBool = AtomicBool::new(false);
        if !SAID.swap(true, Ordering::Relaxed) {
            let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft);
            eprintln!(
                "ringfetch: serve reached its open-file limit ({limit}); connections past it are accepted as \
                 io_uring direct descriptors, which need none (--transport tcp would leave them in the backlog)"
            );
        }
        true
    }
}

async fn accept_loop(listener: TcpListener, serving: Serving, spill: Option<Rc<Spill>>) {
    let mut spilled = false;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio_uring::spawn(serve_connection(stream, serving.clone()));
            }
            // EMFILE and friends: keep serving the connections we have; past the limit take new ones
            // as direct descriptors (auto), or leave them in the backlog until some close (the
            // timeouts see to it that they do).
            Err(e) => {
                let full = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                if full && !spilled {
                    if let Some(spill) = &spill {
                        spilled = spill.start(listener.as_raw_fd(), &serving);
                    }
                }
                if !spilled {
                    say_full_once(&e, false);
                }
                tokio::time::sleep(Duration::from_millis(10)).await
            }
        }
    }
}

/// What a connection does after `answer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Every complete request is answered: write the answers, then read.
    Read,
    /// The answers reached `OUT_BOUND`: write them, then answer the requests still held, before
    /// reading any more.
    Flush,
    /// Write the answers, then close (a request asked to, or was refused).
    Close,
}

/// Answers the complete requests at the front of `buf`, the connection's unconsumed bytes, into
/// `out`, until `out` holds `OUT_BOUND` bytes. Returns the bytes consumed (the decoder's state
/// matches: it is simply not called again) and what to do next.
fn answer(
    buf: &[u8],
    requests: &mut RequestDecoder,
    out: &mut Vec<u8>,
    responses: &Responses,
) -> (usize, Next) {
    let mut pos = 0;
    loop {
        if out.len() >= OUT_BOUND {
            return (pos, Next::Flush);
        }
        let (used, step) = requests.decode(&buf[pos..]);
        pos += used;
        match step {
            Step::NeedMore => return (pos, Next::Read),
            Step::Request(request) => {
                out.extend_from_slice(responses.pick(request.method, request.persistence));
                if request.persistence == Persistence::Close {
                    return (pos, Next::Close);
                }
            }
            Step::Refused(refusal) => {
                out.extend_from_slice(
                    format!(
                        "HTTP/1.1 {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        refusal.status_line()
                    )
                    .as_bytes(),
                );
                return (pos, Next::Close);
            }
            Step::Closed => return (pos, Next::Close),
        }
    }
}

/// `--transport direct`: each of this thread's listening sockets accepts into a ring of its own, so a
/// thread holds (ports × ~20,000) connections whatever the open-file limit, and a million needs only
/// enough ports, not a thread per 20,000 (fewer threads: more completions handled per wake-up). Each
/// connection is a small task that owns no buffer while idle (requests are parsed in the ring's
/// buffers, in place).
async fn direct_loop(
    listeners: Vec<StdListener>,
    size: RingSize,
    single_issuer: bool,
    serving: Serving,
) -> io::Result<()> {
    let pool = Rc::new(Pool::new(READ_BUF));
    let mut loops = Vec::with_capacity(listeners.len());
    for l in &listeners {
        l.set_nonblocking(true)?;
        let ring = Ring::new(size, single_issuer)?;
        tokio_uring::spawn(ring.clone().drive());
        ring.listen(std::os::fd::AsRawFd::as_raw_fd(l));
        loops.push(tokio_uring::spawn(accept_direct(
            ring,
            serving.clone(),
            pool.clone(),
        )));
    }
    for l in loops {
        let _ = l.await;
    }
    // The listening sockets live as long as their accept loops.
    drop(listeners);
    Ok(())
}

async fn accept_direct(ring: Rc<Ring>, serving: Serving, pool: Rc<Pool>) {
    loop {
        match ring.accept().await {
            Ok(conn) => {
                match &serving.tls {
                    None => tokio_uring::spawn(serve_direct(conn, serving.clone(), pool.clone())),
                    Some(config) => {
                        tokio_uring::spawn(serve_direct_tls(conn, serving.clone(), config.clone()))
                    }
                };
            }
            // ENFILE (the table is full) and friends: keep serving; accepts resume as slots free.
            Err(e) => {
                say_full_once(&e, true);
                tokio::time::sleep(Duration::from_millis(10)).await
            }
        }
    }
}

async fn serve_direct(conn: direct::Conn, serving: Serving, pool: Rc<Pool>) {
    let Serving {
        responses,
        dog,
        timeouts,
        ..
    } = serving;
    let mut clock = Clock::start(&dog, Kill::Direct(conn.handle()), timeouts);
    // A request split across two receives, or requests a bounded batch of answers left for later:
    // the only bytes a connection keeps between receives.
    let mut partial: Vec<u8> = Vec::new();
    let mut requests = RequestDecoder::default();
    loop {
        let mut out = pool.take();
        let mut next = Next::Read;
        let got = conn
            .recv_with(|chunk| {
                if partial.is_empty() {
                    let (used, n) = answer(chunk, &mut requests, &mut out, &responses);
                    partial.extend_from_slice(&chunk[used..]);
                    next = n;
                } else {
                    partial.extend_from_slice(chunk);
                    let (used, n) = answer(&partial, &mut requests, &mut out, &responses);
                    partial.drain(..used);
                    next = n;
                }
            })
            .await;
        if clock.expired() || !matches!(got, Ok(true)) {
            return;
        }
        loop {
            if !send(&mut out, &responses, &mut clock, |b| conn.write_all(b)).await {
                return;
            }
            match next {
                Next::Read => break,
                Next::Close => {
                    conn.shutdown_write();
                    return;
                }
                Next::Flush => {
                    let (used, n) = answer(&partial, &mut requests, &mut out, &responses);
                    partial.drain(..used);
                    next = n;
                }
            }
        }
        pool.give(out);
        if partial.is_empty() && partial.capacity() > 0 {
            partial = Vec::new();
        }
        clock.enter(if partial.is_empty() {
            Stage::Idle
        } else {
            Stage::Head
        });
    }
}

async fn serve_connection(stream: TcpStream, serving: Serving) {
    let Ok(conn) = tcp::Conn::from_stream(stream) else {
        return;
    };
    let socket = net::Socket::Tcp(conn);
    // Dropped with the connection, with no await between its close and the drop, so the watchdog
    // (a task on this thread) never shuts down a descriptor number this connection no longer owns.
    let mut clock = Clock::start(&serving.dog, socket.kill(), serving.timeouts);
    let stream = match &serving.tls {
        None => Transport::Plain(socket),
        Some(config) => match tls::ServerStream::accept(socket, config).await {
            Ok(s) => Transport::TlsServer(Box::new(s)),
            Err(_) => return,
        },
    };
    answer_stream(stream, &serving.responses, &mut clock).await
}

/// https over a direct descriptor: the TLS stream keeps its own buffers, so this takes the same loop
/// as tcp rather than `serve_direct`'s in-place parsing.
async fn serve_direct_tls(conn: direct::Conn, serving: Serving, config: Arc<rustls::ServerConfig>) {
    let mut clock = Clock::start(&serving.dog, Kill::Direct(conn.handle()), serving.timeouts);
    if let Ok(s) = tls::ServerStream::accept(net::Socket::Direct(conn), &config).await {
        answer_stream(
            Transport::TlsServer(Box::new(s)),
            &serving.responses,
            &mut clock,
        )
        .await
    }
}

/// Sends the answers in `out` (after `--delay`) with `write`, and empties `out` for the next batch.
/// False when the connection is done: the write failed or the connection's time ran out.
async fn send<W, F>(
    out: &mut Vec<u8>,
    responses: &Responses,
    clock: &mut Clock<'_>,
    write: W,
) -> bool
where
    W: FnOnce(Vec<u8>) -> F,
    F: std::future::Future<Output = (std::io::Result<()>, Vec<u8>)>,
{
    if out.is_empty() {
        return true;
    }
    if !responses.delay.is_zero() {
        clock.enter(Stage::Delay);
        tokio::time::sleep(responses.delay).await;
    }
    clock.enter(Stage::Write);
    let (res, sent) = write(std::mem::take(out)).await;
    *out = sent;
    out.clear();
    res.is_ok() && !clock.expired()
}

async fn answer_stream(stream: Transport, responses: &Responses, clock: &mut Clock<'_>) {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF);
    let mut out: Vec<u8> = Vec::with_capacity(READ_BUF);
    // Carries what a read left half done (a partial head, a body still to skip) to the next read.
    let mut requests = RequestDecoder::default();
    loop {
        // Reads append after any partial request already held.
        let (res, b) = stream.receive(|| buf).await;
        buf = b;
        if clock.expired() {
            return;
        }
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            let (pos, next) = answer(&buf, &mut requests, &mut out, responses);
            buf.drain(..pos);
            if !send(&mut out, responses, clock, |b| stream.flush(b)).await {
                return;
            }
            match next {
                Next::Read => break,
                Next::Flush => continue,
                Next::Close => {
                    // Dropping the stream sends close_notify over TLS; the shutdown ends the TCP
                    // stream.
                    stream.shutdown_write();
                    return;
                }
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(READ_BUF);
        }
        clock.enter(if buf.is_empty() {
            Stage::Idle
        } else {
            Stage::Head
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_bytes() {
        let r = Responses::new(20);
        let text = String::from_utf8(r.full.clone()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 20\r\n"));
        assert!(text.ends_with("\r\n\r\n0123456789abcdef0123"));
        assert_eq!(&r.full[r.head_len - 4..r.head_len], b"\r\n\r\n");
    }

    #[test]
    fn answers_a_batch_in_order_and_stops_at_a_refusal() {
        let r = Responses::new(3);
        let mut requests = RequestDecoder::default();
        let mut out = Vec::new();
        let batch = b"GET / HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nContent-Length: +1\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let (used, next) = answer(batch, &mut requests, &mut out, &r);
        assert_eq!(
            (used, next),
            (37, Next::Close),
            "the refused head is not consumed"
        );
        let expected = [
            &r.full[..],
            &r.full[..r.head_len],
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ]
        .concat();
        assert_eq!(out, expected);
    }
}
