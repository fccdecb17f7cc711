//! `bench`'s live line on stderr (a TTY only): elapsed time, responses, the current rate, errors.
//! Each worker publishes its own counters a few times a second into a slot of its own (one cache
//! line each, relaxed stores), so the hot path shares nothing; the main thread reads and draws.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Stop;

/// One worker's published counters, alone on their cache line.
#[repr(align(64))]
#[derive(Default)]
struct Slot {
    requests: AtomicU64,
    errors: AtomicU64,
}

pub struct Live {
    slots: Vec<Slot>,
}

impl Live {
    pub fn new(workers: usize) -> Live {
        Live {
            slots: (0..workers).map(|_| Slot::default()).collect(),
        }
    }

    /// Called by worker `i` from its ticker.
    pub fn publish(&self, i: usize, requests: u64, errors: u64) {
        if let Some(slot) = self.slots.get(i) {
            slot.requests.store(requests, Ordering::Relaxed);
            slot.errors.store(errors, Ordering::Relaxed);
        }
    }

    fn totals(&self) -> (u64, u64) {
        self.slots.iter().fold((0, 0), |(r, e), s| {
            (
                r + s.requests.load(Ordering::Relaxed),
                e + s.errors.load(Ordering::Relaxed),
            )
        })
    }
}

/// Draws the line until every worker has finished, then clears it.
pub fn show<T>(live: &Live, workers: &[JoinHandle<T>], stop: Stop, warmup: Duration) {
    let bar = match stop {
        Stop::Requests(n) => ProgressBar::new(n),
        Stop::After(d) => ProgressBar::new((d + warmup).as_millis() as u64),
    };
    if let Ok(style) = ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    let started = Instant::now();
    let (mut last_requests, mut last_at) = (0u64, started);
    let mut rate = 0.0;
    while !workers.iter().all(|w| w.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        let (requests, errors) = live.totals();
        let now = Instant::now();
        let span = now.duration_since(last_at).as_secs_f64();
        if span >= 0.9 {
            rate = (requests.saturating_sub(last_requests)) as f64 / span;
            (last_requests, last_at) = (requests, now);
        } else if last_requests == 0 {
            // The first second: the average so far.
            rate = requests as f64 / now.duration_since(started).as_secs_f64().max(0.001);
        }
        match stop {
            Stop::Requests(_) => bar.set_position(requests),
            Stop::After(_) => bar.set_position(now.duration_since(started).as_millis() as u64),
        }
        bar.set_message(format!(
            "{requests} responses  {rate:.0}/s  {errors} errors"
        ));
    }
    bar.finish_and_clear();
}
