//! The built-in benchmark target: answers every request with 200 and a fixed body, on the same
//! tokio-uring engine as the client. Each server thread has its own listening socket on the same port
//! (SO_REUSEPORT, so the kernel spreads connections) and its own ring. Pipelining aware: every request
//! found in one read is answered in one write.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;

use std::sync::Arc;

use socket2::{Domain, Socket, Type};
use tokio_uring::net::{TcpListener, TcpStream};

use crate::http::server::{Method, Persistence, RequestDecoder, Step};
use crate::net::buffers::Pool;
use crate::net::direct::{self, Ring, RingSize};
use crate::net::{self, tcp, tls, Transport};
use crate::runtime::{spawn_workers, RingSetup};

const READ_BUF: usize = 16 * 1024;

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
    } = options;
    if direct {
        direct::require()?;
    }
    let slots = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024)
        .clamp(64, 1 << 20) as u32;
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
                    responses,
                    tls,
                )
                .await
                {
                    eprintln!("ringfetch: a server thread could not start its direct-descriptor ring: {e}");
                }
                return;
            }
            let loops: Vec<_> = mine
                .into_iter()
                .flatten()
                .map(|l| {
                    tokio_uring::spawn(accept_loop(
                        TcpListener::from_std(l),
                        responses.clone(),
                        tls.clone(),
                    ))
                })
                .collect();
            for l in loops {
                let _ = l.await;
            }
        }
    })?;
    let threads = threads
        .into_iter()
        .map(|h| {
            std::thread::spawn(move || {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("server thread panicked")))
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

async fn accept_loop(
    listener: TcpListener,
    responses: Rc<Responses>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio_uring::spawn(serve_connection(stream, responses.clone(), tls.clone()));
            }
            // EMFILE and friends: keep serving the connections we have; new ones wait in the backlog.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

/// Answers every complete request at the front of `buf`, the connection's unconsumed bytes, into
/// `out`. Returns the bytes consumed and whether the connection must close after the answers (a
/// request asked to, or was refused).
fn answer(
    buf: &[u8],
    requests: &mut RequestDecoder,
    out: &mut Vec<u8>,
    responses: &Responses,
) -> (usize, bool) {
    let mut pos = 0;
    loop {
        let (used, step) = requests.decode(&buf[pos..]);
        pos += used;
        match step {
            Step::NeedMore => return (pos, false),
            Step::Request(request) => {
                out.extend_from_slice(responses.pick(request.method, request.persistence));
                if request.persistence == Persistence::Close {
                    return (pos, true);
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
                return (pos, true);
            }
            Step::Closed => return (pos, true),
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
    responses: Rc<Responses>,
    tls: Option<Arc<rustls::ServerConfig>>,
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
            responses.clone(),
            pool.clone(),
            tls.clone(),
        )));
    }
    for l in loops {
        let _ = l.await;
    }
    // The listening sockets live as long as their accept loops.
    drop(listeners);
    Ok(())
}

async fn accept_direct(
    ring: Rc<Ring>,
    responses: Rc<Responses>,
    pool: Rc<Pool>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    loop {
        match ring.accept().await {
            Ok(conn) => {
                match &tls {
                    None => tokio_uring::spawn(serve_direct(conn, responses.clone(), pool.clone())),
                    Some(config) => tokio_uring::spawn(serve_direct_tls(
                        conn,
                        responses.clone(),
                        config.clone(),
                    )),
                };
            }
            // ENFILE (the table is full) and friends: keep serving; accepts resume as slots free.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

async fn serve_direct(conn: direct::Conn, responses: Rc<Responses>, pool: Rc<Pool>) {
    // A request split across two receives, the only bytes a connection keeps between them.
    let mut partial: Vec<u8> = Vec::new();
    let mut requests = RequestDecoder::default();
    loop {
        let mut out = pool.take();
        let mut close = false;
        let got = conn
            .recv_with(|chunk| {
                if partial.is_empty() {
                    let (used, c) = answer(chunk, &mut requests, &mut out, &responses);
                    partial.extend_from_slice(&chunk[used..]);
                    close = c;
                } else {
                    partial.extend_from_slice(chunk);
                    let (used, c) = answer(&partial, &mut requests, &mut out, &responses);
                    partial.drain(..used);
                    close = c;
                }
            })
            .await;
        if partial.is_empty() && partial.capacity() > 0 {
            partial = Vec::new();
        }
        if !matches!(got, Ok(true)) {
            return;
        }
        if !out.is_empty() {
            if !responses.delay.is_zero() {
                tokio::time::sleep(responses.delay).await;
            }
            let (res, o) = conn.write_all(out).await;
            out = o;
            if res.is_err() {
                return;
            }
        }
        pool.give(out);
        if close {
            conn.shutdown_write();
            return;
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    responses: Rc<Responses>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let Ok(conn) = tcp::Conn::from_stream(stream) else {
        return;
    };
    let stream = match tls {
        None => Transport::Plain(net::Socket::Tcp(conn)),
        Some(config) => match tls::ServerStream::accept(net::Socket::Tcp(conn), &config).await {
            Ok(s) => Transport::TlsServer(Box::new(s)),
            Err(_) => return,
        },
    };
    answer_stream(stream, responses).await
}

/// https over a direct descriptor: the TLS stream keeps its own buffers, so this takes the same loop
/// as tcp rather than `serve_direct`'s in-place parsing.
async fn serve_direct_tls(
    conn: direct::Conn,
    responses: Rc<Responses>,
    config: Arc<rustls::ServerConfig>,
) {
    if let Ok(s) = tls::ServerStream::accept(net::Socket::Direct(conn), &config).await {
        answer_stream(Transport::TlsServer(Box::new(s)), responses).await
    }
}

async fn answer_stream(stream: Transport, responses: Rc<Responses>) {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF);
    let mut out: Vec<u8> = Vec::with_capacity(READ_BUF);
    // Carries what a read left half done (a partial head, a body still to skip) to the next read.
    let mut requests = RequestDecoder::default();
    loop {
        // Reads append after any partial request already held.
        let (res, b) = stream.receive(|| buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (pos, close) = answer(&buf, &mut requests, &mut out, &responses);
        buf.drain(..pos);
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(READ_BUF);
        }
        if !out.is_empty() {
            if !responses.delay.is_zero() {
                tokio::time::sleep(responses.delay).await;
            }
            let (res, o) = stream.flush(out).await;
            out = o;
            out.clear();
            if res.is_err() {
                return;
            }
        }
        if close {
            // Dropping the stream sends close_notify over TLS; the shutdown ends the TCP stream.
            stream.shutdown_write();
            return;
        }
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
        let (used, close) = answer(batch, &mut requests, &mut out, &r);
        assert_eq!(
            (used, close),
            (37, true),
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
