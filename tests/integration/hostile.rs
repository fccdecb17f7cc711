//! Response framing, retries and failure handling against tiny scripted servers (one per
//! behaviour): chunked edge cases, close-delimited bodies, no-body statuses, 1xx, Connection:
//! close, resets, stalls, bad lengths, oversized heads, --max-body, headers sent, error statuses.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

/// Chunk extensions (with and without values, one quoted) and two trailer fields.
const CHUNKED_EXT_TRAILERS: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
5;ext=1\r\nhello\r\n\
1a;name=\"v;x\";flag\r\nabcdefghijklmnopqrstuvwxyz\r\n\
0\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n";
const CHUNKED_BODY: &[u8] = b"helloabcdefghijklmnopqrstuvwxyz";

fn args<'a>(lists: &[&[&'a str]]) -> Vec<&'a str> {
    lists.iter().flat_map(|l| l.iter().copied()).collect()
}

/// Fetches `list` over one connection of one worker with a 5 s timeout, saving bodies in a fresh
/// directory.
fn fetch_saving_on_one_connection(list: &[String]) -> (Output, tempfile::TempDir) {
    let save = tempdir();
    let out = run_fetch(
        list,
        &args(&[
            &ONE_CONN,
            &["--timeout", "5", "--save-dir", arg(save.path())],
        ]),
    );
    (out, save)
}

/// Exit 0, and URL i answered 200 with exactly `bodies[i]`, saved under its index.
fn assert_all_saved(out: &Output, dir: &std::path::Path, bodies: &[&[u8]]) {
    assert_eq!(out.code, 0, "{}", out.describe());
    for (i, body) in bodies.iter().enumerate() {
        assert_response(out.result(i as u64), 200, body.len() as u64);
        assert_eq!(saved(dir, i as u64).as_deref(), Some(*body), "index {i}");
    }
}

#[test]
fn chunked_trickled_one_byte_at_a_time() {
    let server = Hostile::replies(|_| {
        Reply::Trickle(CHUNKED_EXT_TRAILERS.to_vec(), Duration::from_millis(1))
    });
    let (out, save) = fetch_saving_on_one_connection(&[server.url("/a"), server.url("/b")]);
    assert_all_saved(&out, save.path(), &[CHUNKED_BODY, CHUNKED_BODY]);
    // The second request reused the connection: the trailers were consumed exactly.
    assert_eq!(server.connections(), 1);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn chunked_response_and_next_pipelined_response_in_one_write() {
    fn body_for(path: &str) -> &'static [u8] {
        if path == "/a" {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nd\r\n4;q\r\nefgh\r\n0\r\nT: 1\r\n\r\n"
        }
    }
    let server = Hostile::start(|conn| {
        let batch = conn.read_requests(2)?;
        let mut out = Vec::new();
        for r in &batch {
            out.extend_from_slice(body_for(&r.path));
        }
        conn.send(&out)?;
        conn.serve(&|r| Reply::Send(body_for(&r.path).to_vec()))
    });
    let save = tempdir();
    let list = vec![server.url("/a"), server.url("/b")];
    let out = run_fetch(
        &list,
        &args(&[
            &ONE_CONN,
            &["-p", "2", "--timeout", "5", "--save-dir", arg(save.path())],
        ]),
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_response(out.result(0), 200, 3);
    assert_response(out.result(1), 200, 5);
    assert_eq!(saved(save.path(), 0).as_deref(), Some(&b"abc"[..]));
    assert_eq!(saved(save.path(), 1).as_deref(), Some(&b"defgh"[..]));
    assert_eq!(server.connections(), 1);
}

#[test]
fn bad_chunked_framing_is_protocol_error() {
    expect_protocol_errors(&[
        (
            "/not-hex",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
        // 18 hex digits overflow a u64 size.
        (
            "/overflow",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
        // Chunk data must be followed by CRLF (RFC 9112 §7.1).
        (
            "/no-crlf",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        ),
    ]);
}

#[test]
fn close_delimited_body_runs_until_eof() {
    let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let reply = response(
        "HTTP/1.1 200 OK",
        &["Content-Type: application/octet-stream"],
        &body,
    );
    let server = Hostile::replies(move |_| Reply::SendThenClose(reply.clone()));
    let save = tempdir();
    let list = vec![server.url("/a"), server.url("/b")];
    let out = run_fetch(
        &list,
        &args(&[&ONE_CONN, &["--save-dir", arg(save.path())]]),
    );
    assert_all_saved(&out, save.path(), &[&body, &body]);
    // A close-delimited connection cannot be reused.
    assert_eq!(server.connections(), 2);
}

#[test]
fn head_response_content_length_is_not_a_body() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
    let server = Hostile::start(move |conn| {
        // Both answers in one write: a client reading 100 body bytes would eat the second.
        let batch = conn.read_requests(2)?;
        conn.send(&head.repeat(batch.len()))?;
        conn.serve(&|_| Reply::Send(head.to_vec()))
    });
    let list = vec![server.url("/1"), server.url("/2")];
    let out = run_fetch(
        &list,
        &args(&[&ONE_CONN, &["-X", "HEAD", "-p", "2", "--timeout", "5"]]),
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_response(out.result(0), 200, 0);
    assert_response(out.result(1), 200, 0);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.method == "HEAD"), "{requests:?}");
    assert_eq!(server.connections(), 1);
}

#[test]
fn no_body_for_204_and_304_despite_content_length() {
    let server = Hostile::replies(|r| {
        Reply::Send(match r.path.as_str() {
            "/204" => response("HTTP/1.1 204 No Content", &["Content-Length: 10"], b""),
            "/304" => response("HTTP/1.1 304 Not Modified", &["Content-Length: 10"], b""),
            _ => ok(b"hello"),
        })
    });
    let list = vec![server.url("/204"), server.url("/304"), server.url("/ok")];
    let out = run_fetch(&list, &args(&[&ONE_CONN, &["-p", "3", "--timeout", "5"]]));
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_response(out.result(0), 204, 0);
    assert_response(out.result(1), 304, 0);
    assert_response(out.result(2), 200, 5);
    assert_eq!(server.connections(), 1);
}

#[test]
fn interim_1xx_responses_are_skipped() {
    let mut reply = response("HTTP/1.1 100 Continue", &[], b"");
    reply.extend(response(
        "HTTP/1.1 103 Early Hints",
        &["Link: </style.css>; rel=preload"],
        b"",
    ));
    reply.extend(ok(b"ok"));
    let server = Hostile::replies(move |_| Reply::Send(reply.clone()));
    let list = vec![server.url("/1"), server.url("/2")];
    let out = run_fetch(&list, &args(&[&ONE_CONN, &["-p", "2", "--timeout", "5"]]));
    assert_eq!(out.code, 0, "{}", out.describe());
    for i in 0..2 {
        assert_response(out.result(i), 200, 2);
        assert_eq!(out.result(i)["attempts"], 1);
    }
    assert_eq!(server.connections(), 1);
}

/// The first connection waits for all three pipelined requests, answers only the first with
/// `Connection: close`, and closes; later connections answer every request with its own path.
fn close_after_first_of_three(extra: &[&str]) {
    let server = Hostile::start(|conn| {
        if conn.number == 0 {
            let batch = conn.read_requests(3)?;
            let path = batch[0].path.as_bytes();
            conn.send(&response(
                "HTTP/1.1 200 OK",
                &[
                    &format!("Content-Length: {}", path.len()),
                    "Connection: close",
                ],
                path,
            ))?;
            conn.close();
            Ok(())
        } else {
            conn.serve(&|r| Reply::Send(ok(r.path.as_bytes())))
        }
    });
    let save = tempdir();
    let list: Vec<String> = (0..3).map(|i| server.url(&format!("/{i}"))).collect();
    let base = ["-p", "3", "--timeout", "5", "--save-dir", arg(save.path())];
    let out = run_fetch(&list, &args(&[&ONE_CONN, &base, extra]));
    assert_eq!(out.code, 0, "{extra:?}: {}", out.describe());
    let requests = server.requests();
    let first = requests
        .iter()
        .find(|r| r.conn == 0)
        .map(|r| r.path.clone())
        .expect("a request on the first connection");
    for i in 0..3u64 {
        let r = out.result(i);
        let path = format!("/{i}");
        assert_response(r, 200, path.len() as u64);
        // Each response went to the request it answers, also after the re-send.
        assert_eq!(
            saved(save.path(), i),
            Some(path.clone().into_bytes()),
            "{r}"
        );
        let sent_twice = path != first;
        assert_eq!(
            r["attempts"],
            if sent_twice { 2 } else { 1 },
            "{extra:?}: {r}"
        );
    }
    assert_eq!(requests.len(), 5, "{extra:?}: {requests:?}");
    assert_eq!(server.connections(), 2, "{extra:?}");
}

#[test]
fn connection_close_resends_unanswered_pipelined_requests() {
    close_after_first_of_three(&[]);
}

#[test]
fn connection_close_resend_does_not_consume_retries() {
    close_after_first_of_three(&["--retries", "0"]);
}

#[test]
fn http10_response_connection_is_not_reused() {
    // The server would happily answer a second request on the same connection; the client must
    // not send one, because HTTP/1.0 without keep-alive is not persistent (RFC 9112 §9.3).
    let server = Hostile::replies(|_| {
        Reply::Send(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec())
    });
    let list = vec![server.url("/1"), server.url("/2")];
    let out = run_fetch(&list, &args(&[&ONE_CONN, &["--timeout", "5"]]));
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_response(out.result(0), 200, 2);
    assert_response(out.result(1), 200, 2);
    assert_eq!(server.requests().len(), 2);
    assert_eq!(server.connections(), 2);
}

#[test]
fn reset_mid_body_keeps_status_and_partial_count() {
    let mut reply = response("HTTP/1.1 200 OK", &["Content-Length: 1000"], b"");
    reply.extend(vec![b'x'; 300]);
    let server = Hostile::replies(move |_| Reply::SendThenReset(reply.clone()));
    let save = tempdir();
    let out = run_fetch(&[server.url("/")], &["--save-dir", arg(save.path())]);
    assert_eq!(out.code, 1, "{}", out.describe());
    let r = out.result(0);
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["body_bytes"], 300, "{r}");
    assert_error(r, "io");
    // The head arrived, so no retry.
    assert_eq!(r["attempts"], 1, "{r}");
    assert_eq!(saved(save.path(), 0), None, "no partial file may be left");
    assert_eq!(entries(save.path()), Vec::<String>::new());
    assert_eq!(server.connections(), 1);
    assert_eq!(server.requests().len(), 1);
}

/// First connection: read the request and close without a byte; later ones answer "fine".
fn close_first_connection() -> Hostile {
    Hostile::replies(|r| {
        if r.conn == 0 {
            Reply::Close
        } else {
            Reply::Send(ok(b"fine"))
        }
    })
}

#[test]
fn close_before_response_is_retried() {
    let server = close_first_connection();
    let out = run_fetch(&[server.url("/")], &["--timeout", "5"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    let r = out.result(0);
    assert_response(r, 200, 4);
    assert_eq!(r["attempts"], 2, "{r}");
    assert_eq!(server.connections(), 2);
    assert_eq!(server.requests().len(), 2);
    assert_eq!(out.summary["connections_opened"], 2, "{}", out.summary);
}

#[test]
fn reset_before_response_is_retried() {
    let server = Hostile::replies(|r| {
        if r.conn == 0 {
            Reply::SendThenReset(Vec::new())
        } else {
            Reply::Send(ok(b"fine"))
        }
    });
    let out = run_fetch(&[server.url("/")], &["--timeout", "5"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    let r = out.result(0);
    assert_response(r, 200, 4);
    assert_eq!(r["attempts"], 2, "{r}");
    assert_eq!(server.connections(), 2);
}

#[test]
fn retries_are_bounded() {
    let server = Hostile::replies(|_| Reply::Close);
    let out = run_fetch(&[server.url("/")], &["--timeout", "5"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    let r = out.result(0);
    assert_error(r, "io");
    // The first transmission plus the default 2 retries.
    assert_eq!(r["attempts"], 3, "{r}");
    server.settle();
    assert_eq!(server.requests().len(), 3);
    assert_eq!(server.connections(), 3);
}

/// The first connection waits for three pipelined requests, answers the first normally (no
/// `Connection: close`) and then closes: the other two failed with the connection.
fn unannounced_close_after_first_of_three() -> Hostile {
    Hostile::start(|conn| {
        if conn.number == 0 {
            let batch = conn.read_requests(3)?;
            conn.send(&ok(batch[0].path.as_bytes()))?;
            conn.close();
            Ok(())
        } else {
            conn.serve(&|r| Reply::Send(ok(r.path.as_bytes())))
        }
    })
}

#[test]
fn unannounced_close_mid_pipeline_retries_the_rest() {
    let server = unannounced_close_after_first_of_three();
    let list: Vec<String> = (0..3).map(|i| server.url(&format!("/{i}"))).collect();
    let out = run_fetch(&list, &args(&[&ONE_CONN, &["-p", "3", "--timeout", "5"]]));
    assert_eq!(out.code, 0, "{}", out.describe());
    let first = server.requests()[0].path.clone();
    for i in 0..3u64 {
        let r = out.result(i);
        assert_response(r, 200, 2);
        let expected = if format!("/{i}") == first { 1 } else { 2 };
        assert_eq!(r["attempts"], expected, "{r}");
    }
    assert_eq!(server.connections(), 2);
}

#[test]
fn unannounced_close_mid_pipeline_spends_no_retries() {
    // The server answered one request on the connection, then closed it: the two requests behind
    // were never its to answer there (a keep-alive limit, an HTTP/1.0 server), so they are re-sent
    // without spending retries, even with --retries 0. (Before rule 10 of http::client they ended
    // in io errors here.)
    let server = unannounced_close_after_first_of_three();
    let list: Vec<String> = (0..3).map(|i| server.url(&format!("/{i}"))).collect();
    let out = run_fetch(
        &list,
        &args(&[&ONE_CONN, &["-p", "3", "--timeout", "5", "--retries", "0"]]),
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    let first = server.requests()[0].path.clone();
    for i in 0..3u64 {
        let r = out.result(i);
        assert_response(r, 200, 2);
        let expected = if format!("/{i}") == first { 1 } else { 2 };
        assert_eq!(r["attempts"], expected, "{r}");
    }
    assert_eq!(out.summary["retries"], 0, "{}", out.describe());
    server.settle();
    assert_eq!(server.connections(), 2);
    assert_eq!(server.requests().len(), 5);
}

#[test]
fn body_shorter_than_content_length_then_close_is_io_error() {
    let mut reply = response("HTTP/1.1 200 OK", &["Content-Length: 1000"], b"");
    reply.extend(vec![b'x'; 300]);
    let server = Hostile::replies(move |_| Reply::SendThenClose(reply.clone()));
    let save = tempdir();
    let out = run_fetch(
        &[server.url("/")],
        &["--timeout", "5", "--save-dir", arg(save.path())],
    );
    assert_eq!(out.code, 1, "{}", out.describe());
    let r = out.result(0);
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["body_bytes"], 300, "{r}");
    assert_error(r, "io");
    assert_eq!(r["attempts"], 1, "{r}");
    assert_eq!(
        entries(save.path()),
        Vec::<String>::new(),
        "no partial file"
    );
    server.settle();
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn timeout_bounds_the_whole_response_not_each_read() {
    // A byte every 50 ms never leaves the connection idle for long, but the whole response
    // would take about 4 s; --timeout 1 must end it after about 1 s.
    let server = Hostile::replies(|_| Reply::Trickle(ok(&[b'x'; 40]), Duration::from_millis(50)));
    let out = run_fetch(&[server.url("/")], &["--timeout", "1", "--retries", "0"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    let r = out.result(0);
    assert_error(r, "timeout");
    assert_eq!(r["attempts"], 1, "{r}");
    assert_finished_within(&out, Duration::from_secs(3));
}

#[test]
fn close_before_response_without_retries_is_io_error() {
    let server = close_first_connection();
    let out = run_fetch(&[server.url("/")], &["--timeout", "5", "--retries", "0"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    let r = out.result(0);
    assert_error(r, "io");
    assert_eq!(r["attempts"], 1, "{r}");
    assert_eq!(r["status"], Value::Null, "{r}");
    server.settle();
    assert_eq!(server.connections(), 1);
}

#[test]
fn post_is_not_retried() {
    let server = close_first_connection();
    let out = run_fetch(&[server.url("/")], &["-X", "POST", "--timeout", "5"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    let r = out.result(0);
    assert_error(r, "io");
    assert_eq!(r["attempts"], 1, "{r}");
    server.settle();
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].method, "POST");
    assert_eq!(server.connections(), 1);
}

#[test]
fn stalled_server_times_out() {
    let server = Hostile::replies(|_| Reply::Stall);
    let out = run_fetch(&[server.url("/")], &["--timeout", "1"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert_error(out.result(0), "timeout");
    assert_finished_within(&out, Duration::from_secs(10));

    // Fractions and milliseconds are accepted too; without retries there is one attempt.
    for timeout in ["0.5", "500ms"] {
        let out = run_fetch(
            &[server.url("/")],
            &["--timeout", timeout, "--retries", "0"],
        );
        assert_eq!(out.code, 1, "{timeout}: {}", out.describe());
        let r = out.result(0);
        assert_error(r, "timeout");
        assert_eq!(r["attempts"], 1, "{r}");
        assert!(
            out.elapsed < Duration::from_secs(5),
            "took {:?}",
            out.elapsed
        );
    }
}

/// Serves `path -> raw response` and expects every URL to end with a `protocol` error.
fn expect_protocol_errors(cases: &'static [(&'static str, &'static [u8])]) {
    let server = Hostile::replies(|r| {
        let found = cases.iter().find(|(path, _)| *path == r.path);
        Reply::Send(found.map(|(_, bytes)| bytes.to_vec()).unwrap_or_default())
    });
    let list: Vec<String> = cases.iter().map(|(path, _)| server.url(path)).collect();
    let out = run_fetch(&list, &["--timeout", "5"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    for (i, (path, _)) in cases.iter().enumerate() {
        let r = out.result(i as u64);
        assert_error(r, "protocol");
        assert_eq!(r["attempts"], 1, "{path}: {r}");
    }
    assert_eq!(
        out.summary["errors"]["protocol"],
        cases.len(),
        "{}",
        out.summary
    );
}

#[test]
fn content_length_not_a_number_is_protocol_error() {
    // Content-Length = 1*DIGIT (RFC 9110 §8.6): no sign, not empty.
    expect_protocol_errors(&[
        (
            "/abc",
            b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello",
        ),
        (
            "/plus",
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
        ),
        (
            "/minus",
            b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello",
        ),
        (
            "/empty",
            b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nhello",
        ),
    ]);
}

#[test]
fn conflicting_content_lengths_are_protocol_errors() {
    expect_protocol_errors(&[
        (
            "/two-headers",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "/list",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
        ),
    ]);
}

#[test]
fn repeated_identical_content_length_is_accepted() {
    each_framing_yields_hello(&[
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    ]);
}

/// Serves response i for path /i, fetches them all over one connection, and expects each to be
/// read as a 200 with body "hello".
fn each_framing_yields_hello(responses: &'static [&'static [u8]]) {
    let server = Hostile::replies(move |r| {
        let i: usize = r.path.trim_start_matches('/').parse().unwrap_or(0);
        Reply::Send(responses[i.min(responses.len() - 1)].to_vec())
    });
    let list: Vec<String> = (0..responses.len())
        .map(|i| server.url(&format!("/{i}")))
        .collect();
    let (out, save) = fetch_saving_on_one_connection(&list);
    let hello: Vec<&[u8]> = vec![b"hello"; responses.len()];
    assert_all_saved(&out, save.path(), &hello);
}

#[test]
fn malformed_status_line_is_protocol_error() {
    expect_protocol_errors(&[
        ("/number", b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n"),
        ("/garbage", b"HELLO\r\n\r\n"),
    ]);
}

/// A response whose header block is `n` padding headers of 10 KiB each, then a 2-byte body.
fn padded_head(n: usize) -> Vec<u8> {
    let pad = "a".repeat(10 * 1024);
    let headers: Vec<String> = (0..n).map(|i| format!("X-Pad-{i}: {pad}")).collect();
    let mut refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    refs.push("Content-Length: 2");
    response("HTTP/1.1 200 OK", &refs, b"ok")
}

#[test]
fn header_block_over_64k_is_protocol_error() {
    let server = Hostile::replies(|r| {
        // 7 × 10 KiB ≈ 70 KiB is over the limit; 5 × 10 KiB ≈ 50 KiB is under it.
        Reply::Send(padded_head(if r.path == "/huge" { 7 } else { 5 }))
    });
    let list = vec![server.url("/huge"), server.url("/large")];
    let out = run_fetch(&list, &["--timeout", "5"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert_error(out.result(0), "protocol");
    assert_response(out.result(1), 200, 2);
}

#[test]
fn body_over_max_body_is_too_large() {
    let server = Hostile::replies(|r| {
        Reply::Send(match r.path.as_str() {
            "/cl" => ok(&[b'x'; 5000]),
            "/chunked" => {
                let chunk = format!("3e8\r\n{}\r\n", "y".repeat(1000));
                let body = format!("{}0\r\n\r\n", chunk.repeat(3));
                response(
                    "HTTP/1.1 200 OK",
                    &["Transfer-Encoding: chunked"],
                    body.as_bytes(),
                )
            }
            _ => ok(&[b'z'; 1000]),
        })
    });
    let save = tempdir();
    let list = vec![
        server.url("/cl"),
        server.url("/chunked"),
        server.url("/fits"),
    ];
    let out = run_fetch(
        &list,
        &[
            "--max-body",
            "1k",
            "--timeout",
            "5",
            "--save-dir",
            arg(save.path()),
        ],
    );
    assert_eq!(out.code, 1, "{}", out.describe());
    assert_error(out.result(0), "too-large");
    assert_error(out.result(1), "too-large");
    // 1000 bytes fit whether `k` means 1000 or 1024.
    assert_response(out.result(2), 200, 1000);
    assert_eq!(saved(save.path(), 2), Some(vec![b'z'; 1000]));
    assert_eq!(
        entries(save.path()),
        vec!["2".to_string()],
        "no partial files"
    );
}

#[test]
fn chunked_wins_over_content_length() {
    each_framing_yields_hello(&[
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ]);
}

#[test]
fn refused_connection_is_connect_error() {
    let url = format!("http://127.0.0.1:{}/", closed_port());
    let out = run_fetch(std::slice::from_ref(&url), &["--timeout", "5"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    let r = out.result(0);
    assert_error(r, "connect");
    assert_eq!(r["attempts"], 0, "{r}");
    assert_eq!(r["status"], Value::Null, "{r}");
    assert_eq!(r["url"], url.as_str());
    assert_finished_within(&out, Duration::from_secs(10));
}

#[test]
fn unresolvable_host_is_dns_error() {
    // .invalid never resolves (RFC 6761), so no network is needed to get a DNS failure.
    let url = "http://no-such-host.invalid/".to_string();
    let out = run_fetch(std::slice::from_ref(&url), &["--timeout", "5"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    let r = out.result(0);
    assert_error(r, "dns");
    assert_eq!(r["attempts"], 0, "{r}");
    assert_eq!(r["status"], Value::Null, "{r}");
}

#[test]
fn custom_headers_reach_the_server() {
    let server = Hostile::replies(|_| Reply::Send(ok(b"ok")));
    let out = run_fetch(
        &[server.url("/h")],
        &["-H", "X-Test: 1", "-H", "X-Other: two words"],
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_response(out.result(0), 200, 2);
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/h");
    assert!(r.head.starts_with("GET /h HTTP/1.1\r\n"), "{}", r.head);
    assert_eq!(r.header("x-test"), Some("1"), "{}", r.head);
    assert_eq!(r.header("x-other"), Some("two words"), "{}", r.head);
    assert_eq!(
        r.header("host"),
        Some(server.addr.to_string().as_str()),
        "{}",
        r.head
    );
}

/// `-H 'Name:'` removes a default header, as in curl: the bare request wrk sends.
#[test]
fn a_header_given_without_a_value_is_not_sent() {
    let server = Hostile::replies(|_| Reply::Send(ok(b"ok")));
    let out = run_fetch(&[server.url("/h")], &["-H", "User-Agent:", "-H", "Accept:"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_response(out.result(0), 200, 2);
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].head,
        format!("GET /h HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr),
    );
}

#[test]
fn error_statuses_are_responses() {
    let server = Hostile::replies(|r| {
        Reply::Send(if r.path == "/missing" {
            response("HTTP/1.1 404 Not Found", &["Content-Length: 4"], b"nope")
        } else {
            response(
                "HTTP/1.1 500 Internal Server Error",
                &["Content-Length: 5"],
                b"oops!",
            )
        })
    });
    let list = vec![server.url("/missing"), server.url("/broken")];
    let out = run_fetch(&list, &[]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_response(out.result(0), 404, 4);
    assert_response(out.result(1), 500, 5);
    assert_eq!(
        out.summary["status"],
        json!({"404": 1, "500": 1}),
        "{}",
        out.summary
    );
    assert_eq!(out.summary["requests"], 2, "{}", out.summary);
    assert_eq!(error_total(&out.summary), 0, "{}", out.summary);
}

#[test]
fn pipelined_churn_reports_every_url_once_with_its_own_body() {
    // Pipelined batches over two connections while the server closes every seventh response
    // with `Connection: close` and sends every eleventh close-delimited: each close strands the
    // requests queued behind it, which must be re-sent and still tied to their own responses.
    let server = Hostile::replies(|r| {
        let i: usize = r.path.trim_start_matches('/').parse().unwrap_or(0);
        let body = r.path.as_bytes();
        let length = format!("Content-Length: {}", body.len());
        if i % 7 == 6 {
            Reply::SendThenClose(response(
                "HTTP/1.1 200 OK",
                &[&length, "Connection: close"],
                body,
            ))
        } else if i % 11 == 10 {
            Reply::SendThenClose(response("HTTP/1.1 200 OK", &[], body))
        } else if i % 10 == 3 {
            Reply::Send(response("HTTP/1.1 404 Not Found", &[&length], body))
        } else {
            Reply::Send(ok(body))
        }
    });
    let save = tempdir();
    let list: Vec<String> = (0..300).map(|i| server.url(&format!("/{i}"))).collect();
    let out = run_fetch(
        &list,
        &[
            "-p",
            "8",
            "--conns-per-host",
            "2",
            "-t",
            "1",
            "--timeout",
            "5",
            "--save-dir",
            arg(save.path()),
            // A close-delimited response ends in EOF, which may count as a failed connection
            // for the requests behind it; leave room so no URL runs out of retries.
            "--retries",
            "5",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    let by_index = out.by_index();
    assert_eq!(by_index.len(), 300, "{}", out.describe());
    for (i, r) in by_index {
        let path = format!("/{i}");
        let status = if i % 7 != 6 && i % 11 != 10 && i % 10 == 3 {
            404
        } else {
            200
        };
        assert_response(r, status, path.len() as u64);
        assert_eq!(r["url"], list[i as usize], "{r}");
        assert_eq!(saved(save.path(), i), Some(path.into_bytes()), "{r}");
    }
}

/// Regression guard for the receive low-water mark (engine::conn::ReadBatching): after enough
/// same-size responses a pipelined read waits for several of them at once. When the server then
/// switches to much smaller responses, the outstanding bytes can fall short of the mark; the read must
/// be rescued promptly, not left to the request timeout.
#[test]
fn pipelined_responses_that_shrink_do_not_stall_batched_reads() {
    shrinking_responses_under_a_raised_mark(&[]);
}

/// The same over direct descriptors, where the mark is set through the ring and the armed multishot
/// receive must wake when it drops.
#[test]
fn pipelined_responses_that_shrink_do_not_stall_batched_reads_over_direct_descriptors() {
    shrinking_responses_under_a_raised_mark(&["--transport", "direct"]);
}

fn shrinking_responses_under_a_raised_mark(transport: &[&str]) {
    let server = Hostile::replies(|r| {
        let n: usize = r.path.trim_start_matches('/').parse().unwrap_or(0);
        if n == 64 {
            // Let the client parse every large response and wait on its next read first, so the
            // small responses arrive under a mark set for large ones.
            std::thread::sleep(Duration::from_millis(200));
        }
        Reply::Send(if n < 64 {
            ok(&[b'x'; 1500])
        } else {
            ok(b"tiny")
        })
    });
    let list: Vec<String> = (0..120).map(|i| server.url(&format!("/{i}"))).collect();
    let out = run_fetch(
        &list,
        &args(&[&ONE_CONN, &["-p", "16", "--timeout", "5"], transport]),
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    for i in 0..120u64 {
        assert_response(out.result(i), 200, if i < 64 { 1500 } else { 4 });
    }
    assert_eq!(
        server.connections(),
        1,
        "the connection must survive the size change"
    );
    // Without the rescue the run waits for the 5 s timeout.
    assert_finished_within(&out, Duration::from_secs(2));
}

/// A server that answers `k` requests per connection, then ends it without saying so (no
/// `Connection: close`): with a FIN, or with a RST as a server's kernel sends when it closes with
/// pipelined requests unread.
fn ends_after(k: usize, reset: bool) -> Hostile {
    Hostile::start(move |conn| {
        let mut answered = 0;
        loop {
            let batch = conn.next_requests()?;
            if batch.is_empty() {
                return Ok(());
            }
            for r in batch {
                conn.send(&ok(r.path.as_bytes()))?;
                answered += 1;
                if answered == k {
                    if reset {
                        // Let the response reach the client before the RST.
                        std::thread::sleep(Duration::from_millis(20));
                        conn.reset();
                    } else {
                        conn.close();
                    }
                    return Ok(());
                }
            }
        }
    })
}

fn assert_each_answered_with_its_path(out: &Output, n: usize) {
    assert_eq!(out.code, 0, "{}", out.describe());
    let by_index = out.by_index();
    assert_eq!(by_index.len(), n, "{}", out.describe());
    for (i, r) in by_index {
        let path = format!("/{i}");
        assert_response(r, 200, path.len() as u64);
    }
}

#[test]
fn silent_close_after_k_answers_spends_no_retries() {
    // The requests pipelined behind the last answer of each connection were never the server's to
    // answer there: re-sent without spending --retries (0 here), every URL gets its response.
    for reset in [false, true] {
        let server = ends_after(3, reset);
        let list: Vec<String> = (0..120).map(|i| server.url(&format!("/{i}"))).collect();
        let out = run_fetch(&list, &["-p", "16", "--retries", "0", "-t", "1"]);
        assert_each_answered_with_its_path(&out, list.len());
    }
}

#[test]
fn an_origin_that_ends_every_connection_after_one_answer_is_not_pipelined_to() {
    let server = ends_after(1, true);
    let n = 60;
    let list: Vec<String> = (0..n).map(|i| server.url(&format!("/{i}"))).collect();
    let save = tempdir();
    let out = run_fetch(
        &list,
        &["-p", "16", "-t", "1", "--save-dir", arg(save.path())],
    );
    assert_each_answered_with_its_path(&out, n);
    for i in 0..n {
        assert_eq!(
            saved(save.path(), i as u64),
            Some(format!("/{i}").into_bytes())
        );
    }
    // Once the first connection ended after one answer, each later one carries one request:
    // pipelining 16 deep would have sent about 16 requests per answer.
    let sent = server.requests().len();
    assert!(sent < 2 * n, "{sent} requests for {n} URLs");
}

#[test]
fn an_early_answer_while_the_body_is_sent_is_that_answer() {
    // The server reads the head, refuses the body at once (413) and resets the connection while
    // the client is still sending 64 MiB (more than both socket buffers hold): the URL's result is
    // the 413, not an io error. (A raw listener: the scripted server reads requests whole.)
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut c, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut chunk = [0u8; 65536];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = c.read(&mut chunk).unwrap();
            assert!(n > 0, "the client closed before its head");
            head.extend_from_slice(&chunk[..n]);
        }
        c.write_all(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // SO_LINGER 0: close(2) sends a RST, with most of the body unread.
        let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
    });
    let dir = tempdir();
    let body = dir.path().join("big");
    std::fs::write(&body, vec![b'x'; 64 << 20]).unwrap();
    let at_body = format!("@{}", arg(&body));
    let out = run_fetch(
        &[format!("http://{addr}/upload")],
        &["-X", "POST", "--body", &at_body, "--timeout", "10"],
    );
    server.join().unwrap();
    let r = out.result(0);
    assert_eq!(r["status"], 413, "{}", out.describe());
    assert_eq!(r["error"], Value::Null, "{r}");
    assert_eq!(r["attempts"], 1, "{r}");
}
