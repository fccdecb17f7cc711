//! The data-path floor: the least an HTTP/1.1 keep-alive client on tokio-uring's `TcpStream` can do per
//! request. One runtime, one task per connection, each writing a request and reading its response in
//! turn; no timeouts, statistics, retries or pipelining. scripts/compare.sh runs it beside ringfetch
//! and wrk in scenario (a), so the CPU that ringfetch's engine adds on top of the data path it is built
//! on shows in the same run.
//!
//!   cargo build --release --example floor
//!   taskset -c 1 target/release/examples/floor http://127.0.0.1:PORT/1k 256 5   # URL, connections, seconds
//!
//! Prints the responses it counted. It sends the same request head as `ringfetch bench` by default.

use std::cell::Cell;
use std::net::ToSocketAddrs;
use std::rc::Rc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: floor http://HOST:PORT/PATH CONNECTIONS SECONDS");
        std::process::exit(2);
    }
    let url = url::Url::parse(&args[1]).expect("a URL");
    let host = url.host_str().expect("a host").to_string();
    let port = url.port_or_known_default().expect("a port");
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .expect("an address")
        .next()
        .expect("an address");
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let conns: usize = args[2].parse().expect("a connection count");
    let secs: u64 = args[3].parse().expect("seconds");
    let request: &'static [u8] = format!(
        "GET {} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: ringfetch/{}\r\nAccept: */*\r\n\r\n",
        url.path(),
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
    .leak();

    // The ring set-up ringfetch's workers use (engine/runtime.rs).
    let mut ring = io_uring::IoUring::builder();
    ring.setup_single_issuer()
        .setup_coop_taskrun()
        .setup_cqsize(65536);
    let responses = Rc::new(Cell::new(0u64));
    let counted = responses.clone();
    tokio_uring::builder()
        .entries(4096)
        .uring_builder(&ring)
        .start(async move {
            let until = Instant::now() + Duration::from_secs(secs);
            let tasks: Vec<_> = (0..conns)
                .map(|_| {
                    let responses = responses.clone();
                    tokio_uring::spawn(connection(addr, request, until, responses))
                })
                .collect();
            for t in tasks {
                t.await.expect("a connection task");
            }
        });
    println!("{}", counted.get());
}

async fn connection(
    addr: std::net::SocketAddr,
    request: &'static [u8],
    until: Instant,
    responses: Rc<Cell<u64>>,
) {
    let stream = tokio_uring::net::TcpStream::connect(addr)
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let mut buf = Vec::with_capacity(32 * 1024);
    while Instant::now() < until {
        let (res, _) = stream.write_all(request).await;
        res.expect("write");
        buf.clear();
        // Read until the head and its Content-Length body are in.
        loop {
            let (res, b) = stream.read(buf).await;
            buf = b;
            assert!(res.expect("read") > 0, "the server closed the connection");
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = response.parse(&buf).expect("a response") {
                let length: usize = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .expect("a Content-Length");
                if buf.len() >= head + length {
                    break;
                }
            }
        }
        responses.set(responses.get() + 1);
    }
}
