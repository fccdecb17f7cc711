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

#[path = "floor_args.rs"]
mod floor_args;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

fn main() {
    let target = floor_args::target("floor");
    let request: &'static [u8] = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringfetch/{}\r\nAccept: */*\r\n\r\n",
        target.path,
        target.authority,
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
            let until = Instant::now() + Duration::from_secs(target.secs);
            let tasks: Vec<_> = (0..target.conns)
                .map(|_| {
                    let responses = responses.clone();
                    tokio_uring::spawn(connection(target.addr, request, until, responses))
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
                let length = floor_args::content_length(&response);
                if buf.len() >= head + length {
                    break;
                }
            }
        }
        responses.set(responses.get() + 1);
    }
}
