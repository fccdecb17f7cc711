//! Small proxies for the proxy tests, on 127.0.0.1:0, a thread per connection, relaying both ways:
//! `Proxy::http` (CONNECT tunnels, and absolute-form requests forwarded as they came) and
//! `Proxy::socks5` (RFC 1928, user/password RFC 1929). Each counts its connections and records
//! what each connection asked for, and can require credentials.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    Http,
    Socks5,
}

#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    /// Per connection: the http head's first line and Proxy-Authorization, or for socks5 the
    /// target as sent (`ip:port` or `name:port`) and the user:password.
    asked: Mutex<Vec<Asked>>,
}

/// What one connection asked the proxy for.
#[derive(Clone, Debug)]
pub struct Asked {
    /// http: the request line (`CONNECT host:port HTTP/1.1`, `GET http://… HTTP/1.1`); socks5: the
    /// target, `ip:port` or `name:port` as sent.
    pub line: String,
    /// http: the Proxy-Authorization value; socks5: `user:password`.
    pub credentials: Option<String>,
}

pub struct Proxy {
    pub addr: SocketAddr,
    seen: Arc<Seen>,
}

impl Proxy {
    /// An http proxy; with `credentials` (`user:pass`), anything else gets 407.
    pub fn http(credentials: Option<&str>) -> Proxy {
        Proxy::start(ProxyKind::Http, credentials)
    }

    /// A socks5 proxy; with `credentials` it offers only user/password and checks them.
    pub fn socks5(credentials: Option<&str>) -> Proxy {
        Proxy::start(ProxyKind::Socks5, credentials)
    }

    fn start(kind: ProxyKind, credentials: Option<&str>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let wanted = credentials.map(str::to_string);
        let s = seen.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let (s, wanted) = (s.clone(), wanted.clone());
                thread::spawn(move || {
                    let _ = client.set_read_timeout(Some(Duration::from_secs(60)));
                    let _ = match kind {
                        ProxyKind::Http => http_conn(client, &s, wanted.as_deref()),
                        ProxyKind::Socks5 => socks_conn(client, &s, wanted.as_deref()),
                    };
                });
            }
        });
        Proxy { addr, seen }
    }

    /// A --proxy URL for this proxy, `scheme` e.g. "http", "socks5h", with optional `user:pass@`.
    pub fn url(&self, scheme: &str, userinfo: &str) -> String {
        format!("{scheme}://{userinfo}{}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }

    pub fn asked(&self) -> Vec<Asked> {
        self.seen.asked.lock().unwrap().clone()
    }
}

fn record(seen: &Seen, line: String, credentials: Option<String>) {
    seen.asked.lock().unwrap().push(Asked { line, credentials });
}

/// Reads bytes up to and including the blank line of an http head.
fn read_head(c: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if c.read(&mut byte)? == 0 || head.len() > 64 * 1024 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    Ok(head)
}

fn basic(credentials: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in credentials.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                A[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    format!("Basic {out}")
}

fn http_conn(mut client: TcpStream, seen: &Seen, wanted: Option<&str>) -> io::Result<()> {
    let head = read_head(&mut client)?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let line = text.lines().next().unwrap_or_default().to_string();
    let auth = text.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case("proxy-authorization")
            .then(|| v.trim().to_string())
    });
    record(seen, line.clone(), auth.clone());
    if let Some(wanted) = wanted {
        if auth.as_deref() != Some(basic(wanted).as_str()) {
            return client.write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    }
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method == "CONNECT" {
        let Ok(upstream) = TcpStream::connect(target) else {
            return client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        };
        client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        relay(client, upstream);
        return Ok(());
    }
    // Absolute-form: forward the bytes as they came (the target sees absolute-form), then relay.
    let authority = target
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .unwrap_or_default();
    let Ok(mut upstream) = TcpStream::connect(authority) else {
        return client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
    };
    upstream.write_all(&head)?;
    relay(client, upstream);
    Ok(())
}

fn socks_conn(mut client: TcpStream, seen: &Seen, wanted: Option<&str>) -> io::Result<()> {
    let mut two = [0u8; 2];
    client.read_exact(&mut two)?;
    let mut methods = vec![0u8; two[1] as usize];
    client.read_exact(&mut methods)?;
    let method = if wanted.is_some() { 2 } else { 0 };
    if two[0] != 5 || !methods.contains(&method) {
        return client.write_all(&[5, 0xff]);
    }
    client.write_all(&[5, method])?;
    let mut given = None;
    if let Some(wanted) = wanted {
        let mut b = [0u8; 2];
        client.read_exact(&mut b)?;
        let mut user = vec![0u8; b[1] as usize];
        client.read_exact(&mut user)?;
        let mut plen = [0u8; 1];
        client.read_exact(&mut plen)?;
        let mut pass = vec![0u8; plen[0] as usize];
        client.read_exact(&mut pass)?;
        let pair = format!(
            "{}:{}",
            String::from_utf8_lossy(&user),
            String::from_utf8_lossy(&pass)
        );
        let ok = pair == wanted;
        given = Some(pair);
        client.write_all(&[1, if ok { 0 } else { 1 }])?;
        if !ok {
            record(seen, String::new(), given);
            return Ok(());
        }
    }
    let mut req = [0u8; 4];
    client.read_exact(&mut req)?;
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            client.read_exact(&mut a)?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        4 => {
            let mut a = [0u8; 16];
            client.read_exact(&mut a)?;
            format!("[{}]", std::net::Ipv6Addr::from(a))
        }
        3 => {
            let mut n = [0u8; 1];
            client.read_exact(&mut n)?;
            let mut name = vec![0u8; n[0] as usize];
            client.read_exact(&mut name)?;
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => return client.write_all(&[5, 8, 0, 1, 0, 0, 0, 0, 0, 0]),
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port)?;
    let target = format!("{host}:{}", u16::from_be_bytes(port));
    record(seen, target.clone(), given);
    // Names resolve to loopback only here: the tests never leave it.
    let addr = target
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.find(|a| a.ip().is_loopback()));
    let Some(upstream) = addr.and_then(|a| TcpStream::connect(a).ok()) else {
        return client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
    };
    client.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
    relay(client, upstream);
    Ok(())
}

/// Copies both ways until each side ends, passing each end on as a FIN.
fn relay(client: TcpStream, upstream: TcpStream) {
    let _ = client.set_read_timeout(None);
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let up = thread::spawn(move || pipe(c2, u2));
    pipe(upstream, client);
    let _ = up.join();
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}
