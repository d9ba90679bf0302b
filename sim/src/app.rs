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
