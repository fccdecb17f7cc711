//! What the floor examples share (benches/floor.rs, benches/ring_floor.rs): the command line, and
//! the framing of a response by its Content-Length.

use std::net::{SocketAddr, ToSocketAddrs};

/// What to load: `NAME http://HOST:PORT/PATH CONNECTIONS SECONDS`.
pub struct Target {
    pub addr: SocketAddr,
    /// The Host header's value: the host, and the port when the URL names one.
    pub authority: String,
    pub path: String,
    pub conns: usize,
    pub secs: u64,
}

/// Reads the arguments, or exits with 2 and the usage of `name`.
pub fn target(name: &str) -> Target {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: {name} http://HOST:PORT/PATH CONNECTIONS SECONDS");
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
        None => host,
    };
    Target {
        addr,
        authority,
        path: url.path().to_string(),
        conns: args[2].parse().expect("a connection count"),
        secs: args[3].parse().expect("seconds"),
    }
}

/// The body length a parsed head announces; the floors frame nothing else.
pub fn content_length(response: &httparse::Response) -> usize {
    response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .expect("a Content-Length")
}
