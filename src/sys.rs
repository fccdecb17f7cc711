//! The few raw system calls ringfetch makes outside io_uring, each behind a safe function. The crate's
//! `unsafe` lives here, apart from the direct transport's ring memory (`net::direct`).

use std::io;
use std::os::fd::RawFd;

/// The CPUs this process may run on (its affinity mask), in ascending order. `taskset -c 1 ringfetch`
/// therefore yields `[1]`.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let cpus = affinity()?;
    // The first answer is the process's mask before any worker pinned itself: `unpin_current_thread`
    // goes back to it.
    let _ = PROCESS_CPUS.set(cpus.clone());
    Ok(cpus)
}

static PROCESS_CPUS: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();

fn affinity() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is a plain bitmask for which all-zero bytes are a valid (empty) value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: we pass the size of the set we own; the kernel writes at most that many bytes.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the bit count of `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Pins the calling thread to one CPU.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    set_affinity(&[cpu])
}

/// Lets the calling thread run on every CPU the process was allowed at start. Threads a pinned worker
/// starts (tokio's blocking pool, where names are resolved) inherit its pin and would compete with it
/// for its one CPU; they call this first.
pub fn unpin_current_thread() {
    if let Some(cpus) = PROCESS_CPUS.get() {
        let _ = set_affinity(cpus);
    }
}

fn set_affinity(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: as above, an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: `cpu` is below CPU_SETSIZE, the bit count of `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; the set is initialised and sized correctly.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This process's resident memory in KiB (VmRSS), for `bench --hold`'s bytes per connection.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Kernel memory this machine's TCP connections hold, in bytes: their buffers (the `mem` pages of
/// /proc/net/sockstat's TCP line) plus, where /proc/slabinfo is readable (root), the socket objects
/// themselves (the TCP, TCPv6, sock_inode_cache, filp and dentry slabs). On loopback both ends count.
pub fn tcp_kernel_bytes() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    let mut pages = 0;
    while let Some(w) = words.next() {
        if w == "mem" {
            pages = words.next()?.parse().ok()?;
        }
    }
    let slabs: u64 = std::fs::read_to_string("/proc/slabinfo")
        .map(|text| {
            text.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let wanted = ["TCP", "TCPv6", "sock_inode_cache", "filp", "dentry"];
                    if f.len() < 4 || !wanted.contains(&f[0]) {
                        return None;
                    }
                    // name active_objs num_objs objsize ...
                    Some(f[2].parse::<u64>().ok()? * f[3].parse::<u64>().ok()?)
                })
                .sum()
        })
        .unwrap_or(0);
    Some(pages * 4096 + slabs)
}

/// Shuts a socket down in both directions without closing it. A pending io_uring read on it then
/// completes (with 0), which is how a timed-out or stopped connection gets its buffer back instead of
/// dropping an in-flight operation (tokio-uring does not cancel dropped operations).
pub fn shutdown(fd: RawFd) {
    // SAFETY: shutdown(2) takes a plain integer and touches no memory of ours. The fd belongs to a
    // connection that is still open: watches are removed before their connection closes its socket.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Ends our direction of a socket (FIN) while the peer's stays readable.
pub fn shutdown_write(fd: RawFd) {
    // SAFETY: as in `shutdown`: an integer argument, a socket its owner still holds open.
    unsafe {
        libc::shutdown(fd, libc::SHUT_WR);
    }
}

/// Whether the socket is still quietly open: nothing to read and no end of stream or error from the
/// peer (a nonblocking one-byte receive with MSG_PEEK fails with EAGAIN). Leaves any bytes in place.
pub fn quietly_open(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: recv writes at most 1 byte into `byte`, a live local; MSG_DONTWAIT never blocks.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN)
}

/// Sets SO_LINGER to {on, 0 s}: the close that follows sends RST instead of FIN, so no TIME_WAIT socket
/// keeps the local port for a minute (see `net::Transport::abort_on_close`). An error (a socket the
/// peer already reset) only leaves the ordinary close, which is then what happens.
pub fn set_linger_abort(fd: RawFd) {
    set_socket_option(fd, libc::SO_LINGER, &ABORT_ON_CLOSE);
}

/// SO_LINGER's value for an abortive close: lingering on, for zero seconds. A static, so a ring's
/// SETSOCKOPT may point at it however long the operation waits in the queue.
pub static ABORT_ON_CLOSE: libc::linger = libc::linger {
    l_onoff: 1,
    l_linger: 0,
};

/// Sets SO_RCVLOWAT: readiness (and so a POLL_FIRST receive) waits for this many bytes, or for the
/// end of the stream or an error. Linux re-checks readiness when it is lowered, waking a waiting read.
/// An error (a socket already closed by the peer) only leaves the old mark, which the closed state
/// overrides anyway.
pub fn set_recv_lowat(fd: RawFd, bytes: usize) {
    let value = bytes.clamp(1, i32::MAX as usize) as libc::c_int;
    set_socket_option(fd, libc::SO_RCVLOWAT, &value);
}

/// setsockopt(SOL_SOCKET, `name`) to `value`; the callers say why an error may be ignored.
fn set_socket_option<T>(fd: RawFd, name: libc::c_int, value: &T) {
    // SAFETY: setsockopt reads size_of::<T>() bytes from `value`, a live reference for the call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        );
    }
}

/// One nonblocking send(2) of `buf` (MSG_DONTWAIT, and MSG_NOSIGNAL: a peer that went away is an
/// error, not a SIGPIPE). Returns how many bytes the kernel took, which may be fewer than asked.
pub fn send_now(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: send(2) reads at most `buf.len()` bytes from `buf`, which we borrow for the call.
    let n = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// The kernel release, e.g. "6.18.44".
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain bytes; all-zero is valid.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes into the struct we own.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".into();
    }
    let release: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&release).into_owned()
}

/// Completion of `recv_poll_first`: the buffer comes back with the received bytes appended.
pub struct RecvDone;

impl tokio_uring::OneshotOutputTransform for RecvDone {
    type Output = (io::Result<usize>, Vec<u8>);
    type StoredData = Vec<u8>;

    fn transform_oneshot_output(
        self,
        mut buf: Vec<u8>,
        cqe: io_uring::cqueue::Entry,
    ) -> Self::Output {
        let res = cqe.result();
        if res < 0 {
            return (Err(io::Error::from_raw_os_error(-res)), buf);
        }
        let n = res as usize;
        // SAFETY: the kernel wrote `n` bytes into the spare capacity after `len()`, and never more than
        // the length we gave it (`capacity() - len()`), so `len() + n <= capacity()` are initialised.
        unsafe { buf.set_len(buf.len() + n) };
        (Ok(n), buf)
    }
}

/// Receives into the spare capacity of `buf` with IORING_RECVSEND_POLL_FIRST: the kernel arms its poll
/// at once instead of first trying a receive that would fail with EAGAIN, which is what happens to
/// every read issued right after its request was written.
///
/// The caller keeps the socket open until this completes (connections never drop an in-flight read;
/// see `engine::deadline`).
pub async fn recv_poll_first(fd: RawFd, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
    use io_uring::{opcode, types};
    const IORING_RECVSEND_POLL_FIRST: u16 = 1;
    let held = buf.len();
    let spare = (buf.capacity() - held).min(u32::MAX as usize) as u32;
    // SAFETY: `held <= capacity()`, so the pointer stays inside (or one past) the allocation. The Vec is
    // moved into the operation's stable data, which keeps its heap buffer alive and unmoved until the
    // completion arrives, even if this future is dropped.
    let ptr = unsafe { buf.as_mut_ptr().add(held) };
    let entry = opcode::Recv::new(types::Fd(fd), ptr, spare).build();
    // io-uring 0.6's Recv builder has no ioprio setter. squeue::Entry is #[repr(C)] around the kernel's
    // 64-byte io_uring_sqe, whose u16 `ioprio` sits at byte offset 2 (opcode u8, flags u8, ioprio u16).
    // SAFETY: Entry and [u8; 64] have the same size and both are plain data (no pointers are created or
    // dereferenced by this copy); the ABI layout above is fixed by the kernel.
    let entry: io_uring::squeue::Entry = unsafe {
        let mut raw: [u8; 64] = std::mem::transmute(entry);
        raw[2..4].copy_from_slice(&IORING_RECVSEND_POLL_FIRST.to_ne_bytes());
        std::mem::transmute(raw)
    };
    tokio_uring::UnsubmittedOneshot::new(buf, RecvDone, entry)
        .submit()
        .await
}

/// Keeps a connect's address alive while the kernel reads it, and reports the result.
struct ConnectDone;

impl tokio_uring::OneshotOutputTransform for ConnectDone {
    type Output = io::Result<()>;
    type StoredData = Box<socket2::SockAddr>;

    fn transform_oneshot_output(
        self,
        _addr: Box<socket2::SockAddr>,
        cqe: io_uring::cqueue::Entry,
    ) -> io::Result<()> {
        match cqe.result() {
            res if res < 0 => Err(io::Error::from_raw_os_error(-res)),
            _ => Ok(()),
        }
    }
}

/// Connects the socket `fd` to `addr` through the ring. The caller keeps `fd` open until this
/// completes; `shutdown(fd)` ends a connect still in SYN_SENT at once.
pub async fn connect(fd: RawFd, addr: std::net::SocketAddr) -> io::Result<()> {
    use io_uring::{opcode, types};
    let addr = Box::new(socket2::SockAddr::from(addr));
    let entry = opcode::Connect::new(types::Fd(fd), addr.as_ptr().cast(), addr.len()).build();
    // The address is boxed into the operation's stable data, which tokio-uring keeps until the
    // completion arrives even if this future is dropped, so the kernel never reads freed memory.
    tokio_uring::UnsubmittedOneshot::new(addr, ConnectDone, entry)
        .submit()
        .await
}

/// SIGINT and SIGTERM, as a signal set.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is a plain bitmask; sigemptyset initialises it before any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live, exclusively borrowed sigset_t for each call.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
    }
    set
}

/// Blocks SIGINT and SIGTERM in the calling thread, and so in every thread it starts afterwards:
/// they then wait for `wait_stop_signal` instead of ending the process, and no handler runs in a
/// worker at an arbitrary point.
pub fn block_stop_signals() {
    let set = stop_signals();
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Undoes `block_stop_signals` for the calling thread.
pub fn unblock_stop_signals() {
    let set = stop_signals();
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
}

/// Waits for SIGINT or SIGTERM (blocked first with `block_stop_signals`) and returns its number.
pub fn wait_stop_signal() -> i32 {
    let set = stop_signals();
    let mut sig: libc::c_int = 0;
    loop {
        // SAFETY: `set` is initialised and `sig` is a live local the call writes once.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
            return sig;
        }
    }
}

/// The name of a stop signal, for messages.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_round_trip() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        let first = cpus[0];
        std::thread::spawn(move || {
            pin_current_thread(first).unwrap();
            assert_eq!(allowed_cpus().unwrap(), vec![first]);
        })
        .join()
        .unwrap();
    }
}
