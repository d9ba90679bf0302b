//! The structured trace: every decision the simulator makes (send, link verdict, NAT
//! translation, mapping created or expired, delivery, drop with its reason, timer, node event,
//! fault) becomes a [`Record`] stamped with simulated time and folded into a running hash.
//! Two runs with the same seed must produce the same hash; the last records are kept for a
//! failure report, all of them on request, and `SIM_LOG=1` prints them as they happen.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use tern_core::{CloseReason, Event, SessionId};

use crate::clock::SimTime;
use crate::fault::Fault;
use crate::ids::{HostId, NatId, PacketId, RealmId};

/// Why the simulator dropped a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The link direction is partitioned.
    Partitioned,
    /// Larger than the link MTU.
    Mtu,
    /// Tail drop: the link queue was full.
    QueueFull,
    /// Random loss on the link.
    Loss,
    /// UDP is blocked for this host or by this NAT.
    UdpBlocked,
    /// No host or NAT owns the destination address in this realm, and no way out.
    NoRoute,
    /// Inbound to a NAT public port with no live mapping (never created, or expired).
    NoMapping,
    /// A mapping exists but its filter does not admit this source.
    Filtered,
    /// The internal host already holds its quota of mappings.
    QuotaExceeded,
    /// The NAT found no free public port.
    PortsExhausted,
    /// Sent to the NAT's own public address from inside, and hairpinning is off.
    HairpinDisabled,
    /// Nothing listens on the destination port of the host.
    PortUnreachable,
    /// A node asked to send from an address that is not the host's.
    SourceNotLocal,
    /// The simulator models IPv4 only.
    NotIpv4,
    /// The internet drops everything between these two public addresses
    /// ([`Fault::Blackhole`]).
    Blackholed,
}

impl DropReason {
    /// A stable snake_case name.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Partitioned => "partitioned",
            DropReason::Mtu => "mtu",
            DropReason::QueueFull => "queue_full",
            DropReason::Loss => "loss",
            DropReason::UdpBlocked => "udp_blocked",
            DropReason::NoRoute => "no_route",
            DropReason::NoMapping => "no_mapping",
            DropReason::Filtered => "filtered",
            DropReason::QuotaExceeded => "quota_exceeded",
            DropReason::PortsExhausted => "ports_exhausted",
            DropReason::HairpinDisabled => "hairpin_disabled",
            DropReason::PortUnreachable => "port_unreachable",
            DropReason::SourceNotLocal => "source_not_local",
            DropReason::NotIpv4 => "not_ipv4",
            DropReason::Blackholed => "blackholed",
        }
    }
}

/// Where along the path something happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hop {
    /// The host itself (socket layer).
    Host(HostId),
    /// The host's access link, host → network.
    Uplink(HostId),
    /// The host's access link, network → host.
    Downlink(HostId),
    /// A NAT.
    Nat(NatId),
    /// Routing inside a realm.
    Realm(RealmId),
}

/// A node event, reduced to hashable fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventSummary {
    /// `SessionEstablished`.
    Established {
        /// The session.
        session: SessionId,
        /// True on the dialing side.
        initiator: bool,
    },
    /// `SessionClosed`.
    Closed {
        /// The session.
        session: SessionId,
        /// The reason's variant name.
        reason: &'static str,
    },
    /// `Pong`.
    Pong {
        /// The session.
        session: SessionId,
        /// The ping id.
        id: u64,
        /// Measured round trip.
        rtt: Duration,
    },
    /// `PathChanged`.
    PathChanged {
        /// The session.
        session: SessionId,
        /// The new remote address (`None` when the session moved to a relay).
        remote: Option<SocketAddr>,
    },
    /// `IncomingRefused`.
    IncomingRefused,
    /// An event kind this version does not summarise.
    Other,
}

impl EventSummary {
    /// Summarises a core event.
    pub fn of(e: &Event) -> Self {
        match *e {
            Event::SessionEstablished {
                session, initiator, ..
            } => EventSummary::Established { session, initiator },
            Event::SessionClosed {
                session, reason, ..
            } => EventSummary::Closed {
                session,
                reason: close_reason_name(&reason),
            },
            Event::Pong { session, id, rtt } => EventSummary::Pong { session, id, rtt },
            Event::PathChanged { session, path } => EventSummary::PathChanged {
                session,
                remote: match path {
                    tern_core::PathInfo::Direct(a) => Some(a),
                    _ => None,
                },
            },
            Event::IncomingRefused { .. } => EventSummary::IncomingRefused,
            _ => EventSummary::Other,
        }
    }
}

fn close_reason_name(r: &CloseReason) -> &'static str {
    match r {
        CloseReason::Local { .. } => "local",
        CloseReason::Peer { .. } => "peer",
        CloseReason::Refused => "refused",
        CloseReason::PeerMismatch { .. } => "peer_mismatch",
        CloseReason::HandshakeTimeout => "handshake_timeout",
        CloseReason::IdleTimeout => "idle_timeout",
        CloseReason::KeysExhausted => "keys_exhausted",
        _ => "other",
    }
}

/// One decision.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Record {
    /// A host put a datagram on its uplink. `digest` hashes the payload.
    Send {
        /// Sender.
        host: HostId,
        /// New packet.
        pkt: PacketId,
        /// Source socket.
        src: SocketAddr,
        /// Destination.
        dst: SocketAddr,
        /// Payload length.
        len: usize,
        /// FNV-1a of the payload.
        digest: u64,
    },
    /// A datagram was injected into the internet with a source of the test's choosing (a
    /// spoofing attacker).
    Inject {
        /// New packet.
        pkt: PacketId,
        /// Claimed source.
        src: SocketAddr,
        /// Destination.
        dst: SocketAddr,
        /// Payload length.
        len: usize,
        /// FNV-1a of the payload.
        digest: u64,
    },
    /// A link duplicated `pkt` as `copy`.
    Duplicate {
        /// Original.
        pkt: PacketId,
        /// The copy's id.
        copy: PacketId,
        /// Where.
        hop: Hop,
    },
    /// A link flipped a bit in `pkt`.
    Corrupt {
        /// The packet.
        pkt: PacketId,
        /// Where.
        hop: Hop,
    },
    /// `pkt` was dropped.
    Drop {
        /// The packet.
        pkt: PacketId,
        /// Where.
        hop: Hop,
        /// Why.
        reason: DropReason,
    },
    /// A NAT rewrote `pkt`'s addresses (outbound: source; inbound: destination).
    Translate {
        /// The NAT.
        nat: NatId,
        /// The packet.
        pkt: PacketId,
        /// Direction.
        outbound: bool,
        /// Source after translation.
        src: SocketAddr,
        /// Destination after translation.
        dst: SocketAddr,
    },
    /// A NAT turned `pkt` around (hairpin).
    Hairpin {
        /// The NAT.
        nat: NatId,
        /// The packet.
        pkt: PacketId,
    },
    /// A NAT created a mapping.
    MapCreate {
        /// The NAT.
        nat: NatId,
        /// Inside socket.
        internal: SocketAddr,
        /// Public socket.
        external: SocketAddr,
        /// The destination that caused it.
        remote: SocketAddr,
    },
    /// A NAT removed a mapping (timeout, reboot, rebind).
    MapExpire {
        /// The NAT.
        nat: NatId,
        /// Inside socket.
        internal: SocketAddr,
        /// Public socket.
        external: SocketAddr,
        /// When it expired (≤ the record's time: expiry is applied lazily).
        at: Duration,
    },
    /// A packet reached a host.
    Deliver {
        /// Receiver.
        host: HostId,
        /// The packet.
        pkt: PacketId,
        /// Source as seen by the receiver.
        src: SocketAddr,
        /// Local socket it arrived on.
        dst: SocketAddr,
        /// Payload length.
        len: usize,
    },
    /// A node timer fired.
    Wake {
        /// The host.
        host: HostId,
    },
    /// An application timer fired.
    AppTimer {
        /// The host.
        host: HostId,
        /// The application's tag.
        tag: u64,
    },
    /// A node reported an event.
    NodeEvent {
        /// The host.
        host: HostId,
        /// What.
        event: EventSummary,
    },
    /// A fault was applied.
    Fault(Fault),
}

/// Packet conservation counters: `created == delivered + dropped + in_flight` always.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets created (sends and duplicates).
    pub created: u64,
    /// Packets handed to a host.
    pub delivered: u64,
    /// Packets dropped, by reason.
    pub dropped: BTreeMap<DropReason, u64>,
    /// Packets corrupted in flight (still delivered or dropped later).
    pub corrupted: u64,
    /// Duplicates made (included in `created`).
    pub duplicated: u64,
}

impl Counters {
    /// Total drops.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Drops for one reason.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.dropped.get(&r).copied().unwrap_or(0)
    }
}

/// Deterministic 64-bit FNV-1a, used for the trace hash and payload digests.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// FNV-1a of a byte string.
pub fn digest(bytes: &[u8]) -> u64 {
    let mut h = Fnv::default();
    h.write(bytes);
    h.finish()
}

/// How many records to keep in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Only the hash and counters.
    None,
    /// The last `n` (for failure reports; the default is 64).
    Last(usize),
    /// Everything (tests that inspect the trace).
    All,
}

/// The trace of one run.
#[derive(Debug)]
pub struct Trace {
    hash: Fnv,
    len: u64,
    keep: Keep,
    records: VecDeque<(Duration, Record)>,
    log: bool,
    counters: Counters,
}

impl Trace {
    /// An empty trace; `log` prints every record to stderr as it is made.
    pub fn new(keep: Keep, log: bool) -> Self {
        Self {
            hash: Fnv::default(),
            len: 0,
            keep,
            records: VecDeque::new(),
            log,
            counters: Counters::default(),
        }
    }

    /// Appends a record made at `at`.
    pub fn push(&mut self, at: Duration, r: Record) {
        at.hash(&mut self.hash);
        r.hash(&mut self.hash);
        self.len += 1;
        if self.log {
            eprintln!("[{}] {:?}", SimTime(at), r);
        }
        match self.keep {
            Keep::None => {}
            Keep::Last(n) => {
                if n > 0 {
                    if self.records.len() == n {
                        self.records.pop_front();
                    }
                    self.records.push_back((at, r));
                }
            }
            Keep::All => self.records.push_back((at, r)),
        }
    }

    /// Changes what is kept from now on.
    pub fn set_keep(&mut self, keep: Keep) {
        self.keep = keep;
    }

    /// The running hash over every record so far.
    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    /// Records made so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kept records, oldest first.
    pub fn records(&self) -> impl Iterator<Item = &(Duration, Record)> {
        self.records.iter()
    }

    /// Conservation and drop counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(crate) fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }
}

impl fmt::Display for Trace {
    /// The kept records, one per line, stamped with simulated time.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (at, r) in &self.records {
            writeln!(f, "[{}] {:?}", SimTime(*at), r)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_time_and_content_and_keep_bounds_memory() {
        let r = Record::Wake { host: HostId(1) };
        let mut a = Trace::new(Keep::Last(2), false);
        let mut b = Trace::new(Keep::None, false);
        for i in 0..5 {
            a.push(Duration::from_millis(i), r.clone());
            b.push(Duration::from_millis(i), r.clone());
        }
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.records().count(), 2);
        assert_eq!(b.records().count(), 0);
        let mut c = Trace::new(Keep::None, false);
        for i in 0..5 {
            c.push(Duration::from_millis(i + 1), r.clone());
        }
        assert_ne!(a.hash(), c.hash());
        assert_ne!(digest(b"ab"), digest(b"ba"));
    }
}
