//! Transports: the one seam between the HTTP engine and the bytes. `engine::conn` only calls `read`,
//! `send_now`, `write_all` and friends and drops the transport; plain TCP and TLS (client and, for
//! `serve`, server) are the variants, direct-descriptor sockets join the same way without touching
//! the HTTP code. Static dispatch through an enum keeps the hot path free of virtual calls (wrk's
//! `net.h` table, as an enum); TLS is boxed so a plain connection stays small.

pub mod dns;
pub mod tcp;
pub mod tls;

pub use dns::Host;

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ErrorKind, FetchError};

pub enum Transport {
    Plain(tcp::Conn),
    Tls(Box<tls::ClientStream>),
    TlsServer(Box<tls::ServerStream>),
}

/// Dispatches to the variant's own method.
macro_rules! each {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            Transport::Plain($c) => $e,
            Transport::Tls($c) => $e,
            Transport::TlsServer($c) => $e,
        }
    };
}

impl Transport {
    /// Reads into the spare capacity of `buf` (from `len()` to `capacity()`), as io_uring owns the buffer
    /// while the read is under way.
    pub async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        each!(self, c => c.read(buf).await)
    }

    /// Sends what the socket takes right now, without waiting; the caller writes the rest with
    /// `write_all`. A batch of requests almost always fits the socket's send buffer, and a direct send
    /// costs one system call where a ring write costs an SQE, a CQE and a task wake-up. TLS takes all
    /// of `buf` (it is encrypted at once) and may keep ciphertext for `write_all`: see `unsent`.
    pub fn send_now(&self, buf: &[u8]) -> io::Result<usize> {
        each!(self, c => c.send_now(buf))
    }

    /// Bytes taken by `send_now` still wait to be sent: call `write_all` (with an empty buffer if the
    /// caller has nothing more).
    pub fn unsent(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(c) => c.unsent(),
            Transport::TlsServer(c) => c.unsent(),
        }
    }

    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        each!(self, c => c.write_all(buf).await)
    }

    /// The end of the stream that `read` reported (Ok(0)) is known to be the peer's: always for TCP,
    /// only after close_notify for TLS (RFC 9112 §9.8: a close-delimited body is otherwise possibly
    /// truncated).
    pub fn closed_cleanly(&self) -> bool {
        match self {
            Transport::Plain(_) => true,
            Transport::Tls(c) => c.closed_cleanly(),
            Transport::TlsServer(c) => c.closed_cleanly(),
        }
    }

    /// How the TLS session started: None for plain TCP, else Some(resumed).
    pub fn tls_resumed(&self) -> Option<bool> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(c) => Some(c.handshake_kind() == Some(rustls::HandshakeKind::Resumed)),
            Transport::TlsServer(c) => {
                Some(c.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
            }
        }
    }

    /// Sets the socket's receive low-water mark (see `engine::conn::ReadBatching`).
    pub fn set_recv_lowat(&self, bytes: usize) {
        crate::sys::set_recv_lowat(self.raw_fd(), bytes);
    }

    /// Ends our side in good order: close_notify over TLS, then FIN.
    pub fn shutdown_write(&self) {
        match self {
            Transport::Plain(_) => {}
            Transport::Tls(c) => c.close_notify(),
            Transport::TlsServer(c) => c.close_notify(),
        }
        crate::sys::shutdown_write(self.raw_fd());
    }

    /// The socket, for the watchdog's shutdown on timeout.
    pub fn raw_fd(&self) -> RawFd {
        each!(self, c => c.raw_fd())
    }
}

/// Connects to the first address that answers, trying each in turn, each within `timeout`; with
/// `tls` (the configuration and the name to verify), runs the handshake on the connection that answered.
pub async fn connect(
    addrs: &[SocketAddr],
    timeout: Duration,
    tls: Option<(&Arc<rustls::ClientConfig>, &str)>,
) -> Result<Transport, FetchError> {
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout(timeout, tcp::Conn::connect(*addr)).await {
            Ok(Ok(conn)) => {
                return match tls {
                    None => Ok(Transport::Plain(conn)),
                    Some((config, host)) => tls::ClientStream::connect(conn, config, host, timeout)
                        .await
                        .map(|s| Transport::Tls(Box::new(s))),
                }
            }
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
