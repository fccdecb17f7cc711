//! One tokio-uring runtime per worker thread, pinned to a CPU, for the client engine and serve alike
//! (it sits below both). The kernel is probed once at start to
//! choose ring flags; `-v` prints what was found.

use std::io;
use std::thread::JoinHandle;

use io_uring::{opcode, IoUring, Probe};

use crate::sys;

/// Submission queue size. Under load tokio-uring flushes every ≤61 task polls, so 4096 never fills.
const SQ_ENTRIES: u32 = 4096;
/// Completion queue size: large, so a burst of completions never overflows into the kernel's list.
const CQ_ENTRIES: u32 = 65536;

/// What the kernel offers, found once at start.
#[derive(Clone, Debug)]
pub struct RingSetup {
    pub kernel: String,
    pub single_issuer: bool,
    pub coop_taskrun: bool,
    pub ops: Vec<(&'static str, bool)>,
    /// Small tokio-uring rings: with the direct transport at scale (more workers than CPUs), each
    /// worker's own ring carries little and its memory is paid once per worker.
    pub small: bool,
}

impl RingSetup {
    /// Creates throwaway rings to learn which setup flags this kernel accepts, then asks it which
    /// opcodes it has. SINGLE_ISSUER (6.0) and COOP_TASKRUN (5.19) are taken when available; DEFER_TASKRUN
    /// hangs tokio-uring (it never waits inside io_uring_enter) and SQPOLL burns a core per ring, so
    /// neither is ever used.
    pub fn probe() -> io::Result<RingSetup> {
        let mut single_issuer = true;
        let mut coop_taskrun = true;
        let ring: IoUring = loop {
            let mut b = IoUring::builder();
            if single_issuer {
                b.setup_single_issuer();
            }
            if coop_taskrun {
                b.setup_coop_taskrun();
            }
            match b.build(8) {
                Ok(ring) => break ring,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && single_issuer => single_issuer = false,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && coop_taskrun => coop_taskrun = false,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "io_uring is not available ({e}); ringfetch needs Linux 5.11 or later with \
                             io_uring enabled (sysctl kernel.io_uring_disabled=0, and no seccomp filter \
                             blocking it, as some container runtimes install)"
                        ),
                    ))
                }
            }
        };
        let mut probe = Probe::new();
        let probed = ring.submitter().register_probe(&mut probe).is_ok();
        let has = |code: u8| probed && probe.is_supported(code);
        Ok(RingSetup {
            kernel: sys::kernel_release(),
            single_issuer,
            coop_taskrun,
            small: false,
            ops: vec![
                ("read", has(opcode::Read::CODE)),
                ("write", has(opcode::Write::CODE)),
                ("connect", has(opcode::Connect::CODE)),
                ("accept", has(opcode::Accept::CODE)),
                ("socket", has(opcode::Socket::CODE)),
                ("send_zc", has(opcode::SendZc::CODE)),
                ("recv_multi", has(opcode::RecvMulti::CODE)),
                ("provide_buffers", has(opcode::ProvideBuffers::CODE)),
            ],
        })
    }

    fn builder(&self, sq: u32, cq: u32) -> tokio_uring::Builder {
        let mut ring = tokio_uring::uring_builder();
        if self.single_issuer {
            ring.setup_single_issuer();
        }
        if self.coop_taskrun {
            ring.setup_coop_taskrun();
        }
        ring.setup_cqsize(cq);
        let mut b = tokio_uring::builder();
        b.entries(sq).uring_builder(&ring);
        b
    }

    /// This thread's runtime. Where ring memory counts against the locked-memory limit (non-root
    /// users, `ulimit -l` 8 MiB, several workers), the large rings may not fit: smaller ones cost some
    /// batching under extreme load, failing to start costs the run.
    fn runtime(&self) -> io::Result<tokio_uring::Runtime> {
        let sizes: &[(u32, u32)] = if self.small {
            &[(256, 1024)]
        } else {
            &[(SQ_ENTRIES, CQ_ENTRIES), (1024, 8192), (256, 1024)]
        };
        for &(sq, cq) in sizes {
            match tokio_uring::Runtime::new(&self.builder(sq, cq)) {
                Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "{e} (each worker thread needs a few descriptors for its rings: raise \
                             the open-file limit with `ulimit -n`, or run fewer threads with -t)"
                        ),
                    ))
                }
                other => return other,
            }
        }
        Err(io::Error::new(
            io::ErrorKind::OutOfMemory,
            "the kernel refused memory for even a small io_uring; raise the locked-memory limit \
             (`ulimit -l`, systemd LimitMEMLOCK) or run fewer workers (-t)",
        ))
    }

    /// The `-v` line.
    pub fn describe(&self) -> String {
        let mut flags = Vec::new();
        if self.single_issuer {
            flags.push("SINGLE_ISSUER");
        }
        if self.coop_taskrun {
            flags.push("COOP_TASKRUN");
        }
        let ops: Vec<String> = self
            .ops
            .iter()
            .map(|(name, ok)| format!("{name}{}", if *ok { "" } else { "(no)" }))
            .collect();
        format!(
            "kernel {}; ring flags {} (not DEFER_TASKRUN: hangs tokio-uring; not SQPOLL: burns a core), \
             sq {SQ_ENTRIES} cq {CQ_ENTRIES}; ops: {}",
            self.kernel,
            if flags.is_empty() { "none".into() } else { flags.join("|") },
            ops.join(" ")
        )
    }
}

/// Starts `count` worker threads; worker i is pinned to `cpus[i % cpus.len()]` and runs `work(i)` to
/// completion inside its own tokio-uring runtime.
pub fn spawn_workers<T, F, Fut>(
    setup: &RingSetup,
    cpus: &[usize],
    count: usize,
    name: &str,
    work: F,
) -> io::Result<Vec<JoinHandle<io::Result<T>>>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Clone + 'static,
    Fut: std::future::Future<Output = T>,
{
    let mut handles = Vec::with_capacity(count);
    for i in 0..count {
        let cpu = cpus.get(i % cpus.len().max(1)).copied();
        let setup = setup.clone();
        let work = work.clone();
        let handle = std::thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    // Pinning is a performance choice, not a correctness one: carry on unpinned.
                    let _ = sys::pin_current_thread(cpu);
                }
                let runtime = setup.runtime()?;
                Ok(runtime.block_on(work(i)))
            })?;
        handles.push(handle);
    }
    Ok(handles)
}
