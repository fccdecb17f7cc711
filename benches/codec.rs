//! Codec throughput on realistic fixtures: response parsing (Content-Length and chunked), chunked
//! decoding alone, and request writing. `cargo bench --bench codec`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use ringfetch::http::chunked::{ChunkStep, ChunkedDecoder};
use ringfetch::http::request::RequestTemplate;
use ringfetch::http::response::{ResponseDecoder, Step};

/// A typical nginx response head with a 1 KiB body, 16 times: one pipelined window.
fn pipelined_window() -> Vec<u8> {
    let one = format!(
        "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 15:00:00 GMT\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 1024\r\n\
         Last-Modified: Wed, 25 Nov 2026 14:00:00 GMT\r\nConnection: keep-alive\r\n\
         ETag: \"6565f0a0-400\"\r\nAccept-Ranges: bytes\r\n\r\n{}",
        "x".repeat(1024)
    );
    one.repeat(16).into_bytes()
}

fn chunked_body() -> Vec<u8> {
    let mut body = Vec::new();
    for size in [1000usize, 4096, 17, 8000, 512] {
        body.extend_from_slice(format!("{size:x};ext=1\r\n").as_bytes());
        body.extend(std::iter::repeat_n(b'y', size));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\nTrailer: x\r\n\r\n");
    body
}

fn decode_responses(input: &[u8]) -> usize {
    let mut dec = ResponseDecoder::default();
    let mut pos = 0;
    let mut done = 0;
    loop {
        let (used, step) = dec.decode(&input[pos..], false).unwrap();
        pos += used;
        match step {
            Step::Done => done += 1,
            Step::NeedMore => return done,
            Step::Head(_) | Step::Body(_) => {}
        }
    }
}

fn codec(c: &mut Criterion) {
    let window = pipelined_window();
    let mut g = c.benchmark_group("response");
    g.throughput(Throughput::Bytes(window.len() as u64));
    g.bench_function("content-length x16", |b| {
        b.iter(|| decode_responses(black_box(&window)))
    });
    g.finish();

    let body = chunked_body();
    let mut g = c.benchmark_group("chunked");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut dec = ChunkedDecoder::default();
            let mut pos = 0;
            let mut data = 0;
            loop {
                let (used, step) = dec.decode(black_box(&body[pos..])).unwrap();
                pos += used;
                match step {
                    ChunkStep::Data(r) => data += r.len(),
                    ChunkStep::Done | ChunkStep::NeedMore => return data,
                }
            }
        })
    });
    g.finish();

    let template = RequestTemplate::new("GET", &["X-Bench: 1".to_string()]).unwrap();
    let mut out = Vec::with_capacity(4096);
    let one = template.render("/some/path?q=1", "127.0.0.1:8080").len();
    let mut g = c.benchmark_group("request");
    g.throughput(Throughput::Bytes((one * 16) as u64));
    g.bench_function("write x16", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..16 {
                template.write(&mut out, black_box("/some/path?q=1"), "127.0.0.1:8080");
            }
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
