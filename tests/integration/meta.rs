//! `fetch --meta`, `--include-header`, `--hash sha256`: what each line says about its response and
//! its attempt.

use serde_json::Value;

use crate::common::*;

/// sha256("hello").
const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

#[test]
fn meta_headers_and_hash_on_each_line() {
    let server = Hostile::replies(|_| {
        Reply::Send(response(
            "HTTP/1.1 200 OK",
            &[
                "Content-Type: text/plain",
                "ETag: \"v1\"",
                "Content-Length: 5",
            ],
            b"hello",
        ))
    });
    let list: Vec<String> = (0..3).map(|i| server.url(&format!("/{i}"))).collect();
    let args = [
        "--meta",
        "--include-header",
        "ETag",
        "--include-header",
        "x-missing",
        "--hash",
        "sha256",
        "-c",
        "1",
        "-t",
        "1",
    ];
    let out = run_fetch(&list, &args);
    assert_eq!(out.code, 0, "{}", out.describe());
    let by_index = out.by_index();
    for (i, r) in &by_index {
        assert_response(r, 200, 5);
        assert_eq!(r["content_type"], "text/plain", "{r}");
        assert_eq!(r["content_length"], 5, "{r}");
        assert_eq!(r["headers"]["etag"], "\"v1\"", "{r}");
        assert_eq!(r["headers"]["x-missing"], Value::Null, "{r}");
        assert_eq!(r["sha256"], HELLO_SHA256, "{r}");
        assert!(r["tls_ms"].is_null(), "{r}");
        for t in ["dns_ms", "connect_ms", "ttfb_ms"] {
            assert!(r[t].as_f64().is_some_and(|ms| ms >= 0.0), "{t}: {r}");
        }
        // One connection, one request at a time: only the first went on a new connection.
        assert_eq!(r["reused"], *i > 0, "{r}");
    }
    // Without the flags, none of it.
    let out = run_fetch(&list[..1], &[]);
    let r = out.result(0);
    for field in ["content_type", "reused", "headers", "sha256", "ttfb_ms"] {
        assert!(r.get(field).is_none(), "{field}: {r}");
    }
    // A URL that never connected: the fields that are known, and nulls.
    let out = run_fetch(
        &["http://127.0.0.1:1/".to_string()],
        &["--meta", "--hash", "sha256"],
    );
    let r = out.result(0);
    assert!(r["connect_ms"].is_null() && r["ttfb_ms"].is_null(), "{r}");
    assert!(r.get("sha256").is_none(), "{r}");
}

#[test]
fn tls_time_is_the_handshake() {
    let serve = start_serve_on(Wire::Https, &[]);
    let out = run_fetch(&[serve.url("/")], &serve.client_args(&["--meta"]));
    assert_eq!(out.code, 0, "{}", out.describe());
    let r = out.result(0);
    assert!(r["tls_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{r}");
}
