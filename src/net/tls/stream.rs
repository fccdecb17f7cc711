//! A TLS stream over io_uring with rustls's unbuffered API: the connection owns no socket and no
//! buffers, so ciphertext is read straight into our own buffer by the ring and encrypted straight into
//! the buffer the ring writes from. The same stream serves the client (`fetch`, `bench`) and
//! `serve --tls-*`.
//!
//! Buffers: `rx` holds ciphertext not yet processed (at most a partial record between reads), `tx`
//! ciphertext not yet sent. Both come from a per-thread pool and go back to it when empty, so an idle
//! connection holds only rustls's own state.

use std::cell::{Cell, RefCell};
use std::io;
use std::mem;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::HandshakeKind;

use super::error::explain;
use crate::error::{ErrorKind, FetchError};
use crate::net::buffers::Pool;
use crate::net::Socket;

/// A ciphertext buffer starts small: most responses of a load test or a crawl fit a few KiB, and
/// every connection waiting for its response holds one. It grows to whatever record arrives (16 KiB
/// of data at most, plus the record's overhead) and keeps that size while pooled.
const CIPHER_BUF: usize = 8 * 1024;
/// Room always left free for a read.
const MIN_READ: usize = 2 * 1024;
/// A TLS record header: type, version, 16-bit length.
const RECORD_HEADER: usize = 5;

thread_local! {
    /// Per thread, as a worker's connections are.
    static POOL: Pool = const { Pool::new(CIPHER_BUF) };
}

fn pooled() -> Vec<u8> {
    POOL.with(Pool::take)
}

fn recycle(buf: Vec<u8>) {
    POOL.with(|p| p.give(buf));
}

/// The two ends of rustls's unbuffered API share everything but `process_tls_records`.
pub trait Side {
    type Data;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
    fn common(&self) -> &rustls::CommonState;
}

/// Both connection types implement `Side` alike: their own `process_tls_records` and their
/// `CommonState` through Deref.
macro_rules! side {
    ($conn:ty, $data:ty) => {
        impl Side for $conn {
            type Data = $data;
            fn process<'c, 'i>(
                &'c mut self,
                incoming: &'i mut [u8],
            ) -> UnbufferedStatus<'c, 'i, $data> {
                self.process_tls_records(incoming)
            }
            fn common(&self) -> &rustls::CommonState {
                self
            }
        }
    };
}

side!(UnbufferedClientConnection, ClientConnectionData);
side!(UnbufferedServerConnection, ServerConnectionData);

/// What processing the held ciphertext came to.
enum Processed {
    /// Every complete record is processed; more ciphertext is needed.
    NeedMore,
    /// The handshake is complete and nothing is pending (only returned while handshaking).
    Ready,
    /// The peer sent close_notify: no more data will come.
    PeerClosed,
}

pub struct Stream<S: Side> {
    tcp: Socket,
    tls: RefCell<S>,
    rx: RefCell<Vec<u8>>,
    /// `rx[rx_start..]` is not yet processed.
    rx_start: Cell<usize>,
    tx: RefCell<Vec<u8>>,
    /// A flush of `tx` is under way; whoever appends to `tx` meanwhile leaves it to that flush.
    flushing: Cell<bool>,
    peer_closed: Cell<bool>,
    sent_close: Cell<bool>,
    /// Application data decrypted during the handshake, returned by the first `read`.
    early: RefCell<Vec<u8>>,
    /// The peer's name, for error messages.
    peer: Box<str>,
}

pub type ClientStream = Stream<UnbufferedClientConnection>;
pub type ServerStream = Stream<UnbufferedServerConnection>;

impl<S: Side> Stream<S> {
    fn new(tcp: Socket, tls: S, peer: &str) -> Stream<S> {
        Stream {
            tcp,
            tls: RefCell::new(tls),
            rx: RefCell::new(Vec::new()),
            rx_start: Cell::new(0),
            tx: RefCell::new(Vec::new()),
            flushing: Cell::new(false),
            peer_closed: Cell::new(false),
            sent_close: Cell::new(false),
            early: RefCell::new(Vec::new()),
            peer: peer.into(),
        }
    }

    /// The socket under the stream (descriptor or direct).
    pub fn socket(&self) -> &Socket {
        &self.tcp
    }

    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.tls.borrow().common().handshake_kind()
    }

    /// The peer ended the stream with close_notify (RFC 9112 §9.8: only then is a close-delimited body
    /// known to be complete).
    pub fn closed_cleanly(&self) -> bool {
        self.peer_closed.get()
    }

    /// Runs the handshake to completion.
    async fn handshake(&self) -> Result<(), FetchError> {
        loop {
            let processed = self.process(None)?;
            self.flush().await.map_err(|e| self.io_error(e))?;
            match processed {
                Processed::Ready => return Ok(()),
                Processed::PeerClosed => {
                    return Err(FetchError::new(
                        ErrorKind::Tls,
                        format!("{} closed the TLS session during the handshake", self.peer),
                    ))
                }
                Processed::NeedMore => {}
            }
            match self.fill().await {
                Ok(0) => {
                    return Err(FetchError::new(
                        ErrorKind::Tls,
                        format!(
                            "{} closed the connection during the TLS handshake; is this port serving https?",
                            self.peer
                        ),
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(self.io_error(e)),
            }
        }
    }

    /// Processes the ciphertext held in `rx`: handshake messages are answered into `tx`, application
    /// data is appended to `plain` (None while handshaking, when none may arrive).
    fn process(&self, mut plain: Option<&mut Vec<u8>>) -> Result<Processed, FetchError> {
        let mut tls = self.tls.borrow_mut();
        let mut rx = self.rx.borrow_mut();
        let mut tx = self.tx.borrow_mut();
        loop {
            let start = self.rx_start.get();
            let UnbufferedStatus { mut discard, state } = tls.process(&mut rx[start..]);
            let state = match state {
                Ok(state) => state,
                Err(e) => return Err(self.tls_error(&e)),
            };
            let done = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(|e| self.tls_error(&e))?;
                        discard += record.discard;
                        match plain.as_deref_mut() {
                            Some(out) => out.extend_from_slice(record.payload),
                            // Application data in the same read as the peer's last handshake message
                            // (a client's request right behind its Finished): kept for `read`.
                            None => self.early.borrow_mut().extend_from_slice(record.payload),
                        }
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(&mut encode, &mut tx)?;
                    None
                }
                // `tx` is flushed by the caller before it waits for the peer.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Processed::NeedMore),
                ConnectionState::WriteTraffic(_) if plain.is_none() => Some(Processed::Ready),
                ConnectionState::WriteTraffic(_) => Some(Processed::NeedMore),
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    self.peer_closed.set(true);
                    Some(Processed::PeerClosed)
                }
                _ => {
                    return Err(FetchError::new(
                        ErrorKind::Tls,
                        format!("{} sent TLS early data, which was not offered", self.peer),
                    ))
                }
            };
            self.rx_start.set(start + discard);
            if let Some(done) = done {
                return Ok(done);
            }
        }
    }

    /// Reads more ciphertext into `rx`.
    async fn fill(&self) -> io::Result<usize> {
        let mut rx = mem::take(&mut *self.rx.borrow_mut());
        if rx.capacity() == 0 {
            rx = pooled();
        }
        // Move a partial record to the front, or room for a whole record is not guaranteed.
        let start = self.rx_start.replace(0);
        if start > 0 {
            rx.copy_within(start.., 0);
            rx.truncate(rx.len() - start);
        }
        // The partial record at the front says how long it is: make room for all of it.
        let record = match rx.get(..RECORD_HEADER) {
            Some(h) => RECORD_HEADER + usize::from(u16::from_be_bytes([h[3], h[4]])),
            None => 0,
        };
        let want = (record.max(rx.len()) - rx.len()).max(MIN_READ);
        if rx.capacity() - rx.len() < want {
            rx.reserve(want);
        }
        let (res, rx) = self.tcp.read(rx).await;
        *self.rx.borrow_mut() = rx;
        res
    }

    /// Returns `rx` to the pool when it holds no partial record, so idle connections hold no buffer.
    fn release_rx(&self) {
        let mut rx = self.rx.borrow_mut();
        if self.rx_start.get() == rx.len() && rx.capacity() > 0 {
            recycle(mem::take(&mut *rx));
            self.rx_start.set(0);
        }
    }

    /// Sends everything in `tx` through the ring. Only one flush runs at a time; bytes appended while
    /// it runs are sent by it, in order.
    async fn flush(&self) -> io::Result<()> {
        if self.flushing.get() {
            return Ok(());
        }
        self.flushing.set(true);
        let res = loop {
            let out = mem::take(&mut *self.tx.borrow_mut());
            if out.is_empty() {
                *self.tx.borrow_mut() = out;
                break Ok(());
            }
            let (res, mut out) = self.tcp.write_all(out).await;
            if let Err(e) = res {
                break Err(e);
            }
            out.clear();
            let mut tx = self.tx.borrow_mut();
            if tx.is_empty() {
                *tx = out;
            } else {
                recycle(out);
            }
        };
        self.flushing.set(false);
        let mut tx = self.tx.borrow_mut();
        if tx.is_empty() && tx.capacity() > 0 {
            recycle(mem::take(&mut *tx));
        }
        res
    }

    /// Receives application data into the spare capacity of `buf`, as `tcp::Conn::read` does. Ok(0)
    /// is the end of the stream, clean (close_notify, see `closed_cleanly`) or not.
    pub async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let before = buf.len();
        if !self.early.borrow().is_empty() {
            buf.extend_from_slice(&mem::take(&mut *self.early.borrow_mut()));
        }
        loop {
            let processed = self.process(Some(&mut buf));
            if !self.tx.borrow().is_empty() {
                // A post-handshake reply (a key update): send it before waiting for more.
                if let Err(e) = self.flush().await {
                    return (Err(e), buf);
                }
            }
            match processed {
                Err(e) => return (Err(io::Error::other(e)), buf),
                Ok(_) if buf.len() > before => {
                    self.release_rx();
                    return (Ok(buf.len() - before), buf);
                }
                Ok(Processed::PeerClosed) => return (Ok(0), buf),
                Ok(_) => {}
            }
            match self.fill().await {
                Ok(0) => return (Ok(0), buf),
                Ok(_) => {}
                Err(e) => return (Err(e), buf),
            }
        }
    }

    /// Encrypts all of `plain` and sends what the socket takes now; the rest waits in `tx` for
    /// `write_all`. Returns `plain.len()`: the stream owns those bytes now.
    pub fn send_now(&self, plain: &[u8]) -> io::Result<usize> {
        self.encrypt(plain).map_err(io::Error::other)?;
        if !self.flushing.get() {
            let mut tx = self.tx.borrow_mut();
            let n = match self.tcp.send_now(&tx) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            tx.drain(..n);
            if tx.is_empty() {
                recycle(mem::take(&mut *tx));
            }
        }
        Ok(plain.len())
    }

    /// Ciphertext is waiting in `tx` for `write_all`.
    pub fn unsent(&self) -> bool {
        !self.tx.borrow().is_empty()
    }

    /// Encrypts `plain` (if any) and sends all that is waiting.
    pub async fn write_all(&self, plain: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        if !plain.is_empty() {
            if let Err(e) = self.encrypt(&plain) {
                return (Err(io::Error::other(e)), plain);
            }
        }
        (self.flush().await, plain)
    }

    fn encrypt(&self, plain: &[u8]) -> Result<(), FetchError> {
        self.with_writer(|write, tx| {
            let at = tx.len();
            // Each record adds a header, a tag and a content type: well under 64 bytes.
            tx.resize(at + plain.len() + 64 * (plain.len() / 16384 + 1), 0);
            let n = loop {
                match write.encrypt(plain, &mut tx[at..]) {
                    Ok(n) => break n,
                    Err(EncryptError::InsufficientSize(need)) => {
                        tx.resize(at + need.required_size, 0)
                    }
                    Err(e) => {
                        tx.truncate(at);
                        return Err(FetchError::new(
                            ErrorKind::Tls,
                            format!("cannot encrypt the request: {e}"),
                        ));
                    }
                }
            };
            tx.truncate(at + n);
            Ok(())
        })?
    }

    /// Runs `f` with the session in its write state, after encoding whatever handshake messages are
    /// pending. `rx` is passed as it is (holding at most a partial record, as `read` processes every
    /// complete one), because rustls tracks a partly received handshake message by its offset there.
    fn with_writer<R>(
        &self,
        f: impl FnOnce(&mut rustls::unbuffered::WriteTraffic<'_, S::Data>, &mut Vec<u8>) -> R,
    ) -> Result<R, FetchError> {
        let mut tls = self.tls.borrow_mut();
        let mut rx = self.rx.borrow_mut();
        let mut tx = self.tx.borrow_mut();
        if tx.capacity() == 0 {
            *tx = pooled();
        }
        let mut f = Some(f);
        loop {
            let start = self.rx_start.get();
            let UnbufferedStatus { discard, state } = tls.process(&mut rx[start..]);
            let result = match state {
                Ok(ConnectionState::WriteTraffic(mut write)) => {
                    f.take().map(|f| f(&mut write, &mut tx))
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut encode, &mut tx)?;
                    None
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    None
                }
                Ok(other) => {
                    return Err(FetchError::new(
                        ErrorKind::Tls,
                        format!(
                            "cannot send on the TLS session with {} now ({other:?})",
                            self.peer
                        ),
                    ))
                }
                Err(e) => return Err(self.tls_error(&e)),
            };
            self.rx_start.set(start + discard);
            if let Some(result) = result {
                return Ok(result);
            }
        }
    }

    /// Sends close_notify if the socket takes it now: a courtesy, as the connection closes anyway.
    pub fn close_notify(&self) {
        if self.sent_close.replace(true)
            || self.tls.borrow().common().is_handshaking()
            || self.flushing.get()
        {
            return;
        }
        let mut alert = [0u8; 64];
        if let Ok(Ok(n)) = self.with_writer(|write, _| write.queue_close_notify(&mut alert)) {
            self.tcp.send_last(&alert[..n]);
        }
    }

    /// A socket's failure during the handshake. A direct socket may carry our own error inside (a
    /// failed send reported on the receive side); `FetchError::io` already unwraps that one, so it is
    /// not looked for here a second time.
    fn io_error(&self, err: io::Error) -> FetchError {
        FetchError::io(&format!("TLS connection to {}", self.peer), &err)
    }

    fn tls_error(&self, err: &rustls::Error) -> FetchError {
        FetchError::new(ErrorKind::Tls, explain(err, &self.peer))
    }
}

impl<S: Side> Drop for Stream<S> {
    fn drop(&mut self) {
        self.close_notify();
        for buf in [self.rx.get_mut(), self.tx.get_mut()] {
            if buf.capacity() > 0 {
                recycle(mem::take(buf));
            }
        }
    }
}

impl ClientStream {
    /// Runs the client handshake on a connected socket, within `timeout`.
    pub async fn connect(
        tcp: Socket,
        config: &Arc<rustls::ClientConfig>,
        host: &str,
        timeout: Duration,
    ) -> Result<ClientStream, FetchError> {
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|_| {
                FetchError::new(
                    ErrorKind::Tls,
                    format!("'{host}' is not a name TLS can verify"),
                )
            })?
            .to_owned();
        let conn = UnbufferedClientConnection::new(config.clone(), name)
            .map_err(|e| FetchError::new(ErrorKind::Tls, format!("cannot start TLS: {e}")))?;
        let stream = Stream::new(tcp, conn, host);
        match tokio::time::timeout(timeout, stream.handshake()).await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // The handshake's receive is still in the ring and keeps the socket open until the
                // peer closes: end it now, so the descriptor goes when `stream` does.
                stream.socket().kill().fire();
                Err(FetchError::new(
                ErrorKind::Timeout,
                format!(
                    "no TLS handshake with {host} within {:.1}s (--connect-timeout); is this port serving https?",
                    timeout.as_secs_f64()
                ),
            ))
            }
        }
    }
}

impl ServerStream {
    pub async fn accept(
        tcp: Socket,
        config: &Arc<rustls::ServerConfig>,
    ) -> Result<ServerStream, FetchError> {
        let conn = UnbufferedServerConnection::new(config.clone())
            .map_err(|e| FetchError::new(ErrorKind::Tls, format!("cannot start TLS: {e}")))?;
        let stream = Stream::new(tcp, conn, "the client");
        stream.handshake().await?;
        Ok(stream)
    }
}

/// Appends a pending handshake record to `tx`.
fn encode_into<D>(
    encode: &mut rustls::unbuffered::EncodeTlsData<'_, D>,
    tx: &mut Vec<u8>,
) -> Result<(), FetchError> {
    let at = tx.len();
    tx.resize(at + 4096, 0);
    loop {
        match encode.encode(&mut tx[at..]) {
            Ok(n) => {
                tx.truncate(at + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(need)) => tx.resize(at + need.required_size, 0),
            Err(e) => {
                tx.truncate(at);
                return Err(FetchError::new(
                    ErrorKind::Tls,
                    format!("cannot encode a TLS record: {e}"),
                ));
            }
        }
    }
}
