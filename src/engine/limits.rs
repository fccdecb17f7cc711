//! Open-file limits. The soft RLIMIT_NOFILE is raised to the hard one at start; when even that cannot
//! hold the connections asked for, the connection count is clamped and the user is told once, in one
//! line, with the fix. No URL ever fails with EMFILE.

/// Descriptors the process needs besides connections: stdio, the URL list, the output file, and per
/// worker its rings, epolls and waker, with slack for the resolver.
pub fn reserved_fds(workers: usize) -> u64 {
    FDS_RESERVED + FDS_PER_WORKER * workers as u64
}

/// Descriptors a worker costs besides its connections, counted in /proc/PID/fd of a running fetch:
/// tokio-uring's ring and the direct transport's (2), tokio's epoll and tokio-uring's (2), tokio's
/// waker eventfd (1).
pub const FDS_PER_WORKER: u64 = 5;
/// Descriptors kept for everything else: stdio, the result file, the list, the resolver.
pub const FDS_RESERVED: u64 = 32;

/// The result of raising the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft limit as far as the hard one allows. Raising the hard limit needs CAP_SYS_RESOURCE,
/// which is the administrator's call, so it is only suggested.
pub fn raise_nofile() -> FdLimit {
    let soft = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let hard = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(_, h)| h)
        .unwrap_or(soft);
    FdLimit { soft, hard }
}

/// Connections that fit when each costs `fds_per_conn` descriptors.
pub fn connection_budget(limit: FdLimit, workers: usize, fds_per_conn: u64) -> usize {
    let usable = limit.soft.saturating_sub(reserved_fds(workers));
    (usable / fds_per_conn.max(1)).max(1) as usize
}

/// Clamps `wanted` connections to the budget. Returns the allowed count and, when clamped, the one
/// warning line to print.
pub fn clamp(wanted: usize, budget: usize, limit: FdLimit, what: &str) -> (usize, Option<String>) {
    if wanted <= budget {
        return (wanted, None);
    }
    let line = format!(
        "ringfetch: warning: open-file limit is {} (hard {}), so {what} is clamped from {wanted} to {budget}; \
         raise it with `ulimit -Hn 1048576` as root (systemd: LimitNOFILE=1048576)",
        limit.soft, limit.hard
    );
    (budget, Some(line))
}

/// The kernel's ephemeral port range (net.ipv4.ip_local_port_range), inclusive; None when unreadable.
pub fn port_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<u16>().ok());
    match (it.next()??, it.next()??) {
        (lo, hi) if lo <= hi => Some((lo, hi)),
        _ => None,
    }
}

/// How many targets share the busiest destination (connections go to targets round-robin, so that
/// destination takes this many shares of them).
pub fn busiest_share<T: PartialEq>(destinations: &[T]) -> usize {
    destinations
        .iter()
        .map(|d| destinations.iter().filter(|e| *e == d).count())
        .max()
        .unwrap_or(1)
}

/// Clamps `wanted` connections spread round-robin over targets whose destinations are
/// `destinations` (one entry per target, equal entries for targets on the same address and port):
/// each connection to one destination needs a local port of its own, and each source address
/// (`sources` of them) has the ephemeral range toward it.
pub fn clamp_ports<T: PartialEq>(
    wanted: usize,
    destinations: &[T],
    range: (u16, u16),
    sources: usize,
) -> (usize, Option<String>) {
    let ports = usize::from(range.1 - range.0) + 1;
    let targets = destinations.len().max(1);
    let share = busiest_share(destinations);
    let allowed = (ports * sources.max(1) / share) * targets;
    if wanted <= allowed {
        return (wanted, None);
    }
    let line = format!(
        "ringfetch: warning: the ephemeral port range {}-{} gives {ports} local ports per source address \
         toward one destination ({} source address{}), so connections (-c) is clamped from {wanted} to \
         {allowed} rather than fail with EADDRNOTAVAIL; add source addresses (--source-addrs, e.g. \
         127.0.0.2-127.0.0.33 toward loopback), widen net.ipv4.ip_local_port_range, or spread the load \
         over more target addresses or ports",
        range.0,
        range.1,
        sources.max(1),
        if sources > 1 { "es" } else { "" }
    );
    (allowed, Some(line))
}

/// The kernel settings a large connection count runs into (read from /proc/sys; absent ones are None).
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelLimits {
    /// fs.file-max: files of the whole machine (sockets are files, direct descriptors too).
    pub file_max: Option<u64>,
    /// net.ipv4.tcp_mem's third value, in pages: past it TCP refuses memory to every socket.
    pub tcp_mem_max: Option<u64>,
    /// net.netfilter.nf_conntrack_max, when connection tracking is loaded, and how many flows it
    /// tracks now (0: no rule asks for tracking, so it drops nothing).
    pub conntrack_max: Option<u64>,
    pub conntrack_count: Option<u64>,
    /// net.core.somaxconn: the longest accept queue a listening socket may have.
    pub somaxconn: Option<u64>,
}

impl KernelLimits {
    pub fn read() -> KernelLimits {
        let num = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.split_whitespace().last()?.parse().ok())
        };
        KernelLimits {
            file_max: num("/proc/sys/fs/file-max"),
            tcp_mem_max: num("/proc/sys/net/ipv4/tcp_mem"),
            conntrack_max: num("/proc/sys/net/netfilter/nf_conntrack_max"),
            conntrack_count: num("/proc/sys/net/netfilter/nf_conntrack_count"),
            somaxconn: num("/proc/sys/net/core/somaxconn"),
        }
    }

    /// One line per setting that `connections` (both ends when `loopback`) would run into, naming
    /// the sysctl that raises it. Nothing is changed: that is the administrator's call.
    pub fn warnings(&self, connections: u64, loopback: bool) -> Vec<String> {
        let sockets = connections * if loopback { 2 } else { 1 };
        let mut lines = Vec::new();
        if let Some(max) = self.file_max.filter(|&m| sockets > m) {
            lines.push(format!(
                "ringfetch: warning: fs.file-max is {max}, below the {sockets} sockets this run opens; \
                 raise it with `sysctl -w fs.file-max={}`",
                sockets * 2
            ));
        }
        // An idle socket holds no TCP memory, but one with bytes queued holds at least a page, and
        // closing charges each socket a page for its FIN: closing them all at once (the end of a
        // hold), or traffic on every connection at once, needs that many pages.
        if let Some(max) = self.tcp_mem_max.filter(|&m| sockets > m) {
            lines.push(format!(
                "ringfetch: warning: net.ipv4.tcp_mem allows {max} pages to all TCP sockets, fewer than the \
                 {sockets} sockets this run opens: closing them all at once (or traffic on all at once) puts \
                 TCP under memory pressure, which stalls sends; raise its third value with \
                 `sysctl -w net.ipv4.tcp_mem=\"{} {} {}\"`",
                sockets / 2,
                sockets,
                sockets * 2
            ));
        }
        // One tracked flow per connection, both ends alike; a table that tracks nothing now has no
        // rule asking for tracking, and drops nothing.
        let tracking = self.conntrack_count.is_some_and(|c| c > 0);
        if let Some(max) = self.conntrack_max.filter(|&m| tracking && connections > m) {
            lines.push(format!(
                "ringfetch: warning: connection tracking is active (nf_conntrack_count {}) and nf_conntrack_max \
                 is {max}, below the {connections} connections this run opens: new connections past it \
                 will be dropped; raise it with `sysctl -w net.netfilter.nf_conntrack_max={}`",
                self.conntrack_count.unwrap_or(0),
                connections * 2
            ));
        }
        // A ramp keeps up to ~1,000 connects in flight; a listener whose accept queue is shorter
        // drops the excess SYNs, which come back only as retransmissions a second later.
        if let Some(max) = self.somaxconn.filter(|&m| m < 1024 && connections > m) {
            lines.push(format!(
                "ringfetch: warning: net.core.somaxconn is {max}: a server's accept queue holds no more \
                 than that, and a ramp of {connections} connections keeps ~1000 connects in flight, so \
                 the excess is dropped and retried a second later; raise it with \
                 `sysctl -w net.core.somaxconn=4096` (and the server's listen backlog), or pace the \
                 ramp with --connect-rate"
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_and_clamp() {
        let limit = FdLimit {
            soft: 256,
            hard: 256,
        };
        let budget = connection_budget(limit, 2, 1);
        assert_eq!(budget, 256 - 42);
        assert_eq!(connection_budget(limit, 2, 2), (256 - 42) / 2);
        assert_eq!(clamp(100, budget, limit, "-c").0, 100);
        let (n, line) = clamp(1024, budget, limit, "-c");
        assert_eq!(n, budget);
        let line = line.unwrap();
        assert!(line.contains("clamped from 1024 to 214"), "{line}");
        assert!(
            line.contains("ulimit -Hn") && line.contains("LimitNOFILE"),
            "{line}"
        );
        assert!(!line.contains('\n'));
        assert_eq!(connection_budget(FdLimit { soft: 10, hard: 10 }, 4, 1), 1);
    }

    #[test]
    fn port_clamp_counts_connections_per_destination() {
        let range = (32768, 60999); // 28,232 ports
        assert_eq!(clamp_ports(20_000, &[1], range, 1), (20_000, None));
        let (n, line) = clamp_ports(40_000, &[1], range, 1);
        assert_eq!(n, 28_232);
        let line = line.unwrap();
        assert!(line.contains("clamped from 40000 to 28232"));
        assert!(line.contains("EADDRNOTAVAIL") && line.contains("--source-addrs"));
        // Each source address has its own range toward the destination.
        assert_eq!(clamp_ports(40_000, &[1], range, 2), (40_000, None));
        // Two destinations: twice the room; two targets on one destination: no more room.
        assert_eq!(clamp_ports(40_000, &[1, 2], range, 1).0, 40_000);
        assert_eq!(clamp_ports(40_000, &[1, 1], range, 1).0, 28_232);
        assert!(port_range().is_some());
    }

    #[test]
    fn kernel_limits_name_what_bites() {
        let k = KernelLimits {
            file_max: Some(1_000_000),
            tcp_mem_max: Some(500_000),
            conntrack_max: Some(262_144),
            conntrack_count: Some(12),
            somaxconn: Some(4096),
        };
        assert!(k.warnings(100_000, true).is_empty());
        let lines = k.warnings(1_000_000, true);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].contains("fs.file-max") && lines[0].contains("sysctl -w"));
        assert!(lines[1].contains("net.ipv4.tcp_mem"));
        assert!(lines[2].contains("nf_conntrack_max"));
        // Not on loopback: only the client's end counts.
        assert_eq!(k.warnings(200_000, false).len(), 0);
        // Conntrack loaded but tracking nothing (no rule asks for it) drops nothing.
        let idle = KernelLimits {
            conntrack_count: Some(0),
            ..k
        };
        assert_eq!(idle.warnings(1_000_000, true).len(), 2);
        let short_queue = KernelLimits {
            somaxconn: Some(128),
            ..KernelLimits::default()
        };
        let lines = short_queue.warnings(10_000, false);
        assert!(
            lines.len() == 1 && lines[0].contains("somaxconn"),
            "{lines:?}"
        );
        assert_eq!(
            KernelLimits::default().warnings(u64::MAX / 4, true).len(),
            0
        );
        let _ = KernelLimits::read();
    }

    #[test]
    fn soft_limit_reaches_hard() {
        let l = raise_nofile();
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert_eq!((l.soft, l.hard), (soft, hard));
        // increase_nofile_limit caps at fs.nr_open when the hard limit is unlimited.
        assert!(l.soft == l.hard || l.hard == rlimit::INFINITY);
    }
}
