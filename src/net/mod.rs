//! Transports: the one seam between the HTTP engine and the bytes. `engine::conn` only calls
//! `receive`, `send_now`, `flush` and friends and drops the transport; plain and TLS (client and, for
//! `serve`, server) are the variants, each on a `Socket` that is a descriptor or a direct descriptor
//! (`direct`), without the HTTP code knowing which. Static dispatch through an enum keeps the hot
//! path free of virtual calls (wrk's `net.h` table, as an enum); TLS is boxed so a plain connection
//! stays small.

pub mod buffers;
pub mod direct;
pub mod dns;
pub mod proxy;
pub mod tcp;
pub mod tls;

pub use dns::Host;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ErrorKind, FetchError};

pub enum Transport {
    /// Plain HTTP on a socket of either kind.
    Plain(Socket),
    Tls(Box<tls::ClientStream>),
    TlsServer(Box<tls::ServerStream>),
}

/// Dispatches to the variant's own method.
macro_rules! each {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            Transport::Plain($c) => $e,
            Transport::Tls($c) => $e,
            Transport::TlsServer($c) => $e,
        }
    };
}

/// A connected socket: a descriptor (tokio-uring), or a socket in the worker's io_uring fixed-file
/// table (no descriptor; see `direct`). Plain HTTP and TLS both sit on one.
pub enum Socket {
    Tcp(tcp::Conn),
    Direct(direct::Conn),
}

impl Socket {
    pub async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Socket::Tcp(c) => c.read(buf).await,
            Socket::Direct(c) => c.read(buf).await,
        }
    }

    /// What the socket takes now without waiting: a nonblocking send(2) on a descriptor; on a fixed
    /// slot, one send queued in the ring if none is in flight (see `direct::Conn::send_now`).
    pub fn send_now(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(c) => c.send_now(buf),
            Socket::Direct(c) => c.send_now(buf),
        }
    }

    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match self {
            Socket::Tcp(c) => c.write_all(buf).await,
            Socket::Direct(c) => c.write_all(buf).await,
        }
    }

    /// Sends `bytes` as the last thing before the connection is dropped, if the socket takes them
    /// without waiting (TLS close_notify: a courtesy).
    pub fn send_last(&self, bytes: &[u8]) {
        match self {
            Socket::Tcp(c) => {
                let _ = c.send_now(bytes);
            }
            Socket::Direct(c) => c.send_last(bytes),
        }
    }

    pub fn set_recv_lowat(&self, bytes: usize) {
        match self {
            Socket::Tcp(c) => crate::sys::set_recv_lowat(c.raw_fd(), bytes),
            Socket::Direct(c) => c.set_recv_lowat(bytes),
        }
    }

    pub fn shutdown_write(&self) {
        match self {
            Socket::Tcp(c) => crate::sys::shutdown_write(c.raw_fd()),
            Socket::Direct(c) => c.shutdown_write(),
        }
    }

    pub fn abort_on_close(&self) {
        match self {
            Socket::Tcp(c) => crate::sys::set_linger_abort(c.raw_fd()),
            Socket::Direct(c) => c.abort_on_close(),
        }
    }

    pub fn kill(&self) -> Kill {
        match self {
            Socket::Tcp(c) => Kill::Fd(c.raw_fd()),
            Socket::Direct(c) => Kill::Direct(c.handle()),
        }
    }
}

/// How the watchdog makes a connection's pending operations complete: `shutdown(2)` on a descriptor,
/// a SHUTDOWN operation on a fixed slot.
pub enum Kill {
    Fd(RawFd),
    Direct(direct::Handle),
}

impl Kill {
    pub fn fire(&self) {
        match self {
            Kill::Fd(fd) => crate::sys::shutdown(*fd),
            Kill::Direct(h) => h.interrupt(),
        }
    }

    /// Whether the peer has neither closed nor reset the connection, nor sent anything that waits
    /// unread (what a server may do at its idle timeout): `bench --hold`'s look at its end.
    pub fn quietly_open(&self) -> bool {
        match self {
            Kill::Fd(fd) => crate::sys::quietly_open(*fd),
            Kill::Direct(h) => h.quietly_open(),
        }
    }
}

/// How a worker opens connections: tokio-uring sockets (descriptors), or sockets in its direct ring,
/// bound to a source address from `sources` when several are given (`--source-addrs`).
#[derive(Clone, Default)]
pub enum Dialer {
    #[default]
    Tcp,
    Direct {
        ring: std::rc::Rc<direct::Ring>,
        sources: std::sync::Arc<[std::net::IpAddr]>,
        next: std::rc::Rc<std::cell::Cell<usize>>,
    },
    /// The run uses direct descriptors but this worker's ring could not start: every connect fails
    /// with this reason (a descriptor instead could run into the open-file limit).
    Unavailable(std::rc::Rc<str>),
}

/// What `Transport::send_now` did with the bytes it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Bytes taken; the caller keeps the rest and hands them to `flush`.
    pub taken: usize,
    /// Bytes wait to go out through `flush`: the caller's rest, or ciphertext the transport holds.
    pub flush: bool,
}

/// The seam. Receive, send now, flush, interrupt (`kill`), close (`shutdown_write` or drop), and two
/// questions asked once per connection (`tls_resumed` after connecting, `can_hold` for `--hold`).
/// `set_recv_lowat` and `closed_cleanly` refine receive. Nothing above this matches on a variant.
impl Transport {
    /// Receives into the spare capacity of the buffer `take` gives (from `len()` to `capacity()`), as
    /// io_uring owns the buffer while the receive is under way. Ok(0) is the end of the stream (see
    /// `closed_cleanly`). A direct socket's bytes land in its ring's buffer pool first, so it waits for
    /// them before it takes the buffer: idle connections hold none, and the few in use stay in cache.
    pub async fn receive(&self, take: impl FnOnce() -> Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        self.wait_received().await;
        each!(self, c => c.read(take()).await)
    }

    /// A plain direct socket keeps what it receives in its ring's buffers, where it can be parsed in
    /// place (`wait_received`, then `each_received`) instead of copied out by `receive`.
    pub fn in_place(&self) -> bool {
        matches!(self, Transport::Plain(Socket::Direct(_)))
    }

    /// Waits until received bytes, the end of the stream or an error are there, on a plain direct
    /// socket (`in_place`, and before `receive` takes a buffer); at once on the others.
    pub async fn wait_received(&self) {
        if let Transport::Plain(Socket::Direct(c)) = self {
            c.readable().await;
        }
    }

    /// Hands each received chunk to `f` in place (see `direct::Conn::each_received`); Ok(false) is
    /// the end of the stream, as `receive`'s Ok(0). Never called unless `in_place`.
    pub fn each_received(&self, f: impl FnMut(&[u8]) -> bool) -> io::Result<bool> {
        match self {
            Transport::Plain(Socket::Direct(c)) => c.each_received(f),
            _ => Err(io::Error::other("this transport cannot be read in place")),
        }
    }

    /// Sends what the socket takes right now, without waiting; the caller writes the rest with
    /// `flush`. A batch of requests almost always fits the socket's send buffer, and a send that
    /// nobody waits for costs no task wake-up: one send(2) on a descriptor, one SQE (whose completion
    /// only reports failure) on a direct socket. TLS takes all of `buf` (it is encrypted at once) and
    /// may keep ciphertext for `flush`.
    pub fn send_now(&self, buf: &[u8]) -> io::Result<Sent> {
        let taken = each!(self, c => c.send_now(buf))?;
        let held = match self {
            Transport::Plain(_) => false,
            Transport::Tls(c) => c.unsent(),
            Transport::TlsServer(c) => c.unsent(),
        };
        Ok(Sent {
            taken,
            flush: held || taken < buf.len(),
        })
    }

    /// Writes all of `buf`, after whatever the transport still holds, waiting as long as it takes.
    pub async fn flush(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        each!(self, c => c.write_all(buf).await)
    }

    /// The end of the stream that `receive` reported (Ok(0)) is known to be the peer's: always for
    /// TCP, only after close_notify for TLS (RFC 9112 §9.8: a close-delimited body is otherwise
    /// possibly truncated).
    pub fn closed_cleanly(&self) -> bool {
        match self {
            Transport::Plain(_) => true,
            Transport::Tls(c) => c.closed_cleanly(),
            Transport::TlsServer(c) => c.closed_cleanly(),
        }
    }

    /// How the TLS session started: None for plain TCP, else Some(resumed).
    pub fn tls_resumed(&self) -> Option<bool> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(c) => Some(c.handshake_kind() == Some(rustls::HandshakeKind::Resumed)),
            Transport::TlsServer(c) => {
                Some(c.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
            }
        }
    }

    /// Sets the socket's receive low-water mark (see `engine::conn::ReadBatching`).
    pub fn set_recv_lowat(&self, bytes: usize) {
        self.socket().set_recv_lowat(bytes)
    }

    /// Ends our side in good order: close_notify over TLS, then FIN.
    pub fn shutdown_write(&self) {
        match self {
            Transport::Plain(_) => {}
            Transport::Tls(c) => c.close_notify(),
            Transport::TlsServer(c) => c.close_notify(),
        }
        self.socket().shutdown_write()
    }

    /// When this connection is dropped, reset it (RST) instead of closing it in good order: no
    /// TIME_WAIT socket then holds its local port for a minute. For an idle connection closed only
    /// to make room for another origin: a list of many host names behind one address would otherwise
    /// fill the ephemeral port range toward that address with TIME_WAIT, and connects would fail
    /// with EADDRNOTAVAIL. Nothing is lost: nothing is in flight on it.
    pub fn abort_on_close(&self) {
        self.socket().abort_on_close()
    }

    /// What the watchdog does to end this connection's pending operations.
    pub fn kill(&self) -> Kill {
        self.socket().kill()
    }

    /// The connection can be held open by its worker's ring alone, with no task and no buffer
    /// (`bench --hold`): a plain direct socket.
    pub fn can_hold(&self) -> bool {
        matches!(self, Transport::Plain(Socket::Direct(_)))
    }

    /// Hands the connection to its ring to hold until the ring finishes (see `can_hold`); any other
    /// transport is closed in good order by dropping it.
    pub fn hold(self) {
        if let Transport::Plain(Socket::Direct(c)) = self {
            c.hold()
        }
    }

    /// The socket under the HTTP (or TLS) bytes.
    fn socket(&self) -> &Socket {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(c) => c.socket(),
            Transport::TlsServer(c) => c.socket(),
        }
    }
}

/// Connects to the first address that answers, trying each in turn, each within `timeout`; with
/// `tls` (the configuration and the name to verify), runs the handshake on the connection that answered.
pub async fn connect(
    dialer: &Dialer,
    addrs: &[SocketAddr],
    timeout: Duration,
    tls: Option<(&Arc<rustls::ClientConfig>, &str)>,
) -> Result<Transport, FetchError> {
    connect_timed(dialer, addrs, timeout, tls)
        .await
        .map(|(transport, _)| transport)
}

/// As `connect`, also saying how long the TCP connect took (the rest, when there is any, was the TLS
/// handshake): `fetch --meta`'s `connect_ms` and `tls_ms`.
pub async fn connect_timed(
    dialer: &Dialer,
    addrs: &[SocketAddr],
    timeout: Duration,
    tls: Option<(&Arc<rustls::ClientConfig>, &str)>,
) -> Result<(Transport, Duration), FetchError> {
    connect_via(dialer, addrs, None, timeout, tls).await
}

/// As `connect_timed`, with `addrs` a proxy's when `tunnel` is given: the proxy's handshake runs on
/// the connection that answered, within `timeout`, before TLS with the target (whose name TLS
/// verifies, not the proxy's). The duration returned covers the connect and the handshake.
pub async fn connect_via(
    dialer: &Dialer,
    addrs: &[SocketAddr],
    tunnel: Option<proxy::Handshake>,
    timeout: Duration,
    tls: Option<(&Arc<rustls::ClientConfig>, &str)>,
) -> Result<(Transport, Duration), FetchError> {
    let started = std::time::Instant::now();
    if let Dialer::Unavailable(why) = dialer {
        return Err(FetchError::new(
            ErrorKind::Connect,
            format!("this worker's io_uring for direct descriptors could not start ({why}); retry, or use --transport tcp"),
        ));
    }
    let socket = race(dialer, addrs, timeout).await?;
    if let Some(tunnel) = tunnel {
        let proxy: Box<str> = tunnel.proxy().into();
        match tokio::time::timeout(timeout, open_tunnel(&socket, tunnel)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(FetchError::new(
                    ErrorKind::Timeout,
                    format!(
                    "proxy {proxy} did not finish its handshake within {:.1}s (--connect-timeout)",
                    timeout.as_secs_f64()
                ),
                ))
            }
        }
    }
    let tcp = started.elapsed();
    match tls {
        None => Ok((Transport::Plain(socket), tcp)),
        Some((config, host)) => tls::ClientStream::connect(socket, config, host, timeout)
            .await
            .map(|s| (Transport::Tls(Box::new(s)), tcp)),
    }
}

/// Runs a proxy handshake on `socket` to its end. Its answers are short and the target does not
/// speak first, so every read belongs to the proxy.
async fn open_tunnel(socket: &Socket, mut tunnel: proxy::Handshake) -> Result<(), FetchError> {
    let mut out = tunnel.start();
    let mut buf = Vec::with_capacity(1024);
    loop {
        if !out.is_empty() {
            let (res, _) = socket.write_all(out).await;
            res.map_err(|e| FetchError::connect(&format!("proxy {}", tunnel.proxy()), &e))?;
        }
        let step = loop {
            buf.clear();
            let (res, b) = socket.read(buf).await;
            buf = b;
            match res {
                Ok(0) => return Err(tunnel.closed()),
                Ok(_) => match tunnel.receive(&buf) {
                    proxy::Step::Need => continue,
                    step => break step,
                },
                Err(e) => {
                    return Err(FetchError::connect(
                        &format!("proxy {}", tunnel.proxy()),
                        &e,
                    ))
                }
            }
        };
        match step {
            proxy::Step::Send(bytes) => out = bytes,
            proxy::Step::Done => return Ok(()),
            proxy::Step::Refused(e) => return Err(e),
            proxy::Step::Need => out = Vec::new(),
        }
    }
}

/// RFC 8305 §5 (Happy Eyeballs): the next address is tried this long after the last attempt
/// started when none has connected yet; a failed attempt starts the next at once.
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Connects to the first of `addrs` that answers: attempts start one after another, families
/// alternating (RFC 8305 §4), each `ATTEMPT_DELAY` after the last while earlier ones still run, so
/// an address family that drops SYNs costs a quarter of a second, not `--connect-timeout`. The first
/// connection wins; the others are dropped (a tcp attempt's descriptor closes with it).
async fn race(
    dialer: &Dialer,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<Socket, FetchError> {
    type Attempt<'a> = Pin<Box<dyn Future<Output = (SocketAddr, io::Result<Socket>)> + 'a>>;
    let order = alternate_families(addrs);
    let mut running: Vec<Attempt<'_>> = Vec::new();
    let (mut next, mut last) = (0, None);
    let mut start_at = tokio::time::Instant::now();
    loop {
        if running.is_empty() {
            if next == order.len() {
                return Err(last.unwrap_or_else(|| {
                    FetchError::new(ErrorKind::Dns, "no address to connect to")
                }));
            }
            start_at = tokio::time::Instant::now();
        }
        tokio::select! {
            (i, (addr, res)) = first_ready(&mut running), if !running.is_empty() => {
                drop(running.swap_remove(i));
                match res {
                    Ok(socket) => return Ok(socket),
                    Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                        last = Some(connect_timeout(addr, timeout))
                    }
                    Err(err) => last = Some(FetchError::connect(&addr.to_string(), &err)),
                }
                start_at = tokio::time::Instant::now();
            }
            _ = tokio::time::sleep_until(start_at), if next < order.len() => {
                let addr = order[next];
                next += 1;
                running.push(Box::pin(async move { (addr, open_socket(dialer, addr, timeout).await) }));
                start_at = tokio::time::Instant::now() + ATTEMPT_DELAY;
            }
        }
    }
}

/// The first of `attempts` to finish, with its place.
async fn first_ready<T>(attempts: &mut [Pin<Box<dyn Future<Output = T> + '_>>]) -> (usize, T) {
    std::future::poll_fn(|cx| {
        for (i, attempt) in attempts.iter_mut().enumerate() {
            if let std::task::Poll::Ready(out) = attempt.as_mut().poll(cx) {
                return std::task::Poll::Ready((i, out));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// `addrs` with the families alternating, the first address's family first, each family in its
/// given order (RFC 8305 §4).
fn alternate_families(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let (mut same, mut other): (Vec<_>, Vec<_>) =
        addrs.iter().partition(|a| a.is_ipv4() == first.is_ipv4());
    let mut order = Vec::with_capacity(addrs.len());
    let (mut a, mut b) = (same.drain(..), other.drain(..));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return order,
            (x, y) => order.extend(x.into_iter().chain(y).copied()),
        }
    }
}

/// A connected socket to `addr`, the dialer's kind, within `timeout` (past it, an error of kind
/// TimedOut; a tcp connect gives its descriptor back first): direct connections take their source
/// addresses in turn, each toward a destination of its own family.
async fn open_socket(dialer: &Dialer, addr: SocketAddr, timeout: Duration) -> io::Result<Socket> {
    match dialer {
        Dialer::Direct {
            ring,
            sources,
            next,
        } => {
            let src = (!sources.is_empty()).then(|| {
                let k = next.get();
                next.set(k.wrapping_add(1));
                sources[k % sources.len()]
            });
            let src = src.filter(|s| s.is_ipv4() == addr.is_ipv4());
            match tokio::time::timeout(timeout, ring.connect(addr, src)).await {
                Ok(connected) => connected.map(Socket::Direct),
                Err(_) => Err(io::ErrorKind::TimedOut.into()),
            }
        }
        _ => tcp::Conn::connect(addr, timeout).await.map(Socket::Tcp),
    }
}

fn connect_timeout(addr: SocketAddr, timeout: Duration) -> FetchError {
    FetchError::new(
        ErrorKind::Timeout,
        format!(
            "no connection to {addr} within {:.1}s (--connect-timeout); is the host up and reachable?",
            timeout.as_secs_f64()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_alternate_from_the_first() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let given = [
            a("[::1]:80"),
            a("[::2]:80"),
            a("[::3]:80"),
            a("127.0.0.1:80"),
            a("127.0.0.2:80"),
        ];
        let order: Vec<String> = alternate_families(&given)
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            order,
            [
                "[::1]:80",
                "127.0.0.1:80",
                "[::2]:80",
                "127.0.0.2:80",
                "[::3]:80"
            ]
        );
        assert_eq!(alternate_families(&given[3..]), given[3..].to_vec());
        assert!(alternate_families(&[]).is_empty());
    }
}
