//! A panic inside a connection task is a bug of ours, but it must cost that connection only: tokio
//! would catch it and drop the task, and with it the requests on the connection, so their URLs would
//! never get a line and the worker would wait for them forever. Here the pump catches it where the
//! requests are still known (`engine::conn::drive` ends the connection by rule 11 of `http::client`),
//! the worker catches what escapes that (its counts of open connections stay right), and the run ends
//! with exit 1 and one line saying how many panics there were.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};

use crate::error::{ErrorKind, FetchError};

/// Panics caught in this process; a run that caught any exits 1.
static CAUGHT: AtomicU64 = AtomicU64::new(0);

/// Polls `fut` to its end, turning a panic inside it into `Err` with the panic's message (the default
/// hook has already printed it, with where it happened). `fut` is dropped with the future this returns.
///
/// Unwind safety: after a panic nothing of `fut` is polled again, and what it borrowed is left to
/// rules that hold whatever state it was left in (`Connection::panicked`, the worker's counters).
pub(crate) fn catch<F: Future>(fut: F) -> Catch<F> {
    Catch { fut }
}

pin_project_lite::pin_project! {
    /// The future of `catch`: a struct rather than an `async fn`, which would hold `fut` twice (the
    /// argument and its pinned copy) and so double the size of every connection task, idle ones
    /// included.
    pub(crate) struct Catch<F> {
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for Catch<F> {
    type Output = Result<F::Output, FetchError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.project().fut;
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => {
                CAUGHT.fetch_add(1, Ordering::Relaxed);
                Poll::Ready(Err(error(payload.as_ref())))
            }
        }
    }
}

fn error(payload: &(dyn std::any::Any + Send)) -> FetchError {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    FetchError::new(
        ErrorKind::Internal,
        format!(
            "a connection task panicked ({what}); this is a bug in ringfetch, please report it with \
             the message printed on stderr"
        ),
    )
}

/// Panics caught so far.
pub fn caught() -> u64 {
    CAUGHT.load(Ordering::Relaxed)
}

/// The test hook: with RINGFETCH_TEST_PANIC=head:/p in the environment, the head of a response to a
/// request for the path /p panics in its connection task, as a bug would; with `left:/p`, also the
/// call that ends such a request after that first panic, so the second panic escapes the pump
/// (tests/integration/hostile.rs). Read once; an unset or malformed variable arms nothing.
pub const TEST_PANIC_ENV: &str = "RINGFETCH_TEST_PANIC";
static PANIC_AT: OnceLock<Option<(Point, Box<str>)>> = OnceLock::new();

/// Where the test hook panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Point {
    Head,
    Left,
}

/// Reads the test hook's variable; before the workers start.
pub fn arm() {
    PANIC_AT.get_or_init(|| {
        let text = std::env::var(TEST_PANIC_ENV).ok()?;
        let (point, path) = text.split_once(':')?;
        let point = match point {
            "head" => Point::Head,
            "left" => Point::Left,
            _ => return None,
        };
        Some((point, path.into()))
    });
}

/// Panics when the test hook names `path` at `point` (`Left` includes `Head`). One atomic load when
/// nothing is armed.
#[inline]
pub(crate) fn injected(point: Point, path: &str) {
    if let Some(Some((armed, p))) = PANIC_AT.get() {
        if **p == *path && (point == Point::Head || *armed == Point::Left) {
            panic!("injected by {TEST_PANIC_ENV} at {point:?} of {p}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_internal_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let before = caught();
        let ok = rt.block_on(catch(async { 7 }));
        assert_eq!(ok, Ok(7));
        let err = rt.block_on(catch(async {
            tokio::task::yield_now().await;
            panic!("boom {}", 1);
        }));
        let text = rt.block_on(catch(async { panic!("plain") }));
        let err = err.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal);
        assert!(err.message.contains("(boom 1)"), "{}", err.message);
        assert!(text.unwrap_err().message.contains("(plain)"));
        assert!(caught() >= before + 2);
    }
}
