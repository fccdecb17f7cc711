//! What `fetch` makes of the list's bytes: line endings, a BOM, lines that are not UTF-8 or far too
//! long, a list that arrives slowly on stdin; and the request and response shapes that `-X`, `-H` and
//! unusual servers bring (lowercase methods, framing headers, many header lines).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// `ringfetch fetch LIST -o OUT --json ARGS` over raw list bytes (which need not be UTF-8).
fn fetch_bytes(list: &[u8], args: &[&str]) -> (Finished, Vec<Value>) {
    let dir = tempdir();
    let (file, out) = (dir.path().join("urls.txt"), dir.path().join("out.jsonl"));
    fs::write(&file, list).expect("write the URL list");
    let mut cmd = Command::new(bin());
    cmd.arg("fetch")
        .arg(&file)
        .arg("-o")
        .arg(&out)
        .arg("--json")
        .args(args);
    let done = run_child(cmd, None);
    let results = parse_jsonl(&fs::read_to_string(&out).unwrap_or_default());
    (done, results)
}

/// The result line for `index`; fails the test unless there is exactly one.
#[track_caller]
fn result(results: &[Value], index: u64) -> &Value {
    let found: Vec<&Value> = results.iter().filter(|r| r["index"] == index).collect();
    assert_eq!(found.len(), 1, "results for index {index}: {results:?}");
    found[0]
}

#[test]
fn cr_only_crlf_and_lf_endings_each_give_one_result_per_url() {
    let serve = start_serve(&[]);
    let list: Vec<String> = (0..3).map(|i| serve.url(&format!("/{i}"))).collect();
    for ending in ["\r", "\r\n", "\n"] {
        let text: String = list.iter().map(|u| format!("{u}{ending}")).collect();
        for input in [Input::File, Input::Stdin] {
            let out = run_fetch_text(&text, input, &[]);
            assert_eq!(out.code, 0, "{ending:?}: {}", out.describe());
            assert_eq!(out.results.len(), 3, "{ending:?}: {}", out.describe());
            for (i, url) in list.iter().enumerate() {
                let r = out.result(i as u64);
                assert_eq!(r["url"], *url, "{ending:?}");
                assert_response(r, 200, 1024);
            }
        }
    }
}

#[test]
fn a_utf8_bom_before_the_list_is_not_part_of_the_first_url() {
    let serve = start_serve(&[]);
    let (a, b) = (serve.url("/a"), serve.url("/b"));
    let out = run_fetch_text(&format!("\u{feff}{a}\r\n{b}\r\n"), Input::File, &[]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_eq!(out.result(0)["url"], a);
    assert_response(out.result(0), 200, 1024);
    assert_response(out.result(1), 200, 1024);
}

#[test]
fn a_line_that_is_not_utf8_is_an_invalid_url_and_is_not_fetched() {
    let server = Hostile::replies(|_| Reply::Send(ok(b"hi")));
    let mut list = format!("{}\n", server.url("/a")).into_bytes();
    // "café" in Latin-1: replacing the bad byte would fetch a URL that is not in the list.
    list.extend_from_slice(server.url("/caf").as_bytes());
    list.extend_from_slice(b"\xe9\n");
    list.extend_from_slice(format!("{}\n", server.url("/b")).as_bytes());
    let (done, results) = fetch_bytes(&list, &[]);
    assert_eq!(done.code, 1, "{}", done.stderr);
    assert_eq!(results.len(), 3, "{results:?}");
    let bad = result(&results, 1);
    assert_error(bad, "invalid-url");
    assert!(
        bad["error"].as_str().unwrap().contains("not valid UTF-8"),
        "{bad}"
    );
    assert_eq!(bad["attempts"], 0, "{bad}");
    assert_response(result(&results, 0), 200, 2);
    assert_response(result(&results, 2), 200, 2);
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert!(paths.iter().all(|p| p == "/a" || p == "/b"), "{paths:?}");
    let summary = parse_summary(&done.stdout);
    assert_eq!(summary["errors"]["invalid-url"], 1, "{summary}");
}

/// 1. A 100 MB line sits between two URLs; the list is a file, read in 256 KiB pieces.
/// 2. Held whole, that line alone would lift the peak RSS (VmHWM) past 100 MB: read_until buffers it.
/// 3. The URL after it is answered slowly, so the process lives on after reading the long line and
///    its peak RSS can be read while it runs (after exit /proc has no memory figures, and wait4's
///    ru_maxrss starts from the spawning test process's own peak).
/// 4. Read in bounded pieces, that peak stays near what any run needs.
#[test]
fn a_100_mb_line_is_an_invalid_url_read_in_bounded_memory() {
    const LONG: usize = 100 * 1024 * 1024;
    const PEAK_KIB: u64 = 48 * 1024;
    let server = Hostile::replies(|r| match r.path.as_str() {
        "/slow" => Reply::Trickle(ok(b"slow"), Duration::from_millis(20)),
        _ => Reply::Send(ok(b"hi")),
    });
    let dir = tempdir();
    let file = dir.path().join("urls.txt");
    let mut list = fs::File::create(&file).expect("create the URL list");
    write!(list, "{}\n{}", server.url("/a"), server.url("/")).unwrap();
    // Written in pieces, so the test process itself never holds 100 MB either.
    let piece = vec![b'x'; 1024 * 1024];
    for _ in 0..LONG / piece.len() {
        list.write_all(&piece).unwrap();
    }
    write!(list, "\n{}\n", server.url("/slow")).unwrap();
    drop(list);
    let out = dir.path().join("out.jsonl");
    let code = run_under_peak(
        Command::new(bin())
            .arg("fetch")
            .arg(&file)
            .arg("-o")
            .arg(&out)
            .args(["-t", "1"]),
        dir.path(),
        PEAK_KIB,
    );
    let results = parse_jsonl(&fs::read_to_string(&out).unwrap_or_default());
    assert_eq!(code, 1, "{results:?}");
    assert_eq!(results.len(), 3, "{results:?}");
    let bad = result(&results, 1);
    assert_error(bad, "invalid-url");
    let error = bad["error"].as_str().unwrap();
    assert!(error.contains("over the 64 KiB limit"), "{error}");
    let url = bad["url"].as_str().unwrap();
    assert!(url.ends_with('…') && url.len() < 200, "{url}");
    assert!(url.starts_with(&server.url("/xxx")), "{url}");
    assert_response(result(&results, 0), 200, 2);
    assert_response(result(&results, 2), 200, 4);
}

/// Runs `cmd` (stdout and stderr to files in `dir`) to its end and returns its exit code. Fails the
/// test as soon as its VmHWM (peak RSS), read from /proc while it runs, reaches `limit_kib`.
fn run_under_peak(cmd: &mut Command, dir: &Path, limit_kib: u64) -> i32 {
    let stdout = fs::File::create(dir.join("stdout")).expect("stdout file");
    let stderr = fs::File::create(dir.join("stderr")).expect("stderr file");
    // spawn returns after the exec, so /proc/PID shows ringfetch's memory, not ours.
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawn ringfetch");
    let status_file = format!("/proc/{}/status", child.id());
    let start = Instant::now();
    let mut peak = 0;
    loop {
        let hwm = fs::read_to_string(&status_file)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0);
        peak = peak.max(hwm);
        if peak >= limit_kib {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "peak RSS {peak} KiB after {:?}: the long line was held in memory",
                start.elapsed()
            );
        }
        if let Some(status) = child.try_wait().expect("wait for ringfetch") {
            let stderr = fs::read_to_string(dir.join("stderr")).unwrap_or_default();
            let code = status
                .code()
                .unwrap_or_else(|| panic!("ringfetch was killed; stderr:\n{}", tail(&stderr)));
            return code;
        }
        if start.elapsed() > CHILD_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringfetch still running after {CHILD_DEADLINE:?}; killed");
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Kills and reaps a child the test started, however the test ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// 1. A producer process writes one URL (and a comment line) into ringfetch's stdin, then sleeps
///    with the pipe still open.
/// 2. The URL's result line must reach ringfetch's stdout while the producer still holds stdin
///    open: lines are admitted as they arrive, not when a batch of 64 is full or at EOF.
/// 3. The producer ends; ringfetch sees EOF and exits 0.
#[test]
fn stdin_lines_are_fetched_as_they_arrive() {
    let serve = start_serve(&[]);
    let url = serve.url("/first");
    let mut producer = Command::new("sh")
        .args([
            "-c",
            "printf '%s\\r\\n# more to come\\n' \"$1\"; exec sleep 30",
        ])
        .args(["sh", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the producer");
    let pipe = producer.stdout.take().expect("stdout was piped");
    let mut producer = Running(producer);
    let mut fetch = Command::new(bin())
        .args(["fetch", "-o", "-"])
        .stdin(pipe)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ringfetch");
    let stdout = fetch.stdout.take().expect("stdout was piped");
    let mut fetch = Running(fetch);
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no result line while the producer kept stdin open")
        .expect("read ringfetch's stdout");
    assert!(
        producer.0.try_wait().expect("poll the producer").is_none(),
        "the producer ended before the result arrived"
    );
    let results = parse_jsonl(&line);
    assert_eq!(results[0]["index"], 0, "{line}");
    assert_eq!(results[0]["url"], url, "{line}");
    assert_response(&results[0], 200, 1024);
    let _ = producer.0.kill();
    let _ = producer.0.wait();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = fetch.0.try_wait().expect("poll ringfetch") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "ringfetch did not end after its stdin closed"
        );
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
    assert!(rx.recv().is_err(), "more than one result line");
}

#[test]
fn lowercase_head_is_sent_as_head_and_framed_as_head() {
    // An unknown method gets a body; HEAD does not. A lowercase `head` sent as given would be
    // answered with a body that a HEAD-framed connection then reads as the next response.
    let server = Hostile::replies(|r| {
        if r.method == "HEAD" {
            Reply::Send(response("HTTP/1.1 200 OK", &["Content-Length: 100"], b""))
        } else {
            Reply::Send(ok(&[b'x'; 100]))
        }
    });
    let list: Vec<String> = (0..4).map(|i| server.url(&format!("/{i}"))).collect();
    let out = run_fetch(
        &list,
        &["-X", "head", "-p", "4", "-c", "4", "--conns-per-host", "1"],
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    for i in 0..4 {
        assert_response(out.result(i), 200, 0);
    }
    let methods: Vec<String> = server.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["HEAD"; 4]);
}

#[test]
fn framing_headers_without_a_body_and_control_characters_are_usage_errors() {
    let server = Hostile::replies(|_| Reply::Send(ok(b"hi")));
    for (header, says) in [
        ("Content-Length: 5", "--body"),
        ("Transfer-Encoding: chunked", "--body"),
        ("X-A: a\x01b", "control characters"),
        ("X-A: a\rb", "control characters"),
    ] {
        let out = run_fetch(&[server.url("/")], &["-H", header, "--timeout", "2"]);
        assert_eq!(out.code, 2, "{header:?}: {}", out.describe());
        assert!(out.stderr.contains(says), "{header:?}: {}", out.stderr);
        assert!(out.results.is_empty(), "{}", out.describe());
    }
    server.settle();
    assert_eq!(server.connections(), 0, "a usage error fetches nothing");
}

#[test]
fn a_response_with_hundreds_of_header_lines_and_a_zero_padded_length_is_read() {
    let cookies: Vec<String> = (0..300).map(|i| format!("Set-Cookie: c{i}=1")).collect();
    let mut headers: Vec<&str> = cookies.iter().map(String::as_str).collect();
    // Last, so the body is framed right only if all 300 lines before it were parsed.
    headers.push("Content-Length: 000000000000000000000005");
    let reply = response("HTTP/1.1 200 OK", &headers, b"hello");
    let server = Hostile::replies(move |_| Reply::Send(reply.clone()));
    let list: Vec<String> = (0..4).map(|i| server.url(&format!("/{i}"))).collect();
    let out = run_fetch(&list, &["-p", "4", "-c", "4", "--conns-per-host", "1"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    for i in 0..4 {
        assert_response(out.result(i), 200, 5);
    }
    assert_eq!(server.connections(), 1, "{}", out.describe());
}
