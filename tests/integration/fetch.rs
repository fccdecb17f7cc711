//! `ringfetch fetch` and `ringfetch bench` against the embedded `serve`: input parsing, indices,
//! sharding, output modes, `--save-dir`, HEAD, the fd clamp, usage errors, invalid URLs. The tests
//! that load the server run over http and https alike (`over_each_wire!`).
//! Protocol edge cases live in `hostile`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;

fn urls(serve: &Serve, n: usize) -> Vec<String> {
    (0..n).map(|i| serve.url(&format!("/{i}"))).collect()
}

/// Every result 200 with `body_bytes`, indices exactly 0..n, each `url` the line it came from.
#[track_caller]
fn assert_all_ok(out: &Output, list: &[String], body_bytes: u64) {
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_eq!(out.results.len(), list.len(), "{}", out.describe());
    let by_index = out.by_index();
    let expected: Vec<u64> = (0..list.len() as u64).collect();
    assert_eq!(by_index.keys().copied().collect::<Vec<_>>(), expected);
    for (i, r) in by_index {
        assert_eq!(r["url"], list[i as usize], "url of {r}");
        assert_response(r, 200, body_bytes);
    }
}

fn thousand_urls_pipelined_all_ok(wire: Wire) {
    let serve = start_serve_on(wire, &[]);
    let list = urls(&serve, 1000);
    let out = run_fetch(&list, &serve.client_args(&["-p", "16"]));
    assert_all_ok(&out, &list, 1024);
    for r in &out.results {
        // serve never drops a connection, so nothing is re-sent.
        assert_eq!(r["attempts"], 1, "{r}");
        assert!(r["elapsed_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{r}");
        assert!(
            r.get("path").is_none(),
            "path only appears with --save-dir: {r}"
        );
    }
    let s = &out.summary;
    assert_eq!(s["requests"], 1000, "{s}");
    assert_eq!(s["status"], json!({"200": 1000}), "{s}");
    assert_eq!(error_total(s), 0, "{s}");
    // `bytes` may count bodies or the whole wire; either way it is at least the bodies.
    assert!(s["bytes"].as_u64().is_some_and(|b| b >= 1024 * 1000), "{s}");
    assert!(s["elapsed_s"].as_f64().is_some_and(|x| x > 0.0), "{s}");
    assert!(s["rps"].as_f64().is_some_and(|x| x > 0.0), "{s}");
    assert!(
        s["connections_opened"].as_u64().is_some_and(|c| c >= 1),
        "{s}"
    );
    assert!(s["threads"].as_u64().is_some_and(|t| t >= 1), "{s}");
    let latency = &s["latency_us"];
    let order = ["p50", "p90", "p99", "p999", "max"];
    let values: Vec<f64> = order
        .iter()
        .map(|k| {
            latency[k]
                .as_f64()
                .unwrap_or_else(|| panic!("latency_us.{k}: {s}"))
        })
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] <= w[1]),
        "percentiles out of order: {s}"
    );
    let mean = latency["mean"].as_f64().expect("latency_us.mean");
    assert!(mean > 0.0 && mean <= values[4], "{s}");
}

#[test]
fn blank_and_comment_lines_are_skipped_and_not_numbered() {
    let serve = start_serve(&[]);
    let (a, b, c) = (serve.url("/a"), serve.url("/b"), serve.url("/c"));
    let commented = serve.url("/commented");
    // The last line has no trailing newline on purpose.
    let text = format!("# a list\n\n{a}\n#{commented}\n\n\n{b}\n# end\n{c}");
    let out = run_fetch_text(&text, Input::File, &[]);
    assert_all_ok(&out, &[a, b, c], 1024);
}

#[test]
fn shard_keeps_only_its_indices() {
    let serve = start_serve(&[]);
    let list = urls(&serve, 10);
    let out = run_fetch(&list, &["--shard", "1/3"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    let by_index = out.by_index();
    // `index` stays the position in the whole list, so shards can be merged afterwards.
    assert_eq!(by_index.keys().copied().collect::<Vec<_>>(), vec![1, 4, 7]);
    for (i, r) in by_index {
        assert_eq!(r["url"], list[i as usize], "{r}");
        assert_response(r, 200, 1024);
    }
    assert_eq!(out.summary["requests"], 3, "{}", out.summary);
}

fn reads_urls_from_stdin(wire: Wire) {
    let serve = start_serve_on(wire, &[]);
    let list = urls(&serve, 5);
    for input in [Input::Stdin, Input::Dash] {
        let out = run_fetch_text(&lines(&list), input, &serve.client_args(&[]));
        assert_all_ok(&out, &list, 1024);
    }
}

#[test]
fn output_dash_writes_results_to_stdout_and_summary_to_stderr() {
    let serve = start_serve(&[]);
    let list = urls(&serve, 20);
    let dir = tempdir();
    let file = dir.path().join("urls.txt");
    fs::write(&file, lines(&list)).expect("write list");
    let mut cmd = Command::new(bin());
    cmd.arg("fetch").arg(&file).args(["-o", "-", "--json"]);
    let done = run_child(cmd, None);
    assert_eq!(done.code, 0, "stderr:\n{}", done.stderr);
    // stdout holds nothing but result lines.
    let results = parse_jsonl(&done.stdout);
    assert_eq!(results.len(), 20, "stdout:\n{}", done.stdout);
    let indices: BTreeSet<u64> = results.iter().filter_map(|r| r["index"].as_u64()).collect();
    assert_eq!(indices, (0..20).collect());
    for r in &results {
        assert_response(r, 200, 1024);
    }
    let summary = parse_summary(&done.stderr);
    assert_eq!(summary["requests"], 20, "stderr:\n{}", done.stderr);
}

fn save_dir_holds_each_body_under_its_index(wire: Wire) {
    let serve = start_serve_on(wire, &["--body-size", "3000"]);
    let list = urls(&serve, 20);
    let root = tempdir();
    // Not created beforehand: ringfetch must create it.
    let save = root.path().join("saved");
    let out = run_fetch(
        &list,
        &serve.client_args(&["-p", "4", "--save-dir", arg(&save)]),
    );
    assert_all_ok(&out, &list, 3000);
    for (i, r) in out.by_index() {
        let path = r["path"]
            .as_str()
            .unwrap_or_else(|| panic!("saved result without path: {r}"));
        assert_eq!(
            Path::new(path).file_name().and_then(|n| n.to_str()),
            Some(i.to_string().as_str()),
            "{r}"
        );
        assert_eq!(fs::metadata(path).map(|m| m.len()).ok(), Some(3000), "{r}");
        assert_eq!(saved(&save, i).map(|b| b.len()), Some(3000), "{r}");
    }
    // Exactly one file per URL: no temp files left behind.
    let expected: Vec<String> = {
        let mut names: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(entries(&save), expected);
}

fn save_dir_writes_empty_file_for_empty_body(wire: Wire) {
    let serve = start_serve_on(wire, &["--body-size", "0"]);
    let list = urls(&serve, 5);
    let root = tempdir();
    let save = root.path().join("empty");
    let out = run_fetch(&list, &serve.client_args(&["--save-dir", arg(&save)]));
    assert_all_ok(&out, &list, 0);
    for i in 0..5 {
        assert_eq!(saved(&save, i), Some(Vec::new()), "file for index {i}");
    }
}

fn head_requests_have_no_body(wire: Wire) {
    let serve = start_serve_on(wire, &[]);
    let list = urls(&serve, 50);
    // Pipelined, so a HEAD response whose Content-Length were taken as a body would swallow the
    // next response.
    let out = run_fetch(&list, &serve.client_args(&["-X", "HEAD", "-p", "8"]));
    assert_all_ok(&out, &list, 0);
}

fn single_thread_run(wire: Wire) {
    let serve = start_serve_on(wire, &[]);
    let list = urls(&serve, 200);
    let out = run_fetch(&list, &serve.client_args(&["-t", "1", "-p", "4"]));
    assert_all_ok(&out, &list, 1024);
    assert_eq!(out.summary["threads"], 1, "{}", out.summary);
}

/// `fetch -c 1024` under `ulimit -n 256`, every URL of 2,000 fetched: over tcp with one clamp line;
/// under `--transport auto` over direct descriptors, unclamped.
fn fetch_under_ulimit_256(transport: &str) -> (Finished, Vec<Value>) {
    let serve = start_serve(&[]);
    let list = urls(&serve, 2000);
    let dir = tempdir();
    let file = dir.path().join("urls.txt");
    let out_file = dir.path().join("out.jsonl");
    fs::write(&file, lines(&list)).expect("write list");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -n 256 && exec "$0" "$@""#)
        .arg(bin())
        .arg("fetch")
        .arg(&file)
        .arg("-o")
        .arg(&out_file)
        .args(["--json", "-c", "1024", "-v", "--transport", transport]);
    let done = run_child(cmd, None);
    assert_eq!(done.code, 0, "stderr:\n{}", tail(&done.stderr));
    let results = parse_jsonl(&fs::read_to_string(&out_file).unwrap_or_default());
    assert_eq!(results.len(), 2000);
    let indices: BTreeSet<u64> = results.iter().filter_map(|r| r["index"].as_u64()).collect();
    assert_eq!(indices.len(), 2000);
    for r in &results {
        assert_response(r, 200, 1024);
    }
    (done, results)
}

fn clamp_lines(stderr: &str) -> usize {
    stderr.lines().filter(|l| l.contains("clamped")).count()
}

#[test]
fn low_fd_limit_clamps_concurrency_with_one_warning() {
    let (done, _) = fetch_under_ulimit_256("tcp");
    assert_eq!(
        clamp_lines(&done.stderr),
        1,
        "exactly one clamp warning; stderr:\n{}",
        tail(&done.stderr)
    );
}

/// Past the limit, auto (direct descriptors wherever the kernel has them) connects without clamping,
/// and prints nothing about the limit: `-v` says which transport and why.
#[test]
fn low_fd_limit_takes_direct_descriptors_under_auto() {
    let (done, _) = fetch_under_ulimit_256("auto");
    assert_eq!(clamp_lines(&done.stderr), 0, "{}", tail(&done.stderr));
    assert!(
        done.stderr
            .contains("transport direct (auto: this kernel has io_uring direct descriptors"),
        "{}",
        tail(&done.stderr)
    );
}

#[test]
fn usage_errors_exit_2_and_fetch_nothing() {
    // A counting server: a usage error must be found before any connection is made.
    let server = Hostile::replies(|_| Reply::Send(ok(b"x")));
    let list = vec![server.url("/")];
    let cases: &[&[&str]] = &[
        &["-c", "0"],
        &["--shard", "5/2"],
        &["--shard", "2/0"],
        &["--timeout", "soon"],
        &["--no-such-flag"],
        &["--cacert", "/nonexistent/ca.pem"],
        &["-p", "0"],
        &["--refill-at", "16", "-p", "16"],
        &["-H", "no colon here"],
        &["-X", "CONNECT"],
        // Counts past their range: a typo, not a plan (-c 10^12 tried to start 4,992 workers).
        &["-c", "1000000000000"],
        &["--conns-per-host", "99999999999"],
        &["--retries", "4000000000"],
        &["-L", "--max-redirs", "5000"],
        &["--retry-status", "429,x"],
    ];
    for args in cases {
        let out = run_fetch(&list, args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.describe());
        assert!(
            !out.stderr.trim().is_empty(),
            "{args:?}: usage errors explain themselves"
        );
        assert!(out.results.is_empty(), "{args:?}: {}", out.describe());
    }
    let out = run_fetch_text(&lines(&list), Input::Missing, &[]);
    assert_eq!(out.code, 2, "missing input file: {}", out.describe());
    assert!(!out.stderr.trim().is_empty());
    assert!(out.results.is_empty(), "{}", out.describe());
    server.settle();
    assert_eq!(
        server.connections(),
        0,
        "a usage error must not fetch anything"
    );
}

#[test]
fn invalid_urls_are_reported_without_sending() {
    let serve = start_serve(&[]);
    let list = vec![
        "ftp://x".to_string(),
        "not a url".to_string(),
        "http://".to_string(),
        serve.url("/fine"),
    ];
    let out = run_fetch(&list, &[]);
    assert_eq!(out.code, 1, "{}", out.describe());
    let by_index = out.by_index();
    assert_eq!(by_index.len(), 4, "{}", out.describe());
    for i in 0..3 {
        let r = by_index[&i];
        assert_eq!(r["url"], list[i as usize], "url is echoed as given: {r}");
        assert_error(r, "invalid-url");
        assert_eq!(r["attempts"], 0, "{r}");
        assert_eq!(r["status"], Value::Null, "{r}");
        assert_eq!(r["body_bytes"], 0, "{r}");
    }
    assert_response(by_index[&3], 200, 1024);
    assert_eq!(out.summary["errors"]["invalid-url"], 3, "{}", out.summary);
    assert_eq!(out.summary["requests"], 1, "{}", out.summary);
}

/// https to a port that speaks plain http: a tls error that says so, and the http URL beside it
/// is not disturbed.
#[test]
fn https_to_a_plain_port_is_a_tls_error_that_says_so() {
    let serve = start_serve(&[]);
    let list = vec![format!("https://{}/", serve.addr), serve.url("/plain")];
    let out = run_fetch(&list, &["--retries", "0"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    let tls = out.result(0);
    assert_error(tls, "tls");
    assert!(
        tls["error"]
            .as_str()
            .is_some_and(|e| e.contains("plain http")),
        "{tls}"
    );
    assert_eq!(tls["status"], Value::Null, "{tls}");
    assert_response(out.result(1), 200, 1024);
}

/// A connection per request over https: the handshake runs for each, later ones resume the
/// worker's session, and the summary counts both.
#[test]
fn bench_no_keepalive_over_https_resumes_sessions() {
    let serve = start_serve_on(Wire::Https, &[]);
    for (resume, extra) in [(true, None), (false, Some("--no-tls-resume"))] {
        let mut args = vec!["-c", "2", "-t", "1", "-n", "40", "--no-keepalive", "--json"];
        args.extend(extra);
        let mut cmd = Command::new(bin());
        cmd.arg("bench")
            .arg(serve.url("/"))
            .args(serve.client_args(&args));
        let done = run_child(cmd, None);
        assert_eq!(done.code, 0, "stderr:\n{}", tail(&done.stderr));
        let s = parse_summary(&done.stdout);
        assert_eq!(s["requests"], 40, "{s}");
        assert_eq!(error_total(&s), 0, "{s}");
        // One connection per request; the other connection may open as the last request goes out
        // and find the budget spent.
        let opened = s["connections_opened"]
            .as_u64()
            .expect("connections_opened");
        assert!((40..=41).contains(&opened), "{s}");
        assert_eq!(s["tls_handshakes"], opened, "{s}");
        let resumed = s["tls_resumed"].as_u64().expect("tls_resumed");
        if resume {
            // Only the first connection or two start before the worker holds a ticket.
            assert!(resumed >= 38, "{s}");
        } else {
            assert_eq!(resumed, 0, "{s}");
        }
    }
}

crate::over_each_wire!(
    thousand_urls_pipelined_all_ok,
    save_dir_holds_each_body_under_its_index,
    save_dir_writes_empty_file_for_empty_body,
    head_requests_have_no_body,
    single_thread_run,
    bench_with_request_count_against_serve,
    reads_urls_from_stdin,
);

fn bench_with_request_count_against_serve(wire: Wire) {
    let serve = start_serve_on(wire, &[]);
    let mut cmd = Command::new(bin());
    cmd.arg("bench")
        .arg(serve.url("/"))
        .args(serve.client_args(&["-c", "4", "-p", "4", "-t", "1", "-n", "2000", "--json"]));
    let done = run_child(cmd, None);
    assert_eq!(done.code, 0, "stderr:\n{}", tail(&done.stderr));
    let s = parse_summary(&done.stdout);
    assert_eq!(s["requests"], 2000, "{s}");
    assert_eq!(error_total(&s), 0, "{s}");
    assert_eq!(s["status"], json!({"200": 2000}), "{s}");
}

#[test]
fn bench_without_url_runs_embedded_server_for_duration() {
    let mut cmd = Command::new(bin());
    cmd.arg("bench")
        .args(["-c", "4", "-p", "4", "-t", "1", "-d", "1s", "--json"]);
    let done = run_child(cmd, None);
    assert_eq!(done.code, 0, "stderr:\n{}", tail(&done.stderr));
    assert!(done.elapsed.as_secs_f64() < 10.0, "took {:?}", done.elapsed);
    let s = parse_summary(&done.stdout);
    assert!(s["requests"].as_u64().is_some_and(|n| n > 0), "{s}");
    assert_eq!(error_total(&s), 0, "{s}");
    let elapsed = s["elapsed_s"].as_f64().unwrap_or(0.0);
    assert!(
        (0.8..5.0).contains(&elapsed),
        "-d 1s ran for {elapsed} s: {s}"
    );
}

/// `ringfetch fetch BIG -o - | head -1`: once the reader of the results is gone, the rest of the list
/// must not be fetched (a 10-million-line list would otherwise run to the end for nothing), and the
/// run ends quietly with status 0, as ripgrep does on a broken pipe.
#[test]
fn closed_stdout_stops_the_run_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let server = Hostile::replies(|_| Reply::Send(ok(b"x")));
    let dir = tempdir();
    let list = dir.path().join("urls.txt");
    let text: String = (0..100_000)
        .map(|i| format!("{}\n", server.url(&format!("/{i}"))))
        .collect();
    fs::write(&list, text).unwrap();
    let mut child = Command::new(bin())
        .args(["fetch", arg(&list), "-o", "-", "-t", "1", "-p", "16"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader drops stdout here, like `head -1` exiting.
    let v: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["status"], 200, "{first}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "a closed pipe is not an error: {stderr}"
    );
    server.settle();
    let fetched = server.requests().len();
    assert!(
        fetched < 50_000,
        "kept fetching after the reader left: {fetched} requests"
    );
}

/// A panic in a connection task (a bug; here the test hook `RINGFETCH_TEST_PANIC` makes one) costs the
/// requests on that connection only: each gets an `internal` line, the run goes on, exits 1 and says
/// so. Before, the panic left those URLs without a line and the run waiting forever. With `left:`, a
/// second panic escapes the pump: the worker's sweep still gives the requests it stranded their lines.
#[test]
fn a_panic_in_a_connection_task_costs_its_requests_only() {
    let serve = start_serve(&[]);
    let mut list = urls(&serve, 1000);
    list[500] = serve.url("/boom");
    for (hook, most_lost) in [("head:/boom", 1), ("left:/boom", 16)] {
        let dir = tempdir();
        let (input, output) = (dir.path().join("urls"), dir.path().join("out.jsonl"));
        fs::write(&input, lines(&list)).unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("fetch")
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .args(["-p", "16", "-c", "64", "-t", "1"])
            .env("RINGFETCH_TEST_PANIC", hook)
            .env("RUST_BACKTRACE", "0");
        let run = run_child(cmd, None);
        let results = parse_jsonl(&fs::read_to_string(&output).unwrap());
        let what = format!("{hook}: exit {}\n{}", run.code, tail(&run.stderr));
        assert_eq!(run.code, 1, "{what}");
        assert!(run.stderr.contains("caught: a bug in ringfetch"), "{what}");
        let indexes: BTreeSet<u64> = results
            .iter()
            .map(|r| r["index"].as_u64().unwrap())
            .collect();
        assert_eq!((results.len(), indexes.len()), (1000, 1000), "{what}");
        let lost: Vec<&Value> = results.iter().filter(|r| r["status"] != 200).collect();
        assert!(
            !lost.is_empty() && lost.len() <= most_lost,
            "{what}\n{lost:?}"
        );
        for r in &lost {
            assert_error(r, "internal");
        }
        assert!(lost.iter().any(|r| r["index"] == 500), "{what}\n{lost:?}");
    }
}

/// Every count has a range, checked before anything starts: past it, exit 2 with the bound (before,
/// `bench --body-size 2G` built the body, `serve --listeners` ran past port 65535).
#[test]
fn counts_past_their_range_are_usage_errors_in_every_command() {
    let cases: &[&[&str]] = &[
        &["bench", "-c", "20000000", "-n", "1"],
        &["bench", "--body-size", "2G", "-n", "1"],
        &["serve", "--addr", "127.0.0.1:65500", "--listeners", "100"],
        &["serve", "--addr", "127.0.0.1:0", "--listeners", "5000"],
        &["serve", "--addr", "127.0.0.1:0", "--body-size", "2G"],
    ];
    for args in cases {
        let mut cmd = Command::new(bin());
        cmd.args(*args);
        let done = run_child(cmd, None);
        assert_eq!(done.code, 2, "{args:?}: {}", done.stderr);
        assert!(
            done.stderr.contains("at most") || done.stderr.contains("past port"),
            "{args:?}: {}",
            done.stderr
        );
    }
}

/// On a terminal, `fetch` draws one live line: URLs done of the list's total (counted beside the
/// run), the rate and the errors by kind; `--json`, `-q` or a stderr that is not a terminal (every
/// other test) silence it. `script` gives the run a pseudo-terminal.
#[test]
fn fetch_progress_line_only_on_a_terminal() {
    let serve = start_serve(&["--delay", "40ms"]);
    let dir = tempdir();
    let list = dir.path().join("list");
    let mut text = lines(&urls(&serve, 60));
    text.push_str("http://127.0.0.1:1/refused\n");
    fs::write(&list, text).unwrap();
    let run_on_tty = |extra: &str| {
        let line = format!(
            "{} fetch {} -c 4 -t 1 --retries 0 -o {}/out-{} {extra}",
            bin().display(),
            list.display(),
            dir.path().display(),
            extra.replace(' ', "")
        );
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]);
        run_child(cmd, None).stdout
    };
    let text = run_on_tty("");
    assert!(
        text.contains("/61 URLs"),
        "no live line with the total: {text}"
    );
    assert!(text.contains("/s"), "{text}");
    assert!(text.contains("errors: connect 1"), "{text}");
    for quiet in ["--json", "-q"] {
        let text = run_on_tty(quiet);
        assert!(!text.contains(" URLs "), "live line with {quiet}: {text}");
    }
}
