//! TLS for both ends of a connection, over rustls's unbuffered API and our own pooled buffers.
//!
//! - `stream.rs`: `Stream` (`ClientStream`, `ServerStream`), the session fed and drained through the
//!   socket under it: handshake, `send_now`, `write_all`, `read`, close_notify. The hot path.
//! - `config.rs`: the rustls configurations the streams start from: roots, `--insecure`'s verifier,
//!   each worker's session cache, the server's certificate. Run once, never per request.
//! - `error.rs`: rustls errors turned into messages that say what to do.
//!
//! Cut this way because the three change for different reasons (the I/O model, the trust flags, what
//! users run into) and only the stream touches a socket; config and error are pure and tested alone.
//! The buffer pool stays in `stream.rs`, its only user. Everything callers name is re-exported here, so
//! `net::tls::…` paths are the same as when this was one file.

mod config;
mod error;
mod stream;

pub use config::{client_config, read_certs, server_config, worker_config, ClientOptions};
pub use stream::{ClientStream, ServerStream, Side, Stream};
