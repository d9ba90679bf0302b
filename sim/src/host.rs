//! A simulated host: an address in a realm, an access link, and either a tern node with its
//! application or a raw UDP endpoint that records what it receives (and can answer like a
//! STUN server, to tell a prober its public address).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tern_core::{Event, Node};

use crate::app::App;
use crate::ids::{HostId, RealmId};
use crate::link::LinkState;

/// A datagram a raw host received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawDatagram {
    /// When it arrived.
    pub at: Duration,
    /// Its source as seen by the host (after NATs).
    pub from: SocketAddr,
    /// The local socket it arrived on.
    pub to: SocketAddr,
    /// Payload.
    pub bytes: Vec<u8>,
}

/// A datagram a watched host sent or received (see `Sim::watch`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    /// When.
    pub at: Duration,
    /// Sent by the host (else received).
    pub outgoing: bool,
    /// Source: the host's own socket when sent, the sender as seen after NATs when received.
    pub src: SocketAddr,
    /// Destination: as addressed when sent, the local socket when received.
    pub dst: SocketAddr,
    /// Payload.
    pub bytes: Vec<u8>,
}

/// A raw UDP endpoint.
#[derive(Clone, Debug, Default)]
pub struct RawHost {
    /// Everything received, in order.
    pub received: Vec<RawDatagram>,
    /// Answer each datagram with [`REFLECT_PREFIX`] and the sender's address as text
    /// (`reflect:198.18.0.7:4000`), from the socket it arrived on: a minimal STUN-like
    /// reflector. Answers are never answered, so two reflectors do not loop.
    pub reflect: bool,
    /// Send every datagram straight back, unchanged (two echo hosts loop forever: a livelock
    /// for tests of the step bound).
    pub echo: bool,
}

/// What a reflector's answers start with.
pub const REFLECT_PREFIX: &[u8] = b"reflect:";

/// Parses a reflector's answer into the address it reports.
pub fn parse_reflection(bytes: &[u8]) -> Option<SocketAddr> {
    std::str::from_utf8(bytes.strip_prefix(REFLECT_PREFIX)?)
        .ok()?
        .parse()
        .ok()
}

/// A host running a tern node.
pub struct NodeHost {
    /// The node.
    pub node: Node,
    pub(crate) app: Box<dyn App>,
}

impl fmt::Debug for NodeHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeHost")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// What runs on a host.
#[derive(Debug)]
pub enum HostKind {
    /// A tern node.
    Node(Box<NodeHost>),
    /// A raw endpoint.
    Raw(RawHost),
}

/// One host.
#[derive(Debug)]
pub struct Host {
    pub(crate) id: HostId,
    pub(crate) name: String,
    pub(crate) realm: RealmId,
    pub(crate) ip: Ipv4Addr,
    pub(crate) port: u16,
    pub(crate) extra_ports: Vec<u16>,
    pub(crate) punch_ports: Vec<u16>,
    pub(crate) up: LinkState,
    pub(crate) down: LinkState,
    pub(crate) udp_blocked: bool,
    pub(crate) kind: HostKind,
    pub(crate) bound: BTreeSet<u16>,
    pub(crate) events: Vec<(Duration, Event)>,
    pub(crate) wake_at: Option<Duration>,
    pub(crate) wake_gen: u64,
    pub(crate) captured: Option<Vec<Captured>>,
}

impl Host {
    /// Its handle.
    pub fn id(&self) -> HostId {
        self.id
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The realm it lives in.
    pub fn realm(&self) -> RealmId {
        self.realm
    }

    /// Its default socket (its address in its realm).
    pub fn addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip, self.port)
    }

    /// Every socket the host listens on: the default one first, then its extra ports.
    pub fn sockets(&self) -> Vec<SocketAddr> {
        std::iter::once(self.port)
            .chain(self.extra_ports.iter().copied())
            .map(|p| SocketAddr::from((self.ip, p)))
            .collect()
    }

    /// The host's extra hole-punching sockets.
    pub fn punch_sockets(&self) -> Vec<SocketAddr> {
        self.punch_ports
            .iter()
            .map(|p| SocketAddr::from((self.ip, *p)))
            .collect()
    }

    /// Host → network link.
    pub fn uplink(&self) -> &LinkState {
        &self.up
    }

    /// Network → host link.
    pub fn downlink(&self) -> &LinkState {
        &self.down
    }

    /// The node, if it runs one.
    pub fn node(&self) -> Option<&Node> {
        match &self.kind {
            HostKind::Node(n) => Some(&n.node),
            HostKind::Raw(_) => None,
        }
    }

    /// The raw endpoint, if it is one.
    pub fn raw(&self) -> Option<&RawHost> {
        match &self.kind {
            HostKind::Raw(r) => Some(r),
            HostKind::Node(_) => None,
        }
    }

    /// What the host sent and received since `Sim::watch` (empty if not watched).
    pub fn captured(&self) -> &[Captured] {
        self.captured.as_deref().unwrap_or(&[])
    }

    /// Every node event so far, with its time.
    pub fn events(&self) -> &[(Duration, Event)] {
        &self.events
    }

    /// Whether a datagram to local port `port` has a receiver: raw hosts receive on every
    /// port; a node on its default port and on every port it sent from.
    pub fn accepts(&self, port: u16) -> bool {
        match self.kind {
            HostKind::Raw(_) => true,
            HostKind::Node(_) => port == self.port || self.bound.contains(&port),
        }
    }
}
