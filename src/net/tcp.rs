//! Plain TCP over tokio-uring's own `TcpStream`: one READ and one WRITE op per call, measured within
//! 5–13% of a raw io_uring loop (../shared/DATAPATH.md) and without a second ring's traps.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use tokio_uring::net::TcpStream;

pub struct Conn {
    stream: TcpStream,
}

impl Conn {
    /// Connects within `timeout`. A connect that times out gives its descriptor back at once: the
    /// socket is ours (not tokio-uring's, whose dropped connect keeps the descriptor until the kernel
    /// gives up, about two minutes of SYN retries against a host that drops them), so it is shut
    /// down, which aborts a connect in SYN_SENT, and closed once the ring has let go of it.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_nonblocking(true)?;
        // Requests are small and latency-bound; pipelined batches are already one write.
        socket.set_tcp_nodelay(true)?;
        let fd = socket.as_raw_fd();
        let connect = crate::sys::connect(fd, addr);
        tokio::pin!(connect);
        tokio::select! {
            res = &mut connect => res?,
            _ = tokio::time::sleep(timeout) => {
                crate::sys::shutdown(fd);
                let _ = connect.await;
                return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
            }
        }
        let stream = TcpStream::from_std(std::net::TcpStream::from(socket));
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
