//! https failure handling against small rustls servers on std threads: certificate verification
//! (unknown issuer, wrong name, expired), `--cacert`, `--insecure`, `--resolve`, a close-delimited
//! body cut with and without close_notify, a corrupt record mid-body, a handshake-time alert, and
//! pipelining over TLS. Certificates are generated per test with rcgen, so nothing expires in CI.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned,
};
use serde_json::Value;
use tempfile::TempDir;

use crate::common::*;

// ---------------------------------------------------------------------------------------------
// Certificates

/// A certificate authority that exists only for one test; the client trusts it via `--cacert`.
pub(crate) struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub(crate) fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-sign the CA"),
        }
    }

    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub(crate) fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Writes the CA certificate as PEM to `path`, for `--cacert`.
    pub(crate) fn write(&self, path: &Path) -> PathBuf {
        fs::write(path, self.pem()).expect("write the CA PEM");
        path.to_path_buf()
    }

    /// A server certificate for `names` (an IP literal becomes an IP SAN), valid 1975 to 4096.
    pub(crate) fn leaf(&self, names: &[&str]) -> Leaf {
        self.issue(leaf_params(names))
    }

    /// A server certificate for `names` that stopped being valid in 2001.
    pub(crate) fn expired_leaf(&self, names: &[&str]) -> Leaf {
        let mut params = leaf_params(names);
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(2001, 1, 1);
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign the leaf");
        // The chain a server presents: the leaf, then its issuer (which the client may ignore).
        Leaf {
            chain: vec![cert.der().clone(), self.der()],
            chain_pem: format!("{}{}", cert.pem(), self.pem()),
            key,
        }
    }
}

fn leaf_params(names: &[&str]) -> CertificateParams {
    let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(sans).expect("leaf names");
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params
}

/// A server's certificate chain and private key.
pub(crate) struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    chain_pem: String,
    key: KeyPair,
}

impl Leaf {
    /// A certificate for `names` signed by its own key: no `--cacert` makes it trusted.
    pub(crate) fn self_signed(names: &[&str]) -> Self {
        let key = KeyPair::generate().expect("leaf key");
        let cert = leaf_params(names).self_signed(&key).expect("self-sign");
        Leaf {
            chain: vec![cert.der().clone()],
            chain_pem: cert.pem(),
            key,
        }
    }

    /// Writes `<stem>.pem` (the chain, leaf first) and `<stem>.key.pem` (PKCS#8) into `dir`,
    /// returning (chain path, key path) for `serve --tls-cert/--tls-key`.
    pub(crate) fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key.pem"));
        fs::write(&cert, &self.chain_pem).expect("write the chain PEM");
        fs::write(&key, self.key.serialize_pem()).expect("write the key PEM");
        (cert, key)
    }

    fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key.serialize_der()).into()
    }

    /// A rustls server config presenting this chain, with the ring provider.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        let config = server_builder()
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key_der())
            .expect("server cert and key");
        Arc::new(config)
    }

    /// Like `server_config`, but the handshake fails unless the client shows a certificate
    /// issued by `client_ca`, so a client without one gets an alert.
    fn server_config_requiring_client_cert(&self, client_ca: &TestCa) -> Arc<ServerConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(client_ca.der()).expect("client CA root");
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .expect("client verifier");
        let config = server_builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key_der())
            .expect("server cert and key");
        Arc::new(config)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_builder() -> rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier> {
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
}

/// The files of a ready-made PKI: a CA and a leaf it signed for `localhost` and `127.0.0.1`.
pub(crate) struct Pki {
    pub(crate) ca: TestCa,
    pub(crate) ca_pem: PathBuf,
    pub(crate) cert_pem: PathBuf,
    pub(crate) key_pem: PathBuf,
}

/// A fresh CA and a `localhost`/`127.0.0.1` leaf, written as `ca.pem`, `leaf.pem` and
/// `leaf.key.pem` under `dir`.
pub(crate) fn test_pki(dir: &Path) -> Pki {
    let ca = TestCa::new("ringfetch test CA");
    let ca_pem = ca.write(&dir.join("ca.pem"));
    let (cert_pem, key_pem) = ca.leaf(&["localhost", "127.0.0.1"]).write(dir, "leaf");
    Pki {
        ca,
        ca_pem,
        cert_pem,
        key_pem,
    }
}

// ---------------------------------------------------------------------------------------------
// A misbehaving TLS server

/// How long a connection thread waits on a silent client before giving up.
const SERVER_IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The close-delimited body: long enough to span several TLS records.
const CLOSE_BODY_LEN: usize = 40_000;

/// An application_data record header with 32 bytes that no key decrypts: what a bit flip on the
/// path would leave, so the client must fail the record's integrity check.
const CORRUPT_RECORD: [u8; 37] = {
    let mut record = [0x5a; 37];
    record[0] = 0x17;
    record[1] = 0x03;
    record[2] = 0x03;
    record[3] = 0x00;
    record[4] = 0x20;
    record
};

#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers every request `200` with `body_for(path)` and Content-Length, keeping the
    /// connection; pipelined requests that arrive together get one write.
    KeepAlive,
    /// Answers the first request with a close-delimited body, then ends TLS with close_notify
    /// (or not) and closes TCP.
    CloseDelimited { close_notify: bool },
    /// Sends a head promising 100 bytes and 3 of them, then a corrupt record.
    CorruptRecord,
}

fn body_for(path: &str) -> String {
    format!("hello {path}")
}

fn close_body() -> Vec<u8> {
    (0..CLOSE_BODY_LEN).map(|i| b'a' + (i % 26) as u8).collect()
}

#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: AtomicUsize,
    /// The SNI of each handshake that got far enough to read it (None: the client sent none).
    server_names: Mutex<Vec<Option<String>>>,
}

struct TlsServer {
    addr: SocketAddr,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl TlsServer {
    fn start(config: Arc<ServerConfig>, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (seen, stop) = (seen.clone(), stop.clone());
            thread::spawn(move || {
                // Polling, so dropping the guard ends the thread; capped in case a guard leaks.
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((tcp, _)) => {
                            seen.connections.fetch_add(1, Ordering::SeqCst);
                            let (config, seen) = (config.clone(), seen.clone());
                            thread::spawn(move || serve_connection(tcp, config, behaviour, &seen));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        TlsServer {
            addr,
            seen,
            stop,
            acceptor: Some(acceptor),
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.addr.port())
    }

    fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }

    fn server_names(&self) -> Vec<Option<String>> {
        self.seen.server_names.lock().expect("names lock").clone()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn serve_connection(tcp: TcpStream, config: Arc<ServerConfig>, behaviour: Behaviour, seen: &Seen) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(SERVER_IO_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(SERVER_IO_TIMEOUT));
    let conn = ServerConnection::new(config).expect("server connection");
    let mut tls = StreamOwned::new(conn, tcp);
    // Errors are the client giving up (or the handshake failing as the test intends); the test
    // judges by what the client reports.
    let _ = run_script(&mut tls, behaviour, seen);
    linger_until_client_closes(&mut tls.sock);
}

fn run_script(
    tls: &mut StreamOwned<ServerConnection, TcpStream>,
    behaviour: Behaviour,
    seen: &Seen,
) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut first = true;
    loop {
        let paths = read_heads(tls, &mut buf)?;
        if first {
            let name = tls.conn.server_name().map(str::to_string);
            seen.server_names.lock().expect("names lock").push(name);
            first = false;
        }
        if paths.is_empty() {
            return Ok(());
        }
        seen.requests.fetch_add(paths.len(), Ordering::SeqCst);
        match behaviour {
            Behaviour::KeepAlive => {
                let out: Vec<u8> = paths
                    .iter()
                    .flat_map(|p| ok(body_for(p).as_bytes()))
                    .collect();
                tls.write_all(&out)?;
                tls.flush()?;
            }
            Behaviour::CloseDelimited { close_notify } => {
                let reply = response(
                    "HTTP/1.1 200 OK",
                    &["Content-Type: text/plain"],
                    &close_body(),
                );
                tls.write_all(&reply)?;
                if close_notify {
                    tls.conn.send_close_notify();
                }
                return tls.flush();
            }
            Behaviour::CorruptRecord => {
                tls.write_all(&response(
                    "HTTP/1.1 200 OK",
                    &["Content-Length: 100"],
                    b"hel",
                ))?;
                tls.flush()?;
                // Let the head be read as such before the corrupt record follows it.
                thread::sleep(Duration::from_millis(200));
                return tls.sock.write_all(&CORRUPT_RECORD);
            }
        }
    }
}

/// Blocks until at least one request head is complete and returns the paths of all complete
/// ones; empty when the client ended the connection first.
fn read_heads(tls: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Vec<String>> {
    loop {
        let mut paths = Vec::new();
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            let text = String::from_utf8_lossy(&head);
            paths.push(text.split_whitespace().nth(1).unwrap_or("").to_string());
        }
        if !paths.is_empty() {
            return Ok(paths);
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            return Ok(paths);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// FIN, then read until the client closes, so bytes left unread here cannot turn our close into
/// a RST that could overtake the last record or alert.
fn linger_until_client_closes(tcp: &mut TcpStream) {
    let _ = tcp.shutdown(Shutdown::Write);
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(100)));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match tcp.read(&mut chunk) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Long enough for every run here; a client stalled on a dead TLS stream would take `--timeout`.
const NO_STALL: Duration = Duration::from_secs(10);

/// Asserts `r` failed with kind `tls` and returns its whole `error` text.
#[track_caller]
fn tls_error(r: &Value) -> &str {
    assert_error(r, "tls");
    r["error"].as_str().unwrap_or_default()
}

/// A server for `localhost` with a leaf of a fresh test CA, behaving as `behaviour`. The TempDir holds
/// the PEM files and must live as long as the test.
fn localhost_server(behaviour: Behaviour) -> (TempDir, Pki, TlsServer) {
    let dir = tempdir();
    let pki = test_pki(dir.path());
    let server = TlsServer::start(pki.ca.leaf(&["localhost"]).server_config(), behaviour);
    (dir, pki, server)
}

/// Fetches `https://localhost:PORT/` once from `server`, trusting `pki`'s CA, with default retries
/// and --save-dir; returns the run and the save dir (to check that no partial body is left).
fn fetch_one_saving(server: &TlsServer, pki: &Pki) -> (Output, TempDir) {
    let save = tempdir();
    let out = run_fetch(
        &[server.url("localhost", "/")],
        &trusting(
            &pki.ca_pem,
            &["--timeout", "20", "--save-dir", arg(save.path())],
        ),
    );
    (out, save)
}

/// `--cacert CA` followed by `extra`.
fn trusting<'a>(ca_pem: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--cacert", arg(ca_pem)];
    args.extend_from_slice(extra);
    args
}

/// URL i answered 200 with `body_for(paths[i])`, saved under its index.
#[track_caller]
fn assert_bodies(out: &Output, save: &Path, paths: &[&str]) {
    assert_eq!(out.code, 0, "{}", out.describe());
    for (i, path) in paths.iter().enumerate() {
        let body = body_for(path);
        assert_response(out.result(i as u64), 200, body.len() as u64);
        assert_eq!(saved(save, i as u64), Some(body.into_bytes()), "{path}");
    }
}

/// One certificate problem: fetching `https://localhost:PORT/` and `https://127.0.0.1:PORT/`
/// with `--cacert` for the test CA and `--retries 0` ends in a tls error containing `fragments`.
fn expect_verification_error(leaf: impl FnOnce(&TestCa) -> Leaf, fragments: &[&str]) {
    let dir = tempdir();
    let ca = TestCa::new("verification CA");
    let ca_pem = ca.write(&dir.path().join("ca.pem"));
    let server = TlsServer::start(leaf(&ca).server_config(), Behaviour::KeepAlive);
    let list = vec![server.url("localhost", "/"), server.url("127.0.0.1", "/")];
    let out = run_fetch(
        &list,
        &trusting(&ca_pem, &["--retries", "0", "--timeout", "20"]),
    );
    assert_eq!(out.code, 1, "{}", out.describe());
    for i in 0..2 {
        let r = out.result(i);
        let error = tls_error(r);
        for fragment in fragments {
            assert!(error.contains(fragment), "{fragment:?} missing: {r}");
        }
        // Like a refused connect: the handshake failed before any request was written.
        assert_eq!(r["attempts"], 0, "{r}");
        assert!(r["status"].is_null(), "no response can exist: {r}");
    }
    assert_eq!(out.summary["errors"]["tls"], 2, "{}", out.summary);
    assert_eq!(
        server.requests(),
        0,
        "no request may pass an unverified handshake"
    );
    assert_finished_within(&out, NO_STALL);
}

#[test]
fn trusted_ca_serves_by_name_and_by_ip() {
    let dir = tempdir();
    let pki = test_pki(dir.path());
    // --cacert takes a bundle: an unrelated CA first must not hide ours.
    let bundle = dir.path().join("bundle.pem");
    let other = TestCa::new("unrelated CA");
    fs::write(
        &bundle,
        other.pem() + &fs::read_to_string(&pki.ca_pem).expect("CA PEM"),
    )
    .expect("write the bundle");
    let leaf = pki.ca.leaf(&["localhost", "127.0.0.1"]);
    let server = TlsServer::start(leaf.server_config(), Behaviour::KeepAlive);
    let save = tempdir();
    let list = vec![
        server.url("localhost", "/name"),
        server.url("127.0.0.1", "/ip"),
    ];
    let out = run_fetch(
        &list,
        &trusting(&bundle, &["--retries", "0", "--save-dir", arg(save.path())]),
    );
    assert_bodies(&out, save.path(), &["/name", "/ip"]);
    // A name is sent as SNI; an IP address never is (RFC 6066 §3).
    let mut names = server.server_names();
    names.sort();
    assert_eq!(names, [None, Some("localhost".to_string())]);
}

#[test]
fn self_signed_certificate_is_unknown_issuer() {
    expect_verification_error(
        |_| Leaf::self_signed(&["localhost", "127.0.0.1"]),
        &["unknown issuer", "--cacert"],
    );
}

#[test]
fn certificate_for_another_name_is_not_valid_for() {
    expect_verification_error(|ca| ca.leaf(&["other.test"]), &["not valid for"]);
}

#[test]
fn expired_certificate_is_expired() {
    expect_verification_error(
        |ca| ca.expired_leaf(&["localhost", "127.0.0.1"]),
        &["expired"],
    );
}

#[test]
fn resolve_pins_a_name_and_the_name_is_verified() {
    let dir = tempdir();
    let pki = test_pki(dir.path());
    let server = TlsServer::start(
        pki.ca.leaf(&["other.test"]).server_config(),
        Behaviour::KeepAlive,
    );
    let pin = format!("other.test:{}:127.0.0.1", server.addr.port());
    let out = run_fetch(
        &[server.url("other.test", "/pinned")],
        &trusting(&pki.ca_pem, &["--resolve", &pin, "--retries", "0"]),
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_response(out.result(0), 200, body_for("/pinned").len() as u64);
    assert_eq!(server.server_names(), [Some("other.test".to_string())]);
}

#[test]
fn insecure_accepts_bad_certificates_and_warns_once() {
    let ca = TestCa::new("insecure CA");
    let servers = [
        TlsServer::start(
            Leaf::self_signed(&["localhost", "127.0.0.1"]).server_config(),
            Behaviour::KeepAlive,
        ),
        TlsServer::start(
            ca.leaf(&["other.test"]).server_config(),
            Behaviour::KeepAlive,
        ),
        TlsServer::start(
            ca.expired_leaf(&["localhost", "127.0.0.1"]).server_config(),
            Behaviour::KeepAlive,
        ),
    ];
    let mut list = Vec::new();
    for server in &servers {
        for i in 0..4 {
            list.push(server.url("localhost", &format!("/n{i}")));
            list.push(server.url("127.0.0.1", &format!("/i{i}")));
        }
    }
    // Several workers, so a warning printed per worker or per connection would show.
    let out = run_fetch(&list, &["--insecure", "--retries", "0", "-t", "4"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    for (i, url) in list.iter().enumerate() {
        let path = &url[url.rfind('/').expect("a path")..];
        assert_response(out.result(i as u64), 200, body_for(path).len() as u64);
    }
    assert_eq!(
        out.stderr.matches("--insecure").count(),
        1,
        "one warning per run:\n{}",
        out.stderr
    );
}

#[test]
fn close_delimited_body_with_close_notify_is_complete() {
    let dir = tempdir();
    let pki = test_pki(dir.path());
    let server = TlsServer::start(
        pki.ca.leaf(&["localhost"]).server_config(),
        Behaviour::CloseDelimited { close_notify: true },
    );
    let save = tempdir();
    let list = vec![server.url("localhost", "/a"), server.url("localhost", "/b")];
    let out = run_fetch(
        &list,
        &trusting(
            &pki.ca_pem,
            &[
                "--conns-per-host",
                "1",
                "-t",
                "1",
                "--save-dir",
                arg(save.path()),
            ],
        ),
    );
    assert_eq!(out.code, 0, "{}", out.describe());
    for i in 0..2 {
        assert_response(out.result(i), 200, CLOSE_BODY_LEN as u64);
        assert_eq!(saved(save.path(), i), Some(close_body()), "index {i}");
    }
    // A close-delimited connection cannot carry a second response.
    assert_eq!(server.connections(), 2);
    assert_finished_within(&out, NO_STALL);
}

#[test]
fn close_delimited_body_cut_without_close_notify_is_tls_error() {
    let (_dir, pki, server) = localhost_server(Behaviour::CloseDelimited {
        close_notify: false,
    });
    let (out, save) = fetch_one_saving(&server, &pki);
    assert_eq!(out.code, 1, "{}", out.describe());
    let r = out.result(0);
    assert!(
        tls_error(r).contains("close_notify"),
        "the message must say why a complete-looking body is rejected: {r}"
    );
    assert_eq!(r["status"], 200, "{r}");
    // The head arrived, so no retry; without close_notify a truncation cannot be told apart.
    assert_eq!(r["attempts"], 1, "{r}");
    assert_eq!(
        saved(save.path(), 0),
        None,
        "no possibly truncated body may be saved"
    );
    assert_eq!(server.connections(), 1);
    assert_finished_within(&out, NO_STALL);
}

#[test]
fn corrupt_record_mid_body_is_tls_error_without_retry() {
    let (_dir, pki, server) = localhost_server(Behaviour::CorruptRecord);
    // Default retries: once response bytes arrived, the request must not be sent again.
    let (out, save) = fetch_one_saving(&server, &pki);
    assert_eq!(out.code, 1, "{}", out.describe());
    let r = out.result(0);
    assert_error(r, "tls");
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["body_bytes"], 3, "{r}");
    assert_eq!(r["attempts"], 1, "{r}");
    assert_eq!(saved(save.path(), 0), None, "no partial file may be left");
    assert_eq!(server.connections(), 1);
    assert_eq!(server.requests(), 1);
    assert_finished_within(&out, NO_STALL);
}

#[test]
fn handshake_alert_from_server_is_tls_error() {
    let dir = tempdir();
    let pki = test_pki(dir.path());
    let client_ca = TestCa::new("client CA");
    let config = pki
        .ca
        .leaf(&["localhost"])
        .server_config_requiring_client_cert(&client_ca);
    let server = TlsServer::start(config, Behaviour::KeepAlive);
    let out = run_fetch(
        &[server.url("localhost", "/")],
        &trusting(&pki.ca_pem, &["--retries", "0", "--timeout", "20"]),
    );
    assert_eq!(out.code, 1, "{}", out.describe());
    let r = out.result(0);
    assert!(
        tls_error(r).contains("alert"),
        "the message must say the server sent an alert: {r}"
    );
    assert_eq!(r["attempts"], 1, "{r}");
    assert_eq!(server.requests(), 0);
    assert_finished_within(&out, NO_STALL);
}

/// Twenty URLs pipelined four deep over one TLS connection (`extra` added to the arguments): every
/// body arrives whole, and the server saw one connection.
fn twenty_pipelined_over_one_connection(extra: &[&str]) {
    let (_dir, pki, server) = localhost_server(Behaviour::KeepAlive);
    let paths: Vec<String> = (0..20).map(|i| format!("/item/{i}")).collect();
    let list: Vec<String> = paths.iter().map(|p| server.url("localhost", p)).collect();
    let save = tempdir();
    let mut one_conn = vec![
        "-p",
        "4",
        "--conns-per-host",
        "1",
        "-t",
        "1",
        "--retries",
        "0",
    ];
    one_conn.extend_from_slice(extra);
    let mut args = trusting(&pki.ca_pem, &one_conn);
    args.extend(["--save-dir", arg(save.path())]);
    let out = run_fetch(&list, &args);
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    assert_bodies(&out, save.path(), &paths);
    assert_eq!(
        server.connections(),
        1,
        "{extra:?}: one TLS connection carries all 20"
    );
    assert_eq!(server.requests(), 20);
    assert_finished_within(&out, NO_STALL);
}

#[test]
fn twenty_urls_pipelined_over_one_tls_connection() {
    twenty_pipelined_over_one_connection(&[]);
}

/// TLS over direct descriptors with a pool of 512-byte buffers, taken whole and consumed incrementally:
/// the certificate chain and every record span pieces of several buffers, which the TLS reader copies
/// out in order; 20 pipelined bodies arrive whole over one connection either way.
#[test]
fn tls_records_over_small_ring_buffers_of_both_kinds() {
    for pool in pools("8x512") {
        twenty_pipelined_over_one_connection(&["--transport", "direct", "--ring-buffers", &pool]);
    }
}

/// `--system-roots` swaps the built-in roots for the system store (which does not know the test CA),
/// and `--cacert` still adds to it.
#[test]
fn system_roots_replace_the_builtin_ones_and_cacert_adds_to_them() {
    let (_dir, pki, server) = localhost_server(Behaviour::KeepAlive);
    let list = vec![server.url("localhost", "/sys")];
    let out = run_fetch(&list, &["--system-roots", "--retries", "0"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert!(
        tls_error(out.result(0)).contains("unknown issuer"),
        "{}",
        out.describe()
    );
    let out = run_fetch(&list, &trusting(&pki.ca_pem, &["--system-roots"]));
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_eq!(out.result(0)["status"], 200, "{}", out.describe());
}

/// Servers that speak only TLS 1.2, or only TLS 1.3: both serve pipelined requests, and later
/// connections resume the session (TLS 1.3 tickets; TLS 1.2 tickets or session ids).
#[test]
fn tls12_and_tls13_each_alone_serve_and_resume() {
    let dir = tempdir();
    let pki = test_pki(dir.path());
    let leaf = pki.ca.leaf(&["localhost"]);
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let (chain, key) = leaf.write(dir.path(), "only");
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(&chain)
            .expect("chain")
            .collect::<Result<Vec<_>, _>>()
            .expect("certs");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).expect("key");
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .expect("version")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        let server = TlsServer::start(Arc::new(config), Behaviour::KeepAlive);
        let list: Vec<String> = (0..12)
            .map(|i| server.url("localhost", &format!("/v/{i}")))
            .collect();
        // One connection at a time, one request each (Connection: close), so the 2nd to 12th
        // connections can resume what the first left.
        let mut cmd = std::process::Command::new(bin());
        cmd.arg("bench")
            .arg(server.url("localhost", "/r"))
            .args(trusting(
                &pki.ca_pem,
                &["-c", "1", "-t", "1", "-n", "12", "--no-keepalive", "--json"],
            ));
        let done = run_child(cmd, None);
        assert_eq!(done.code, 0, "{version:?}: {}", tail(&done.stderr));
        let s = parse_summary(&done.stdout);
        assert_eq!(s["requests"], 12, "{version:?}: {s}");
        assert_eq!(s["tls_handshakes"], 12, "{version:?}: {s}");
        assert!(
            s["tls_resumed"].as_u64().is_some_and(|n| n >= 10),
            "{version:?}: {s}"
        );
        let save = tempdir();
        let mut args = trusting(
            &pki.ca_pem,
            &["-p", "4", "--conns-per-host", "1", "-t", "1"],
        );
        args.extend(["--save-dir", arg(save.path())]);
        let out = run_fetch(&list, &args);
        let paths: Vec<String> = (0..12).map(|i| format!("/v/{i}")).collect();
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        assert_bodies(&out, save.path(), &paths);
    }
}

// ---------------------------------------------------------------------------------------------
// Self-checks of the certificates and the server with a plain rustls client, so a failing
// ringfetch test cannot be blamed on the harness.

/// A rustls client connection to `addr` trusting `ca` and expecting the certificate for `name`.
fn plain_connect(
    addr: SocketAddr,
    name: &str,
    ca: &Path,
) -> StreamOwned<ClientConnection, TcpStream> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("open the CA PEM") {
        roots.add(cert.expect("CA PEM")).expect("CA root");
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_string()).expect("server name");
    let conn = ClientConnection::new(Arc::new(config), server_name).expect("client connection");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    StreamOwned::new(conn, tcp)
}

/// Sends `GET path` on a fresh plain connection; the first write drives the handshake.
fn plain_request(
    addr: SocketAddr,
    name: &str,
    ca: &Path,
    path: &str,
) -> io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let mut tls = plain_connect(addr, name, ca);
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: {name}\r\n\r\n").as_bytes())?;
    tls.flush()?;
    Ok(tls)
}

/// GET `path` and read the answer up to the length a `KeepAlive` reply has.
fn plain_get(addr: SocketAddr, name: &str, ca: &Path, path: &str) -> io::Result<Vec<u8>> {
    let mut tls = plain_request(addr, name, ca, path)?;
    let mut got = vec![0u8; ok(body_for(path).as_bytes()).len()];
    tls.read_exact(&mut got)?;
    Ok(got)
}

/// The rustls error inside an I/O error from a rustls stream.
fn rustls_error(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

#[test]
fn harness_pki_files_serve_a_verified_connection() {
    let dir = tempdir();
    let pki = test_pki(dir.path());
    // Built from the files alone, as `serve --tls-cert/--tls-key` would be.
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.cert_pem)
        .expect("open the chain PEM")
        .map(|c| c.expect("chain PEM"))
        .collect();
    assert_eq!(chain.len(), 2, "leaf then CA");
    let key = PrivateKeyDer::from_pem_file(&pki.key_pem).expect("key PEM");
    let config = server_builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("files make a server config");
    let server = TlsServer::start(Arc::new(config), Behaviour::KeepAlive);
    for name in ["localhost", "127.0.0.1"] {
        let got = plain_get(server.addr, name, &pki.ca_pem, "/x").expect("verified GET");
        assert_eq!(got, ok(b"hello /x"), "{name}");
    }
}

#[test]
fn harness_bad_certificates_fail_for_the_intended_reason() {
    let dir = tempdir();
    let pki = test_pki(dir.path());
    let cases = [
        (Leaf::self_signed(&["localhost"]), "unknown issuer"),
        (pki.ca.leaf(&["other.test"]), "wrong name"),
        (pki.ca.expired_leaf(&["localhost"]), "expired"),
    ];
    for (leaf, reason) in cases {
        let server = TlsServer::start(leaf.server_config(), Behaviour::KeepAlive);
        let err = plain_get(server.addr, "localhost", &pki.ca_pem, "/").expect_err(reason);
        let found = match rustls_error(&err) {
            Some(rustls::Error::InvalidCertificate(e)) => e,
            _ => panic!("{reason}: not a certificate error: {err}"),
        };
        let intended = match reason {
            "unknown issuer" => matches!(found, CertificateError::UnknownIssuer),
            "wrong name" => matches!(
                found,
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ),
            _ => matches!(
                found,
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            ),
        };
        assert!(intended, "{reason}: got {found:?}");
    }
}

#[test]
fn harness_server_endings_as_a_plain_client_sees_them() {
    let dir = tempdir();
    let pki = test_pki(dir.path());
    let leaf = pki.ca.leaf(&["localhost"]);
    let full = response(
        "HTTP/1.1 200 OK",
        &["Content-Type: text/plain"],
        &close_body(),
    );

    let clean = TlsServer::start(
        leaf.server_config(),
        Behaviour::CloseDelimited { close_notify: true },
    );
    let mut tls = plain_request(clean.addr, "localhost", &pki.ca_pem, "/").expect("request");
    let mut got = Vec::new();
    tls.read_to_end(&mut got).expect("close_notify, then EOF");
    assert!(got == full, "close-delimited reply differs");

    let abrupt = TlsServer::start(
        leaf.server_config(),
        Behaviour::CloseDelimited {
            close_notify: false,
        },
    );
    let mut tls = plain_request(abrupt.addr, "localhost", &pki.ca_pem, "/").expect("request");
    let mut got = Vec::new();
    let err = tls
        .read_to_end(&mut got)
        .expect_err("EOF without close_notify");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    assert!(got == full, "every byte arrives before the bare FIN");

    let corrupt = TlsServer::start(leaf.server_config(), Behaviour::CorruptRecord);
    let mut tls = plain_request(corrupt.addr, "localhost", &pki.ca_pem, "/").expect("request");
    let err = tls
        .read_to_end(&mut Vec::new())
        .expect_err("a corrupt record");
    assert!(
        matches!(rustls_error(&err), Some(rustls::Error::DecryptError)),
        "{err}"
    );

    let client_ca = TestCa::new("client CA");
    let demanding = TlsServer::start(
        leaf.server_config_requiring_client_cert(&client_ca),
        Behaviour::KeepAlive,
    );
    let err = plain_get(demanding.addr, "localhost", &pki.ca_pem, "/").expect_err("an alert");
    assert!(
        matches!(rustls_error(&err), Some(rustls::Error::AlertReceived(_))),
        "{err}"
    );
}
