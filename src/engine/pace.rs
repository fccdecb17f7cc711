//! Politeness (`fetch --host-rate`, `--host-delay`, `--retry-status`): how often one origin may be
//! sent a request, over all workers, and how long to wait before asking again a server that said
//! "try later". Pacing one origin never slows another: each has its own next time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::target::Origin;

/// The next time each origin may be sent a request, shared by the workers (an origin's URLs may be
/// on any of them). Touched once per request, only when pacing is asked for.
pub struct Pacer {
    interval: Duration,
    next: Mutex<HashMap<Origin, Instant>>,
}

/// Origins remembered before those whose time has passed are forgotten: memory follows the origins
/// sent to within one interval, not the number a list names.
const REMEMBERED: usize = 65_536;

impl Pacer {
    pub fn new(interval: Duration) -> Pacer {
        Pacer {
            interval,
            next: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `origin`'s turn at `now`, or says when its next turn is.
    pub fn take(&self, origin: &Origin, now: Instant) -> Result<(), Instant> {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let turn = match next.get(origin) {
            Some(&at) if at > now => return Err(at),
            // A turn taken a little late (the waiting task woke after it) does not push the next
            // one back, or the pace would drift below the rate; one taken after a long idle counts
            // from now (less half an interval), so an idle origin gets no burst.
            Some(&at) => at.max(now - self.interval / 2),
            None => now,
        };
        if next.len() >= REMEMBERED {
            next.retain(|_, at| *at > now);
        }
        next.insert(origin.clone(), turn + self.interval);
        Ok(())
    }
}

/// How long to wait before the `attempt`-th re-send (1, 2, …) after a "try later" status: the
/// server's `Retry-After` when it gave one, else exponential backoff from 1 s with jitter (half to
/// all of it, so a crowd of URLs does not come back at once); never more than `most`.
pub fn try_later(retry_after: Option<&str>, attempt: u32, most: Duration, seed: u64) -> Duration {
    let wait = match retry_after.and_then(parse_retry_after) {
        Some(wait) => wait,
        None => {
            let full = Duration::from_secs(1u64 << attempt.saturating_sub(1).min(20));
            // splitmix64 of the seed: enough spread without a random number crate.
            let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            full.mul_f64(0.5 + (z >> 11) as f64 / (1u64 << 53) as f64 / 2.0)
        }
    };
    wait.min(most)
}

/// RFC 9110 §10.2.3: delay-seconds, or an HTTP-date (its distance from now; a past date is 0).
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// The value of the final head's `Retry-After`, if any (`raw` as `Workload::on_head` gets it).
pub fn retry_after(raw: &[u8]) -> Option<String> {
    crate::http::with_final_headers(raw, |headers| {
        let h = headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("retry-after"))?;
        std::str::from_utf8(h.value).ok().map(str::to_string)
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Target;

    #[test]
    fn one_turn_per_interval_per_origin() {
        let p = Pacer::new(Duration::from_millis(100));
        let a = Target::parse("http://a.test/").unwrap().origin;
        let b = Target::parse("http://b.test/").unwrap().origin;
        let t0 = Instant::now();
        assert_eq!(p.take(&a, t0), Ok(()));
        assert_eq!(p.take(&a, t0), Err(t0 + Duration::from_millis(100)));
        // Another origin is not held back.
        assert_eq!(p.take(&b, t0), Ok(()));
        // Taken 10 ms late, the turn after it is still on the 100 ms grid: no drift.
        assert_eq!(p.take(&a, t0 + Duration::from_millis(110)), Ok(()));
        assert_eq!(
            p.take(&a, t0 + Duration::from_millis(150)),
            Err(t0 + Duration::from_millis(200))
        );
        // An origin idle for a long time gets one turn, not a burst.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(p.take(&b, later), Ok(()));
        assert!(p.take(&b, later).is_err());
    }

    #[test]
    fn waits_follow_retry_after_or_back_off() {
        let most = Duration::from_secs(60);
        assert_eq!(try_later(Some("7"), 1, most, 1), Duration::from_secs(7));
        assert_eq!(try_later(Some(" 3600 "), 1, most, 1), most);
        let past = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(try_later(Some(past), 1, most, 1), Duration::ZERO);
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let wait = try_later(Some(&soon), 1, most, 1);
        assert!(
            wait > Duration::from_secs(27) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        // Without one (or an unreadable one): 1 s, 2 s, 4 s… each with jitter between half and all.
        for attempt in 1..=4u32 {
            let full = Duration::from_secs(1 << (attempt - 1));
            let waits: Vec<Duration> = (0..50)
                .map(|seed| try_later(Some("soon"), attempt, most, seed))
                .collect();
            assert!(
                waits.iter().all(|w| *w >= full / 2 && *w <= full),
                "{waits:?}"
            );
            assert!(waits.windows(2).any(|w| w[0] != w[1]), "no jitter");
        }
        assert_eq!(try_later(None, 30, most, 9), most);
    }

    #[test]
    fn retry_after_of_the_final_head() {
        let head = b"HTTP/1.1 429 Too Many\r\nRetry-After: 12\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(retry_after(head).as_deref(), Some("12"));
        assert_eq!(retry_after(b"HTTP/1.1 503 No\r\n\r\n"), None);
    }
}
