//! The one integration test binary: runs the real `ringfetch` executable against the embedded
//! `serve`, scripted hostile servers and (when installed) nginx. Helpers live in `common`.

mod bench;
mod common;
mod compressed;
mod direct;
mod dns;
mod fetch;
mod hostile;
mod hosts;
mod input;
mod interrupt;
mod merge;
mod meta;
mod nginx;
mod polite;
mod proxy;
mod redirect;
mod save;
mod serve;
mod soak;
mod tls;
