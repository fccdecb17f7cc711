//! ringfetch: an io_uring HTTP/1.1 bulk fetcher and load generator.
//!
//! Module map, from the command line down to the bytes:
//! - `cli`: clap structs (raw flags); `config`: raw flags to validated plans, every usage error;
//!   `units`: durations, counts, sizes, shards.
//! - `input`: the URL list reader; `target`: one URL split into origin and request target.
//! - `engine`: the fetch and bench workers, limits, transport choice; `engine::conn` is the hot path,
//!   a pump between a transport and `http::client`.
//! - `http`: the sans-IO HTTP/1.1 codec: request writer, response framing, chunked decoder, pipeline
//!   FIFO, and `client`, one connection's rules as a state machine.
//! - `net`: transports (TCP, TLS, io_uring direct descriptors) behind one enum, DNS, buffer pools.
//! - `runtime`: one pinned tokio-uring runtime per worker, below both `engine` and `serve`.
//! - `report`: result lines, histograms, the summary.
//! - `serve`: the built-in benchmark server.
//! - `sys`: the few raw system calls and most of the crate's `unsafe` (the rest is `net::direct`'s
//!   ring memory: the provided-buffer ring and the SQEs that point into it).
#![deny(clippy::undocumented_unsafe_blocks)]
#![allow(async_fn_in_trait)]

pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod http;
pub mod input;
pub mod net;
pub mod report;
pub mod runtime;
pub mod serve;
pub mod sys;
pub mod target;
pub mod units;

use std::io::Write;

use cli::{Cli, Command};
use error::{Failure, UsageError};
use report::summary::Summary;

/// Exit statuses of the contract.
pub const EXIT_OK: u8 = 0;
pub const EXIT_ERRORS: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
/// `bench --fail-if`: a condition on the summary held.
pub const EXIT_FAIL_IF: u8 = 3;

/// Runs one command line; returns the exit status. Messages go to stderr, results and the summary to
/// stdout (or where `-o -` moves them).
pub fn run(cli: Cli) -> u8 {
    match dispatch(cli) {
        Ok(code) => code,
        Err(Failure::Usage(e)) => {
            eprintln!("ringfetch: {e}");
            EXIT_USAGE
        }
        Err(Failure::Io(e)) => {
            eprintln!("ringfetch: {e}");
            EXIT_ERRORS
        }
    }
}

/// The longest continuation command printed whole.
const CONTINUATION_SHOWN: usize = 4096;

/// Says what an interrupted `fetch` left undone and the command that finishes it.
fn print_continuation(stop: &engine::Interrupted, not_fetched: u64, to_file: bool) {
    let rest = if stop.rest_uncounted {
        " (and the rest of stdin)"
    } else {
        ""
    };
    if !to_file {
        eprintln!(
            "ringfetch: {not_fetched} URLs have no result line{rest}; results went to stdout or nowhere, \
             so only a run with -o FILE can be continued with --resume"
        );
        return;
    }
    let mut args: Vec<String> = std::env::args().map(|a| shell_quote(&a)).collect();
    if !args.iter().any(|a| a == "--resume") {
        args.push("--resume".into());
    }
    let command = args.join(" ");
    // Thousands of --resolve pins make a command of hundreds of kilobytes: not a line to read.
    if command.len() > CONTINUATION_SHOWN {
        eprintln!(
            "ringfetch: {not_fetched} URLs have no result line{rest}; continue with the same command \
             and --resume (it is {} characters long, too long to repeat here)",
            command.len()
        );
        return;
    }
    eprintln!("ringfetch: {not_fetched} URLs have no result line{rest}; continue with: {command}");
}

/// One line when connection tasks panicked (caught, see `engine::panic`): the run went on, but it
/// must not pass for a clean one. True when there were any.
fn report_panics() -> bool {
    let n = engine::panic::caught();
    if n > 0 {
        eprintln!(
            "ringfetch: {n} connection task{} panicked and {} caught: a bug in ringfetch; the requests on \
             {} ended with `internal` errors. Please report it with the panic messages above",
            if n == 1 { "" } else { "s" },
            if n == 1 { "was" } else { "were" },
            if n == 1 { "it" } else { "them" },
        );
    }
    n > 0
}

/// `arg` as a POSIX shell reads it back.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let verbose = cli.verbose;
    match cli.command {
        Command::Fetch(args) => {
            let plan = config::fetch(args, cli.verbose)?;
            let json = plan.http.json;
            let to_stderr = matches!(plan.output, Some(config::Output::Stdout));
            let to_file = matches!(plan.output, Some(config::Output::File(..)));
            let run = engine::run_fetch(plan)?;
            let summary = Summary::new(&run.report, run.elapsed, run.threads)
                .with_fetch_end(&run.report, run.interrupted.is_some());
            print_summary(&summary, "fetch", json, to_stderr);
            describe_engine(verbose, &run.report);
            if let Some(f) = &run.failure {
                eprintln!("ringfetch: {f}");
            }
            if let Some(stop) = run.interrupted {
                print_continuation(&stop, run.report.not_fetched, to_file);
            }
            let panicked = report_panics();
            Ok(match run.interrupted {
                Some(engine::Interrupted {
                    signal: Some(sig), ..
                }) => (128 + sig) as u8,
                _ if run.report.error_count() > 0 || run.failure.is_some() || panicked => {
                    EXIT_ERRORS
                }
                _ => EXIT_OK,
            })
        }
        Command::Bench(args) => {
            let mut plan = config::bench(args, cli.verbose)?;
            let json = plan.http.json;
            let points = plan.percentiles.clone();
            let conditions = std::mem::take(&mut plan.fail_if);
            let mut csv = plan.latency_csv.take();
            let mut html = plan.report.take();
            let bench = engine::run_bench(plan)?;
            let run = &bench.run;
            let summary = Summary::new(&run.report, run.elapsed, run.threads)
                .with_percentiles(&run.report, points.as_ref().map(|p| p.0.as_slice()))
                .with_urls(&run.report, &bench.urls);
            print_summary(&summary, &bench.label, json, false);
            describe_engine(verbose, &run.report);
            let mut written = Ok(());
            if let Some(out) = &mut csv {
                written = write_output(out, "--latency-csv", run.report.latency.percentile_csv());
            }
            if let Some(out) = &mut html {
                let (latency, service) = (run.report.latency.curve(), run.report.service.curve());
                let page = report::html::Page {
                    title: &bench.label,
                    command: &report::html::command_line(),
                    date: &report::html::utc_now(),
                    transport: bench.transport,
                    latency: &latency,
                    service: run.report.open_loop.then_some(service.as_slice()),
                };
                let page = report::html::render(&page, &summary);
                written = written.and(write_output(out, "--report", page));
            }
            if let Err(e) = &written {
                eprintln!("ringfetch: cannot write {e}");
            }
            if let Some(f) = &run.failure {
                eprintln!("ringfetch: {f}");
            }
            let met: Vec<String> = conditions
                .iter()
                .filter_map(|c| c.check(&summary))
                .collect();
            for m in &met {
                eprintln!("ringfetch: {m}");
            }
            let panicked = report_panics();
            Ok(if run.failure.is_some() || written.is_err() || panicked {
                EXIT_ERRORS
            } else if !met.is_empty() {
                EXIT_FAIL_IF
            } else if run.report.requests == 0 {
                EXIT_ERRORS
            } else {
                EXIT_OK
            })
        }
        Command::Merge(args) => merge(args),
        Command::Serve(args) => {
            let plan = config::serve(args, cli.verbose)?;
            let setup = runtime::RingSetup::probe()?;
            let limit = engine::limits::raise_nofile();
            if plan.engine.verbose {
                eprintln!(
                    "ringfetch: {}; open-file limit {}",
                    setup.describe(),
                    limit.soft
                );
                eprintln!("{}", serve::describe_transport(plan.direct, plan.spill));
            }
            let server = serve::start(
                &setup,
                plan.addr,
                plan.engine.threads,
                &plan.engine.cpus,
                serve::Options {
                    body_size: plan.body_size,
                    delay: plan.delay,
                    tls: plan.tls.clone(),
                    ports: plan.listeners,
                    direct: plan.direct,
                    spill: plan.spill,
                    timeouts: plan.timeouts,
                },
            )
            .map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                    "; another program listens there: pick another port, or port 0 for a free one"
                } else {
                    ""
                };
                let text = error::describe(&e);
                std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {}: {text}{hint}", plan.addr),
                )
            })?;
            let mut out = std::io::stdout();
            if server.ports > 1 {
                let last = server.addr.port() + (server.ports - 1);
                let _ = writeln!(out, "listening on {}-{last}", server.addr);
            } else {
                let _ = writeln!(out, "listening on {}", server.addr);
            }
            let _ = out.flush();
            // A thread that failed has said so; the others go on serving. Serve ends when every
            // thread has, with the first failure as its error.
            let mut failed = None;
            for t in server.threads {
                if let Ok(Err(e)) = t.join() {
                    failed.get_or_insert(e);
                }
            }
            match failed {
                Some(e) => Err(e.into()),
                None => Ok(EXIT_OK),
            }
        }
    }
}

fn merge(args: cli::MergeArgs) -> Result<u8, Failure> {
    if !args.results {
        let summary = report::merge::summaries(&args.files)?;
        print_summary(&summary, "merge", !args.text, false);
        return Ok(EXIT_OK);
    }
    let mut out: Box<dyn Write> = match &args.output {
        None => Box::new(std::io::stdout().lock()),
        Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdout().lock()),
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).map_err(
            |e| {
                UsageError(format!(
                    "-o {}: cannot create it: {}",
                    p.display(),
                    error::describe(&e)
                ))
            },
        )?)),
    };
    match report::merge::results(&args.files, &mut out) {
        Ok(lines) => {
            eprintln!(
                "ringfetch merge: {lines} result lines from {} files",
                args.files.len()
            );
            Ok(EXIT_OK)
        }
        Err(report::merge::JoinError::Usage(e)) => Err(e.into()),
        Err(report::merge::JoinError::Duplicate(why)) => {
            eprintln!("ringfetch merge: {why}");
            Ok(EXIT_ERRORS)
        }
        Err(report::merge::JoinError::Write(e)) => Err(e.into()),
    }
}

/// Writes a bench output file created at plan time; the error names the flag and the file.
fn write_output(
    (path, file): &mut (std::path::PathBuf, std::fs::File),
    flag: &str,
    text: String,
) -> Result<(), String> {
    file.write_all(text.as_bytes())
        .map_err(|e| format!("{flag} {}: {}", path.display(), error::describe(&e)))
}

/// `-v`: what the engine did per response, the numbers to watch when tuning (-p, --refill-at).
fn describe_engine(verbose: bool, report: &report::summary::Report) {
    if !verbose || report.requests == 0 {
        return;
    }
    let per = |n: u64| n as f64 / report.requests as f64;
    eprintln!(
        "ringfetch: engine: {} reads ({:.2} per response: one read takes {:.1} responses), {} writes \
         ({:.2} per response), {} connections opened",
        report.reads,
        per(report.reads),
        1.0 / per(report.reads).max(1e-9),
        report.writes,
        per(report.writes),
        report.connections_opened
    );
    let ring = &report.ring;
    if ring.submits > 0 {
        eprintln!(
            "ringfetch: direct rings: {} submits, {} completions ({:.2} per response), {} receives armed, \
             {} ended by an empty buffer pool (ENOBUFS, re-armed); {} buffers still lent and {} \
             connections not closed at the end",
            ring.submits,
            ring.completions,
            per(ring.completions),
            ring.rearms,
            ring.enobufs,
            ring.lent,
            ring.unclosed
        );
    }
}

fn print_summary(summary: &Summary, what: &str, json: bool, to_stderr: bool) {
    let text = if json {
        summary.to_json() + "\n"
    } else {
        summary.to_text(what)
    };
    let res = if to_stderr {
        std::io::stderr().write_all(text.as_bytes())
    } else {
        std::io::stdout().write_all(text.as_bytes())
    };
    // A closed stdout (`| head`) is not an error worth a message.
    let _ = res;
}
