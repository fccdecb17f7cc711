//! A URL from the input, checked and split into what a connection needs: the origin to connect to and
//! the request target to send. Parsing follows the WHATWG URL rules of the `url` crate, so what we send
//! is what browsers would send for the same text.

use std::net::IpAddr;

use url::Url;

use crate::error::{ErrorKind, FetchError};
use crate::net::Host;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

/// Where requests for a URL go. Connections are pooled per origin (RFC 6454: scheme, host, port).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub scheme: Scheme,
    pub host: Host,
    pub port: u16,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl Origin {
    /// The host as TLS names it: the name, or the address without brackets.
    pub fn host_text(&self) -> Box<str> {
        match &self.host {
            Host::Name(name) => name.as_str().into(),
            Host::Ip(ip) => ip.to_string().into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub origin: Origin,
    /// The Host header: host, plus the port when it is not the scheme's default.
    pub authority: String,
    /// The request target in origin-form: path and query, never the fragment.
    pub path: String,
}

impl Target {
    pub fn parse(text: &str) -> Result<Target, FetchError> {
        Target::parse_noting_origin(text).map(|(target, _)| target)
    }

    #[cfg(test)]
    fn parse_plain(text: &str) -> Option<Target> {
        Target::parse_plain_written(text).map(|(target, _)| target)
    }

    /// The common case without the `url` crate: `http(s)://host[:port]/path?query` in plain ASCII,
    /// with nothing a WHATWG parser would rewrite (no uppercase host, no IPv4 shorthand, no dot
    /// segments, no character it would percent-encode). Returns None whenever in doubt, and the full
    /// parser decides. Parsing with `url` costs ≈7,900 instructions per URL, half of a fetch's CPU in
    /// user space; this costs a few hundred. `tests::plain_parse_agrees_with_whatwg` checks the two
    /// agree on every input the plain parser accepts. Also returns `scheme://authority` as written.
    fn parse_plain_written(text: &str) -> Option<(Target, &str)> {
        let (scheme, rest, default_port) = if let Some(rest) = text.strip_prefix("http://") {
            (Scheme::Http, rest, 80)
        } else if let Some(rest) = text.strip_prefix("https://") {
            (Scheme::Https, rest, 443)
        } else {
            return None;
        };
        let end = authority_end(rest);
        let (authority, tail) = rest.split_at(end);
        let (host_text, port) = match authority.bytes().position(|b| b == b':') {
            None => (authority, default_port),
            Some(colon) => {
                let p = &authority[colon + 1..];
                // Leading zeros would be normalised away; leave those to the full parser.
                if p.is_empty()
                    || p.len() > 5
                    || p.starts_with('0')
                    || !p.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                (&authority[..colon], p.parse::<u16>().ok()?)
            }
        };
        let host = plain_host(host_text)?;
        let path = plain_request_target(tail)?;
        // The Host header: as written, minus a port that is the scheme's default.
        let authority = if port == default_port {
            host_text
        } else {
            authority
        }
        .to_string();
        let written = &text[..text.len() - tail.len()];
        Some((
            Target {
                origin: Origin { scheme, host, port },
                authority,
                path,
            },
            written,
        ))
    }

    /// The request target of `text` when it starts with `origin_text` (the `scheme://authority` of a
    /// URL that parsed plain, exactly as written there: `parse_noting_origin`) and the rest is plain
    /// too. Then `text` has that URL's origin, found without parsing and allocating the authority
    /// again (a list's URLs mostly share their origin with the line before), and its request target
    /// is mostly a slice of it. None whenever `parse` must decide.
    pub fn path_after(text: &str, origin_text: &str) -> Option<PathIn> {
        let tail = text.strip_prefix(origin_text)?;
        // The authority must end where it ended there ("http://a.com:80" is no prefix of
        // "http://a.com:8080/").
        if authority_end(tail) != 0 {
            return None;
        }
        let start = origin_text.len();
        Some(match plain_request_target_span(tail)? {
            (end, true) => PathIn::Slice(start, start + end),
            (end, false) => PathIn::Built(rooted(&tail[..end])),
        })
    }

    /// As `parse`, with the `scheme://authority` part of `text` as written when the plain parser took
    /// it (the key of `path_after`).
    pub fn parse_noting_origin(text: &str) -> Result<(Target, Option<&str>), FetchError> {
        match Target::parse_plain_written(text) {
            Some((target, written)) => Ok((target, Some(written))),
            None => Target::parse_whatwg(text).map(|t| (t, None)),
        }
    }

    fn parse_whatwg(text: &str) -> Result<Target, FetchError> {
        let invalid = |why: &str| {
            FetchError::new(
                ErrorKind::InvalidUrl,
                format!("'{}' {why}", crate::http::snippet(text.as_bytes(), 200)),
            )
        };
        if text.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(invalid("contains white space; percent-encode it as %20"));
        }
        let url = Url::parse(text).map_err(|e| {
            invalid(&format!(
                "is not a URL ({e}); expected e.g. http://host/path"
            ))
        })?;
        let scheme = match url.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                return Err(invalid(&format!(
                    "has scheme '{other}'; only http:// and https:// are fetched"
                )))
            }
        };
        let host = match url.host() {
            Some(url::Host::Ipv4(ip)) => Host::Ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Host::Ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(name)) if !name.is_empty() => Host::Name(name.to_string()),
            _ => return Err(invalid("has no host")),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| invalid("has no port"))?;
        if port == 0 {
            return Err(invalid("has port 0, which cannot be connected to"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("carries user:password; credentials in URLs are not sent, pass -H 'Authorization: ...'"));
        }
        let host_text = url.host_str().unwrap_or_default();
        let authority = match url.port() {
            Some(p) => format!("{host_text}:{p}"),
            None => host_text.to_string(),
        };
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        Ok(Target {
            origin: Origin { scheme, host, port },
            authority,
            path,
        })
    }
}

/// Bytes a WHATWG parser leaves alone in the path, and in the query, of an http(s) URL.
static PLAIN_PATH: [bool; 256] = byte_set(b"-._~!$&'()*+,;=:@/%");
static PLAIN_QUERY: [bool; 256] = byte_set(b"-._~!$&()*+,;=:@/?%");

/// Where the authority after `scheme://` ends: at the first `/`, `?` or `#`, or the end.
fn authority_end(rest: &str) -> usize {
    rest.bytes()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len())
}

/// The request target (path and query, never the fragment) of what follows a plain authority, in one
/// pass: only bytes a WHATWG parser leaves alone, no dot segments (`/.`, `%2e`), no empty segments; the
/// fragment is dropped but must be plain ASCII too. Says where it ends (the fragment's start) and
/// whether it begins with its own path (else the target is "/" and the query). None when the full
/// parser must decide.
fn plain_request_target_span(text: &str) -> Option<(usize, bool)> {
    let tail = text.as_bytes();
    let mut query_at = None;
    let mut fragment_at = tail.len();
    let mut prev = 0u8;
    for (i, &b) in tail.iter().enumerate() {
        if b == b'#' {
            fragment_at = i;
            break;
        }
        if query_at.is_none() {
            if b == b'?' {
                query_at = Some(i);
            } else if !PLAIN_PATH[usize::from(b)]
                || (prev == b'/' && (b == b'.' || b == b'/'))
                || (b == b'%' && matches!(tail.get(i + 1..i + 3), Some([b'2', b'e' | b'E'])))
            {
                return None;
            }
        } else if !PLAIN_QUERY[usize::from(b)] {
            return None;
        }
        prev = b;
    }
    if !tail[fragment_at..].iter().all(u8::is_ascii_graphic) {
        return None;
    }
    // Only ASCII was accepted above, so this byte offset is a character boundary.
    Some((fragment_at, query_at.unwrap_or(fragment_at) > 0))
}

/// The request target of what follows a plain authority (see `plain_request_target_span`).
fn plain_request_target(text: &str) -> Option<String> {
    Some(match plain_request_target_span(text)? {
        (end, true) => text[..end].to_string(),
        (end, false) => rooted(&text[..end]),
    })
}

/// A request target with no path of its own ("" or "?q"): the path is "/". Exactly its length: a
/// job keeps it as a Box<str>, and spare room would cost a realloc.
fn rooted(rest: &str) -> String {
    let mut target = String::with_capacity(rest.len() + 1);
    target.push('/');
    target.push_str(rest);
    target
}

/// Where a request target found by `Target::path_after` is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathIn {
    /// The byte range of the URL's own text that is its request target (path and query).
    Slice(usize, usize),
    /// No path of its own: "/" and the query, built.
    Built(String),
}

impl PathIn {
    /// The request target, given the text `path_after` was given.
    pub fn of<'a>(&'a self, text: &'a str) -> &'a str {
        match self {
            PathIn::Slice(start, end) => &text[*start..*end],
            PathIn::Built(path) => path,
        }
    }
}

const fn byte_set(extra: &[u8]) -> [bool; 256] {
    let mut set = [false; 256];
    let mut b = 0;
    while b < 256 {
        set[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        set[extra[i] as usize] = true;
        i += 1;
    }
    set
}

/// A host the plain parser may take as it is: a dotted-quad IPv4 address in canonical form, or lowercase
/// ASCII labels whose last label is not numeric (WHATWG would read that as IPv4 shorthand) and that
/// need no IDNA processing.
fn plain_host(host: &str) -> Option<Host> {
    let bytes = host.as_bytes();
    if bytes.is_empty() || bytes[0] == b'.' {
        return None;
    }
    // One pass: lowercase letters, digits, '-' and '.'; no empty label; labels neither start nor end
    // with '-'; note whether the last label is all digits (then only a canonical IPv4 address will do).
    let mut label_start = 0;
    let mut last_numeric = true;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'.' => {
                if i == label_start || bytes[i - 1] == b'-' {
                    return None;
                }
                label_start = i + 1;
                last_numeric = true;
            }
            b'-' if i == label_start => return None,
            b'a'..=b'z' | b'-' => last_numeric = false,
            b'0'..=b'9' => {}
            _ => return None,
        }
    }
    let trailing_dot = bytes[bytes.len() - 1] == b'.';
    if !trailing_dot && bytes[bytes.len() - 1] == b'-' {
        return None;
    }
    if trailing_dot {
        // "a.b." ends in an empty label: the number rule looks at the one before it.
        return if host[..host.len() - 1]
            .rsplit('.')
            .next()?
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            None
        } else {
            plain_labels(host)
        };
    }
    if last_numeric {
        let mut octets = [0u8; 4];
        let mut parts = host.split('.');
        for octet in octets.iter_mut() {
            let label = parts.next()?;
            if label.is_empty() || label.len() > 3 || (label.len() > 1 && label.starts_with('0')) {
                return None;
            }
            *octet = label.parse().ok()?;
        }
        if parts.next().is_some() {
            return None;
        }
        return Some(Host::Ip(IpAddr::from(octets)));
    }
    plain_labels(host)
}

/// The last checks on a host of plain labels: nothing that needs IDNA (`xn--`), no hex-looking last
/// label (WHATWG reads `0x…` as a number).
fn plain_labels(host: &str) -> Option<Host> {
    let trimmed = host.trim_end_matches('.');
    if trimmed.starts_with("xn--")
        || trimmed.contains(".xn--")
        || trimmed.rsplit('.').next()?.starts_with("0x")
    {
        return None;
    }
    Some(Host::Name(host.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random URL-ish strings from an alphabet of the characters and fragments that make URL parsing
    /// subtle; wherever the plain parser answers, it must answer exactly what the WHATWG parser does.
    #[test]
    fn plain_parse_agrees_with_whatwg() {
        const PIECES: &[&str] = &[
            "http://",
            "https://",
            "HTTP://",
            "a",
            "b",
            "z",
            "A",
            "0",
            "1",
            "9",
            "12",
            "255",
            "256",
            "007",
            "0x7f",
            ".",
            "..",
            "/",
            "//",
            "?",
            "#",
            ":",
            ":80",
            ":443",
            ":8080",
            ":0",
            ":65535",
            ":65536",
            "@",
            "%",
            "%2e",
            "%2E",
            "%41",
            "-",
            "_",
            "~",
            "'",
            "\"",
            "<",
            "`",
            "{",
            "|",
            "^",
            "[",
            "]",
            "\\",
            " ",
            "\t",
            "é",
            "xn--",
            "localhost",
            "127.0.0.1",
            "example.com",
            "&",
            "=",
            "+",
            "!",
            "$",
            ";",
            ",",
            "*",
            "(",
            ")",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const HOSTS: &[&str] = &[
            "a",
            "example.com",
            "127.0.0.1",
            "10.0.0.255",
            "1.2.3",
            "01.2.3.4",
            "1.2.3.256",
            "a.1",
            "a.0x1",
            "x-y.z",
            "-a.b",
            "a-.b",
            "xn--abc.de",
            "A.b",
            "a..b",
            ".a",
            "a.",
            "0",
            "a9.b9",
            "localhost",
            "h_h",
            "é.fr",
        ];
        let mut accepted = 0;
        // URLs seen, by their origin as written: the shortcut is tried against each.
        let mut origins: Vec<(String, Target)> = Vec::new();
        let mut shortcuts = 0;
        for _ in 0..400_000 {
            let mut url = String::from(if next() % 2 == 0 {
                "http://"
            } else {
                "https://"
            });
            // Mostly a well-formed authority, sometimes anything.
            if next() % 4 != 0 {
                url.push_str(HOSTS[(next() % HOSTS.len() as u64) as usize]);
                if next() % 2 == 0 {
                    url.push_str(
                        [":80", ":443", ":8080", ":0", ":65536", ":", ":08"][(next() % 7) as usize],
                    );
                }
                url.push('/');
            }
            for _ in 0..(next() % 10) {
                url.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            if let Some(plain) = Target::parse_plain(&url) {
                accepted += 1;
                assert_eq!(Target::parse_whatwg(&url).ok(), Some(plain), "{url:?}");
            }
            // The shortcut for a URL after one of known origin: wherever it answers, it answers
            // what the full parser does, with that origin.
            for (written, known) in &origins {
                if let Some(found) = Target::path_after(&url, written) {
                    let path = found.of(&url).to_string();
                    shortcuts += 1;
                    let full =
                        Target::parse_whatwg(&url).unwrap_or_else(|e| panic!("{url:?}: {e}"));
                    assert_eq!(
                        (&full.origin, &full.authority, &full.path),
                        (&known.origin, &known.authority, &path),
                        "{url:?} after {written:?}"
                    );
                }
            }
            if let Ok((target, Some(written))) = Target::parse_noting_origin(&url) {
                if origins.len() < 64 {
                    origins.push((written.to_string(), target));
                } else {
                    origins[(next() % 64) as usize] = (written.to_string(), target);
                }
            }
        }
        assert!(
            shortcuts > 20_000,
            "only {shortcuts} inputs took the known-origin shortcut"
        );
        // The generator must reach the plain path often enough for the check to mean something.
        assert!(
            accepted > 20_000,
            "only {accepted} inputs took the plain path"
        );
    }

    #[test]
    fn plain_parse_takes_the_common_forms() {
        for url in [
            "http://127.0.0.1:8080/a/b?x=1",
            "http://example.com/",
            "https://example.com",
            "http://a-b.example:81/f/1?n=2#frag",
        ] {
            assert!(Target::parse_plain(url).is_some(), "{url}");
            assert_eq!(
                Target::parse_plain(url).ok_or(()),
                Target::parse_whatwg(url).map_err(|_| ())
            );
        }
        for url in [
            "http://127.1/",
            "http://Example.com/",
            "http://h/a/../b",
            "http://[::1]/",
            "http://u@h/",
        ] {
            assert!(Target::parse_plain(url).is_none(), "{url}");
        }
    }

    #[test]
    fn splits_a_url() {
        let t = Target::parse("http://127.0.0.1:8080/a/b?x=1#frag").unwrap();
        assert_eq!(t.origin.port, 8080);
        assert_eq!(t.origin.host, Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path, "/a/b?x=1");
        let t = Target::parse("http://localhost").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str(), t.origin.port),
            ("localhost", "/", 80)
        );
        let t = Target::parse("https://[::1]:8443/x").unwrap();
        assert_eq!(t.origin.scheme, Scheme::Https);
        assert_eq!(t.authority, "[::1]:8443");
        let t = Target::parse("HTTP://Example.TEST:80/").unwrap();
        assert_eq!(t.authority, "example.test");
    }

    #[test]
    fn rejects_what_cannot_be_fetched() {
        for bad in [
            "ftp://x/",
            "not a url",
            "http://",
            "x",
            "http://h:0/",
            "mailto:a@b",
            "http://u:p@h/",
        ] {
            let err = Target::parse(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidUrl, "{bad}");
            assert!(
                err.message.contains(bad.split(' ').next().unwrap()),
                "{}",
                err.message
            );
        }
    }
}

#[cfg(test)]
mod cost {
    /// For callgrind: `valgrind --tool=callgrind target/release/deps/ringfetch-* parse_cost --ignored`.
    #[test]
    #[ignore]
    fn parse_cost() {
        let mut n = 0;
        for i in 0..100_000 {
            let url = format!("http://127.0.0.1:18111/f/{i}");
            n += super::Target::parse(&url).unwrap().path.len();
        }
        assert!(n > 0);
    }
}
