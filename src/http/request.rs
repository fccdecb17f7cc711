//! Request heads. The parts common to every request (User-Agent, Accept, `-H` headers) are rendered once
//! into `RequestTemplate`; per request only the method, target and Host are appended into the
//! connection's reused write buffer, so a pipelined batch is one buffer and one write.

use crate::error::UsageError;

/// Everything about a request that does not depend on the URL.
#[derive(Clone, Debug)]
pub struct RequestTemplate {
    pub method: String,
    /// RFC 9110 §9.2.2: only these may be retried or re-sent automatically.
    pub idempotent: bool,
    /// HEAD responses never have a body (RFC 9112 §6.3).
    pub head: bool,
    /// `-H 'Connection: close'`: one request per connection (RFC 9112 §9.6).
    pub closes: bool,
    /// A `-H Host:` value replaces the URL's authority.
    host_override: Option<String>,
    /// Rendered header lines after Host, each ending in CRLF, including the blank line.
    tail: Vec<u8>,
}

impl RequestTemplate {
    /// Validates `-X` and `-H` and renders the shared header block. Defaults are dropped when the user
    /// gives the same header, so `-H 'User-Agent: x'` replaces ours rather than adding a second one.
    pub fn new(method: &str, headers: &[String]) -> Result<RequestTemplate, UsageError> {
        RequestTemplate::with_body(method, headers, None)
    }

    /// As `new`, with a body sent after every head (`--body`), framed by a Content-Length of its own.
    pub fn with_body(
        method: &str,
        headers: &[String],
        body: Option<&[u8]>,
    ) -> Result<RequestTemplate, UsageError> {
        if method.is_empty() || !method.bytes().all(is_token_byte) {
            return Err(UsageError(format!(
                "-X '{method}' is not an HTTP method; expected e.g. GET, HEAD, POST, PUT, DELETE"
            )));
        }
        if method.eq_ignore_ascii_case("CONNECT") {
            return Err(UsageError(
                "-X CONNECT opens a tunnel and is not supported; use GET, HEAD, POST, ...".into(),
            ));
        }
        // Methods are case-sensitive (RFC 9110 §9.1): a server answers `head` as an unknown method,
        // with a body, which a response framed as HEAD's would leave on the connection. Nobody means
        // a lowercase standard method, so it is sent in capitals; other methods go as given.
        let method = match STANDARD_METHODS
            .iter()
            .find(|m| m.eq_ignore_ascii_case(method))
        {
            Some(standard) => standard,
            None => method,
        };
        let mut host_override = None;
        let mut user = Vec::new();
        let has = |name: &str, lines: &[(String, String)]| {
            lines.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        let mut lines: Vec<(String, String)> = Vec::new();
        // Headers given as 'Name:' (no value): sent neither by the user nor as one of our defaults.
        let mut removed: Vec<String> = Vec::new();
        for raw in headers {
            // Checked before trimming, which would quietly drop a CR or LF at either end. Only tab
            // is allowed (RFC 9110 §5.5); CR and LF would end the header early, and NUL or the other
            // controls are refused by servers or read differently by the proxies on the way.
            if raw.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                return Err(UsageError(format!(
                    "-H '{}': header names and values cannot contain control characters (CR, LF, \
                     NUL, ...); only tab is allowed. Percent-encode or drop them",
                    raw.escape_debug()
                )));
            }
            let (name, value) = raw.split_once(':').ok_or_else(|| {
                UsageError(format!(
                    "-H '{raw}' is not a header; expected 'Name: value', e.g. -H 'Accept: text/html'"
                ))
            })?;
            let name = name.trim();
            let value = value.trim();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(UsageError(format!(
                    "-H '{raw}': '{name}' is not a valid header name"
                )));
            }
            if value.is_empty() {
                // curl's convention: 'Name:' with nothing after the colon removes the header.
                if name.eq_ignore_ascii_case("host") {
                    return Err(UsageError(format!(
                        "-H '{raw}': an HTTP/1.1 request must carry Host (RFC 9112 §3.2); give a value \
                         to replace it"
                    )));
                }
                removed.push(name.to_string());
            } else if name.eq_ignore_ascii_case("host") {
                host_override = Some(value.to_string());
            } else {
                lines.push((name.to_string(), value.to_string()));
            }
        }
        let has = |name: &str, lines: &[(String, String)]| {
            has(name, lines) || removed.iter().any(|n| n.eq_ignore_ascii_case(name))
        };
        if !has("user-agent", &lines) {
            user.push((
                "User-Agent".to_string(),
                concat!("ringfetch/", env!("CARGO_PKG_VERSION")).to_string(),
            ));
        }
        if !has("accept", &lines) {
            user.push(("Accept".to_string(), "*/*".to_string()));
        }
        if let Some(body) = body {
            if has("content-length", &lines) || has("transfer-encoding", &lines) {
                return Err(UsageError(
                    "--body sets Content-Length itself; drop the -H Content-Length / Transfer-Encoding"
                        .into(),
                ));
            }
            user.push(("Content-Length".to_string(), body.len().to_string()));
        } else if let Some((name, value)) = lines.iter().find(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding")
                || (n.eq_ignore_ascii_case("content-length") && v.bytes().any(|b| b != b'0'))
        }) {
            // RFC 9112 §6: these say how long the body is. Without a body to match, the server takes
            // the next pipelined request, or waits for bytes that never come, as this one's body.
            return Err(UsageError(format!(
                "-H '{name}: {value}' without --body: no body is sent, so the server would read the \
                 next request as this one's body; give the body with --body DATA or --body @FILE \
                 (which sets Content-Length itself), or drop the header"
            )));
        } else if matches!(method, "POST" | "PUT" | "PATCH") && !has("content-length", &lines) {
            // Servers reject body-carrying methods without a length (411).
            user.push(("Content-Length".to_string(), "0".to_string()));
        }
        let mut tail = Vec::new();
        for (name, value) in user.iter().chain(lines.iter()) {
            tail.extend_from_slice(name.as_bytes());
            tail.extend_from_slice(b": ");
            tail.extend_from_slice(value.as_bytes());
            tail.extend_from_slice(b"\r\n");
        }
        tail.extend_from_slice(b"\r\n");
        // The body rides at the end of the shared block: every request carries it, written with its
        // head in the same batch.
        tail.extend_from_slice(body.unwrap_or_default());
        Ok(RequestTemplate {
            idempotent: matches!(
                method,
                "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
            ),
            head: method == "HEAD",
            closes: lines.iter().any(|(n, v)| {
                n.eq_ignore_ascii_case("connection")
                    && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
            }),
            method: method.to_string(),
            host_override,
            tail,
        })
    }

    /// Appends one request head: `METHOD target HTTP/1.1`, Host, then the shared block.
    pub fn write(&self, out: &mut Vec<u8>, target: &str, host: &str) {
        self.write_via(out, "", target, host, b"")
    }

    /// As `write`, for a request through an http proxy: the target in absolute-form, `origin`
    /// (`http://host:port`) before the path (RFC 9112 §3.2.2), and `authorization`, the proxy's
    /// rendered `Proxy-Authorization` line (or nothing), after Host. Both are the origin's, rendered
    /// once: nothing is allocated per request.
    pub fn write_via(
        &self,
        out: &mut Vec<u8>,
        origin: &str,
        target: &str,
        host: &str,
        authorization: &[u8],
    ) {
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(origin.as_bytes());
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(self.host_override.as_deref().unwrap_or(host).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(authorization);
        out.extend_from_slice(&self.tail);
    }

    /// One rendered head, for workloads that send the same request over and over.
    pub fn render(&self, target: &str, host: &str) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out, target, host);
        out
    }
}

/// RFC 9110 §9.3 and RFC 5789 (PATCH): sent in capitals whatever the case given. CONNECT is refused.
const STANDARD_METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE",
];

/// RFC 9110 §5.6.2 tchar.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, headers: &[&str]) -> String {
        let headers: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
        let t = RequestTemplate::new(method, &headers).unwrap();
        String::from_utf8(t.render("/a?b=1", "example.test:8080")).unwrap()
    }

    #[test]
    fn default_get() {
        let v = env!("CARGO_PKG_VERSION");
        assert_eq!(
            head("GET", &[]),
            format!("GET /a?b=1 HTTP/1.1\r\nHost: example.test:8080\r\nUser-Agent: ringfetch/{v}\r\nAccept: */*\r\n\r\n")
        );
    }

    #[test]
    fn user_headers_replace_defaults_and_host() {
        assert_eq!(
            head("HEAD", &["User-Agent: me", "Host: vhost", "X-A:  1 "]),
            "HEAD /a?b=1 HTTP/1.1\r\nHost: vhost\r\nAccept: */*\r\nUser-Agent: me\r\nX-A: 1\r\n\r\n"
        );
    }

    #[test]
    fn a_header_without_a_value_is_removed_as_in_curl() {
        assert_eq!(
            head("GET", &["User-Agent:", "accept:  ", "X-None:"]),
            "GET /a?b=1 HTTP/1.1\r\nHost: example.test:8080\r\n\r\n"
        );
        // A body-carrying method loses its default empty length too.
        assert_eq!(
            head("POST", &["Content-Length:", "User-Agent:", "Accept:"]),
            "POST /a?b=1 HTTP/1.1\r\nHost: example.test:8080\r\n\r\n"
        );
        let err = RequestTemplate::new("GET", &["Host:".to_string()])
            .err()
            .unwrap();
        assert!(err.0.contains("must carry Host"), "{}", err.0);
    }

    #[test]
    fn post_gets_a_length() {
        assert!(head("POST", &[]).contains("Content-Length: 0\r\n"));
        let t = RequestTemplate::new("POST", &[]).unwrap();
        assert!(!t.idempotent && !t.head);
        let t = RequestTemplate::new("HEAD", &[]).unwrap();
        assert!(t.idempotent && t.head);
    }

    #[test]
    fn body_follows_the_head_with_its_length() {
        let t = RequestTemplate::with_body("POST", &[], Some(b"a=1&b=2")).unwrap();
        let text = String::from_utf8(t.render("/f", "h")).unwrap();
        assert!(text.contains("\r\nContent-Length: 7\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\na=1&b=2"), "{text}");
        assert_eq!(text.matches("Content-Length").count(), 1);
        assert!(
            RequestTemplate::with_body("POST", &["Content-Length: 3".into()], Some(b"x")).is_err()
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(RequestTemplate::new("GE T", &[]).is_err());
        assert!(RequestTemplate::new("CONNECT", &[]).is_err());
        assert!(RequestTemplate::new("GET", &["NoColon".into()]).is_err());
        assert!(RequestTemplate::new("GET", &["Bad Name: x".into()]).is_err());
        assert!(RequestTemplate::new("GET", &["X: a\r\nInjected: 1".into()]).is_err());
    }

    #[test]
    fn through_an_http_proxy_the_target_is_absolute() {
        let v = env!("CARGO_PKG_VERSION");
        let t = RequestTemplate::new("GET", &[]).unwrap();
        let mut out = Vec::new();
        t.write_via(
            &mut out,
            "http://a.test:8080",
            "/p?q",
            "a.test:8080",
            b"Proxy-Authorization: Basic dTpw\r\n",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("GET http://a.test:8080/p?q HTTP/1.1\r\nHost: a.test:8080\r\nProxy-Authorization: Basic dTpw\r\nUser-Agent: ringfetch/{v}\r\nAccept: */*\r\n\r\n")
        );
    }

    #[test]
    fn batch_is_contiguous() {
        let t = RequestTemplate::new("GET", &[]).unwrap();
        let mut out = Vec::new();
        t.write(&mut out, "/1", "h");
        t.write(&mut out, "/2", "h");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("HTTP/1.1\r\n").count(), 2);
        assert!(text.ends_with("\r\n\r\n"));
    }
}
