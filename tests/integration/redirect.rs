//! `fetch -L`: redirects followed as RFC 9110 §15.4 and curl do, against scripted servers that
//! redirect (relative and absolute `Location`s, across origins, in loops, after POST).

use serde_json::Value;

use crate::common::*;

fn redirect(status: &str, location: &str) -> Reply {
    Reply::Send(response(
        status,
        &[&format!("Location: {location}"), "Content-Length: 8"],
        b"go there",
    ))
}

/// /a → 301 /b, /b → 302 c (relative to /b), /c → 200; /none is a 301 without Location and /ftp one
/// to a scheme we do not fetch.
fn chain_server() -> Hostile {
    Hostile::replies(|r| match r.path.as_str() {
        "/a" => redirect("HTTP/1.1 301 Moved Permanently", "/b"),
        "/b" => redirect("HTTP/1.1 302 Found", "c"),
        "/c" => Reply::Send(ok(b"final")),
        "/none" => Reply::Send(response(
            "HTTP/1.1 301 Moved Permanently",
            &["Content-Length: 0"],
            b"",
        )),
        "/ftp" => redirect("HTTP/1.1 302 Found", "ftp://127.0.0.1/file"),
        _ => Reply::Send(response(
            "HTTP/1.1 404 Not Found",
            &["Content-Length: 0"],
            b"",
        )),
    })
}

#[test]
fn without_l_a_redirect_is_the_result_and_the_line_is_unchanged() {
    let server = chain_server();
    let out = run_fetch(&[server.url("/a")], &[]);
    assert_eq!(out.code, 0, "{}", out.describe());
    let r = out.result(0);
    assert_response(r, 301, 8);
    assert!(
        r.get("final_url").is_none() && r.get("redirects").is_none(),
        "{r}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn l_follows_relative_locations_to_the_final_body() {
    let server = chain_server();
    let dir = tempdir();
    let save = dir.path().join("bodies");
    let list = vec![server.url("/a"), server.url("/none"), server.url("/ftp")];
    let out = run_fetch(&list, &["-L", "--save-dir", arg(&save)]);
    assert_eq!(out.code, 0, "{}", out.describe());
    let r = out.result(0);
    assert_response(r, 200, 5);
    assert_eq!(r["url"], list[0], "{r}");
    assert_eq!(r["final_url"], server.url("/c"), "{r}");
    assert_eq!(r["redirects"], 2, "{r}");
    assert_eq!(r["attempts"], 3, "{r}");
    // The final response's body, never a redirect's.
    assert_eq!(saved(&save, 0).as_deref(), Some(&b"final"[..]));
    // A redirect without a usable Location is the URL's answer.
    for i in [1, 2] {
        let r = out.result(i);
        assert_eq!(r["redirects"], 0, "{r}");
        assert_eq!(r["final_url"], list[i as usize], "{r}");
        assert!(r["status"] == 301 || r["status"] == 302, "{r}");
    }
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert!(paths.contains(&"/c".to_string()), "{paths:?}");
}

#[test]
fn methods_change_as_browsers_and_curl_do() {
    let server = Hostile::replies(|r| match r.path.as_str() {
        "/303" => redirect("HTTP/1.1 303 See Other", "/to303"),
        "/301" => redirect("HTTP/1.1 301 Moved Permanently", "/to301"),
        "/307" => redirect("HTTP/1.1 307 Temporary Redirect", "/to307"),
        "/308" => redirect("HTTP/1.1 308 Permanent Redirect", "/to308"),
        _ => Reply::Send(ok(b"ok")),
    });
    let list: Vec<String> = ["/303", "/301", "/307", "/308"]
        .iter()
        .map(|p| server.url(p))
        .collect();
    let out = run_fetch(&list, &["-L", "-X", "POST", "--body", "data"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    server.settle();
    let seen = |path: &str| -> Request {
        server
            .requests()
            .into_iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("no request for {path}"))
    };
    for (path, method, length) in [
        ("/to303", "GET", None),
        ("/to301", "GET", None),
        ("/to307", "POST", Some("4")),
        ("/to308", "POST", Some("4")),
    ] {
        let r = seen(path);
        assert_eq!(r.method, method, "{}", r.head);
        assert_eq!(r.header("content-length"), length, "{}", r.head);
    }
    // HEAD stays HEAD, even after a 303.
    let out = run_fetch(&[server.url("/303")], &["-L", "-X", "HEAD"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    server.settle();
    let heads: Vec<Request> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/to303")
        .collect();
    assert_eq!(heads.last().map(|r| r.method.as_str()), Some("HEAD"));
}

#[test]
fn credentials_stay_with_their_origin_unless_trusted() {
    let other = Hostile::replies(|_| Reply::Send(ok(b"elsewhere")));
    let to = other.url("/y");
    let first = Hostile::replies(move |_| redirect("HTTP/1.1 302 Found", &to));
    let headers = [
        "-H",
        "Authorization: Bearer secret",
        "-H",
        "Cookie: session=1",
        "-H",
        "X-Keep: kept",
    ];
    for trusted in [false, true] {
        let mut args = vec![if trusted { "--location-trusted" } else { "-L" }];
        args.extend(headers);
        let out = run_fetch(&[first.url("/x")], &args);
        assert_eq!(out.code, 0, "{}", out.describe());
        let r = out.result(0);
        assert_response(r, 200, 9);
        assert_eq!(r["final_url"], other.url("/y"), "{r}");
        first.settle();
        other.settle();
        let sent = first.requests().pop().unwrap();
        assert_eq!(sent.header("authorization"), Some("Bearer secret"));
        let there = other.requests().pop().unwrap();
        assert_eq!(there.header("x-keep"), Some("kept"), "{}", there.head);
        let leaked = there.header("authorization").is_some() || there.header("cookie").is_some();
        assert_eq!(leaked, trusted, "trusted {trusted}: {}", there.head);
    }
}

#[test]
fn a_loop_ends_at_max_redirs_with_the_chain() {
    let server = Hostile::replies(|r| match r.path.as_str() {
        "/loop" => redirect("HTTP/1.1 302 Found", "/loop2"),
        _ => redirect("HTTP/1.1 302 Found", "/loop"),
    });
    let out = run_fetch(&[server.url("/loop")], &["-L", "--max-redirs", "3"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    let r = out.result(0);
    assert_error(r, "protocol");
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("more than 3 redirects"), "{error}");
    assert!(error.contains("/loop2 → "), "{error}");
    assert_eq!(r["redirects"], 3, "{r}");
    assert_eq!(r["attempts"], 4, "{r}");
    // --max-redirs alone would do nothing: refused.
    let out = run_fetch(&[server.url("/loop")], &["--max-redirs", "3"]);
    assert_eq!(out.code, 2, "{}", out.describe());
}

/// Many URLs that each redirect once, pipelined: every hop goes through the pools like a request.
#[test]
fn pipelined_redirects_all_arrive() {
    let server = Hostile::replies(|r| match r.path.strip_prefix("/r/") {
        Some(n) => redirect("HTTP/1.1 301 Moved Permanently", &format!("/f/{n}")),
        None => Reply::Send(ok(r.path.as_bytes())),
    });
    let list: Vec<String> = (0..500).map(|i| server.url(&format!("/r/{i}"))).collect();
    let out = run_fetch(&list, &["-L", "-p", "16", "-c", "64"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    let by_index = out.by_index();
    assert_eq!(by_index.len(), 500);
    for (i, r) in by_index {
        let path = format!("/f/{i}");
        assert_response(r, 200, path.len() as u64);
        assert_eq!(r["final_url"], server.url(&path), "{r}");
        assert_eq!(r["redirects"], 1, "{r}");
    }
    // The summary counts each URL's final response; the redirects are in the lines.
    let summary: &Value = &out.summary;
    assert_eq!(summary["status"]["200"], 500, "{summary}");
    assert!(summary["status"].get("301").is_none(), "{summary}");
}
