//! `bench`'s live line on stderr (a TTY only): elapsed time, responses, the current rate, errors.
//! Each worker publishes its own counters a few times a second into a slot of its own (one cache
//! line each, relaxed stores), so the hot path shares nothing; the main thread reads and draws.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Stop;
use crate::error::ErrorKind;

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

/// `fetch`'s counters, published by each worker from its ticker.
#[repr(align(64))]
#[derive(Default)]
struct FetchSlot {
    done: AtomicU64,
    bytes: AtomicU64,
    errors: [AtomicU64; ErrorKind::ALL.len()],
}

/// `fetch`'s live line: URLs done of the total (when known), rate, errors by kind, bytes, ETA.
pub struct FetchLive {
    slots: Vec<FetchSlot>,
    /// URL lines in the list, counted beside the run (u64::MAX until known, or for stdin).
    total: AtomicU64,
}

impl FetchLive {
    pub fn new(workers: usize) -> FetchLive {
        FetchLive {
            slots: (0..workers).map(|_| FetchSlot::default()).collect(),
            total: AtomicU64::new(u64::MAX),
        }
    }

    /// Called by worker `i` from its ticker with its report so far.
    pub fn publish(&self, i: usize, report: &crate::report::summary::Report) {
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        slot.done
            .store(report.requests + report.error_count(), Ordering::Relaxed);
        slot.bytes.store(report.bytes, Ordering::Relaxed);
        for (mine, n) in slot.errors.iter().zip(report.errors) {
            mine.store(n, Ordering::Relaxed);
        }
    }

    /// Counts the URL lines of the list at `path` (a second, independent open of it) for this
    /// shard, less those `--resume` keeps, in a thread of its own: the run does not wait for it.
    pub fn count_in_background(
        self: &std::sync::Arc<Self>,
        path: std::path::PathBuf,
        shard: Option<(u64, u64)>,
        kept: u64,
    ) {
        let live = self.clone();
        std::thread::spawn(move || {
            let Ok(file) = std::fs::File::open(path) else {
                return;
            };
            let lines =
                crate::input::Lines::new(std::io::BufReader::with_capacity(1 << 20, file), shard);
            let urls = lines
                .filter(|e| {
                    matches!(
                        e,
                        Ok(crate::input::Entry::Url(_) | crate::input::Entry::Bad(_))
                    )
                })
                .count() as u64;
            live.total
                .store(urls.saturating_sub(kept), Ordering::Relaxed);
        });
    }

    fn totals(&self) -> (u64, u64, [u64; ErrorKind::ALL.len()]) {
        let mut errors = [0u64; ErrorKind::ALL.len()];
        let (mut done, mut bytes) = (0, 0);
        for s in &self.slots {
            done += s.done.load(Ordering::Relaxed);
            bytes += s.bytes.load(Ordering::Relaxed);
            for (sum, n) in errors.iter_mut().zip(&s.errors) {
                *sum += n.load(Ordering::Relaxed);
            }
        }
        (done, bytes, errors)
    }
}

/// Draws `fetch`'s line until `finished` is set, then clears it.
pub fn show_fetch(live: &FetchLive, finished: &std::sync::atomic::AtomicBool) {
    let bar = ProgressBar::new_spinner();
    let started = Instant::now();
    let (mut last_done, mut last_at, mut rate) = (0u64, started, 0.0);
    let mut sized = false;
    while !finished.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        let (done, bytes, errors) = live.totals();
        let total = live.total.load(Ordering::Relaxed);
        if total != u64::MAX && !sized {
            // The list is counted: a bar with an ETA from here on.
            bar.set_length(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{elapsed:>4} [{bar:25}] {pos}/{len} URLs  {msg}  ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            sized = true;
        }
        let now = Instant::now();
        let span = now.duration_since(last_at).as_secs_f64();
        if span >= 0.9 {
            rate = done.saturating_sub(last_done) as f64 / span;
            (last_done, last_at) = (done, now);
        } else if last_done == 0 {
            rate = done as f64 / now.duration_since(started).as_secs_f64().max(0.001);
        }
        bar.set_position(done);
        let mut msg = format!("{rate:.0}/s  {}", crate::report::summary::bytes(bytes));
        let kinds: Vec<String> = ErrorKind::ALL
            .iter()
            .zip(errors)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        if !kinds.is_empty() {
            msg.push_str("  errors: ");
            msg.push_str(&kinds.join(", "));
        }
        if sized {
            bar.set_message(msg);
        } else {
            bar.set_message(format!("{done} URLs  {msg}"));
        }
    }
    bar.finish_and_clear();
}
