//! The driver: the node, its socket and the waiters behind one mutex ([`Shared`]), and the
//! event-loop thread ([`Loop`]) that owns the poller.
//!
//! A handle's call takes the lock and performs itself on the caller's thread: the core
//! operation, the node events it causes (completing other callers), and the transmits, sent
//! on the (shared) socket before the lock is released. Only a call that must wait (a read
//! with nothing readable, a write into a full stream, an accept, a connect, a ping) leaves a
//! reply channel with the driver, and the loop thread answers it when input lets it go on.
//! The loop thread receives, runs timers and sleeps in `epoll`; a call wakes it only when
//! the node's next deadline moved before the loop's wake-up time, or output was left over.

use std::collections::{BTreeMap, VecDeque};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use tern_core::stream::{ReadError, StreamError, WriteError};
use tern_core::{
    CloseReason, Event, Identity, Node, NodeStats, OpenStreamError, PeerId, SessionError,
    SessionId, SessionInfo, StreamId, close_code,
};
use tern_udp::{GsoState, RecvBatch, SocketSet, StreamFate, TransmitQueue};

use crate::{EndpointConfig, Error};

/// How the loop answers a handle: a one-shot channel per call.
pub(crate) type Reply<T> = SyncSender<T>;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

/// Commands handled per cycle before the loop turns back to the socket.
const COMMANDS_PER_CYCLE: usize = 256;
/// Transmit-queue fills (up to 1 MiB each) per cycle before the loop turns back to input.
const FILLS_PER_CYCLE: usize = 4;
/// Largest single read handed to a handle.
const MAX_READ: usize = 1 << 20;
/// Closed sessions whose reason is remembered for late callers.
const CLOSED_MEMORY: usize = 1024;
/// While the socket's send buffer is full, timers are checked at least this often.
const WRITE_BLOCKED_RECHECK: Duration = Duration::from_millis(1);

/// Stream calls without a result.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StreamOp {
    Finish,
    Reset(u64),
    Stop(u64),
    Priority(i8),
}

/// A read waiting for data: the most bytes wanted and where to answer.
type PendingRead = (usize, ReadReply);

/// A request from a handle.
pub(crate) enum Cmd {
    /// Relay-first session through the node's rendezvous server.
    ConnectPeer {
        peer: PeerId,
        reply: Reply<Result<(SessionId, PeerId), Error>>,
    },
    Connect {
        addr: SocketAddr,
        peer: Option<PeerId>,
        reply: Reply<Result<(SessionId, PeerId), Error>>,
    },
    ConnectRelayed {
        peer: PeerId,
        via: SessionId,
        reply: Reply<Result<(SessionId, PeerId), Error>>,
    },
    UseRelay {
        id: SessionId,
        reply: Reply<Result<(), Error>>,
    },
    Accept {
        reply: Reply<(SessionId, PeerId)>,
    },
    Listen {
        port: u16,
        reply: Reply<Result<(), Error>>,
    },
    Unlisten {
        port: u16,
    },
    AcceptStream {
        port: u16,
        reply: Reply<Result<StreamId, Error>>,
    },
    TryAcceptStream {
        port: u16,
        reply: Reply<Result<Option<StreamId>, Error>>,
    },
    OpenStream {
        session: SessionId,
        port: u16,
        reply: Reply<Result<StreamId, Error>>,
    },
    Read {
        stream: StreamId,
        max: usize,
        reply: ReadReply,
    },
    Write {
        stream: StreamId,
        data: Vec<u8>,
        all: bool,
        reply: Reply<Result<usize, Error>>,
    },
    StreamOp {
        stream: StreamId,
        op: StreamOp,
        reply: Reply<Result<(), Error>>,
    },
    Release {
        stream: StreamId,
    },
    SendDatagram {
        session: SessionId,
        data: Vec<u8>,
        reply: Reply<Result<(), Error>>,
    },
    RecvDatagram {
        session: SessionId,
        reply: Reply<Result<Vec<u8>, Error>>,
    },
    MaxDatagram {
        session: SessionId,
        reply: Reply<Result<usize, Error>>,
    },
    Ping {
        session: SessionId,
        reply: Reply<Result<Duration, Error>>,
    },
    Info {
        session: SessionId,
        reply: Reply<Result<SessionInfo, Error>>,
    },
    Close {
        session: SessionId,
        code: u64,
        reply: Reply<Result<(), Error>>,
    },
    WaitClosed {
        session: SessionId,
        reply: Reply<Option<CloseReason>>,
    },
    NextEvent {
        reply: Reply<Event>,
    },
    Sessions {
        reply: Reply<Vec<SessionInfo>>,
    },
    Stats {
        reply: Reply<NodeStats>,
    },
    GsoState {
        reply: Reply<GsoState>,
    },
    Shutdown,
}

/// Bytes read, and whether the end of the stream came right after them (so the handle can
/// answer the next read with 0 without asking the loop).
pub(crate) type ReadReply = Reply<Result<(Vec<u8>, bool), Error>>;

/// A call performed on the caller's thread: its result, or the channel to wait on.
pub(crate) enum Waiting<T, W> {
    Done(Result<T, Error>),
    Wait(Receiver<Result<W, Error>>),
}

/// A write waiting for the stream to take (all of) its bytes.
struct PendingWrite {
    /// What the stream has not taken yet when the write had to wait.
    data: Vec<u8>,
    /// Bytes the stream took before the write had to wait.
    base: usize,
    done: usize,
    all: bool,
    reply: Reply<Result<usize, Error>>,
}

/// What the loop knows about a stream a handle holds.
#[derive(Default)]
struct StreamState {
    read: Option<PendingRead>,
    write: Option<PendingWrite>,
    /// The end was read: later reads return 0 even after the core freed the stream.
    eof: bool,
    /// Reset, stopped, refused or closed: the error every later call gets.
    fate: StreamFate,
}

impl StreamState {
    fn new(port: u16, local: bool) -> Self {
        Self {
            fate: StreamFate::new(port, local),
            ..Self::default()
        }
    }
}

#[derive(Default)]
struct ListenerState {
    queue: VecDeque<StreamId>,
    waiters: VecDeque<Reply<Result<StreamId, Error>>>,
}

type SessionReply = Reply<Result<(SessionId, PeerId), Error>>;

#[derive(Default)]
struct SessionWaiters {
    datagrams: VecDeque<Reply<Result<Vec<u8>, Error>>>,
    pings: BTreeMap<u64, Reply<Result<Duration, Error>>>,
    opening: VecDeque<(u16, Reply<Result<StreamId, Error>>)>,
    closing: Vec<Reply<Option<CloseReason>>>,
}

/// Everything that waits on the node.
#[derive(Default)]
struct Waiters {
    connecting: BTreeMap<SessionId, SessionReply>,
    incoming: VecDeque<(SessionId, PeerId)>,
    accepting: VecDeque<Reply<(SessionId, PeerId)>>,
    listeners: BTreeMap<u16, ListenerState>,
    streams: BTreeMap<StreamId, StreamState>,
    sessions: BTreeMap<SessionId, SessionWaiters>,
    closed: BTreeMap<SessionId, CloseReason>,
    closed_order: VecDeque<SessionId>,
    events: VecDeque<Event>,
    event_cap: usize,
    event_waiters: VecDeque<Reply<Event>>,
}

impl Waiters {
    /// The error for calls on a session known to have ended.
    fn dead(&self, session: SessionId) -> Option<Error> {
        self.closed.get(&session).map(|r| Error::SessionClosed(*r))
    }

    fn session_error(&self, session: SessionId) -> Error {
        self.closed
            .get(&session)
            .map_or(Error::UnknownSession, |r| Error::SessionClosed(*r))
    }

    fn push_event(&mut self, ev: Event) {
        while let Some(w) = self.event_waiters.pop_front() {
            if w.send(ev).is_ok() {
                return;
            }
        }
        if self.events.len() >= self.event_cap {
            self.events.pop_front();
        }
        self.events.push_back(ev);
    }
}

/// The node, its socket and everything that waits on it. Lives behind [`Shared`]'s mutex:
/// the loop thread takes it for one bounded cycle at a time (input, timers, output), and a
/// handle takes it to perform its call on its own thread (so a call that can complete at
/// once costs no thread hand-off).
pub(crate) struct Driver {
    pub(crate) node: Node,
    sockets: SocketSet,
    queue: TransmitQueue,
    batch: RecvBatch,
    /// Buffer size offered to `poll_transmit` per datagram.
    max_datagram: usize,
    recv_batches: usize,
    /// The socket's send buffer was full: wait for writable before flushing again.
    write_blocked: bool,
    scratch: Vec<u8>,
    w: Waiters,
    shutdown: bool,
    /// The loop thread is (about to be) asleep in `epoll` until `sleep_until` (`None`:
    /// until input or a wake-up). A handle call that moves the node's deadline earlier, or
    /// leaves work the call did not finish, must wake it.
    sleeping: bool,
    sleep_until: Option<Instant>,
}

thread_local! {
    /// This thread holds a [`Shared`] lock: calls from it (a handle dropped inside
    /// `with_node`, or on the loop thread) must go through the command channel.
    static HOLDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The driver state shared by the loop thread and every handle.
pub(crate) struct Shared {
    state: Mutex<Option<Driver>>,
    waker: Waker,
}

/// A locked [`Shared`]; `None` once the loop has shut down.
pub(crate) struct Guard<'a>(MutexGuard<'a, Option<Driver>>);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        HOLDING.with(|h| h.set(false));
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> Guard<'_> {
        // A panic inside a `with_node` closure poisons the lock; the driver's state is
        // still consistent between calls, so carry on.
        let g = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        HOLDING.with(|h| h.set(true));
        Guard(g)
    }

    /// Whether the calling thread already holds the lock (it must not take it again).
    pub(crate) fn holding() -> bool {
        HOLDING.with(std::cell::Cell::get)
    }

    pub(crate) fn wake(&self) -> Result<(), Error> {
        self.waker.wake().map_err(|_| Error::EndpointClosed)
    }

    /// Runs `f` with the driver on the calling thread, then sends what it produced (events
    /// that complete other callers, transmits) and wakes the loop thread only if its sleep
    /// no longer fits the node (an earlier deadline, unfinished output).
    pub(crate) fn run<R>(&self, f: impl FnOnce(&mut Driver, Instant) -> R) -> Result<R, Error> {
        self.run_corked(|d, now| (f(d, now), false))
    }

    /// Like [`run`](Self::run), but when `f` says so (a call that completed and is usually
    /// followed by another: an open, a write), what the call produced is not sent at once:
    /// the caller's next call sends it with its own output (one datagram for open + write +
    /// finish), and the loop thread is woken to send it in case no call follows soon.
    pub(crate) fn run_corked<R>(
        &self,
        f: impl FnOnce(&mut Driver, Instant) -> (R, bool),
    ) -> Result<R, Error> {
        let mut g = self.lock();
        let Some(d) = g.0.as_mut() else {
            return Err(Error::EndpointClosed);
        };
        let now = Instant::now();
        let (r, cork) = f(d, now);
        let wake = if cork {
            d.events(now);
            std::mem::take(&mut d.sleeping)
        } else {
            d.after_call(now)
        };
        drop(g);
        if wake {
            self.wake()?;
        }
        Ok(r)
    }
}

/// The event-loop thread: the poller, the command channel (shutdown, and calls made while
/// holding the lock) and the shared state.
pub(crate) struct Loop {
    shared: Arc<Shared>,
    poll: Poll,
    rx: Receiver<Cmd>,
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn map_session_error(w: &Waiters, session: SessionId, e: SessionError) -> Error {
    match e {
        SessionError::NotEstablished => Error::NotEstablished,
        _ => w.session_error(session),
    }
}

impl Loop {
    /// Binds the socket, builds the node and the poller. Returns the loop (to run on its
    /// thread), the state shared with the handles, and the socket's local address.
    pub(crate) fn new(
        addr: SocketAddr,
        identity: Identity,
        config: &EndpointConfig,
        rx: Receiver<Cmd>,
    ) -> Result<(Self, Arc<Shared>, SocketAddr), Error> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let node = Node::new(
            identity,
            config.node.clone(),
            seed,
            Instant::now(),
            unix_now(),
        )?;
        let mut sockets = SocketSet::new(1);
        let id = sockets.bind(addr, &config.udp)?;
        let poll = Poll::new()?;
        let socket = sockets.get(id).expect("just bound");
        use std::os::fd::AsRawFd;
        poll.registry().register(
            &mut SourceFd(&socket.as_raw_fd()),
            SOCKET,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let local = socket.local_addr();
        let waker = Waker::new(poll.registry(), WAKER)?;
        let max_datagram = usize::from(config.node.max_udp_payload)
            .max(usize::from(config.node.transport.max_mtu))
            .max(1500);
        let driver = Driver {
            node,
            sockets,
            queue: TransmitQueue::new(1 << 20, 256),
            batch: RecvBatch::default(),
            max_datagram,
            recv_batches: config.recv_batches_per_cycle.max(1),
            write_blocked: false,
            scratch: vec![0; MAX_READ],
            w: Waiters {
                event_cap: config.event_queue.max(1),
                ..Waiters::default()
            },
            shutdown: false,
            sleeping: false,
            sleep_until: None,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(Some(driver)),
            waker,
        });
        Ok((
            Self {
                shared: shared.clone(),
                poll,
                rx,
            },
            shared,
            local,
        ))
    }

    /// The loop. Returns on `Shutdown` or when every handle is gone; then the driver state
    /// is taken out of the shared slot (later calls get `EndpointClosed`), every session is
    /// closed, and dropping the state answers every blocked caller and closes the socket.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(16);
        let mut writable = false;
        loop {
            let timeout = {
                let mut g = self.shared.lock();
                let Some(d) = g.0.as_mut() else {
                    return;
                };
                d.sleeping = false;
                if writable {
                    d.write_blocked = false;
                }
                let mut busy = Self::commands(&self.rx, d);
                if d.shutdown {
                    break;
                }
                busy |= d.receive();
                let now = Instant::now();
                if d.node.poll_timeout().is_some_and(|t| t <= now) {
                    d.node.handle_timeout(now);
                }
                busy |= d.output(now);

                // Sleep until input, a wake-up or the next deadline.
                let now = Instant::now();
                let timeout = if busy {
                    Some(Duration::ZERO)
                } else {
                    d.node.poll_timeout().map(|t| {
                        let left = t.saturating_duration_since(now);
                        if d.write_blocked {
                            left.max(WRITE_BLOCKED_RECHECK)
                        } else {
                            left
                        }
                    })
                };
                if timeout != Some(Duration::ZERO) {
                    // Handles see this under the lock and wake us if they need us sooner.
                    d.sleeping = true;
                    d.sleep_until = timeout.map(|t| now + t);
                }
                timeout
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != ErrorKind::Interrupted
            {
                tracing::error!(%e, "poll failed; the tern-mio event loop stops");
                break;
            }
            writable = events
                .iter()
                .any(|ev| ev.token() == SOCKET && ev.is_writable());
        }
        let driver = self.shared.lock().0.take();
        if let Some(mut d) = driver {
            d.close_all(&mut self.poll);
        }
    }

    /// Handles queued commands (bounded). Returns whether more may be waiting.
    fn commands(rx: &Receiver<Cmd>, d: &mut Driver) -> bool {
        for _ in 0..COMMANDS_PER_CYCLE {
            let cmd = match rx.try_recv() {
                Ok(c) => c,
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => {
                    d.shutdown = true;
                    return false;
                }
            };
            d.command(cmd);
            if d.shutdown {
                return false;
            }
        }
        true
    }
}

impl Driver {
    /// After a handle's call: node events (completing other callers), then transmits.
    /// Returns whether the sleeping loop thread must be woken.
    fn after_call(&mut self, now: Instant) -> bool {
        let was_blocked = self.write_blocked;
        let busy = self.output(now);
        if !self.sleeping {
            // The loop is in a cycle, or about to take the lock for one: it will look.
            return false;
        }
        let earlier = match (self.node.poll_timeout(), self.sleep_until) {
            (Some(t), Some(until)) => t < until,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if busy || earlier || (self.write_blocked && !was_blocked) {
            self.sleeping = false;
            return true;
        }
        false
    }

    /// Closes every session and gives the CLOSE packets a moment to leave.
    fn close_all(&mut self, poll: &mut Poll) {
        let now = Instant::now();
        let ids: Vec<SessionId> = self.node.sessions().map(|s| s.id).collect();
        for id in ids {
            let _ = self.node.close(now, id, close_code::NORMAL);
        }
        self.events(now);
        let give_up = now + Duration::from_millis(100);
        loop {
            let now = Instant::now();
            self.transmit(now);
            if self.queue.is_empty() || now >= give_up {
                break;
            }
            let mut events = Events::with_capacity(4);
            let _ = poll.poll(&mut events, Some(give_up.saturating_duration_since(now)));
            self.write_blocked = false;
        }
    }

    // ---- commands ----

    pub(crate) fn command(&mut self, cmd: Cmd) {
        let now = Instant::now();
        let Some(cmd) = self.refuse_dead(cmd) else {
            return;
        };
        match cmd {
            Cmd::Connect { addr, peer, reply } => match self.node.connect(now, addr, peer) {
                Ok(id) => {
                    self.w.connecting.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Cmd::ConnectRelayed { peer, via, reply } => {
                match self.node.connect_relayed(now, peer, via) {
                    Ok(id) => {
                        self.w.connecting.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Cmd::UseRelay { id, reply } => {
                let r = self
                    .node
                    .use_relay(id)
                    .map_err(|e| map_session_error(&self.w, id, e));
                let _ = reply.send(r);
            }
            Cmd::Accept { reply } => match self.w.incoming.pop_front() {
                Some(s) => {
                    if let Err(back) = reply.send(s) {
                        self.w.incoming.push_front(back.0);
                    }
                }
                None => self.w.accepting.push_back(reply),
            },
            Cmd::Listen { port, reply } => {
                let r = self.node.listen(port).map_err(Error::from);
                if r.is_ok() {
                    self.w.listeners.insert(port, ListenerState::default());
                }
                let _ = reply.send(r);
            }
            Cmd::Unlisten { port } => {
                self.node.unlisten(port);
                if let Some(l) = self.w.listeners.remove(&port) {
                    for id in l.queue {
                        if let Some(mut s) = self.node.stream(id) {
                            let _ = s.stop(tern_core::REFUSED_PORT_CODE);
                            let _ = s.reset(tern_core::REFUSED_PORT_CODE);
                        }
                    }
                }
            }
            Cmd::TryAcceptStream { port, reply } => {
                let Some(l) = self.w.listeners.get_mut(&port) else {
                    let _ = reply.send(Err(Error::EndpointClosed));
                    return;
                };
                let id = l.queue.pop_front();
                if let Some(id) = id {
                    self.w.streams.insert(id, StreamState::new(port, false));
                }
                let _ = reply.send(Ok(id));
            }
            Cmd::AcceptStream { port, reply } => {
                let Some(l) = self.w.listeners.get_mut(&port) else {
                    let _ = reply.send(Err(Error::EndpointClosed));
                    return;
                };
                match l.queue.pop_front() {
                    Some(id) => {
                        self.w.streams.insert(id, StreamState::new(port, false));
                        let _ = reply.send(Ok(id));
                    }
                    None => l.waiters.push_back(reply),
                }
            }
            Cmd::OpenStream {
                session,
                port,
                reply,
            } => {
                if let Some(reply) = self.try_open(session, port, reply) {
                    self.w
                        .sessions
                        .entry(session)
                        .or_default()
                        .opening
                        .push_back((port, reply));
                }
            }
            Cmd::Read { stream, max, reply } => match self.try_read(stream, max) {
                Some(r) => {
                    let _ = reply.send(r);
                }
                None => {
                    if let Some(st) = self.w.streams.get_mut(&stream) {
                        st.read = Some((max, reply));
                    }
                }
            },
            Cmd::Write {
                stream,
                data,
                all,
                reply,
            } => {
                let mut pw = PendingWrite {
                    data,
                    base: 0,
                    done: 0,
                    all,
                    reply,
                };
                match self.try_write(stream, &mut pw) {
                    Some(r) => {
                        let _ = pw.reply.send(r);
                    }
                    None => {
                        if let Some(st) = self.w.streams.get_mut(&stream) {
                            st.write = Some(pw);
                        }
                    }
                }
            }
            Cmd::StreamOp { stream, op, reply } => {
                let _ = reply.send(self.stream_op(stream, op));
            }
            Cmd::Release { stream } => {
                let eof = self.w.streams.remove(&stream).is_none_or(|s| s.eof);
                if let Some(mut s) = self.node.stream(stream) {
                    let _ = s.finish();
                    if !eof {
                        let _ = s.stop(0);
                    }
                }
            }
            Cmd::SendDatagram {
                session,
                data,
                reply,
            } => {
                let r = self
                    .node
                    .send_datagram(session, &data)
                    .map_err(|e| match e {
                        tern_core::SendDatagramError::UnknownSession => {
                            self.w.session_error(session)
                        }
                        e => Error::Datagram(e),
                    });
                let _ = reply.send(r);
            }
            Cmd::RecvDatagram { session, reply } => {
                if let Some(n) = self.node.recv_datagram(session, &mut self.scratch) {
                    let _ = reply.send(Ok(self.scratch[..n].to_vec()));
                } else if self.node.session_info(session).is_some() {
                    self.w
                        .sessions
                        .entry(session)
                        .or_default()
                        .datagrams
                        .push_back(reply);
                } else {
                    let _ = reply.send(Err(self.w.session_error(session)));
                }
            }
            Cmd::MaxDatagram { session, reply } => {
                let r = self
                    .node
                    .max_datagram_size(session)
                    .ok_or_else(|| self.w.session_error(session));
                let _ = reply.send(r);
            }
            Cmd::Ping { session, reply } => match self.node.ping(now, session) {
                Ok(id) => {
                    self.w
                        .sessions
                        .entry(session)
                        .or_default()
                        .pings
                        .insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(map_session_error(&self.w, session, e)));
                }
            },
            Cmd::Info { session, reply } => {
                let r = self
                    .node
                    .session_info(session)
                    .ok_or_else(|| self.w.session_error(session));
                let _ = reply.send(r);
            }
            Cmd::Close {
                session,
                code,
                reply,
            } => {
                let r = self
                    .node
                    .close(now, session, code)
                    .map_err(|e| map_session_error(&self.w, session, e));
                let _ = reply.send(r);
            }
            Cmd::WaitClosed { session, reply } => {
                if let Some(r) = self.w.closed.get(&session) {
                    let _ = reply.send(Some(*r));
                } else if self.node.session_info(session).is_some() {
                    self.w
                        .sessions
                        .entry(session)
                        .or_default()
                        .closing
                        .push(reply);
                } else {
                    let _ = reply.send(None);
                }
            }
            Cmd::NextEvent { reply } => match self.w.events.pop_front() {
                Some(ev) => {
                    let _ = reply.send(ev);
                }
                None => self.w.event_waiters.push_back(reply),
            },
            Cmd::Sessions { reply } => {
                let _ = reply.send(self.node.sessions().collect());
            }
            Cmd::Stats { reply } => {
                let _ = reply.send(*self.node.stats());
            }
            Cmd::GsoState { reply } => {
                let state = self
                    .sockets
                    .primary()
                    .map(|(_, s)| s.gso_state())
                    .expect("the primary socket exists");
                let _ = reply.send(state);
            }
            Cmd::Shutdown => self.shutdown = true,
            Cmd::ConnectPeer { peer, reply } => match self.node.connect_peer(now, peer) {
                Ok(id) => {
                    self.w.connecting.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
        }
    }

    /// Answers calls on sessions that already ended with their close reason; passes the
    /// others on.
    fn refuse_dead(&self, cmd: Cmd) -> Option<Cmd> {
        macro_rules! dead {
            ($session:expr, $reply:expr) => {
                if let Some(e) = self.w.dead($session) {
                    let _ = $reply.send(Err(e));
                    return None;
                }
            };
        }
        match &cmd {
            Cmd::OpenStream { session, reply, .. } => dead!(*session, reply),
            Cmd::SendDatagram { session, reply, .. } => dead!(*session, reply),
            Cmd::RecvDatagram { session, reply } => dead!(*session, reply),
            Cmd::MaxDatagram { session, reply } => dead!(*session, reply),
            Cmd::Ping { session, reply } => dead!(*session, reply),
            Cmd::Info { session, reply } => dead!(*session, reply),
            Cmd::Close { session, reply, .. } => dead!(*session, reply),
            Cmd::UseRelay { id, reply } => dead!(*id, reply),
            _ => {}
        }
        Some(cmd)
    }

    /// Opens a stream, or gives the reply back when the peer's stream limit is reached.
    fn try_open(
        &mut self,
        session: SessionId,
        port: u16,
        reply: Reply<Result<StreamId, Error>>,
    ) -> Option<Reply<Result<StreamId, Error>>> {
        let r = match self.node.open_stream(session, port) {
            Ok(id) => {
                self.w.streams.insert(id, StreamState::new(port, true));
                Ok(id)
            }
            Err(OpenStreamError::Blocked) => return Some(reply),
            Err(OpenStreamError::NotEstablished) => Err(Error::NotEstablished),
            Err(_) => Err(self.w.session_error(session)),
        };
        let _ = reply.send(r);
        None
    }

    /// The error for a stream the core no longer knows.
    fn gone(w: &Waiters, id: StreamId) -> Error {
        match w.closed.get(&id.session()) {
            Some(r) => Error::SessionClosed(*r),
            None => Error::StreamClosed,
        }
    }

    /// A read into the loop's scratch buffer, or `None` when it must wait for
    /// `StreamReadable`.
    fn try_read(&mut self, id: StreamId, max: usize) -> Option<Result<(Vec<u8>, bool), Error>> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let n = max.min(scratch.len());
        let r = self
            .try_read_into(id, &mut scratch[..n])
            .map(|r| r.map(|(k, eof)| (scratch[..k].to_vec(), eof)));
        self.scratch = scratch;
        r
    }

    /// A read into `buf` (non-empty): bytes read and whether the end follows them, or
    /// `None` when it must wait for `StreamReadable`.
    fn try_read_into(
        &mut self,
        id: StreamId,
        buf: &mut [u8],
    ) -> Option<Result<(usize, bool), Error>> {
        let Some(st) = self.w.streams.get_mut(&id) else {
            return Some(Err(Error::StreamClosed));
        };
        if st.eof {
            return Some(Ok((0, true)));
        }
        if let Some(e) = st.fate.read_error() {
            return Some(Err(e));
        }
        let Some(mut s) = self.node.stream(id) else {
            return Some(Err(Self::gone(&self.w, id)));
        };
        let n = buf.len();
        match s.read(buf) {
            Ok(Some(mut k)) => {
                // Take what else is readable now, and notice an end that follows the data,
                // which saves the handle a call for the final 0.
                while k < n {
                    match s.read(&mut buf[k..n]) {
                        Ok(Some(more)) if more > 0 => k += more,
                        Ok(None) => {
                            st.eof = true;
                            break;
                        }
                        // A reset is remembered (`on_reset`) and reported by the next read.
                        Err(ReadError::Reset(c)) => {
                            st.fate.on_reset(c);
                            break;
                        }
                        _ => break,
                    }
                }
                Some(Ok((k, st.eof)))
            }
            Ok(None) => {
                st.eof = true;
                Some(Ok((0, true)))
            }
            Err(ReadError::Blocked) => None,
            Err(ReadError::Reset(c)) => Some(Err(st.fate.on_reset(c))),
            Err(ReadError::Closed) => Some(Err(Error::StreamClosed)),
            Err(_) => {
                drop(s);
                Some(Err(Self::gone(&self.w, id)))
            }
        }
    }

    /// A read on the caller's thread straight into its buffer (non-empty); when nothing is
    /// readable yet, the read is left with the driver and the caller waits on the channel
    /// returned (answered when `StreamReadable` comes).
    pub(crate) fn read_now(
        &mut self,
        id: StreamId,
        buf: &mut [u8],
    ) -> Waiting<(usize, bool), (Vec<u8>, bool)> {
        if let Some(r) = self.try_read_into(id, buf) {
            return Waiting::Done(r);
        }
        let (tx, rx) = mpsc::sync_channel(1);
        if let Some(st) = self.w.streams.get_mut(&id) {
            st.read = Some((buf.len().min(MAX_READ), tx));
        }
        Waiting::Wait(rx)
    }

    /// A write on the caller's thread straight from its buffer (non-empty); when the stream
    /// cannot take (all of) it yet, the rest is copied to the driver and the caller waits on
    /// the channel returned (answered when `StreamWritable` lets it finish).
    pub(crate) fn write_now(
        &mut self,
        id: StreamId,
        data: &[u8],
        all: bool,
    ) -> Waiting<usize, usize> {
        let mut done = 0;
        if let Some(r) = self.try_write_slice(id, data, &mut done, all) {
            return Waiting::Done(r.map(|()| done));
        }
        let (reply, rx) = mpsc::sync_channel(1);
        if let Some(st) = self.w.streams.get_mut(&id) {
            st.write = Some(PendingWrite {
                data: data[done..].to_vec(),
                base: done,
                done: 0,
                all,
                reply,
            });
        }
        Waiting::Wait(rx)
    }

    /// Moves bytes of a pending write into the stream; `None` while it must wait.
    fn try_write(&mut self, id: StreamId, pw: &mut PendingWrite) -> Option<Result<usize, Error>> {
        let r = self.try_write_slice(id, &pw.data, &mut pw.done, pw.all)?;
        Some(r.map(|()| pw.base + pw.done))
    }

    /// Moves bytes of `data[*done..]` into the stream (all of them if `all`, else at least
    /// one); `None` while it must wait.
    fn try_write_slice(
        &mut self,
        id: StreamId,
        data: &[u8],
        done: &mut usize,
        all: bool,
    ) -> Option<Result<(), Error>> {
        let Some(st) = self.w.streams.get_mut(&id) else {
            return Some(Err(Error::StreamClosed));
        };
        if let Some(e) = st.fate.write_error() {
            return Some(Err(e));
        }
        let Some(mut s) = self.node.stream(id) else {
            return Some(Err(Self::gone(&self.w, id)));
        };
        loop {
            match s.write(&data[*done..]) {
                Ok(n) if n > 0 => {
                    *done += n;
                    if *done == data.len() || !all {
                        return Some(Ok(()));
                    }
                }
                Ok(_) | Err(WriteError::Blocked) => return None,
                Err(WriteError::Stopped(c)) => return Some(Err(st.fate.on_write_stopped(c))),
                Err(WriteError::Closed) => return Some(Err(Error::StreamClosed)),
                Err(_) => {
                    drop(s);
                    return Some(Err(Self::gone(&self.w, id)));
                }
            }
        }
    }

    fn stream_op(&mut self, id: StreamId, op: StreamOp) -> Result<(), Error> {
        if let Some(st) = self.w.streams.get(&id)
            && let Some(r) = st.fate.closed()
        {
            return Err(Error::SessionClosed(r));
        }
        let Some(mut s) = self.node.stream(id) else {
            return Err(Self::gone(&self.w, id));
        };
        let r = match op {
            StreamOp::Finish => s.finish(),
            StreamOp::Reset(code) => s.reset(code),
            StreamOp::Stop(code) => s.stop(code),
            StreamOp::Priority(p) => s.set_priority(p),
        };
        drop(s);
        r.map_err(|e| match e {
            StreamError::Closed => match self.w.streams.get(&id).and_then(|st| st.fate.stopped()) {
                Some(c) => Error::Stopped(c),
                None => Error::StreamClosed,
            },
            _ => Self::gone(&self.w, id),
        })
    }

    fn retry_read(&mut self, id: StreamId) {
        let Some((max, reply)) = self.w.streams.get_mut(&id).and_then(|s| s.read.take()) else {
            return;
        };
        match self.try_read(id, max) {
            Some(r) => {
                let _ = reply.send(r);
            }
            None => {
                if let Some(st) = self.w.streams.get_mut(&id) {
                    st.read = Some((max, reply));
                }
            }
        }
    }

    fn retry_write(&mut self, id: StreamId) {
        let Some(mut pw) = self.w.streams.get_mut(&id).and_then(|s| s.write.take()) else {
            return;
        };
        match self.try_write(id, &mut pw) {
            Some(r) => {
                let _ = pw.reply.send(r);
            }
            None => {
                if let Some(st) = self.w.streams.get_mut(&id) {
                    st.write = Some(pw);
                }
            }
        }
    }

    // ---- input ----

    /// Receives up to the per-cycle budget, handing each batch to the node and sending
    /// what it answers before the next. Returns whether the budget ran out.
    fn receive(&mut self) -> bool {
        for _ in 0..self.recv_batches {
            let Some((_, socket)) = self.sockets.primary() else {
                return false;
            };
            match socket.recv_batch(&mut self.batch) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors (port unreachable) surface here on Linux; they are not
                    // fatal for an unconnected socket.
                    tracing::debug!(%e, "receive error");
                    continue;
                }
            }
            let now = Instant::now();
            for d in self.batch.datagrams() {
                self.node.handle_datagram(now, d.from, d.data);
            }
            self.output(now);
        }
        true
    }

    // ---- output ----

    /// Node events, then transmits. Returns whether the transmit budget ran out.
    fn output(&mut self, now: Instant) -> bool {
        self.events(now);
        let busy = self.transmit(now);
        // Sending can complete handshakes' bookkeeping; events are cheap to check.
        self.events(now);
        busy
    }

    /// Fills the transmit queue from the node and flushes it, up to the budget. Returns
    /// whether the node may have more right now.
    fn transmit(&mut self, now: Instant) -> bool {
        if self.write_blocked {
            return false;
        }
        for _ in 0..FILLS_PER_CYCLE {
            if !self.flush() {
                return false;
            }
            let mut produced = 0usize;
            while let Some(slot) = self.queue.slot(self.max_datagram) {
                let Some(t) = self.node.poll_transmit(now, slot) else {
                    break;
                };
                debug_assert!(t.segment_size.is_none(), "the core writes one datagram");
                self.queue.commit(t.dst, t.src, t.len);
                produced += 1;
            }
            if produced == 0 {
                return false;
            }
            if !self.flush() {
                return false;
            }
            if self.queue.slot(self.max_datagram).is_some() && produced > 0 {
                // The node stopped before the queue filled: it has nothing more now.
                return false;
            }
        }
        true
    }

    /// Flushes the queue; false when the socket's send buffer is full.
    fn flush(&mut self) -> bool {
        if self.queue.is_empty() {
            return true;
        }
        let sockets = &self.sockets;
        match self.queue.flush(|src| sockets.route(src)) {
            Ok(()) => true,
            Err(_) => {
                self.write_blocked = true;
                false
            }
        }
    }

    /// Completes waiters from the node's events.
    fn events(&mut self, _now: Instant) {
        while let Some(ev) = self.node.poll_event() {
            match ev {
                Event::SessionEstablished {
                    session,
                    peer,
                    initiator,
                } => {
                    self.w.sessions.entry(session).or_default();
                    if let Some(r) = self.w.connecting.remove(&session) {
                        let _ = r.send(Ok((session, peer)));
                    } else if !initiator {
                        self.offer_session(session, peer);
                    }
                    self.w.push_event(ev);
                }
                Event::SessionClosed {
                    session, reason, ..
                } => {
                    self.on_closed(session, reason);
                    self.w.push_event(ev);
                }
                Event::Pong { session, id, rtt } => {
                    if let Some(r) = self
                        .w
                        .sessions
                        .get_mut(&session)
                        .and_then(|s| s.pings.remove(&id))
                    {
                        let _ = r.send(Ok(rtt));
                    }
                    self.w.push_event(ev);
                }
                Event::StreamOpened { stream, port } => self.offer_stream(stream, port),
                Event::StreamReadable { stream } => self.retry_read(stream),
                Event::StreamWritable { stream } => self.retry_write(stream),
                Event::StreamFinished { .. } => {}
                Event::StreamReset { stream, code } => {
                    if let Some(st) = self.w.streams.get_mut(&stream) {
                        st.fate.on_reset(code);
                    }
                    self.retry_read(stream);
                }
                Event::StreamStopped { stream, code } => {
                    if let Some(st) = self.w.streams.get_mut(&stream) {
                        st.fate.on_stopped(code);
                    }
                    self.retry_write(stream);
                }
                Event::StreamRefused { stream, port } => {
                    if let Some(st) = self.w.streams.get_mut(&stream) {
                        st.fate.on_refused(port);
                    }
                    self.retry_read(stream);
                    self.retry_write(stream);
                }
                Event::StreamsAvailable { session } => self.retry_open(session),
                Event::DatagramReceived { session } => self.serve_datagrams(session),
                other => self.w.push_event(other),
            }
        }
        if self.node.config().relay_server {
            while let Some(req) = self.node.poll_relay(&mut self.scratch) {
                let _ = self
                    .node
                    .send_relay(req.from, req.to, &self.scratch[..req.len]);
            }
        }
    }

    fn offer_session(&mut self, session: SessionId, peer: PeerId) {
        while let Some(a) = self.w.accepting.pop_front() {
            if a.send((session, peer)).is_ok() {
                return;
            }
        }
        self.w.incoming.push_back((session, peer));
    }

    fn offer_stream(&mut self, stream: StreamId, port: u16) {
        let Some(l) = self.w.listeners.get_mut(&port) else {
            if let Some(mut s) = self.node.stream(stream) {
                let _ = s.stop(tern_core::REFUSED_PORT_CODE);
                let _ = s.reset(tern_core::REFUSED_PORT_CODE);
            }
            return;
        };
        while let Some(waiter) = l.waiters.pop_front() {
            self.w.streams.insert(stream, StreamState::new(port, false));
            if waiter.send(Ok(stream)).is_ok() {
                return;
            }
            self.w.streams.remove(&stream);
        }
        l.queue.push_back(stream);
    }

    fn retry_open(&mut self, session: SessionId) {
        while let Some((port, reply)) = self
            .w
            .sessions
            .get_mut(&session)
            .and_then(|s| s.opening.pop_front())
        {
            if let Some(reply) = self.try_open(session, port, reply) {
                if let Some(s) = self.w.sessions.get_mut(&session) {
                    s.opening.push_front((port, reply));
                }
                return;
            }
        }
    }

    fn serve_datagrams(&mut self, session: SessionId) {
        let Some(s) = self.w.sessions.get_mut(&session) else {
            return;
        };
        while !s.datagrams.is_empty() {
            let Some(n) = self.node.recv_datagram(session, &mut self.scratch) else {
                return;
            };
            if let Some(r) = s.datagrams.pop_front() {
                let _ = r.send(Ok(self.scratch[..n].to_vec()));
            }
        }
    }

    fn on_closed(&mut self, session: SessionId, reason: CloseReason) {
        if self.w.closed_order.len() >= CLOSED_MEMORY
            && let Some(old) = self.w.closed_order.pop_front()
        {
            self.w.closed.remove(&old);
        }
        self.w.closed.insert(session, reason);
        self.w.closed_order.push_back(session);
        if let Some(r) = self.w.connecting.remove(&session) {
            let _ = r.send(Err(Error::SessionClosed(reason)));
        }
        self.w.incoming.retain(|(s, _)| *s != session);
        if let Some(s) = self.w.sessions.remove(&session) {
            for r in s.datagrams {
                let _ = r.send(Err(Error::SessionClosed(reason)));
            }
            for (_, r) in s.pings {
                let _ = r.send(Err(Error::SessionClosed(reason)));
            }
            for (_, r) in s.opening {
                let _ = r.send(Err(Error::SessionClosed(reason)));
            }
            for r in s.closing {
                let _ = r.send(Some(reason));
            }
        }
        for l in self.w.listeners.values_mut() {
            l.queue.retain(|s| s.session() != session);
        }
        let range = self
            .w
            .streams
            .iter_mut()
            .filter(|(id, _)| id.session() == session);
        for (_, st) in range {
            st.fate.on_closed(reason);
            if let Some((_, r)) = st.read.take() {
                let _ = r.send(if st.eof {
                    Ok((Vec::new(), true))
                } else {
                    Err(Error::SessionClosed(reason))
                });
            }
            if let Some(pw) = st.write.take() {
                let _ = pw.reply.send(Err(Error::SessionClosed(reason)));
            }
        }
    }
}
