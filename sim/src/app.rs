//! The application layer of a simulated host: an [`App`] gets the host's `Node`, the
//! simulated time and a directory of the other hosts, and reacts to start-up, node events and
//! its own timers. Scenario tests use the built-in [`Dialer`] or a closure-based [`Script`];
//! later layers (streams, NAT traversal) plug in the same way.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tern_core::{Event, Node, PeerId, SessionId};

use crate::clock;
use crate::ids::HostId;

/// What one host knows about another: where it listens (its local socket, not a NAT's public
/// one) and its key, if it runs a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The host.
    pub host: HostId,
    /// Its local socket.
    pub addr: SocketAddr,
    /// Its node's id.
    pub peer_id: Option<PeerId>,
}

/// Names and addresses of every host, for applications.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    pub(crate) names: std::collections::BTreeMap<String, HostId>,
    pub(crate) info: Vec<PeerInfo>,
}

impl Directory {
    /// Looks a host up by name.
    pub fn lookup(&self, name: &str) -> Option<PeerInfo> {
        self.names.get(name).map(|h| self.info[h.0 as usize])
    }

    /// A host's entry.
    pub fn get(&self, host: HostId) -> Option<PeerInfo> {
        self.info.get(host.0 as usize).copied()
    }
}

/// What an application sees while it runs.
pub struct AppCx<'a> {
    /// The host's node: call any command on it; the simulator drains its output afterwards.
    pub node: &'a mut Node,
    pub(crate) now: Duration,
    pub(crate) host: HostId,
    pub(crate) dir: &'a Directory,
    pub(crate) timers: &'a mut Vec<(Duration, u64)>,
}

impl fmt::Debug for AppCx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCx")
            .field("host", &self.host)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl AppCx<'_> {
    /// The `Instant` to pass to node commands.
    pub fn now(&self) -> Instant {
        clock::instant(self.now)
    }

    /// Simulated time since the start of the run.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// This host.
    pub fn host(&self) -> HostId {
        self.host
    }

    /// Another host by name.
    pub fn lookup(&self, name: &str) -> Option<PeerInfo> {
        self.dir.lookup(name)
    }

    /// Calls [`App::on_timer`] with `tag` after `after`.
    pub fn set_timer(&mut self, after: Duration, tag: u64) {
        self.timers.push((self.now + after, tag));
    }
}

/// A host's application. Every method has a default that does nothing.
pub trait App {
    /// Called once at simulated time zero.
    fn start(&mut self, cx: &mut AppCx<'_>) {
        let _ = cx;
    }

    /// Called for every node event, in order.
    fn on_event(&mut self, cx: &mut AppCx<'_>, event: &Event) {
        let _ = (cx, event);
    }

    /// Called when a timer set with [`AppCx::set_timer`] fires.
    fn on_timer(&mut self, cx: &mut AppCx<'_>, tag: u64) {
        let _ = (cx, tag);
    }
}

/// An application that only answers (the node still accepts sessions and pings).
#[derive(Clone, Copy, Debug, Default)]
pub struct Idle;

impl App for Idle {}

/// Dials a host by name at start (Noise IK with its key), then pings it: once when the
/// session is up, and every `ping_every` after that, until `max_pings` were sent.
#[derive(Clone, Debug)]
pub struct Dialer {
    target: String,
    ping_every: Option<Duration>,
    max_pings: u64,
    session: Option<SessionId>,
    sent: u64,
}

impl Dialer {
    /// Dials `target` and pings it once.
    pub fn new(target: &str) -> Self {
        Self {
            target: target.to_owned(),
            ping_every: None,
            max_pings: 1,
            session: None,
            sent: 0,
        }
    }

    /// Pings every `every` after the first, `max` pings in all.
    pub fn pinging(mut self, every: Duration, max: u64) -> Self {
        self.ping_every = Some(every);
        self.max_pings = max;
        self
    }

    /// Sends no pings at all (only keepalives flow).
    pub fn silent(mut self) -> Self {
        self.max_pings = 0;
        self
    }

    fn ping(&mut self, cx: &mut AppCx<'_>) {
        let Some(s) = self.session else { return };
        if self.sent >= self.max_pings {
            return;
        }
        let now = cx.now();
        if cx.node.ping(now, s).is_ok() {
            self.sent += 1;
            if let Some(every) = self.ping_every
                && self.sent < self.max_pings
            {
                cx.set_timer(every, 0);
            }
        }
    }
}

impl App for Dialer {
    fn start(&mut self, cx: &mut AppCx<'_>) {
        let target = cx
            .lookup(&self.target)
            .unwrap_or_else(|| panic!("Dialer: no host named {:?}", self.target));
        let now = cx.now();
        cx.node
            .connect(now, target.addr, target.peer_id)
            .expect("Dialer: connect failed");
    }

    fn on_event(&mut self, cx: &mut AppCx<'_>, event: &Event) {
        if let Event::SessionEstablished {
            session,
            initiator: true,
            ..
        } = *event
        {
            self.session = Some(session);
            self.ping(cx);
        }
    }

    fn on_timer(&mut self, cx: &mut AppCx<'_>, _tag: u64) {
        self.ping(cx);
    }
}

type Action = Box<dyn FnMut(&mut AppCx<'_>)>;
type EventHook = Box<dyn FnMut(&mut AppCx<'_>, &Event)>;

/// An application written as closures: actions at fixed times plus an optional event hook.
#[derive(Default)]
pub struct Script {
    actions: Vec<(Duration, Action)>,
    on_event: Option<EventHook>,
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script")
            .field("actions", &self.actions.len())
            .field("on_event", &self.on_event.is_some())
            .finish()
    }
}

impl Script {
    /// An empty script.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` at simulated time `at`.
    pub fn at(mut self, at: Duration, f: impl FnMut(&mut AppCx<'_>) + 'static) -> Self {
        self.actions.push((at, Box::new(f)));
        self
    }

    /// Runs `f` on every node event.
    pub fn on_event(mut self, f: impl FnMut(&mut AppCx<'_>, &Event) + 'static) -> Self {
        self.on_event = Some(Box::new(f));
        self
    }
}

impl App for Script {
    fn start(&mut self, cx: &mut AppCx<'_>) {
        for (i, (at, _)) in self.actions.iter().enumerate() {
            let after = at.saturating_sub(cx.elapsed());
            cx.set_timer(after, i as u64);
        }
    }

    fn on_event(&mut self, cx: &mut AppCx<'_>, event: &Event) {
        if let Some(f) = self.on_event.as_mut() {
            f(cx, event);
        }
    }

    fn on_timer(&mut self, cx: &mut AppCx<'_>, tag: u64) {
        if let Some((_, f)) = self.actions.get_mut(tag as usize) {
            f(cx);
        }
    }
}

/// What a [`Pump`] has done so far (shared with the test through `Rc<RefCell<_>>`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PumpState {
    /// Sender: the session the stream runs on.
    pub session: Option<SessionId>,
    /// Sender: bytes written (accepted by the stream).
    pub written: u64,
    /// Sender: everything written and the FIN acknowledged by the peer.
    pub finished: bool,
    /// Receiver: bytes received in order.
    pub received: u64,
    /// Receiver: the first byte that differed from the pattern, if any.
    pub corrupt_at: Option<u64>,
    /// Receiver: the FIN arrived after every byte.
    pub fin: bool,
    /// Receiver: when the first byte arrived.
    pub first_byte_at: Option<Duration>,
    /// Receiver: simulated time of each 64 KiB boundary crossed (progress over time).
    pub progress: Vec<(Duration, u64)>,
}

/// The byte at stream offset `i` of a [`Pump`] transfer.
pub fn pump_byte(i: u64) -> u8 {
    (i % 251) as u8 ^ (i >> 16) as u8
}

/// A stream transfer: the sender opens a stream to `port` as soon as a session it dialed is
/// established and writes `total` bytes of a known pattern (as fast as flow and congestion
/// control allow), then FIN; the receiver listens on `port` and checks every byte in order.
#[derive(Debug)]
pub struct Pump {
    port: u16,
    total: Option<u64>,
    stream: Option<tern_core::StreamId>,
    state: std::rc::Rc<std::cell::RefCell<PumpState>>,
}

impl Pump {
    /// A sender of `total` bytes to `port`, and its shared state.
    pub fn sender(port: u16, total: u64) -> (Self, std::rc::Rc<std::cell::RefCell<PumpState>>) {
        let state = std::rc::Rc::default();
        (
            Self {
                port,
                total: Some(total),
                stream: None,
                state: std::rc::Rc::clone(&state),
            },
            state,
        )
    }

    /// A receiver listening on `port`, and its shared state.
    pub fn receiver(port: u16) -> (Self, std::rc::Rc<std::cell::RefCell<PumpState>>) {
        let state = std::rc::Rc::default();
        (
            Self {
                port,
                total: None,
                stream: None,
                state: std::rc::Rc::clone(&state),
            },
            state,
        )
    }

    fn write_more(&mut self, cx: &mut AppCx<'_>) {
        let (Some(total), Some(id)) = (self.total, self.stream) else {
            return;
        };
        let mut st = self.state.borrow_mut();
        let mut chunk = [0u8; 16 * 1024];
        while st.written < total {
            let n = (total - st.written).min(chunk.len() as u64) as usize;
            for (k, b) in chunk[..n].iter_mut().enumerate() {
                *b = pump_byte(st.written + k as u64);
            }
            let Some(mut s) = cx.node.stream(id) else {
                return;
            };
            match s.write(&chunk[..n]) {
                Ok(k) if k > 0 => st.written += k as u64,
                _ => return,
            }
        }
        if let Some(mut s) = cx.node.stream(id) {
            let _ = s.finish();
        }
    }

    fn read_all(&mut self, cx: &mut AppCx<'_>) {
        let Some(id) = self.stream else { return };
        let now = cx.elapsed();
        let mut st = self.state.borrow_mut();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let Some(mut s) = cx.node.stream(id) else {
                return;
            };
            match s.read(&mut buf) {
                Ok(Some(n)) => {
                    if st.first_byte_at.is_none() && n > 0 {
                        st.first_byte_at = Some(now);
                    }
                    for (k, b) in buf[..n].iter().enumerate() {
                        let at = st.received + k as u64;
                        if st.corrupt_at.is_none() && *b != pump_byte(at) {
                            st.corrupt_at = Some(at);
                        }
                    }
                    let before = st.received >> 16;
                    st.received += n as u64;
                    if st.received >> 16 != before {
                        let (t, r) = (now, st.received);
                        st.progress.push((t, r));
                    }
                }
                Ok(None) => {
                    st.fin = true;
                    return;
                }
                Err(_) => return,
            }
        }
    }
}

impl App for Pump {
    fn start(&mut self, cx: &mut AppCx<'_>) {
        if self.total.is_none() {
            cx.node.listen(self.port).expect("Pump: listen");
        }
    }

    fn on_event(&mut self, cx: &mut AppCx<'_>, event: &Event) {
        match *event {
            Event::SessionEstablished {
                session,
                initiator: true,
                ..
            } if self.total.is_some() && self.stream.is_none() => {
                if let Ok(id) = cx.node.open_stream(session, self.port) {
                    self.stream = Some(id);
                    self.state.borrow_mut().session = Some(session);
                    self.write_more(cx);
                }
            }
            Event::StreamWritable { stream } if Some(stream) == self.stream => self.write_more(cx),
            Event::StreamFinished { stream } if Some(stream) == self.stream => {
                self.state.borrow_mut().finished = true;
            }
            Event::StreamOpened { stream, port }
                if port == self.port && self.total.is_none() && self.stream.is_none() =>
            {
                self.stream = Some(stream);
                self.read_all(cx);
            }
            Event::StreamReadable { stream } if Some(stream) == self.stream => self.read_all(cx),
            _ => {}
        }
    }
}
