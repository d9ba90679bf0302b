//! What the node knows about its own reachability, for hole punching: its local sockets
//! (host candidates), its extra punching sockets, and the reflexive addresses the
//! rendezvous server observed (kept in `NatLocal`, fed by the rendezvous client). When any
//! of it changes, every relayed-then-punched session tells its peer again, and both sides
//! punch anew.

use std::net::SocketAddr;

use super::Node;
use crate::nat::{self, Hints};

impl Node {
    /// The local addresses peers may reach this node at directly (its LAN candidates): the
    /// driver reports its bound sockets (with the interface addresses, for wildcard binds),
    /// at start and after every network change.
    pub fn set_local_addresses(&mut self, addrs: &[SocketAddr]) {
        let host: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .take(nat::MAX_HOST_CANDIDATES)
            .collect();
        if host != self.nat.host {
            self.nat.host = host;
            self.nat_changed();
        }
    }

    /// Extra local sockets for hole punching behind an endpoint-dependent NAT with random
    /// ports (the driver binds them; probes go out of each so the NAT opens one mapping per
    /// socket; at most [`nat::MAX_PUNCH_SOCKETS`] are used).
    pub fn set_punch_sockets(&mut self, addrs: &[SocketAddr]) {
        self.nat.punch_sockets = addrs.iter().copied().take(nat::MAX_PUNCH_SOCKETS).collect();
    }

    /// The NAT hints this node currently sends its peers (its candidates, its NAT's mapping
    /// behaviour as the two server addresses showed it).
    pub fn nat_hints(&self) -> Hints {
        self.nat.hints()
    }

    /// Our candidates changed: every session that came through a relay sends its peer the
    /// new ones (which makes both sides punch again).
    pub(super) fn nat_changed(&mut self) {
        self.nat.generation += 1;
        for slot in 0..self.slots.len() as u32 {
            self.with_session(slot, |s, _| s.on_local_candidates_changed());
        }
    }

    /// Records what the rendezvous server's first (`which == 0`) or second address observed.
    /// Returns whether it changed.
    pub(super) fn set_observed(&mut self, which: usize, addr: Option<SocketAddr>) -> bool {
        let changed = self.nat.observed[which] != addr;
        self.nat.observed[which] = addr;
        if changed && addr.is_some() {
            // A fresh observation of the allocator: count mappings from here.
            self.nat.reset_allocation();
        }
        changed
    }
}
