//! Faults: things that happen to the network during a run, applied at a scheduled instant
//! (`Topology::fault`, `Sim::schedule`) or at once (`Sim::apply`).

use crate::ids::{HostId, NatId, RealmId};

/// Which direction(s) of a host's access link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Host → network.
    Up,
    /// Network → host.
    Down,
    /// Both.
    Both,
}

impl Direction {
    /// Whether this covers the uplink.
    pub fn up(self) -> bool {
        matches!(self, Direction::Up | Direction::Both)
    }

    /// Whether this covers the downlink.
    pub fn down(self) -> bool {
        matches!(self, Direction::Down | Direction::Both)
    }
}

/// A scheduled change to the network.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Cut a host's access link (one way or both): every packet is dropped until healed.
    Partition {
        /// The host.
        host: HostId,
        /// Which way.
        direction: Direction,
    },
    /// Restore a partitioned link.
    Heal {
        /// The host.
        host: HostId,
        /// Which way.
        direction: Direction,
    },
    /// The NAT loses every mapping; recreated mappings get different public ports.
    NatRebind(NatId),
    /// The NAT restarts: mappings lost, allocators reset.
    NatReboot(NatId),
    /// The NAT gets fresh public IPs (the ISP renumbered it); mappings lost.
    NatNewPublicIp(NatId),
    /// Turn UDP blocking on or off at a NAT.
    NatBlockUdp {
        /// The NAT.
        nat: NatId,
        /// Block or allow.
        blocked: bool,
    },
    /// The host moves to a fresh address in `realm` (a new Wi-Fi, a switch to cellular).
    /// With `notify`, its node is told (`handle_network_change`), as a driver watching the
    /// interfaces would.
    Roam {
        /// The host.
        host: HostId,
        /// The realm it joins (its current one for a plain IP change).
        realm: RealmId,
        /// Tell the node.
        notify: bool,
    },
    /// Change the IP MTU of a host's access link (one way or both); larger packets vanish
    /// from then on (a route change to a narrower path: a PMTU black hole).
    LinkMtu {
        /// The host.
        host: HostId,
        /// Which way.
        direction: Direction,
        /// The new IP MTU in bytes.
        mtu: usize,
    },
    /// The internet drops (or, with `blocked: false`, stops dropping) every datagram between
    /// the two hosts' public addresses, both ways: their direct path dies while each still
    /// reaches everyone else (the relay). Public addresses are taken when the fault applies.
    Blackhole {
        /// One host.
        a: HostId,
        /// The other.
        b: HostId,
        /// Drop or heal.
        blocked: bool,
    },
    /// Turn UDP blocking on or off for one host (both ways).
    HostBlockUdp {
        /// The host.
        host: HostId,
        /// Block or allow.
        blocked: bool,
    },
}
