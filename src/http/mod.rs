//! The HTTP/1.1 codec, sans-IO: it takes bytes and returns state or byte counts, and never sees a
//! socket or a clock. `request` writes request heads, `response` frames responses (RFC 9112 §6),
//! `chunked` decodes chunked bodies, `pipeline` keeps the per-connection FIFO and the retry rules.
//! `server` is the other side, for the built-in server: it frames requests (RFC 9112 §6.3, §9.3).
//! `redirect` says which responses redirect, where to and with what request (`fetch -L`); `decode`
//! undoes content codings (`fetch --compressed`).

pub mod chunked;
pub mod client;
pub mod decode;
pub mod pipeline;
pub mod redirect;
pub mod request;
pub mod response;
pub mod server;

/// Hands the header fields of the final response head in `raw` to `read`: `raw` as
/// `engine::conn::Workload::on_head` gets it, where interim 1xx heads may come first. None when it
/// holds no complete head. Parsed again here, only for what a workload asks of a head (a Location,
/// a Content-Encoding): the codec kept none of it.
pub(crate) fn with_final_headers<'a, R>(
    raw: &'a [u8],
    read: impl FnOnce(&[httparse::Header<'a>]) -> R,
) -> Option<R> {
    // As many slots as lines: the codec takes any number of header lines within its limit.
    let lines = raw.iter().filter(|&&b| b == b'\n').count();
    let mut rest = raw;
    loop {
        let mut fields = vec![httparse::EMPTY_HEADER; lines];
        let mut response = httparse::Response::new(&mut fields);
        let used = match response.parse(rest) {
            Ok(httparse::Status::Complete(used)) => used,
            _ => return None,
        };
        if response.code.is_some_and(|c| (100..200).contains(&c)) {
            rest = &rest[used..];
            continue;
        }
        return Some(read(response.headers));
    }
}

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

/// Why a Content-Length field cannot frame a message (RFC 9112 §6.3 rule 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadLength {
    /// A value that is not 1*DIGIT (a sign, a space inside, empty, or past u64).
    Invalid,
    /// Values that differ, in one field's list or across several fields.
    Conflicting,
}

/// Folds one Content-Length field value into the length seen so far, for responses and requests
/// alike (RFC 9110 §8.6, RFC 9112 §6.3 rule 5): a list of identical values is one value; anything
/// else cannot frame the message.
pub(crate) fn fold_content_length(value: &[u8], length: &mut Option<u64>) -> Result<(), BadLength> {
    for part in value.split(|&b| b == b',') {
        let n = parse_length(part.trim_ascii()).ok_or(BadLength::Invalid)?;
        if length.is_some_and(|l| l != n) {
            return Err(BadLength::Conflicting);
        }
        *length = Some(n);
    }
    Ok(())
}

/// `1*DIGIT`, leading zeros included; no sign, no spaces, no overflow.
pub(crate) fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Leading zeros are still 1*DIGIT (RFC 9110 §8.6); only the digits after them can overflow, and
    // past u64::MAX's 20 they surely do.
    let start = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    let digits = &digits[start..];
    if digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}
