//! The command line as typed: clap derive structs holding raw flags. The doc comment on each field is
//! its `--help` line. Checking that flags make sense together happens in `config`, not here.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::units;

/// `fetch --hash`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HashArg {
    Sha256,
}

/// Fetch huge URL lists and load-test HTTP/1.1 servers on io_uring.
///
/// ringfetch runs one io_uring event loop per CPU, keeps connections alive, pipelines requests and
/// reports every URL exactly once. Examples:
///
///   ringfetch bench                                  # benchmark the built-in server (demo)
///   ringfetch bench http://127.0.0.1:8080/ -c 256 -p 16 -d 10s
///   ringfetch fetch urls.txt -o results.jsonl --save-dir bodies/
///   ringfetch serve --addr 127.0.0.1:8080 --body-size 1024
#[derive(Debug, Parser)]
#[command(
    name = "ringfetch",
    version,
    verbatim_doc_comment,
    max_term_width = 100,
    args_override_self = true
)]
pub struct Cli {
    /// Print what the engine probed and chose (kernel, ring flags, workers, fd limit) on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Fetch(FetchArgs),
    Bench(BenchArgs),
    Serve(ServeArgs),
    Merge(MergeArgs),
}

/// Combine runs: the `--json` summaries of several runs into one summary (same schema, on stdout),
/// or with --results their result lines into one file.
///
/// For one list split over machines (`fetch --shard K/N`, or `--shard auto` in a Kubernetes Indexed
/// Job): counts add up, latency percentiles come from the runs' histograms added together (never
/// averaged), elapsed is the longest run's. Joining result lines fails (exit 1) if an index appears
/// twice.
///
///   ringfetch merge shard-*.json > all.json
///   ringfetch merge --results shard-*.jsonl -o all.jsonl
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct MergeArgs {
    /// Summaries written with --json (or, with --results, result files written with -o).
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// The files hold result lines: join them, each index at most once.
    #[arg(long)]
    pub results: bool,

    /// With --results: write the joined lines here ('-' or absent: stdout).
    #[arg(short = 'o', long, value_name = "FILE", requires = "results")]
    pub output: Option<PathBuf>,

    /// Print the merged summary as text instead of JSON.
    #[arg(long, conflicts_with = "results")]
    pub text: bool,
}

/// Flags shared by `fetch` and `bench`: how requests look and how the engine sends them.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Worker threads, each with its own io_uring, pinned to its own CPU [default: the CPUs this
    /// process may run on, so `taskset -c 1 ringfetch …` runs one worker on CPU 1].
    #[arg(short = 't', long, value_name = "N")]
    pub threads: Option<usize>,

    /// Requests written back to back on one connection before their responses arrive (HTTP/1.1
    /// pipelining). 1 waits for each response. fetch pipelines the URLs of one origin that wait
    /// together among the next -c of the list: a list that goes through more hosts than that before
    /// one comes back is fetched one request at a time per connection (keep each host's URLs
    /// together, e.g. `sort -t/ -k3,3`, to pipeline them).
    #[arg(short = 'p', long, value_name = "N", default_value_t = 1)]
    pub pipeline: usize,

    /// With -p N, write more requests once this many pipeline slots are free [default: N/4]. Fewer,
    /// larger writes cost less CPU; it must stay below N so corked servers do not stall.
    #[arg(long, value_name = "N")]
    pub refill_at: Option<usize>,

    /// HTTP method. The standard ones (GET HEAD POST PUT DELETE OPTIONS PATCH TRACE) are sent in
    /// capitals whatever the case given (-X head sends HEAD); others are sent as given, as methods
    /// are case-sensitive.
    #[arg(
        short = 'X',
        long = "request",
        value_name = "METHOD",
        default_value = "GET"
    )]
    pub method: String,

    /// Extra request header, 'Name: value'; repeat for more. Replaces a default of the same name
    /// (User-Agent, Accept, Host); 'Name:' with no value removes it, as in curl (-H 'User-Agent:' -H
    /// 'Accept:' sends the bare request wrk sends). Content-Length and Transfer-Encoding need --body;
    /// control characters other than tab are refused.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// Longest wait for one attempt, from its request being written to the last byte of its
    /// response, e.g. 30, 1.5, 500ms.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = units::duration)]
    pub timeout: Duration,

    /// Longest wait for a TCP connection to be established. bench: a connection that has not
    /// connected once after this long stops trying, and the run ends when none ever did, saying so
    /// (a server still starting is retried until then).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = units::duration)]
    pub connect_timeout: Duration,

    /// Print the summary as one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,

    /// Request body sent with every request: the text itself, or @FILE for a file's bytes (as curl's
    /// -d). With a body the default method becomes POST; -X sets another (-X GET counts as the
    /// default).
    #[arg(long, value_name = "DATA|@FILE")]
    pub body: Option<String>,

    /// Connect to ADDR for HOST:PORT instead of resolving HOST (curl's form; repeatable), e.g.
    /// example.com:443:127.0.0.1 or example.com:443:[::1]. The URL's name is still sent as Host and
    /// verified against the certificate.
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub resolve: Vec<crate::net::dns::Pin>,

    /// https: also trust the CA certificates in this PEM file (one or more certificates), e.g. the CA
    /// of a test or internal server.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// https: trust the system's certificate store (/etc/ssl/certs) instead of the built-in Mozilla
    /// roots.
    #[arg(long)]
    pub system_roots: bool,

    /// https: accept any certificate (expired, self-signed, for another name). The connection is still
    /// encrypted but no longer authenticated; a warning says so once.
    #[arg(short = 'k', long)]
    pub insecure: bool,

    /// Refuse to run (exit 2) instead of clamping -c when the open-file limit or the local port range
    /// cannot hold it: for benchmark scripts that must not measure something else than asked.
    #[arg(long)]
    pub strict: bool,

    /// https: run a full handshake on every connection instead of resuming the worker's earlier
    /// session with the origin (to measure handshake cost).
    #[arg(long)]
    pub no_tls_resume: bool,

    /// How connections are held. tcp: one file descriptor each, so at most the open-file limit.
    /// direct: sockets in each worker's io_uring fixed-file table, past the open-file limit (workers
    /// are added as needed, ~20000 connections each here), and less CPU per response (multishot
    /// receive into a buffer ring); Linux 6.11+, http and https. auto: direct wherever the kernel
    /// has it, else tcp; -v says which and why.
    #[arg(long, value_enum, default_value_t = TransportArg::Auto, value_name = "KIND")]
    pub transport: TransportArg,

    /// Local addresses to connect from, in turn: a range (127.0.0.2-127.0.0.33), a CIDR block
    /// (127.0.0.0/27) or one address. Each (source, destination) pair has its own ephemeral port
    /// range, so more sources allow more connections to one server (direct transport) [default: for
    /// loopback targets, 127.0.0.2 onward when one address's ports would run out].
    #[arg(long, value_name = "RANGE", value_parser = units::address_range)]
    pub source_addrs: Option<units::AddressRange>,

    /// Direct transport: the buffers each worker's ring receives into, COUNTxSIZE (COUNT a power of
    /// two up to 32768), e.g. 4096x16k; each receive takes a whole buffer. COUNTxSIZE,incremental
    /// (Linux 6.12+): a receive takes only its bytes and the next one, of any connection, goes on in
    /// the same buffer. Any response larger than one buffer spans several [default: 1024x16k; past
    /// 512 connections (bench at depth 1) or requests in flight (fetch) per worker, 1024x16k,incremental
    /// where the kernel has it, else two buffers for each up to 8192x2k; 128x2k with --hold].
    #[arg(long, value_name = "COUNTxSIZE[,incremental]", value_parser = units::ring_buffers)]
    pub ring_buffers: Option<crate::net::direct::PoolSize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportArg {
    Auto,
    Tcp,
    Direct,
}

/// Fetch every URL of a list, each exactly once, and report each result.
///
/// URLs come one per line from FILE, or from stdin when FILE is absent or '-'. Blank lines and lines
/// starting with '#' are skipped; a URL's `index` is its 0-based position among the other lines.
/// With -o, each URL gets one JSON line: index, url, status, body_bytes, elapsed_ms, attempts, error
/// ("KIND: message", KIND one of invalid-url dns connect tls timeout protocol io too-large internal) and path
/// (with --save-dir).
///
/// Exit status: 0 when every URL got a response (any HTTP status), 1 when some ended in an error
/// (all were still attempted and reported), 2 for a usage error (nothing fetched).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment, args_override_self = true)]
pub struct FetchArgs {
    /// File of URLs, one per line ('-' or absent: stdin).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,

    #[command(flatten)]
    pub http: HttpArgs,

    /// Most requests outstanding at once, over all threads.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 1024)]
    pub concurrency: usize,

    /// Most connections to one origin (scheme, host, port), per worker thread.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub conns_per_host: usize,

    /// Write one JSON line per URL here, in completion order ('-' for stdout; the summary then goes to
    /// stderr). Lines reach the file within about a second of their URL finishing. An existing
    /// non-empty FILE is refused unless --resume or --force says what to do with it.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Continue an interrupted run: keep the lines of -o FILE that got a response (dropping a torn
    /// last line and the lines that ended in an error) and fetch every other URL of the list (give
    /// the same list and --shard). FILE then ends with exactly one line per URL; bodies already in
    /// --save-dir for kept lines stay as they are.
    #[arg(long, requires = "output", conflicts_with = "force")]
    pub resume: bool,

    /// Overwrite a non-empty -o FILE instead of refusing.
    #[arg(long, requires = "output")]
    pub force: bool,

    /// Save each body (de-chunked) to DIR/<index>; created if missing. Failed URLs leave no file.
    #[arg(long, value_name = "DIR")]
    pub save_dir: Option<PathBuf>,

    /// Retries of a request that failed before any byte of its response arrived (idempotent methods
    /// only). Requests a server left unanswered behind `Connection: close` are re-sent for free.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub retries: u32,

    /// Largest body accepted; a larger one ends that URL with `too-large`, so one endless response
    /// cannot fill the disk. E.g. 10M, 1G; 0 for no limit. [default: 1G]
    #[arg(long, value_name = "BYTES", value_parser = units::bytes)]
    pub max_body: Option<u64>,

    /// Follow redirects (301 302 303 307 308), as curl -L: a relative Location is resolved against
    /// the URL it came from; 303, and 301/302 after POST, continue with GET and no body (HEAD stays
    /// HEAD); 307/308 keep the method and body. -H Authorization, Cookie, Proxy-Authorization and Host
    /// are not sent to another origin. The line adds `final_url` and `redirects`; `status`, the body
    /// and --save-dir are the last response's, `elapsed_ms` covers the whole chain. Off by default:
    /// a 3xx is then the URL's result.
    #[arg(short = 'L', long)]
    pub location: bool,

    /// With -L: most redirects followed for one URL; past it the URL ends as `protocol` with the
    /// chain's last URLs (a loop). [default: 10]
    #[arg(long, value_name = "N")]
    pub max_redirs: Option<u32>,

    /// Most requests per second to one origin (scheme, host, port), over all workers, e.g. 50 or
    /// 0.5: a crawl's politeness. Each origin has its own pace; pacing one never slows the others.
    #[arg(long, value_name = "RPS", value_parser = units::rate)]
    pub host_rate: Option<f64>,

    /// Least time between two requests to one origin, e.g. 200ms (with --host-rate, the longer of
    /// the two).
    #[arg(long, value_name = "DURATION", value_parser = units::duration)]
    pub host_delay: Option<Duration>,

    /// Statuses that mean "try later", e.g. 429,503: an idempotent request answered with one is sent
    /// again after the response's Retry-After (seconds or a date), or else after 1 s, 2 s, 4 s… with
    /// jitter, at most --retries times (apart from network retries) and never waiting more than
    /// --retry-max-wait; each try counts in `attempts`. Then the last answer is the result.
    #[arg(long, value_name = "LIST", value_parser = units::statuses)]
    pub retry_status: Option<units::Statuses>,

    /// Longest wait before a --retry-status retry, whatever Retry-After asks.
    #[arg(long, value_name = "DURATION", default_value = "60", value_parser = units::duration)]
    pub retry_max_wait: Duration,

    /// Add to each line what its response was and how its last attempt went: content_type and
    /// content_length (as declared, null when absent), dns_ms (0 once the name is cached), connect_ms,
    /// tls_ms (null over http), ttfb_ms (request written to response head) and reused (the request
    /// went on a connection that had carried one before).
    #[arg(long)]
    pub meta: bool,

    /// Add this response header to each line, under `headers` (null when absent); repeatable, e.g.
    /// --include-header server --include-header etag.
    #[arg(long, value_name = "NAME")]
    pub include_header: Vec<String>,

    /// Add the hex digest of each body (as kept: decoded with --compressed) to its line, for
    /// deduplication and checks: `sha256`.
    #[arg(long, value_name = "ALGORITHM", value_enum)]
    pub hash: Option<HashArg>,

    /// No live progress line. It is shown only when stderr is a terminal and --json is not given:
    /// URLs done (of the list's total, counted beside the run, when the list is a file), the rate,
    /// bytes, errors by kind and the time left.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Ask for compressed bodies (Accept-Encoding: gzip, deflate, br, zstd, unless -H gives one) and
    /// decode what comes back, as curl --compressed: stacked codings too. body_bytes, --save-dir and
    /// --max-body are about the decoded body (a decompression bomb ends as `too-large`); the line adds
    /// `encoding` and `wire_bytes`. A corrupt stream, or a coding it cannot decode, is `protocol`.
    /// Without it nothing is decoded.
    #[arg(long)]
    pub compressed: bool,

    /// -L, and send the -H credentials (Authorization, Cookie, Proxy-Authorization) and Host to every
    /// origin of the chain, not only the URL's own.
    #[arg(long)]
    pub location_trusted: bool,

    /// Fetch only the lines whose index % N == K, to split one list over several machines; `auto`
    /// takes K and N from a Kubernetes Indexed Job (docs/DISTRIBUTED.md). `ringfetch merge` joins
    /// the parts.
    #[arg(long, value_name = "K/N", value_parser = units::shard)]
    pub shard: Option<(u64, u64)>,

    /// Go through this proxy: http://[USER:PASS@]HOST[:PORT] (CONNECT tunnels for https URLs,
    /// absolute-form requests for http ones), socks5://… (names resolved here) or socks5h://… (names
    /// resolved by the proxy); the port defaults to 1080, as in curl. Without it, curl's variables
    /// apply: http_proxy (lowercase only), https_proxy, all_proxy, and no_proxy; '' turns them off.
    /// A proxy that refuses or fails ends the URL as `connect` with the proxy's answer. fetch only:
    /// bench connects directly.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,

    /// Hosts reached without the proxy, comma-separated, replacing no_proxy: each matches the host
    /// itself and its subdomains (example.com matches a.example.com); '*' matches every host.
    #[arg(long, value_name = "LIST")]
    pub noproxy: Option<String>,
}

/// Load-test a server: keep -c connections busy with -p requests each, then summarise.
///
/// With no URL, starts the built-in server on 127.0.0.1 and benchmarks that (half the allowed CPUs
/// serve, the other half load). Latency is measured per request, from the write of its batch to the
/// last byte of its response.
///
/// Every connection is accounted for: the summary counts those answered, those connected but never
/// answered (a server at its open-file limit leaves them in its backlog), those never connected,
/// and the requests still in flight when the run ended (docs/JSON.md). The run always ends: at -d,
/// or for --hold once its connections are proved (or --connect-timeout + --timeout pass without a
/// proof) and held.
///
/// Exit status: 0 the run got responses and no --fail-if condition held; 3 a --fail-if condition
/// held (each printed on stderr); 1 no response at all, a worker could not run, or --report or
/// --latency-csv could not be written (1 for these last two wins over 3); 2 a usage error, nothing
/// sent. SIGINT/SIGTERM end bench without a summary (130/143).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment, args_override_self = true)]
pub struct BenchArgs {
    /// URLs to load; connections are spread over them round-robin.
    #[arg(value_name = "URL")]
    pub urls: Vec<String>,

    #[command(flatten)]
    pub http: HttpArgs,

    /// Connections, over all threads.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 64)]
    pub connections: usize,

    /// How long to run, e.g. 10s, 1m.
    #[arg(short = 'd', long, value_name = "DURATION", value_parser = units::duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,

    /// Stop after this many requests have ended (responses and errors) instead of after a
    /// duration, e.g. 100k.
    #[arg(short = 'n', long, value_name = "N", value_parser = units::count)]
    pub requests: Option<u64>,

    /// Body size of the built-in server when no URL is given.
    #[arg(long, value_name = "BYTES", default_value = "1024", value_parser = units::bytes)]
    pub body_size: u64,

    /// Also load the URLs of this file (one per line; blank lines and '#' lines skipped). Connections go
    /// to the URLs' origins in turn and cycle through each origin's URLs; the --json summary counts
    /// each URL (`urls`).
    #[arg(long = "urls", value_name = "FILE")]
    pub urls_file: Option<PathBuf>,

    /// Pick each request's URL at random among its origin's URLs instead of in turn.
    #[arg(long)]
    pub random: bool,

    /// Open loop: send this many requests per second in total, each at its scheduled time, whatever
    /// the server's pace (wrk2's model). Latency then runs from when each request was due, so a stall
    /// is charged to every request it held back (coordinated omission corrected); the service time
    /// from the actual write is reported beside it. Without --rate, each connection sends as fast as
    /// responses return (closed loop).
    #[arg(long, value_name = "RPS", value_parser = units::rate)]
    pub rate: Option<f64>,

    /// Open at most this many connections per second at the start (a ramp), instead of all -c at
    /// once: 20,000 connects at t=0 look like a SYN flood to the target.
    #[arg(long, value_name = "PER_SEC", value_parser = units::rate)]
    pub connect_rate: Option<f64>,

    /// Connection-count mode: open -c connections (paced by --connect-rate), prove each with one
    /// request, hold them all open this long (with --rate's requests spread over them, if given), then
    /// close them. The summary adds peak_connections, connect_rate, memory per connection, and how
    /// many of the held connections the server closed or reset before the hold ended
    /// (closed_during_hold: a server's idle timeout shorter than the hold shows here).
    #[arg(long, value_name = "DURATION", value_parser = units::duration, conflicts_with_all = ["requests", "duration"])]
    pub hold: Option<Duration>,

    /// Load for this long first and leave it out of every statistic (connections opened, caches
    /// warmed); -d counts after it.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = units::duration)]
    pub warmup: Duration,

    /// Fail the run (exit 3) when the summary meets this condition, for scripts and CI; repeatable.
    /// METRIC OP VALUE, OP one of > >= < <=: p50, p90, p99, p999, max, mean (p99>50ms), errors (a
    /// count, errors>0, or a share, errors>0.1%), rps (rps<100k), requests, unanswered (connections
    /// never answered, connected or not: unanswered>0, or a share of -c, unanswered>1%). Each
    /// condition met is printed with the value that met it.
    #[arg(long = "fail-if", value_name = "COND", value_parser = clap::value_parser!(crate::report::fail_if::Condition))]
    pub fail_if: Vec<crate::report::fail_if::Condition>,

    /// Latency percentiles to report besides the usual ones, e.g. 50,90,99,99.9,99.99 (JSON:
    /// `percentiles_us`, keyed by the percentile as written).
    #[arg(long, value_name = "LIST", value_parser = units::percentiles)]
    pub percentiles: Option<units::Percentiles>,

    /// Write the latency distribution here as CSV (HdrHistogram's percentile-distribution format,
    /// milliseconds), for HdrHistogram's plotter or a spreadsheet.
    #[arg(long, value_name = "FILE")]
    pub latency_csv: Option<PathBuf>,

    /// Write a self-contained HTML page here: the summary, the latency-by-percentile curve and the
    /// responses-per-second timeline (inline SVG, nothing fetched from the network).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// A new connection for every request (`Connection: close`), as ab does by default: measures
    /// connection set-up and, over https, the TLS handshake rate. Implies -p 1.
    #[arg(long)]
    pub no_keepalive: bool,
}

/// Serve a fixed response, fast: the built-in benchmark target.
///
/// Answers every request on any path with 200 and a body of --body-size bytes (HEAD: headers only).
/// Keep-alive and pipelining aware: the requests found in one read are answered in one write, in
/// chunks of at most 256 KiB (or one response); nothing more is read from a connection until its
/// answers are taken. Slow or silent clients are closed by --header-timeout, --idle-timeout and
/// --write-timeout. The first line on stdout is `listening on ADDR`.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment, args_override_self = true)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    pub addr: String,

    /// Server threads, each with its own io_uring and listening socket (SO_REUSEPORT) [default: the
    /// allowed CPUs].
    #[arg(short = 't', long, value_name = "N")]
    pub threads: Option<usize>,

    /// Size of each response body.
    #[arg(long, value_name = "BYTES", default_value = "1024", value_parser = units::bytes)]
    pub body_size: u64,

    /// Listen on this many consecutive ports from --addr's (port 0: a free first port). One client
    /// address reaches about 28,000 connections per port (the ephemeral range), so 64 ports take a
    /// million. The first line then reads `listening on 127.0.0.1:20000-20063`.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub listeners: u16,

    /// Wait this long before each answer (e.g. 50ms, 2s): a slow backend, to hold many connections
    /// open or to see latency in a load test.
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = units::duration)]
    pub delay: Duration,

    /// Close a connection whose request head is not complete this long after its first bytes (for
    /// the first request: after accept, TLS handshake included). Slow clients (slowloris) then hold
    /// a descriptor this long at most.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = units::duration)]
    pub header_timeout: Duration,

    /// Close a kept-alive connection that sends no new request for this long.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = units::duration)]
    pub idle_timeout: Duration,

    /// Close a connection that does not take a chunk of answers (at most 256 KiB, or one response)
    /// within this long: a client that sends requests and never reads.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = units::duration)]
    pub write_timeout: Duration,

    /// Serve https with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve https with a certificate made up at start for localhost, 127.0.0.1 and ::1 (clients need
    /// --insecure, or --cacert with the file named by --tls-self-signed-out).
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: bool,

    /// With --tls-self-signed, write the made-up certificate here (PEM), for clients' --cacert.
    #[arg(long, value_name = "FILE", requires = "tls_self_signed")]
    pub tls_self_signed_out: Option<PathBuf>,

    /// tcp: a descriptor per connection, so at most the open-file limit. direct: connections accepted
    /// into io_uring fixed-file tables (multishot accept and receive), a ring per listening socket
    /// with room for about 20000 each here, whatever the open-file limit: `--listeners 64` holds a
    /// million (Linux 6.11+). auto: tcp, and once the open-file limit is reached, connections past it
    /// are accepted as direct descriptors too where the kernel has them (one line says so).
    #[arg(long, value_enum, default_value_t = ServeTransport::Auto, value_name = "KIND")]
    pub transport: ServeTransport,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ServeTransport {
    Tcp,
    Direct,
    Auto,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ringfetch").chain(args.iter().copied()))
    }

    fn fetch(args: &[&str]) -> FetchArgs {
        match parse(&[&["fetch"], args].concat()).unwrap().command {
            Command::Fetch(f) => f,
            other => panic!("{other:?}"),
        }
    }

    fn bench(args: &[&str]) -> BenchArgs {
        match parse(&[&["bench"], args].concat()).unwrap().command {
            Command::Bench(b) => b,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fetch_defaults() {
        let f = fetch(&[]);
        assert_eq!(f.file, None);
        assert_eq!(f.concurrency, 1024);
        assert_eq!(f.conns_per_host, 8);
        assert_eq!(f.retries, 2);
        assert_eq!(f.http.pipeline, 1);
        assert_eq!(f.http.threads, None);
        assert_eq!(f.http.method, "GET");
        assert_eq!(f.http.timeout, Duration::from_secs(30));
        assert_eq!(f.http.connect_timeout, Duration::from_secs(10));
        assert!(!f.http.json && !f.http.insecure && !f.http.system_roots && !f.http.no_tls_resume);
        assert!(f.http.resolve.is_empty() && f.http.cacert.is_none());
        assert_eq!(
            (f.output, f.save_dir, f.max_body, f.shard),
            (None, None, None, None)
        );
    }

    #[test]
    fn fetch_flags_short_and_long() {
        let f = fetch(&[
            "urls.txt",
            "-t",
            "3",
            "-c",
            "10",
            "-p",
            "16",
            "-X",
            "HEAD",
            "-H",
            "A: 1",
            "--header",
            "B: 2",
            "-o",
            "out.jsonl",
            "--save-dir",
            "d",
            "--timeout",
            "500ms",
            "--connect-timeout",
            "2",
            "--retries",
            "0",
            "--max-body",
            "1k",
            "--shard",
            "1/3",
            "--json",
            "--conns-per-host",
            "2",
            "--refill-at",
            "8",
        ]);
        assert_eq!(f.file.unwrap().to_str(), Some("urls.txt"));
        assert_eq!(f.http.threads, Some(3));
        assert_eq!(f.concurrency, 10);
        assert_eq!(f.http.pipeline, 16);
        assert_eq!(f.http.refill_at, Some(8));
        assert_eq!(f.http.method, "HEAD");
        assert_eq!(f.http.headers, ["A: 1", "B: 2"]);
        assert_eq!(f.output.unwrap().to_str(), Some("out.jsonl"));
        assert_eq!(f.save_dir.unwrap().to_str(), Some("d"));
        assert_eq!(f.http.timeout, Duration::from_millis(500));
        assert_eq!(f.http.connect_timeout, Duration::from_secs(2));
        assert_eq!(f.retries, 0);
        assert_eq!(f.max_body, Some(1024));
        assert_eq!(f.shard, Some((1, 3)));
        assert_eq!(f.conns_per_host, 2);
        assert!(f.http.json);
        let f = fetch(&[
            "--threads",
            "2",
            "--concurrency",
            "5",
            "--pipeline",
            "4",
            "--request",
            "PUT",
            "--output",
            "-",
        ]);
        assert_eq!(
            (f.http.threads, f.concurrency, f.http.pipeline),
            (Some(2), 5, 4)
        );
        assert_eq!(f.http.method, "PUT");
    }

    #[test]
    fn last_one_wins() {
        let f = fetch(&["-c", "1", "-c", "2", "-p", "3", "--pipeline", "4"]);
        assert_eq!((f.concurrency, f.http.pipeline), (2, 4));
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(parse(&["fetch", "--shard", "5/2"]).is_err());
        assert!(parse(&["fetch", "--timeout", "soon"]).is_err());
        assert!(parse(&["fetch", "-c", "-1"]).is_err());
        assert!(parse(&["fetch", "--no-such-flag"]).is_err());
        assert!(parse(&["bench", "-d", "1s", "-n", "10"]).is_err());
    }

    #[test]
    fn bench_flags() {
        let b = bench(&[]);
        assert!(b.urls.is_empty());
        assert_eq!(b.connections, 64);
        assert_eq!((b.duration, b.requests), (None, None));
        assert_eq!(b.body_size, 1024);
        let b = bench(&[
            "http://127.0.0.1:1/",
            "http://127.0.0.1:2/",
            "-c",
            "8",
            "-d",
            "2s",
            "-p",
            "16",
            "-t",
            "1",
            "--json",
        ]);
        assert_eq!(b.urls.len(), 2);
        assert_eq!(b.connections, 8);
        assert_eq!(b.duration, Some(Duration::from_secs(2)));
        assert_eq!(b.http.pipeline, 16);
        assert!(b.http.json);
        let b = bench(&["-n", "100k", "--body-size", "4k"]);
        assert_eq!((b.requests, b.body_size), (Some(100_000), 4096));
        assert_eq!((b.rate, b.warmup), (None, Duration::ZERO));
        assert!(b.percentiles.is_none() && b.report.is_none() && b.latency_csv.is_none());
        assert!(!b.no_keepalive);
        let b = bench(&[
            "--rate",
            "1.5k",
            "--warmup",
            "2s",
            "--percentiles",
            "50,99.9",
            "--report",
            "r.html",
            "--latency-csv",
            "l.csv",
            "--no-keepalive",
        ]);
        assert_eq!(b.rate, Some(1500.0));
        assert_eq!(b.warmup, Duration::from_secs(2));
        assert_eq!(b.percentiles.map(|p| p.0.len()), Some(2));
        assert_eq!(b.report.unwrap().to_str(), Some("r.html"));
        assert_eq!(b.latency_csv.unwrap().to_str(), Some("l.csv"));
        assert!(b.no_keepalive);
        assert!(parse(&["bench", "--rate", "0"]).is_err());
    }

    #[test]
    fn tls_and_resolve_flags_are_shared_by_fetch_and_bench() {
        let args = [
            "--cacert",
            "ca.pem",
            "--system-roots",
            "-k",
            "--no-tls-resume",
            "--resolve",
            "a.test:443:127.0.0.1",
            "--resolve",
            "b.test:80:[::1]",
        ];
        let f = fetch(&args);
        let b = bench(&args);
        for http in [&f.http, &b.http] {
            assert_eq!(
                http.cacert.as_deref().and_then(|p| p.to_str()),
                Some("ca.pem")
            );
            assert!(http.system_roots && http.insecure && http.no_tls_resume);
            assert_eq!(http.resolve.len(), 2);
            assert_eq!(http.resolve[1].host, "b.test");
        }
        assert!(parse(&["fetch", "--resolve", "nonsense"]).is_err());
    }

    #[test]
    fn serve_tls_flags() {
        let Command::Serve(s) = parse(&[
            "serve",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--delay",
            "50ms",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(s.tls_cert.unwrap().to_str(), Some("c.pem"));
        assert_eq!(s.delay, Duration::from_millis(50));
        assert_eq!(s.listeners, 1);
        let Command::Serve(s) = parse(&["serve", "--listeners", "64"]).unwrap().command else {
            panic!()
        };
        assert_eq!(s.listeners, 64);
        // A certificate needs its key, and the shortcut excludes both.
        assert!(parse(&["serve", "--tls-cert", "c.pem"]).is_err());
        assert!(parse(&["serve", "--tls-self-signed", "--tls-key", "k.pem"]).is_err());
        assert!(parse(&["serve", "--tls-self-signed-out", "x.pem"]).is_err());
    }

    #[test]
    fn serve_flags() {
        let Command::Serve(s) = parse(&["serve"]).unwrap().command else {
            panic!()
        };
        assert_eq!(
            (s.addr.as_str(), s.threads, s.body_size),
            ("127.0.0.1:8080", None, 1024)
        );
        // The built-in server of `bench` (serve::Options::default()) times out as `serve` does.
        let defaults = crate::serve::Timeouts::default();
        assert_eq!(
            (s.header_timeout, s.idle_timeout, s.write_timeout),
            (defaults.header, defaults.idle, defaults.write)
        );
        let Command::Serve(s) = parse(&[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "-t",
            "2",
            "--body-size",
            "10",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(
            (s.addr.as_str(), s.threads, s.body_size),
            ("127.0.0.1:0", Some(2), 10)
        );
    }

    #[test]
    fn fail_if_repeats_and_is_checked_when_parsed() {
        assert!(bench(&[]).fail_if.is_empty());
        let b = bench(&["--fail-if", "p99>50ms", "--fail-if", "errors>0.1%"]);
        assert_eq!(b.fail_if.len(), 2);
        assert!(parse(&["bench", "--fail-if", "p98>1ms"]).is_err());
        assert_eq!(bench(&["--fail-if", "unanswered>0"]).fail_if.len(), 1);
        assert!(parse(&["bench", "--fail-if", "unanswered>some"]).is_err());
    }

    #[test]
    fn resume_and_force_need_an_output_file_and_exclude_each_other() {
        assert!(!fetch(&[]).resume && !fetch(&[]).force);
        assert!(fetch(&["-o", "r.jsonl", "--resume"]).resume);
        assert!(fetch(&["-o", "r.jsonl", "--force"]).force);
        assert!(parse(&["fetch", "--resume"]).is_err());
        assert!(parse(&["fetch", "-o", "r.jsonl", "--resume", "--force"]).is_err());
    }

    #[test]
    fn verbose_is_global() {
        assert!(parse(&["fetch", "-v"]).unwrap().verbose);
        assert!(parse(&["-v", "serve"]).unwrap().verbose);
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
