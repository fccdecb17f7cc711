//! `fetch --compressed`: bodies in every content coding we ask for, stacked and chunked, from a
//! scripted server; corrupt and unknown codings; a bomb against --max-body.

use std::io::Write;

use crate::common::*;

fn text(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| b"compressible text, "[i % 19] ^ (i / 1000) as u8)
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn br(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
    w.write_all(data).unwrap();
    drop(w);
    out
}

fn coded(coding: &str, body: &[u8]) -> Vec<u8> {
    response(
        "HTTP/1.1 200 OK",
        &[
            &format!("Content-Encoding: {coding}"),
            &format!("Content-Length: {}", body.len()),
        ],
        body,
    )
}

/// The same bytes in chunks of 1000 (the coding is undone after the chunking).
fn chunked(coding: &str, body: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    for piece in body.chunks(1000) {
        wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        wire.extend_from_slice(piece);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    response(
        "HTTP/1.1 200 OK",
        &[
            &format!("Content-Encoding: {coding}"),
            "Transfer-Encoding: chunked",
        ],
        &wire,
    )
}

#[test]
fn every_coding_is_decoded_byte_exact() {
    let data = text(100_000);
    let bodies: Vec<(&str, &str, Vec<u8>)> = vec![
        ("/gzip", "gzip", gzip(&data)),
        ("/deflate", "deflate", zlib(&data)),
        ("/br", "br", br(&data)),
        ("/zstd", "zstd", zstd::bulk::compress(&data, 3).unwrap()),
        ("/stacked", "gzip, br", br(&gzip(&data))),
        ("/chunked", "gzip", gzip(&data)),
    ];
    let served = bodies.clone();
    let plain = data.clone();
    let server = Hostile::replies(move |r| {
        if r.path == "/plain" {
            return Reply::Send(ok(&plain));
        }
        let (path, coding, body) = served.iter().find(|(p, _, _)| *p == r.path).unwrap();
        Reply::Send(if *path == "/chunked" {
            chunked(coding, body)
        } else {
            coded(coding, body)
        })
    });
    let mut list: Vec<String> = bodies.iter().map(|(p, _, _)| server.url(p)).collect();
    list.push(server.url("/plain"));
    let dir = tempdir();
    let save = dir.path().join("bodies");
    let out = run_fetch(
        &list,
        &["--compressed", "--save-dir", arg(&save), "-p", "4"],
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    for (i, (path, coding, wire)) in bodies.iter().enumerate() {
        let r = out.result(i as u64);
        assert_response(r, 200, data.len() as u64);
        assert_eq!(r["encoding"], *coding, "{path}: {r}");
        assert_eq!(r["wire_bytes"], wire.len(), "{path}: {r}");
        assert!(
            saved(&save, i as u64).unwrap() == data,
            "{path}: body differs"
        );
    }
    let r = out.result(bodies.len() as u64);
    assert_eq!(r["encoding"], "identity", "{r}");
    server.settle();
    for seen in server.requests() {
        assert_eq!(
            seen.header("accept-encoding"),
            Some("gzip, deflate, br, zstd")
        );
    }
}

#[test]
fn without_compressed_nothing_is_asked_or_decoded() {
    let data = text(10_000);
    let wire = gzip(&data);
    let body = wire.clone();
    let server = Hostile::replies(move |_| Reply::Send(coded("gzip", &body)));
    let out = run_fetch(&[server.url("/")], &[]);
    assert_eq!(out.code, 0, "{}", out.describe());
    let r = out.result(0);
    assert_response(r, 200, wire.len() as u64);
    assert!(
        r.get("encoding").is_none() && r.get("wire_bytes").is_none(),
        "{r}"
    );
    server.settle();
    assert_eq!(server.requests()[0].header("accept-encoding"), None);
}

#[test]
fn broken_streams_are_protocol_errors_that_name_the_coding() {
    let data = text(50_000);
    let good = gzip(&data);
    let truncated = good[..good.len() / 2].to_vec();
    let server = Hostile::replies(move |r| {
        Reply::Send(match r.path.as_str() {
            "/truncated" => coded("gzip", &truncated),
            "/junk" => coded("br", b"\xff\xfenot brotli at all, not even close\xff"),
            "/unknown" => coded("compress", b"whatever"),
            "/empty" => coded("gzip", b""),
            _ => coded("gzip", &good),
        })
    });
    let list: Vec<String> = ["/truncated", "/junk", "/unknown", "/empty", "/ok"]
        .iter()
        .map(|p| server.url(p))
        .collect();
    let out = run_fetch(&list, &["--compressed", "--retries", "0"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    for (i, says) in [(0, "gzip body"), (1, "br body"), (2, "`compress`")] {
        let r = out.result(i);
        assert_error(r, "protocol");
        let error = r["error"].as_str().unwrap();
        assert!(error.contains(says), "{error}");
        // The response arrived; only its body could not be read.
        assert_eq!(r["status"], 200, "{r}");
    }
    assert_response(out.result(3), 200, 0);
    assert_response(out.result(4), 200, data.len() as u64);
}

/// 1 GiB of zeros in ~1 MiB of gzip: `--max-body` counts decoded bytes, so the bomb ends as
/// `too-large` at the limit, and the process never holds more than a few pieces of it.
#[test]
fn a_gzip_bomb_ends_at_max_body_in_bounded_memory() {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        e.write_all(&zeros).unwrap();
    }
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < 2 << 20, "{}", bomb.len());
    let server = Hostile::replies(move |_| Reply::Send(coded("gzip", &bomb)));
    let dir = tempdir();
    let list = dir.path().join("list");
    std::fs::write(&list, format!("{}\n", server.url("/bomb"))).unwrap();
    // The default --max-body (1 GiB): decoded to the end; VmHWM shows what it cost.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(format!(
        "{} fetch {} --compressed -o {}/out.jsonl & pid=$!; peak=0; \
         while kill -0 $pid 2>/dev/null; do \
           p=$(awk '/VmHWM/ {{print $2}}' /proc/$pid/status 2>/dev/null); \
           [ -n \"$p\" ] && [ \"$p\" -gt \"$peak\" ] && peak=$p; sleep 0.02; done; \
         wait $pid; echo \"exit $? peak $peak\"",
        bin().display(),
        list.display(),
        dir.path().display()
    ));
    let run = run_child(cmd, None);
    let results = parse_jsonl(&std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap());
    let words: Vec<&str> = run.stdout.split_whitespace().collect();
    let peak_kib: u64 = words
        .last()
        .and_then(|p| p.parse().ok())
        .unwrap_or(u64::MAX);
    // Exactly 1 GiB is within the default limit: the whole body, decoded.
    assert_response(&results[0], 200, 1 << 30);
    assert!(
        peak_kib < 64 * 1024,
        "peak RSS {peak_kib} KiB: {}",
        run.stdout
    );
    eprintln!("a 1 GiB gzip bomb decoded with the default --max-body: peak RSS {peak_kib} KiB");
    // A limit below it: too-large.
    let out = run_fetch(
        &[server.url("/bomb")],
        &["--compressed", "--max-body", "10M"],
    );
    assert_eq!(out.code, 1, "{}", out.describe());
    assert_error(out.result(0), "too-large");
    assert!(out.result(0)["error"]
        .as_str()
        .unwrap()
        .contains("once decoded"));
}
