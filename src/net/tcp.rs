//! Plain TCP over tokio-uring's own `TcpStream`: one READ and one WRITE op per call, measured within
//! 5–13% of a raw io_uring loop (../shared/DATAPATH.md) and without a second ring's traps.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use tokio_uring::buf::BoundedBuf;
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

    /// Reads into the spare capacity of `buf`, after the bytes it already holds. (tokio-uring reads a
    /// bare `Vec` from its start, overwriting them; a slice from `len()` appends instead.)
    pub async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let held = buf.len();
        let (res, slice) = self.stream.read(buf.slice(held..)).await;
        (res, slice.into_inner())
    }

    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.stream.write_all(buf).await
    }

    pub fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}
