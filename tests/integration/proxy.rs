//! `fetch --proxy` and the proxy environment variables, through the small proxies of
//! `common::proxy`, to `serve` and hostile servers, all on loopback.

use std::fs;
use std::process::Command;

use serde_json::Value;

use crate::common::*;

const PROXY_VARS: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// `ringfetch fetch` over `urls` with the proxy variables of this process removed and `env` set
/// in the child only; returns the lines by index and the exit code.
fn fetch_env(urls: &[String], args: &[&str], env: &[(&str, String)]) -> (Vec<Value>, i32, String) {
    let dir = tempdir();
    let list = dir.path().join("urls.txt");
    let out = dir.path().join("out.jsonl");
    fs::write(&list, lines(urls)).unwrap();
    let mut cmd = Command::new(bin());
    cmd.arg("fetch")
        .arg(&list)
        .arg("-o")
        .arg(&out)
        .arg("--json")
        .args(args);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let finished = run_child(cmd, None);
    let mut results = parse_jsonl(&fs::read_to_string(&out).unwrap_or_default());
    results.sort_by_key(|r| r["index"].as_u64());
    (results, finished.code, finished.stderr)
}

fn transports() -> [&'static str; 2] {
    ["tcp", "direct"]
}

fn all_ok(results: &[Value], n: usize, body: u64) {
    assert_eq!(results.len(), n, "{results:?}");
    for r in results {
        assert_response(r, 200, body);
    }
}

#[test]
fn http_target_through_an_http_proxy_is_absolute_form() {
    let target = Hostile::replies(|_| Reply::Send(ok(b"hello")));
    let proxy = Proxy::http(None);
    for transport in transports() {
        let urls: Vec<String> = (0..20).map(|i| target.url(&format!("/p{i}?q=1"))).collect();
        let url = proxy.url("http", "");
        let (results, code, err) =
            fetch_env(&urls, &["--proxy", &url, "--transport", transport], &[]);
        assert_eq!(code, 0, "{err}");
        all_ok(&results, 20, 5);
    }
    let seen = target.requests();
    assert_eq!(seen.len(), 40);
    let authority = target.url("").trim_end_matches('/').to_string();
    for r in &seen {
        assert!(r.path.starts_with(&format!("{authority}/p")), "{}", r.head);
        assert!(r.header("proxy-authorization").is_none(), "{}", r.head);
    }
    // Every connection the target saw came through the proxy.
    assert_eq!(proxy.connections(), target.connections());
    assert!(proxy
        .asked()
        .iter()
        .all(|a| a.line.starts_with("GET http://")));
}

#[test]
fn https_target_through_connect() {
    for wire in [Wire::Https, Wire::DirectHttps] {
        let serve = start_serve_on(wire, &[]);
        let proxy = Proxy::http(None);
        let url = proxy.url("http", "");
        let urls: Vec<String> = (0..50).map(|i| serve.url(&format!("/bytes/{i}"))).collect();
        let args = serve.client_args(&["--proxy", &url]);
        let (results, code, err) = fetch_env(&urls, &args, &[]);
        assert_eq!(code, 0, "{err}");
        all_ok(&results, 50, 1024);
        let asked = proxy.asked();
        assert!(!asked.is_empty());
        let want = format!("CONNECT localhost:{} HTTP/1.1", serve.addr.port());
        assert!(asked.iter().all(|a| a.line == want), "{asked:?}");
    }
}

#[test]
fn socks5_sends_the_address_and_socks5h_the_name() {
    let serve = start_serve_on(Wire::Http, &[]);
    let port = serve.addr.port();
    let urls: Vec<String> = (0..30)
        .map(|i| format!("http://localhost:{port}/bytes/{i}"))
        .collect();
    let pin = format!("localhost:{port}:127.0.0.1");
    for (scheme, want) in [("socks5", "127.0.0.1"), ("socks5h", "localhost")] {
        for transport in transports() {
            let proxy = Proxy::socks5(None);
            let url = proxy.url(scheme, "");
            let args = ["--proxy", &url, "--resolve", &pin, "--transport", transport];
            let (results, code, err) = fetch_env(&urls, &args, &[]);
            assert_eq!(code, 0, "{scheme} {transport}: {err}");
            all_ok(&results, 30, 1024);
            let asked = proxy.asked();
            assert!(!asked.is_empty());
            let want = format!("{want}:{port}");
            assert!(asked.iter().all(|a| a.line == want), "{scheme}: {asked:?}");
        }
    }
}

#[test]
fn socks5_to_an_https_target() {
    let serve = start_serve_on(Wire::Https, &[]);
    let proxy = Proxy::socks5(None);
    let url = proxy.url("socks5h", "");
    let urls: Vec<String> = (0..10).map(|i| serve.url(&format!("/bytes/{i}"))).collect();
    let (results, code, err) = fetch_env(&urls, &serve.client_args(&["--proxy", &url]), &[]);
    assert_eq!(code, 0, "{err}");
    all_ok(&results, 10, 1024);
    assert!(proxy.connections() > 0);
}

#[test]
fn credentials_accepted_and_refused() {
    let serve = start_serve_on(Wire::Https, &[]);
    let urls: Vec<String> = (0..5).map(|i| serve.url(&format!("/bytes/{i}"))).collect();
    let http = Proxy::http(Some("user:s3cr%t"));
    let socks = Proxy::socks5(Some("user:s3cr%t"));
    for (proxy, scheme) in [(&http, "http"), (&socks, "socks5h")] {
        let good = proxy.url(scheme, "user:s3cr%25t@");
        let (results, code, err) = fetch_env(&urls, &serve.client_args(&["--proxy", &good]), &[]);
        assert_eq!(code, 0, "{scheme}: {err}");
        all_ok(&results, 5, 1024);
        let bad = proxy.url(scheme, "user:wrongpass@");
        let (results, code, _) = fetch_env(&urls, &serve.client_args(&["--proxy", &bad]), &[]);
        assert_eq!(code, 1);
        assert_eq!(results.len(), 5);
        for r in &results {
            assert_error(r, "connect");
            let e = r["error"].as_str().unwrap();
            assert!(e.contains(&format!("proxy {}", proxy.addr)), "{e}");
            assert!(!e.contains("wrongpass"), "{e}");
            let answer = if scheme == "http" {
                "407 Proxy Authentication Required"
            } else {
                "refused the user and password"
            };
            assert!(e.contains(answer), "{e}");
        }
    }
    assert!(http
        .asked()
        .iter()
        .any(|a| a.credentials.as_deref() == Some("Basic dXNlcjpzM2NyJXQ=")));
    // An http target through the http proxy: the credentials ride on each absolute-form request,
    // and a refusal is the proxy's 407 response, as curl reports it.
    let target = Hostile::replies(|_| Reply::Send(ok(b"plain")));
    let plain = vec![target.url("/a"), target.url("/b")];
    let good = http.url("http", "user:s3cr%25t@");
    let (results, code, err) = fetch_env(&plain, &["--proxy", &good], &[]);
    assert_eq!(code, 0, "{err}");
    all_ok(&results, 2, 5);
    let bad = http.url("http", "user:nope@");
    let (results, _, _) = fetch_env(&plain, &["--proxy", &bad], &[]);
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r["status"] == 407), "{results:?}");
    assert!(socks
        .asked()
        .iter()
        .any(|a| a.credentials.as_deref() == Some("user:s3cr%t")));
}

#[test]
fn unreachable_or_refusing_proxy_is_a_connect_error() {
    let target = Hostile::replies(|_| Reply::Send(ok(b"x")));
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}");
    let (results, code, _) = fetch_env(&[target.url("/")], &["--proxy", &url], &[]);
    assert_eq!(code, 1);
    assert_error(&results[0], "connect");
    // A SOCKS proxy that cannot reach the target says so.
    let socks = Proxy::socks5(None);
    let url = socks.url("socks5", "");
    let dead = format!("http://127.0.0.1:{}/", closed_port());
    let (results, code, _) = fetch_env(&[dead], &["--proxy", &url], &[]);
    assert_eq!(code, 1);
    assert_error(&results[0], "connect");
    let e = results[0]["error"].as_str().unwrap();
    assert!(e.contains("reply 5 (connection refused)"), "{e}");
    assert_eq!(target.connections(), 0);
}

#[test]
fn environment_variables_as_curl() {
    let target = Hostile::replies(|_| Reply::Send(ok(b"env")));
    let urls = vec![target.url("/e")];
    let proxy = Proxy::http(None);
    let purl = proxy.url("http", "");
    // http_proxy is used; HTTP_PROXY is not (CGI's header injection).
    let (results, code, _) = fetch_env(&urls, &[], &[("http_proxy", purl.clone())]);
    assert_eq!(code, 0);
    all_ok(&results, 1, 3);
    assert_eq!(proxy.asked().len(), 1);
    let (results, code, _) = fetch_env(&urls, &[], &[("HTTP_PROXY", purl.clone())]);
    assert_eq!(code, 0);
    all_ok(&results, 1, 3);
    assert_eq!(proxy.asked().len(), 1);
    // all_proxy covers http; no_proxy and --noproxy bypass it; --noproxy '' overrides no_proxy.
    let socks = Proxy::socks5(None);
    let all = ("all_proxy", socks.url("socks5", ""));
    fetch_env(&urls, &[], std::slice::from_ref(&all));
    assert_eq!(socks.asked().len(), 1);
    let (results, _, _) = fetch_env(
        &urls,
        &[],
        &[all.clone(), ("no_proxy", "localhost,127.0.0.1".into())],
    );
    all_ok(&results, 1, 3);
    assert_eq!(socks.asked().len(), 1);
    fetch_env(&urls, &["--noproxy", "*"], std::slice::from_ref(&all));
    assert_eq!(socks.asked().len(), 1);
    fetch_env(
        &urls,
        &["--noproxy", ""],
        &[all.clone(), ("NO_PROXY", "*".into())],
    );
    assert_eq!(socks.asked().len(), 2);
    // --proxy '' turns the environment off.
    fetch_env(&urls, &["--proxy", ""], std::slice::from_ref(&all));
    assert_eq!(socks.asked().len(), 2);
    assert_eq!(target.requests().len(), 7);
}

/// Client CPU seconds (user + system) of one fetch run over `urls`, via /usr/bin/time; asserts
/// every URL got 200.
fn cpu_of_run(urls: &[String], args: &[&str]) -> f64 {
    let dir = tempdir();
    let list = dir.path().join("urls.txt");
    let out = dir.path().join("out.jsonl");
    fs::write(&list, lines(urls)).unwrap();
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "CPU %U %S"])
        .arg(bin())
        .arg("fetch")
        .arg(&list);
    cmd.arg("-o").arg(&out).arg("--json").arg("-q").args(args);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    let finished = run_child(cmd, None);
    assert_eq!(finished.code, 0, "{}", tail(&finished.stderr));
    let results = parse_jsonl(&fs::read_to_string(&out).unwrap());
    assert_eq!(results.len(), urls.len());
    assert!(
        results.iter().all(|r| r["status"] == 200),
        "not all 200: {args:?}"
    );
    let cpu = finished
        .stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("CPU "))
        .expect("/usr/bin/time's line");
    cpu.split(' ').map(|t| t.parse::<f64>().unwrap()).sum()
}

/// The figure: the same 10,000 https URLs directly, through the CONNECT proxy and through
/// the SOCKS5 proxy, 10,000 × 200 each; prints the client CPU per URL (run with --nocapture to see
/// it). Asserts outcomes only.
#[test]
fn ten_thousand_urls_through_each_proxy() {
    if !std::path::Path::new("/usr/bin/time").exists() {
        eprintln!("skipped: no /usr/bin/time");
        return;
    }
    let serve = start_serve_on(Wire::Https, &[]);
    let urls: Vec<String> = (0..10_000).map(|i| serve.url(&format!("/u/{i}"))).collect();
    let connect = Proxy::http(None);
    let socks = Proxy::socks5(None);
    let (curl, surl) = (connect.url("http", ""), socks.url("socks5h", ""));
    for p in ["16", "1"] {
        for (name, via) in [
            ("direct", None),
            ("CONNECT", Some(&curl)),
            ("socks5h", Some(&surl)),
        ] {
            let mut args = vec!["-p", p];
            if let Some(via) = via {
                args.extend(["--proxy", via.as_str()]);
            }
            let cpu = cpu_of_run(&urls, &serve.client_args(&args));
            eprintln!(
                "10000 URLs -p {p} {name:8}: client CPU {cpu:.2} s, {:.1} µs per URL",
                cpu * 1e6 / 10_000.0
            );
        }
    }
    assert!(connect
        .asked()
        .iter()
        .all(|a| a.line.starts_with("CONNECT localhost:")));
    assert!(!socks.asked().is_empty());
}
