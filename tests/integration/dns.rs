//! Name resolution: `--resolve` pins, `localhost`, `.invalid`, and the system resolver seen through
//! private copies of /etc/hosts and /etc/resolv.conf inside a mount namespace, where a small DNS
//! server of the test's own answers on a 127.x address and counts what it is asked.
//!
//! No name here may reach the machine's real resolver (its nameserver is off the loopback), so
//! outside a namespace the only names are `localhost`, names under `.invalid` and pinned names.
//! The namespace tests need root (CAP_SYS_ADMIN) and fail, never skip, without it.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::common::*;

/// `ringfetch serve --body-size`, so a 200 is recognisably this server's.
const BODY: u64 = 100;

fn start_server() -> Serve {
    start_serve(&["--body-size", &BODY.to_string()])
}

/// The `error` text of a failed result (the kind is checked separately by `assert_error`).
fn error_text(r: &Value) -> &str {
    r["error"].as_str().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// --resolve, localhost and .invalid: no resolver involved

#[test]
fn resolve_pins_a_name_and_the_host_header_keeps_it() {
    let server = Hostile::replies(|_| Reply::Send(ok(b"pinned")));
    let port = server.addr.port();
    // Names under .invalid: should a pin not apply, the lookup fails at once instead of leaving
    // the machine.
    let list = vec![
        format!("http://first.invalid:{port}/a"),
        format!("http://SECOND.invalid:{port}/b"),
        // The same name on a port without a pin is not pinned.
        format!("http://first.invalid:{}/c", closed_port()),
    ];
    let out = run_fetch(
        &list,
        &[
            "--resolve",
            &format!("first.invalid:{port}:127.0.0.1"),
            "--resolve",
            &format!("second.invalid:{port}:127.0.0.1"),
            "--timeout",
            "5",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.describe());
    assert_response(out.result(0), 200, 6);
    assert_response(out.result(1), 200, 6);
    let unpinned = out.result(2);
    assert_error(unpinned, "dns");
    assert!(error_text(unpinned).contains("RFC 6761"), "{unpinned}");

    let mut hosts: Vec<(String, String)> = server
        .requests()
        .iter()
        .map(|r| {
            (
                r.path.clone(),
                r.header("host").unwrap_or_default().to_string(),
            )
        })
        .collect();
    hosts.sort();
    assert_eq!(
        hosts,
        [
            ("/a".to_string(), format!("first.invalid:{port}")),
            ("/b".to_string(), format!("second.invalid:{port}")),
        ]
    );
}

#[test]
fn resolve_tries_each_pinned_address_until_one_answers() {
    let server = Hostile::replies(|_| Reply::Send(ok(b"second")));
    let port = server.addr.port();
    // The server listens on 127.0.0.1 only, so 127.0.0.2 on the same port refuses.
    let out = run_fetch(
        &[format!("http://two.invalid:{port}/")],
        &[
            "--resolve",
            &format!("two.invalid:{port}:127.0.0.2,127.0.0.1"),
            "--connect-timeout",
            "5",
            "--timeout",
            "5",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_response(out.result(0), 200, 6);
    assert_eq!(server.connections(), 1);
    // A refusal moves on at once; waiting out the connect timeout would take 5 s.
    assert_finished_within(&out, Duration::from_secs(3));
}

#[test]
fn resolve_takes_a_bracketed_ipv6_address() {
    let (port, server) = serve_once_on_ipv6_loopback(b"six");
    let out = run_fetch(
        &[format!("http://six.invalid:{port}/v6")],
        &[
            "--resolve",
            &format!("six.invalid:{port}:[::1]"),
            "--timeout",
            "5",
        ],
    );
    let head = server
        .join()
        .expect("IPv6 server thread")
        .unwrap_or_else(|e| panic!("IPv6 server: {e}\n{}", out.describe()));
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_response(out.result(0), 200, 3);
    assert!(head.starts_with("GET /v6 HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("\r\nhost: six.invalid:{port}\r\n")),
        "{head}"
    );
}

#[test]
fn bad_resolve_values_are_usage_errors() {
    for bad in [
        "nothing.invalid",
        "nothing.invalid:80",
        ":80:127.0.0.1",
        "nothing.invalid:http:127.0.0.1",
        "nothing.invalid:80:not-an-address",
        "nothing.invalid:80:127.0.0.1,",
    ] {
        let out = run_fetch(
            &["http://nothing.invalid/".to_string()],
            &["--resolve", bad],
        );
        assert_eq!(out.code, 2, "--resolve {bad}: {}", out.describe());
        assert!(
            out.results.is_empty(),
            "--resolve {bad}: {}",
            out.describe()
        );
        assert!(
            out.stderr.contains("HOST:PORT:ADDR") && out.stderr.contains(bad),
            "--resolve {bad}: the message should name the value and the form: {}",
            out.stderr
        );
    }
}

#[test]
fn localhost_reaches_a_server_on_127_0_0_1() {
    let server = start_server();
    let port = server.addr.port();
    let mut list: Vec<String> = (0..20)
        .map(|i| format!("http://localhost:{port}/{i}"))
        .collect();
    list.push(format!("http://LocalHost:{port}/upper"));
    // RFC 6761 §6.3: names under .localhost are loopback too.
    list.push(format!("http://app.localhost:{port}/sub"));
    let out = run_fetch(&list, &["--timeout", "5"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_eq!(out.results.len(), list.len(), "{}", out.describe());
    for r in &out.results {
        assert_response(r, 200, BODY);
    }
}

#[test]
fn invalid_names_fail_at_once_with_dns() {
    let list: Vec<String> = (0..300)
        .map(|i| format!("http://host-{}.invalid:{}/{i}", i % 30, 8000 + i % 3))
        .chain([
            "http://invalid/".to_string(),
            "https://x.INVALID./".to_string(),
        ])
        .collect();
    let out = run_fetch(&list, &["--timeout", "30"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert_eq!(out.results.len(), list.len(), "{}", out.describe());
    for r in &out.results {
        assert_error(r, "dns");
        assert!(error_text(r).contains("RFC 6761"), "{r}");
    }
    assert_eq!(
        error_total(&out.summary),
        list.len() as u64,
        "{}",
        out.summary
    );
    // A resolver asked for any of them would take seconds to time out or answer.
    assert_finished_within(&out, Duration::from_secs(1));
}

/// A one-request server on [::1]:0 on its own thread: its port, and a handle giving the request
/// head it answered with `body`. Fails the test when the machine has no IPv6 loopback.
fn serve_once_on_ipv6_loopback(body: &'static [u8]) -> (u16, JoinHandle<io::Result<String>>) {
    let listener = TcpListener::bind("[::1]:0")
        .unwrap_or_else(|e| panic!("cannot bind [::1]:0 ({e}); this test needs IPv6 on loopback"));
    let port = listener.local_addr().expect("local addr").port();
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let handle = thread::spawn(move || {
        // Polling accept with a deadline, so a client that never comes cannot hang the join.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(e),
            }
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut head = Vec::new();
        let mut chunk = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            head.extend_from_slice(&chunk[..n]);
        }
        stream.write_all(&ok(body))?;
        Ok(String::from_utf8_lossy(&head).into_owned())
    });
    (port, handle)
}

// ---------------------------------------------------------------------------------------------
// The system resolver, inside a mount namespace

const A: u16 = 1;
const AAAA: u16 = 28;

/// What glibc waits for an unanswered query (`options timeout:`); one attempt, one server.
const SLOW_TIMEOUT: Duration = Duration::from_secs(2);

#[test]
fn hosts_file_names_are_honoured_and_localhost_and_invalid_ask_no_server() {
    let server = start_server();
    let port = server.addr.port();
    let dns = DnsServer::start(&[]);
    // No `localhost` line: ringfetch must know it without any lookup.
    let etc = Etc::new("127.0.0.1 hosts-only.test\n", &dns);
    let mut list: Vec<String> = (0..10)
        .map(|i| format!("http://hosts-only.test:{port}/{i}"))
        .collect();
    list.push(format!("http://localhost:{port}/"));
    list.push(format!("http://never.invalid:{port}/"));
    let out = etc.run_fetch(&list, &["--timeout", "5"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    for i in 0..11 {
        assert_response(out.result(i), 200, BODY);
    }
    assert_error(out.result(11), "dns");
    assert!(error_text(out.result(11)).contains("RFC 6761"));
    assert_eq!(dns.queries(), [], "every name here is answered without DNS");
}

#[test]
fn each_name_is_looked_up_once_per_run() {
    // Two ports per name: each worker keeps an origin's addresses, so only the run-wide cache
    // saves the lookup for a name's second origin.
    let servers = [start_server(), start_server()];
    let dns = DnsServer::start(&[
        ("alpha.test", Answer::A(Ipv4Addr::LOCALHOST)),
        ("beta.test", Answer::A(Ipv4Addr::LOCALHOST)),
    ]);
    let etc = Etc::new("", &dns);
    let list: Vec<String> = (0..200)
        .map(|i| {
            let name = if i % 2 == 0 { "alpha" } else { "beta" };
            let port = servers[i / 2 % 2].addr.port();
            format!("http://{name}.test:{port}/{i}")
        })
        .collect();
    let out = etc.run_fetch(&list, &["-t", "2", "--timeout", "5"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_eq!(out.results.len(), 200, "{}", out.describe());
    for r in &out.results {
        assert_response(r, 200, BODY);
    }
    let counts = dns.assert_each_asked_at_most_once();
    for name in ["alpha.test", "beta.test"] {
        assert_eq!(counts.get(&(name.into(), A)), Some(&1), "{counts:?}");
    }
    let names: BTreeSet<&str> = counts.keys().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["alpha.test", "beta.test"]));
}

#[test]
fn a_failed_lookup_is_cached_too() {
    let dns = DnsServer::start(&[]);
    let etc = Etc::new("", &dns);
    // A port per URL, so each is an origin of its own and only the run-wide cache can answer.
    let list: Vec<String> = (0..50)
        .map(|i| format!("http://missing.test:{}/{i}", 8000 + i))
        .collect();
    let out = etc.run_fetch(&list, &["-t", "2", "--timeout", "5"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert_eq!(out.results.len(), 50, "{}", out.describe());
    for r in &out.results {
        assert_error(r, "dns");
        assert!(error_text(r).contains("cannot resolve"), "{r}");
    }
    let counts = dns.assert_each_asked_at_most_once();
    assert_eq!(
        counts.get(&("missing.test".into(), A)),
        Some(&1),
        "{counts:?}"
    );
}

#[test]
fn unanswered_lookups_stall_neither_other_names_nor_each_other() {
    const SLOW: [&str; 4] = ["slow-1.test", "slow-2.test", "slow-3.test", "slow-4.test"];
    let server = start_server();
    let port = server.addr.port();
    let mut rules: Vec<(&str, Answer)> = SLOW.iter().map(|&n| (n, Answer::Never)).collect();
    rules.push(("fast.test", Answer::A(Ipv4Addr::LOCALHOST)));
    let dns = DnsServer::start(&rules);
    let etc = Etc::new("", &dns);
    let mut list: Vec<String> = SLOW.iter().map(|n| format!("http://{n}:{port}/")).collect();
    list.extend((0..200).map(|i| format!("http://fast.test:{port}/{i}")));
    // One worker: a lookup run on its ring thread would hold up everything behind it.
    let out = etc.run_fetch(&list, &["-t", "1", "--timeout", "10"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert_eq!(out.results.len(), list.len(), "{}", out.describe());

    let slow = SLOW.len() as u64;
    let index = |r: &Value| r["index"].as_u64().expect("integer index");
    let first_slow = out
        .results
        .iter()
        .position(|r| index(r) < slow)
        .expect("slow results exist");
    // JSONL is in completion order: the fast name's results must not wait behind the slow ones.
    assert_eq!(
        first_slow,
        200,
        "slow result lines came before fast ones: {}",
        out.describe()
    );
    for r in &out.results[..200] {
        assert_response(r, 200, BODY);
    }
    for r in &out.results[200..] {
        assert_error(r, "dns");
        assert!(error_text(r).contains("cannot resolve"), "{r}");
    }
    let counts = dns.assert_each_asked_at_most_once();
    for name in SLOW {
        assert_eq!(counts.get(&(name.into(), A)), Some(&1), "{counts:?}");
    }
    // The errors come from the resolver's timeout, so the run lasted at least one of them; four
    // lookups one after another would last four.
    assert!(
        out.elapsed >= SLOW_TIMEOUT.mul_f64(0.9),
        "the slow names were answered? {:?}\n{}",
        dns.queries(),
        out.describe()
    );
    assert_finished_within(&out, SLOW_TIMEOUT * 2);
}

/// How the test's DNS server treats a name; names without a rule get NXDOMAIN.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// This IPv4 address for A, an empty NOERROR (no AAAA records) for other types.
    A(Ipv4Addr),
    /// No reply at all, so the resolver waits out its timeout.
    Never,
}

/// A UDP DNS server on port 53 of a 127.x address of its own, on a thread, recording every
/// question (name, type) it gets. Stops when dropped.
struct DnsServer {
    ip: Ipv4Addr,
    asked: Arc<Mutex<Vec<(String, u16)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Spreads servers over 127.53.0.0/16 so concurrent tests, and concurrent runs of this binary,
/// bind different addresses (resolv.conf cannot name a port, so it is always 53).
static NEXT_SERVER: AtomicU8 = AtomicU8::new(1);

impl DnsServer {
    fn start(rules: &[(&str, Answer)]) -> DnsServer {
        let rules: BTreeMap<String, Answer> =
            rules.iter().map(|&(n, a)| (n.to_string(), a)).collect();
        let pid_part = (std::process::id() % 250) as u8;
        let socket = (0..250)
            .find_map(|_| {
                let ip = Ipv4Addr::new(
                    127,
                    53,
                    pid_part,
                    NEXT_SERVER.fetch_add(1, Ordering::SeqCst),
                );
                UdpSocket::bind((ip, 53)).ok()
            })
            .expect("no free 127.53.x.y:53 to bind a DNS server on (port 53 needs root)");
        let ip = match socket.local_addr().expect("local addr").ip() {
            std::net::IpAddr::V4(ip) => ip,
            other => panic!("bound a DNS server on {other}"),
        };
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let asked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (asked, stop) = (asked.clone(), stop.clone());
            thread::spawn(move || {
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let Some(question) = Question::parse(&buf[..n]) else {
                        continue;
                    };
                    asked
                        .lock()
                        .expect("asked lock")
                        .push((question.name.clone(), question.qtype));
                    if let Some(reply) = question.reply(rules.get(&question.name).copied()) {
                        let _ = socket.send_to(&reply, peer);
                    }
                }
            })
        };
        DnsServer {
            ip,
            asked,
            stop,
            thread: Some(thread),
        }
    }

    /// Every question so far, in arrival order.
    fn queries(&self) -> Vec<(String, u16)> {
        self.asked.lock().expect("asked lock").clone()
    }

    /// Each (name, type) asked at most once (getaddrinfo asks A and AAAA, and the search
    /// domain after a failure; a cached run asks nothing twice). Returns the counts.
    #[track_caller]
    fn assert_each_asked_at_most_once(&self) -> BTreeMap<(String, u16), usize> {
        let mut counts = BTreeMap::new();
        for key in self.queries() {
            *counts.entry(key).or_insert(0) += 1;
        }
        assert!(
            counts.values().all(|&c| c <= 1),
            "a question was asked more than once: {counts:?}"
        );
        counts
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The one question of a DNS query (RFC 1035 §4.1), with the bytes needed to answer it.
struct Question<'a> {
    /// The query up to the end of its question section.
    query: &'a [u8],
    /// Lowercase, dotted, without the root's trailing dot.
    name: String,
    qtype: u16,
}

impl<'a> Question<'a> {
    /// None for anything but a standard query with exactly one question.
    fn parse(query: &'a [u8]) -> Option<Question<'a>> {
        let header = query.get(..12)?;
        let is_query = header[2] & 0x80 == 0;
        if !is_query || header[4..6] != [0, 1] {
            return None;
        }
        let mut labels = Vec::new();
        let mut at = 12;
        loop {
            let len = usize::from(*query.get(at)?);
            at += 1;
            if len == 0 {
                break;
            }
            // Queries carry no compression pointers; a length this big is not a label.
            if len > 63 {
                return None;
            }
            labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
            at += len;
        }
        let fixed = query.get(at..at + 4)?;
        Some(Question {
            query: &query[..at + 4],
            name: labels.join("."),
            qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
        })
    }

    /// The reply `rule` calls for, or None when there must be none.
    fn reply(&self, rule: Option<Answer>) -> Option<Vec<u8>> {
        let (rcode, address) = match rule {
            Some(Answer::Never) => return None,
            None => (3, None),
            Some(Answer::A(ip)) => (0, (self.qtype == A).then_some(ip)),
        };
        let mut reply = self.query.to_vec();
        // QR, the query's opcode and RD, RA, the rcode; one question, answers, no other records.
        reply[2] = 0x80 | (reply[2] & 0x79);
        reply[3] = 0x80 | rcode;
        reply[6..12].copy_from_slice(&[0, u8::from(address.is_some()), 0, 0, 0, 0]);
        if let Some(ip) = address {
            // The name as a pointer to the question's, type A, class IN, TTL 60, 4 bytes.
            reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            reply.extend_from_slice(&ip.octets());
        }
        Some(reply)
    }
}

/// Private /etc/hosts, /etc/resolv.conf (naming only the test's DNS server) and
/// /etc/nsswitch.conf (files, then DNS), for runs inside a mount namespace.
struct Etc {
    dir: TempDir,
}

/// The files `Etc` replaces, all read by glibc's getaddrinfo.
const ETC_FILES: [&str; 3] = ["hosts", "resolv.conf", "nsswitch.conf"];

impl Etc {
    fn new(hosts: &str, dns: &DnsServer) -> Etc {
        let dir = tempdir();
        let write = |name: &str, text: &str| {
            fs::write(dir.path().join(name), text).expect("write a private /etc file")
        };
        write("hosts", hosts);
        // An explicit search domain, so a failed name's second try is the same on every machine
        // (the default comes from the host name) and lands on this server too.
        write(
            "resolv.conf",
            &format!(
                "nameserver {}\nsearch dns-test.invalid\noptions timeout:{} attempts:1\n",
                dns.ip,
                SLOW_TIMEOUT.as_secs()
            ),
        );
        write("nsswitch.conf", "hosts: files dns\n");
        Etc { dir }
    }

    /// `run_fetch` with these files in place of the machine's. The namespace belongs to a thread
    /// of its own, so the ringfetch it spawns sees them and the rest of the test process does not.
    fn run_fetch(&self, urls: &[String], args: &[&str]) -> Output {
        let before = fs::read("/etc/resolv.conf").ok();
        let out = thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.enter();
                    run_fetch(urls, args)
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        assert_eq!(
            fs::read("/etc/resolv.conf").ok(),
            before,
            "the private resolv.conf leaked out of its mount namespace"
        );
        out
    }

    /// Moves the calling thread into a new mount namespace with the private files mounted over
    /// the machine's.
    fn enter(&self) {
        // SAFETY: unshare takes no pointers. CLONE_NEWNS implies CLONE_FS, which a thread of a
        // multithreaded process may unshare; only this thread changes namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            panic!(
                "unshare(CLONE_NEWNS) failed: {}; the resolver tests need root (CAP_SYS_ADMIN) to \
                 give ringfetch its own /etc/hosts and /etc/resolv.conf",
                io::Error::last_os_error()
            );
        }
        // Without this, a shared / would carry the bind mounts back to the machine's namespace.
        mount(None, Path::new("/"), libc::MS_REC | libc::MS_PRIVATE);
        for name in ETC_FILES {
            let target = Path::new("/etc").join(name);
            mount(Some(&self.dir.path().join(name)), &target, libc::MS_BIND);
        }
    }
}

/// mount(2) with no file system type or data; fails the test with the reason.
fn mount(source: Option<&Path>, target: &Path, flags: libc::c_ulong) {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("path without NUL");
    let source = source.map(c);
    let target_c = c(target);
    // SAFETY: every pointer is either null or a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target_c.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    assert_eq!(
        rc,
        0,
        "mount {source:?} on {} (flags {flags:#x}) failed: {}; the resolver tests need root",
        target.display(),
        io::Error::last_os_error()
    );
}

// ---------------------------------------------------------------------------------------------
// Self-checks of the DNS server, with a plain UDP client, so a failing ringfetch test cannot be
// blamed on the harness.

/// A query for `name` of `qtype`, id 0x1234, recursion desired.
fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

#[test]
fn harness_dns_server_answers_a_records_nxdomain_and_nothing() {
    let dns = DnsServer::start(&[
        ("yes.test", Answer::A(Ipv4Addr::new(127, 0, 0, 7))),
        ("mute.test", Answer::Never),
    ]);
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind a client");
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("read timeout");
    let ask = |name: &str, qtype: u16| -> Option<Vec<u8>> {
        client
            .send_to(&query(name, qtype), (dns.ip, 53))
            .expect("send");
        let mut buf = [0u8; 512];
        client.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
    };

    let a = ask("YES.test", A).expect("an answer");
    assert_eq!(&a[..4], &[0x12, 0x34, 0x81, 0x80], "id, QR RD RA, NOERROR");
    assert_eq!(&a[6..8], &[0, 1], "one answer");
    assert_eq!(&a[a.len() - 4..], &[127, 0, 0, 7]);
    let aaaa = ask("yes.test", AAAA).expect("an answer");
    assert_eq!(
        (aaaa[3] & 0x0f, &aaaa[6..8]),
        (0, &[0u8, 0][..]),
        "NOERROR, no data"
    );
    let nx = ask("other.test", A).expect("an answer");
    assert_eq!(nx[3] & 0x0f, 3, "NXDOMAIN");
    assert!(ask("mute.test", A).is_none(), "a Never name got a reply");

    assert_eq!(
        dns.queries(),
        [
            ("yes.test".to_string(), A),
            ("yes.test".to_string(), AAAA),
            ("other.test".to_string(), A),
            ("mute.test".to_string(), A),
        ]
    );
}

/// RFC 8305: a name with an IPv6 address that drops SYNs (a listener whose accept queue is full)
/// and an IPv4 one that answers connects over IPv4 a quarter of a second later, not after
/// --connect-timeout: the second attempt starts while the first still waits.
#[test]
fn a_family_that_drops_syns_costs_a_stagger_not_the_timeout() {
    let server = Hostile::replies(|_| Reply::Send(ok(b"v4")));
    let port = server.addr.port();
    let at: std::net::SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let Ok(_drop_syns) = syn_dropping_listener(at) else {
        println!("skipped: cannot bind [::1]:{port}");
        return;
    };
    let url = format!("http://dual.test:{port}/");
    let pin = format!("dual.test:{port}:[::1],127.0.0.1");
    for transport in ["tcp", "direct"] {
        let started = Instant::now();
        let out = run_fetch(
            std::slice::from_ref(&url),
            &[
                "--resolve",
                &pin,
                "--connect-timeout",
                "8s",
                "--transport",
                transport,
            ],
        );
        let took = started.elapsed();
        assert_eq!(out.code, 0, "{transport}: {}", out.describe());
        assert_response(out.result(0), 200, 2);
        // Tried one after the other, it would wait out the 8 s timeout of [::1] first.
        assert!(took < Duration::from_secs(5), "{transport}: {took:?}");
    }
}
