//! `Pair`: two nodes and the wire between them, in virtual time (after quinn-proto's test
//! `Pair`). Hooks see every datagram and may drop, duplicate, delay or corrupt it; tests can
//! also inject datagrams from any address and read everything that was sent.
#![allow(dead_code, clippy::disallowed_methods)]

pub mod net;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tern_core::{Config, Event, Identity, Node, SessionId};

/// Which node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// What a hook decides for one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Deliver,
    Drop,
    Duplicate,
    Delay(Duration),
    /// Flip the byte at this index (modulo length).
    Corrupt(usize),
}

/// A datagram as the hook sees it.
#[derive(Clone, Debug)]
pub struct Wire {
    /// Sequence number over all datagrams sent in this pair.
    pub seq: u64,
    pub from: Side,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub bytes: Vec<u8>,
}

impl Wire {
    /// The packet type byte.
    pub fn ty(&self) -> u8 {
        self.bytes.first().copied().unwrap_or(0)
    }
}

struct InFlight {
    at: Instant,
    seq: u64,
    to: SocketAddr,
    src: SocketAddr,
    bytes: Vec<u8>,
}

/// A per-datagram fault injector.
pub type Hook = Box<dyn FnMut(&Wire) -> Verdict>;

pub struct Pair {
    pub now: Instant,
    pub a: Node,
    pub b: Node,
    /// The address each node's packets appear to come from (change it to simulate a NAT
    /// rebinding or roaming).
    pub a_addr: SocketAddr,
    pub b_addr: SocketAddr,
    pub latency: Duration,
    pub hook: Option<Hook>,
    /// Every datagram either node sent, in order.
    pub sent: Vec<Wire>,
    pub events_a: Vec<Event>,
    pub events_b: Vec<Event>,
    /// Bytes each destination address received from the nodes, and each source sent them.
    pub bytes_to: BTreeMap<SocketAddr, u64>,
    in_flight: Vec<InFlight>,
    seq: u64,
    buf: Vec<u8>,
}

pub fn identity(n: u8) -> Identity {
    Identity::from_secret([n; 32])
}

impl Pair {
    pub fn new() -> Self {
        Self::with_configs(Config::default(), Config::default())
    }

    pub fn with_configs(ca: Config, cb: Config) -> Self {
        let now = Instant::now();
        let unix = Duration::from_secs(1_800_000_000);
        let a = Node::new(identity(1), ca, [11; 32], now, unix).unwrap();
        let b = Node::new(identity(2), cb, [22; 32], now, unix).unwrap();
        Self {
            now,
            a,
            b,
            a_addr: "10.0.0.1:1000".parse().unwrap(),
            b_addr: "10.0.0.2:2000".parse().unwrap(),
            latency: Duration::from_millis(10),
            hook: None,
            sent: Vec::new(),
            events_a: Vec::new(),
            events_b: Vec::new(),
            bytes_to: BTreeMap::new(),
            in_flight: Vec::new(),
            seq: 0,
            buf: vec![0u8; 2048],
        }
    }

    pub fn node(&mut self, side: Side) -> &mut Node {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    pub fn addr(&self, side: Side) -> SocketAddr {
        match side {
            Side::A => self.a_addr,
            Side::B => self.b_addr,
        }
    }

    fn side_of(&self, addr: SocketAddr) -> Option<Side> {
        if addr == self.a_addr {
            Some(Side::A)
        } else if addr == self.b_addr {
            Some(Side::B)
        } else {
            None
        }
    }

    /// A connects to B (IK: A knows B's key).
    pub fn connect(&mut self) -> SessionId {
        let peer = self.b.peer_id();
        let b = self.b_addr;
        self.a.connect(self.now, b, Some(peer)).unwrap()
    }

    /// Drains one node's transmits onto the wire (through the hook) and its events.
    fn drain(&mut self, side: Side) {
        loop {
            let now = self.now;
            let mut buf = std::mem::take(&mut self.buf);
            let t = self.node(side).poll_transmit(now, &mut buf);
            let Some(t) = t else {
                self.buf = buf;
                break;
            };
            let bytes = buf[..t.len].to_vec();
            self.buf = buf;
            let wire = Wire {
                seq: self.seq,
                from: side,
                src: self.addr(side),
                dst: t.dst,
                bytes,
            };
            self.seq += 1;
            *self.bytes_to.entry(t.dst).or_default() += t.len as u64;
            self.sent.push(wire.clone());
            let verdict = match self.hook.as_mut() {
                Some(h) => h(&wire),
                None => Verdict::Deliver,
            };
            let at = self.now + self.latency;
            let push = |at: Instant, bytes: Vec<u8>, pair: &mut Pair| {
                pair.in_flight.push(InFlight {
                    at,
                    seq: pair.seq,
                    to: wire.dst,
                    src: wire.src,
                    bytes,
                });
                pair.seq += 1;
            };
            match verdict {
                Verdict::Deliver => push(at, wire.bytes.clone(), self),
                Verdict::Drop => {}
                Verdict::Duplicate => {
                    push(at, wire.bytes.clone(), self);
                    push(at, wire.bytes.clone(), self);
                }
                Verdict::Delay(d) => push(at + d, wire.bytes.clone(), self),
                Verdict::Corrupt(i) => {
                    let mut b = wire.bytes.clone();
                    let n = b.len();
                    b[i % n] ^= 0x40;
                    push(at, b, self);
                }
            }
        }
        while let Some(e) = self.node(side).poll_event() {
            match side {
                Side::A => self.events_a.push(e),
                Side::B => self.events_b.push(e),
            }
        }
    }

    /// Delivers a datagram to `to` as if it came from `from` (spoofing, replays).
    pub fn inject(&mut self, to: Side, from: SocketAddr, bytes: &[u8]) {
        let mut b = bytes.to_vec();
        let now = self.now;
        self.node(to).handle_datagram(now, from, &mut b);
        self.drain(to);
    }

    /// One step: deliver everything due now, run due timers, drain. Returns false when
    /// nothing is left to do before `deadline`.
    pub fn step(&mut self, deadline: Instant) -> bool {
        self.drain(Side::A);
        self.drain(Side::B);
        let next_packet = self.in_flight.iter().map(|p| (p.at, p.seq)).min();
        let next_timer = [self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let next = match (next_packet.map(|p| p.0), next_timer) {
            (Some(p), Some(t)) => p.min(t),
            (p, t) => match p.or(t) {
                Some(x) => x,
                None => return false,
            },
        };
        if next > deadline {
            self.now = deadline;
            return false;
        }
        self.now = self.now.max(next);
        // Deliver due packets in order.
        while let Some(i) = self
            .in_flight
            .iter()
            .enumerate()
            .filter(|(_, p)| p.at <= self.now)
            .min_by_key(|(_, p)| (p.at, p.seq))
            .map(|(i, _)| i)
        {
            let p = self.in_flight.remove(i);
            if let Some(side) = self.side_of(p.to) {
                let now = self.now;
                let mut bytes = p.bytes;
                self.node(side).handle_datagram(now, p.src, &mut bytes);
                self.drain(side);
            }
        }
        let now = self.now;
        self.a.handle_timeout(now);
        self.b.handle_timeout(now);
        self.drain(Side::A);
        self.drain(Side::B);
        true
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        let mut steps = 0u64;
        while self.step(deadline) {
            steps += 1;
            assert!(steps < 10_000_000, "livelock: too many steps");
        }
    }

    /// Runs until `cond` holds (checked after every step) or `limit` passes; returns
    /// whether it held.
    pub fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&Pair) -> bool) -> bool {
        let deadline = self.now + limit;
        let mut steps = 0u64;
        loop {
            if cond(self) {
                return true;
            }
            if !self.step(deadline) {
                return cond(self);
            }
            steps += 1;
            assert!(steps < 10_000_000, "livelock: too many steps");
        }
    }

    pub fn established(&self, side: Side) -> Option<SessionId> {
        let events = match side {
            Side::A => &self.events_a,
            Side::B => &self.events_b,
        };
        events.iter().find_map(|e| match e {
            Event::SessionEstablished { session, .. } => Some(*session),
            _ => None,
        })
    }

    pub fn pongs(&self, side: Side) -> Vec<u64> {
        let events = match side {
            Side::A => &self.events_a,
            Side::B => &self.events_b,
        };
        events
            .iter()
            .filter_map(|e| match e {
                Event::Pong { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }

    pub fn events(&self, side: Side) -> &[Event] {
        match side {
            Side::A => &self.events_a,
            Side::B => &self.events_b,
        }
    }

    /// Connects and runs until both sides report the session.
    pub fn establish(&mut self) -> (SessionId, SessionId) {
        let sa = self.connect();
        assert!(
            self.run_until(Duration::from_secs(30), |p| p
                .established(Side::A)
                .is_some()
                && p.established(Side::B).is_some()),
            "session did not establish; a: {:?} b: {:?}",
            self.events_a,
            self.events_b
        );
        (sa, self.established(Side::B).unwrap())
    }
}
