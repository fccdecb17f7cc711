//! Following redirects (`fetch -L`), the HTTP part, sans-IO: which responses redirect, where to
//! (RFC 9110 §10.2.2, §15.4), and with what request. `engine::fetch` keeps the chain of each URL and
//! sends each hop through its origin's pool like any request.

/// Headers given with `-H` that carry the user's credentials for the first origin: not sent to
/// another origin a redirect leads to (curl's rule), unless `--location-trusted`. `Host` goes too:
/// a `-H Host:` names the first origin.
pub const CREDENTIALS: [&str; 4] = ["authorization", "cookie", "proxy-authorization", "host"];

/// The statuses that redirect to `Location` (RFC 9110 §15.4). 300 offers choices, 304 is a cache's,
/// 305/306 are retired: none of them is followed.
pub fn redirects(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// What the next request of the chain sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The method (and body) the URL was fetched with.
    Given,
    /// GET without a body.
    Get,
}

/// The method after a `status` redirect of a request sent with `method` (`now`: what this hop sent):
/// 303 turns anything but HEAD into GET (§15.4.4); 301 and 302 turn POST into GET, as browsers,
/// curl and aiohttp do (§15.4.2 and .3 allow it); 307 and 308 keep the method and body.
pub fn next_method(status: u16, method: &str, now: Method) -> Method {
    if now == Method::Get || method == "HEAD" {
        return now;
    }
    match status {
        303 => Method::Get,
        301 | 302 if method == "POST" => Method::Get,
        _ => Method::Given,
    }
}

/// The `Location` of the final response whose head starts `raw` (interim 1xx heads before it are
/// skipped), when there is exactly one.
pub fn location(raw: &[u8]) -> Option<&str> {
    super::with_final_headers(raw, |headers| {
        let mut found = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("location"));
        let value = found.next()?.value;
        if found.next().is_some() {
            return None;
        }
        let value = std::str::from_utf8(value).ok()?.trim();
        (!value.is_empty()).then_some(value)
    })?
}

/// The absolute URL `location` names, relative to `base` (§10.2.2), when it is http or https. The
/// fragment is dropped: it never goes on the wire.
pub fn resolve(base: &str, location: &str) -> Option<String> {
    let base = url::Url::parse(base).ok()?;
    let mut next = base.join(location).ok()?;
    if !matches!(next.scheme(), "http" | "https") || next.host_str().is_none() {
        return None;
    }
    next.set_fragment(None);
    Some(next.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_statuses_redirect() {
        for s in [301, 302, 303, 307, 308] {
            assert!(redirects(s), "{s}");
        }
        for s in [200, 300, 304, 305, 306, 309, 400] {
            assert!(!redirects(s), "{s}");
        }
    }

    #[test]
    fn methods_after_each_status() {
        use Method::*;
        assert_eq!(next_method(303, "POST", Given), Get);
        assert_eq!(next_method(303, "PUT", Given), Get);
        assert_eq!(next_method(303, "HEAD", Given), Given);
        assert_eq!(next_method(301, "POST", Given), Get);
        assert_eq!(next_method(302, "POST", Given), Get);
        assert_eq!(next_method(302, "PUT", Given), Given);
        assert_eq!(next_method(307, "POST", Given), Given);
        assert_eq!(next_method(308, "POST", Given), Given);
        // Once GET, GET for the rest of the chain.
        assert_eq!(next_method(307, "POST", Get), Get);
    }

    #[test]
    fn location_of_the_final_head() {
        let head = b"HTTP/1.1 301 Moved\r\nContent-Length: 0\r\nLocation:  /b?x=1 \r\n\r\n";
        assert_eq!(location(head), Some("/b?x=1"));
        let interim =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 302 Found\r\nlocation: http://h/\r\n\r\n";
        assert_eq!(location(interim), Some("http://h/"));
        assert_eq!(
            location(b"HTTP/1.1 301 Moved\r\nContent-Length: 0\r\n\r\n"),
            None
        );
        assert_eq!(location(b"HTTP/1.1 301 Moved\r\nLocation:\r\n\r\n"), None);
        let two = b"HTTP/1.1 301 Moved\r\nLocation: /a\r\nLocation: /b\r\n\r\n";
        assert_eq!(location(two), None);
        assert_eq!(location(b"HTTP/1.1 301 Mo"), None);
        let many: String = (0..300).map(|i| format!("X-{i}: y\r\n")).collect();
        let many = format!("HTTP/1.1 308 P\r\n{many}Location: /far\r\n\r\n");
        assert_eq!(location(many.as_bytes()), Some("/far"));
    }

    #[test]
    fn relative_locations_resolve_against_the_current_url() {
        let base = "http://a.test:8080/dir/page?q=1#top";
        assert_eq!(resolve(base, "/b").as_deref(), Some("http://a.test:8080/b"));
        assert_eq!(
            resolve(base, "c").as_deref(),
            Some("http://a.test:8080/dir/c")
        );
        assert_eq!(
            resolve(base, "?r=2").as_deref(),
            Some("http://a.test:8080/dir/page?r=2")
        );
        assert_eq!(
            resolve(base, "//b.test/x").as_deref(),
            Some("http://b.test/x")
        );
        assert_eq!(
            resolve(base, "https://b.test/y#frag").as_deref(),
            Some("https://b.test/y")
        );
        assert_eq!(resolve(base, "ftp://b.test/"), None);
        assert_eq!(resolve(base, "http://"), None);
        assert_eq!(resolve(base, "mailto:x@y"), None);
    }
}
