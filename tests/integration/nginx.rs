//! A real server: nginx from `/usr/sbin/nginx` (skipped with a message when absent) serving
//! files whose content is derived from their index, so every saved body can be checked. Also
//! the `sendfile on; tcp_nopush on;` setup, where a corked server must not stall pipelining, and
//! nginx over TLS with a certificate the test makes.

use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::common::*;

const NGINX: &str = "/usr/sbin/nginx";

/// The content of `/f/<i>`: distinct per index and of varying length (10 B to about 600 B).
fn content(i: usize) -> String {
    format!("file {i}\n").repeat(i % 50 + 1)
}

/// A foreground nginx (master + 1 worker) whose every path lives in its temp dir; killed on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: TempDir,
    /// Over https: the certificate clients trust with `--cacert`.
    cert: Option<PathBuf>,
    /// Clients connect with `--transport direct`.
    direct: bool,
}

impl Nginx {
    /// Starts nginx over `files` generated files with `extra` http-level directives, or None
    /// (after saying why) when nginx is not installed.
    fn start(files: usize, extra: &str) -> Option<Nginx> {
        Nginx::start_on(Wire::Http, files, extra)
    }

    fn start_on(wire: Wire, files: usize, extra: &str) -> Option<Nginx> {
        Nginx::start_with(wire, files, extra, "")
    }

    /// As `start_on`, with `server` directives inside the server block too.
    fn start_with(wire: Wire, files: usize, extra: &str, server: &str) -> Option<Nginx> {
        if !Path::new(NGINX).exists() {
            println!("skipped: {NGINX} is not installed");
            return None;
        }
        let dir = tempdir();
        // Workers drop root privileges to `nobody`, who must be able to read the tree.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let root = dir.path().join("www");
        fs::create_dir_all(root.join("f")).expect("create docroot");
        for i in 0..files {
            fs::write(root.join("f").join(i.to_string()), content(i)).expect("write file");
        }
        fs::create_dir_all(dir.path().join("tmp")).expect("create temp dir");
        let port = closed_port();
        let mut cert = None;
        let listen = match wire {
            Wire::Http | Wire::Direct => String::new(),
            Wire::Https | Wire::DirectHttps => {
                let made = rcgen::generate_simple_self_signed(vec!["localhost".into()])
                    .expect("make a certificate");
                let (crt, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
                fs::write(&crt, made.cert.pem()).expect("write cert");
                fs::write(&key, made.signing_key.serialize_pem()).expect("write key");
                let directives = format!(
                    " ssl;\n        ssl_certificate {};\n        ssl_certificate_key {}",
                    crt.display(),
                    key.display()
                );
                cert = Some(crt);
                directives
            }
        };
        let d = dir.path().display();
        let config = format!(
            "worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type application/octet-stream;
    {extra}
    server {{
        listen 127.0.0.1:{port}{listen};
        root {root};
        {server}
    }}
}}
",
            root = root.display()
        );
        let conf = dir.path().join("nginx.conf");
        fs::write(&conf, config).expect("write nginx.conf");
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Nginx {
            child,
            port,
            dir,
            cert,
            direct: matches!(wire, Wire::Direct | Wire::DirectHttps),
        };
        nginx.wait_ready();
        Some(nginx)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = self.child.try_wait().expect("poll nginx").is_some();
            if exited || Instant::now() > deadline {
                let log = fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
                panic!(
                    "nginx did not start on port {} (exited: {exited}):\n{log}",
                    self.port
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn urls(&self, n: usize) -> Vec<String> {
        let origin = match self.cert {
            None => format!("http://127.0.0.1:{}", self.port),
            Some(_) => format!("https://localhost:{}", self.port),
        };
        (0..n).map(|i| format!("{origin}/f/{i}")).collect()
    }

    fn save_dir(&self) -> PathBuf {
        self.dir.path().join("saved")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master then stops its worker too, where a killed master
        // would leave the worker orphaned and holding the port. SIGKILL only if it hangs.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fetches `n` files with `-p 16` into the save dir and checks each body byte for byte.
fn fetch_and_verify(nginx: &Nginx, n: usize) {
    let list = nginx.urls(n);
    let save = nginx.save_dir();
    let mut args = vec!["-p", "16", "--timeout", "10", "--save-dir", arg(&save)];
    if let Some(cert) = &nginx.cert {
        args.extend(["--cacert", arg(cert)]);
    }
    if nginx.direct {
        args.extend(["--transport", "direct"]);
    }
    let out = run_fetch(&list, &args);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_eq!(out.results.len(), n, "{}", out.describe());
    let by_index = out.by_index();
    assert_eq!(by_index.len(), n);
    for (i, r) in by_index {
        let i = i as usize;
        assert_eq!(r["url"], list[i], "{r}");
        let expected = content(i);
        assert_response(r, 200, expected.len() as u64);
        let body = saved(&save, i as u64);
        assert_eq!(
            body.as_deref(),
            Some(expected.as_bytes()),
            "saved body of index {i}"
        );
    }
    assert_finished_within(&out, Duration::from_secs(20));
}

#[test]
fn nginx_ten_thousand_files_saved_exactly() {
    // nginx closes a keep-alive connection after 1000 requests (keepalive_requests), so this
    // also drives the Connection: close re-send path under pipelining.
    let Some(nginx) = Nginx::start(10_000, "") else {
        return;
    };
    fetch_and_verify(&nginx, 10_000);
}

/// The direct-descriptor transport against nginx: the same files, pipelined, byte for byte, through
/// multishot receives into the ring's buffers and nginx's 1000-request connection limit.
#[test]
fn nginx_over_direct_descriptors_saved_exactly() {
    let Some(nginx) = Nginx::start_on(Wire::Direct, 5_000, "") else {
        return;
    };
    fetch_and_verify(&nginx, 5_000);
}

/// nginx's TLS over our direct descriptors: rustls reading from the ring's buffers.
#[test]
fn nginx_over_https_on_direct_descriptors_saved_exactly() {
    let Some(nginx) = Nginx::start_on(Wire::DirectHttps, 2_000, "") else {
        return;
    };
    fetch_and_verify(&nginx, 2_000);
}

#[test]
fn nginx_sendfile_nopush_pipelined_does_not_stall() {
    let Some(nginx) = Nginx::start(2_000, "sendfile on;\n    tcp_nopush on;") else {
        return;
    };
    fetch_and_verify(&nginx, 2_000);
}

/// nginx's TLS (OpenSSL) against ours, pipelined: every body byte for byte, including the
/// responses nginx writes after its 1000th request on a connection, with close_notify.
#[test]
fn nginx_over_https_pipelined_saved_exactly() {
    let Some(nginx) = Nginx::start_on(Wire::Https, 3_000, "") else {
        return;
    };
    fetch_and_verify(&nginx, 3_000);
}

/// The real web's two habits at once: every URL redirects (`/r/N` → 301 → `/f/N`, an absolute
/// Location, as nginx writes it) and every body is gzipped (`gzip on` for any type). `-L
/// --compressed` ends at each file, decoded byte for byte.
#[test]
fn nginx_redirects_and_gzip_followed_and_decoded() {
    let server = "location /r/ { rewrite ^/r/(.*)$ /f/$1 permanent; }";
    let http = "gzip on;\n    gzip_types *;\n    gzip_min_length 0;";
    let Some(nginx) = Nginx::start_with(Wire::Http, 2_000, http, server) else {
        return;
    };
    let list: Vec<String> = (0..2_000)
        .map(|i| format!("http://127.0.0.1:{}/r/{i}", nginx.port))
        .collect();
    let save = nginx.save_dir();
    let args = ["-L", "--compressed", "-p", "16", "--save-dir", arg(&save)];
    let out = run_fetch(&list, &args);
    assert_eq!(out.code, 0, "{}", out.describe());
    for (i, r) in out.by_index() {
        let expected = content(i as usize);
        assert_response(r, 200, expected.len() as u64);
        assert_eq!(r["redirects"], 1, "{r}");
        assert_eq!(
            r["final_url"],
            format!("http://127.0.0.1:{}/f/{i}", nginx.port),
            "{r}"
        );
        assert_eq!(r["encoding"], "gzip", "{r}");
        // Small files grow in gzip; the larger ones shrink.
        let wire = r["wire_bytes"].as_u64().unwrap();
        assert!(
            wire > 0 && (expected.len() < 2000 || wire < expected.len() as u64),
            "{r}"
        );
        let body = saved(&save, i);
        assert_eq!(body.as_deref(), Some(expected.as_bytes()), "body of {i}");
    }
}
