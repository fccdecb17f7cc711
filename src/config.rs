//! Raw flags become validated plans. Every usage error is found here, before anything is fetched, and
//! says which argument to fix (exit status 2).

use std::fs::File;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use crate::report::resume::Done;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{BenchArgs, FetchArgs, HttpArgs, ServeArgs};
use crate::engine::fetch::Follow;
use crate::error::{describe, UsageError};
use crate::http::pipeline::default_refill_at;
use crate::http::redirect;
use crate::http::request::RequestTemplate;
use crate::net::dns::Resolver;
use crate::net::tls;
use crate::sys;
use crate::target::Target;

/// Where the workers run.
#[derive(Clone, Debug)]
pub struct EnginePlan {
    /// Worker i is pinned to `cpus[i % cpus.len()]`.
    pub cpus: Vec<usize>,
    pub threads: usize,
    pub verbose: bool,
}

/// How requests look and how connections send them.
#[derive(Clone, Debug)]
pub struct HttpPlan {
    pub template: RequestTemplate,
    pub depth: usize,
    pub refill_at: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub json: bool,
    /// https: the client configuration every worker copies (with a session cache of its own unless
    /// `no_tls_resume`).
    pub tls: Arc<rustls::ClientConfig>,
    pub no_tls_resume: bool,
    pub insecure: bool,
    pub resolver: Arc<Resolver>,
    /// Refuse instead of clamping (`--strict`).
    pub strict: bool,
    pub transport: crate::cli::TransportArg,
    /// `--source-addrs`, empty when not given.
    pub source_addrs: Vec<std::net::IpAddr>,
    pub ring_buffers: Option<crate::net::direct::PoolSize>,
    /// `-H` as given, and `--body`'s bytes: the redirect variants of the request are built from them.
    pub headers: Vec<String>,
    pub body: Option<Vec<u8>>,
}

pub enum Input {
    Stdin,
    File(File),
}

pub enum Output {
    Stdout,
    /// The file, opened, and its name for messages.
    File(File, PathBuf),
}

pub struct FetchPlan {
    pub engine: EnginePlan,
    pub http: HttpPlan,
    pub input: Input,
    pub concurrency: usize,
    pub conns_per_host: usize,
    pub output: Option<Output>,
    pub save_dir: Option<PathBuf>,
    pub retries: u32,
    pub max_body: u64,
    pub shard: Option<(u64, u64)>,
    /// `--resume`: the indexes whose results `-o` already holds; they are not fetched again.
    pub resume: Option<Arc<Done>>,
    /// `-L`: redirects are followed.
    pub follow: Option<Follow>,
    /// `--compressed`: bodies are decoded.
    pub compressed: bool,
    /// `--meta`, `--include-header`, `--hash`.
    pub meta: Option<crate::engine::fetch::MetaPlan>,
    /// `--host-rate`/`--host-delay` as the least time between two requests to one origin.
    pub host_interval: Option<Duration>,
    pub retry_status: Vec<u16>,
    pub retry_max_wait: Duration,
    /// The list's path when it is a file (the progress line counts it), and `--quiet`.
    pub list_path: Option<PathBuf>,
    pub quiet: bool,
    /// `--proxy`, `--noproxy`, or the environment's proxies.
    pub proxies: crate::net::proxy::Proxies,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    After(Duration),
    Requests(u64),
}

pub struct BenchPlan {
    pub engine: EnginePlan,
    pub http: HttpPlan,
    /// Empty: start the built-in server and load it.
    pub targets: Vec<Target>,
    pub connections: usize,
    pub stop: Stop,
    pub body_size: u64,
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub random: bool,
    pub connect_rate: Option<f64>,
    pub hold: Option<Duration>,
    pub percentiles: Option<crate::units::Percentiles>,
    /// `--fail-if`: conditions that make the run fail (exit 3).
    pub fail_if: Vec<crate::report::fail_if::Condition>,
    /// Where to write the latency CSV and the HTML report (created before the run, so a bad path is a
    /// usage error, not a lost run).
    pub latency_csv: Option<(PathBuf, File)>,
    pub report: Option<(PathBuf, File)>,
}

pub struct ServePlan {
    pub addr: SocketAddr,
    pub engine: EnginePlan,
    pub body_size: u64,
    pub delay: Duration,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub listeners: u16,
    pub direct: bool,
    /// `--transport auto`: direct descriptors past the open-file limit.
    pub spill: bool,
    pub timeouts: crate::serve::Timeouts,
}

/// Creates an output file named by `flag`.
fn create(path: Option<PathBuf>, flag: &str) -> Result<Option<(PathBuf, File)>, UsageError> {
    path.map(|p| {
        File::create(&p).map(|f| (p.clone(), f)).map_err(|e| {
            usage(format!(
                "{flag} {}: cannot create it: {}",
                p.display(),
                describe(&e)
            ))
        })
    })
    .transpose()
}

/// `fetch --max-body` unless given: larger than nearly every real body, small enough that one endless
/// response stops long before it fills a disk.
pub const DEFAULT_MAX_BODY: u64 = 1 << 30;

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

fn at_least_one(value: usize, flag: &str) -> Result<usize, UsageError> {
    if value == 0 {
        return Err(usage(format!("{flag} 0: must be at least 1")));
    }
    Ok(value)
}

/// Most connections or requests in flight one process is asked for: ten times the million this engine
/// holds (docs/SCALE.md); past it -c is a typo, and planning for it would allocate gigabytes.
const MOST_CONCURRENCY: usize = 10_000_000;
/// Largest body the built-in server sends: it is built once in memory.
const MOST_BODY_SIZE: u64 = 1 << 30;
/// Most retries of one URL.
const MOST_RETRIES: u32 = 1000;

/// `value` of `flag`, refused past `max` with what the bound is for.
fn at_most<T: PartialOrd + std::fmt::Display>(
    value: T,
    max: T,
    flag: &str,
    what: &str,
) -> Result<T, UsageError> {
    if value > max {
        return Err(usage(format!("{flag} {value}: at most {max} {what}")));
    }
    Ok(value)
}

pub fn engine(threads: Option<usize>, verbose: bool) -> Result<EnginePlan, UsageError> {
    let cpus = sys::allowed_cpus()
        .map_err(|e| usage(format!("cannot read this process's CPU affinity: {e}")))?;
    let threads = match threads {
        Some(n) => at_least_one(n, "-t")?,
        None => cpus.len().max(1),
    };
    if threads > 4096 {
        return Err(usage(format!("-t {threads}: at most 4096 worker threads")));
    }
    Ok(EnginePlan {
        cpus,
        threads,
        verbose,
    })
}

fn http(args: &HttpArgs) -> Result<HttpPlan, UsageError> {
    let depth = at_least_one(args.pipeline, "-p")?;
    if depth > 1024 {
        return Err(usage(format!(
            "-p {depth}: at most 1024 requests in flight per connection"
        )));
    }
    let refill_at = match args.refill_at {
        None => default_refill_at(depth),
        Some(0) => return Err(usage("--refill-at 0: must be at least 1")),
        Some(r) if depth > 1 && r >= depth => {
            return Err(usage(format!(
                "--refill-at {r} with -p {depth}: must be below the pipeline depth, or servers that cork \
                 their last response (nginx tcp_nopush) stall every batch"
            )))
        }
        Some(r) => r.min(depth),
    };
    if args.timeout.is_zero() || args.connect_timeout.is_zero() {
        return Err(usage("--timeout and --connect-timeout must be above 0"));
    }
    let tls = tls::client_config(&tls::ClientOptions {
        cacert: args.cacert.clone(),
        system_roots: args.system_roots,
        insecure: args.insecure,
        no_resume: args.no_tls_resume,
    })
    .map_err(usage)?;
    let body = match args.body.as_deref() {
        None => None,
        Some(text) => Some(match text.strip_prefix('@') {
            Some(path) => std::fs::read(path)
                .map_err(|e| usage(format!("--body @{path}: cannot read it: {}", describe(&e))))?,
            None => text.as_bytes().to_vec(),
        }),
    };
    let method = if body.is_some() && args.method.eq_ignore_ascii_case("GET") {
        "POST"
    } else {
        args.method.as_str()
    };
    if let Some(pool) = args.ring_buffers.filter(|p| p.incremental) {
        if !crate::net::direct::incremental_buffers() {
            return Err(usage(format!(
                "--ring-buffers {}x{},incremental: this kernel ({}) cannot consume buffers incrementally (Linux 6.12 can); drop ',incremental'",
                pool.count,
                pool.size,
                crate::sys::kernel_release()
            )));
        }
    }
    Ok(HttpPlan {
        template: RequestTemplate::with_body(method, &args.headers, body.as_deref())?,
        depth,
        refill_at,
        timeout: args.timeout,
        connect_timeout: args.connect_timeout,
        json: args.json,
        tls: Arc::new(tls),
        no_tls_resume: args.no_tls_resume,
        insecure: args.insecure,
        resolver: Arc::new(Resolver::new(&args.resolve)),
        strict: args.strict,
        transport: args.transport,
        source_addrs: args.source_addrs.clone().map(|r| r.0).unwrap_or_default(),
        ring_buffers: args.ring_buffers,
        headers: args.headers.clone(),
        body,
    })
}

pub fn fetch(mut args: FetchArgs, verbose: bool) -> Result<FetchPlan, UsageError> {
    let asks = |h: &String| {
        h.split(':')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case("accept-encoding"))
    };
    if args.compressed && !args.http.headers.iter().any(asks) {
        args.http.headers.push(format!(
            "Accept-Encoding: {}",
            crate::http::decode::ACCEPT_ENCODING
        ));
    }
    let http = http(&args.http)?;
    let engine = engine(args.http.threads, verbose)?;
    let concurrency = at_least_one(args.concurrency, "-c")?;
    let concurrency = at_most(concurrency, MOST_CONCURRENCY, "-c", "requests in flight")?;
    let conns_per_host = at_least_one(args.conns_per_host, "--conns-per-host")?;
    let conns_per_host = at_most(
        conns_per_host,
        MOST_CONCURRENCY,
        "--conns-per-host",
        "connections",
    )?;
    at_most(
        args.retries,
        MOST_RETRIES,
        "--retries",
        "retries of one URL",
    )?;
    let input = match &args.file {
        None => Input::Stdin,
        Some(p) if p.as_os_str() == "-" => Input::Stdin,
        Some(p) => {
            let file = File::open(p).map_err(|e| {
                usage(format!(
                    "cannot open URL list {}: {}",
                    p.display(),
                    describe(&e)
                ))
            })?;
            Input::File(file)
        }
    };
    if let Some(dir) = &args.save_dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            usage(format!(
                "cannot create --save-dir {}: {}",
                dir.display(),
                describe(&e)
            ))
        })?;
    }
    let follow = match (args.location || args.location_trusted, args.max_redirs) {
        (true, max) => {
            let max = at_most(max.unwrap_or(10), 1000, "--max-redirs", "redirects")?;
            Some(follow(&http, max, args.location_trusted)?)
        }
        (false, Some(_)) => {
            return Err(usage("--max-redirs limits -L: add -L to follow redirects"))
        }
        (false, None) => None,
    };
    // Last, once every other check has passed: nothing is created or truncated for a command line
    // that is refused.
    let (output, resume) = output(&args)?;
    let proxies = crate::net::proxy::Proxies::configure(
        args.proxy.as_deref(),
        args.noproxy.as_deref(),
        |name| std::env::var(name).ok(),
    )?;
    Ok(FetchPlan {
        proxies,
        engine,
        http,
        input,
        concurrency,
        conns_per_host,
        output,
        save_dir: args.save_dir,
        retries: args.retries,
        max_body: match args.max_body {
            None => DEFAULT_MAX_BODY,
            Some(0) => u64::MAX,
            Some(n) => n,
        },
        shard: args.shard,
        resume,
        follow,
        compressed: args.compressed,
        host_interval: match (args.host_rate, args.host_delay) {
            (None, None) => None,
            (rate, delay) => Some(
                rate.map(|r| Duration::from_secs_f64(1.0 / r))
                    .unwrap_or_default()
                    .max(delay.unwrap_or_default()),
            ),
        },
        retry_status: args.retry_status.map(|s| s.0).unwrap_or_default(),
        meta: (args.meta || !args.include_header.is_empty() || args.hash.is_some()).then(|| {
            crate::engine::fetch::MetaPlan {
                fields: args.meta,
                headers: args
                    .include_header
                    .iter()
                    .map(|h| h.trim().to_ascii_lowercase().into_boxed_str())
                    .collect(),
                sha256: args.hash.is_some(),
            }
        }),
        retry_max_wait: args.retry_max_wait,
        list_path: args.file.filter(|p| p.as_os_str() != "-"),
        quiet: args.quiet,
    })
}

/// The requests a redirect chain may send (`engine::fetch::Follow`), from the same -X, -H and --body.
fn follow(http: &HttpPlan, max: u32, trusted: bool) -> Result<Follow, UsageError> {
    let given = &http.template;
    // A GET has no body, so none of the headers that frame one.
    let bodiless: Vec<String> = http
        .headers
        .iter()
        .filter(|h| {
            let name = h.split(':').next().unwrap_or("").trim();
            !["content-length", "transfer-encoding"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n))
        })
        .cloned()
        .collect();
    let get = RequestTemplate::new("GET", &bodiless)?;
    let (foreign, foreign_get) = if trusted {
        (given.clone(), get.clone())
    } else {
        let keep = |headers: &[String]| -> Vec<String> {
            headers
                .iter()
                .filter(|h| {
                    let name = h.split(':').next().unwrap_or("").trim();
                    !redirect::CREDENTIALS
                        .iter()
                        .any(|n| name.eq_ignore_ascii_case(n))
                })
                .cloned()
                .collect()
        };
        (
            RequestTemplate::with_body(&given.method, &keep(&http.headers), http.body.as_deref())?,
            RequestTemplate::new("GET", &keep(&bodiless))?,
        )
    };
    Ok(Follow {
        max,
        get,
        foreign,
        foreign_get,
    })
}

/// Opens `-o`: refuses to overwrite results unless told (`--force`), or keeps what they hold
/// (`--resume`, see `report::resume`).
fn output(args: &FetchArgs) -> Result<(Option<Output>, Option<Arc<Done>>), UsageError> {
    let path = match &args.output {
        None => return Ok((None, None)),
        Some(p) if p.as_os_str() == "-" => {
            if args.resume {
                return Err(usage(
                    "--resume continues the results of -o FILE; with -o - they went to stdout",
                ));
            }
            return Ok((Some(Output::Stdout), None));
        }
        Some(p) => p,
    };
    let cannot = |what: &str, e: std::io::Error| {
        usage(format!(
            "cannot {what} output file {}: {}",
            path.display(),
            describe(&e)
        ))
    };
    let mut done = None;
    if args.resume {
        let (kept, counts) =
            crate::report::resume::resume_file(path).map_err(|e| cannot("resume from", e))?;
        eprintln!(
            "ringfetch: resuming {}: {} results kept; fetching the rest ({} that ended in an error{}{})",
            path.display(),
            counts.kept,
            counts.retried,
            if counts.torn { ", a torn last line" } else { "" },
            if counts.foreign > 0 {
                format!(", {} lines that are not results, dropped", counts.foreign)
            } else {
                String::new()
            }
        );
        done = Some(Arc::new(kept));
    } else if !args.force {
        let held = std::fs::metadata(path).map(|m| m.is_file() && m.len() > 0);
        if held.unwrap_or(false) {
            return Err(usage(format!(
                "{} already holds results; continue that run with --resume, or overwrite it with --force",
                path.display()
            )));
        }
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(args.resume)
        .truncate(!args.resume)
        .open(path)
        .map_err(|e| cannot("create", e))?;
    Ok((Some(Output::File(file, path.clone())), done))
}

pub fn bench(mut args: BenchArgs, verbose: bool) -> Result<BenchPlan, UsageError> {
    if args.no_keepalive {
        if args.http.pipeline > 1 {
            return Err(usage(format!(
                "--no-keepalive with -p {}: a connection that closes after one response cannot pipeline",
                args.http.pipeline
            )));
        }
        args.http.headers.push("Connection: close".into());
    }
    let http = http(&args.http)?;
    let engine = engine(args.http.threads, verbose)?;
    let connections = at_least_one(args.connections, "-c")?;
    let connections = at_most(connections, MOST_CONCURRENCY, "-c", "connections")?;
    at_most(
        args.body_size,
        MOST_BODY_SIZE,
        "--body-size",
        "bytes (the built-in server holds its body in memory)",
    )?;
    let mut targets = Vec::new();
    for url in &args.urls {
        targets.push(Target::parse(url).map_err(|e| usage(e.message))?);
    }
    if let Some(path) = &args.urls_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            usage(format!(
                "--urls {}: cannot read it: {}",
                path.display(),
                describe(&e)
            ))
        })?;
        let before = targets.len();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let t = Target::parse(line).map_err(|e| {
                usage(format!(
                    "--urls {} line {}: {}",
                    path.display(),
                    n + 1,
                    e.message
                ))
            })?;
            targets.push(t);
        }
        if targets.len() == before {
            return Err(usage(format!("--urls {}: no URL in it", path.display())));
        }
        if targets.len() > u32::MAX as usize {
            return Err(usage("--urls: too many URLs"));
        }
    }
    let stop = match (args.duration, args.requests) {
        (_, Some(0)) => return Err(usage("-n 0: must be at least 1")),
        (_, Some(n)) => Stop::Requests(n),
        (Some(d), None) if d.is_zero() => return Err(usage("-d 0: must be above 0")),
        (Some(d), None) => Stop::After(d),
        (None, None) => Stop::After(Duration::from_secs(5)),
    };
    Ok(BenchPlan {
        engine,
        http,
        targets,
        connections,
        stop,
        body_size: args.body_size,
        rate: args.rate,
        warmup: args.warmup,
        random: args.random,
        connect_rate: args.connect_rate,
        hold: args.hold,
        percentiles: args.percentiles,
        fail_if: args.fail_if,
        latency_csv: create(args.latency_csv, "--latency-csv")?,
        report: create(args.report, "--report")?,
    })
}

pub fn serve(args: ServeArgs, verbose: bool) -> Result<ServePlan, UsageError> {
    let engine = engine(args.threads, verbose)?;
    let addr = args
        .addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            usage(format!(
                "--addr {}: not an address to listen on; expected HOST:PORT, e.g. 127.0.0.1:8080",
                args.addr
            ))
        })?;
    if args.listeners == 0 {
        return Err(usage("--listeners 0: must be at least 1"));
    }
    at_most(args.listeners, 1024, "--listeners", "ports")?;
    if addr.port() != 0 && u32::from(addr.port()) + u32::from(args.listeners) > 65536 {
        return Err(usage(format!(
            "--listeners {} from port {}: past port 65535; start lower",
            args.listeners,
            addr.port()
        )));
    }
    at_most(
        args.body_size,
        MOST_BODY_SIZE,
        "--body-size",
        "bytes (each thread holds the body in memory)",
    )?;
    if args.header_timeout.is_zero() || args.idle_timeout.is_zero() || args.write_timeout.is_zero()
    {
        return Err(usage(
            "--header-timeout, --idle-timeout and --write-timeout must be above 0 (a connection \
             that never times out is what lets slow clients take every descriptor)",
        ));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(serve_tls_from_files(cert, key)?),
        _ if args.tls_self_signed => {
            Some(serve_tls_self_signed(args.tls_self_signed_out.as_deref())?)
        }
        _ => None,
    };
    Ok(ServePlan {
        addr,
        engine,
        body_size: args.body_size,
        delay: args.delay,
        direct: args.transport == crate::cli::ServeTransport::Direct,
        spill: args.transport == crate::cli::ServeTransport::Auto,
        tls: tls.map(Arc::new),
        listeners: args.listeners,
        timeouts: crate::serve::Timeouts {
            header: args.header_timeout,
            idle: args.idle_timeout,
            write: args.write_timeout,
        },
    })
}

fn serve_tls_from_files(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<rustls::ServerConfig, UsageError> {
    use rustls::pki_types::{pem::PemObject, PrivateKeyDer};
    let certs = tls::read_certs(cert).map_err(|e| usage(format!("--tls-cert {e}")))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        usage(format!(
            "--tls-key {}: no PEM private key in it ({e})",
            key.display()
        ))
    })?;
    tls::server_config(certs, key).map_err(usage)
}

/// A certificate for the loopback names, made at start: `serve` over https with nothing to prepare.
fn serve_tls_self_signed(
    out: Option<&std::path::Path>,
) -> Result<rustls::ServerConfig, UsageError> {
    let names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| usage(format!("--tls-self-signed: cannot make a certificate: {e}")))?;
    if let Some(path) = out {
        std::fs::write(path, made.cert.pem()).map_err(|e| {
            usage(format!(
                "--tls-self-signed-out {}: {}",
                path.display(),
                describe(&e)
            ))
        })?;
    }
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    tls::server_config(vec![made.cert.der().clone()], key).map_err(usage)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    /// The request side of `ringfetch fetch ARGS`, as `fetch` and `bench` both build it.
    fn request(args: &[&str]) -> Result<HttpPlan, UsageError> {
        let cli = Cli::try_parse_from(["ringfetch", "fetch"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Fetch(f) => http(&f.http),
            other => panic!("{other:?}"),
        }
    }

    #[track_caller]
    fn refused(args: &[&str], says: &str) {
        match request(args) {
            Ok(_) => panic!("{args:?} was accepted"),
            Err(e) => assert!(e.0.contains(says), "{args:?}: {}", e.0),
        }
    }

    #[test]
    fn framing_headers_need_a_body() {
        // Without a body they would frame the next pipelined request as this one's body.
        refused(&["-H", "Content-Length: 5"], "without --body");
        refused(&["-H", "content-length:12"], "--body DATA");
        refused(&["-H", "Transfer-Encoding: chunked"], "without --body");
        refused(
            &["-X", "POST", "-H", "Transfer-Encoding: gzip"],
            "drop the header",
        );
        // With --body the body sets its own length, as before.
        refused(&["--body", "x", "-H", "Content-Length: 1"], "--body sets");
        // A zero length frames an empty body correctly, and 'Name:' removes the header.
        assert!(request(&["-H", "Content-Length: 0"]).is_ok());
        assert!(request(&["-X", "POST", "-H", "Content-Length:"]).is_ok());
    }

    #[test]
    fn control_characters_in_headers_are_refused() {
        for bad in [
            "X-A: a\rb",
            "X-A: a\nb",
            "X-A: a\0b",
            "X-A: a\x01b",
            "X-A: a\x7fb",
            "X-A: ends in a break\r\n",
            "X-\x1bA: b",
            "\nX-A: b",
        ] {
            refused(&["-H", bad], "control characters");
        }
        let plan = request(&["-H", "X-A: a\tb"]).expect("a tab is allowed");
        let head = String::from_utf8(plan.template.render("/", "h")).unwrap();
        assert!(head.contains("\r\nX-A: a\tb\r\n"), "{head:?}");
    }

    #[test]
    fn lowercase_standard_methods_are_sent_in_capitals() {
        for (given, sent) in [
            ("head", "HEAD"),
            ("Get", "GET"),
            ("post", "POST"),
            ("pUt", "PUT"),
            ("delete", "DELETE"),
            ("options", "OPTIONS"),
            ("patch", "PATCH"),
            ("trace", "TRACE"),
            // Unknown methods are case-sensitive and go as given.
            ("purge", "purge"),
            ("PROPFIND", "PROPFIND"),
        ] {
            let plan = request(&["-X", given]).unwrap();
            let head = String::from_utf8(plan.template.render("/", "h")).unwrap();
            assert!(
                head.starts_with(&format!("{sent} / HTTP/1.1\r\n")),
                "{head}"
            );
        }
        // HEAD framing (no body in the response) follows the method actually sent.
        assert!(request(&["-X", "head"]).unwrap().template.head);
        assert!(!request(&["-X", "purge"]).unwrap().template.head);
        assert!(request(&["-X", "delete"]).unwrap().template.idempotent);
        refused(&["-X", "connect"], "CONNECT");
    }
}
