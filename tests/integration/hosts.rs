//! Memory follows the requests in flight, not the number of hosts a list names: a crawl touches most
//! hosts once, so per-origin state and cached names must not pile up.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

/// Runs `fetch LIST -o out.jsonl` on `urls`; returns its exit code, its result lines, and the peak
/// resident memory (VmHWM) read while it ran.
fn fetch_measuring_rss(urls: impl Iterator<Item = String>, args: &[&str]) -> (i32, usize, u64) {
    let dir = tempdir();
    let mut text = String::new();
    for u in urls {
        text.push_str(&u);
        text.push('\n');
    }
    fs::write(dir.path().join("list.txt"), text).unwrap();
    let mut child = Command::new(bin())
        .current_dir(dir.path())
        .args(["fetch", "list.txt", "-o", "out.jsonl"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ringfetch");
    let status_path = format!("/proc/{}/status", child.id());
    let start = Instant::now();
    let mut peak_kib = 0;
    let code = loop {
        // VmHWM is the peak so far; read it before reaping, while the process still exists.
        if let Ok(status) = fs::read_to_string(&status_path) {
            if let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        assert!(start.elapsed() < CHILD_DEADLINE, "fetch still running");
        thread::sleep(Duration::from_millis(10));
    };
    let lines = fs::read_to_string(dir.path().join("out.jsonl"))
        .unwrap_or_default()
        .lines()
        .count();
    (code, lines, peak_kib)
}

#[test]
fn memory_follows_concurrency_not_the_number_of_hosts() {
    // 200,000 names that never resolve (RFC 6761), each a host of its own.
    let n = 200_000;
    let (code, lines, peak) = fetch_measuring_rss(
        (0..n).map(|i| format!("http://h{i}.invalid/")),
        &["-c", "1024"],
    );
    assert_eq!((code, lines), (1, n));
    assert!(peak < 100 * 1024, "peak RSS {peak} KiB for {n} hosts");
    // 100,000 distinct addresses on a closed port: a connection attempt each.
    let port = closed_port();
    let n = 100_000;
    let (code, lines, peak) = fetch_measuring_rss(
        (0..n).map(|i| {
            format!(
                "http://127.{}.{}.{}:{port}/",
                i >> 16,
                (i >> 8) & 255,
                (i & 255).max(1)
            )
        }),
        &["-c", "1024"],
    );
    assert_eq!((code, lines), (1, n));
    assert!(peak < 100 * 1024, "peak RSS {peak} KiB for {n} hosts");
}

/// `fetch` of `urls` with `args` under `ulimit -n limit` (set by a shell, as a user would); returns the
/// run and its result lines.
fn fetch_with_open_files(
    limit: u32,
    urls: impl Iterator<Item = String>,
    args: &str,
) -> (Finished, Vec<serde_json::Value>) {
    let dir = tempdir();
    let list: String = urls.map(|u| u + "\n").collect();
    fs::write(dir.path().join("list.txt"), list).unwrap();
    let mut cmd = Command::new("sh");
    cmd.current_dir(dir.path()).arg("-c").arg(format!(
        "ulimit -n {limit} && exec {} fetch list.txt -o out.jsonl {args}",
        bin().display()
    ));
    let run = run_child(cmd, None);
    let results =
        parse_jsonl(&fs::read_to_string(dir.path().join("out.jsonl")).unwrap_or_default());
    (run, results)
}

#[test]
fn connects_that_time_out_give_their_descriptors_back() {
    // A listener whose accept queue is full drops every SYN: each connect to it hangs until
    // --connect-timeout. Filled by connections it never accepts.
    let drop_syns = syn_dropping_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = drop_syns.addr;
    // 600 origins (names under .localhost are loopback, RFC 6761), more than the 300 descriptors
    // the run may have: before, each timed-out connect kept its descriptor for the kernel's ~2 min
    // of SYN retries, and half the URLs failed with "Too many open files".
    let urls = (0..600).map(|i| format!("http://h{i}.localhost:{}/", addr.port()));
    let (run, results) = fetch_with_open_files(
        300,
        urls,
        "--transport tcp --connect-timeout 0.3s --retries 0 -c 1000",
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(results.len(), 600);
    for r in &results {
        let error = r["error"].as_str().unwrap_or_default();
        assert!(!error.contains("open files"), "{r}");
        assert!(
            error.starts_with("timeout") || error.starts_with("connect"),
            "{r}"
        );
    }
}

#[test]
fn a_low_open_file_limit_plans_workers_it_can_start_and_clamps_once() {
    // 100 descriptors and -c 1000: direct descriptors need no descriptor per connection, but every
    // worker needs a few. Before, this planned 1,000 worker threads, and 4,360 of 5,000 URLs failed
    // because their worker's ring could not start.
    let serve = start_serve(&[]);
    let urls = (0..2000).map(|i| format!("http://h{i}.localhost:{}/{i}", serve.addr.port()));
    // The default transport: auto takes direct descriptors, and its note gives way to the clamp's
    // warning, so the limit is told in ONE line.
    let (run, results) = fetch_with_open_files(100, urls, "-c 1000");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(results.len(), 2000);
    for r in &results {
        assert_response(r, 200, 1024);
    }
    assert_eq!(run.stderr.matches("clamped").count(), 1, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    let threads: usize = run
        .stdout
        .split(" with ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    // (100 - 32) / 5 descriptors a worker.
    assert!(threads <= 13, "{threads} workers: {}", run.stdout);
}

/// Under an open-file limit of 64 or less the default transport (direct) asked for a fixed-file
/// table larger than the limit, which the kernel refuses: every URL of the run failed. Served by
/// direct descriptors too, so `serve` is given the same limit.
#[test]
fn a_tiny_open_file_limit_still_fetches_everything() {
    let serve = start_serve_with_nofile(40, &["--transport", "direct", "-t", "1"]);
    for limit in [40, 64] {
        let urls =
            (0..300).map(|i| format!("http://h{}.localhost:{}/{i}", i % 30, serve.addr.port()));
        let (run, results) = fetch_with_open_files(limit, urls, "-c 8 -t 1");
        assert_eq!(run.code, 0, "ulimit -n {limit}: {}", run.stderr);
        assert_eq!(results.len(), 300, "ulimit -n {limit}: {}", run.stderr);
        for r in &results {
            assert_response(r, 200, 1024);
        }
    }
}

/// A list over many origins keeps idle connections alive for origins met again, more of them than
/// requests in flight. Over direct descriptors (the default) the rings must hold them, or make room
/// by closing idle ones: before, rings were sized for the requests in flight (16 here: 96 slots) and
/// once idle connections filled them every other URL failed with "direct-descriptor slots of this
/// worker are in use" (94% of a million URLs over 10,000 origins).
#[test]
fn many_origins_keep_their_connections_without_running_out_of_slots() {
    let serve = start_serve(&[]);
    let origins = 600;
    let urls: Vec<String> = (0..3 * origins)
        .map(|i| format!("http://h{}.test:{}/{i}", i % origins, serve.addr.port()))
        .collect();
    let pins: Vec<String> = (0..origins)
        .map(|o| format!("h{o}.test:{}:127.0.0.1", serve.addr.port()))
        .collect();
    let mut args: Vec<&str> = vec!["-c", "16", "-t", "1", "--transport", "direct"];
    for pin in &pins {
        args.extend(["--resolve", pin.as_str()]);
    }
    let out = run_fetch(&urls, &args);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_eq!(out.results.len(), urls.len(), "{}", out.describe());
    for r in &out.results {
        assert_eq!(r["status"], 200, "{r}\n{}", out.describe());
    }
}

/// An origin that finds every connection of the budget taken closes one idle connection of another
/// origin, not all of them: the ones left keep serving their origins when those come back.
#[test]
fn an_origin_short_of_connections_closes_one_idle_connection_not_all() {
    let serve = start_serve(&[]);
    let port = serve.addr.port();
    let dir = tempdir();
    // `ulimit -n 52`, one worker over descriptors: 52 - 32 reserved - 5 for the worker = 15.
    let budget = 15;
    let phase = |origins: std::ops::Range<usize>, name: &str| {
        let text: String = origins
            .map(|o| format!("http://h{o}.test:{port}/{o}\n"))
            .collect();
        fs::write(dir.path().join(name), text).unwrap();
    };
    // The budget's worth of origins, each left with an idle connection; then one more origin; then
    // the first ones again. The pauses let each phase finish before the next arrives on stdin.
    phase(0..budget, "a.txt");
    phase(budget..budget + 1, "b.txt");
    phase(0..budget, "c.txt");
    let pins: String = (0..=budget)
        .map(|o| format!(" --resolve h{o}.test:{port}:127.0.0.1"))
        .collect();
    let mut cmd = Command::new("sh");
    cmd.current_dir(dir.path()).arg("-c").arg(format!(
        "ulimit -n 52 && (cat a.txt; sleep 1; cat b.txt; sleep 1; cat c.txt) | \
         exec {} fetch - -o out.jsonl --json -t 1 --transport tcp{pins}",
        bin().display()
    ));
    let run = run_child(cmd, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let results =
        parse_jsonl(&fs::read_to_string(dir.path().join("out.jsonl")).unwrap_or_default());
    assert_eq!(results.len(), 2 * budget + 1, "{}", run.stderr);
    for r in &results {
        assert_eq!(r["status"], 200, "{r}");
    }
    let summary: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("summary");
    let opened = summary["connections_opened"]
        .as_u64()
        .expect("connections_opened");
    // The one new origin costs one connection of another origin, which opens again when it comes
    // back (and may in turn close one more): a few, never the budget's worth again.
    assert!(
        opened <= budget as u64 + 4,
        "{opened} connections opened for {} origins over a budget of {budget}: idle connections \
         were closed that nobody needed closed\n{summary}",
        budget + 1
    );
}

/// Names in the lists of the two tests below, and URLs per name.
const NAMES: usize = 400;
const PER_NAME: usize = 10;

/// Writes `list.txt` into `dir`: `PER_NAME` URLs of each of `NAMES` host names in turn (sorted by
/// host), all on port 8080; returns the `--resolve` arguments that pin every name to 127.0.0.1.
fn names_behind_one_address(dir: &Path) -> String {
    let mut list = String::new();
    let mut pins = String::new();
    for h in 0..NAMES {
        for i in 0..PER_NAME {
            list.push_str(&format!("http://h{h}.test:8080/p{i}\n"));
        }
        pins.push_str(&format!(" --resolve h{h}.test:8080:127.0.0.1"));
    }
    fs::write(dir.join("list.txt"), list).unwrap();
    pins
}

/// Runs `commands` (sh) in `dir` inside a network namespace of their own with 200 ephemeral ports and
/// no reuse of TIME_WAIT ports (`tcp_tw_reuse=0`, what any address but loopback gets), once
/// `ringfetch serve SERVE_ARGS` listens on 127.0.0.1:8080 there.
fn in_narrow_namespace(dir: &Path, serve_args: &str, commands: &str) -> Finished {
    let script = format!(
        "set -e
         ip link set lo up
         echo '50000 50199' > /proc/sys/net/ipv4/ip_local_port_range
         echo 0 > /proc/sys/net/ipv4/tcp_tw_reuse
         {bin} serve --addr 127.0.0.1:8080 --threads 1 --body-size 100 {serve_args} >/dev/null 2>&1 &
         trap \"kill $!\" EXIT
         i=0; until ss -Htln | grep -q 127.0.0.1:8080; do i=$((i+1)); [ $i -lt 200 ] || exit 99; sleep 0.05; done
         {commands}",
        bin = bin().display()
    );
    let mut cmd = Command::new("unshare");
    cmd.current_dir(dir).args(["-n", "sh", "-c", &script]);
    let run = run_child(cmd, None);
    assert_ne!(run.code, 99, "serve did not start\n{}", run.stderr);
    run
}

/// The run exited 0 and `out.jsonl` in `dir` has a 200 for every URL of the list.
fn assert_every_url_answered(dir: &Path, run: &Finished, what: &str) {
    let results = parse_jsonl(&fs::read_to_string(dir.join("out.jsonl")).unwrap_or_default());
    let failed: Vec<_> = results.iter().filter(|r| r["status"] != 200).collect();
    assert!(
        run.code == 0 && results.len() == NAMES * PER_NAME && failed.is_empty(),
        "{what}: exit {}, {} result lines, {} without a 200, e.g. {:?}\n{}",
        run.code,
        results.len(),
        failed.len(),
        failed.first(),
        tail(&run.stderr)
    );
}

/// Many host names behind one address, more of them kept open than there are local ports toward
/// it: a list sorted by host (each name's URLs together), fetched in a namespace with 200 ephemeral
/// ports and no TIME_WAIT reuse (`in_narrow_namespace`). Idle connections closed to make room must
/// free their port at once (a reset, not a TIME_WAIT minute), and a connect that still finds none
/// waits for one of ours to close: every URL gets its response. Before, most of the 4,000 URLs failed
/// with EADDRNOTAVAIL: 2,280–3,070 under the lower limit (TIME_WAIT filled the range), 3,740 under
/// the higher (the open ones did).
#[test]
fn many_names_behind_one_address_never_run_out_of_local_ports() {
    if let Some(why) = namespace_missing() {
        eprintln!("SKIPPED many_names_behind_one_address_never_run_out_of_local_ports: {why}");
        return;
    }
    let dir = tempdir();
    let pins = names_behind_one_address(dir.path());
    // The fd limit sets how many connections a worker keeps: below the 200 ports, and above them.
    for (nofile, transport) in [
        (160, "tcp"),
        (160, "direct"),
        (1000, "tcp"),
        (1000, "direct"),
    ] {
        let run = in_narrow_namespace(
            dir.path(),
            "",
            &format!(
                "prlimit --nofile={nofile}:{nofile} {bin} fetch list.txt -o out.jsonl --force \
                 --json -c 32 -t 1 --transport {transport}{pins}",
                bin = bin().display()
            ),
        );
        let what = format!("fd limit {nofile}, --transport {transport}");
        assert_every_url_answered(dir.path(), &run, &what);
    }
}

/// An interrupted run's `--resume`, started at once toward the same address, finds local ports: the
/// interrupted run resets its idle connections instead of leaving each port in TIME_WAIT for a
/// minute (same namespace as above; a server slow enough, 50 ms per answer, that SIGINT after 1 s
/// lands mid-run). Before, the resume failed 3,453–3,472 of its URLs with EADDRNOTAVAIL at once.
#[test]
fn an_interrupted_run_leaves_its_resume_the_ports() {
    if let Some(why) = namespace_missing() {
        eprintln!("SKIPPED an_interrupted_run_leaves_its_resume_the_ports: {why}");
        return;
    }
    let dir = tempdir();
    let pins = names_behind_one_address(dir.path());
    for transport in ["tcp", "direct"] {
        let _ = fs::remove_file(dir.path().join("out.jsonl"));
        let fetch = format!(
            "prlimit --nofile=1000:1000 {bin} fetch list.txt -o out.jsonl -c 64 -t 1 \
             --transport {transport}{pins}",
            bin = bin().display()
        );
        let run = in_narrow_namespace(
            dir.path(),
            "--delay 50ms",
            &format!(
                "{fetch} 2>first.err &
                 f=$!
                 sleep 1
                 kill -INT $f
                 rc=0; wait $f || rc=$?
                 echo $rc > first.rc
                 cp out.jsonl first.jsonl
                 {fetch} --resume"
            ),
        );
        let what = format!("--transport {transport}");
        let first_rc = fs::read_to_string(dir.path().join("first.rc")).unwrap_or_default();
        let first = fs::read_to_string(dir.path().join("first.jsonl")).unwrap_or_default();
        // The interruption must have landed mid-run, or the resume proves nothing.
        assert_eq!(
            first_rc.trim(),
            "130",
            "{what}: the first run was not interrupted"
        );
        assert!(
            first.lines().count() < NAMES * PER_NAME,
            "{what}: the first run finished before its interruption"
        );
        assert_every_url_answered(dir.path(), &run, &format!("{what}, the resume"));
    }
}

/// Why a network namespace with its own sysctls cannot be made here, if it cannot.
fn namespace_missing() -> Option<String> {
    if !is_root() {
        return Some("not root (a network namespace needs it)".into());
    }
    ["unshare", "ip", "ss", "prlimit"]
        .into_iter()
        .find(|tool| !have(tool))
        .map(|tool| format!("{tool} is not installed"))
}
