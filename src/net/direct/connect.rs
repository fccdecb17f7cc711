//! Connect: one linked chain on an explicit slot, Socket → SetSockOpt(TCP_NODELAY) →
//! [SetSockOpt(IP_BIND_ADDRESS_NO_PORT) → Bind(source)] → Connect, every link but the last with
//! SKIP_SUCCESS, so a connect that works posts one completion. `PendingConnect` covers a connect whose
//! future is dropped before that completion (a connect timeout).

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;

use io_uring7::{opcode, squeue, types};

use super::conn::Conn;
use super::slots::{Connecting, Shared, State};
use super::user_data::{user_data, Op};
use super::Ring;

/// The option value of both socket options set in the connect chain; it must outlive the SQE.
static ONE: i32 = 1;

/// A connect's destination and optional source, read by the kernel when the chain runs.
pub(super) type Addrs = (socket2::SockAddr, Option<socket2::SockAddr>);

impl Ring {
    /// Opens a connection to `dst` (from `src`'s address with a port the kernel picks at connect,
    /// IP_BIND_ADDRESS_NO_PORT, when given).
    pub async fn connect(
        self: &Rc<Self>,
        dst: SocketAddr,
        src: Option<std::net::IpAddr>,
    ) -> io::Result<Conn> {
        // No free local port (EADDRNOTAVAIL) while closes of this ring are under way: one of them
        // may hold the port this connect needs (an idle connection closed to make room, whose
        // close waits for its receive to be cancelled). Each close ends in time, so the connect
        // tries again after each of those, and only then reports the error.
        let mut closes = None;
        loop {
            let closed = self.closed.notified();
            let under_way = self.closing.get();
            match self.connect_once(dst, src).await {
                Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                    let left = closes.get_or_insert(under_way);
                    if *left == 0 {
                        return Err(e);
                    }
                    *left -= 1;
                    closed.await;
                }
                done => return done,
            }
        }
    }

    async fn connect_once(
        self: &Rc<Self>,
        dst: SocketAddr,
        src: Option<std::net::IpAddr>,
    ) -> io::Result<Conn> {
        // A connection that just closed gives its slot back once its close completes (the driver's
        // next turn): churning connections (--no-keepalive) wait for that rather than fail.
        let slot = loop {
            let freed = self.freed.notified();
            if let Some(slot) = self.free.borrow_mut().pop() {
                break slot;
            }
            if self.closing.get() == 0 {
                return Err(io::Error::other(format!(
                    "all {} direct-descriptor slots of this worker are in use",
                    self.slots.borrow().len()
                )));
            }
            freed.await;
        };
        let sh = Rc::new(Shared::default());
        let gen = {
            let mut slots = self.slots.borrow_mut();
            let s = &mut slots[slot as usize];
            s.state = State::Open;
            s.shared = Some(sh.clone());
            s.gen
        };
        let addrs = Box::new((
            socket2::SockAddr::from(dst),
            src.map(|ip| socket2::SockAddr::from(SocketAddr::new(ip, 0))),
        ));
        let domain = if dst.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let link = squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS;
        let chain_ud = user_data(Op::Chain, slot, gen);
        let target = types::DestinationSlot::try_from_slot_target(slot)
            .map_err(|_| io::Error::other("slot out of range"))?;
        let mut chain = Vec::with_capacity(5);
        chain.push(
            // No SOCK_CLOEXEC: a fixed file has no descriptor to close on exec (the kernel refuses it).
            opcode::Socket::new(domain, libc::SOCK_STREAM, 0)
                .file_index(Some(target))
                .build()
                .flags(link)
                .user_data(chain_ud),
        );
        // Both options are switched on with the static ONE, which outlives any SQE.
        let enable = |level: i32, name: i32| {
            opcode::SetSockOpt::new(
                types::Fixed(slot),
                level as u32,
                name as u32,
                &ONE as *const i32 as *const libc::c_void,
                4,
            )
            .build()
            .flags(link)
            .user_data(chain_ud)
        };
        chain.push(enable(libc::IPPROTO_TCP, libc::TCP_NODELAY));
        if let Some(src) = &addrs.1 {
            chain.push(enable(libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT));
            chain.push(
                opcode::Bind::new(types::Fixed(slot), src.as_ptr().cast(), src.len())
                    .build()
                    .flags(link)
                    .user_data(chain_ud),
            );
        }
        chain.push(
            opcode::Connect::new(types::Fixed(slot), addrs.0.as_ptr().cast(), addrs.0.len())
                .build()
                .user_data(user_data(Op::Connect, slot, gen)),
        );
        *sh.addrs.borrow_mut() = Some(addrs);
        sh.connect.set(Connecting::InFlight);
        self.push(&chain);
        let pending = PendingConnect {
            ring: self.clone(),
            slot,
            gen,
            sh: sh.clone(),
            done: false,
        };
        pending.wait().await
    }

    /// The chain ended: Connect completed, or a link before it failed. Those links carry SKIP_SUCCESS,
    /// so the kernel posts nothing for the rest of the chain (Connect included): that error ends the
    /// connect.
    #[inline]
    pub(super) fn connect_done(&self, sh: &Shared, res: i32) {
        let Some((done, _)) = sh.connect.get().complete(res) else {
            return;
        };
        sh.connect.set(done);
        sh.addrs.borrow_mut().take();
        if let Some(w) = sh.connector.take() {
            w.wake();
        }
    }
}

/// A connect in flight. Dropped before its completion (a connect timeout), it releases the slot at
/// once: the connect is cancelled in the ring (not left to the kernel's SYN retries) and the slot,
/// counted as closing from now, is closed once the cancelled connect has completed.
struct PendingConnect {
    ring: Rc<Ring>,
    slot: u32,
    gen: u32,
    sh: Rc<Shared>,
    done: bool,
}

impl PendingConnect {
    async fn wait(mut self) -> io::Result<Conn> {
        let res = poll_fn(|cx| match self.sh.connect.get() {
            Connecting::Done(res) => Poll::Ready(res),
            _ => {
                self.sh.connector.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
        self.done = true;
        let conn = Conn {
            ring: self.ring.clone(),
            slot: self.slot,
            gen: self.gen,
            sh: self.sh.clone(),
        };
        if res < 0 {
            // Dropping the connection closes the slot (the socket may exist even though connect failed).
            drop(conn);
            return Err(io::Error::from_raw_os_error(-res));
        }
        Ok(conn)
    }
}

impl Drop for PendingConnect {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.sh.connector.take();
        if self.sh.connect.get().in_flight() {
            self.sh.connect.set(Connecting::Abandoned);
        }
        // Cancels the connect if it is still in flight; closes the slot when nothing is.
        self.ring.release(self.slot);
    }
}
