//! End to end over loopback: `bench`'s engine against the built-in server in the same process, at
//! pipeline depths 1 and 16. Throughput is requests per second of wall time; both ends share the
//! machine, so compare runs of this bench with each other, not with scripts/compare.sh.
//!
//!   cargo bench --bench loopback

use std::time::Duration;

use clap::Parser;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use ringfetch::cli::{Cli, Command};
use ringfetch::runtime::RingSetup;
use ringfetch::{config, engine, serve};

const REQUESTS: u64 = 20_000;

fn loopback(c: &mut Criterion) {
    let setup = RingSetup::probe().expect("io_uring");
    // The server on the last allowed CPU; the client's one worker pins itself to the first.
    let cpus = ringfetch::sys::allowed_cpus().expect("affinity");
    let server = serve::start(
        &setup,
        "127.0.0.1:0".parse().expect("address"),
        1,
        &cpus[cpus.len() - 1..],
        serve::Options {
            body_size: 1024,
            ..serve::Options::default()
        },
    )
    .expect("start the built-in server");
    let url = format!("http://{}/", server.addr);
    let mut g = c.benchmark_group("loopback");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(REQUESTS));
    for depth in ["1", "16"] {
        g.bench_function(format!("bench -c 64 -p {depth} -t 1"), |b| {
            b.iter(|| {
                let n = REQUESTS.to_string();
                let cli = Cli::parse_from([
                    "ringfetch",
                    "bench",
                    &url,
                    "-c",
                    "64",
                    "-p",
                    depth,
                    "-t",
                    "1",
                    "-n",
                    &n,
                ]);
                let Command::Bench(args) = cli.command else {
                    unreachable!("parsed a bench command line")
                };
                let plan = config::bench(args, false).expect("a valid plan");
                let run = engine::run_bench(plan).expect("the run");
                assert_eq!(run.run.report.requests, REQUESTS);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, loopback);
criterion_main!(benches);
