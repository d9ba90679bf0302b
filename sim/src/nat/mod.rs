//! The NAT model (RFC 4787): mapping table, port allocation, filtering, timeouts and faults.
//!
//! Mappings are keyed by the internal socket plus, for endpoint-dependent mapping, the
//! destination IP (ADM) or socket (APDM). Each mapping remembers every remote it sent to
//! (`peers`) with the last refresh time and whether the remote answered; a peer entry lives
//! for `unreplied_timeout` or `established_timeout` after its last refresh, and the mapping
//! lives as long as its longest-lived peer entry. Filtering only considers live peer
//! entries. Expiry is applied lazily, before every operation, in expiry order, and each
//! expiry is traced with the instant it happened.

mod config;

pub use config::{Fallback, Filtering, Hairpin, Mapping, NatConfig, NatPreset, Pooling, PortAlloc};

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use crate::ids::{NatId, RealmId};
use crate::rng::SimRng;
use crate::trace::{DropReason, Record, Trace};

/// Which remotes share a mapping, by mapping behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RemoteKey {
    /// EIM: every remote.
    Any,
    /// ADM: one remote IP.
    Ip(Ipv4Addr),
    /// APDM: one remote socket.
    Sock(SocketAddrV4),
}

#[derive(Clone, Copy, Debug)]
struct Peer {
    last: Duration,
    established: bool,
}

#[derive(Clone, Debug)]
struct Binding {
    internal: SocketAddrV4,
    external: SocketAddrV4,
    remote: RemoteKey,
    peers: BTreeMap<SocketAddrV4, Peer>,
    expires: Duration,
}

/// A read-only view of one live mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappingInfo {
    /// Inside socket.
    pub internal: SocketAddrV4,
    /// Public socket.
    pub external: SocketAddrV4,
    /// Which remotes it serves.
    pub remote: RemoteKey,
    /// When it expires unless refreshed.
    pub expires: Duration,
}

/// Counters of one NAT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatStats {
    /// Mappings created.
    pub created: u64,
    /// Mappings removed (timeout or fault).
    pub expired: u64,
    /// Outbound packets translated.
    pub outbound: u64,
    /// Inbound packets admitted.
    pub inbound: u64,
    /// Inbound packets dropped (no mapping or filtered).
    pub inbound_dropped: u64,
}

/// One NAT box: its configuration, public addresses and mapping table.
#[derive(Debug)]
pub struct Nat {
    id: NatId,
    name: String,
    config: NatConfig,
    public_ips: Vec<Ipv4Addr>,
    outside: RealmId,
    inside: RealmId,
    rng: SimRng,
    bindings: BTreeMap<u64, Binding>,
    next_binding: u64,
    by_key: BTreeMap<(SocketAddrV4, RemoteKey), u64>,
    by_ext: BTreeMap<(SocketAddrV4, RemoteKey), u64>,
    /// Public socket → (internal socket that owns it, number of bindings using it).
    port_owner: BTreeMap<SocketAddrV4, (SocketAddrV4, u32)>,
    per_host: BTreeMap<Ipv4Addr, usize>,
    paired: BTreeMap<Ipv4Addr, Ipv4Addr>,
    seq_next: BTreeMap<Ipv4Addr, u16>,
    blocks: BTreeMap<Ipv4Addr, (Ipv4Addr, u16, u16)>,
    next_block: u32,
    avoid: BTreeMap<SocketAddrV4, SocketAddrV4>,
    expiry: BTreeSet<(Duration, u64)>,
    stats: NatStats,
}

const LOWEST_PORT: u16 = 1024;

impl Nat {
    /// A NAT with empty tables. `public_ips` must not be empty.
    pub fn new(
        id: NatId,
        name: String,
        config: NatConfig,
        public_ips: Vec<Ipv4Addr>,
        outside: RealmId,
        inside: RealmId,
        rng: SimRng,
    ) -> Self {
        assert!(!public_ips.is_empty(), "a NAT needs a public IP");
        Self {
            id,
            name,
            config,
            public_ips,
            outside,
            inside,
            rng,
            bindings: BTreeMap::new(),
            next_binding: 0,
            by_key: BTreeMap::new(),
            by_ext: BTreeMap::new(),
            port_owner: BTreeMap::new(),
            per_host: BTreeMap::new(),
            paired: BTreeMap::new(),
            seq_next: BTreeMap::new(),
            blocks: BTreeMap::new(),
            next_block: 0,
            avoid: BTreeMap::new(),
            expiry: BTreeSet::new(),
            stats: NatStats::default(),
        }
    }

    /// The NAT's handle.
    pub fn id(&self) -> NatId {
        self.id
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its behaviour.
    pub fn config(&self) -> &NatConfig {
        &self.config
    }

    /// Its public addresses (in the outside realm).
    pub fn public_ips(&self) -> &[Ipv4Addr] {
        &self.public_ips
    }

    /// The realm its public side is in.
    pub fn outside(&self) -> RealmId {
        self.outside
    }

    /// The realm it serves.
    pub fn inside(&self) -> RealmId {
        self.inside
    }

    /// Counters.
    pub fn stats(&self) -> &NatStats {
        &self.stats
    }

    /// Live mappings (as of the last operation; call [`Nat::expire`] first for an exact view).
    pub fn mappings(&self) -> impl Iterator<Item = MappingInfo> + '_ {
        self.bindings.values().map(|b| MappingInfo {
            internal: b.internal,
            external: b.external,
            remote: b.remote,
            expires: b.expires,
        })
    }

    /// Live mappings held by one internal IP.
    pub fn mappings_of(&self, ip: Ipv4Addr) -> usize {
        self.per_host.get(&ip).copied().unwrap_or(0)
    }

    /// Turns UDP blocking on or off.
    pub fn set_block_udp(&mut self, block: bool) {
        self.config.block_udp = block;
    }

    fn remote_key(&self, remote: SocketAddrV4) -> RemoteKey {
        match self.config.mapping {
            Mapping::EndpointIndependent => RemoteKey::Any,
            Mapping::AddressDependent => RemoteKey::Ip(*remote.ip()),
            Mapping::AddressAndPortDependent => RemoteKey::Sock(remote),
        }
    }

    fn peer_expiry(&self, p: &Peer) -> Duration {
        p.last
            + if p.established {
                self.config.established_timeout
            } else {
                self.config.unreplied_timeout
            }
    }

    fn reschedule(&mut self, id: u64, now: Duration) {
        let Some(b) = self.bindings.get(&id) else {
            return;
        };
        let old = b.expires;
        let live: BTreeMap<SocketAddrV4, Peer> = b
            .peers
            .iter()
            .filter(|(_, p)| self.peer_expiry(p) > now)
            .map(|(a, p)| (*a, *p))
            .collect();
        let new = live
            .values()
            .map(|p| self.peer_expiry(p))
            .max()
            .unwrap_or(now);
        let b = self.bindings.get_mut(&id).expect("checked above");
        b.peers = live;
        b.expires = new;
        self.expiry.remove(&(old, id));
        self.expiry.insert((new, id));
    }

    /// Removes every mapping whose time has come (expiry ≤ `now`), tracing each.
    pub fn expire(&mut self, now: Duration, trace: &mut Trace) {
        while let Some(&(at, id)) = self.expiry.first() {
            if at > now {
                break;
            }
            self.remove(id, at, now, trace);
        }
    }

    fn remove(&mut self, id: u64, at: Duration, now: Duration, trace: &mut Trace) {
        let Some(b) = self.bindings.remove(&id) else {
            return;
        };
        self.expiry.remove(&(b.expires, id));
        self.by_key.remove(&(b.internal, b.remote));
        self.by_ext.remove(&(b.external, b.remote));
        if let Some(owner) = self.port_owner.get_mut(&b.external) {
            owner.1 -= 1;
            if owner.1 == 0 {
                self.port_owner.remove(&b.external);
            }
        }
        if let Some(n) = self.per_host.get_mut(b.internal.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_host.remove(b.internal.ip());
            }
        }
        self.stats.expired += 1;
        trace.push(
            now,
            Record::MapExpire {
                nat: self.id,
                internal: b.internal.into(),
                external: b.external.into(),
                at,
            },
        );
    }

    /// Translates an outbound packet from `internal` to `remote`: finds or creates the
    /// mapping, refreshes it, and returns the public source. Fails with `UdpBlocked`,
    /// `QuotaExceeded` or `PortsExhausted`.
    pub fn outbound(
        &mut self,
        now: Duration,
        internal: SocketAddrV4,
        remote: SocketAddrV4,
        trace: &mut Trace,
    ) -> Result<SocketAddrV4, DropReason> {
        self.expire(now, trace);
        if self.config.block_udp {
            return Err(DropReason::UdpBlocked);
        }
        let rk = self.remote_key(remote);
        let id = match self.by_key.get(&(internal, rk)) {
            Some(&id) => id,
            None => self.create(now, internal, remote, rk, trace)?,
        };
        let (unreplied, established) = (
            self.config.unreplied_timeout,
            self.config.established_timeout,
        );
        let b = self.bindings.get_mut(&id).expect("indexed binding exists");
        let p = b.peers.entry(remote).or_insert(Peer {
            last: now,
            established: false,
        });
        let lifetime = if p.established {
            established
        } else {
            unreplied
        };
        if p.last + lifetime <= now {
            // The old entry expired (not yet pruned): this is a new, unreplied flow.
            p.established = false;
        }
        p.last = now;
        let external = b.external;
        self.reschedule(id, now);
        self.stats.outbound += 1;
        Ok(external)
    }

    fn create(
        &mut self,
        now: Duration,
        internal: SocketAddrV4,
        remote: SocketAddrV4,
        rk: RemoteKey,
        trace: &mut Trace,
    ) -> Result<u64, DropReason> {
        if let Some(q) = self.config.max_mappings_per_host
            && self.mappings_of(*internal.ip()) >= q
        {
            return Err(DropReason::QuotaExceeded);
        }
        let external = self.allocate(internal).ok_or(DropReason::PortsExhausted)?;
        let id = self.next_binding;
        self.next_binding += 1;
        self.bindings.insert(
            id,
            Binding {
                internal,
                external,
                remote: rk,
                peers: BTreeMap::new(),
                expires: now,
            },
        );
        self.expiry.insert((now, id));
        self.by_key.insert((internal, rk), id);
        self.by_ext.insert((external, rk), id);
        self.port_owner.entry(external).or_insert((internal, 0)).1 += 1;
        *self.per_host.entry(*internal.ip()).or_insert(0) += 1;
        self.stats.created += 1;
        trace.push(
            now,
            Record::MapCreate {
                nat: self.id,
                internal: internal.into(),
                external: external.into(),
                remote: remote.into(),
            },
        );
        Ok(id)
    }

    fn public_ip_for(&mut self, internal: Ipv4Addr) -> Ipv4Addr {
        let n = self.public_ips.len() as u64;
        match self.config.pooling {
            Pooling::Arbitrary => self.public_ips[self.rng.below(n) as usize],
            Pooling::Paired => {
                if let Some(ip) = self.paired.get(&internal) {
                    return *ip;
                }
                let ip = self.public_ips[self.rng.below(n) as usize];
                self.paired.insert(internal, ip);
                ip
            }
        }
    }

    fn port_ok(&self, ip: Ipv4Addr, port: u16, internal: SocketAddrV4, share: bool) -> bool {
        if port < LOWEST_PORT {
            return false;
        }
        if self.config.parity && port % 2 != internal.port() % 2 {
            return false;
        }
        let ext = SocketAddrV4::new(ip, port);
        if self.avoid.get(&internal) == Some(&ext) {
            return false;
        }
        match self.port_owner.get(&ext) {
            None => true,
            // An endpoint-dependent preserving NAT reuses the socket's port for every
            // destination (distinct 5-tuples); anything else needs a free port.
            Some((owner, _)) => share && *owner == internal,
        }
    }

    fn allocate(&mut self, internal: SocketAddrV4) -> Option<SocketAddrV4> {
        let ip = self.public_ip_for(*internal.ip());
        let edm = self.config.mapping.is_endpoint_dependent();
        let port = match self.config.ports {
            PortAlloc::Preserve { fallback } => {
                if self.port_ok(ip, internal.port(), internal, edm) {
                    Some(internal.port())
                } else {
                    match fallback {
                        Fallback::Sequential => self.scan(ip, internal, internal.port(), 1),
                        Fallback::Random => self.random_port(ip, internal, LOWEST_PORT, u16::MAX),
                    }
                }
            }
            PortAlloc::Sequential { start, delta } => {
                let from = self.seq_next.get(&ip).copied().unwrap_or(start);
                let p = self.scan(ip, internal, from, delta.max(1))?;
                self.seq_next.insert(ip, wrap_add(p, delta.max(1)));
                Some(p)
            }
            PortAlloc::Random { lo, hi } => self.random_port(ip, internal, lo.max(LOWEST_PORT), hi),
            PortAlloc::Block { size, start } => return self.block_port(internal, size, start),
        }?;
        Some(SocketAddrV4::new(ip, port))
    }

    /// First acceptable port from `from` on, stepping by `delta` and wrapping.
    fn scan(&self, ip: Ipv4Addr, internal: SocketAddrV4, from: u16, delta: u16) -> Option<u16> {
        let mut p = from.max(LOWEST_PORT);
        for _ in 0..=(u16::MAX - LOWEST_PORT) as u32 {
            if self.port_ok(ip, p, internal, false) {
                return Some(p);
            }
            p = wrap_add(p, delta);
        }
        None
    }

    fn random_port(
        &mut self,
        ip: Ipv4Addr,
        internal: SocketAddrV4,
        lo: u16,
        hi: u16,
    ) -> Option<u16> {
        if lo > hi {
            return None;
        }
        for _ in 0..64 {
            let p = self.rng.range_u16(lo, hi);
            if self.port_ok(ip, p, internal, false) {
                return Some(p);
            }
        }
        let start = self.rng.range_u16(lo, hi);
        (0..=u32::from(hi - lo))
            .map(|i| lo + ((u32::from(start - lo) + i) % (u32::from(hi - lo) + 1)) as u16)
            .find(|p| self.port_ok(ip, *p, internal, false))
    }

    fn block_port(
        &mut self,
        internal: SocketAddrV4,
        size: u16,
        start: u16,
    ) -> Option<SocketAddrV4> {
        let size = size.max(1);
        if !self.blocks.contains_key(internal.ip()) {
            let ip = self.public_ip_for(*internal.ip());
            let per_ip =
                (u32::from(u16::MAX) + 1 - u32::from(start.max(LOWEST_PORT))) / u32::from(size);
            let k = self.next_block;
            // Blocks are numbered across public IPs; block k lives on its paired IP.
            if per_ip == 0 || k >= per_ip * self.public_ips.len() as u32 {
                return None;
            }
            self.next_block += 1;
            let base = start.max(LOWEST_PORT) as u32 + (k % per_ip) * u32::from(size);
            self.blocks.insert(*internal.ip(), (ip, base as u16, 0));
        }
        let (ip, base, cursor) = self.blocks[internal.ip()];
        for i in 0..size {
            let off = (cursor + i) % size;
            let p = base + off;
            if self.port_ok(ip, p, internal, false) {
                self.blocks
                    .insert(*internal.ip(), (ip, base, (off + 1) % size));
                return Some(SocketAddrV4::new(ip, p));
            }
        }
        None
    }

    /// Admits an inbound packet from `remote` to the public socket `external`, returning the
    /// internal destination. Fails with `UdpBlocked`, `NoMapping` (no live mapping owns the
    /// port) or `Filtered` (the mapping exists but the filter rejects `remote`).
    pub fn inbound(
        &mut self,
        now: Duration,
        remote: SocketAddrV4,
        external: SocketAddrV4,
        trace: &mut Trace,
    ) -> Result<SocketAddrV4, DropReason> {
        self.expire(now, trace);
        if self.config.block_udp {
            return Err(DropReason::UdpBlocked);
        }
        let rk = self.remote_key(remote);
        let Some(&id) = self.by_ext.get(&(external, rk)) else {
            self.stats.inbound_dropped += 1;
            return Err(if self.port_owner.contains_key(&external) {
                DropReason::Filtered
            } else {
                DropReason::NoMapping
            });
        };
        let b = &self.bindings[&id];
        let admitted = match self.config.filtering {
            Filtering::EndpointIndependent => true,
            Filtering::AddressDependent => b
                .peers
                .iter()
                .any(|(a, p)| a.ip() == remote.ip() && self.peer_expiry(p) > now),
            Filtering::AddressAndPortDependent => b
                .peers
                .get(&remote)
                .is_some_and(|p| self.peer_expiry(p) > now),
        };
        if !admitted {
            self.stats.inbound_dropped += 1;
            return Err(DropReason::Filtered);
        }
        let refresh = self.config.inbound_refresh;
        let b = self.bindings.get_mut(&id).expect("indexed binding exists");
        let internal = b.internal;
        match b.peers.get_mut(&remote) {
            Some(p) => {
                p.established = true;
                if refresh {
                    p.last = now;
                }
            }
            None if refresh => {
                b.peers.insert(
                    remote,
                    Peer {
                        last: now,
                        established: true,
                    },
                );
            }
            None => {}
        }
        self.reschedule(id, now);
        self.stats.inbound += 1;
        Ok(internal)
    }

    /// True if `ip` is one of this NAT's public addresses.
    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        self.public_ips.contains(&ip)
    }

    /// Fault: every mapping is lost and, when recreated, gets a different public port than
    /// before (a NAT that rebinds, e.g. after a conntrack flush).
    pub fn rebind(&mut self, now: Duration, trace: &mut Trace) {
        let ids: Vec<u64> = self.bindings.keys().copied().collect();
        for id in ids {
            let b = &self.bindings[&id];
            self.avoid.insert(b.internal, b.external);
            self.remove(id, now, now, trace);
        }
    }

    /// Fault: the NAT restarts: every mapping is lost and allocators start over.
    pub fn reboot(&mut self, now: Duration, trace: &mut Trace) {
        let ids: Vec<u64> = self.bindings.keys().copied().collect();
        for id in ids {
            self.remove(id, now, now, trace);
        }
        self.avoid.clear();
        self.paired.clear();
        self.seq_next.clear();
        self.blocks.clear();
        self.next_block = 0;
    }

    /// Fault: the ISP assigns new public IPs; every mapping is lost.
    pub fn change_public_ips(&mut self, now: Duration, ips: Vec<Ipv4Addr>, trace: &mut Trace) {
        assert!(!ips.is_empty(), "a NAT needs a public IP");
        self.reboot(now, trace);
        self.public_ips = ips;
    }

    /// Checks the table's internal consistency and the per-host quota. Used by the fuzz
    /// target and tests; returns a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let n = self.bindings.len();
        if self.by_key.len() != n || self.by_ext.len() != n || self.expiry.len() != n {
            return Err(format!(
                "{}: index sizes differ: bindings {n}, by_key {}, by_ext {}, expiry {}",
                self.name,
                self.by_key.len(),
                self.by_ext.len(),
                self.expiry.len()
            ));
        }
        let refs: u32 = self.port_owner.values().map(|(_, c)| *c).sum();
        if refs as usize != n {
            return Err(format!(
                "{}: port refcounts {refs} != bindings {n}",
                self.name
            ));
        }
        let mut per_host: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
        for (id, b) in &self.bindings {
            if self.by_key.get(&(b.internal, b.remote)) != Some(id)
                || self.by_ext.get(&(b.external, b.remote)) != Some(id)
                || !self.expiry.contains(&(b.expires, *id))
            {
                return Err(format!("{}: binding {id} not indexed", self.name));
            }
            if !self.public_ips.contains(b.external.ip()) {
                return Err(format!("{}: binding {id} uses a foreign IP", self.name));
            }
            *per_host.entry(*b.internal.ip()).or_insert(0) += 1;
        }
        if per_host != self.per_host {
            return Err(format!("{}: per-host counts out of sync", self.name));
        }
        if let Some(q) = self.config.max_mappings_per_host
            && let Some((ip, c)) = per_host.iter().find(|(_, c)| **c > q)
        {
            return Err(format!("{}: {ip} holds {c} mappings, quota {q}", self.name));
        }
        Ok(())
    }
}

fn wrap_add(p: u16, delta: u16) -> u16 {
    let span = u32::from(u16::MAX - LOWEST_PORT) + 1;
    let off = (u32::from(p.max(LOWEST_PORT) - LOWEST_PORT) + u32::from(delta)) % span;
    LOWEST_PORT + off as u16
}

/// Converts to IPv4 or fails with `NotIpv4`.
pub fn v4(a: SocketAddr) -> Result<SocketAddrV4, DropReason> {
    match a {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(_) => Err(DropReason::NotIpv4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Keep;

    fn nat(config: NatConfig) -> (Nat, Trace) {
        let ips = (0..config.public_ips)
            .map(|i| Ipv4Addr::new(203, 0, 113, 1 + i as u8))
            .collect();
        (
            Nat::new(
                NatId(0),
                "n".into(),
                config,
                ips,
                RealmId::INTERNET,
                RealmId(1),
                SimRng::from_seed(1),
            ),
            Trace::new(Keep::None, false),
        )
    }

    fn sa(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn wrap_add_stays_in_range() {
        assert_eq!(wrap_add(65535, 1), 1024);
        assert_eq!(wrap_add(2000, 3), 2003);
        assert_eq!(wrap_add(100, 1), 1025);
    }

    #[test]
    fn quota_and_invariants() {
        let (mut n, mut t) = nat(NatConfig {
            max_mappings_per_host: Some(2),
            ..NatConfig::mobile_hard()
        });
        let s = sa("10.0.0.2:5000");
        let now = Duration::ZERO;
        n.outbound(now, s, sa("1.1.1.1:1"), &mut t).unwrap();
        n.outbound(now, s, sa("1.1.1.1:2"), &mut t).unwrap();
        assert_eq!(
            n.outbound(now, s, sa("1.1.1.1:3"), &mut t),
            Err(DropReason::QuotaExceeded)
        );
        // Another host is not affected.
        n.outbound(now, sa("10.0.0.3:5000"), sa("1.1.1.1:3"), &mut t)
            .unwrap();
        n.check_invariants().unwrap();
        n.expire(Duration::from_secs(3600), &mut t);
        assert_eq!(n.mappings().count(), 0);
        n.check_invariants().unwrap();
    }

    #[test]
    fn block_allocation_gives_each_host_its_own_range() {
        let (mut n, mut t) = nat(NatConfig {
            public_ips: 1,
            ..NatConfig::cgnat()
        });
        let now = Duration::ZERO;
        let a1 = n
            .outbound(now, sa("100.64.0.2:1"), sa("1.1.1.1:1"), &mut t)
            .unwrap();
        let a2 = n
            .outbound(now, sa("100.64.0.2:2"), sa("1.1.1.1:1"), &mut t)
            .unwrap();
        let b1 = n
            .outbound(now, sa("100.64.0.3:1"), sa("1.1.1.1:1"), &mut t)
            .unwrap();
        assert_eq!((a1.port(), a2.port()), (1024, 1025));
        assert_eq!(b1.port(), 1024 + 512);
    }
}
