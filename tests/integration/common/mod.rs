//! Shared helpers of the integration binary. Test files own their assertions; the helpers here
//! only run things and parse what came back. Everything is re-exported here, so tests name it as
//! `common::NAME` (or `use crate::common::*`) whichever file it lives in:
//!
//! - `process`: the binary's path, temp dirs and path arguments, child processes under a hard
//!   deadline (`run_child`, `Finished`, `tail`).
//! - `fetch`: `run_fetch` (URL list in, parsed JSONL and summary out), its parsers, the
//!   `assert_*` checks and readers of saved files.
//! - `serve`: `ringfetch serve` as a fixture (`start_serve`, `start_serve_with_nofile`, `Serve`,
//!   `Wire`, `over_each_wire!`)
//!   and `closed_port`.
//! - `hostile`: scripted hostile servers (`Hostile`, `Conn`, `Reply`, `ok`, `response`) and their
//!   self-checks.

mod fetch;
mod hostile;
mod process;
mod proxy;
mod serve;

pub use fetch::*;
pub use hostile::*;
pub use process::*;
pub use proxy::*;
pub use serve::*;
