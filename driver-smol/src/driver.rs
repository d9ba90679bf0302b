//! The driver future: receives until the socket would block (bounded per poll), feeds the
//! node, sends its transmits through a `TransmitQueue` (GSO runs), runs its timers with an
//! `async_io::Timer`, and wakes the handles its events concern. The node's lock is held only
//! while the node is used, never across a system call.

use std::future::Future;
use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use tern_core::{SessionId, close_code};
use tern_udp::{RecvBatch, TransmitQueue, UdpSocket};

use crate::Shared;
use crate::state::State;

/// Rounds of receive → timers → send per poll before yielding to other tasks.
const ROUNDS_PER_POLL: usize = 8;
/// While the socket's send buffer is full, timers are checked at least this often.
const WRITE_BLOCKED_RECHECK: Duration = Duration::from_millis(1);
/// How long a shutting-down endpoint tries to get its CLOSE packets out.
const CLOSE_LINGER: Duration = Duration::from_millis(100);

/// The future that runs an endpoint: spawn it on any executor (or let
/// [`Endpoint::bind`](crate::Endpoint::bind) run it on its own thread). It completes after
/// [`Endpoint::shutdown`](crate::Endpoint::shutdown) or when every handle is dropped.
#[must_use = "the endpoint does nothing unless its driver is polled"]
pub struct Driver {
    shared: Arc<Shared>,
    socket: Arc<Async<UdpSocket>>,
    queue: TransmitQueue,
    batch: RecvBatch,
    timer: Timer,
    timer_at: Option<Instant>,
    write_blocked: bool,
    max_datagram: usize,
    recv_batches: usize,
    closing: Option<Instant>,
    wake: Vec<Waker>,
    /// The last poll stepped aside so woken tasks could answer before the output went
    /// out; this one sends whatever is there.
    yielded: bool,
}

/// What one receive did.
enum Received {
    Nothing,
    Handled,
    /// Tasks were woken by what arrived: let them run before sending, so their answer
    /// shares a packet with the acknowledgement.
    Yield,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("local", &self.socket.get_ref().local_addr())
            .finish_non_exhaustive()
    }
}

impl Driver {
    pub(crate) fn new(
        shared: Arc<Shared>,
        socket: Arc<Async<UdpSocket>>,
        max_datagram: usize,
        recv_batches: usize,
    ) -> Self {
        Self {
            shared,
            socket,
            queue: TransmitQueue::new(1 << 20, 256),
            batch: RecvBatch::default(),
            timer: Timer::never(),
            timer_at: None,
            write_blocked: false,
            max_datagram,
            recv_batches: recv_batches.max(1),
            closing: None,
            wake: Vec::new(),
            yielded: false,
        }
    }

    /// Runs `f` on the locked state, then wakes (outside the lock) whoever it made ready.
    fn locked<R>(&mut self, f: impl FnOnce(&mut Self, &mut State) -> R) -> R {
        let shared = self.shared.clone();
        let mut st = shared.lock();
        let r = f(self, &mut st);
        std::mem::swap(&mut self.wake, &mut st.to_wake);
        drop(st);
        for w in self.wake.drain(..) {
            w.wake();
        }
        r
    }

    /// Moves the node's transmits into the queue. Returns whether the queue filled up (the
    /// node may have more).
    fn fill(&mut self, st: &mut State, now: Instant) -> bool {
        if self.write_blocked {
            return false;
        }
        while let Some(slot) = self.queue.slot(self.max_datagram) {
            let Some(t) = st.node.poll_transmit(now, slot) else {
                return false;
            };
            debug_assert!(t.segment_size.is_none(), "the core writes one datagram");
            self.queue.commit(t.dst, t.src, t.len);
        }
        true
    }

    /// Sends the queue (outside the lock).
    fn flush(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        let socket = self.socket.get_ref();
        if self.queue.flush(|_| Some((socket, None))).is_err() {
            self.write_blocked = true;
        }
    }

    /// Receives one batch and hands it to the node.
    fn receive_batch(&mut self) -> Received {
        match self.socket.get_ref().recv_batch(&mut self.batch) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Received::Nothing,
            Err(e) => {
                // ICMP errors surface here on Linux; they do not hurt an unconnected socket.
                tracing::debug!(%e, "receive error");
                return Received::Handled;
            }
        }
        let (full, step_aside) = self.locked(|d, st| {
            let now = Instant::now();
            for dg in d.batch.datagrams() {
                st.node.handle_datagram(now, dg.from, dg.data);
            }
            st.dispatch();
            if !st.to_wake.is_empty() && !d.yielded {
                return (false, true);
            }
            (d.fill(st, now), false)
        });
        if step_aside {
            self.yielded = true;
            return Received::Yield;
        }
        self.flush();
        if full {
            self.send_more();
        }
        Received::Handled
    }

    /// Keeps sending while the node fills whole queues.
    fn send_more(&mut self) {
        for _ in 0..4 {
            let full = self.locked(|d, st| {
                let now = Instant::now();
                d.fill(st, now)
            });
            self.flush();
            if !full {
                break;
            }
        }
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..ROUNDS_PER_POLL {
            for _ in 0..self.recv_batches {
                match self.receive_batch() {
                    Received::Nothing => break,
                    Received::Handled => {}
                    Received::Yield => {
                        // Re-polled right after the woken tasks had their turn.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
            }
            self.yielded = false;
            let (full, deadline) = self.locked(|d, st| {
                let now = Instant::now();
                if st.stopping && d.closing.is_none() {
                    let ids: Vec<SessionId> = st.node.sessions().map(|s| s.id).collect();
                    for id in ids {
                        let _ = st.node.close(now, id, close_code::NORMAL);
                    }
                    d.closing = Some(now + CLOSE_LINGER);
                }
                if st.node.poll_timeout().is_some_and(|t| t <= now) {
                    st.node.handle_timeout(now);
                }
                st.dispatch();
                let full = d.fill(st, now);
                st.dispatch();
                if let Some(w) = &st.driver {
                    if !w.will_wake(cx.waker()) {
                        st.driver = Some(cx.waker().clone());
                    }
                } else {
                    st.driver = Some(cx.waker().clone());
                }
                let deadline = st.node.poll_timeout().map(|t| {
                    if d.write_blocked {
                        t.max(now + WRITE_BLOCKED_RECHECK)
                    } else {
                        t
                    }
                });
                st.armed = deadline;
                (full, deadline)
            });
            self.flush();
            if let Some(until) = self.closing {
                let now = Instant::now();
                if (self.queue.is_empty() && !full) || now >= until {
                    self.locked(|_, st| {
                        st.done = true;
                        st.driver = None;
                        st.wake_all();
                    });
                    return Poll::Ready(());
                }
            }
            if full && !self.write_blocked {
                continue;
            }
            if self.socket.poll_readable(cx).is_ready() {
                continue;
            }
            if self.write_blocked && self.socket.poll_writable(cx).is_ready() {
                self.write_blocked = false;
                continue;
            }
            let deadline = match (deadline, self.closing) {
                (Some(d), Some(c)) => Some(d.min(c)),
                (d, c) => d.or(c),
            };
            if deadline != self.timer_at {
                self.timer_at = deadline;
                match deadline {
                    Some(at) => self.timer.set_at(at),
                    None => self.timer = Timer::never(),
                }
            }
            if self.timer_at.is_some() && Pin::new(&mut self.timer).poll(cx).is_ready() {
                self.timer_at = None;
                continue;
            }
            return Poll::Pending;
        }
        // Budget used up: let other tasks run, then come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().poll_inner(cx)
    }
}
