//! Content codings (`fetch --compressed`, RFC 9110 §8.4), sans-IO: which codings a response's head
//! declares, and a `Decoder` fed the (de-chunked) body in pieces that hands the decoded bytes on in
//! pieces of at most `PIECE` bytes. Memory is bounded whatever the stream claims: each stage decodes
//! into a buffer of its own, gzip and deflate keep a 32 KiB window, brotli's large-window extension is
//! off (16 MiB at most, RFC 7932) and zstd's window is capped at 8 MiB (RFC 8878 §3's limit for
//! HTTP), so a bomb costs time, never memory; the caller's limit (`--max-body`) ends it.
//!
//! Why these crates: flate2 on zlib-rs (the zlib API in Rust, as fast as zlib-ng, no C), brotli's
//! own decoder (brotli-decompressor: the reference decoder in Rust, without the encoder) and zstd
//! (bindings to the reference C library; the pure-Rust decoders are several times slower).

use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, StandardAlloc};
use flate2::{Decompress, FlushDecompress, Status};
use zstd::stream::raw::{DParameter, InBuffer, Operation, OutBuffer};

/// Most decoded bytes handed on in one piece (and the size of each stage's buffer).
pub const PIECE: usize = 64 * 1024;

/// The codings `--compressed` asks for.
pub const ACCEPT_ENCODING: &str = "gzip, deflate, br, zstd";

/// One content coding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
    Br,
    Zstd,
}

impl Coding {
    pub fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        }
    }
}

/// The codings of the final response whose head starts `raw`, in the order they were applied
/// (`Content-Encoding: gzip, br` is gzip, then br). `identity` is no coding. Err: a coding this
/// decoder does not know, by name.
pub fn codings(raw: &[u8]) -> Result<Vec<Coding>, String> {
    super::with_final_headers(raw, |headers| {
        let mut found = Vec::new();
        // Several Content-Encoding lines are one list, in order (RFC 9110 §5.3).
        for h in headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("content-encoding"))
        {
            for token in String::from_utf8_lossy(h.value).split(',') {
                let token = token.trim().to_ascii_lowercase();
                found.push(match token.as_str() {
                    "" | "identity" => continue,
                    "gzip" | "x-gzip" => Coding::Gzip,
                    "deflate" => Coding::Deflate,
                    "br" => Coding::Br,
                    "zstd" => Coding::Zstd,
                    _ => return Err(token),
                });
            }
        }
        Ok(found)
    })
    .unwrap_or(Ok(Vec::new()))
}

/// Why a body could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError<E> {
    /// The stream of this coding is corrupt, or ended early; the message says how.
    Corrupt(Coding, String),
    /// The consumer of the decoded bytes refused them (too large, a failed save).
    Refused(E),
}

/// Decodes one body: its codings undone in reverse order, each stage feeding the next.
pub struct Decoder {
    /// Outermost first: the last coding applied is the first undone.
    stages: Vec<Stage>,
    /// No byte yet: an empty body is empty whatever its coding says (servers label empty bodies).
    empty: bool,
}

impl Decoder {
    pub fn new(applied: &[Coding]) -> Decoder {
        Decoder {
            stages: applied.iter().rev().map(|&c| Stage::new(c)).collect(),
            empty: true,
        }
    }

    /// Decodes `input`, the next bytes of the body, handing what it yields to `out`.
    pub fn feed<E>(
        &mut self,
        input: &[u8],
        out: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), DecodeError<E>> {
        self.empty &= input.is_empty();
        run(&mut self.stages, input, false, out)
    }

    /// The body is complete: yields what the stages still hold, and fails when a stream ended early.
    pub fn finish<E>(
        &mut self,
        out: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), DecodeError<E>> {
        if self.empty {
            return Ok(());
        }
        run(&mut self.stages, &[], true, out)
    }
}

/// Runs `input` through the first stage and what it yields through the rest. With `last`, also
/// drains each stage and checks its stream ended.
fn run<E>(
    stages: &mut [Stage],
    mut input: &[u8],
    last: bool,
    out: &mut dyn FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), DecodeError<E>> {
    let Some((stage, rest)) = stages.split_first_mut() else {
        return if input.is_empty() {
            Ok(())
        } else {
            out(input).map_err(DecodeError::Refused)
        };
    };
    loop {
        let (used, made) = stage.step(input)?;
        input = &input[used..];
        if made > 0 {
            let (buf, _) = stage.buf.split_at(made);
            run(rest, buf, false, out)?;
        }
        // A full buffer may leave more to yield; otherwise the stage needs input it has not got.
        if made < PIECE && (input.is_empty() || (used == 0 && made == 0)) {
            break;
        }
    }
    if !input.is_empty() {
        return Err(stage.corrupt("data after the end of the stream"));
    }
    if last {
        if !stage.ended() {
            return Err(stage.corrupt("the stream ends early (truncated body)"));
        }
        run(rest, &[], true, out)?;
    }
    Ok(())
}

struct Stage {
    coding: Coding,
    state: State,
    buf: Box<[u8]>,
}

enum State {
    /// gzip (members one after another) and deflate (zlib-wrapped, or raw as some servers send it),
    /// decided at the first byte.
    Flate(Option<Decompress>, Flate),
    Br(
        Box<BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>>,
        bool,
    ),
    Zstd(Box<zstd::stream::raw::Decoder<'static>>, bool),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flate {
    /// Before the first byte (deflate: not yet known whether zlib or raw).
    Start,
    Running,
    /// The stream (gzip: the last member so far) is complete.
    Ended,
}

impl Stage {
    fn new(coding: Coding) -> Stage {
        let state = match coding {
            Coding::Gzip | Coding::Deflate => State::Flate(None, Flate::Start),
            Coding::Br => {
                let mut s = BrotliState::new(
                    StandardAlloc::default(),
                    StandardAlloc::default(),
                    StandardAlloc::default(),
                );
                s.large_window = false;
                State::Br(Box::new(s), false)
            }
            Coding::Zstd => {
                // Creating a context fails only when memory does; the first step reports it then.
                let mut d = zstd::stream::raw::Decoder::new().expect("zstd context");
                let _ = d.set_parameter(DParameter::WindowLogMax(23));
                State::Zstd(Box::new(d), false)
            }
        };
        Stage {
            coding,
            state,
            buf: vec![0; PIECE].into_boxed_slice(),
        }
    }

    fn corrupt<E>(&self, why: &str) -> DecodeError<E> {
        DecodeError::Corrupt(self.coding, why.to_string())
    }

    fn ended(&self) -> bool {
        match &self.state {
            State::Flate(_, phase) => *phase == Flate::Ended,
            State::Br(_, ended) | State::Zstd(_, ended) => *ended,
        }
    }

    /// Decodes from `input` into `self.buf`: (bytes used, bytes made).
    fn step<E>(&mut self, input: &[u8]) -> Result<(usize, usize), DecodeError<E>> {
        let coding = self.coding;
        let bad = |why: String| DecodeError::Corrupt(coding, why);
        match &mut self.state {
            State::Flate(inflate, phase) => {
                if input.is_empty() && *phase != Flate::Running {
                    return Ok((0, 0));
                }
                if *phase == Flate::Ended && coding == Coding::Deflate {
                    return Err(bad("data after the end of the stream".into()));
                }
                if *phase != Flate::Running {
                    *inflate = Some(match coding {
                        Coding::Gzip => Decompress::new_gzip(15),
                        // RFC 9110 §8.4.1.2: zlib; raw deflate still seen. A zlib stream starts
                        // with CM = 8 and a window of at most 32 KiB.
                        _ => Decompress::new((input[0] & 0x0f) == 8 && (input[0] >> 4) <= 7),
                    });
                    *phase = Flate::Running;
                }
                let z = inflate.as_mut().expect("started above");
                let (before_in, before_out) = (z.total_in(), z.total_out());
                let status = z
                    .decompress(input, &mut self.buf, FlushDecompress::None)
                    .map_err(|e| bad(e.to_string()))?;
                let used = (z.total_in() - before_in) as usize;
                let made = (z.total_out() - before_out) as usize;
                if status == Status::StreamEnd {
                    // gzip: another member may follow (RFC 1952 §2.2); deflate: nothing may.
                    *phase = Flate::Ended;
                    if coding == Coding::Deflate && used < input.len() {
                        return Err(bad("data after the end of the stream".into()));
                    }
                }
                Ok((used, made))
            }
            State::Br(state, ended) => {
                if *ended {
                    return Ok((0, 0));
                }
                let (mut avail_in, mut in_at) = (input.len(), 0);
                let (mut avail_out, mut out_at, mut total) = (self.buf.len(), 0, 0);
                let result = BrotliDecompressStream(
                    &mut avail_in,
                    &mut in_at,
                    input,
                    &mut avail_out,
                    &mut out_at,
                    &mut self.buf,
                    &mut total,
                    state,
                );
                match result {
                    BrotliResult::ResultFailure => Err(bad("corrupt stream".into())),
                    BrotliResult::ResultSuccess => {
                        *ended = true;
                        Ok((in_at, out_at))
                    }
                    BrotliResult::NeedsMoreInput | BrotliResult::NeedsMoreOutput => {
                        Ok((in_at, out_at))
                    }
                }
            }
            State::Zstd(decoder, ended) => {
                let mut src = InBuffer::around(input);
                let mut dst = OutBuffer::around(&mut self.buf[..]);
                let hint = decoder
                    .run(&mut src, &mut dst)
                    .map_err(|e| bad(e.to_string()))?;
                let (used, made) = (src.pos(), dst.pos());
                // 0: a frame is complete and flushed; another may follow. Asked again with no input
                // it answers the size of the next frame's header, so only new input undoes it.
                if hint == 0 && made < PIECE {
                    *ended = true;
                } else if used > 0 || made > 0 {
                    *ended = false;
                }
                Ok((used, made))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
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

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::bulk::compress(data, 3).unwrap()
    }

    /// Decodes `wire` fed in pieces of `piece` bytes; Err: the error's text.
    fn decode(
        applied: &[Coding],
        wire: &[u8],
        piece: usize,
        limit: usize,
    ) -> Result<Vec<u8>, String> {
        let mut d = Decoder::new(applied);
        let mut got = Vec::new();
        let mut out = |b: &[u8]| -> Result<(), String> {
            assert!(b.len() <= PIECE);
            got.extend_from_slice(b);
            if got.len() > limit {
                return Err("too large".into());
            }
            Ok(())
        };
        for chunk in wire.chunks(piece.max(1)) {
            d.feed(chunk, &mut out).map_err(|e| format!("{e:?}"))?;
        }
        d.finish(&mut out).map_err(|e| format!("{e:?}"))?;
        Ok(got)
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| b"the quick brown fox "[i % 20] ^ (i / 4096) as u8)
            .collect()
    }

    #[test]
    fn each_coding_at_every_piece_size() {
        let data = text(200_000);
        let cases: Vec<(Coding, Vec<u8>)> = vec![
            (Coding::Gzip, gzip(&data)),
            (Coding::Deflate, zlib(&data)),
            (Coding::Deflate, raw_deflate(&data)),
            (Coding::Br, br(&data)),
            (Coding::Zstd, zstd(&data)),
        ];
        for (coding, wire) in &cases {
            for piece in [1, 7, 1000, 16384, wire.len()] {
                let got = decode(&[*coding], wire, piece, usize::MAX)
                    .unwrap_or_else(|e| panic!("{coding:?} in pieces of {piece}: {e}"));
                assert!(got == data, "{coding:?} in pieces of {piece}");
            }
        }
    }

    #[test]
    fn stacked_codings_and_gzip_members() {
        let data = text(50_000);
        // gzip applied first, then br: undone br first.
        let wire = br(&gzip(&data));
        assert_eq!(
            decode(&[Coding::Gzip, Coding::Br], &wire, 333, usize::MAX),
            Ok(data.clone())
        );
        let two = [gzip(&data[..20_000]), gzip(&data[20_000..])].concat();
        assert_eq!(
            decode(&[Coding::Gzip], &two, 500, usize::MAX),
            Ok(data.clone())
        );
        let frames = [zstd(&data[..100]), zstd(&data[100..])].concat();
        assert_eq!(decode(&[Coding::Zstd], &frames, 64, usize::MAX), Ok(data));
    }

    #[test]
    fn corrupt_and_truncated_streams_say_which_coding() {
        let data = text(10_000);
        for (coding, wire) in [
            (Coding::Gzip, gzip(&data)),
            (Coding::Deflate, zlib(&data)),
            (Coding::Br, br(&data)),
            (Coding::Zstd, zstd(&data)),
        ] {
            let cut = &wire[..wire.len() / 2];
            let err = decode(&[coding], cut, 100, usize::MAX).unwrap_err();
            assert!(
                err.contains("Corrupt") && err.contains("early"),
                "{coding:?}: {err}"
            );
            // Not a stream of this coding at all (brotli and zstd frames carry no checksum by
            // default, so damage inside one may decode to other bytes: that is theirs to detect).
            let junk = b"\xff\xfethis was never compressed, whatever its header says \xff\xff";
            let err = decode(&[coding], junk, 7, usize::MAX).unwrap_err();
            assert!(
                err.contains(&format!("Corrupt({coding:?}")),
                "{coding:?}: {err}"
            );
            if matches!(coding, Coding::Gzip | Coding::Deflate) {
                let mut bad = wire.clone();
                for b in bad.iter_mut().skip(12).take(40) {
                    *b ^= 0x5a;
                }
                let err = decode(&[coding], &bad, 100, usize::MAX).unwrap_err();
                assert!(
                    err.contains(&format!("Corrupt({coding:?}")),
                    "{coding:?}: {err}"
                );
            }
        }
        let err = decode(
            &[Coding::Deflate],
            &[zlib(b"x"), b"junk".to_vec()].concat(),
            3,
            99,
        );
        assert!(err.unwrap_err().contains("after the end"));
        // An empty body is empty, whatever it is labelled.
        assert_eq!(decode(&[Coding::Gzip, Coding::Br], b"", 1, 0), Ok(vec![]));
    }

    #[test]
    fn a_bomb_is_stopped_by_the_limit_in_bounded_pieces() {
        let zeros = vec![0u8; 64 << 20];
        for (coding, wire) in [
            (Coding::Gzip, gzip(&zeros)),
            (Coding::Br, br(&zeros)),
            (Coding::Zstd, zstd(&zeros)),
        ] {
            assert!(wire.len() < 1 << 20, "{coding:?}: {}", wire.len());
            let err = decode(&[coding], &wire, wire.len(), 1 << 20).unwrap_err();
            assert!(err.contains("too large"), "{coding:?}: {err}");
        }
    }

    #[test]
    fn codings_of_the_head() {
        let head =
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip, identity\r\ncontent-encoding: BR\r\n\r\n";
        assert_eq!(codings(head), Ok(vec![Coding::Gzip, Coding::Br]));
        assert_eq!(codings(b"HTTP/1.1 200 OK\r\n\r\n"), Ok(vec![]));
        assert_eq!(
            codings(b"HTTP/1.1 200 OK\r\nContent-Encoding: compress\r\n\r\n"),
            Err("compress".to_string())
        );
        let interim = b"HTTP/1.1 103 Early\r\nContent-Encoding: br\r\n\r\nHTTP/1.1 200 OK\r\nContent-Encoding: zstd\r\n\r\n";
        assert_eq!(codings(interim), Ok(vec![Coding::Zstd]));
    }
}
