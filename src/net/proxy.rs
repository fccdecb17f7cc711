//! Proxies for `fetch`: which proxy an origin goes through (`Proxies::for_origin`, decided once per
//! origin), and the handshake that opens a tunnel through it (`Handshake`), sans-IO like `http/`:
//! it says what to send and reads what came back, and `net::connect_via` moves the bytes. The
//! handshake is a preamble on the connection to the proxy, before TLS with the target.
//!
//! http proxies: CONNECT for https targets (RFC 9110 §9.3.6), absolute-form requests for http ones
//! (RFC 9112 §3.2.2, written by `RequestTemplate::write_via`; no handshake). socks5: RFC 1928 with
//! user/password (RFC 1929); socks5 sends the target's address resolved here, socks5h its name.

use std::net::{IpAddr, SocketAddr};

use crate::error::{ErrorKind, FetchError, UsageError};
use crate::net::Host;
use crate::target::{Origin, Scheme};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Http,
    Socks5,
    /// socks5 with names resolved by the proxy.
    Socks5h,
}

/// One proxy, from `--proxy URL` or the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    pub kind: Kind,
    pub host: Host,
    pub port: u16,
    /// `host:port` for messages: never the credentials.
    pub shown: Box<str>,
    /// user and password, percent-decoded.
    credentials: Option<(Vec<u8>, Vec<u8>)>,
    /// `Proxy-Authorization: Basic …\r\n` for http proxies with credentials, rendered once.
    pub authorization: Box<[u8]>,
}

impl Proxy {
    /// Parses `http://[user:pass@]host[:port]`, `socks5://…` or `socks5h://…`; a URL without a
    /// scheme is http, and without a port uses 1080, as curl does.
    pub fn parse(text: &str, whence: &str) -> Result<Proxy, UsageError> {
        let bad = |why: &str| {
            UsageError(format!(
                "{whence} '{}': {why}; expected e.g. http://127.0.0.1:3128, socks5h://user:pass@proxy:1080",
                redact(text)
            ))
        };
        let full = if text.contains("://") {
            text.to_string()
        } else {
            format!("http://{text}")
        };
        let (scheme, rest) = full.split_once("://").unwrap_or(("http", &full));
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "http" => Kind::Http,
            "socks5" => Kind::Socks5,
            "socks5h" => Kind::Socks5h,
            "https" => return Err(bad("TLS to the proxy itself (https://) is not supported")),
            other => return Err(bad(&format!("unknown proxy scheme '{other}'"))),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        // Parsed as http so the url crate handles brackets, IDNA and IPv4 forms; the port is read
        // here because url drops one equal to http's default.
        let parsed =
            url::Url::parse(&format!("http://{hostport}/")).map_err(|e| bad(&e.to_string()))?;
        let port = match hostport.rsplit_once(':') {
            Some((_, p)) if !p.is_empty() && !p.ends_with(']') => p
                .parse::<u16>()
                .map_err(|_| bad("the port is not a number up to 65535"))?,
            _ => 1080,
        };
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => Host::Name(d.to_string()),
            Some(url::Host::Ipv4(ip)) => Host::Ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Host::Ip(IpAddr::V6(ip)),
            _ => return Err(bad("no host")),
        };
        let credentials = userinfo.map(|u| {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            (percent_decode(user), percent_decode(pass))
        });
        if kind != Kind::Http {
            if let Some((u, p)) = &credentials {
                if u.len() > 255 || p.len() > 255 {
                    return Err(bad("socks5 user and password are at most 255 bytes each"));
                }
            }
        }
        let authorization = match (&credentials, kind) {
            (Some((u, p)), Kind::Http) => {
                let mut pair = u.clone();
                pair.push(b':');
                pair.extend_from_slice(p);
                let mut line = b"Proxy-Authorization: Basic ".to_vec();
                line.extend_from_slice(base64(&pair).as_bytes());
                line.extend_from_slice(b"\r\n");
                line.into_boxed_slice()
            }
            _ => Box::default(),
        };
        let shown = match &host {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
            Host::Ip(ip) => format!("{ip}:{port}"),
            Host::Name(n) => format!("{n}:{port}"),
        };
        Ok(Proxy {
            kind,
            host,
            port,
            shown: shown.into(),
            credentials,
            authorization,
        })
    }

    /// Whether an origin of `scheme` through this proxy needs a tunnel: everything but plain http
    /// through an http proxy, which is absolute-form requests on the connection to the proxy.
    pub fn tunnels(&self, scheme: Scheme) -> bool {
        !(self.kind == Kind::Http && scheme == Scheme::Http)
    }

    /// The handshake that opens a tunnel to `origin` (its text `host`); `addr` is the target's
    /// address resolved here, needed by socks5 (not socks5h, not http).
    pub fn handshake(&self, origin: &Origin, host: &str, addr: Option<SocketAddr>) -> Handshake {
        let mut h = Handshake {
            state: State::Start,
            received: Vec::new(),
            proxy: self.shown.clone(),
            target: match &origin.host {
                Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{}", origin.port),
                _ => format!("{host}:{}", origin.port),
            }
            .into(),
            socks_request: Vec::new(),
            socks_auth: Vec::new(),
        };
        match self.kind {
            Kind::Http => {
                let mut out = Vec::with_capacity(128);
                out.extend_from_slice(b"CONNECT ");
                out.extend_from_slice(h.target.as_bytes());
                out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
                out.extend_from_slice(h.target.as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&self.authorization);
                out.extend_from_slice(b"\r\n");
                h.state = State::Connect(out);
            }
            Kind::Socks5 | Kind::Socks5h => {
                // RFC 1928 §4: VER CMD=CONNECT RSV ATYP DST.ADDR DST.PORT.
                let mut req = vec![5, 1, 0];
                let ip = match (&origin.host, self.kind, addr) {
                    (Host::Ip(ip), _, _) => Some(*ip),
                    (_, Kind::Socks5, Some(a)) => Some(a.ip()),
                    _ => None,
                };
                match ip {
                    Some(ip) => push_ip(&mut req, ip),
                    None => {
                        let name = host.as_bytes();
                        req.push(3);
                        req.push(name.len().min(255) as u8);
                        req.extend_from_slice(&name[..name.len().min(255)]);
                    }
                }
                req.extend_from_slice(&origin.port.to_be_bytes());
                h.socks_request = req;
                let greeting = match &self.credentials {
                    Some((u, p)) => {
                        // RFC 1929: VER=1 ULEN UNAME PLEN PASSWD.
                        h.socks_auth = [&[1, u.len() as u8][..], u, &[p.len() as u8], p].concat();
                        vec![5, 2, 0, 2]
                    }
                    None => vec![5, 1, 0],
                };
                h.state = State::Greet(greeting);
            }
        }
        h
    }
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            out.push(1);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(4);
            out.extend_from_slice(&v6.octets());
        }
    }
}

/// Where a handshake stands.
#[derive(Debug)]
enum State {
    Start,
    /// http: the CONNECT request to send, then its response head to read.
    Connect(Vec<u8>),
    ConnectSent,
    /// socks5: the greeting to send, then the chosen method to read.
    Greet(Vec<u8>),
    GreetSent,
    /// socks5: user/password sent, its status to read.
    AuthSent,
    /// socks5: the CONNECT request sent, its reply to read.
    RequestSent,
    Done,
}

/// What the handshake needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes, then read.
    Send(Vec<u8>),
    /// Read more; nothing to send.
    Need,
    /// The tunnel is open: the connection now carries the target's bytes.
    Done,
    /// The proxy refused or failed; the error says what it answered.
    Refused(FetchError),
}

/// A tunnel's opening through one proxy, sans-IO. Call `start` once, send what it gives, then hand
/// each read's bytes to `receive` until it says `Done` or `Refused`.
#[derive(Debug)]
pub struct Handshake {
    state: State,
    /// Bytes of the proxy's current answer not yet complete.
    received: Vec<u8>,
    proxy: Box<str>,
    /// `host:port` of the target.
    target: Box<str>,
    socks_request: Vec<u8>,
    socks_auth: Vec<u8>,
}

/// Longest CONNECT response head read; a proxy's answer is a few hundred bytes.
const MOST_HEAD: usize = 16 * 1024;

impl Handshake {
    /// The first bytes to send.
    pub fn start(&mut self) -> Vec<u8> {
        match std::mem::replace(&mut self.state, State::Start) {
            State::Connect(out) => {
                self.state = State::ConnectSent;
                out
            }
            State::Greet(out) => {
                self.state = State::GreetSent;
                out
            }
            other => {
                self.state = other;
                Vec::new()
            }
        }
    }

    /// Takes bytes the proxy sent (any split) and says what comes next.
    pub fn receive(&mut self, bytes: &[u8]) -> Step {
        self.received.extend_from_slice(bytes);
        match self.state {
            State::ConnectSent => self.connect_answer(),
            State::GreetSent => {
                let [5, method, ref rest @ ..] = self.received[..] else {
                    return self.short_or_garbled(2);
                };
                if !rest.is_empty() {
                    return self.extra();
                }
                self.received.clear();
                match method {
                    0 => self.send_request(),
                    2 if !self.socks_auth.is_empty() => {
                        self.state = State::AuthSent;
                        Step::Send(std::mem::take(&mut self.socks_auth))
                    }
                    2 => self.refused("requires a user and password; give them as socks5://user:pass@host:port in --proxy".into()),
                    _ => self.refused(format!(
                        "accepts none of our authentication methods (it chose {method:#04x}); check the credentials in --proxy"
                    )),
                }
            }
            State::AuthSent => {
                let [_, status, ref rest @ ..] = self.received[..] else {
                    return self.short_or_garbled(2);
                };
                if !rest.is_empty() {
                    return self.extra();
                }
                self.received.clear();
                if status == 0 {
                    self.send_request()
                } else {
                    self.refused(format!(
                        "refused the user and password (status {status}); check the credentials in --proxy"
                    ))
                }
            }
            State::RequestSent => self.socks_reply(),
            State::Done => self.extra(),
            State::Start | State::Connect(_) | State::Greet(_) => Step::Need,
        }
    }

    fn send_request(&mut self) -> Step {
        self.state = State::RequestSent;
        Step::Send(std::mem::take(&mut self.socks_request))
    }

    /// RFC 1928 §6: VER REP RSV ATYP BND.ADDR BND.PORT.
    fn socks_reply(&mut self) -> Step {
        let r = &self.received;
        if r.len() >= 2 && r[0] != 5 {
            return self.garbled();
        }
        if r.len() >= 2 && r[1] != 0 {
            let why = match r[1] {
                1 => "general SOCKS server failure",
                2 => "connection not allowed by ruleset",
                3 => "network unreachable",
                4 => "host unreachable",
                5 => "connection refused",
                6 => "TTL expired",
                7 => "command not supported",
                8 => "address type not supported",
                _ => "unassigned reply code",
            };
            let code = r[1];
            return self.refused(format!(
                "refused CONNECT {}: reply {code} ({why})",
                self.target
            ));
        }
        if r.len() < 5 {
            return Step::Need;
        }
        let len = match r[3] {
            1 => 4 + 4 + 2,
            4 => 4 + 16 + 2,
            3 => 4 + 1 + r[4] as usize + 2,
            _ => return self.garbled(),
        };
        match r.len().cmp(&len) {
            std::cmp::Ordering::Less => Step::Need,
            std::cmp::Ordering::Greater => self.extra(),
            std::cmp::Ordering::Equal => {
                self.received = Vec::new();
                self.state = State::Done;
                Step::Done
            }
        }
    }

    fn connect_answer(&mut self) -> Step {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&self.received) {
            Ok(httparse::Status::Partial) if self.received.len() < MOST_HEAD => Step::Need,
            Ok(httparse::Status::Partial) => self.refused(format!(
                "answered CONNECT {} with a head longer than {MOST_HEAD} bytes",
                self.target
            )),
            Err(e) => self.refused(format!(
                "answered CONNECT {} with something that is not HTTP ({e})",
                self.target
            )),
            Ok(httparse::Status::Complete(len)) => {
                let code = response.code.unwrap_or(0);
                if (200..300).contains(&code) {
                    // RFC 9110 §9.3.6: a 2xx has no body; what follows is the tunnel, and the
                    // target does not speak first (TLS client hello, or our request).
                    if len < self.received.len() {
                        return self.extra();
                    }
                    self.received = Vec::new();
                    self.state = State::Done;
                    return Step::Done;
                }
                let reason = response.reason.unwrap_or("").to_string();
                let hint = match code {
                    407 => "; check the credentials in --proxy",
                    _ => "",
                };
                self.refused(format!(
                    "refused CONNECT {}: {code} {reason}{hint}",
                    self.target
                ))
            }
        }
    }

    fn short_or_garbled(&mut self, need: usize) -> Step {
        if self.received.len() < need {
            Step::Need
        } else {
            self.garbled()
        }
    }

    fn garbled(&mut self) -> Step {
        let head: Vec<String> = self
            .received
            .iter()
            .take(2)
            .map(|b| format!("{b:02x}"))
            .collect();
        self.refused(format!(
            "answered with something that is not SOCKS5 ({}); is it a socks5 proxy?",
            head.join(" ")
        ))
    }

    fn extra(&mut self) -> Step {
        self.refused("sent bytes past the end of its answer".into())
    }

    fn refused(&mut self, what: String) -> Step {
        self.state = State::Done;
        Step::Refused(FetchError::new(
            ErrorKind::Connect,
            format!("proxy {} {what}", self.proxy),
        ))
    }

    /// The proxy closed the connection before the handshake was done.
    pub fn closed(&self) -> FetchError {
        FetchError::new(
            ErrorKind::Connect,
            format!(
                "proxy {} closed the connection during the handshake for {}; is it a proxy of the kind --proxy names?",
                self.proxy, self.target
            ),
        )
    }

    pub fn proxy(&self) -> &str {
        &self.proxy
    }
}

/// The proxies of a run: one per target scheme (none: direct) and the hosts that bypass them.
#[derive(Clone, Debug, Default)]
pub struct Proxies {
    pub http: Option<std::sync::Arc<Proxy>>,
    pub https: Option<std::sync::Arc<Proxy>>,
    pub no_proxy: NoProxy,
}

impl Proxies {
    /// The proxy `origin` goes through, if any.
    pub fn for_origin(&self, origin: &Origin) -> Option<std::sync::Arc<Proxy>> {
        let proxy = match origin.scheme {
            Scheme::Http => self.http.as_ref()?,
            Scheme::Https => self.https.as_ref()?,
        };
        (!self.no_proxy.matches(&origin.host)).then(|| proxy.clone())
    }

    /// `--proxy` and `--noproxy`, else curl's environment variables: `http_proxy` (lowercase only:
    /// a CGI program gets the request's `Proxy:` header as HTTP_PROXY), `https_proxy`/`HTTPS_PROXY`,
    /// `all_proxy`/`ALL_PROXY` for either scheme, `no_proxy`/`NO_PROXY`. An empty value is unset.
    pub fn configure(
        flag: Option<&str>,
        noproxy: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Proxies, UsageError> {
        let var = |names: &[&'static str]| {
            names
                .iter()
                .find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (*n, v)))
        };
        let parse = |found: Option<(&'static str, String)>| -> Result<_, UsageError> {
            found
                .map(|(name, v)| Proxy::parse(v.trim(), name).map(std::sync::Arc::new))
                .transpose()
        };
        let no_proxy = match noproxy {
            Some(list) => NoProxy::parse(list),
            None => NoProxy::parse(
                &var(&["no_proxy", "NO_PROXY"])
                    .map(|v| v.1)
                    .unwrap_or_default(),
            ),
        };
        if let Some(flag) = flag {
            if flag.is_empty() {
                // curl: an empty --proxy turns the environment's proxies off.
                return Ok(Proxies::default());
            }
            let one = std::sync::Arc::new(Proxy::parse(flag, "--proxy")?);
            return Ok(Proxies {
                http: Some(one.clone()),
                https: Some(one),
                no_proxy,
            });
        }
        let all = parse(var(&["all_proxy", "ALL_PROXY"]))?;
        let http = parse(var(&["http_proxy"]))?.or_else(|| all.clone());
        let https = parse(var(&["https_proxy", "HTTPS_PROXY"]))?.or(all);
        Ok(Proxies {
            http,
            https,
            no_proxy,
        })
    }
}

/// `no_proxy`: hosts that are reached directly. Each entry matches a host exactly or as a domain
/// suffix (`example.com` and `.example.com` both match `a.example.com`); `*` matches every host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoProxy {
    all: bool,
    entries: Vec<String>,
}

impl NoProxy {
    pub fn parse(list: &str) -> NoProxy {
        let mut n = NoProxy::default();
        for entry in list
            .split([',', ' '])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            if entry == "*" {
                n.all = true;
            }
            let entry = entry.trim_start_matches('.').trim_end_matches('.');
            let entry = entry.trim_start_matches('[').trim_end_matches(']');
            n.entries.push(entry.to_ascii_lowercase());
        }
        n
    }

    pub fn matches(&self, host: &Host) -> bool {
        if self.all {
            return true;
        }
        let text = match host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(n) => n.trim_end_matches('.').to_ascii_lowercase(),
        };
        self.entries.iter().any(|e| {
            text == *e
                || (matches!(host, Host::Name(_))
                    && text.ends_with(e.as_str())
                    && text.as_bytes()[text.len() - e.len() - 1] == b'.')
        })
    }
}

/// The URL with its password replaced, for messages.
fn redact(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***@{}", &text[..s + 3], &text[at + 1..]),
        (None, Some(at)) => format!("***@{}", &text[at + 1..]),
        _ => text.to_string(),
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// RFC 4648 base64 with padding (Basic credentials, RFC 7617).
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(scheme: Scheme, host: &str, port: u16) -> Origin {
        Origin {
            scheme,
            host: match host.parse::<IpAddr>() {
                Ok(ip) => Host::Ip(ip),
                Err(_) => Host::Name(host.into()),
            },
            port,
        }
    }

    /// Runs a handshake against the proxy's `answers` (one per message we send), each delivered
    /// split at every offset; returns what was sent and how it ended, which must not depend on the
    /// split.
    fn run(
        proxy: &str,
        o: &Origin,
        addr: Option<SocketAddr>,
        answers: &[&[u8]],
    ) -> (Vec<Vec<u8>>, Step) {
        let p = Proxy::parse(proxy, "--proxy").unwrap();
        let host = o.host_text();
        let mut outcome = None;
        let joined: Vec<u8> = answers.concat();
        for split in 0..=joined.len() {
            let mut h = p.handshake(o, &host, addr);
            let mut sent = vec![h.start()];
            let mut step = Step::Need;
            let mut at = 0;
            // Each answer in two pieces cut at `split` (when it falls inside it).
            for answer in answers {
                let end = at + answer.len();
                let cut = split.clamp(at, end);
                for piece in [&joined[at..cut], &joined[cut..end]] {
                    if piece.is_empty() || matches!(step, Step::Refused(_) | Step::Done) {
                        continue;
                    }
                    step = h.receive(piece);
                    if let Step::Send(bytes) = &step {
                        sent.push(bytes.clone());
                    }
                }
                at = end;
                if matches!(step, Step::Refused(_) | Step::Done) {
                    break;
                }
            }
            let got = (sent, step);
            match &outcome {
                None => outcome = Some(got),
                Some(first) => assert_eq!(first, &got, "split at {split}"),
            }
        }
        outcome.unwrap()
    }

    #[test]
    fn connect_tunnel_opens_on_2xx() {
        let o = origin(Scheme::Https, "example.test", 443);
        let (sent, step) = run(
            "http://u%40x:p@127.0.0.1:3128",
            &o,
            None,
            &[b"HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\n"],
        );
        assert_eq!(step, Step::Done);
        assert_eq!(
            String::from_utf8(sent[0].clone()).unwrap(),
            "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\nProxy-Authorization: Basic dUB4OnA=\r\n\r\n"
        );
    }

    #[test]
    fn connect_refusal_carries_the_answer() {
        let o = origin(Scheme::Https, "example.test", 443);
        let (_, step) = run(
            "127.0.0.1:3128",
            &o,
            None,
            &[b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"],
        );
        let Step::Refused(e) = step else {
            panic!("{step:?}")
        };
        assert_eq!(e.kind, ErrorKind::Connect);
        assert_eq!(
            e.message,
            "proxy 127.0.0.1:3128 refused CONNECT example.test:443: 407 Proxy Authentication Required; check the credentials in --proxy"
        );
    }

    #[test]
    fn socks5_sends_the_address_socks5h_the_name() {
        let o = origin(Scheme::Http, "example.test", 8080);
        let addr = Some("10.1.2.3:8080".parse().unwrap());
        let reply: &[u8] = &[5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90];
        let (sent, step) = run("socks5://127.0.0.1:1080", &o, addr, &[&[5, 0], reply]);
        assert_eq!(step, Step::Done);
        assert_eq!(
            sent,
            vec![vec![5, 1, 0], vec![5, 1, 0, 1, 10, 1, 2, 3, 0x1f, 0x90]]
        );
        let (sent, step) = run("socks5h://127.0.0.1:1080", &o, addr, &[&[5, 0], reply]);
        assert_eq!(step, Step::Done);
        let mut want = vec![5, 1, 0, 3, 12];
        want.extend_from_slice(b"example.test");
        want.extend_from_slice(&[0x1f, 0x90]);
        assert_eq!(sent[1], want);
        // A domain-typed bound address is read to its end.
        let long: &[u8] = &[5, 0, 0, 3, 3, b'a', b'b', b'c', 0, 80];
        assert_eq!(
            run("socks5h://h:1", &o, None, &[&[5, 0], long]).1,
            Step::Done
        );
    }

    #[test]
    fn socks5_user_and_password() {
        let o = origin(Scheme::Http, "10.0.0.9", 80);
        let reply: &[u8] = &[5, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let (sent, step) = run("socks5://ab:c@h:1", &o, None, &[&[5, 2], &[1, 0], reply]);
        assert_eq!(step, Step::Done);
        assert_eq!(sent[0], vec![5, 2, 0, 2]);
        assert_eq!(sent[1], vec![1, 2, b'a', b'b', 1, b'c']);
        assert_eq!(sent[2], vec![5, 1, 0, 1, 10, 0, 0, 9, 0, 80]);
        let (_, step) = run("socks5://ab:c@h:1", &o, None, &[&[5, 2], &[1, 1]]);
        let Step::Refused(e) = step else {
            panic!("{step:?}")
        };
        assert!(
            e.message.contains("refused the user and password"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("ab") || !e.message.contains(":c"));
        // No credentials but the proxy wants them; or it wants none of ours.
        let (_, step) = run("socks5://h:1", &o, None, &[&[5, 2]]);
        assert!(matches!(step, Step::Refused(e) if e.message.contains("requires a user")));
        let (_, step) = run("socks5://h:1", &o, None, &[&[5, 0xff]]);
        assert!(matches!(step, Step::Refused(e) if e.message.contains("none of our")));
    }

    #[test]
    fn socks5_failure_reply_is_named() {
        let o = origin(Scheme::Http, "10.0.0.9", 80);
        let (_, step) = run(
            "socks5h://h:1",
            &o,
            None,
            &[&[5, 0], &[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]],
        );
        let Step::Refused(e) = step else {
            panic!("{step:?}")
        };
        assert_eq!(
            e.message,
            "proxy h:1 refused CONNECT 10.0.0.9:80: reply 5 (connection refused)"
        );
        let (_, step) = run("socks5h://h:1", &o, None, &[b"HTTP/1.1 400 Bad\r\n\r\n"]);
        assert!(matches!(step, Step::Refused(e) if e.message.contains("not SOCKS5")));
    }

    #[test]
    fn parse_proxy_urls() {
        let p = Proxy::parse("socks5h://[::1]:9050", "x").unwrap();
        assert_eq!((p.kind, &*p.shown), (Kind::Socks5h, "[::1]:9050"));
        let p = Proxy::parse("http://proxy.test:80", "x").unwrap();
        assert_eq!(p.port, 80);
        assert_eq!(Proxy::parse("proxy.test", "x").unwrap().port, 1080);
        let e = Proxy::parse("ftp://u:secret@h", "--proxy").unwrap_err();
        assert!(!e.0.contains("secret"), "{}", e.0);
        assert!(Proxy::parse("http://h:99999", "x").is_err());
        assert!(Proxy::parse("https://h:1", "x").is_err());
    }

    #[test]
    fn environment_follows_curl() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let http = origin(Scheme::Http, "a.example.com", 80);
        let https = origin(Scheme::Https, "a.example.com", 443);
        // HTTP_PROXY in capitals is ignored (CGI puts the request's Proxy: header there).
        let p = Proxies::configure(
            None,
            None,
            env(&[("HTTP_PROXY", "h:1"), ("HTTPS_PROXY", "s:2")]),
        )
        .unwrap();
        assert!(p.for_origin(&http).is_none());
        assert_eq!(&*p.for_origin(&https).unwrap().shown, "s:2");
        let p = Proxies::configure(
            None,
            None,
            env(&[("all_proxy", "socks5://a:3"), ("http_proxy", "h:1")]),
        )
        .unwrap();
        assert_eq!(&*p.for_origin(&http).unwrap().shown, "h:1");
        assert_eq!(&*p.for_origin(&https).unwrap().shown, "a:3");
        let vars = env(&[
            ("all_proxy", "a:3"),
            ("no_proxy", "other.test, example.com"),
        ]);
        let p = Proxies::configure(None, None, vars).unwrap();
        assert!(p.for_origin(&http).is_none());
        assert!(p
            .for_origin(&origin(Scheme::Http, "notexample.com", 80))
            .is_some());
        // --noproxy replaces no_proxy; --proxy '' turns the environment off.
        let p = Proxies::configure(None, Some("*"), env(&[("all_proxy", "a:3")])).unwrap();
        assert!(p.for_origin(&http).is_none());
        let p = Proxies::configure(Some(""), None, env(&[("all_proxy", "a:3")])).unwrap();
        assert!(p.for_origin(&https).is_none());
        let p = Proxies::configure(Some("h:9"), Some(""), env(&[("no_proxy", "*")])).unwrap();
        assert!(p.for_origin(&https).is_some());
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
