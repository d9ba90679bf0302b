//! The state shared by the driver future and the handles: the node and everything waiting
//! on it, keyed by session and by stream. Handles lock it, act on the node directly and
//! park their waker; the driver feeds the node and wakes the waiters its events concern.

use std::collections::{BTreeMap, VecDeque};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tern_core::stream::{ReadError, StreamError, WriteError};
use tern_core::{CloseReason, Event, Node, PeerId, REFUSED_PORT_CODE, SessionId, StreamId};
use tern_udp::StreamFate;

use crate::Error;

/// Closed sessions whose reason is remembered for late callers.
const CLOSED_MEMORY: usize = 1024;

/// Adds `cx`'s waker to a list unless an equivalent one is already there.
pub(crate) fn park(list: &mut Vec<Waker>, cx: &Context<'_>) {
    if !list.iter().any(|w| w.will_wake(cx.waker())) {
        list.push(cx.waker().clone());
    }
}

fn park_one(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// What the endpoint knows about a stream a handle holds.
#[derive(Default)]
pub(crate) struct StreamState {
    read: Option<Waker>,
    write: Option<Waker>,
    /// The end was read: later reads return 0 even after the core freed the stream.
    pub(crate) eof: bool,
    /// Reset, stopped, refused or closed: the error every later call gets.
    fate: StreamFate,
}

impl StreamState {
    pub(crate) fn new(port: u16, local: bool) -> Self {
        Self {
            fate: StreamFate::new(port, local),
            ..Self::default()
        }
    }
}

#[derive(Default)]
pub(crate) struct ListenerState {
    pub(crate) queue: VecDeque<StreamId>,
    pub(crate) wakers: Vec<Waker>,
}

/// A connect in progress.
#[derive(Default)]
pub(crate) struct ConnectSlot {
    pub(crate) result: Option<Result<PeerId, Error>>,
    pub(crate) waker: Option<Waker>,
}

#[derive(Default)]
pub(crate) struct SessionWaiters {
    pub(crate) datagrams: Vec<Waker>,
    pub(crate) open: Vec<Waker>,
    pub(crate) closing: Vec<Waker>,
    /// Outstanding pings: the answer once it came, and who waits.
    pub(crate) pings: BTreeMap<u64, (Option<Duration>, Option<Waker>)>,
}

/// Node + waiters. Lives in a mutex shared by the driver and every handle.
pub(crate) struct State {
    pub(crate) node: Node,
    /// The driver task, and the deadline its timer is armed for (`None` while it runs or
    /// after it asked to be woken at once).
    pub(crate) driver: Option<Waker>,
    pub(crate) armed: Option<Instant>,
    /// Shutdown requested / the driver finished.
    pub(crate) stopping: bool,
    pub(crate) done: bool,
    pub(crate) done_wakers: Vec<Waker>,
    pub(crate) connecting: BTreeMap<SessionId, ConnectSlot>,
    pub(crate) incoming: VecDeque<(SessionId, PeerId)>,
    pub(crate) accepting: Vec<Waker>,
    pub(crate) listeners: BTreeMap<u16, ListenerState>,
    pub(crate) streams: BTreeMap<StreamId, StreamState>,
    pub(crate) sessions: BTreeMap<SessionId, SessionWaiters>,
    closed: BTreeMap<SessionId, CloseReason>,
    closed_order: VecDeque<SessionId>,
    pub(crate) events: VecDeque<Event>,
    event_cap: usize,
    pub(crate) event_wakers: Vec<Waker>,
    /// Wakers to call once the lock is released.
    pub(crate) to_wake: Vec<Waker>,
    pub(crate) scratch: Vec<u8>,
}

impl State {
    pub(crate) fn new(node: Node, event_cap: usize) -> Self {
        Self {
            node,
            driver: None,
            armed: None,
            stopping: false,
            done: false,
            done_wakers: Vec::new(),
            connecting: BTreeMap::new(),
            incoming: VecDeque::new(),
            accepting: Vec::new(),
            listeners: BTreeMap::new(),
            streams: BTreeMap::new(),
            sessions: BTreeMap::new(),
            closed: BTreeMap::new(),
            closed_order: VecDeque::new(),
            events: VecDeque::new(),
            event_cap: event_cap.max(1),
            event_wakers: Vec::new(),
            to_wake: Vec::new(),
            scratch: vec![0; 64 << 10],
        }
    }

    /// `Err(EndpointClosed)` once shutdown was requested.
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.stopping || self.done {
            Err(Error::EndpointClosed)
        } else {
            Ok(())
        }
    }

    /// After a handle changed the node: wake the driver if the node now wants to run
    /// earlier than the driver planned (output to send, events to dispatch).
    pub(crate) fn after_app(&mut self) {
        let want = self.node.poll_timeout();
        let needs = match (want, self.armed) {
            (Some(w), Some(a)) => w < a,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if needs && let Some(d) = &self.driver {
            self.armed = None;
            self.to_wake.push(d.clone());
        }
    }

    /// The error for calls on a session known to have ended.
    pub(crate) fn dead(&self, session: SessionId) -> Option<Error> {
        self.closed.get(&session).map(|r| Error::SessionClosed(*r))
    }

    pub(crate) fn session_error(&self, session: SessionId) -> Error {
        self.dead(session).unwrap_or(Error::UnknownSession)
    }

    pub(crate) fn closed_reason(&self, session: SessionId) -> Option<CloseReason> {
        self.closed.get(&session).copied()
    }

    fn gone(&self, id: StreamId) -> Error {
        self.dead(id.session()).unwrap_or(Error::StreamClosed)
    }

    // ---- streams ----

    /// Reads into `buf`, or parks `cx` until the stream is readable.
    pub(crate) fn poll_read(
        &mut self,
        cx: &Context<'_>,
        id: StreamId,
        buf: &mut [u8],
    ) -> Poll<Result<usize, Error>> {
        self.check()?;
        let State { node, streams, .. } = self;
        let Some(st) = streams.get_mut(&id) else {
            return Poll::Ready(Err(Error::StreamClosed));
        };
        if st.eof || buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if let Some(e) = st.fate.read_error() {
            return Poll::Ready(Err(e));
        }
        let Some(mut s) = node.stream(id) else {
            return Poll::Ready(Err(self.gone(id)));
        };
        let r = match s.read(buf) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => {
                st.eof = true;
                Ok(0)
            }
            Err(ReadError::Blocked) => {
                park_one(&mut st.read, cx);
                return Poll::Pending;
            }
            Err(ReadError::Reset(c)) => Err(st.fate.on_reset(c)),
            Err(ReadError::Closed) => Err(Error::StreamClosed),
            Err(_) => {
                drop(s);
                Err(self.gone(id))
            }
        };
        Poll::Ready(r)
    }

    /// Writes as much of `data` as the stream takes, or parks `cx` until writable.
    pub(crate) fn poll_write(
        &mut self,
        cx: &Context<'_>,
        id: StreamId,
        data: &[u8],
    ) -> Poll<Result<usize, Error>> {
        self.check()?;
        let State { node, streams, .. } = self;
        let Some(st) = streams.get_mut(&id) else {
            return Poll::Ready(Err(Error::StreamClosed));
        };
        if let Some(e) = st.fate.write_error() {
            return Poll::Ready(Err(e));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let Some(mut s) = node.stream(id) else {
            return Poll::Ready(Err(self.gone(id)));
        };
        let r = match s.write(data) {
            Ok(n) if n > 0 => Ok(n),
            Ok(_) | Err(WriteError::Blocked) => {
                park_one(&mut st.write, cx);
                return Poll::Pending;
            }
            Err(WriteError::Stopped(c)) => Err(st.fate.on_write_stopped(c)),
            Err(WriteError::Closed) => Err(Error::StreamClosed),
            Err(_) => {
                drop(s);
                Err(self.gone(id))
            }
        };
        Poll::Ready(r)
    }

    /// finish / reset / stop / priority.
    pub(crate) fn stream_op(
        &mut self,
        id: StreamId,
        op: impl FnOnce(&mut tern_core::Stream<'_>) -> Result<(), StreamError>,
    ) -> Result<(), Error> {
        self.check()?;
        if let Some(r) = self.streams.get(&id).and_then(|s| s.fate.closed()) {
            return Err(Error::SessionClosed(r));
        }
        let Some(mut s) = self.node.stream(id) else {
            return Err(self.gone(id));
        };
        let r = op(&mut s);
        drop(s);
        r.map_err(|e| match e {
            StreamError::Closed => match self.streams.get(&id).and_then(|st| st.fate.stopped()) {
                Some(c) => Error::Stopped(c),
                None => Error::StreamClosed,
            },
            _ => self.gone(id),
        })
    }

    /// A handle dropped its stream: finish what was not finished, stop what was not read.
    pub(crate) fn release(&mut self, id: StreamId) {
        let eof = self.streams.remove(&id).is_none_or(|s| s.eof);
        if let Some(mut s) = self.node.stream(id) {
            let _ = s.finish();
            if !eof {
                let _ = s.stop(0);
            }
        }
    }

    /// Takes the next queued incoming stream of a listener.
    pub(crate) fn accept_stream(&mut self, port: u16) -> Option<StreamId> {
        let id = self.listeners.get_mut(&port)?.queue.pop_front()?;
        self.streams.insert(id, StreamState::new(port, false));
        Some(id)
    }

    pub(crate) fn unlisten(&mut self, port: u16) {
        self.node.unlisten(port);
        if let Some(l) = self.listeners.remove(&port) {
            for id in l.queue {
                if let Some(mut s) = self.node.stream(id) {
                    let _ = s.stop(REFUSED_PORT_CODE);
                    let _ = s.reset(REFUSED_PORT_CODE);
                }
            }
            self.to_wake.extend(l.wakers);
        }
    }

    // ---- events (driver side) ----

    fn push_event(&mut self, ev: Event) {
        if self.events.len() >= self.event_cap {
            self.events.pop_front();
        }
        self.events.push_back(ev);
        self.to_wake.append(&mut self.event_wakers);
    }

    fn wake_stream(&mut self, id: StreamId, read: bool, write: bool) {
        if let Some(st) = self.streams.get_mut(&id) {
            if read && let Some(w) = st.read.take() {
                self.to_wake.push(w);
            }
            if write && let Some(w) = st.write.take() {
                self.to_wake.push(w);
            }
        }
    }

    /// Dispatches the node's events to the waiters they concern.
    pub(crate) fn dispatch(&mut self) {
        while let Some(ev) = self.node.poll_event() {
            match ev {
                Event::SessionEstablished {
                    session,
                    peer,
                    initiator,
                } => {
                    self.sessions.entry(session).or_default();
                    if let Some(slot) = self.connecting.get_mut(&session) {
                        slot.result = Some(Ok(peer));
                        if let Some(w) = slot.waker.take() {
                            self.to_wake.push(w);
                        }
                    } else if !initiator {
                        self.incoming.push_back((session, peer));
                        self.to_wake.append(&mut self.accepting);
                    }
                    self.push_event(ev);
                }
                Event::SessionClosed {
                    session, reason, ..
                } => {
                    self.on_closed(session, reason);
                    self.push_event(ev);
                }
                Event::Pong { session, id, rtt } => {
                    if let Some((answer, waker)) = self
                        .sessions
                        .get_mut(&session)
                        .and_then(|s| s.pings.get_mut(&id))
                    {
                        *answer = Some(rtt);
                        if let Some(w) = waker.take() {
                            self.to_wake.push(w);
                        }
                    }
                    self.push_event(ev);
                }
                Event::StreamOpened { stream, port } => match self.listeners.get_mut(&port) {
                    Some(l) => {
                        l.queue.push_back(stream);
                        self.to_wake.append(&mut l.wakers);
                    }
                    None => {
                        if let Some(mut s) = self.node.stream(stream) {
                            let _ = s.stop(REFUSED_PORT_CODE);
                            let _ = s.reset(REFUSED_PORT_CODE);
                        }
                    }
                },
                Event::StreamReadable { stream } => self.wake_stream(stream, true, false),
                Event::StreamWritable { stream } => self.wake_stream(stream, false, true),
                Event::StreamFinished { .. } => {}
                Event::StreamReset { stream, code } => {
                    if let Some(st) = self.streams.get_mut(&stream) {
                        st.fate.on_reset(code);
                    }
                    self.wake_stream(stream, true, false);
                }
                Event::StreamStopped { stream, code } => {
                    if let Some(st) = self.streams.get_mut(&stream) {
                        st.fate.on_stopped(code);
                    }
                    self.wake_stream(stream, false, true);
                }
                Event::StreamRefused { stream, port } => {
                    if let Some(st) = self.streams.get_mut(&stream) {
                        st.fate.on_refused(port);
                    }
                    self.wake_stream(stream, true, true);
                }
                Event::StreamsAvailable { session } => {
                    if let Some(s) = self.sessions.get_mut(&session) {
                        self.to_wake.append(&mut s.open);
                    }
                }
                Event::DatagramReceived { session } => {
                    if let Some(s) = self.sessions.get_mut(&session) {
                        self.to_wake.append(&mut s.datagrams);
                    }
                }
                other => self.push_event(other),
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

    fn on_closed(&mut self, session: SessionId, reason: CloseReason) {
        if self.closed_order.len() >= CLOSED_MEMORY
            && let Some(old) = self.closed_order.pop_front()
        {
            self.closed.remove(&old);
        }
        self.closed.insert(session, reason);
        self.closed_order.push_back(session);
        if let Some(slot) = self.connecting.get_mut(&session) {
            slot.result = Some(Err(Error::SessionClosed(reason)));
            if let Some(w) = slot.waker.take() {
                self.to_wake.push(w);
            }
        }
        self.incoming.retain(|(s, _)| *s != session);
        if let Some(s) = self.sessions.remove(&session) {
            self.to_wake.extend(s.datagrams);
            self.to_wake.extend(s.open);
            self.to_wake.extend(s.closing);
            self.to_wake
                .extend(s.pings.into_values().filter_map(|(_, w)| w));
        }
        for l in self.listeners.values_mut() {
            l.queue.retain(|s| s.session() != session);
        }
        for (_, st) in self
            .streams
            .iter_mut()
            .filter(|(id, _)| id.session() == session)
        {
            st.fate.on_closed(reason);
            self.to_wake.extend(st.read.take());
            self.to_wake.extend(st.write.take());
        }
    }

    /// Everything parked, for shutdown.
    pub(crate) fn wake_all(&mut self) {
        let mut all = std::mem::take(&mut self.accepting);
        all.append(&mut self.event_wakers);
        all.append(&mut self.done_wakers);
        for c in self.connecting.values_mut() {
            all.extend(c.waker.take());
        }
        for l in self.listeners.values_mut() {
            all.append(&mut l.wakers);
        }
        for st in self.streams.values_mut() {
            all.extend(st.read.take());
            all.extend(st.write.take());
        }
        for s in self.sessions.values_mut() {
            all.append(&mut s.datagrams);
            all.append(&mut s.open);
            all.append(&mut s.closing);
            for (_, w) in s.pings.values_mut() {
                all.extend(w.take());
            }
        }
        self.to_wake.append(&mut all);
    }
}
