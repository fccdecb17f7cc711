//! Interruption as a normal ending of a `fetch`. SIGINT or SIGTERM (or a failed write of the results)
//! stops the admission of URLs; the requests in flight get a short grace period to finish; a second
//! signal, or the end of the grace period, ends them at once. Every URL that finished has its line;
//! every other URL has none (and no `.part` file), so `--resume` fetches exactly those.
//!
//! Signals are taken by one thread with `sigwait` (they are blocked in every other thread), so no
//! handler ever runs inside a worker; the workers see the level on their next tick.

use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::input::Line;

/// How far the run has been asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Running = 0,
    /// Admit nothing more; let the requests in flight finish within the grace period.
    Draining = 1,
    /// End the requests in flight now.
    Now = 2,
}

/// The longest the requests in flight may take to finish after the first signal (or `--timeout`,
/// when shorter).
pub const GRACE: Duration = Duration::from_secs(5);

pub struct Interrupt {
    level: AtomicU8,
    /// The first signal, or 0 when the run stopped for another reason (the results could not be
    /// written).
    signal: AtomicI32,
    /// The workers' input queue: closed on the first step, so the reader stops feeding at once
    /// (even while it waits for room) and the workers see the end of the input.
    input: Mutex<Option<async_channel::Receiver<Vec<Line>>>>,
}

impl Interrupt {
    pub fn new(input: async_channel::Receiver<Vec<Line>>) -> Interrupt {
        Interrupt {
            level: AtomicU8::new(Level::Running as u8),
            signal: AtomicI32::new(0),
            input: Mutex::new(Some(input)),
        }
    }

    pub fn level(&self) -> Level {
        match self.level.load(Ordering::Relaxed) {
            0 => Level::Running,
            1 => Level::Draining,
            _ => Level::Now,
        }
    }

    /// Raises the level to `to` (never lowers it) and stops the input.
    pub fn raise(&self, to: Level) {
        self.level.fetch_max(to as u8, Ordering::Relaxed);
        let input = self.input.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(rx) = input {
            rx.close();
        }
    }

    /// The signal that interrupted the run, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::Relaxed) {
            0 => None,
            sig => Some(sig),
        }
    }

    /// Starts the thread that turns SIGINT and SIGTERM into levels: the first drains, the second
    /// stops at once. Blocks both signals in the calling thread first, so that the workers it
    /// starts afterwards inherit the mask.
    pub fn watch_signals(self: &Arc<Self>, grace: Duration) {
        crate::sys::block_stop_signals();
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || loop {
                let sig = crate::sys::wait_stop_signal();
                let _ = me
                    .signal
                    .compare_exchange(0, sig, Ordering::Relaxed, Ordering::Relaxed);
                let name = crate::sys::signal_name(sig);
                if me.level() == Level::Running {
                    eprintln!(
                        "ringfetch: {name}: no new URLs; the requests in flight get {:.0} s to finish (send it again to stop them now)",
                        grace.as_secs_f64()
                    );
                    me.raise(Level::Draining);
                } else {
                    eprintln!("ringfetch: {name} again: stopping the requests in flight now");
                    me.raise(Level::Now);
                }
            });
        if spawned.is_err() {
            // Without the thread the signals must keep their default action (end the process).
            crate::sys::unblock_stop_signals();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_only_rise_and_close_the_input() {
        let (tx, rx) = async_channel::bounded::<Vec<Line>>(1);
        let i = Interrupt::new(rx);
        assert_eq!(i.level(), Level::Running);
        i.raise(Level::Now);
        i.raise(Level::Draining);
        assert_eq!(i.level(), Level::Now);
        assert!(tx.send_blocking(Vec::new()).is_err(), "the input is closed");
        assert_eq!(i.signal(), None);
    }
}
