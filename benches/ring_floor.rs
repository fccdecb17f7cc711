//! The raw-ring floor: what an HTTP/1.1 keep-alive client costs per request on this kernel with no
//! async runtime at all. One thread, one io_uring (SINGLE_ISSUER, DEFER_TASKRUN), the connections in
//! its fixed-file table, one multishot receive each into a shared provided-buffer ring, one send per
//! response that posts nothing on success, and the thread waits for completions inside
//! `io_uring_enter`. That is ringfetch's direct data path with tokio and tokio-uring taken away, so
//! beside `ringfetch bench --transport direct` and wrk it prices the runtime the design binds the
//! workers to (issue 15, depth 1; docs/PERFORMANCE.md). Not a client: no timeouts, no errors
//! survived, no pipelining, responses framed by Content-Length only.
//!
//!   cargo build --release --example ring_floor
//!   taskset -c 1 target/release/examples/ring_floor http://127.0.0.1:PORT/1k 256 5   # URL, connections, seconds
//!
//! Prints the responses it counted. Sends the bare request head (Host only), as issue 15 measured.

#[path = "floor_args.rs"]
mod floor_args;

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring7::{cqueue, opcode, squeue, types, IoUring};

const BUFFERS: u16 = 1024;
const BUFFER_SIZE: usize = 16 * 1024;
const GROUP: u16 = 0;
const SEND: u64 = 1 << 32;

/// Where a connection is in the response it is reading.
enum Reading {
    /// The head, with the bytes of it that came so far (a head cut by a receive's end).
    Head(Vec<u8>),
    /// This many body bytes still to come.
    Body(usize),
}

fn main() {
    let target = floor_args::target("ring_floor");
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        target.path, target.authority
    )
    .into_bytes();

    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(65536)
        .build(4096)
        .expect("an io_uring with DEFER_TASKRUN (Linux 6.1+)");

    let streams: Vec<std::net::TcpStream> = (0..target.conns)
        .map(|_| {
            let s = std::net::TcpStream::connect(target.addr).expect("connect");
            s.set_nodelay(true).expect("TCP_NODELAY");
            s
        })
        .collect();
    let fds: Vec<i32> = streams.iter().map(|s| s.as_raw_fd()).collect();
    ring.submitter()
        .register_files(&fds)
        .expect("a fixed-file table");

    // The provided buffers: a ring of entries (page-aligned, as the kernel maps it) naming slices of one
    // allocation.
    let mut pool = vec![0u8; usize::from(BUFFERS) * BUFFER_SIZE];
    let entries_len = usize::from(BUFFERS) * std::mem::size_of::<types::BufRingEntry>();
    // SAFETY: an anonymous private mapping; it is never unmapped, so it outlives the ring that reads it.
    let entries = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            entries_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    assert_ne!(entries, libc::MAP_FAILED, "mmap of the buffer ring");
    let entries = entries.cast::<types::BufRingEntry>();
    let mut tail: u16 = 0;
    let give = |tail: &mut u16, bid: u16, pool: &mut [u8]| {
        // SAFETY: the entry at `tail` is past the published tail, so the kernel does not read it, and
        // the buffer it names lies in `pool`, which lives until the process exits.
        unsafe {
            let e = &mut *entries.add(usize::from(*tail & (BUFFERS - 1)));
            e.set_addr(pool.as_mut_ptr().add(usize::from(bid) * BUFFER_SIZE) as u64);
            e.set_len(BUFFER_SIZE as u32);
            e.set_bid(bid);
        }
        *tail = tail.wrapping_add(1);
    };
    let publish = |tail: u16| {
        // SAFETY: the tail field lives in the first entry of the mapped ring (the kernel's layout) and
        // is read by the kernel with an acquire load.
        let t = unsafe { &*(types::BufRingEntry::tail(entries).cast::<AtomicU16>()) };
        t.store(tail, Ordering::Release);
    };
    for bid in 0..BUFFERS {
        give(&mut tail, bid, &mut pool);
    }
    publish(tail);
    // SAFETY: the entries stay mapped and the buffers allocated for the life of the process.
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(entries as u64, BUFFERS, GROUP, 0)
            .expect("a provided-buffer ring (Linux 5.19+)");
    }

    let recv = |i: usize| {
        opcode::RecvMulti::new(types::Fixed(i as u32), GROUP)
            .build()
            .user_data(i as u64)
    };
    let send = |i: usize| {
        opcode::Send::new(
            types::Fixed(i as u32),
            request.as_ptr(),
            request.len() as u32,
        )
        .flags(libc::MSG_WAITALL)
        .build()
        .flags(squeue::Flags::SKIP_SUCCESS)
        .user_data(SEND | i as u64)
    };
    let push = |ring: &mut IoUring, sqe: squeue::Entry| {
        // SAFETY: every send points at `request` and every receive at the registered pool, both alive
        // until the process exits.
        while unsafe { ring.submission().push(&sqe) }.is_err() {
            ring.submit().expect("submit");
        }
    };
    let mut reading: Vec<Reading> = (0..target.conns)
        .map(|_| Reading::Head(Vec::new()))
        .collect();
    for i in 0..target.conns {
        push(&mut ring, recv(i));
        push(&mut ring, send(i));
    }

    let until = Instant::now() + Duration::from_secs(target.secs);
    let mut responses: u64 = 0;
    let mut cqes: Vec<cqueue::Entry> = Vec::with_capacity(4096);
    while Instant::now() < until {
        ring.submit_and_wait(1).expect("io_uring_enter");
        cqes.clear();
        cqes.extend(ring.completion());
        for cqe in &cqes {
            let data = cqe.user_data();
            let res = cqe.result();
            assert!(data & SEND == 0, "a send failed: {res}");
            let i = data as usize;
            if res == -libc::ENOBUFS {
                push(&mut ring, recv(i));
                continue;
            }
            assert!(res > 0, "connection {i} ended: {res}");
            let bid = cqueue::buffer_select(cqe.flags()).expect("a buffer");
            let start = usize::from(bid) * BUFFER_SIZE;
            let done = consume(&mut reading[i], &pool[start..start + res as usize]);
            for _ in 0..done {
                push(&mut ring, send(i));
            }
            responses += done;
            give(&mut tail, bid, &mut pool);
            if !cqueue::more(cqe.flags()) {
                push(&mut ring, recv(i));
            }
        }
        publish(tail);
    }
    drop(streams);
    println!("{responses}");
}

/// Reads `bytes` into the connection's response; returns the responses it completed.
fn consume(reading: &mut Reading, mut bytes: &[u8]) -> u64 {
    let mut done = 0;
    while !bytes.is_empty() {
        match reading {
            Reading::Body(left) => {
                let take = (*left).min(bytes.len());
                *left -= take;
                bytes = &bytes[take..];
                if *left == 0 {
                    done += 1;
                    *reading = Reading::Head(Vec::new());
                }
            }
            Reading::Head(part) => {
                let (head, whole) = if part.is_empty() {
                    (bytes, true)
                } else {
                    part.extend_from_slice(bytes);
                    (&part[..], false)
                };
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(head).expect("a response head") {
                    httparse::Status::Partial => {
                        if whole {
                            part.extend_from_slice(bytes);
                        }
                        return done;
                    }
                    httparse::Status::Complete(n) => {
                        let length = floor_args::content_length(&response);
                        // What of `bytes` follows the head: all of the joined bytes past it came
                        // from `bytes`, since the part before them held no whole head.
                        let rest = head.len() - n;
                        let consumed = bytes.len() - rest;
                        bytes = &bytes[consumed..];
                        *reading = if length == 0 {
                            done += 1;
                            Reading::Head(Vec::new())
                        } else {
                            Reading::Body(length)
                        };
                    }
                }
            }
        }
    }
    done
}
