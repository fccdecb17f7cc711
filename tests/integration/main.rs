//! The one integration test binary: runs the real `ringfetch` executable against the embedded
//! `serve`, scripted hostile servers and (when installed) nginx. Helpers live in `common`.

mod bench;
mod common;
mod direct;
mod dns;
mod fetch;
mod hostile;
mod input;
mod merge;
mod nginx;
mod serve;
mod tls;
