//! Scripted hostile servers: `Hostile` accepts on 127.0.0.1:0 and runs a script per connection
//! (`Conn`: read `Request`s, send, trickle, close, reset, stall), or answers each request with a
//! `Reply`; `ok`/`response` build the bytes. Ends with self-checks of this harness.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a hostile connection thread waits for the client's next bytes before giving up.
/// Long enough for any test's `--timeout`, short enough that leaked threads die soon after.
const SERVER_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Hostile servers stop accepting after this long even if their guard was leaked.
const SERVER_LIFETIME: Duration = Duration::from_secs(120);

/// One request head a hostile server received.
#[derive(Clone, Debug)]
pub struct Request {
    /// 0-based number of the connection it came on, in accept order.
    pub conn: usize,
    pub method: String,
    pub path: String,
    /// The whole head, request line to the blank line, as text.
    pub head: String,
}

impl Request {
    /// The value of header `name` (case-insensitive), first occurrence.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// What a hostile server saw, shared by its connection threads.
#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    requests: Mutex<Vec<Request>>,
}

/// The simple script: what to do with each request.
pub enum Reply {
    /// Write these bytes and keep the connection for the next request.
    Send(Vec<u8>),
    /// Write these bytes one byte per write with this pause after each, then keep the connection.
    Trickle(Vec<u8>, Duration),
    /// Write these bytes, then close cleanly (FIN).
    SendThenClose(Vec<u8>),
    /// Write these bytes, let them arrive, then reset the connection (RST via SO_LINGER 0).
    SendThenReset(Vec<u8>),
    /// Close cleanly without a byte of response.
    Close,
    /// Never answer; hold the connection until the client gives up.
    Stall,
}

type Script = dyn Fn(&mut Conn) -> io::Result<()> + Send + Sync;

/// A scripted server on 127.0.0.1:0. Each accepted connection runs the script on its own thread.
/// Dropping the guard stops accepting; connection threads end when the client closes or after
/// `SERVER_READ_TIMEOUT` of silence.
pub struct Hostile {
    pub addr: SocketAddr,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Hostile {
    /// A server running `script` for every connection.
    pub fn start(script: impl Fn(&mut Conn) -> io::Result<()> + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let acceptor = {
            let (stats, stop) = (stats.clone(), stop.clone());
            thread::spawn(move || accept_loop(listener, script, stats, stop))
        };
        Hostile {
            addr,
            stats,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// A server answering each request as `reply` says (pipelined requests that arrive together
    /// are answered in one write).
    pub fn replies(reply: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        Hostile::start(move |conn| conn.serve(&reply))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// Every request head received so far (answered or not), in arrival order per connection.
    pub fn requests(&self) -> Vec<Request> {
        self.stats.requests.lock().expect("stats lock").clone()
    }

    /// Waits briefly so connections still in the accept backlog get counted.
    pub fn settle(&self) {
        thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    script: Arc<Script>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) {
    // Polling accept, because a blocking accept could not notice `stop`.
    let deadline = Instant::now() + SERVER_LIFETIME;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => {
                let number = stats.connections.fetch_add(1, Ordering::SeqCst);
                let (script, stats, stop) = (script.clone(), stats.clone(), stop.clone());
                thread::spawn(move || {
                    let _ = stream.set_nonblocking(false);
                    // Small writes must leave as separate segments for the trickle tests.
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_read_timeout(Some(SERVER_READ_TIMEOUT));
                    let _ = stream.set_write_timeout(Some(SERVER_READ_TIMEOUT));
                    let mut conn = Conn {
                        stream: Some(stream),
                        buf: Vec::new(),
                        pos: 0,
                        number,
                        stats,
                        stop,
                    };
                    // Errors are the client going away; the test judges by what the client reports.
                    let _ = script(&mut conn);
                });
            }
            Err(_) => thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// One accepted connection, as seen by a script.
pub struct Conn {
    /// None once the script closed or reset it.
    stream: Option<TcpStream>,
    /// Bytes received and not yet consumed as requests start at `pos`.
    buf: Vec<u8>,
    pos: usize,
    /// 0-based, in accept order.
    pub number: usize,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
}

impl Conn {
    /// Runs the simple script until the client closes or a reply ends the connection.
    pub fn serve(&mut self, reply: &dyn Fn(&Request) -> Reply) -> io::Result<()> {
        loop {
            let batch = self.next_requests()?;
            if batch.is_empty() {
                return Ok(());
            }
            let mut out = Vec::new();
            for request in &batch {
                match reply(request) {
                    Reply::Send(bytes) => out.extend_from_slice(&bytes),
                    Reply::Trickle(bytes, pause) => {
                        self.send(&std::mem::take(&mut out))?;
                        self.trickle(&bytes, pause)?;
                    }
                    Reply::SendThenClose(bytes) => {
                        out.extend_from_slice(&bytes);
                        self.send(&out)?;
                        self.close();
                        return Ok(());
                    }
                    Reply::SendThenReset(bytes) => {
                        out.extend_from_slice(&bytes);
                        self.send(&out)?;
                        // Let the bytes reach the client before the RST overtakes them.
                        thread::sleep(Duration::from_millis(200));
                        self.reset();
                        return Ok(());
                    }
                    Reply::Close => {
                        self.send(&out)?;
                        self.close();
                        return Ok(());
                    }
                    Reply::Stall => {
                        self.send(&out)?;
                        self.stall();
                        return Ok(());
                    }
                }
            }
            self.send(&out)?;
        }
    }

    /// Blocks until at least one request head is complete, then returns all complete ones.
    /// Empty when the client closed first.
    pub fn next_requests(&mut self) -> io::Result<Vec<Request>> {
        loop {
            let found = self.take_requests();
            if !found.is_empty() {
                return Ok(found);
            }
            if self.fill()? == 0 {
                return Ok(Vec::new());
            }
        }
    }

    /// Blocks until `n` request heads arrived (so a pipelined batch can be answered at once).
    pub fn read_requests(&mut self, n: usize) -> io::Result<Vec<Request>> {
        let mut found = Vec::new();
        while found.len() < n {
            found.extend(self.take_requests());
            if found.len() >= n {
                break;
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("client closed after {} of {n} requests", found.len()),
                ));
            }
        }
        Ok(found)
    }

    /// Writes all of `bytes` in one write call where the kernel allows.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.stream()?.write_all(bytes)
    }

    /// Writes bytes nobody asked for, 64 KiB at a time, until the client stops taking them (the
    /// write timeout), closes, or `limit` passes: a peer that floods a connection its client does
    /// not read.
    pub fn flood(&mut self, limit: Duration) -> io::Result<()> {
        let chunk = vec![b'z'; 64 * 1024];
        let deadline = Instant::now() + limit;
        let stream = self.stream()?;
        stream.set_write_timeout(Some(Duration::from_secs(2)))?;
        while Instant::now() < deadline {
            stream.write_all(&chunk)?;
        }
        Ok(())
    }

    /// One byte per write, `pause` apart: every split point of the response gets exercised.
    pub fn trickle(&mut self, bytes: &[u8], pause: Duration) -> io::Result<()> {
        for b in bytes {
            self.stream()?.write_all(std::slice::from_ref(b))?;
            thread::sleep(pause);
        }
        Ok(())
    }

    /// Clean close: FIN first, then read (and record) until the client closes too, so unread
    /// bytes in our receive queue cannot turn the close into a RST.
    pub fn close(&mut self) {
        if let Some(stream) = &self.stream {
            let _ = stream.shutdown(Shutdown::Write);
        }
        self.hold(Duration::from_secs(5), false);
        self.stream = None;
    }

    /// Abortive close: SO_LINGER 0 makes close(2) send a RST instead of a FIN.
    pub fn reset(&mut self) {
        if let Some(stream) = self.stream.take() {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: the fd belongs to `stream`, which is alive for the call; the pointer and
            // length describe `linger`, a live local of exactly that type.
            let rc = unsafe {
                libc::setsockopt(
                    stream.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "setsockopt SO_LINGER");
            drop(stream);
        }
    }

    /// Never answers: reads (and records) until the client closes or the test ends.
    pub fn stall(&mut self) {
        self.hold(Duration::from_secs(30), true);
        self.stream = None;
    }

    /// Reads and records requests until EOF, an error, `limit`, or (if `until_stop`) the
    /// server guard being dropped.
    fn hold(&mut self, limit: Duration, until_stop: bool) {
        let deadline = Instant::now() + limit;
        let Some(stream) = &self.stream else { return };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
        while Instant::now() < deadline && !(until_stop && self.stop.load(Ordering::SeqCst)) {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => {
                    self.take_requests();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "already closed"))
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream()?.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Consumes every complete request (head plus Content-Length body) in the buffer and
    /// records it in the server's stats.
    fn take_requests(&mut self) -> Vec<Request> {
        let mut found = Vec::new();
        while let Some(end) = find(&self.buf[self.pos..], b"\r\n\r\n") {
            let head_end = self.pos + end + 4;
            let head = String::from_utf8_lossy(&self.buf[self.pos..head_end]).into_owned();
            let mut words = head.split_whitespace();
            let method = words.next().unwrap_or_default().to_string();
            let path = words.next().unwrap_or_default().to_string();
            let request = Request {
                conn: self.number,
                method,
                path,
                head,
            };
            let body_len: usize = request
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if self.buf.len() < head_end + body_len {
                break;
            }
            self.pos = head_end + body_len;
            self.stats
                .requests
                .lock()
                .expect("stats lock")
                .push(request.clone());
            found.push(request);
        }
        found
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `HTTP/1.1 200 OK` with a Content-Length body.
pub fn ok(body: &[u8]) -> Vec<u8> {
    response(
        "HTTP/1.1 200 OK",
        &[&format!("Content-Length: {}", body.len())],
        body,
    )
}

/// A response from a status line, header lines (exactly as given) and raw body bytes.
pub fn response(status_line: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{status_line}\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

// ---------------------------------------------------------------------------------------------
// Self-checks of the hostile server, with a plain std client, so a failing ringfetch test
// cannot be blamed on the harness.

#[test]
fn harness_reset_arrives_as_reset_after_the_bytes() {
    let server = Hostile::replies(|_| Reply::SendThenReset(b"partial".to_vec()));
    let mut client = TcpStream::connect(server.addr).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // Two pipelined requests in one write: both are counted, one is answered.
    client
        .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut got = [0u8; 7];
    client.read_exact(&mut got).expect("bytes before the reset");
    assert_eq!(&got, b"partial");
    let mut more = [0u8; 1];
    let err = client.read(&mut more).expect_err("a reset, not EOF");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/a", "/b"]);
    assert_eq!(server.connections(), 1);
}

#[test]
fn harness_close_is_a_clean_eof_and_trickle_delivers_everything() {
    let server = Hostile::replies(|r| {
        if r.conn == 0 {
            Reply::Close
        } else {
            Reply::Trickle(ok(b"slow"), Duration::from_millis(1))
        }
    });
    let mut first = TcpStream::connect(server.addr).expect("connect");
    first
        .write_all(b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
        .expect("write");
    let mut rest = Vec::new();
    first.read_to_end(&mut rest).expect("clean EOF");
    assert!(rest.is_empty());
    let mut second = TcpStream::connect(server.addr).expect("connect");
    second.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    let mut got = vec![0u8; ok(b"slow").len()];
    second.read_exact(&mut got).expect("trickled response");
    assert_eq!(got, ok(b"slow"));
    assert_eq!(server.connections(), 2);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].header("content-length"), Some("3"));
}

/// A listener on `at` whose accept queue is full (backlog 0, filled by connections it never
/// accepts): it drops every SYN, so each connect to it hangs until the client's own timeout. Lives
/// as long as the value.
pub struct SynDrop {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<socket2::Socket>,
}

/// Err when `at` cannot be bound (e.g. no ::1 here).
pub fn syn_dropping_listener(at: SocketAddr) -> io::Result<SynDrop> {
    let domain = socket2::Domain::for_address(at);
    let listener = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    if at.is_ipv6() {
        listener.set_only_v6(true)?;
    }
    listener.bind(&at.into())?;
    listener.listen(0)?;
    let addr = listener
        .local_addr()?
        .as_socket()
        .expect("an inet listener");
    let fillers = (0..4)
        .map(|_| {
            let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
            s.set_nonblocking(true)?;
            let _ = s.connect(&addr.into());
            Ok(s)
        })
        .collect::<io::Result<Vec<_>>>()?;
    thread::sleep(Duration::from_millis(300));
    Ok(SynDrop {
        addr,
        _listener: listener,
        _fillers: fillers,
    })
}
