//! Which transport a run uses (`--transport`), how many workers the direct one needs, and each
//! worker's ring. Decided once at start; the HTTP code never knows which one it runs on.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;

use crate::cli::TransportArg;
use crate::error::{Failure, UsageError};
use crate::net::direct::{self, Ring, RingSize};
use crate::net::Dialer;

use super::limits::{FDS_PER_WORKER, FDS_RESERVED};

/// Slots kept free in each ring beyond its share of connections: a closed connection's slot returns
/// only when its close completes, and a re-opened connection must not wait for that.
const SLOT_SLACK: u32 = 64;

/// The direct transport's plan, shared by the workers.
#[derive(Clone, Debug)]
pub struct DirectSettings {
    /// Fixed-file slots per worker's ring.
    pub slots: u32,
    /// Rings sized for many idle connections (`--hold`) rather than for throughput.
    pub scale: bool,
    pub single_issuer: bool,
    pub sources: Arc<[IpAddr]>,
    /// The pool's buffer count and size, and whether taken whole: `--ring-buffers`, or one for the
    /// responses a worker may have arriving at once (`direct::load_pool`); None: the default of the
    /// mode.
    pub buffers: Option<direct::PoolSize>,
}

impl DirectSettings {
    /// The plan for `connections` direct connections over at least `threads` workers, each ring
    /// holding at most `max_slots`, with `fd_limit` descriptors for the workers themselves, and
    /// `receivers` responses that may be arriving at once over all workers (the pool's size): the
    /// settings, the number of workers it takes, and the connections those workers can hold (fewer
    /// than asked for when the open-file limit is too low for enough workers; the caller clamps).
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        max_slots: u32,
        threads: usize,
        connections: usize,
        receivers: usize,
        fd_limit: u64,
        scale: bool,
        single_issuer: bool,
        sources: Vec<IpAddr>,
        buffers: Option<direct::PoolSize>,
    ) -> (DirectSettings, usize, usize) {
        let (threads, capacity) = workers(threads, connections, max_slots, fd_limit);
        let buffers = buffers.or_else(|| {
            (!scale).then(|| {
                direct::load_pool(receivers.div_ceil(threads), direct::incremental_buffers())
            })
        });
        let settings = DirectSettings {
            slots: ring_slots(connections.div_ceil(threads), max_slots),
            scale,
            single_issuer,
            sources: sources.into(),
            buffers,
        };
        (settings, threads, capacity)
    }

    /// This worker's ring and dialer; the driver task runs until `DirectWorker::finish`.
    pub fn start(&self) -> io::Result<DirectWorker> {
        let mut size = if self.scale {
            RingSize::scale(self.slots)
        } else {
            RingSize::load(self.slots)
        };
        if let Some(pool) = self.buffers {
            size.pool = pool;
        }
        let ring = Ring::new(size, self.single_issuer)?;
        let driver = tokio_uring::spawn(ring.clone().drive());
        Ok(DirectWorker {
            dialer: Dialer::Direct {
                ring: ring.clone(),
                sources: self.sources.clone(),
                next: Rc::default(),
            },
            ring,
            driver,
        })
    }
}

/// Starts this worker's ring when the run uses direct descriptors, pointing `dialer` at it. A worker
/// whose ring cannot start says why, and its connections fail with that reason.
pub fn start_worker(
    direct: &Option<DirectSettings>,
    dialer: &std::cell::RefCell<Dialer>,
) -> Option<DirectWorker> {
    match direct.as_ref()?.start() {
        Ok(worker) => {
            *dialer.borrow_mut() = worker.dialer.clone();
            Some(worker)
        }
        Err(e) => {
            eprintln!("ringfetch: a worker could not start its direct-descriptor ring: {e}");
            *dialer.borrow_mut() = Dialer::Unavailable(e.to_string().into());
            None
        }
    }
}

/// Ends a worker's ring (see `DirectWorker::finish`); the counters are zero without one.
pub async fn finish_worker(
    worker: Option<DirectWorker>,
    dialer: &std::cell::RefCell<Dialer>,
) -> direct::Stats {
    *dialer.borrow_mut() = Dialer::Tcp;
    match worker {
        Some(w) => w.finish().await,
        None => direct::Stats::default(),
    }
}

pub struct DirectWorker {
    pub dialer: Dialer,
    pub ring: Rc<Ring>,
    driver: tokio::task::JoinHandle<()>,
}

impl DirectWorker {
    /// Closes held connections and stops the driver once it has submitted the closes. Returns the
    /// ring's counters.
    pub async fn finish(self) -> direct::Stats {
        self.ring.close_held();
        self.ring.settle(std::time::Duration::from_secs(5)).await;
        self.ring.stop();
        let _ = self.driver.await;
        self.ring.stats()
    }
}

/// `-v`'s lines when the transport was named (fetch, bench and serve alike).
pub const TCP_ASKED: &str = "ringfetch: transport tcp (--transport tcp)";
pub const DIRECT_ASKED: &str = "ringfetch: transport direct (--transport direct)";

/// `-v`'s line when auto fell back to tcp, and why.
pub fn no_direct(why: &dyn std::fmt::Display) -> String {
    format!("ringfetch: transport tcp (auto: no direct descriptors here: {why})")
}

/// The run's choice: Some(slots per ring) for direct, None for tcp, and the `-v` line that says why.
///
/// Auto takes direct descriptors whenever the kernel has what they need: they hold past the
/// open-file limit, and their data path costs less CPU per response (multishot receive into a
/// buffer ring, one submit per turn; docs/PERFORMANCE.md). Tcp only on an older kernel, or when
/// asked for.
pub fn choose(
    choice: TransportArg,
    sources_given: bool,
    limit: super::limits::FdLimit,
) -> Result<(Option<u32>, String), Failure> {
    // Never past the table the kernel allows (under a limit of 64 or less, 64 slots failed every URL).
    let most = direct::table_max(limit.soft);
    let slots = most.saturating_sub(SLOT_SLACK).max(SLOT_SLACK).min(most);
    match choice {
        TransportArg::Tcp if sources_given => Err(UsageError(
            "--source-addrs needs the direct transport; drop --transport tcp".into(),
        )
        .into()),
        TransportArg::Tcp => Ok((None, TCP_ASKED.into())),
        TransportArg::Direct => {
            direct::require()?;
            Ok((Some(slots), DIRECT_ASKED.into()))
        }
        TransportArg::Auto => match direct::available() {
            Ok(()) => Ok((
                Some(slots),
                "ringfetch: transport direct (auto: this kernel has io_uring direct descriptors; \
                 --transport tcp for one file descriptor per connection)"
                    .into(),
            )),
            Err(why) if sources_given => Err(UsageError(format!(
                "--source-addrs needs the direct transport, which this kernel cannot run: {why} \
                 (Linux 6.11 or later)"
            ))
            .into()),
            Err(why) => Ok((None, no_direct(&why))),
        },
    }
}

/// Workers for `connections` direct connections: at least `threads`, and enough rings to give every
/// connection a slot.
fn workers(threads: usize, connections: usize, slots: u32, fd_limit: u64) -> (usize, usize) {
    let per_ring = ring_room(slots);
    // Never more workers than the open-file limit can start (before, 100 descriptors and -c 1000
    // planned 1,000 threads, most of whose rings then could not start).
    let most = (fd_limit.saturating_sub(FDS_RESERVED) / FDS_PER_WORKER)
        .min(MOST_WORKERS)
        .max(threads as u64);
    let workers = threads
        .max(connections.div_ceil(per_ring))
        .min(usize::try_from(most).unwrap_or(usize::MAX));
    (workers, workers.saturating_mul(per_ring))
}

/// Connections one ring of `slots` slots holds: all but SLOT_SLACK, and at least half of a small
/// table (see `ring_slots`).
pub(super) fn ring_room(slots: u32) -> usize {
    slots
        .saturating_sub(SLOT_SLACK)
        .max(SLOT_SLACK.min(slots) / 2) as usize
}

/// Most workers a direct plan starts, whatever -c: 1,024 rings hold ~20 million connections at this
/// machine's limit of 20,000 slots a ring, past anything one machine's ports and memory carry, and
/// more threads than that only divide the same CPUs finer.
const MOST_WORKERS: u64 = 1024;

/// Slots a worker's ring needs for its share of connections: twice that, as a closed connection's slot
/// comes back only once its close completes while its successor already connects (the table costs
/// 8 bytes of kernel memory and 16 of ours per slot).
fn ring_slots(per_worker: usize, max: u32) -> u32 {
    let want = 2 * per_worker as u64 + u64::from(SLOT_SLACK);
    want.max(256).min(u64::from(max)) as u32
}

/// Source addresses to spread `connections` over when one address's ephemeral ports toward the
/// busiest destination would run out: 127.0.0.2 onward, for loopback IPv4 destinations only. Empty
/// when not needed.
pub fn auto_sources(
    connections: usize,
    destinations: &[Option<SocketAddr>],
    ports: usize,
) -> Vec<IpAddr> {
    let targets = destinations.len().max(1);
    let busiest = super::limits::busiest_share(destinations);
    let loopback_v4 = destinations
        .iter()
        .all(|d| d.is_some_and(|a| a.is_ipv4() && a.ip().is_loopback()));
    // Connections toward the busiest destination, and the ports one source should take toward it:
    // half the range, as connect's search for a free port slows sharply once most are taken (and
    // sockets of earlier runs wait in TIME_WAIT).
    let toward = connections.div_ceil(targets) * busiest;
    let usable = ports / 2;
    if !loopback_v4 || toward <= usable || usable == 0 {
        return Vec::new();
    }
    let count = toward.div_ceil(usable).min(65536);
    let first = u32::from(Ipv4Addr::new(127, 0, 0, 2));
    (0..count as u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(first + i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_never_plans_past_its_table() {
        // A table under SLOT_SLACK (an open-file limit of 64 or less) holds half of itself; the
        // subtraction once underflowed there (a panic in debug builds under `ulimit -n 40`).
        for slots in [1, 2, 20, 40, 63, 64] {
            assert!(ring_room(slots) <= slots as usize, "{slots}");
        }
        assert_eq!(ring_room(40), 20);
        assert_eq!(ring_room(64), 32);
        assert_eq!(ring_room(1000), 936);
    }

    #[test]
    fn workers_cover_every_connection() {
        assert_eq!(workers(2, 100, 20000, 20000), (2, 2 * 19936));
        assert_eq!(workers(2, 1_000_000, 20000, 20000).0, 51);
        assert_eq!(workers(4, 25_000, 20000, 20000).0, 4);
        // A low open-file limit caps the workers, and says how many connections they hold.
        assert_eq!(workers(2, 1000, 64, 100), (13, 13 * 32));
        assert_eq!(workers(2, 5000, 960, 1024), (6, 6 * 896));
        // Never past MOST_WORKERS, however many connections -c asks for.
        assert_eq!(workers(2, usize::MAX / 2, 20000, 1 << 20).0, 1024);
    }

    #[test]
    fn sources_only_when_ports_run_out() {
        let d: Vec<Option<SocketAddr>> = vec![Some("127.0.0.1:80".parse().unwrap())];
        assert!(auto_sources(14_000, &d, 28_232).is_empty());
        assert_eq!(auto_sources(20_000, &d, 28_232).len(), 2);
        let s = auto_sources(100_000, &d, 28_232);
        assert_eq!(s.len(), 8);
        assert_eq!(s[0].to_string(), "127.0.0.2");
        let remote: Vec<Option<SocketAddr>> = vec![Some("192.0.2.1:80".parse().unwrap())];
        assert!(auto_sources(100_000, &remote, 28_232).is_empty());
    }
}
