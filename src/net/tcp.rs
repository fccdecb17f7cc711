//! Plain TCP over tokio-uring's own `TcpStream`: one READ and one WRITE op per call, measured within
//! 5–13% of a raw io_uring loop (../shared/DATAPATH.md) and without a second ring's traps.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use tokio_uring::net::TcpStream;

pub struct Conn {
    stream: TcpStream,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        // Requests are small and latency-bound; pipelined batches are already one write.
        stream.set_nodelay(true)?;
        Ok(Conn { stream })
    }

    /// An accepted connection (`serve`).
    pub fn from_stream(stream: TcpStream) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
        Ok(Conn { stream })
    }

    /// Receives into the spare capacity of `buf`, after the bytes it already holds, with POLL_FIRST
    /// (see `sys::recv_poll_first`). tokio-uring's own `read` would start at the front of a `Vec`.
    pub async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        crate::sys::recv_poll_first(self.stream.as_raw_fd(), buf).await
    }

    pub fn send_now(&self, buf: &[u8]) -> io::Result<usize> {
        crate::sys::send_now(self.stream.as_raw_fd(), buf)
    }

    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.stream.write_all(buf).await
    }

    pub fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}
