//! Fuzzing on stable Rust, as a plain test binary: one test per target, each feeding one sans-IO
//! decoder inputs made by mutating the seed files of `fuzz/corpus/<target>/`, and checking what comes
//! back against invariants, not only that nothing panics. It leaves the decoders' own rules to their
//! unit tests; docs/FUZZING.md says how CI runs it, how to run it for hours and how to reproduce.
//!
//! Everything a target decides besides the bytes (where to split them, which requests are HEAD, how a
//! connection ends) is drawn from a hash of the input, so a failing input saved to a file replays
//! alone: `FUZZ_INPUT=<file> cargo test --release --test fuzz -- --exact <target>`.
//!
//! Environment: `FUZZ_ITERS` mutants per target (default `DEFAULT_ITERS`), `FUZZ_SEED` (default
//! `DEFAULT_SEED`, so CI runs the same inputs every time), `FUZZ_FROM` the first iteration, `FUZZ_SECONDS`
//! a time budget per target (then `FUZZ_ITERS` defaults to no limit), `FUZZ_KEEP_GOING=1` to record
//! every failure instead of stopping at the first, `FUZZ_INPUT` to replay one file.

use std::collections::HashSet;
use std::fmt::Debug;
use std::io::{self, BufRead, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringfetch::error::{ErrorKind, FetchError};
use ringfetch::http::chunked::{ChunkStep, ChunkedDecoder};
use ringfetch::http::client::{Connection, End, Event, Fate, Rules, Start, State};
use ringfetch::http::pipeline::{default_refill_at, Unanswered};
use ringfetch::http::response::{BodyKind, Head, ResponseDecoder, Step};
use ringfetch::http::server::{self, Persistence, RequestDecoder};
use ringfetch::input::{Entry, Lines};
use ringfetch::report::resume;

/// Mutants per target in a default run: all five targets take a few seconds in a release build on a
/// 2-core machine, two at a time (CI's `--test-threads 2`).
const DEFAULT_ITERS: u64 = 300_000;
const DEFAULT_SEED: u64 = 20_261_204;
/// Mutants stay below the chunked decoder's 4 KiB and 64 KiB limits, so that most of them reach the
/// bodies; `chunk_size_line_limit_depends_on_the_split` checks the limits themselves.
const MAX_INPUT: usize = 4000;
/// Failing inputs written per target in `FUZZ_KEEP_GOING` mode; the rest are only counted.
const MAX_WRITTEN: usize = 20;

/// Regression inputs of known, unfixed bugs: skipped by the target's replay, each replayed by its
/// own `#[ignore]`d test, which names the bug. None today: the two found so far are fixed and their
/// inputs replayed by the targets and by the tests below.
const KNOWN_BUGS: &[&str] = &[];

#[test]
fn response() {
    run("response", check_response);
}

#[test]
fn chunked() {
    run("chunked", check_chunked);
}

#[test]
fn connection() {
    run("connection", check_connection);
}

#[test]
fn request() {
    run("request", check_request);
}

#[test]
fn list() {
    run("list", check_list);
}

/// Fixed bug: `report::resume::keep` kept a result line with bytes that are not UTF-8 inside a field
/// it does not read (`url`): its `Line` skips other fields with `IgnoredAny`, which serde_json does not
/// check for UTF-8, so the rewritten result file held a line that is not JSON (RFC 8259 §8.1). Found
/// by the `list` target (seed 20261204, iteration 182).
#[test]
fn keep_copies_lines_that_are_not_utf8() {
    replay("list", "keep-not-utf8.jsonl", |data| {
        check_list_with(data, Utf8::Strict)
    });
}

/// Fixed bug: `ChunkedDecoder` checked its 4 KiB chunk-size line limit (MAX_SIZE_LINE) only while it
/// waited for the line's end, so a 5000-byte size line was accepted when it arrived in one read and
/// refused when it trickled in; the trailer limit (MAX_TRAILERS, 64 KiB) had the same shape. Found
/// while writing the `chunked` target, whose mutants stay under 4000 bytes and so never reach it.
#[test]
fn chunk_size_line_limit_depends_on_the_split() {
    replay("chunked", "size-line-over-4k.bin", check_chunked);
}

// ---------------------------------------------------------------------------------------------------
// The driver: seeds first, then mutants, each checked in a `catch_unwind`.

/// What a check says about one input: `Err` names the broken invariant.
type Checked = Result<(), String>;

struct Config {
    seed: u64,
    from: u64,
    iters: u64,
    budget: Option<Duration>,
    keep_going: bool,
    input: Option<PathBuf>,
}

impl Config {
    fn from_env() -> Config {
        let number = |name: &str| {
            std::env::var(name).ok().map(|v| {
                v.trim()
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number"))
            })
        };
        let budget = number("FUZZ_SECONDS").map(Duration::from_secs);
        let default_iters = if budget.is_some() {
            u64::MAX
        } else {
            DEFAULT_ITERS
        };
        Config {
            seed: number("FUZZ_SEED").unwrap_or(DEFAULT_SEED),
            from: number("FUZZ_FROM").unwrap_or(0),
            iters: number("FUZZ_ITERS").unwrap_or(default_iters),
            budget,
            keep_going: std::env::var("FUZZ_KEEP_GOING").is_ok_and(|v| v != "0" && !v.is_empty()),
            input: std::env::var_os("FUZZ_INPUT").map(PathBuf::from),
        }
    }
}

fn run(target: &str, check: fn(&[u8]) -> Checked) {
    let config = Config::from_env();
    if let Some(path) = &config.input {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(why) = execute(check, &data) {
            panic!("{target}: {} fails: {why}", path.display());
        }
        eprintln!("fuzz {target}: {} passes", path.display());
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = files(&root.join("corpus").join(target));
    assert!(!corpus.is_empty(), "no seeds in fuzz/corpus/{target}/");
    let regressions: Vec<(PathBuf, Vec<u8>)> = files(&root.join("regressions").join(target))
        .into_iter()
        .filter(|(path, _)| !KNOWN_BUGS.contains(&known_name(target, path).as_str()))
        .collect();
    let mut failures = Failures::new(target, config.seed);

    // 1. Every seed and regression as it is.
    for (path, data) in corpus.iter().chain(&regressions) {
        if let Err(why) = execute(check, data) {
            eprintln!("fuzz {target}: {} fails: {why}", path.display());
            failures.count += 1;
        }
    }
    // 2. Mutants, each from its own generator so that one iteration can be rerun alone.
    let seeds: Vec<&[u8]> = corpus
        .iter()
        .chain(&regressions)
        .map(|(_, d)| &d[..])
        .collect();
    let started = Instant::now();
    let watchdog = Watchdog::start(target, config.seed, &seeds);
    let mut executions = corpus.len() + regressions.len();
    for iter in config.from..config.from.saturating_add(config.iters) {
        if failures.count > 0 && !config.keep_going {
            break;
        }
        // Reading the clock costs little next to an execution, but need not happen every time.
        if iter % 64 == 0 && config.budget.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
        let input = mutant(config.seed, iter, &seeds);
        watchdog.current.store(iter + 1, Ordering::Relaxed);
        executions += 1;
        if let Err(why) = execute(check, &input) {
            failures.record(iter, &input, &why);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {target}: {executions} executions in {seconds:.1}s ({:.0}/s), seed {}, {} failures",
        executions as f64 / seconds.max(1e-9),
        config.seed,
        failures.count
    );
    assert!(
        failures.count == 0,
        "fuzz {target}: {} failing inputs (seed {}); see above",
        failures.count,
        config.seed
    );
}

/// Iteration `iter` of the run with this seed: each has its own generator, so one can be rerun alone.
fn mutant(seed: u64, iter: u64, seeds: &[&[u8]]) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ iter.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    mutate(&mut rng, seeds)
}

/// An execution that takes this long is a decoder looping inside one call, which the call budget of
/// the checks cannot see.
const HANG: Duration = Duration::from_secs(10);

/// Watches the mutants from another thread: when one iteration runs for `HANG`, it regenerates that
/// input, saves it like any failure and ends the process (the looping thread cannot be stopped).
struct Watchdog {
    /// The iteration under way, plus one (0: none yet).
    current: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(target: &str, seed: u64, seeds: &[&[u8]]) -> Watchdog {
        let current = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (target, seeds) = (
            target.to_string(),
            seeds.iter().map(|s| s.to_vec()).collect::<Vec<_>>(),
        );
        let thread = {
            let (current, stop) = (current.clone(), stop.clone());
            std::thread::spawn(move || {
                let tick = Duration::from_millis(200);
                let (mut last, mut since) = (0, Instant::now());
                while !stop.load(Ordering::Relaxed) {
                    std::thread::park_timeout(tick);
                    let now = current.load(Ordering::Relaxed);
                    if now != last {
                        (last, since) = (now, Instant::now());
                    } else if now > 0 && since.elapsed() >= HANG && !stop.load(Ordering::Relaxed) {
                        let iter = now - 1;
                        let seeds: Vec<&[u8]> = seeds.iter().map(|s| &s[..]).collect();
                        let _ = writeln!(
                            io::stderr(),
                            "fuzz {target}: FAILED at seed {seed}, iteration {iter}: still running after {HANG:?}"
                        );
                        save(&target, seed, iter, &mutant(seed, iter, &seeds));
                        std::process::exit(101);
                    }
                }
            })
        };
        Watchdog {
            current,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Runs one check, turning a panic into a failure like a broken invariant.
fn execute(check: fn(&[u8]) -> Checked, data: &[u8]) -> Checked {
    match panic::catch_unwind(AssertUnwindSafe(|| check(data))) {
        Ok(checked) => checked,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string());
            Err(format!("panicked: {message}"))
        }
    }
}

/// Failing inputs, written to `target/fuzz-failures/<target>-<seed>-<iter>.bin`.
struct Failures<'t> {
    target: &'t str,
    seed: u64,
    count: usize,
}

impl<'t> Failures<'t> {
    fn new(target: &'t str, seed: u64) -> Failures<'t> {
        Failures {
            target,
            seed,
            count: 0,
        }
    }

    fn record(&mut self, iter: u64, input: &[u8], why: &str) {
        self.count += 1;
        let (target, seed) = (self.target, self.seed);
        let _ = writeln!(
            io::stderr(),
            "fuzz {target}: FAILED at seed {seed}, iteration {iter}: {why}"
        );
        if self.count <= MAX_WRITTEN {
            save(target, seed, iter, input);
        }
    }
}

/// Writes a failing input to `target/fuzz-failures/` and says how to replay it.
fn save(target: &str, seed: u64, iter: u64, input: &[u8]) {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target_dir.join("fuzz-failures");
    let path = dir.join(format!("{target}-{seed}-{iter}.bin"));
    let replay = "cargo test --release --test fuzz -- --exact";
    // Straight to stderr, past the test harness's capture: the watchdog ends the process, and what
    // was captured would be lost.
    let _ = match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input)) {
        Ok(()) => writeln!(
            io::stderr(),
            "fuzz {target}: input written to {path}; replay it with\n  FUZZ_INPUT={path} {replay} \
             {target}\n  or FUZZ_SEED={seed} FUZZ_FROM={iter} FUZZ_ITERS=1 {replay} {target}",
            path = path.display(),
        ),
        Err(e) => writeln!(
            io::stderr(),
            "fuzz {target}: cannot write {}: {e}",
            path.display()
        ),
    };
}

/// The files of a corpus directory, by name (none when it does not exist).
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, data)
        })
        .collect()
}

/// `<target>/<file name>`, as `KNOWN_BUGS` lists them.
fn known_name(target: &str, path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    format!("{target}/{name}")
}

/// Replays one regression input of a known bug (for its `#[ignore]`d test).
fn replay(target: &str, name: &str, check: fn(&[u8]) -> Checked) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target)
        .join(name);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if let Err(why) = execute(check, &data) {
        panic!("{}: {why}", path.display());
    }
}

// ---------------------------------------------------------------------------------------------------
// Inputs: xorshift64 and the mutations.

/// xorshift64, seeded through splitmix64's finaliser so that nearby seeds give unrelated streams.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        // xorshift never leaves 0, so 0 is never its state.
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The choices a check makes about `data`, drawn from the data alone (FNV-1a) so that the input
    /// file is all a replay needs.
    fn choices(data: &[u8]) -> Rng {
        let hash = data.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
        });
        Rng::new(hash)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `0..n` (0 when n is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// Uniform in `lo..=hi`.
    fn within(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Bytes a framing decision turns on.
const SPECIAL: &[u8] = b"\r\n\t :;,=\"#0123456789aAfFxX-+\x00\x7f\x80\xff{}[]";

/// Fragments of the four grammars (HTTP responses, requests, chunked bodies, URL lists and result
/// lines), inserted whole so that mutants stay close to something a peer might send.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\n\n",
    b"\r",
    b"\n",
    b"HTTP/1.1 ",
    b"HTTP/1.0 ",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n",
    b"HTTP/1.1 304 Not Modified\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n",
    b"Content-Length: ",
    b"Content-Length: 0\r\n",
    b"Content-Length: 5\r\n",
    b"content-length: 3, 3\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive\r\n",
    b"0\r\n\r\n",
    b"5\r\nhello\r\n",
    b";ext=\"v\"",
    b"Trailer: x\r\n",
    b"ffffffffffffffff",
    b"18446744073709551615",
    b"18446744073709551616",
    b"00000000000000000000001",
    b"GET / HTTP/1.1\r\n",
    b"HEAD / HTTP/1.1\r\n",
    b"POST / HTTP/1.1\r\n",
    b"Host: a\r\n",
    b"\xEF\xBB\xBF",
    b"# comment\n",
    b"http://example.com/",
    b"\xC3\xA9",
    b"\xC3",
    b"{\"index\":",
    b"\"status\":200",
    b"\"error\":null",
    b"\"error\":\"x\"",
    b"}\n",
];

/// Numbers that replace a run of digits: lengths, sizes and indexes are where framing goes wrong.
const NUMBERS: &[&[u8]] = &[
    b"0",
    b"1",
    b"2",
    b"7",
    b"10",
    b"ff",
    b"00",
    b"65536",
    b"18446744073709551615",
    b"99999999999999999999",
];

/// A mutant of one seed: 1 to 16 byte flips, insertions, deletions, copies, splices with another seed
/// and truncations.
fn mutate(rng: &mut Rng, seeds: &[&[u8]]) -> Vec<u8> {
    let mut data = rng.pick(seeds).to_vec();
    let rounds = if rng.one_in(4) {
        rng.within(1, 16)
    } else {
        rng.within(1, 3)
    };
    for _ in 0..rounds {
        let at = rng.below(data.len() + 1);
        match rng.below(10) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = *rng.pick(SPECIAL);
            }
            2 => {
                let n = rng.within(1, 4);
                let bytes: Vec<u8> = (0..n)
                    .map(|_| {
                        if rng.one_in(2) {
                            *rng.pick(SPECIAL)
                        } else {
                            rng.next() as u8
                        }
                    })
                    .collect();
                data.splice(at..at, bytes);
            }
            3 | 4 => {
                let token = *rng.pick(TOKENS);
                let at = if rng.one_in(2) {
                    at
                } else {
                    line_start(&data, at)
                };
                data.splice(at..at, token.iter().copied());
            }
            5 if at < data.len() => {
                let n = rng.within(1, (data.len() - at).min(32));
                data.drain(at..at + n);
            }
            6 if at < data.len() => {
                // Copy a range elsewhere: repeated heads, chunks, lines.
                let n = rng.within(1, (data.len() - at).min(256));
                let copy = data[at..at + n].to_vec();
                let to = rng.below(data.len() + 1);
                data.splice(to..to, copy);
            }
            7 => {
                // Mostly whole lines of the other seed after whole lines of this one: a mutant that
                // breaks its first line tests little more than the status-line parser.
                let other = rng.pick(seeds);
                let mut from = rng.below(other.len() + 1);
                let mut at = at;
                if !rng.one_in(4) {
                    (at, from) = (line_start(&data, at), line_start(other, from));
                }
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            8 => data.truncate(at),
            _ => {
                // Replace a run of (hex) digits.
                let Some(start) = data.iter().skip(at).position(u8::is_ascii_hexdigit) else {
                    continue;
                };
                let start = at + start;
                let len = data[start..]
                    .iter()
                    .take_while(|b| b.is_ascii_hexdigit())
                    .count();
                let number = *rng.pick(NUMBERS);
                data.splice(start..start + len, number.iter().copied());
            }
        }
    }
    data.truncate(MAX_INPUT);
    data
}

/// The start of the line holding `at` (the position after the last LF before it), or 0.
fn line_start(data: &[u8], at: usize) -> usize {
    data[..at.min(data.len())]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
}

/// The same bytes as the deliveries of one connection: whole, split once, or in pieces of random size
/// (sometimes one byte at a time), drawn from `choices`.
fn deliveries<'a>(data: &'a [u8], choices: &mut Rng) -> [Vec<&'a [u8]>; 3] {
    let whole = vec![data];
    let at = choices.below(data.len() + 1);
    let split = vec![&data[..at], &data[at..]];
    let largest = match choices.below(4) {
        0 => 1,
        1 => 8,
        2 => 64,
        _ => data.len().max(1),
    };
    let mut pieces = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = choices.within(1, largest.min(rest.len()));
        pieces.push(&rest[..n]);
        rest = &rest[n..];
    }
    [whole, split, pieces]
}

/// A decoder may take this many calls for `len` bytes delivered in pieces: each call consumes bytes,
/// says it needs more (once per piece), or ends a response that needed no bytes.
/// Counts one more decode call and fails once there were more than progress allows.
fn progress(calls: &mut usize, len: usize, what: &str) -> Checked {
    *calls += 1;
    let calls = *calls;
    ensure(calls <= call_budget(len), || {
        format!("{calls} decode calls for {len} bytes: the {what} does not progress")
    })
}

/// A decoder consumed no more than it was given.
fn within(used: usize, given: usize) -> Checked {
    ensure(used <= given, || {
        format!("consumed {used} of {given} bytes")
    })
}

fn call_budget(len: usize) -> usize {
    4 * len + 16
}

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Checked {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

fn same<T: PartialEq + Debug>(what: &str, whole: &T, other: &T) -> Checked {
    ensure(whole == other, || {
        format!("{what} differs from the whole input's:\n  whole: {whole:?}\n  {what}: {other:?}")
    })
}

// ---------------------------------------------------------------------------------------------------
// response: ResponseDecoder over a pipeline of responses, then close().

#[derive(Debug, PartialEq, Eq)]
enum ResponseEvent {
    Head(Head),
    /// The body bytes of one response, joined (how they were split does not show).
    Body(Vec<u8>),
    Done,
}

#[derive(Debug, PartialEq, Eq)]
enum ResponseEnd {
    /// Decoding failed.
    Error(ErrorKind),
    /// All bytes fed, `buffered` left unconsumed, and not closed.
    Open { buffered: usize },
    /// All bytes fed, then `close(buffered)` said this.
    Closed {
        buffered: usize,
        result: Result<bool, ErrorKind>,
    },
}

#[derive(Debug, PartialEq, Eq)]
struct ResponseTrace {
    events: Vec<ResponseEvent>,
    end: ResponseEnd,
}

fn check_response(data: &[u8]) -> Checked {
    let mut choices = Rng::choices(data);
    // Which responses answer a HEAD request, by position.
    let heads = choices.next();
    let close = choices.one_in(2);
    let [whole, split, pieces] = deliveries(data, &mut choices);
    let first = decode_responses(&whole, data.len(), heads, close)?;
    for (what, delivery) in [("split", split), ("pieces", pieces)] {
        let trace = decode_responses(&delivery, data.len(), heads, close)?;
        if !stalled_response(&first, &trace) {
            same(what, &first, &trace)?;
        }
    }
    Ok(())
}

/// The one known difference (docs/FUZZING.md): a head that httparse refuses is found at once when the
/// bytes arrived together, but when they trickle in the decoder waits for the head's empty line
/// before parsing again, so a malformed head that never ends is a wait (then an I/O error at close),
/// not a protocol error. Everything decoded before it must still agree.
fn stalled_response(whole: &ResponseTrace, split: &ResponseTrace) -> bool {
    whole.end == ResponseEnd::Error(ErrorKind::Protocol)
        && whole.events == split.events
        && match &split.end {
            ResponseEnd::Open { buffered } => *buffered > 0,
            ResponseEnd::Closed { buffered, result } => {
                *buffered > 0 && *result == Err(ErrorKind::Io)
            }
            ResponseEnd::Error(_) => false,
        }
}

/// Feeds the deliveries as the pump does and checks each step against the framing rules.
fn decode_responses(
    deliveries: &[&[u8]],
    len: usize,
    heads: u64,
    close: bool,
) -> Result<ResponseTrace, String> {
    let mut decoder = ResponseDecoder::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    // The head of the response under way and the body bytes it has had.
    let mut current: Option<(Head, u64)> = None;
    let mut done = 0u32;
    let mut calls = 0;
    for delivery in deliveries {
        buf.extend_from_slice(delivery);
        loop {
            progress(&mut calls, len, "decoder")?;
            let head_request = heads >> (done % 64) & 1 == 1;
            let (used, step) = match decoder.decode(&buf, head_request) {
                Ok(decoded) => decoded,
                Err(e) => {
                    return Ok(ResponseTrace {
                        events,
                        end: ResponseEnd::Error(e.kind),
                    })
                }
            };
            within(used, buf.len())?;
            match step {
                Step::NeedMore => {
                    buf.drain(..used);
                    // "Read more" means nothing more can be decoded from what is left.
                    let again = decoder.decode(&buf, head_request);
                    ensure(matches!(again, Ok((0, Step::NeedMore))), || {
                        format!("NeedMore, then {again:?} from the same bytes")
                    })?;
                    break;
                }
                Step::Head(head) => {
                    ensure(current.is_none(), || {
                        format!("a head ({head:?}) inside the previous response")
                    })?;
                    ensure(used > 0, || "a head of no bytes".to_string())?;
                    ensure(!(100..200).contains(&head.status), || {
                        format!("an interim {} handed on as a final head", head.status)
                    })?;
                    // RFC 9112 §6.3 rule 1, and rule 8's close-delimited body.
                    if head_request || head.status == 204 || head.status == 304 {
                        ensure(head.body == BodyKind::Empty, || {
                            format!("a body ({head:?}) where none may be (HEAD: {head_request})")
                        })?;
                    }
                    if head.body == BodyKind::UntilClose {
                        ensure(!head.keep_alive, || {
                            format!("keep-alive with a close-delimited body: {head:?}")
                        })?;
                    }
                    ensure(head.body != BodyKind::Length(0), || {
                        "Length(0) instead of Empty".to_string()
                    })?;
                    current = Some((head, 0));
                    events.push(ResponseEvent::Head(head));
                }
                Step::Body(range) => {
                    let Some((head, received)) = current.as_mut() else {
                        return Err(format!("body bytes {range:?} before any head"));
                    };
                    ensure(range.start < range.end && range.end <= used, || {
                        format!("body range {range:?} with {used} bytes consumed")
                    })?;
                    *received += range.len() as u64;
                    if let BodyKind::Length(n) = head.body {
                        ensure(*received <= n, || {
                            format!("{received} body bytes for Content-Length {n}")
                        })?;
                    }
                    ensure(head.body != BodyKind::Empty, || {
                        format!("body bytes for a bodiless response {head:?}")
                    })?;
                    match events.last_mut() {
                        Some(ResponseEvent::Body(body)) => body.extend_from_slice(&buf[range]),
                        _ => events.push(ResponseEvent::Body(buf[range].to_vec())),
                    }
                }
                Step::Done => {
                    let Some((head, received)) = current.take() else {
                        return Err("a response done before its head".to_string());
                    };
                    match head.body {
                        BodyKind::Length(n) => ensure(received == n, || {
                            format!("done after {received} of Content-Length {n}")
                        })?,
                        BodyKind::Empty => ensure(received == 0, || "unreachable".to_string())?,
                        BodyKind::UntilClose => {
                            return Err("a close-delimited body done before the close".to_string())
                        }
                        BodyKind::Chunked => {}
                    }
                    done += 1;
                    events.push(ResponseEvent::Done);
                }
            }
            buf.drain(..used);
        }
    }
    let buffered = buf.len();
    if !close {
        return Ok(ResponseTrace {
            events,
            end: ResponseEnd::Open { buffered },
        });
    }
    let result = decoder.close(buffered).map_err(|e| e.kind);
    match result {
        Ok(true) => {
            ensure(
                matches!(current, Some((h, _)) if h.body == BodyKind::UntilClose),
                || format!("the close completed {current:?}, which is not close-delimited"),
            )?;
            events.push(ResponseEvent::Done);
        }
        Ok(false) => ensure(current.is_none() && buffered == 0, || {
            format!("a clean close with {current:?} under way and {buffered} bytes buffered")
        })?,
        Err(_) => ensure(current.is_some() || buffered > 0, || {
            "a close between responses is an error".to_string()
        })?,
    }
    Ok(ResponseTrace {
        events,
        end: ResponseEnd::Closed { buffered, result },
    })
}

// ---------------------------------------------------------------------------------------------------
// chunked: ChunkedDecoder alone.

#[derive(Debug, PartialEq, Eq)]
struct ChunkedTrace {
    body: Vec<u8>,
    /// Done, and the bytes after the body it left unconsumed.
    done: Option<usize>,
    error: Option<ErrorKind>,
}

fn check_chunked(data: &[u8]) -> Checked {
    let mut choices = Rng::choices(data);
    let [whole, split, pieces] = deliveries(data, &mut choices);
    let first = decode_chunked(&whole, data.len())?;
    for (what, delivery) in [("split", split), ("pieces", pieces)] {
        same(what, &first, &decode_chunked(&delivery, data.len())?)?;
    }
    Ok(())
}

fn decode_chunked(deliveries: &[&[u8]], len: usize) -> Result<ChunkedTrace, String> {
    let mut decoder = ChunkedDecoder::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut trace = ChunkedTrace {
        body: Vec::new(),
        done: None,
        error: None,
    };
    let mut consumed = 0;
    let mut calls = 0;
    for delivery in deliveries {
        buf.extend_from_slice(delivery);
        loop {
            progress(&mut calls, len, "decoder")?;
            let (used, step) = match decoder.decode(&buf) {
                Ok(decoded) => decoded,
                Err(e) => {
                    trace.error = Some(e.kind);
                    return Ok(trace);
                }
            };
            within(used, buf.len())?;
            consumed += used;
            match step {
                ChunkStep::NeedMore => {
                    buf.drain(..used);
                    let again = decoder.decode(&buf);
                    ensure(matches!(again, Ok((0, ChunkStep::NeedMore))), || {
                        format!("NeedMore, then {again:?} from the same bytes")
                    })?;
                    break;
                }
                ChunkStep::Data(range) => {
                    ensure(range.start < range.end && range.end <= used, || {
                        format!("data range {range:?} with {used} bytes consumed")
                    })?;
                    trace.body.extend_from_slice(&buf[range]);
                }
                ChunkStep::Done => {
                    buf.drain(..used);
                    // Done stays done, and consumes nothing more.
                    let again = decoder.decode(&buf);
                    ensure(matches!(again, Ok((0, ChunkStep::Done))), || {
                        format!("Done, then {again:?}")
                    })?;
                    trace.done = Some(len - consumed);
                    return Ok(trace);
                }
            }
            buf.drain(..used);
        }
    }
    Ok(trace)
}

// ---------------------------------------------------------------------------------------------------
// connection: http::client::Connection, the client's whole per-connection rule book.

/// How the test ends a connection once every byte is fed.
#[derive(Clone, Copy, Debug)]
enum Ending {
    Eof {
        clean: bool,
    },
    Lost,
    Fail,
    TimeOut,
    Stop,
    /// `end_idle` when nothing is in flight, else nothing.
    Idle,
    /// Dropped while open: `finish` alone.
    Drop,
}

#[derive(Clone, Copy, Debug)]
struct Setup {
    rules: Rules,
    start: Start,
    requests: u32,
    /// Which tickets are HEAD requests, by number.
    heads: u64,
    ending: Ending,
}

#[derive(Debug, PartialEq, Eq)]
enum ConnectionEvent {
    Sent(u32),
    Head(u32, Head),
    Body(u32, Vec<u8>),
    Done(u32),
    /// A close-delimited body completed by `eof`.
    DoneAtEof(u32),
    Ended,
}

#[derive(Debug, PartialEq, Eq)]
struct ConnectionTrace {
    events: Vec<ConnectionEvent>,
    end: End,
    error: ErrorKind,
    left: Vec<(u32, Fate)>,
}

fn check_connection(data: &[u8]) -> Checked {
    let mut choices = Rng::choices(data);
    let depth = choices.within(1, 8);
    let refill_at = if choices.one_in(2) || depth == 1 {
        default_refill_at(depth)
    } else {
        choices.within(1, depth - 1)
    };
    let setup = Setup {
        rules: Rules {
            depth,
            refill_at,
            timeout: Duration::from_secs(10),
            closes: choices.one_in(6),
            idempotent: !choices.one_in(6),
        },
        start: *choices.pick(&[Start::Open, Start::Open, Start::Probe, Start::Single]),
        requests: choices.within(1, 12) as u32,
        heads: if choices.one_in(3) { choices.next() } else { 0 },
        ending: *choices.pick(&[
            Ending::Eof { clean: true },
            Ending::Eof { clean: false },
            Ending::Lost,
            Ending::Fail,
            Ending::TimeOut,
            Ending::Stop,
            Ending::Idle,
            Ending::Drop,
        ]),
    };
    let [whole, split, pieces] = deliveries(data, &mut choices);
    let first = drive(&setup, &whole, data.len())?;
    for (what, delivery) in [("split", split), ("pieces", pieces)] {
        let trace = drive(&setup, &delivery, data.len())?;
        if !stalled_connection(&first, &trace) {
            same(what, &first, &trace).map_err(|e| format!("{setup:?}\n{e}"))?;
        }
    }
    Ok(())
}

/// The response decoder's known difference (`stalled_response`), seen through a connection: the
/// whole input fails on a malformed head that the split input is still waiting on when it ends.
fn stalled_connection(whole: &ConnectionTrace, split: &ConnectionTrace) -> bool {
    whole.end == End::Failed
        && whole.error == ErrorKind::Protocol
        && split.error != ErrorKind::Protocol
        && whole.events.len() == split.events.len() + 1
        && whole.events.last() == Some(&ConnectionEvent::Ended)
        && whole.events.starts_with(&split.events)
}

fn drive(setup: &Setup, deliveries: &[&[u8]], len: usize) -> Result<ConnectionTrace, String> {
    let rules = setup.rules;
    let at = Instant::now();
    let mut c: Connection<u32> = Connection::new(rules, setup.start);
    let mut events = Vec::new();
    let mut sent = 0u32;
    // The next ticket to be answered: responses come in request order.
    let mut next = 0u32;
    let mut current: Option<Head> = None;
    let is_head = |t: u32| setup.heads >> (t % 64) & 1 == 1;
    let send = |c: &mut Connection<u32>, sent: &mut u32, events: &mut Vec<_>| -> Checked {
        while *sent < setup.requests && c.writable() > 0 {
            ensure(c.writable() <= rules.depth - c.in_flight(), || {
                format!("writable {} with {} in flight", c.writable(), c.in_flight())
            })?;
            c.sent(*sent, at, is_head(*sent));
            events.push(ConnectionEvent::Sent(*sent));
            *sent += 1;
        }
        ensure(c.in_flight() <= rules.depth, || {
            format!("{} in flight at depth {}", c.in_flight(), rules.depth)
        })?;
        ensure(
            !matches!(c.state(), State::Closing | State::Ended(_)) || c.writable() == 0,
            || format!("{} writable in {:?}", c.writable(), c.state()),
        )
    };
    send(&mut c, &mut sent, &mut events)?;
    let mut buf: Vec<u8> = Vec::new();
    let mut calls = 0;
    'feed: for delivery in deliveries {
        buf.extend_from_slice(delivery);
        loop {
            progress(&mut calls, len, "connection")?;
            let (used, event) = c.decode(&buf);
            within(used, buf.len())?;
            let answering = |t: u32, what: &str| {
                ensure(t == next && t < sent, || {
                    format!("{what} for ticket {t}, expected {next} ({sent} sent)")
                })
            };
            match event {
                Event::NeedMore => {
                    buf.drain(..used);
                    break;
                }
                Event::Ended => {
                    ensure(used == 0, || format!("Ended after consuming {used}"))?;
                    events.push(ConnectionEvent::Ended);
                    break 'feed;
                }
                Event::Head(t, head) => {
                    answering(t, "a head")?;
                    ensure(current.is_none(), || {
                        format!("a second head for ticket {t}")
                    })?;
                    if is_head(t) {
                        ensure(head.body == BodyKind::Empty, || {
                            format!("a body for HEAD request {t}: {head:?}")
                        })?;
                    }
                    current = Some(head);
                    events.push(ConnectionEvent::Head(t, head));
                }
                Event::Body(t, range) => {
                    answering(t, "body bytes")?;
                    ensure(current.is_some(), || format!("body before head for {t}"))?;
                    ensure(range.start < range.end && range.end <= used, || {
                        format!("body range {range:?} with {used} bytes consumed")
                    })?;
                    match events.last_mut() {
                        Some(ConnectionEvent::Body(b, body)) if *b == t => {
                            body.extend_from_slice(&buf[range])
                        }
                        _ => events.push(ConnectionEvent::Body(t, buf[range].to_vec())),
                    }
                }
                Event::Done(done) => {
                    answering(done.ticket, "a response done")?;
                    ensure(current.take().is_some(), || {
                        format!("ticket {} done without a head", done.ticket)
                    })?;
                    ensure(done.head_request == is_head(done.ticket), || {
                        "the wrong request came back".to_string()
                    })?;
                    events.push(ConnectionEvent::Done(done.ticket));
                    next += 1;
                    ensure(c.answered() == next, || {
                        format!("answered {} after {next} responses", c.answered())
                    })?;
                    send(&mut c, &mut sent, &mut events)?;
                }
            }
            buf.drain(..used);
        }
    }
    let before = c.state();
    match setup.ending {
        Ending::Eof { clean } => {
            if let Some(done) = c.eof(buf.len(), clean) {
                ensure(!matches!(before, State::Ended(_)), || {
                    "eof completed a response on an ended connection".to_string()
                })?;
                ensure(done.ticket == next && next < sent, || {
                    format!("eof completed ticket {}, expected {next}", done.ticket)
                })?;
                ensure(
                    current
                        .take()
                        .is_some_and(|h| h.body == BodyKind::UntilClose),
                    || "eof completed a response that does not end with the connection".to_string(),
                )?;
                events.push(ConnectionEvent::DoneAtEof(done.ticket));
                next += 1;
            }
        }
        Ending::Lost => c.lost(FetchError::new(ErrorKind::Io, "reset")),
        Ending::Fail => c.fail(FetchError::new(ErrorKind::Io, "send failed")),
        Ending::TimeOut => c.time_out(),
        Ending::Stop => c.stop(),
        Ending::Idle if c.in_flight() == 0 => c.end_idle(),
        Ending::Idle | Ending::Drop => {}
    }
    let state = c.state();
    if let State::Ended(_) = before {
        ensure(state == before, || {
            format!("{before:?} became {state:?}: nothing changes after the end")
        })?;
    }
    if !matches!(setup.ending, Ending::Idle | Ending::Drop) {
        ensure(matches!(state, State::Ended(_)), || {
            format!("{:?} left the connection {state:?}", setup.ending)
        })?;
    }
    if let State::Ended(_) = state {
        // After the end nothing more: no bytes read, nothing written, no state change.
        ensure(
            c.decode(b"HTTP/1.1 200 OK\r\n\r\n") == (0, Event::Ended),
            || "decode after the end".to_string(),
        )?;
        ensure(c.eof(0, true).is_none(), || "eof after the end".to_string())?;
        c.fail(FetchError::new(ErrorKind::Io, "late"));
        c.lost(FetchError::new(ErrorKind::Io, "late"));
        c.stop();
        ensure(c.state() == state && c.writable() == 0, || {
            format!("{state:?} became {:?} after the end", c.state())
        })?;
    }
    ensure(c.answered() == next, || {
        format!("answered {} after {next} responses", c.answered())
    })?;
    // finish: each unanswered ticket once, oldest first; answered + left == sent.
    let mut left = c.finish();
    let end = left.end;
    let expected_end = match state {
        State::Ended(end) => end,
        _ => End::Stopped,
    };
    ensure(end == expected_end, || {
        format!("finish says {end:?} for {state:?}")
    })?;
    ensure(left.answered == next, || {
        format!("finish counts {} answered, {next} were", left.answered)
    })?;
    let error = left.error.kind;
    let leftovers: Vec<(u32, Fate)> = left.by_ref().collect();
    let tickets: Vec<u32> = leftovers.iter().map(|&(t, _)| t).collect();
    ensure(tickets == (next..sent).collect::<Vec<_>>(), || {
        format!("finish yields {tickets:?}; {next}..{sent} were unanswered")
    })?;
    for (i, &(t, fate)) in leftovers.iter().enumerate() {
        let fair = match (end, fate) {
            (End::Failed, Fate::Failed) => i == 0 && len > 0,
            (End::Failed, Fate::Unanswered(Unanswered::Failed)) => true,
            (_, Fate::Unanswered(Unanswered::Bystander)) => end != End::Failed,
            _ => false,
        };
        ensure(fair, || {
            format!("ticket {t} (#{i} left) is {fate:?} after {end:?}")
        })?;
    }
    Ok(ConnectionTrace {
        events,
        end,
        error,
        left: leftovers,
    })
}

// ---------------------------------------------------------------------------------------------------
// request: the built-in server's RequestDecoder.

#[derive(Debug, PartialEq, Eq)]
enum RequestEvent {
    Request(server::Request),
    Refused(server::Refusal),
}

#[derive(Debug, PartialEq, Eq)]
struct RequestTrace {
    events: Vec<RequestEvent>,
    /// Bytes consumed when the decoder said Closed; None when it is still open.
    closed_at: Option<usize>,
    /// Bytes left unconsumed by an open decoder (once closed, how many were fed depends on the split).
    buffered: usize,
}

fn check_request(data: &[u8]) -> Checked {
    let mut choices = Rng::choices(data);
    let [whole, split, pieces] = deliveries(data, &mut choices);
    let first = decode_requests(&whole, data.len())?;
    for (what, delivery) in [("split", split), ("pieces", pieces)] {
        let trace = decode_requests(&delivery, data.len())?;
        if !stalled_request(&first, &trace) {
            same(what, &first, &trace)?;
        }
    }
    Ok(())
}

/// The response decoder's known difference (`stalled_response`) on the server side: a malformed head
/// (or one with too many fields) refused at once when whole is still awaited when it trickled in and
/// never ended.
fn stalled_request(whole: &RequestTrace, split: &RequestTrace) -> bool {
    split.closed_at.is_none()
        && split.buffered > 0
        && whole.events.len() == split.events.len() + 1
        && matches!(
            whole.events.last(),
            Some(RequestEvent::Refused(
                server::Refusal::MalformedHead | server::Refusal::TooManyFields
            ))
        )
        && whole.events.starts_with(&split.events)
}

fn decode_requests(deliveries: &[&[u8]], len: usize) -> Result<RequestTrace, String> {
    let mut decoder = RequestDecoder::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let mut consumed = 0;
    // The body owed by the last request, and the bytes consumed since it.
    let mut owed = 0u64;
    let mut since = 0u64;
    // A Refused or a `Connection: close` request: the next step must be Closed.
    let mut must_close = false;
    let mut calls = 0;
    for delivery in deliveries {
        buf.extend_from_slice(delivery);
        loop {
            progress(&mut calls, len, "decoder")?;
            let (used, step) = decoder.decode(&buf);
            within(used, buf.len())?;
            consumed += used;
            since += used as u64;
            ensure(!must_close || step == server::Step::Closed, || {
                format!("{step:?} after a request that closes the connection")
            })?;
            match step {
                server::Step::NeedMore => {
                    buf.drain(..used);
                    let again = decoder.decode(&buf);
                    ensure(again == (0, server::Step::NeedMore), || {
                        format!("NeedMore, then {again:?} from the same bytes")
                    })?;
                    break;
                }
                server::Step::Closed => {
                    ensure(used == 0, || format!("Closed after consuming {used}"))?;
                    buf.drain(..used);
                    let again = decoder.decode(&buf);
                    ensure(again == (0, server::Step::Closed), || {
                        format!("Closed, then {again:?}")
                    })?;
                    return Ok(RequestTrace {
                        events,
                        closed_at: Some(consumed),
                        buffered: 0,
                    });
                }
                server::Step::Request(request) => {
                    // The previous body was skipped before this head, which took bytes of its own.
                    ensure(since > owed, || {
                        format!("a request after {since} bytes, {owed} of them owed to a body")
                    })?;
                    must_close = request.persistence == Persistence::Close;
                    owed = if must_close { 0 } else { request.body };
                    since = 0;
                    events.push(RequestEvent::Request(request));
                }
                server::Step::Refused(refusal) => {
                    ensure(since >= owed, || {
                        format!("refused after {since} bytes, {owed} of them owed to a body")
                    })?;
                    must_close = true;
                    events.push(RequestEvent::Refused(refusal));
                }
            }
            buf.drain(..used);
        }
    }
    Ok(RequestTrace {
        events,
        closed_at: None,
        buffered: buf.len(),
    })
}

// ---------------------------------------------------------------------------------------------------
// list: input::Lines (the URL list) and report::resume::keep (the result file of `--resume`).

/// A reader that hands out the bytes in reads of random size, as a pipe does, and now and then an
/// interrupted read.
struct Trickle<'a> {
    data: &'a [u8],
    pos: usize,
    /// End of the bytes of the current read.
    end: usize,
    largest: usize,
    rng: Rng,
}

impl<'a> Trickle<'a> {
    fn new(data: &'a [u8], rng: &mut Rng) -> Trickle<'a> {
        let largest = *rng.pick(&[1, 3, 16, 256]);
        Trickle {
            data,
            pos: 0,
            end: 0,
            largest,
            rng: Rng::new(rng.next()),
        }
    }
}

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Trickle<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.end && self.pos < self.data.len() {
            if self.rng.one_in(16) {
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            let left = self.data.len() - self.pos;
            self.end = self.pos + self.rng.within(1, self.largest.min(left));
        }
        Ok(&self.data[self.pos..self.end])
    }

    fn consume(&mut self, n: usize) {
        assert!(n <= self.end - self.pos, "consumed more than was read");
        self.pos += n;
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ListEntry {
    Url(u64, String),
    Bad(u64, ErrorKind),
}

fn check_list(data: &[u8]) -> Checked {
    check_list_with(data, Utf8::Lenient)
}

/// Whether a kept result line must be valid UTF-8, as JSON is (RFC 8259 §8.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Utf8 {
    Strict,
    /// Known bug `keep_copies_lines_that_are_not_utf8` (below): checked as if its bad bytes were
    /// replaced, so that the bug does not hide others.
    Lenient,
}

fn check_list_with(data: &[u8], utf8: Utf8) -> Checked {
    let mut choices = Rng::choices(data);
    let shard = if choices.one_in(3) {
        let n = choices.within(1, 4) as u64;
        Some((choices.below(n as usize) as u64, n))
    } else {
        None
    };
    let whole = list_entries(Lines::new(data, shard), data.len(), shard)?;
    let trickled = list_entries(
        Lines::new(Trickle::new(data, &mut choices), shard),
        data.len(),
        shard,
    )?;
    same("trickled", &whole, &trickled)?;

    // The bitset of kept indexes grows to the largest one: an index in the billions costs hundreds of
    // MB by design (resume's MAX_INDEX), which is memory, not a bug, but would slow the run to a crawl.
    if large_number(data) {
        return Ok(());
    }
    let (whole_out, whole_kept) = kept(data, data, utf8)?;
    let (out, kept_trickled) = kept(Trickle::new(data, &mut choices), data, utf8)?;
    same("trickled", &(whole_out, whole_kept), &(out, kept_trickled))
}

fn list_entries(
    lines: Lines<impl BufRead>,
    len: usize,
    shard: Option<(u64, u64)>,
) -> Result<Vec<ListEntry>, String> {
    let mut entries = Vec::new();
    let mut last: Option<u64> = None;
    // Each Drained follows consumed bytes, so there are at most as many as bytes.
    let mut drained = 0;
    for (calls, entry) in lines.enumerate() {
        ensure(calls < call_budget(len), || {
            format!("{calls} entries from {len} bytes: the list does not progress")
        })?;
        let entry = entry.map_err(|e| format!("an I/O error from a reader that has none: {e}"))?;
        let index = match &entry {
            Entry::Drained => {
                drained += 1;
                ensure(drained <= len, || {
                    format!("{drained} Drained from {len} bytes")
                })?;
                continue;
            }
            Entry::Url(line) => line.index,
            Entry::Bad(bad) => bad.index,
        };
        ensure(last.is_none_or(|l| index > l), || {
            format!("index {index} after {last:?}")
        })?;
        last = Some(index);
        if let Some((k, n)) = shard {
            ensure(index % n == k, || format!("index {index} in shard {k}/{n}"))?;
        }
        entries.push(match entry {
            Entry::Url(line) => {
                let url = line.url;
                ensure(
                    !url.is_empty()
                        && !url.starts_with('#')
                        && !url.contains(['\r', '\n'])
                        && url.trim_ascii() == url,
                    || format!("{url:?} is not a trimmed, non-comment line"),
                )?;
                ListEntry::Url(index, url)
            }
            Entry::Bad(bad) => {
                ensure(bad.error.kind == ErrorKind::InvalidUrl, || {
                    format!("a bad line with {:?}", bad.error.kind)
                })?;
                ListEntry::Bad(index, bad.error.kind)
            }
            Entry::Drained => unreachable!("skipped above"),
        });
    }
    Ok(entries)
}

/// Whether `data` holds a run of digits between 2^20 and 2^32 (a costly index for `keep`).
fn large_number(data: &[u8]) -> bool {
    data.split(|b| !b.is_ascii_digit()).any(|digits| {
        let value = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u64>().ok());
        value.is_some_and(|v| (1 << 20..1 << 32).contains(&v))
    })
}

/// `keep` over `from`, the bytes of `data`: its output and counts, checked against the input lines.
fn kept(from: impl BufRead, data: &[u8], utf8: Utf8) -> Result<(Vec<u8>, resume::Kept), String> {
    let mut out = Vec::new();
    let (done, kept) = resume::keep(from, &mut out).map_err(|e| format!("keep failed: {e}"))?;
    let lines: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    ensure(
        kept.kept + kept.retried + kept.foreign == lines.len() as u64 && !kept.torn,
        || format!("{kept:?} for {} lines", lines.len()),
    )?;
    ensure(out.is_empty() || out.ends_with(b"\n"), || {
        "output ends in a partial line".to_string()
    })?;
    // The output is some of the input lines, in order, each index once and marked done.
    let mut rest = lines.iter();
    let mut indexes = HashSet::new();
    let written: Vec<&[u8]> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    ensure(written.len() as u64 == kept.kept, || {
        format!("{} lines written, {} kept", written.len(), kept.kept)
    })?;
    for line in written {
        ensure(rest.any(|l| *l == line), || {
            format!(
                "{:?} is not an input line, or out of order",
                String::from_utf8_lossy(line)
            )
        })?;
        let text = match utf8 {
            Utf8::Strict => std::borrow::Cow::Borrowed(line),
            Utf8::Lenient => {
                std::borrow::Cow::Owned(String::from_utf8_lossy(line).into_owned().into_bytes())
            }
        };
        let index = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("index").and_then(serde_json::Value::as_u64));
        ensure(
            index.is_some_and(|i| done.contains(i) && indexes.insert(i)),
            || {
                format!(
                    "kept {:?}: index {index:?} missing, repeated or not marked done",
                    String::from_utf8_lossy(line)
                )
            },
        )?;
    }
    Ok((out, kept))
}
