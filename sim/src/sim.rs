//! The simulator: one event loop over virtual time driving every host's node, its access
//! links and the NATs between them.
//!
//! The loop pops the earliest event (ties in push order), sets `now`, applies it (route a
//! packet, deliver it, fire a node or application timer, apply a fault) and then drains the
//! touched node: transmits go out through the uplink, events go to the application (which may
//! issue more commands), and the node's next deadline becomes a `Wake` event. A step bound
//! turns a livelock into a test failure, and a failing test prints `SIM_SEED=…` to replay it.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use tern_core::{Event, Node, PeerId, RecvMeta, SessionId};

use crate::app::{AppCx, Directory};
use crate::clock::{self, SimTime};
use crate::fault::{Direction, Fault};
use crate::host::{Captured, Host, HostKind, REFLECT_PREFIX, RawDatagram};
use crate::ids::{HostId, NatId, PacketId, RealmId};
use crate::link::{LinkConfig, LinkState};
use crate::log;
use crate::nat::{Nat, v4};
use crate::net::Net;
use crate::pcap::{Capture, Pcap};
use crate::queue::EventQueue;
use crate::trace::{Counters, DropReason, EventSummary, Hop, Keep, Record, Trace, digest};

/// Default bound on loop steps; a run that needs more is treated as a livelock.
pub const DEFAULT_STEP_LIMIT: u64 = 50_000_000;

/// A datagram in flight.
#[derive(Clone, Debug)]
struct Packet {
    id: PacketId,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    bytes: Vec<u8>,
}

#[derive(Debug)]
enum Ev {
    Start(HostId),
    Route { realm: RealmId, pkt: Packet },
    Deliver { host: HostId, pkt: Packet },
    Wake { host: HostId, generation: u64 },
    AppTimer { host: HostId, tag: u64 },
    Fault(Fault),
}

/// A running simulation. Build one with [`Topology`](crate::Topology).
pub struct Sim {
    pub(crate) name: String,
    pub(crate) seed: u64,
    now: Duration,
    queue: EventQueue<Ev>,
    pub(crate) hosts: Vec<Host>,
    pub(crate) net: Net,
    pub(crate) dir: Directory,
    pub(crate) trace: Trace,
    next_packet: u64,
    in_flight: u64,
    steps: u64,
    step_limit: u64,
    buf: Vec<u8>,
    pcap: Option<Pcap>,
    _log: Option<tracing::subscriber::DefaultGuard>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("name", &self.name)
            .field("seed", &self.seed)
            .field("now", &SimTime(self.now))
            .field("hosts", &self.hosts.len())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n---- simulation failed at t={} after {} steps ----\n{}\
                 replay: SIM_SEED={} scenario={}  (SIM_LOG=1 prints the whole trace)\n\
                 SIM_SEED={}",
                SimTime(self.now),
                self.steps,
                self.trace,
                self.seed,
                self.name,
                self.seed
            );
        }
    }
}

/// The seed to use: `SIM_SEED` from the environment if set (to replay a failure), else
/// `default`.
pub fn seed_from_env(default: u64) -> u64 {
    std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// Seeds for a sweep: only `SIM_SEED` if it is set, else `0..n`.
pub fn seeds(n: u64) -> Vec<u64> {
    match std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        Some(s) => vec![s],
        None => (0..n).collect(),
    }
}

impl Sim {
    pub(crate) fn assemble(
        name: String,
        seed: u64,
        hosts: Vec<Host>,
        net: Net,
        dir: Directory,
        keep: Keep,
        faults: Vec<(Duration, Fault)>,
    ) -> Self {
        let (print, core_level) = log::from_env();
        let guard = core_level.map(|l| tracing::subscriber::set_default(log::SimLogger::new(l)));
        let mut queue = EventQueue::default();
        for h in &hosts {
            if matches!(h.kind, HostKind::Node(_)) {
                queue.push(Duration::ZERO, Ev::Start(h.id));
            }
        }
        for (at, f) in faults {
            queue.push(at, Ev::Fault(f));
        }
        log::set_now(Duration::ZERO);
        Self {
            name,
            seed,
            now: Duration::ZERO,
            queue,
            hosts,
            net,
            dir,
            trace: Trace::new(keep, print),
            next_packet: 0,
            in_flight: 0,
            steps: 0,
            step_limit: DEFAULT_STEP_LIMIT,
            buf: vec![0u8; 65_536],
            pcap: None,
            _log: guard,
        }
    }

    // ---- getters ----

    /// Simulated time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The `Instant` nodes see now.
    pub fn instant(&self) -> Instant {
        clock::instant(self.now)
    }

    /// The master seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The scenario's name (printed with the seed on failure).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The trace.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The trace hash so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    /// Packet counters.
    pub fn counters(&self) -> &Counters {
        self.trace.counters()
    }

    /// Packets currently on links or being routed.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Events waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// A host. Panics on a foreign handle.
    pub fn host(&self, h: HostId) -> &Host {
        &self.hosts[h.0 as usize]
    }

    /// Every host.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// A host by name.
    pub fn host_id(&self, name: &str) -> Option<HostId> {
        self.dir.names.get(name).copied()
    }

    /// A host's default socket.
    pub fn addr(&self, h: HostId) -> SocketAddr {
        self.host(h).addr().into()
    }

    /// A host's node id (panics for a raw host).
    pub fn peer_id(&self, h: HostId) -> PeerId {
        self.node(h).peer_id()
    }

    /// A host's node (panics for a raw host).
    pub fn node(&self, h: HostId) -> &Node {
        self.host(h).node().expect("not a node host")
    }

    /// A host's node events.
    pub fn events(&self, h: HostId) -> &[(Duration, Event)] {
        self.host(h).events()
    }

    /// The first session a host reported established, if any.
    pub fn established(&self, h: HostId) -> Option<SessionId> {
        self.events(h).iter().find_map(|(_, e)| match e {
            Event::SessionEstablished { session, .. } => Some(*session),
            _ => None,
        })
    }

    /// Pongs a host received.
    pub fn pongs(&self, h: HostId) -> usize {
        self.events(h)
            .iter()
            .filter(|(_, e)| matches!(e, Event::Pong { .. }))
            .count()
    }

    /// Datagrams a raw host received (panics for a node host).
    pub fn received(&self, h: HostId) -> &[RawDatagram] {
        &self.host(h).raw().expect("not a raw host").received
    }

    /// A NAT.
    pub fn nat(&self, n: NatId) -> &Nat {
        &self.net.nats[n.0 as usize]
    }

    /// A NAT by name.
    pub fn nat_id(&self, name: &str) -> Option<NatId> {
        self.net.nats.iter().find(|n| n.name() == name).map(Nat::id)
    }

    /// Every NAT.
    pub fn nats(&self) -> &[Nat] {
        &self.net.nats
    }

    /// The host's link in one direction (`Up` or `Down`; `Both` means `Up`).
    pub fn link(&self, h: HostId, direction: Direction) -> &LinkState {
        let host = self.host(h);
        if direction == Direction::Down {
            &host.down
        } else {
            &host.up
        }
    }

    /// The directory applications see.
    pub fn directory(&self) -> &Directory {
        &self.dir
    }

    // ---- settings ----

    /// Changes the livelock bound (steps from the start of the run).
    pub fn set_step_limit(&mut self, limit: u64) {
        self.step_limit = limit;
    }

    /// Changes what the trace keeps from now on.
    pub fn set_keep(&mut self, keep: Keep) {
        self.trace.set_keep(keep);
    }

    /// Starts capturing datagrams for pcap export.
    pub fn enable_pcap(&mut self, capture: Capture) {
        self.pcap = Some(Pcap::new(capture));
    }

    /// The capture, if enabled.
    pub fn pcap(&self) -> Option<&Pcap> {
        self.pcap.as_ref()
    }

    /// Replaces a host's link parameters (one or both directions).
    pub fn set_link(&mut self, h: HostId, direction: Direction, config: LinkConfig) {
        let host = &mut self.hosts[h.0 as usize];
        if direction.up() {
            host.up.set_config(config.clone());
        }
        if direction.down() {
            host.down.set_config(config);
        }
    }

    // ---- running ----

    /// Processes the next event. Returns false if the queue is empty. Panics when the step
    /// limit is exceeded (a livelock).
    pub fn step(&mut self) -> bool {
        let Some((at, ev)) = self.queue.pop() else {
            return false;
        };
        assert!(
            at >= self.now,
            "time went backwards: {at:?} < {:?}",
            self.now
        );
        self.now = at;
        log::set_now(at);
        self.steps += 1;
        if self.steps > self.step_limit {
            panic!(
                "step limit of {} exceeded at t={} (livelock?); scenario={} SIM_SEED={}",
                self.step_limit,
                SimTime(self.now),
                self.name,
                self.seed
            );
        }
        match ev {
            Ev::Start(h) => {
                // What a driver does at start: tell the node its local sockets.
                self.announce_sockets(h);
                self.with_app(h, |app, cx| app.start(cx));
                self.drain(h);
            }
            Ev::Route { realm, pkt } => {
                self.in_flight -= 1;
                self.route(realm, pkt);
            }
            Ev::Deliver { host, pkt } => {
                self.in_flight -= 1;
                self.deliver(host, pkt);
            }
            Ev::Wake { host, generation } => {
                let hs = &mut self.hosts[host.0 as usize];
                if hs.wake_gen != generation {
                    return true;
                }
                hs.wake_at = None;
                self.trace.push(self.now, Record::Wake { host });
                let now = self.instant();
                if let HostKind::Node(n) = &mut self.hosts[host.0 as usize].kind {
                    n.node.handle_timeout(now);
                }
                self.drain(host);
            }
            Ev::AppTimer { host, tag } => {
                self.trace.push(self.now, Record::AppTimer { host, tag });
                self.with_app(host, |app, cx| app.on_timer(cx, tag));
                self.drain(host);
            }
            Ev::Fault(f) => self.apply(f),
        }
        true
    }

    /// Runs every event due within `d`, then sets the clock to `now + d`.
    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        while self.queue.peek_time().is_some_and(|t| t <= deadline) {
            self.step();
        }
        self.now = deadline;
        log::set_now(deadline);
    }

    /// Runs until `cond` holds (checked before the first step and after each one) or `limit`
    /// of simulated time passes; returns whether it held. The clock stays at the instant the
    /// condition became true.
    pub fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&Sim) -> bool) -> bool {
        let deadline = self.now + limit;
        loop {
            if cond(self) {
                return true;
            }
            match self.queue.peek_time() {
                Some(t) if t <= deadline => {
                    self.step();
                }
                _ => {
                    self.now = self.now.max(deadline);
                    log::set_now(self.now);
                    return cond(self);
                }
            }
        }
    }

    /// Runs until nothing is scheduled, or `limit` passes; returns true if it went idle.
    pub fn run_until_idle(&mut self, limit: Duration) -> bool {
        let deadline = self.now + limit;
        while let Some(t) = self.queue.peek_time() {
            if t > deadline {
                self.now = deadline;
                return false;
            }
            self.step();
        }
        true
    }

    /// Runs `f` on a host's node now (a command from the test), then drains the node.
    pub fn command<R>(&mut self, h: HostId, f: impl FnOnce(&mut Node, Instant) -> R) -> R {
        let now = self.instant();
        let r = match &mut self.hosts[h.0 as usize].kind {
            HostKind::Node(n) => f(&mut n.node, now),
            HostKind::Raw(_) => panic!("command on a raw host"),
        };
        self.drain(h);
        r
    }

    /// Sends a raw datagram from host `h`'s port `port` to `dst`, now.
    pub fn send_raw(&mut self, h: HostId, port: u16, dst: SocketAddr, bytes: &[u8]) {
        let ip = self.hosts[h.0 as usize].ip;
        self.send(h, Some(SocketAddr::from((ip, port))), dst, bytes.to_vec());
    }

    /// Injects a datagram into the internet now, as if sent from `src` (any address: a
    /// spoofing attacker, or a replay of captured bytes). It is routed like any packet that
    /// reaches the internet, without an access link.
    pub fn inject(&mut self, src: SocketAddr, dst: SocketAddr, bytes: &[u8]) {
        let id = self.new_packet();
        self.trace.push(
            self.now,
            Record::Inject {
                pkt: id,
                src,
                dst,
                len: bytes.len(),
                digest: digest(bytes),
            },
        );
        let (Ok(src), Ok(dst)) = (v4(src), v4(dst)) else {
            return self.drop_packet(id, Hop::Realm(RealmId::INTERNET), DropReason::NotIpv4);
        };
        let pkt = Packet {
            id,
            src,
            dst,
            bytes: bytes.to_vec(),
        };
        self.schedule_packet(
            self.now,
            Ev::Route {
                realm: RealmId::INTERNET,
                pkt,
            },
        );
    }

    /// Starts recording every datagram host `h` sends and receives ([`Host::captured`]).
    pub fn watch(&mut self, h: HostId) {
        let host = &mut self.hosts[h.0 as usize];
        if host.captured.is_none() {
            host.captured = Some(Vec::new());
        }
    }

    /// What host `h` sent and received since [`Sim::watch`].
    pub fn captured(&self, h: HostId) -> &[Captured] {
        self.host(h).captured()
    }

    /// The addresses host `h`'s packets carry on the internet: its own if it is public,
    /// otherwise the public addresses of the outermost NAT in front of it.
    pub fn public_ips(&self, h: HostId) -> Vec<Ipv4Addr> {
        let host = self.host(h);
        let mut realm = host.realm;
        let mut ips = vec![host.ip];
        for _ in 0..64 {
            if realm == RealmId::INTERNET {
                return ips;
            }
            let Some(nat) = self.net.realms[realm.0 as usize].gateway else {
                return ips;
            };
            let nat = &self.net.nats[nat.0 as usize];
            ips = nat.public_ips().to_vec();
            realm = nat.outside();
        }
        ips
    }

    /// Schedules a fault at simulated time `at` (not before now).
    pub fn schedule(&mut self, at: Duration, fault: Fault) {
        self.queue.push(at.max(self.now), Ev::Fault(fault));
    }

    /// Applies a fault now.
    pub fn apply(&mut self, fault: Fault) {
        self.trace.push(self.now, Record::Fault(fault.clone()));
        let now = self.now;
        match fault {
            Fault::Partition { host, direction } | Fault::Heal { host, direction } => {
                let up = matches!(fault, Fault::Heal { .. });
                let hs = &mut self.hosts[host.0 as usize];
                if direction.up() {
                    hs.up.set_up(up);
                }
                if direction.down() {
                    hs.down.set_up(up);
                }
            }
            Fault::NatRebind(n) => self.net.nats[n.0 as usize].rebind(now, &mut self.trace),
            Fault::NatReboot(n) => self.net.nats[n.0 as usize].reboot(now, &mut self.trace),
            Fault::NatNewPublicIp(n) => {
                let nat = &self.net.nats[n.0 as usize];
                let (outside, old) = (nat.outside(), nat.public_ips().to_vec());
                let fresh: Vec<Ipv4Addr> = old
                    .iter()
                    .map(|_| self.net.realms[outside.0 as usize].allocate())
                    .collect();
                for ip in &old {
                    self.net.detach_nat(outside, *ip);
                }
                for ip in &fresh {
                    self.net.attach_nat(outside, *ip, n);
                }
                self.net.nats[n.0 as usize].change_public_ips(now, fresh, &mut self.trace);
            }
            Fault::NatBlockUdp { nat, blocked } => {
                self.net.nats[nat.0 as usize].set_block_udp(blocked)
            }
            Fault::LinkMtu {
                host,
                direction,
                mtu,
            } => {
                let hs = &mut self.hosts[host.0 as usize];
                for (on, link) in [
                    (direction.up(), &mut hs.up),
                    (direction.down(), &mut hs.down),
                ] {
                    if on {
                        let mut c = link.config().clone();
                        c.mtu = mtu;
                        link.set_config(c);
                    }
                }
            }
            Fault::HostBlockUdp { host, blocked } => {
                self.hosts[host.0 as usize].udp_blocked = blocked
            }
            Fault::Blackhole { a, b, blocked } => {
                for x in self.public_ips(a) {
                    for y in self.public_ips(b) {
                        let pair = (x.min(y), x.max(y));
                        if blocked {
                            self.net.blackholes.insert(pair);
                        } else {
                            self.net.blackholes.remove(&pair);
                        }
                    }
                }
            }
            Fault::Roam {
                host,
                realm,
                notify,
            } => {
                let (old_realm, old_ip) = {
                    let h = &self.hosts[host.0 as usize];
                    (h.realm, h.ip)
                };
                self.net.detach_host(old_realm, old_ip);
                let ip = self.net.realms[realm.0 as usize].allocate();
                self.net.attach_host(realm, ip, host);
                let h = &mut self.hosts[host.0 as usize];
                h.realm = realm;
                h.ip = ip;
                self.dir.info[host.0 as usize].addr = SocketAddr::from((ip, h.port));
                if notify {
                    self.announce_sockets(host);
                    let now = self.instant();
                    if let HostKind::Node(n) = &mut self.hosts[host.0 as usize].kind {
                        n.node.handle_network_change(now);
                    }
                    self.drain(host);
                }
            }
        }
    }

    /// Checks the simulator's own invariants: packet conservation (`created == delivered +
    /// dropped + in flight`, and in flight equals the packets queued), every NAT table
    /// consistent and within its quota, and no event scheduled in the past.
    pub fn check_invariants(&self) -> Result<(), String> {
        let c = self.trace.counters();
        let accounted = c.delivered + c.dropped_total() + self.in_flight;
        if c.created != accounted {
            return Err(format!(
                "conservation: created {} != delivered {} + dropped {} + in flight {}",
                c.created,
                c.delivered,
                c.dropped_total(),
                self.in_flight
            ));
        }
        let queued_packets = self
            .queue
            .iter()
            .filter(|e| matches!(e, Ev::Route { .. } | Ev::Deliver { .. }))
            .count() as u64;
        if queued_packets != self.in_flight {
            return Err(format!(
                "in flight {} but {queued_packets} packets queued",
                self.in_flight
            ));
        }
        if let Some(t) = self.queue.peek_time()
            && t < self.now
        {
            return Err(format!("event at {t:?} is before now {:?}", self.now));
        }
        for n in &self.net.nats {
            n.check_invariants()?;
        }
        Ok(())
    }

    // ---- internals ----

    /// Tells a node its local sockets (host candidates) and hole-punching sockets.
    fn announce_sockets(&mut self, h: HostId) {
        let host = &mut self.hosts[h.0 as usize];
        let (sockets, punch) = (host.sockets(), host.punch_sockets());
        if let HostKind::Node(n) = &mut host.kind {
            n.node.set_local_addresses(&sockets);
            n.node.set_punch_sockets(&punch);
        }
    }

    fn with_app(&mut self, h: HostId, f: impl FnOnce(&mut dyn crate::app::App, &mut AppCx<'_>)) {
        let mut timers = Vec::new();
        {
            let Sim {
                hosts, dir, now, ..
            } = self;
            let HostKind::Node(nh) = &mut hosts[h.0 as usize].kind else {
                return;
            };
            let nh = &mut **nh;
            let mut cx = AppCx {
                node: &mut nh.node,
                now: *now,
                host: h,
                dir,
                timers: &mut timers,
            };
            f(nh.app.as_mut(), &mut cx);
        }
        for (at, tag) in timers {
            self.queue.push(at, Ev::AppTimer { host: h, tag });
        }
    }

    /// Drains a node: transmits, then events (to the app), until both are empty; then
    /// schedules its next wake-up.
    fn drain(&mut self, h: HostId) {
        let now_i = self.instant();
        let mut out: Vec<(Option<SocketAddr>, SocketAddr, Vec<u8>)> = Vec::new();
        loop {
            let mut progressed = false;
            loop {
                let HostKind::Node(nh) = &mut self.hosts[h.0 as usize].kind else {
                    return;
                };
                let Some(t) = nh.node.poll_transmit(now_i, &mut self.buf) else {
                    break;
                };
                progressed = true;
                let seg = t.segment_size.unwrap_or(t.len).max(1);
                for chunk in self.buf[..t.len].chunks(seg) {
                    out.push((t.src, t.dst, chunk.to_vec()));
                }
                for (src, dst, bytes) in out.drain(..) {
                    self.send(h, src, dst, bytes);
                }
            }
            loop {
                let HostKind::Node(nh) = &mut self.hosts[h.0 as usize].kind else {
                    return;
                };
                let Some(e) = nh.node.poll_event() else { break };
                progressed = true;
                self.trace.push(
                    self.now,
                    Record::NodeEvent {
                        host: h,
                        event: EventSummary::of(&e),
                    },
                );
                self.hosts[h.0 as usize].events.push((self.now, e));
                self.with_app(h, |app, cx| app.on_event(cx, &e));
            }
            if !progressed {
                break;
            }
        }
        let host = &mut self.hosts[h.0 as usize];
        let HostKind::Node(nh) = &host.kind else {
            return;
        };
        let next = nh
            .node
            .poll_timeout()
            .map(|i| clock::sim_time(i).max(self.now));
        if next != host.wake_at {
            host.wake_gen += 1;
            host.wake_at = next;
            if let Some(at) = next {
                self.queue.push(
                    at,
                    Ev::Wake {
                        host: h,
                        generation: host.wake_gen,
                    },
                );
            }
        }
    }

    fn new_packet(&mut self) -> PacketId {
        let id = PacketId(self.next_packet);
        self.next_packet += 1;
        self.trace.counters_mut().created += 1;
        id
    }

    fn drop_packet(&mut self, pkt: PacketId, hop: Hop, reason: DropReason) {
        *self.trace.counters_mut().dropped.entry(reason).or_insert(0) += 1;
        self.trace.push(self.now, Record::Drop { pkt, hop, reason });
    }

    fn schedule_packet(&mut self, at: Duration, ev: Ev) {
        self.in_flight += 1;
        self.queue.push(at, ev);
    }

    /// A host sends a datagram: source check, UDP blocking, then the uplink.
    fn send(&mut self, h: HostId, src: Option<SocketAddr>, dst: SocketAddr, mut bytes: Vec<u8>) {
        let id = self.new_packet();
        let host = &mut self.hosts[h.0 as usize];
        let src = match src {
            None => Ok(host.addr()),
            Some(SocketAddr::V4(a)) if a.ip() == &host.ip || a.ip().is_unspecified() => {
                host.bound.insert(a.port());
                Ok(SocketAddrV4::new(host.ip, a.port()))
            }
            Some(_) => Err(DropReason::SourceNotLocal),
        };
        let shown_src = src.map_or_else(|_| SocketAddr::from(host.addr()), SocketAddr::from);
        self.trace.push(
            self.now,
            Record::Send {
                host: h,
                pkt: id,
                src: shown_src,
                dst,
                len: bytes.len(),
                digest: digest(&bytes),
            },
        );
        let result = src.and_then(|src| Ok((src, v4(dst)?)));
        let (src, dst) = match result {
            Ok(x) => x,
            Err(reason) => return self.drop_packet(id, Hop::Host(h), reason),
        };
        if let Some(p) = self.pcap.as_mut()
            && p.capture() != Capture::Deliveries
        {
            p.record(self.now, src, dst, &bytes);
        }
        let now = self.now;
        let host = &mut self.hosts[h.0 as usize];
        if let Some(c) = host.captured.as_mut() {
            c.push(Captured {
                at: now,
                outgoing: true,
                src: src.into(),
                dst: dst.into(),
                bytes: bytes.clone(),
            });
        }
        if host.udp_blocked {
            return self.drop_packet(id, Hop::Host(h), DropReason::UdpBlocked);
        }
        let realm = host.realm;
        match host.up.offer(self.now, &mut bytes) {
            Err(reason) => self.drop_packet(id, Hop::Uplink(h), reason),
            Ok(p) => {
                if p.corrupted {
                    self.trace.counters_mut().corrupted += 1;
                    self.trace.push(
                        self.now,
                        Record::Corrupt {
                            pkt: id,
                            hop: Hop::Uplink(h),
                        },
                    );
                }
                let pkt = Packet {
                    id,
                    src,
                    dst,
                    bytes,
                };
                if let Some(dup_at) = p.duplicate_at {
                    let copy = Packet {
                        id: self.new_packet(),
                        ..pkt.clone()
                    };
                    self.trace.counters_mut().duplicated += 1;
                    self.trace.push(
                        self.now,
                        Record::Duplicate {
                            pkt: id,
                            copy: copy.id,
                            hop: Hop::Uplink(h),
                        },
                    );
                    self.schedule_packet(dup_at, Ev::Route { realm, pkt: copy });
                }
                self.schedule_packet(p.at, Ev::Route { realm, pkt });
            }
        }
    }

    /// A packet leaves a host's uplink into its realm: NATs, then the receiver's downlink.
    fn route(&mut self, realm: RealmId, mut pkt: Packet) {
        let arrival =
            match self
                .net
                .route(self.now, realm, pkt.id, pkt.src, pkt.dst, &mut self.trace)
            {
                Ok(a) => a,
                Err((hop, reason)) => return self.drop_packet(pkt.id, hop, reason),
            };
        pkt.src = arrival.src;
        pkt.dst = arrival.dst;
        let h = arrival.host;
        let host = &mut self.hosts[h.0 as usize];
        if host.udp_blocked {
            return self.drop_packet(pkt.id, Hop::Host(h), DropReason::UdpBlocked);
        }
        match host.down.offer(self.now, &mut pkt.bytes) {
            Err(reason) => self.drop_packet(pkt.id, Hop::Downlink(h), reason),
            Ok(p) => {
                if p.corrupted {
                    self.trace.counters_mut().corrupted += 1;
                    self.trace.push(
                        self.now,
                        Record::Corrupt {
                            pkt: pkt.id,
                            hop: Hop::Downlink(h),
                        },
                    );
                }
                if let Some(dup_at) = p.duplicate_at {
                    let copy = Packet {
                        id: self.new_packet(),
                        ..pkt.clone()
                    };
                    self.trace.counters_mut().duplicated += 1;
                    self.trace.push(
                        self.now,
                        Record::Duplicate {
                            pkt: pkt.id,
                            copy: copy.id,
                            hop: Hop::Downlink(h),
                        },
                    );
                    self.schedule_packet(dup_at, Ev::Deliver { host: h, pkt: copy });
                }
                self.schedule_packet(p.at, Ev::Deliver { host: h, pkt });
            }
        }
    }

    /// A packet reaches a host.
    fn deliver(&mut self, h: HostId, mut pkt: Packet) {
        let now_i = self.instant();
        let host = &mut self.hosts[h.0 as usize];
        // The host may have roamed away while the packet was on its downlink.
        if *pkt.dst.ip() != host.ip {
            return self.drop_packet(pkt.id, Hop::Host(h), DropReason::NoRoute);
        }
        if host.udp_blocked {
            return self.drop_packet(pkt.id, Hop::Host(h), DropReason::UdpBlocked);
        }
        if !host.accepts(pkt.dst.port()) {
            return self.drop_packet(pkt.id, Hop::Host(h), DropReason::PortUnreachable);
        }
        self.trace.counters_mut().delivered += 1;
        self.trace.push(
            self.now,
            Record::Deliver {
                host: h,
                pkt: pkt.id,
                src: pkt.src.into(),
                dst: pkt.dst.into(),
                len: pkt.bytes.len(),
            },
        );
        if let Some(p) = self.pcap.as_mut()
            && p.capture() != Capture::Sends
        {
            p.record(self.now, pkt.src, pkt.dst, &pkt.bytes);
        }
        let now = self.now;
        let host = &mut self.hosts[h.0 as usize];
        if let Some(c) = host.captured.as_mut() {
            c.push(Captured {
                at: now,
                outgoing: false,
                src: pkt.src.into(),
                dst: pkt.dst.into(),
                bytes: pkt.bytes.clone(),
            });
        }
        let default_port = host.port;
        match &mut host.kind {
            HostKind::Node(nh) => {
                let local = (pkt.dst.port() != default_port).then_some(SocketAddr::from(pkt.dst));
                nh.node.handle_datagram_meta(
                    now_i,
                    RecvMeta {
                        from: pkt.src.into(),
                        local,
                    },
                    &mut pkt.bytes,
                );
                self.drain(h);
            }
            HostKind::Raw(raw) => {
                let answer = if raw.echo {
                    Some(pkt.bytes.clone())
                } else if raw.reflect && !pkt.bytes.starts_with(REFLECT_PREFIX) {
                    let mut a = REFLECT_PREFIX.to_vec();
                    a.extend_from_slice(pkt.src.to_string().as_bytes());
                    Some(a)
                } else {
                    None
                };
                raw.received.push(RawDatagram {
                    at: now,
                    from: pkt.src.into(),
                    to: pkt.dst.into(),
                    bytes: pkt.bytes,
                });
                if let Some(answer) = answer {
                    self.send(h, Some(pkt.dst.into()), pkt.src.into(), answer);
                }
            }
        }
    }
}
