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

#[cfg(test)]
mod tests {
    use super::*;

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
