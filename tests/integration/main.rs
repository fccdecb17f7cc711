//! The one integration test binary: runs the real `ringfetch` executable against the embedded
//! `serve`, scripted hostile servers and (when installed) nginx. Helpers live in `common`.

mod bench;
mod common;
mod direct;
mod dns;
mod fetch;
mod hostile;
mod hosts;
mod input;
mod interrupt;
mod merge;
mod nginx;
mod save;
mod serve;
mod soak;
mod tls;
