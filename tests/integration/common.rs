//! Shared helpers: the binary's path, child processes under a hard deadline, `ringfetch serve` as a
//! fixture, `run_fetch` (URL list in, parsed JSONL and summary out) and scripted hostile servers.
//! Test files own their assertions; the helpers here only run things and parse what came back.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// A child still running after this long is killed and the test fails: a hang must fail the
/// test instead of stalling CI.
pub const CHILD_DEADLINE: Duration = Duration::from_secs(60);

/// How long a hostile connection thread waits for the client's next bytes before giving up.
/// Long enough for any test's `--timeout`, short enough that leaked threads die soon after.
const SERVER_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Hostile servers stop accepting after this long even if their guard was leaked.
const SERVER_LIFETIME: Duration = Duration::from_secs(120);

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ringfetch"))
}

pub fn tempdir() -> TempDir {
    tempfile::tempdir().expect("create a temp dir")
}

/// What a finished child left behind.
pub struct Finished {
    /// The exit code, or 128 + signal number when a signal ended it (a crash is not an exit 0/1/2).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `cmd` to completion with `stdin` fed through a pipe (closed when written) or /dev/null.
pub fn run_child(mut cmd: Command, stdin: Option<Vec<u8>>) -> Finished {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        // A writer thread, because a large input could fill the pipe before the child reads it.
        // Dropping the pipe at the end gives the child its EOF.
        thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    let stdout = drain(child.stdout.take().expect("stdout was piped"));
    let stderr = drain(child.stderr.take().expect("stderr was piped"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if start.elapsed() > CHILD_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
            panic!(
                "{cmd:?} still running after {CHILD_DEADLINE:?}; killed. stderr:\n{}",
                tail(&stderr)
            );
        }
        thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Finished {
        code,
        stdout: String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned(),
        elapsed,
    }
}

fn drain<R: Read + Send + 'static>(mut reader: R) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = reader.read_to_end(&mut bytes);
        bytes
    })
}

/// The last few KiB of a long text, so a failure message stays readable.
pub fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(4000);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

// ---------------------------------------------------------------------------------------------
// ringfetch fetch

/// Where `run_fetch_text` puts the URL list.
pub enum Input {
    /// A file named as the positional argument.
    File,
    /// Standard input, no positional argument.
    Stdin,
    /// Standard input, named by the positional argument `-`.
    Dash,
    /// A positional argument naming a file that does not exist.
    Missing,
}

/// One `ringfetch fetch` run, parsed.
pub struct Output {
    pub code: i32,
    /// One JSON object per line of the `-o` file, in the order written.
    pub results: Vec<Value>,
    /// The `--json` summary from stdout, or `Value::Null` when stdout held no JSON object.
    pub summary: Value,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Kept so the run's files live as long as the output.
    _dir: TempDir,
}

impl Output {
    /// The results keyed by `index`; fails the test if an index is missing or repeated.
    pub fn by_index(&self) -> BTreeMap<u64, &Value> {
        let mut map = BTreeMap::new();
        for r in &self.results {
            let index = r["index"]
                .as_u64()
                .unwrap_or_else(|| panic!("result without an integer index: {r}"));
            assert!(
                map.insert(index, r).is_none(),
                "index {index} reported twice\n{}",
                self.describe()
            );
        }
        map
    }

    /// The one result for `index`.
    pub fn result(&self, index: u64) -> &Value {
        let all = self.by_index();
        all.get(&index)
            .copied()
            .unwrap_or_else(|| panic!("no result for index {index}\n{}", self.describe()))
    }

    /// Everything worth seeing when an assertion fails.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "exit code {} after {:?}; {} result lines",
            self.code,
            self.elapsed,
            self.results.len()
        );
        for r in self.results.iter().take(8) {
            text.push_str(&format!("\n  {r}"));
        }
        text.push_str(&format!(
            "\nsummary: {}\nstdout:\n{}\nstderr:\n{}",
            self.summary,
            tail(&self.stdout),
            tail(&self.stderr)
        ));
        text
    }
}

/// `ringfetch fetch FILE -o OUT --json ARGS` with one URL per line.
pub fn run_fetch(urls: &[String], args: &[&str]) -> Output {
    run_fetch_text(&lines(urls), Input::File, args)
}

/// `ringfetch fetch` over raw list text (comments, blank lines...), fed as `input` says.
pub fn run_fetch_text(text: &str, input: Input, args: &[&str]) -> Output {
    let dir = tempdir();
    let out = dir.path().join("out.jsonl");
    let mut cmd = Command::new(bin());
    cmd.current_dir(dir.path()).arg("fetch");
    let mut stdin = None;
    match input {
        Input::File => {
            let list = dir.path().join("urls.txt");
            fs::write(&list, text).expect("write the URL list");
            cmd.arg(list);
        }
        Input::Stdin => stdin = Some(text.as_bytes().to_vec()),
        Input::Dash => {
            cmd.arg("-");
            stdin = Some(text.as_bytes().to_vec());
        }
        Input::Missing => {
            cmd.arg(dir.path().join("no-such-list.txt"));
        }
    }
    cmd.arg("-o").arg(&out).arg("--json").args(args);
    let finished = run_child(cmd, stdin);
    let results = match fs::read_to_string(&out) {
        Ok(text) => parse_jsonl(&text),
        Err(_) => Vec::new(),
    };
    Output {
        code: finished.code,
        results,
        summary: parse_summary(&finished.stdout),
        stdout: finished.stdout,
        stderr: finished.stderr,
        elapsed: finished.elapsed,
        _dir: dir,
    }
}

/// The URL list as file text: one per line, newline-terminated.
pub fn lines(urls: &[String]) -> String {
    urls.iter().map(|u| format!("{u}\n")).collect()
}

/// Parses JSONL; a line that is not a JSON object fails the test, since every line must be one.
pub fn parse_jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSONL line {l:?}: {e}"));
            assert!(v.is_object(), "JSONL line is not an object: {l}");
            v
        })
        .collect()
}

/// The summary object from `--json` output: the whole text if it is one JSON object, else the
/// last line that is one (so a stray text line elsewhere does not hide it).
pub fn parse_summary(text: &str) -> Value {
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(text.trim()) {
        return v;
    }
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(|v| v.is_object())
        .unwrap_or(Value::Null)
}

/// The run ended before `limit`: a stall would have taken the full timeout instead.
#[track_caller]
pub fn assert_finished_within(out: &Output, limit: Duration) {
    assert!(
        out.elapsed < limit,
        "took {:?}: {}",
        out.elapsed,
        out.describe()
    );
}

/// A successful result: this status and body length, and `error` null.
#[track_caller]
pub fn assert_response(r: &Value, status: u64, body_bytes: u64) {
    assert_eq!(r["status"], status, "status of {r}");
    assert_eq!(r["body_bytes"], body_bytes, "body_bytes of {r}");
    assert!(r["error"].is_null(), "expected no error: {r}");
}

/// A failed result whose `error` is `"KIND: message"` for this KIND, with a non-empty message.
#[track_caller]
pub fn assert_error(r: &Value, kind: &str) {
    let error = r["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a {kind} error: {r}"));
    let prefix = format!("{kind}: ");
    assert!(
        error.starts_with(&prefix) && error.len() > prefix.len(),
        "expected error kind {kind:?}: {r}"
    );
}

/// The total of the summary's `errors` object; fails the test if it is not an object of counts.
#[track_caller]
pub fn error_total(summary: &Value) -> u64 {
    let errors = summary["errors"]
        .as_object()
        .unwrap_or_else(|| panic!("summary has no errors object: {summary}"));
    errors
        .values()
        .map(|v| v.as_u64().expect("error counts are integers"))
        .sum()
}

/// The bytes saved for `index` under `dir`, or None when no file was left there.
pub fn saved(dir: &Path, index: u64) -> Option<Vec<u8>> {
    fs::read(dir.join(index.to_string())).ok()
}

/// The names of the entries in `dir` (empty if it does not exist), sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// A path as a `&str` argument (temp paths are always UTF-8 here).
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// A 127.0.0.1 port with nothing listening: bind port 0, note the port, release it.
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------------------------------------
// ringfetch serve

/// A running `ringfetch serve`; killed on drop.
pub struct Serve {
    child: Child,
    pub addr: SocketAddr,
    /// Over https: the server's made-up certificate, which clients trust with `--cacert`.
    cert: Option<(TempDir, PathBuf)>,
    /// Both ends use the direct-descriptor transport.
    direct: bool,
}

/// What a test runs over: the same tests run over each (`over_each_wire!`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Http,
    Https,
    /// http with `--transport direct` on both ends: sockets in io_uring fixed-file tables.
    Direct,
    /// https over direct descriptors on both ends.
    DirectHttps,
}

impl Serve {
    pub fn url(&self, path: &str) -> String {
        match self.cert {
            None => format!("http://{}{path}", self.addr),
            Some(_) => format!("https://localhost:{}{path}", self.addr.port()),
        }
    }

    /// `args` plus what a client needs to trust this server.
    pub fn client_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        if let Some((_, cert)) = &self.cert {
            all.extend(["--cacert", arg(cert)]);
        }
        if self.direct {
            all.extend(["--transport", "direct"]);
        }
        all
    }
}

/// `start_serve` over `wire`: with https, serve makes up a certificate and writes it for the clients.
pub fn start_serve_on(wire: Wire, args: &[&str]) -> Serve {
    let direct = matches!(wire, Wire::Direct | Wire::DirectHttps);
    let mut all: Vec<&str> = Vec::new();
    if direct {
        all.extend(["--transport", "direct"]);
    }
    let mut cert = None;
    if matches!(wire, Wire::Https | Wire::DirectHttps) {
        let dir = tempdir();
        let path = dir.path().join("serve-cert.pem");
        cert = Some((dir, path));
    }
    if let Some((_, path)) = &cert {
        all.extend(["--tls-self-signed", "--tls-self-signed-out", arg(path)]);
    }
    all.extend_from_slice(args);
    let mut serve = start_serve(&all);
    serve.cert = cert;
    serve.direct = direct;
    serve
}

/// Runs each named test function (taking a `Wire`) over http and https, each on descriptors and on
/// direct descriptors, as `http::NAME`, `https::NAME`, `direct::NAME` and `direct_https::NAME`: one
/// table, every transport.
#[macro_export]
macro_rules! over_each_wire {
    ($($name:ident),* $(,)?) => {
        mod http {
            $( #[test] fn $name() { super::$name($crate::common::Wire::Http) } )*
        }
        mod https {
            $( #[test] fn $name() { super::$name($crate::common::Wire::Https) } )*
        }
        mod direct {
            $( #[test] fn $name() { super::$name($crate::common::Wire::Direct) } )*
        }
        mod direct_https {
            $( #[test] fn $name() { super::$name($crate::common::Wire::DirectHttps) } )*
        }
    };
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `ringfetch serve --addr 127.0.0.1:0 --threads 1 ARGS` and waits for its first stdout
/// line, which must be exactly `listening on 127.0.0.1:PORT`.
pub fn start_serve(args: &[&str]) -> Serve {
    let mut child = Command::new(bin())
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(if args.contains(&"--threads") {
            &[][..]
        } else {
            &["--threads", "1"][..]
        })
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ringfetch serve");
    let stdout = child.stdout.take().expect("stdout was piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so a chatty server never blocks on a full pipe.
        let _ = io::copy(&mut reader, &mut io::sink());
    });
    let line = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringfetch serve printed no line within 10 s");
        }
    };
    // The guard exists before parsing so a bad line still kills the child.
    let mut guard = Serve {
        child,
        addr: "0.0.0.0:0".parse().expect("placeholder addr"),
        cert: None,
        direct: false,
    };
    guard.addr = parse_listening(&line);
    guard
}

/// Parses `listening on 127.0.0.1:PORT\n`; anything else fails the test.
pub fn parse_listening(line: &str) -> SocketAddr {
    let rest = line
        .strip_suffix('\n')
        .and_then(|l| l.strip_prefix("listening on "))
        .unwrap_or_else(|| panic!("first serve line is not `listening on ADDR`: {line:?}"));
    let addr: SocketAddr = rest
        .parse()
        .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
    assert_eq!(addr.ip().to_string(), "127.0.0.1", "{line:?}");
    assert_ne!(addr.port(), 0, "serve must print the bound port: {line:?}");
    addr
}

// ---------------------------------------------------------------------------------------------
// Hostile servers

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
