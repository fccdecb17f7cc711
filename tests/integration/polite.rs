//! Politeness: `--host-rate` / `--host-delay` pace each origin (over all workers) without slowing
//! the others, and `--retry-status` waits out a server's "try later" (Retry-After or backoff).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

/// A server that notes when each request arrived, then answers 200.
fn timed_server() -> (Hostile, Arc<Mutex<Vec<Instant>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = Hostile::start(move |conn| loop {
        let batch = conn.next_requests()?;
        if batch.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        for _ in &batch {
            log.lock().unwrap().push(Instant::now());
            out.extend_from_slice(&ok(b"polite"));
        }
        conn.send(&out)?;
    });
    (server, seen)
}

#[test]
fn host_rate_paces_each_origin_and_never_the_others() {
    let servers: Vec<_> = (0..4).map(|_| timed_server()).collect();
    // Interleaved, so every origin has URLs waiting from the start; two workers, so the pace must
    // hold across them.
    let mut list = Vec::new();
    for i in 0..12 {
        for (server, _) in &servers {
            list.push(server.url(&format!("/{i}")));
        }
    }
    let out = run_fetch(&list, &["--host-rate", "20", "-t", "2", "-p", "4"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert!(
        out.elapsed >= Duration::from_millis(550),
        "{:?}",
        out.elapsed
    );
    assert_eq!(out.results.len(), 48);
    let mut firsts = Vec::new();
    for (_, seen) in &servers {
        let times = seen.lock().unwrap().clone();
        assert_eq!(times.len(), 12);
        // 20 per second: 12 requests span 550 ms, give or take when the server's thread noted each
        // (a loaded machine delays that, never the client's pace).
        let span = times[11].duration_since(times[0]);
        assert!(
            span >= Duration::from_millis(440),
            "12 requests in {span:?}"
        );
        firsts.push((times[0], times[11]));
    }
    // Each origin went at its own pace: every one had started before any had finished.
    let last_start = firsts.iter().map(|f| f.0).max().unwrap();
    let first_end = firsts.iter().map(|f| f.1).min().unwrap();
    assert!(
        last_start < first_end,
        "origins were paced one after another"
    );
}

#[test]
fn host_delay_spaces_requests_too() {
    let (server, seen) = timed_server();
    let list: Vec<String> = (0..5).map(|i| server.url(&format!("/{i}"))).collect();
    let out = run_fetch(&list, &["--host-delay", "150ms", "-p", "8"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert!(
        out.elapsed >= Duration::from_millis(600),
        "{:?}",
        out.elapsed
    );
    let times = seen.lock().unwrap().clone();
    let span = times[4].duration_since(times[0]);
    assert!(span >= Duration::from_millis(480), "5 requests in {span:?}");
}

#[test]
fn retry_status_waits_out_try_later() {
    // /busy says 429 twice (Retry-After: 1), then 200; /backoff says 503 once without Retry-After.
    let busy = Arc::new(AtomicUsize::new(0));
    let backoff = Arc::new(AtomicUsize::new(0));
    let (b, o) = (busy.clone(), backoff.clone());
    let server = Hostile::replies(move |r| {
        let later = |retry_after: &str| {
            let mut headers = vec!["Content-Length: 4"];
            if !retry_after.is_empty() {
                headers.push(retry_after);
            }
            Reply::Send(response(
                "HTTP/1.1 429 Too Many Requests",
                &headers,
                b"wait",
            ))
        };
        match r.path.as_str() {
            "/busy" if b.fetch_add(1, Ordering::SeqCst) < 2 => later("Retry-After: 1"),
            "/backoff" if o.fetch_add(1, Ordering::SeqCst) < 1 => later(""),
            "/always" => later("Retry-After: 0"),
            _ => Reply::Send(ok(b"done")),
        }
    });
    let list = vec![
        server.url("/busy"),
        server.url("/backoff"),
        server.url("/always"),
    ];
    let started = Instant::now();
    let out = run_fetch(&list, &["--retry-status", "429,503"]);
    let elapsed = started.elapsed();
    assert_eq!(out.code, 0, "{}", out.describe());
    let r = out.result(0);
    assert_response(r, 200, 4);
    assert_eq!(r["attempts"], 3, "{r}");
    // Two waits of Retry-After: 1 (elapsed_ms is the final attempt's, as for any retry).
    assert!(elapsed >= Duration::from_millis(1900), "{elapsed:?}");
    let r = out.result(1);
    assert_response(r, 200, 4);
    assert_eq!(r["attempts"], 2, "{r}");
    // Tried 1 + --retries (2) times, then the last answer is the result.
    let r = out.result(2);
    assert_response(r, 429, 4);
    assert_eq!(r["attempts"], 3, "{r}");

    // Without --retry-status, or for a request that is not idempotent: the 429 is the answer.
    busy.store(0, Ordering::SeqCst);
    let out = run_fetch(&[server.url("/busy")], &[]);
    assert_response(out.result(0), 429, 4);
    busy.store(0, Ordering::SeqCst);
    let out = run_fetch(
        &[server.url("/busy")],
        &["--retry-status", "429", "-X", "POST", "--body", "x"],
    );
    assert_response(out.result(0), 429, 4);
    assert_eq!(out.result(0)["attempts"], 1);
}

#[test]
fn retry_status_values_are_checked() {
    let server = Hostile::replies(|_| Reply::Send(ok(b"x")));
    for bad in ["42", "429,abc", "700"] {
        let out = run_fetch(&[server.url("/")], &["--retry-status", bad]);
        assert_eq!(out.code, 2, "{bad}: {}", out.describe());
    }
}

/// Paced origins over a request cap that is always full: connections wait both for their origin's
/// turn and for room under the cap, and each freed request is handed from one origin to the next.
/// Every URL is answered, and no hand-over trips over the origin it is made from.
#[test]
fn paced_origins_share_a_full_request_cap() {
    let serve = start_serve(&[]);
    let port = serve.addr.port();
    let origins = 40;
    // A fixed shuffle, so that origins come back at every distance.
    let mut x: u64 = 7;
    let urls: Vec<String> = (0..2000)
        .map(|i| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            format!("http://h{}.test:{port}/{i}", (x >> 33) % origins)
        })
        .collect();
    let pins: Vec<String> = (0..origins)
        .map(|o| format!("h{o}.test:{port}:127.0.0.1"))
        .collect();
    let mut args = vec![
        "-c",
        "8",
        "--conns-per-host",
        "2",
        "--host-rate",
        "2000",
        "-t",
        "1",
    ];
    for pin in &pins {
        args.extend(["--resolve", pin.as_str()]);
    }
    for transport in ["tcp", "direct"] {
        let mut args = args.clone();
        args.extend(["--transport", transport]);
        let out = run_fetch(&urls, &args);
        assert_eq!(out.code, 0, "{transport}: {}", out.describe());
        assert_eq!(
            out.results.len(),
            urls.len(),
            "{transport}: {}",
            out.describe()
        );
        for r in &out.results {
            assert_eq!(r["status"], 200, "{transport}: {r}");
        }
    }
}
