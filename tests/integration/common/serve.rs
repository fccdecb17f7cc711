//! `ringfetch serve` as a fixture: `start_serve`/`start_serve_on` spawn it on 127.0.0.1:0 and
//! hand back a `Serve` guard (killed on drop) over a `Wire`; `over_each_wire!` runs a test over
//! every wire; `parse_listening` checks its first line; `closed_port` is a port nobody serves.

use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tempfile::TempDir;

use super::process::{arg, bin, tempdir};

/// A running `ringfetch serve`; killed on drop.
pub struct Serve {
    child: Child,
    pub addr: SocketAddr,
    /// Over https: the server's made-up certificate, which clients trust with `--cacert`.
    cert: Option<(TempDir, PathBuf)>,
    /// Both ends use the direct-descriptor transport.
    direct: bool,
}

/// What a test runs over: the same tests run over each (`over_each_wire!`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Http,
    Https,
    /// http with `--transport direct` on both ends: sockets in io_uring fixed-file tables.
    Direct,
    /// https over direct descriptors on both ends.
    DirectHttps,
}

impl Serve {
    /// The server's process id, to read its /proc/PID/status (memory, CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        match self.cert {
            None => format!("http://{}{path}", self.addr),
            Some(_) => format!("https://localhost:{}{path}", self.addr.port()),
        }
    }

    /// `args` plus what a client needs to trust this server.
    pub fn client_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        if let Some((_, cert)) = &self.cert {
            all.extend(["--cacert", arg(cert)]);
        }
        // Both named: the default (auto) is direct wherever the kernel has it, and the http and
        // https wires are there to keep the tcp path covered.
        all.extend(["--transport", if self.direct { "direct" } else { "tcp" }]);
        all
    }
}

/// `start_serve` over `wire`: with https, serve makes up a certificate and writes it for the clients.
pub fn start_serve_on(wire: Wire, args: &[&str]) -> Serve {
    let direct = matches!(wire, Wire::Direct | Wire::DirectHttps);
    let mut all: Vec<&str> = Vec::new();
    if direct {
        all.extend(["--transport", "direct"]);
    }
    let mut cert = None;
    if matches!(wire, Wire::Https | Wire::DirectHttps) {
        let dir = tempdir();
        let path = dir.path().join("serve-cert.pem");
        cert = Some((dir, path));
    }
    if let Some((_, path)) = &cert {
        all.extend(["--tls-self-signed", "--tls-self-signed-out", arg(path)]);
    }
    all.extend_from_slice(args);
    let mut serve = start_serve(&all);
    serve.cert = cert;
    serve.direct = direct;
    serve
}

/// Runs each named test function (taking a `Wire`) over http and https, each on descriptors and on
/// direct descriptors, as `http::NAME`, `https::NAME`, `direct::NAME` and `direct_https::NAME`: one
/// table, every transport.
#[macro_export]
macro_rules! over_each_wire {
    ($($name:ident),* $(,)?) => {
        mod http {
            $( #[test] fn $name() { super::$name($crate::common::Wire::Http) } )*
        }
        mod https {
            $( #[test] fn $name() { super::$name($crate::common::Wire::Https) } )*
        }
        mod direct {
            $( #[test] fn $name() { super::$name($crate::common::Wire::Direct) } )*
        }
        mod direct_https {
            $( #[test] fn $name() { super::$name($crate::common::Wire::DirectHttps) } )*
        }
    };
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `ringfetch serve --addr 127.0.0.1:0 --threads 1 ARGS` and waits for its first stdout
/// line, which must be exactly `listening on 127.0.0.1:PORT`.
pub fn start_serve(args: &[&str]) -> Serve {
    start_serve_under(None, args)
}

/// `start_serve` with the open-file limit (soft and hard) set to `nofile` by prlimit(1), which
/// execs serve: the pid stays serve's.
pub fn start_serve_with_nofile(nofile: u32, args: &[&str]) -> Serve {
    start_serve_under(Some(nofile), args)
}

fn start_serve_under(nofile: Option<u32>, args: &[&str]) -> Serve {
    let mut command = match nofile {
        None => Command::new(bin()),
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin());
            c
        }
    };
    let mut child = command
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(if args.contains(&"--threads") {
            &[][..]
        } else {
            &["--threads", "1"][..]
        })
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ringfetch serve");
    let stdout = child.stdout.take().expect("stdout was piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so a chatty server never blocks on a full pipe.
        let _ = io::copy(&mut reader, &mut io::sink());
    });
    let line = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringfetch serve printed no line within 10 s");
        }
    };
    // The guard exists before parsing so a bad line still kills the child.
    let mut guard = Serve {
        child,
        addr: "0.0.0.0:0".parse().expect("placeholder addr"),
        cert: None,
        direct: false,
    };
    guard.addr = parse_listening(&line);
    guard
}

/// Parses `listening on 127.0.0.1:PORT\n`; anything else fails the test.
pub fn parse_listening(line: &str) -> SocketAddr {
    let rest = line
        .strip_suffix('\n')
        .and_then(|l| l.strip_prefix("listening on "))
        .unwrap_or_else(|| panic!("first serve line is not `listening on ADDR`: {line:?}"));
    let addr: SocketAddr = rest
        .parse()
        .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
    assert_eq!(addr.ip().to_string(), "127.0.0.1", "{line:?}");
    assert_ne!(addr.port(), 0, "serve must print the bound port: {line:?}");
    addr
}

/// A 127.0.0.1 port with nothing listening: bind port 0, note the port, release it.
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}
