//! The HTTP/1.1 codec, sans-IO: it takes bytes and returns state or byte counts, and never sees a
//! socket or a clock. `request` writes request heads, `response` frames responses (RFC 9112 §6),
//! `chunked` decodes chunked bodies, `pipeline` keeps the per-connection FIFO and the retry rules.
//! `server` is the other side, for the built-in server: it frames requests (RFC 9112 §6.3, §9.3).

pub mod chunked;
pub mod client;
pub mod pipeline;
pub mod request;
pub mod response;
pub mod server;

/// Shows at most `max` bytes of `bytes` as escaped text, for error messages about what a peer sent.
pub(crate) fn snippet(bytes: &[u8], max: usize) -> String {
    let shown = &bytes[..bytes.len().min(max)];
    let mut out = String::with_capacity(shown.len() + 8);
    for chunk in shown.utf8_chunks() {
        for c in chunk.valid().chars() {
            out.extend(c.escape_debug());
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if bytes.len() > max {
        out.push('…');
    }
    out
}
