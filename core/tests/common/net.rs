//! `Net`: several nodes on one switch in virtual time (every address reaches every other),
//! each node with one or more local addresses. For tests with three or more nodes
//! (rendezvous, relays); two-node tests use `Pair`.
#![allow(dead_code, clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tern_core::{Config, Event, Identity, Node, PeerId, RecvMeta, SessionId};

pub struct Net {
    pub now: Instant,
    pub nodes: Vec<NetNode>,
    wire: Vec<(Instant, u64, SocketAddr, SocketAddr, Vec<u8>)>,
    seq: u64,
    pub latency: Duration,
    /// Directed (from, to) address pairs whose datagrams are dropped.
    pub blocked: Vec<(SocketAddr, SocketAddr)>,
    buf: Vec<u8>,
}

pub struct NetNode {
    pub addrs: Vec<SocketAddr>,
    pub node: Node,
    pub events: Vec<Event>,
}

impl Net {
    pub fn new() -> Self {
        Self {
            now: Instant::now(),
            nodes: Vec::new(),
            wire: Vec::new(),
            seq: 0,
            latency: Duration::from_millis(5),
            blocked: Vec::new(),
            buf: vec![0; 2048],
        }
    }

    /// Adds a node with identity `[n; 32]` at 10.0.0.n:4000 (and 10.0.0.n:4001.. for
    /// `extra_addrs` more sockets).
    pub fn add(&mut self, n: u8, config: Config, extra_addrs: u16) -> usize {
        let mut node = Node::new(
            Identity::from_secret([n; 32]),
            config,
            [n; 32],
            self.now,
            Duration::from_secs(1_800_000_000),
        )
        .unwrap();
        let addrs: Vec<SocketAddr> = (0..=extra_addrs)
            .map(|k| format!("10.0.0.{n}:{}", 4000 + k).parse().unwrap())
            .collect();
        node.set_local_addresses(&addrs);
        self.nodes.push(NetNode {
            addrs,
            node,
            events: Vec::new(),
        });
        self.nodes.len() - 1
    }

    pub fn addr(&self, i: usize, k: usize) -> SocketAddr {
        self.nodes[i].addrs[k]
    }

    pub fn id(&self, i: usize) -> PeerId {
        self.nodes[i].node.peer_id()
    }

    fn drain(&mut self) {
        for i in 0..self.nodes.len() {
            let n = &mut self.nodes[i];
            while let Some(t) = n.node.poll_transmit(self.now, &mut self.buf) {
                let src = t.src.unwrap_or(n.addrs[0]);
                self.wire.push((
                    self.now + self.latency,
                    self.seq,
                    src,
                    t.dst,
                    self.buf[..t.len].to_vec(),
                ));
                self.seq += 1;
            }
            while let Some(e) = n.node.poll_event() {
                n.events.push(e);
            }
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        let mut steps = 0u64;
        loop {
            steps += 1;
            assert!(steps < 5_000_000, "livelock");
            self.drain();
            let next_pkt = self.wire.iter().map(|w| w.0).min();
            let next_timer = self
                .nodes
                .iter()
                .filter_map(|n| n.node.poll_timeout())
                .min();
            let next = [next_pkt, next_timer].into_iter().flatten().min();
            let Some(next) = next.filter(|n| *n <= end) else {
                self.now = end;
                return;
            };
            self.now = self.now.max(next);
            self.wire.sort_by_key(|w| (w.0, w.1));
            while self.wire.first().is_some_and(|w| w.0 <= self.now) {
                let (_, _, from, to, mut bytes) = self.wire.remove(0);
                if self.blocked.contains(&(from, to)) {
                    continue;
                }
                if let Some(n) = self.nodes.iter_mut().find(|n| n.addrs.contains(&to)) {
                    let local = (n.addrs.len() > 1).then_some(to);
                    n.node
                        .handle_datagram_meta(self.now, RecvMeta { from, local }, &mut bytes);
                }
                self.drain();
            }
            for n in &mut self.nodes {
                n.node.handle_timeout(self.now);
            }
        }
    }

    pub fn established(&self, i: usize, peer: PeerId) -> Option<SessionId> {
        self.nodes[i].events.iter().rev().find_map(|e| match e {
            Event::SessionEstablished {
                session, peer: p, ..
            } if *p == peer => Some(*session),
            _ => None,
        })
    }

    pub fn has_event(&self, i: usize, f: impl Fn(&Event) -> bool) -> bool {
        self.nodes[i].events.iter().any(f)
    }

    pub fn ping(&mut self, i: usize, s: SessionId) -> bool {
        let now = self.now;
        let id = self.nodes[i].node.ping(now, s).unwrap();
        self.run_for(Duration::from_millis(500));
        self.nodes[i]
            .events
            .iter()
            .any(|e| matches!(e, Event::Pong { id: x, .. } if *x == id))
    }
}
