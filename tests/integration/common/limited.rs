//! `ringfetch serve` under a small open-file limit (`ulimit -n`), as a server that has run out of
//! descriptors: it accepts what its limit allows and leaves the rest in its listen backlog,
//! connected from the client's side and never answered. Killed on drop.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::process::bin;
use super::serve::parse_listening;

pub struct LimitedServe {
    child: Child,
    pub addr: SocketAddr,
}

impl LimitedServe {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for LimitedServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ulimit -n NOFILE; ringfetch serve --addr 127.0.0.1:0 --threads 1 --transport tcp`: the limit is
/// lowered for the server alone (hard and soft), so it cannot raise it back.
pub fn start_serve_with_nofile(nofile: u32) -> LimitedServe {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(r#"ulimit -n {nofile} && exec "$0" "$@""#))
        .arg(bin())
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--threads",
            "1",
            "--transport",
            "tcp",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ringfetch serve under ulimit");
    let stdout = child.stdout.take().expect("stdout was piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let _ = io::copy(&mut reader, &mut io::sink());
    });
    let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("ringfetch serve under ulimit -n {nofile} printed no line within 10 s");
    };
    let mut guard = LimitedServe {
        child,
        addr: "0.0.0.0:0".parse().expect("placeholder addr"),
    };
    guard.addr = parse_listening(&line);
    guard
}
