//! `ringfetch serve` spoken to over a plain socket: the `listening on` line, body size, HEAD
//! without a body, keep-alive, and answering a pipelined batch in order.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::*;

/// A raw client on one connection.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(serve: &Serve) -> Self {
        let stream = TcpStream::connect(serve.addr).expect("connect to serve");
        // A missing response must fail the test, not hang it.
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        Client {
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.reader
            .get_mut()
            .write_all(bytes)
            .expect("write request");
    }

    /// Reads one response; `head_only` for a HEAD request, whose Content-Length is not a body.
    /// Returns the status and the body. serve frames bodies with Content-Length.
    fn response(&mut self, head_only: bool) -> (u16, Vec<u8>) {
        let mut status_line = String::new();
        self.reader
            .read_line(&mut status_line)
            .expect("read status line");
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut length = None;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("read header");
            let line = line.trim_end_matches("\r\n");
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.trim().parse::<usize>().expect("numeric length"));
                }
            }
        }
        let length = length.expect("serve sends Content-Length");
        let mut body = vec![0; if head_only { 0 } else { length }];
        self.reader.read_exact(&mut body).expect("read body");
        (status, body)
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

#[test]
fn serve_answers_get_head_and_pipelined_batches_on_one_connection() {
    let serve = start_serve(&["--body-size", "10"]);
    let mut client = Client::connect(&serve);

    client.send(get("/any/path?q=1").as_bytes());
    let (status, body) = client.response(false);
    assert_eq!((status, body.len()), (200, 10));

    // A HEAD answer carrying a body would show up as garbage before the next status line.
    client.send(b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(client.response(true).0, 200);
    client.send(get("/after-head").as_bytes());
    assert_eq!(client.response(false), (200, body.clone()));

    // Three requests in one write, three responses in order on the same (kept-alive) socket.
    let batch: String = (0..3).map(|i| get(&format!("/p{i}"))).collect();
    client.send(batch.as_bytes());
    for _ in 0..3 {
        let (status, body) = client.response(false);
        assert_eq!((status, body.len()), (200, 10));
    }
}

#[test]
fn serve_default_body_is_1024_bytes() {
    let serve = start_serve(&[]);
    let mut client = Client::connect(&serve);
    client.send(get("/").as_bytes());
    let (status, body) = client.response(false);
    assert_eq!((status, body.len()), (200, 1024));
}

#[test]
fn serve_empty_body() {
    let serve = start_serve(&["--body-size", "0"]);
    let mut client = Client::connect(&serve);
    client.send(format!("{}{}", get("/a"), get("/b")).as_bytes());
    assert_eq!(client.response(false), (200, Vec::new()));
    assert_eq!(client.response(false), (200, Vec::new()));
}

#[test]
fn serve_on_a_taken_port_says_so() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(bin())
        .args(["serve", "--addr", &addr, "-t", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&addr) && stderr.contains("another program"),
        "{stderr}"
    );
}

#[test]
fn bench_against_a_closed_port_names_the_error() {
    let url = format!("http://127.0.0.1:{}/", closed_port());
    let out = std::process::Command::new(bin())
        .args(["bench", &url, "-c", "2", "-t", "1", "-d", "300ms", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "no response at all is a failed run"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["requests"], 0);
    assert!(
        summary["errors"]["connect"].as_u64().unwrap() > 0,
        "{summary}"
    );
    let example = summary["error_examples"]["connect"].as_str().unwrap();
    assert!(
        example.starts_with("connect: ") && example.contains("refused"),
        "{example}"
    );
}

/// A server whose accept queue is full answers no SYN: connects hang until --connect-timeout. The
/// run must still end at its duration instead of waiting for them.
#[test]
fn bench_ends_on_time_when_connects_hang() {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: listen(2) on a socket we own; a second listen only changes the backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    // Fill the queue: these connections are never accepted.
    let _fillers: Vec<_> = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(
                &listener.local_addr().unwrap(),
                Duration::from_millis(200),
            )
            .ok()
        })
        .collect();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let start = std::time::Instant::now();
    let out = std::process::Command::new(bin())
        .args(["bench", &url, "-c", "8", "-t", "1", "-d", "1s", "--json"])
        .output()
        .unwrap();
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}; connect timeout is 10 s"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `serve --tls-cert/--tls-key` spoken to by a plain rustls client (not ours): TLS 1.3 with ALPN
/// http/1.1, and a pipelined GET + HEAD answered in order inside the session.
#[test]
fn serve_over_tls_with_certificate_files() {
    use std::sync::Arc;

    let dir = tempdir();
    let pki = crate::tls::test_pki(dir.path());
    let serve = start_serve(&[
        "--tls-cert",
        arg(&pki.cert_pem),
        "--tls-key",
        arg(&pki.key_pem),
    ]);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.der()).expect("CA as a root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let sock = TcpStream::connect(serve.addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(
        b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\nHEAD /b HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .expect("send over TLS");
    let mut reader = BufReader::new(tls);
    let mut text = Vec::new();
    // The GET's head and 1024-byte body, then the HEAD's head alone.
    while !(text.ends_with(b"\r\n\r\n")
        && text.windows(4).filter(|w| w == b"\r\n\r\n").count() == 2)
    {
        let mut byte = [0u8; 1];
        reader.read_exact(&mut byte).expect("read over TLS");
        text.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&text);
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{text}");
    assert!(text.contains(&"0123456789abcdef".repeat(64)), "{text}");
    let tls = reader.get_ref();
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(
        tls.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

/// A key that does not belong to the certificate, or a missing file, is a usage error that names
/// the flag, before anything listens.
#[test]
fn serve_tls_usage_errors_name_the_flag() {
    let dir = tempdir();
    let pki = crate::tls::test_pki(dir.path());
    let other = crate::tls::TestCa::new("other")
        .leaf(&["localhost"])
        .write(dir.path(), "other");
    let missing = dir.path().join("missing.pem");
    let cases: [(&std::path::Path, &std::path::Path, &str); 3] = [
        (&pki.cert_pem, &other.1, "do not fit"),
        (&missing, &pki.key_pem, "--tls-cert"),
        (&pki.cert_pem, &missing, "--tls-key"),
    ];
    for (cert, key, says) in cases {
        let out = std::process::Command::new(bin())
            .args(["serve", "--addr", "127.0.0.1:0", "-t", "1", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .expect("run serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{says}: {stderr}");
        assert!(out.stdout.is_empty(), "nothing may listen");
    }
}

/// `serve --listeners 3`: three consecutive ports, named in the first line as a range, each
/// answering; `bench` over the three URLs spreads its connections over them, two to each.
#[test]
fn serve_listens_on_consecutive_ports() {
    use std::process::{Child, Command, Stdio};

    /// Kills the server even when an assertion fails first.
    struct Killed(Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "-t",
            "2",
            "--listeners",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let _server = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let range = line
        .trim_end()
        .strip_prefix("listening on 127.0.0.1:")
        .unwrap_or_else(|| panic!("{line:?}"));
    let (first, last) = range.split_once('-').unwrap_or_else(|| panic!("{line:?}"));
    let (first, last): (u16, u16) = (first.parse().unwrap(), last.parse().unwrap());
    assert_eq!(last, first + 2, "{line:?}");
    let urls: Vec<String> = (first..=last)
        .map(|p| format!("http://127.0.0.1:{p}/x"))
        .collect();
    let out = run_fetch(&urls, &[]);
    assert_eq!(out.code, 0, "{}", out.describe());
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("bench")
        .args(&urls)
        .args(["-c", "6", "-n", "600", "-t", "1", "--json"]);
    let done = run_child(cmd, None);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let s = parse_summary(&done.stdout);
    // Two connections per port; how many requests each port answers depends on timing (a closed
    // loop), so only that every port served some is certain.
    assert_eq!(s["connections_opened"], 6, "{s}");
    for u in s["urls"].as_array().expect("per-URL counts") {
        assert!(u["requests"].as_u64().unwrap() > 0, "{s}");
    }
}

/// serve on descriptors and on direct descriptors: each parses requests in a loop of its own.
fn each_transport(test: impl Fn(&Serve)) {
    for args in [&[][..], &["--transport", "direct"][..]] {
        test(&start_serve(args));
    }
}

impl Client {
    /// Asserts that serve closed the connection: the next read sees the end of the stream.
    fn assert_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest)),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
    }
}

/// Two different lengths: which one frames the body is what request smuggling exploits, so the
/// request is refused and nothing after it is read (RFC 9112 §6.3 rule 5).
#[test]
fn serve_refuses_conflicting_content_lengths_and_closes() {
    each_transport(|serve| {
        let mut client = Client::connect(serve);
        client.send(
            b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
        );
        assert_eq!(client.response(false).0, 400);
        client.assert_closed();
    });
}

/// Content-Length is 1*DIGIT: a sign is not a number, even where a number parser would take it.
#[test]
fn serve_refuses_a_signed_content_length() {
    each_transport(|serve| {
        let mut client = Client::connect(serve);
        client.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: +4\r\n\r\n");
        assert_eq!(client.response(false).0, 400);
        client.assert_closed();
    });
}

/// `close` is a whole token of the Connection list; `notclose` is another option, so the
/// connection stays open for the next request.
#[test]
fn serve_keeps_a_connection_whose_options_only_contain_close() {
    each_transport(|serve| {
        let mut client = Client::connect(serve);
        client.send(b"GET /1 HTTP/1.1\r\nHost: test\r\nConnection: notclose\r\n\r\n");
        assert_eq!(client.response(false).0, 200);
        client.send(get("/2").as_bytes());
        assert_eq!(client.response(false).0, 200);
    });
}

/// Waits for the server to end the connection and returns how long that took; fails the test if it
/// has not within `limit`.
fn closed_within(client: &mut Client, limit: Duration) -> Duration {
    let start = std::time::Instant::now();
    let stream = client.reader.get_mut();
    stream.set_read_timeout(Some(limit)).expect("read timeout");
    let mut rest = Vec::new();
    match client.reader.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("serve did not close the connection within {limit:?}: {e}"),
    }
    start.elapsed()
}

/// A head that never completes is closed after --header-timeout, counted from its first byte: a
/// client trickling a byte now and then does not restart the clock.
#[test]
fn serve_closes_a_head_that_does_not_complete_in_time() {
    for transport in [&[][..], &["--transport", "direct"][..]] {
        let serve = start_serve(&[transport, &["--header-timeout", "1s"]].concat());
        // Fresh connection, nothing sent: the clock runs from accept.
        let mut silent = Client::connect(&serve);
        // A request answered, then a head trickled a byte every 200 ms (past the timeout).
        let mut trickle = Client::connect(&serve);
        trickle.send(get("/").as_bytes());
        assert_eq!(trickle.response(false).0, 200);
        // 6 s of trickling, well past the 1 s timeout: the server must have closed meanwhile.
        let start = std::time::Instant::now();
        let head = format!("GET /slow HTTP/1.1\r\nX-Padding: {}\r\n", "a".repeat(100));
        for byte in head.bytes() {
            if trickle.reader.get_mut().write_all(&[byte]).is_err()
                || start.elapsed() > Duration::from_secs(6)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // Closed already: the end of the stream (or a reset) at once, not a wait.
        closed_within(&mut trickle, Duration::from_millis(500));
        closed_within(&mut silent, Duration::from_secs(10));
    }
}

/// A head trickled a byte at a time within the timeout is answered (the head is parsed
/// incrementally: each byte is searched once).
#[test]
fn serve_answers_a_head_trickled_byte_by_byte() {
    each_transport(|serve| {
        let mut client = Client::connect(serve);
        client.reader.get_mut().set_nodelay(true).expect("nodelay");
        for byte in b"GET /trickle HTTP/1.1\r\nHost: test\r\nX-Padding: abcdefghijklmnop\r\n\r\n" {
            client.send(&[*byte]);
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(client.response(false).0, 200);
    });
}

/// A head past 64 KiB is refused with 431 and the connection closed.
#[test]
fn serve_refuses_a_head_over_64_kib() {
    each_transport(|serve| {
        let mut client = Client::connect(serve);
        let head = format!(
            "GET / HTTP/1.1\r\nHost: test\r\nX-Big: {}\r\n\r\n",
            "a".repeat(70 * 1024)
        );
        // serve may refuse and close before taking it all: a failed write is fine.
        let _ = client.reader.get_mut().write_all(head.as_bytes());
        assert_eq!(client.response(false).0, 431);
        client.assert_closed();
    });
}

/// A kept-alive connection idle past --idle-timeout is closed; one that is busy is not.
#[test]
fn serve_closes_an_idle_connection() {
    for transport in [&[][..], &["--transport", "direct"][..]] {
        let serve = start_serve(&[transport, &["--idle-timeout", "1s"]].concat());
        let mut client = Client::connect(&serve);
        client.send(get("/").as_bytes());
        assert_eq!(client.response(false).0, 200);
        let took = closed_within(&mut client, Duration::from_secs(10));
        assert!(
            took >= Duration::from_millis(900),
            "{transport:?}: closed after {took:?}"
        );
    }
}

/// The server's peak resident memory (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"));
    kib * 1024
}

/// 16 KiB of pipelined GETs against 1 MiB bodies asks for ~600 MB of answers: serve answers them a
/// bounded chunk at a time (its memory stays small), reads no more while they wait, and closes the
/// connection when the client takes nothing for --write-timeout.
#[test]
fn serve_bounds_pipelined_answers_and_closes_a_client_that_never_reads() {
    for transport in [&[][..], &["--transport", "direct"][..]] {
        let serve =
            start_serve(&[transport, &["--body-size", "1M", "--write-timeout", "2s"]].concat());
        let request = get("/");
        let batch = request.repeat(16 * 1024 / request.len());
        let asked = (batch.len() / request.len()) as u64 * (1 << 20);
        let mut client = Client::connect(&serve);
        client.send(batch.as_bytes());
        // Long enough for the server to answer all at once, if it did.
        std::thread::sleep(Duration::from_secs(1));
        let peak = peak_rss(serve.pid());
        eprintln!(
            "{transport:?}: serve peak RSS {} KiB for {asked} bytes asked",
            peak / 1024
        );
        assert!(
            peak < 64 << 20,
            "{transport:?}: serve peak RSS {peak} bytes"
        );
        // Past the write timeout: what the client reads now is what was sent before the close.
        std::thread::sleep(Duration::from_secs(5));
        let stream = client.reader.get_mut();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let mut got = 0u64;
        let mut buf = vec![0; 1 << 20];
        loop {
            match client.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("{transport:?}: serve did not close the connection: {e}"),
            }
            assert!(
                got < asked / 4,
                "{transport:?}: serve went on sending ({got} bytes)"
            );
        }
    }
}

/// 400 slowloris connections against a server with 200 descriptors: a legitimate client is still
/// answered, once --header-timeout has cleared the ones ahead of it in the listen backlog.
#[test]
fn serve_stays_up_against_slowloris_past_its_descriptor_limit() {
    for transport in [&[][..], &["--transport", "direct"][..]] {
        let serve =
            start_serve_with_nofile(200, &[transport, &["--header-timeout", "2s"]].concat());
        let mut stalled = Vec::with_capacity(400);
        for _ in 0..400 {
            let mut s = TcpStream::connect(serve.addr).expect("connect");
            s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n")
                .expect("write");
            stalled.push(s);
        }
        let start = std::time::Instant::now();
        let mut client = Client::connect(&serve);
        client
            .reader
            .get_mut()
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        client.send(get("/").as_bytes());
        assert_eq!(client.response(false).0, 200, "{transport:?}");
        eprintln!("{transport:?}: answered after {:?}", start.elapsed());
        drop(stalled);
    }
}

/// Over https the header timeout covers the TLS handshake: a client that connects and says nothing
/// is closed.
#[test]
fn serve_closes_a_silent_https_client() {
    for wire in [Wire::Https, Wire::DirectHttps] {
        let serve = start_serve_on(wire, &["--header-timeout", "1s"]);
        let mut client = Client::connect(&serve);
        let took = closed_within(&mut client, Duration::from_secs(10));
        assert!(
            took >= Duration::from_millis(900),
            "{wire:?}: closed after {took:?}"
        );
    }
}

/// A timeout of 0 would mean none: a usage error (exit 2) that names the flags; so is a duration
/// that is not one.
#[test]
fn serve_timeout_usage_errors_name_the_flag() {
    for (flag, value, says) in [
        ("--header-timeout", "0", "--header-timeout"),
        ("--idle-timeout", "0s", "--idle-timeout"),
        ("--write-timeout", "0ms", "--write-timeout"),
        ("--write-timeout", "soon", "--write-timeout"),
    ] {
        // Under timeout(1): a serve that took the flag would listen forever; this way it fails (124).
        let out = std::process::Command::new("timeout")
            .arg("10")
            .arg(bin())
            .args(["serve", "--addr", "127.0.0.1:0", "-t", "1", flag, value])
            .output()
            .expect("run serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(says), "{flag} {value}: {stderr}");
        assert!(out.stdout.is_empty(), "nothing may listen");
    }
}

/// Past its open-file limit, `serve` (default `--transport auto`) accepts into direct descriptors:
/// under 200 descriptors, 320 clients that each keep their connection open are all answered. With
/// `--transport tcp` the ones past the limit wait in the backlog, unanswered.
#[test]
fn past_its_descriptor_limit_serve_takes_direct_descriptors() {
    for (transport, all_answered) in [("auto", true), ("tcp", false)] {
        // Connections answered and kept alive hold their descriptors: no idle timeout frees them
        // while the test reads.
        let args = ["--transport", transport, "--idle-timeout", "300s"];
        let serve = start_serve_with_nofile(200, &args);
        let mut clients: Vec<TcpStream> = (0..320)
            .map(|_| {
                let mut s = TcpStream::connect(serve.addr).expect("connect");
                s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                s
            })
            .collect();
        // Time to accept and answer what it can; then each read waits briefly.
        std::thread::sleep(Duration::from_secs(2));
        let mut answered = 0;
        // By reference: a client dropped here would free the server a descriptor for the next.
        for c in &mut clients {
            c.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut head = [0u8; 12];
            if c.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200") {
                answered += 1;
            }
        }
        if all_answered {
            assert_eq!(answered, 320, "{transport}");
        } else {
            assert!(answered < 200, "{transport}: {answered}");
        }
    }
}
