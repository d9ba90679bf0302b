//! Scenarios with a rendezvous server: two nodes register, one dials the other (relay
//! first), a [`Pump`] stream runs between them, and helpers read the path history.
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use tern_core::rendezvous::Registration;
use tern_core::{Event, PathInfo, SessionId};
use tern_sim::{HostId, LinkConfig, NatId, NatPreset, Pump, PumpState, Sim, Topology};

pub const S: Duration = Duration::from_secs(1);
pub const MS: Duration = Duration::from_millis(1);
/// The virtual port pumps use.
pub const PORT: u16 = 5000;

/// 10 ms one way, 20 Mbit/s.
pub fn link() -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(1),
        bandwidth_bps: Some(20_000_000),
        queue_bytes: 256 * 1024,
        ..LinkConfig::default()
    }
}

pub fn registration(name: &str, public: bool) -> Registration {
    Registration {
        hostname: Some(name.into()),
        tags: vec!["mcp".into()],
        public,
        ..Registration::default()
    }
}

/// Where a node sits: behind a preset chain, behind an existing NAT, or public.
pub enum Place {
    Public,
    Behind(NatId),
    Preset(NatPreset),
}

/// A built scenario: server `rdv`, sender `a`, receiver `b`.
pub struct Rdv {
    pub sim: Sim,
    pub rdv: HostId,
    pub a: HostId,
    pub b: HostId,
    pub tx: Rc<RefCell<PumpState>>,
    pub rx: Rc<RefCell<PumpState>>,
}

/// Adds the public server `rdv` to `t`.
pub fn add_server(t: &mut Topology) -> HostId {
    t.host("rdv")
        .links(link(), link())
        .rendezvous_server()
        .add()
}

/// Adds `a` (a pump sender of `total` bytes) and `b` (its receiver) at `pa` / `pb`; the
/// server must have been added.
pub fn add_pair(
    t: &mut Topology,
    pa: Place,
    pb: Place,
    total: u64,
) -> (
    HostId,
    HostId,
    Rc<RefCell<PumpState>>,
    Rc<RefCell<PumpState>>,
) {
    let (sender, tx) = Pump::sender(PORT, total);
    let (receiver, rx) = Pump::receiver(PORT);
    let mut ha = t
        .host("a")
        .links(link(), link())
        .punch_sockets(256)
        .rendezvous_client("rdv", registration("a", true))
        .app(sender);
    match pa {
        Place::Behind(n) => ha = ha.behind(n),
        Place::Preset(p) => ha = ha.behind_preset(p),
        Place::Public => {}
    }
    let a = ha.add();
    let mut hb = t
        .host("b")
        .links(link(), link())
        .punch_sockets(256)
        .rendezvous_client("rdv", registration("b", true))
        .app(receiver);
    match pb {
        Place::Behind(n) => hb = hb.behind(n),
        Place::Preset(p) => hb = hb.behind_preset(p),
        Place::Public => {}
    }
    let b = hb.add();
    (a, b, tx, rx)
}

pub fn registered(sim: &Sim, h: HostId) -> bool {
    sim.events(h)
        .iter()
        .any(|(_, e)| matches!(e, Event::Registered { .. }))
}

impl Rdv {
    pub fn build(
        t: Topology,
        rdv: HostId,
        a: HostId,
        b: HostId,
        tx: Rc<RefCell<PumpState>>,
        rx: Rc<RefCell<PumpState>>,
    ) -> Self {
        Rdv {
            sim: t.build(),
            rdv,
            a,
            b,
            tx,
            rx,
        }
    }

    /// Runs until both nodes are registered and have both observations.
    pub fn register(&mut self) {
        let (a, b) = (self.a, self.b);
        assert!(
            self.sim
                .run_until(20 * S, |s| [a, b].iter().all(|&h| registered(s, h)
                    && s.node(h)
                        .rendezvous_status()
                        .is_some_and(|st| st.observed.iter().all(Option::is_some)))),
            "registration"
        );
    }

    /// `a` dials `b` through the rendezvous relay; returns `a`'s session.
    pub fn connect(&mut self) -> SessionId {
        let peer = self.sim.peer_id(self.b);
        self.sim
            .command(self.a, |n, now| n.connect_peer(now, peer))
            .expect("connect_peer")
    }

    /// `a`'s session with `b` and `b`'s with `a`.
    pub fn sessions(&self) -> (Option<SessionId>, Option<SessionId>) {
        let pb = self.sim.peer_id(self.b);
        let pa = self.sim.peer_id(self.a);
        (
            self.sim.node(self.a).session_with(&pb),
            self.sim.node(self.b).session_with(&pa),
        )
    }

    pub fn path(&self, h: HostId) -> Option<PathInfo> {
        let (sa, sb) = self.sessions();
        let s = if h == self.a { sa } else { sb }?;
        self.sim.node(h).session_info(s).map(|i| i.path)
    }

    pub fn both_direct(&self) -> bool {
        [self.a, self.b]
            .iter()
            .all(|&h| matches!(self.path(h), Some(PathInfo::Direct(_))))
    }

    /// Runs until both sides are on a direct path; returns whether they got there.
    pub fn run_until_direct(&mut self, limit: Duration) -> bool {
        let (a, b) = (self.a, self.b);
        let (pa, pb) = (self.sim.peer_id(a), self.sim.peer_id(b));
        self.sim.run_until(limit, |s| {
            [(a, pb), (b, pa)].iter().all(|&(h, p)| {
                s.node(h)
                    .session_with(&p)
                    .and_then(|id| s.node(h).session_info(id))
                    .is_some_and(|i| matches!(i.path, PathInfo::Direct(_)))
            })
        })
    }

    /// Runs until the pump finished (every byte received and the FIN), or `limit`.
    pub fn run_until_transferred(&mut self, limit: Duration) -> bool {
        let rx = Rc::clone(&self.rx);
        self.sim.run_until(limit, move |_| rx.borrow().fin)
    }

    /// The paths `h` reported with `PathChanged`, with their times, from `since`.
    pub fn path_changes(&self, h: HostId, since: Duration) -> Vec<(Duration, PathInfo)> {
        self.sim
            .events(h)
            .iter()
            .filter(|(t, _)| *t >= since)
            .filter_map(|(t, e)| match e {
                Event::PathChanged { path, .. } => Some((*t, *path)),
                _ => None,
            })
            .collect()
    }

    /// Sessions `h` saw closed.
    pub fn closed(&self, h: HostId) -> usize {
        self.sim
            .events(h)
            .iter()
            .filter(|(_, e)| matches!(e, Event::SessionClosed { .. }))
            .count()
    }

    /// Asserts every byte of a `total`-byte transfer arrived, in order, with the FIN.
    pub fn assert_intact(&self, total: u64, what: &str) {
        let rx = self.rx.borrow();
        assert_eq!(rx.corrupt_at, None, "{what}: corrupted stream");
        assert_eq!(rx.received, total, "{what}: bytes received");
        assert!(rx.fin, "{what}: no FIN");
    }
}

/// Whether `changes` went to the relay and later back to a direct path.
pub fn relayed_then_direct(changes: &[(Duration, PathInfo)]) -> bool {
    let Some(i) = changes
        .iter()
        .position(|(_, p)| matches!(p, PathInfo::Relayed { .. }))
    else {
        return false;
    };
    changes[i..]
        .iter()
        .any(|(_, p)| matches!(p, PathInfo::Direct(_)))
}
