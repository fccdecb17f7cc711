//! Transports: the one seam between the HTTP engine and the bytes. `engine::conn` only calls `read`,
//! `write_all`, `raw_fd` and drops the transport; plain TCP is the only variant today, TLS and
//! direct-descriptor sockets join as further variants without touching the HTTP code. Static dispatch
//! through an enum keeps the hot path free of virtual calls (wrk's `net.h` table, as an enum).

pub mod tcp;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;
use std::time::Duration;

use crate::error::{ErrorKind, FetchError};

pub enum Transport {
    Plain(tcp::Conn),
}

impl Transport {
    /// Reads into the spare capacity of `buf` (from `len()` to `capacity()`), as io_uring owns the buffer
    /// while the read is under way.
    pub async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Transport::Plain(c) => c.read(buf).await,
        }
    }

    /// Sends what the socket takes right now, without waiting; the caller writes the rest with
    /// `write_all`. A batch of requests almost always fits the socket's send buffer, and a direct send
    /// costs one system call where a ring write costs an SQE, a CQE and a task wake-up.
    pub fn send_now(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(c) => c.send_now(buf),
        }
    }

    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match self {
            Transport::Plain(c) => c.write_all(buf).await,
        }
    }

    /// Sets the socket's receive low-water mark (see `engine::conn::ReadBatching`).
    pub fn set_recv_lowat(&self, bytes: usize) {
        crate::sys::set_recv_lowat(self.raw_fd(), bytes);
    }

    /// The socket, for the watchdog's shutdown on timeout.
    pub fn raw_fd(&self) -> RawFd {
        match self {
            Transport::Plain(c) => c.raw_fd(),
        }
    }
}

/// Where a URL's host points.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

/// Resolves a host once. Addresses connect directly; `localhost` never leaves the machine (RFC 6761);
/// other names go through the system resolver on tokio's blocking pool, off the ring thread.
pub async fn resolve(host: &Host, port: u16) -> Result<Vec<SocketAddr>, FetchError> {
    match host {
        Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, port)]),
        Host::Name(name) if name.eq_ignore_ascii_case("localhost") => Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]),
        // RFC 6761 §6.4: `.invalid` never resolves; answer without asking any resolver.
        Host::Name(name)
            if name
                .trim_end_matches('.')
                .to_ascii_lowercase()
                .ends_with(".invalid")
                || name.eq_ignore_ascii_case("invalid") =>
        {
            Err(FetchError::new(
                ErrorKind::Dns,
                format!("'{name}' is under .invalid, which never resolves (RFC 6761)"),
            ))
        }
        Host::Name(name) => {
            let found = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|e| {
                    FetchError::new(
                        ErrorKind::Dns,
                        format!("cannot resolve '{name}': {e}; check the name, or the resolver in /etc/resolv.conf"),
                    )
                })?
                .collect::<Vec<_>>();
            if found.is_empty() {
                return Err(FetchError::new(
                    ErrorKind::Dns,
                    format!("'{name}' has no addresses"),
                ));
            }
            Ok(found)
        }
    }
}

/// Connects to the first address that answers, trying each in turn within `timeout` overall.
pub async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<Transport, FetchError> {
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout(timeout, tcp::Conn::connect(*addr)).await {
            Ok(Ok(conn)) => return Ok(Transport::Plain(conn)),
            Ok(Err(err)) => last = Some(FetchError::connect(&addr.to_string(), &err)),
            Err(_) => {
                last = Some(FetchError::new(
                    ErrorKind::Timeout,
                    format!(
                        "no connection to {addr} within {:.1}s (--connect-timeout); is the host up and reachable?",
                        timeout.as_secs_f64()
                    ),
                ))
            }
        }
    }
    Err(last.unwrap_or_else(|| FetchError::new(ErrorKind::Dns, "no address to connect to")))
}
