//! Names to addresses, once per name per run. Lookups go through the system resolver
//! (`getaddrinfo`, on the worker runtime's blocking pool, never on the ring thread, and unpinned from
//! the worker's CPU), so /etc/hosts, nsswitch and resolv.conf are honoured exactly as curl honours them, at
//! the cost of a thread per lookup in progress. The cache is shared by all workers (the one shared
//! structure besides the input queue, touched once per name and worker) and keeps failures too, for
//! 30 s, so a list with 10,000 URLs on a dead name asks about once; it is bounded (`CACHE_MAX`) and
//! answers expire, so a crawl of millions of names holds a bounded cache. `--resolve` pins come first and never reach the
//! resolver.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::error::{ErrorKind, FetchError};

/// Where a URL's host points.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

/// `--resolve HOST:PORT:ADDR[,ADDR…]` (curl's form): connections to HOST:PORT go to ADDR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    pub host: String,
    pub port: u16,
    pub addrs: Vec<IpAddr>,
}

impl std::str::FromStr for Pin {
    type Err = String;

    fn from_str(text: &str) -> Result<Pin, String> {
        let bad = |why: &str| {
            format!("--resolve {text}: {why}; expected HOST:PORT:ADDR, e.g. example.com:443:127.0.0.1 or example.com:443:[::1]")
        };
        let mut parts = text.splitn(3, ':');
        let (Some(host), Some(port), Some(addrs)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("missing a part"));
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = port.parse().map_err(|_| bad("the port is not a number"))?;
        let addrs = addrs
            .split(',')
            .map(|a| {
                a.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .map_err(|_| bad(&format!("'{a}' is not an IP address")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pin {
            host: host.to_ascii_lowercase(),
            port,
            addrs,
        })
    }
}

type Lookup = Arc<OnceCell<Result<Arc<[IpAddr]>, FetchError>>>;

/// Names cached at most: past this, answers already in are dropped (lookups under way stay), so a list
/// of ten million hosts holds a bounded cache, not every name it ever named. An entry costs about 2 KiB
/// as measured (a failure's message included): 8,192 of them about 17 MB.
const CACHE_MAX: usize = 8192;
/// An answer is used this long, then asked again.
const ANSWER_TTL: Duration = Duration::from_secs(600);
/// A failure is used this long: a list with 10,000 URLs on a dead name asks about once, and a
/// transient resolver failure does not fail the name for the rest of a crawl.
const FAILURE_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Resolver {
    pins: HashMap<(String, u16), Vec<IpAddr>>,
    cache: Mutex<HashMap<String, (Lookup, Instant)>>,
}

impl Resolver {
    pub fn new(pins: &[Pin]) -> Resolver {
        Resolver {
            pins: pins
                .iter()
                .map(|p| ((p.host.clone(), p.port), p.addrs.clone()))
                .collect(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The addresses to try for `host:port`, in the resolver's order of preference (RFC 6724).
    pub async fn resolve(&self, host: &Host, port: u16) -> Result<Vec<SocketAddr>, FetchError> {
        let name = match host {
            Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, port)]),
            Host::Name(name) => name.trim_end_matches('.').to_ascii_lowercase(),
        };
        if let Some(addrs) = self.pins.get(&(name.clone(), port)) {
            return Ok(with_port(addrs, port));
        }
        let lookup = self.entry(&name, Instant::now());
        match lookup.get_or_init(|| lookup_name(name)).await {
            Ok(addrs) => Ok(with_port(addrs, port)),
            Err(e) => Err(e.clone()),
        }
    }

    /// The cached lookup of `name`: a fresh one when there is none, or the one there has expired.
    fn entry(&self, name: &str, now: Instant) -> Lookup {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let expired = |(lookup, at): &(Lookup, Instant)| match lookup.get() {
            None => false,
            Some(Ok(_)) => now.duration_since(*at) >= ANSWER_TTL,
            Some(Err(_)) => now.duration_since(*at) >= FAILURE_TTL,
        };
        if let Some(e) = cache.get(name) {
            if !expired(e) {
                return e.0.clone();
            }
        }
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (lookup, _)| lookup.get().is_none());
        }
        let fresh = Lookup::default();
        cache.insert(name.to_string(), (fresh.clone(), now));
        fresh
    }

    /// Names in the cache (pins and addresses excluded).
    pub fn names_looked_up(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

fn with_port(addrs: &[IpAddr], port: u16) -> Vec<SocketAddr> {
    addrs.iter().map(|ip| SocketAddr::new(*ip, port)).collect()
}

async fn lookup_name(name: String) -> Result<Arc<[IpAddr]>, FetchError> {
    // RFC 6761: `localhost` never leaves the machine, `.invalid` never resolves; neither asks a
    // resolver.
    if name == "localhost" || name.ends_with(".localhost") {
        return Ok(Arc::new([
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]));
    }
    if name == "invalid" || name.ends_with(".invalid") {
        return Err(FetchError::new(
            ErrorKind::Dns,
            format!("'{name}' is under .invalid, which never resolves (RFC 6761)"),
        ));
    }
    let query = name.clone();
    let found = tokio::task::spawn_blocking(move || {
        // The blocking pool's threads start from a pinned worker: give the lookup every CPU, or a
        // burst of lookups (each parsing /etc/hosts, or waiting on a socket) shares the worker's.
        crate::sys::unpin_current_thread();
        std::net::ToSocketAddrs::to_socket_addrs(&(query.as_str(), 0))
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    .map_err(|e| {
            FetchError::new(
                ErrorKind::Dns,
                format!(
                    "cannot resolve '{name}': {e}; check the name and /etc/resolv.conf, or pin it with \
                     --resolve {name}:PORT:ADDR"
                ),
            )
        })?;
    let mut addrs: Vec<IpAddr> = Vec::new();
    for addr in found {
        if !addrs.contains(&addr.ip()) {
            addrs.push(addr.ip());
        }
    }
    if addrs.is_empty() {
        return Err(FetchError::new(
            ErrorKind::Dns,
            format!("'{name}' has no addresses"),
        ));
    }
    Ok(addrs.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn pins_parse_in_curls_form() {
        let pin: Pin = "Example.com:443:127.0.0.2".parse().unwrap();
        assert_eq!(pin.host, "example.com");
        assert_eq!(pin.port, 443);
        assert_eq!(pin.addrs, ["127.0.0.2".parse::<IpAddr>().unwrap()]);
        let pin: Pin = "a.test:80:[::1],127.0.0.1".parse().unwrap();
        assert_eq!(pin.addrs.len(), 2);
        assert!(pin.addrs[0].is_ipv6());
        for bad in [
            "a.test",
            "a.test:80",
            ":80:127.0.0.1",
            "a:x:127.0.0.1",
            "a:80:nope",
        ] {
            let err = bad.parse::<Pin>().unwrap_err();
            assert!(err.contains("HOST:PORT:ADDR"), "{bad}: {err}");
        }
    }

    #[test]
    fn pins_win_and_only_for_their_port() {
        let resolver = Resolver::new(&["pinned.invalid:8080:127.0.0.9".parse().unwrap()]);
        let host = Host::Name("PINNED.invalid.".into());
        let addrs = block_on(resolver.resolve(&host, 8080)).unwrap();
        assert_eq!(addrs, ["127.0.0.9:8080".parse::<SocketAddr>().unwrap()]);
        // Another port is not pinned, and the name is under .invalid.
        let err = block_on(resolver.resolve(&host, 80)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Dns);
    }

    #[test]
    fn failures_expire_answers_later_and_the_cache_is_bounded() {
        let resolver = Resolver::new(&[]);
        let t0 = Instant::now();
        let failed = resolver.entry("dead.example", t0);
        failed
            .set(Err(FetchError::new(ErrorKind::Dns, "no such host")))
            .unwrap();
        let answered = resolver.entry("live.example", t0);
        answered
            .set(Ok(Arc::from(&[IpAddr::from([127, 0, 0, 1])][..])))
            .unwrap();
        let later = |secs| t0 + Duration::from_secs(secs);
        assert!(Arc::ptr_eq(
            &resolver.entry("dead.example", later(29)),
            &failed
        ));
        assert!(!Arc::ptr_eq(
            &resolver.entry("dead.example", later(31)),
            &failed
        ));
        assert!(Arc::ptr_eq(
            &resolver.entry("live.example", later(599)),
            &answered
        ));
        assert!(!Arc::ptr_eq(
            &resolver.entry("live.example", later(601)),
            &answered
        ));
        // Past the bound, answers already in are dropped; a lookup under way stays.
        let pending = resolver.entry("pending.example", t0);
        for i in 0..CACHE_MAX {
            let e = resolver.entry(&format!("h{i}.example"), t0);
            let _ = e.set(Err(FetchError::new(ErrorKind::Dns, "gone")));
        }
        assert!(resolver.names_looked_up() <= CACHE_MAX);
        assert!(Arc::ptr_eq(
            &resolver.entry("pending.example", t0),
            &pending
        ));
    }

    #[test]
    fn localhost_and_invalid_never_ask_a_resolver_and_results_are_cached() {
        let resolver = Resolver::new(&[]);
        let addrs = block_on(resolver.resolve(&Host::Name("localhost".into()), 81)).unwrap();
        assert_eq!(addrs[0], "127.0.0.1:81".parse::<SocketAddr>().unwrap());
        assert!(addrs[1].is_ipv6());
        for _ in 0..3 {
            let err = block_on(resolver.resolve(&Host::Name("x.invalid".into()), 80)).unwrap_err();
            assert!(err.message.contains("RFC 6761"), "{}", err.message);
        }
        assert_eq!(resolver.names_looked_up(), 2);
        let ip = block_on(resolver.resolve(&Host::Ip("::1".parse().unwrap()), 9)).unwrap();
        assert_eq!(ip, ["[::1]:9".parse::<SocketAddr>().unwrap()]);
        assert_eq!(resolver.names_looked_up(), 2);
    }
}
