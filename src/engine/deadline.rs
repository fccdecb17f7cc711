//! Timeouts without timers on the hot path. Each connection publishes one deadline (its oldest request's
//! send time plus `--timeout`) in a cell; one watchdog task per worker scans them a few times a second
//! and shuts down the socket of any connection past its deadline. The connection's pending read then
//! completes, it sees why, and it closes. Dropping an in-flight io_uring read instead (what
//! `tokio::time::timeout` would do) leaves the buffer and the fd with the kernel until the op completes
//! (tokio-uring does not cancel), and costs a timer registration per read.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use slab::Slab;

use crate::net::Kill;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fired {
    No,
    /// The deadline passed.
    Timeout,
    /// The run is over (bench duration reached).
    Stop,
}

pub struct Watch {
    deadline: Cell<Option<Instant>>,
    fired: Cell<Fired>,
    kill: Kill,
}

impl Watch {
    /// The connection's deadline (its oldest request's), or None with nothing in flight.
    pub fn set(&self, deadline: Option<Instant>) {
        self.deadline.set(deadline);
    }

    pub fn fired(&self) -> Fired {
        self.fired.get()
    }
}

#[derive(Default)]
pub struct Watchdog {
    watches: RefCell<Slab<Rc<Watch>>>,
}

/// Removes its watch when the connection ends, before its socket is closed, so the watchdog never
/// shuts down a descriptor number that was reused.
pub struct Registration<'a> {
    dog: &'a Watchdog,
    key: usize,
    pub watch: Rc<Watch>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.dog.watches.borrow_mut().remove(self.key);
    }
}

impl Watchdog {
    pub fn register(&self, kill: Kill) -> Registration<'_> {
        let watch = Rc::new(Watch {
            deadline: Cell::new(None),
            fired: Cell::new(Fired::No),
            kill,
        });
        let key = self.watches.borrow_mut().insert(watch.clone());
        Registration {
            dog: self,
            key,
            watch,
        }
    }

    /// Fires every watch whose deadline is at or before `now`.
    pub fn tick(&self, now: Instant) {
        for (_, w) in self.watches.borrow().iter() {
            if w.fired.get() == Fired::No && w.deadline.get().is_some_and(|d| d <= now) {
                w.fired.set(Fired::Timeout);
                w.kill.fire();
            }
        }
    }

    /// Ends every connection now.
    pub fn stop_all(&self) {
        for (_, w) in self.watches.borrow().iter() {
            if w.fired.get() == Fired::No {
                w.fired.set(Fired::Stop);
                w.kill.fire();
            }
        }
    }

    /// Connections with nothing in flight that the peer closed, reset or wrote to unasked
    /// (`Kill::quietly_open`): `bench --hold`'s look at the connections its tasks hold, at its end.
    pub fn idle_gone(&self) -> u64 {
        self.watches
            .borrow()
            .iter()
            .filter(|(_, w)| {
                w.fired.get() == Fired::No && w.deadline.get().is_none() && !w.kill.quietly_open()
            })
            .count() as u64
    }

    /// Connections currently watched.
    pub fn watched(&self) -> usize {
        self.watches.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn fires_once_and_unblocks_a_reader() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _server = listener.accept().unwrap();
        let dog = Watchdog::default();
        let reg = dog.register(Kill::Fd(client.as_raw_fd()));
        let start = Instant::now();
        reg.watch.set(Some(start + Duration::from_millis(50)));
        dog.tick(start);
        assert_eq!(reg.watch.fired(), Fired::No);
        dog.tick(start + Duration::from_millis(60));
        assert_eq!(reg.watch.fired(), Fired::Timeout);
        // The shutdown makes a blocked read return at once instead of waiting for the peer.
        let mut buf = [0u8; 8];
        assert_eq!(client.read(&mut buf).unwrap(), 0);
        drop(reg);
        assert_eq!(dog.watched(), 0);
    }

    #[test]
    fn stop_all_marks_stop() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let dog = Watchdog::default();
        let reg = dog.register(Kill::Fd(client.as_raw_fd()));
        dog.stop_all();
        assert_eq!(reg.watch.fired(), Fired::Stop);
    }
}
