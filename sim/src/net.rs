//! Address realms and routing. Realm 0 is the internet; every NAT creates the realm it serves.
//! A packet is routed hop by hop: delivered to a host that owns the destination IP in the
//! current realm, handed inbound to a child NAT that owns it, turned around by the realm's own
//! NAT if it is that NAT's public address (hairpin), or handed outbound to the realm's NAT.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::ids::{HostId, NatId, PacketId, RealmId};
use crate::nat::{Hairpin, Nat};
use crate::trace::{DropReason, Hop, Record, Trace};

/// One address space.
#[derive(Clone, Debug)]
pub struct Realm {
    /// The realm's handle.
    pub id: RealmId,
    /// The NAT that serves it (`None` for the internet).
    pub gateway: Option<NatId>,
    hosts: BTreeMap<Ipv4Addr, HostId>,
    nats: BTreeMap<Ipv4Addr, NatId>,
    base: u32,
    next: u32,
}

impl Realm {
    /// A realm. The internet numbers hosts from 198.18.0.1 (the benchmarking range, never
    /// routed); realm `k` behind a NAT uses 10.k.0.2 onwards (wrapping into 11.x… past 255).
    pub fn new(id: RealmId, gateway: Option<NatId>) -> Self {
        let base = if id == RealmId::INTERNET {
            u32::from(Ipv4Addr::new(198, 18, 0, 0))
        } else {
            u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (id.0 << 16)
        };
        Self {
            id,
            gateway,
            hosts: BTreeMap::new(),
            nats: BTreeMap::new(),
            base,
            next: if id == RealmId::INTERNET { 1 } else { 2 },
        }
    }

    /// A fresh address in this realm.
    pub fn allocate(&mut self) -> Ipv4Addr {
        let ip = Ipv4Addr::from(self.base + self.next);
        self.next += 1;
        ip
    }

    /// Who owns `ip` here.
    pub fn host_at(&self, ip: Ipv4Addr) -> Option<HostId> {
        self.hosts.get(&ip).copied()
    }
}

/// Where a routed packet ends up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// The receiving host.
    pub host: HostId,
    /// Source as the host sees it (after NATs).
    pub src: SocketAddrV4,
    /// Destination socket on the host.
    pub dst: SocketAddrV4,
}

/// Every realm and NAT.
#[derive(Debug, Default)]
pub struct Net {
    /// Realms by id.
    pub realms: Vec<Realm>,
    /// NATs by id.
    pub nats: Vec<Nat>,
    /// Pairs of public addresses (smaller first) the internet drops datagrams between.
    pub blackholes: BTreeSet<(Ipv4Addr, Ipv4Addr)>,
}

/// Deepest NAT nesting routing follows before giving up (guards against a miswired loop).
const MAX_HOPS: usize = 32;

impl Net {
    /// Registers a host's address in a realm.
    pub fn attach_host(&mut self, realm: RealmId, ip: Ipv4Addr, host: HostId) {
        self.realms[realm.0 as usize].hosts.insert(ip, host);
    }

    /// Removes a host's address from a realm.
    pub fn detach_host(&mut self, realm: RealmId, ip: Ipv4Addr) {
        self.realms[realm.0 as usize].hosts.remove(&ip);
    }

    /// Registers a NAT's public address in its outside realm.
    pub fn attach_nat(&mut self, realm: RealmId, ip: Ipv4Addr, nat: NatId) {
        self.realms[realm.0 as usize].nats.insert(ip, nat);
    }

    /// Removes a NAT's public address.
    pub fn detach_nat(&mut self, realm: RealmId, ip: Ipv4Addr) {
        self.realms[realm.0 as usize].nats.remove(&ip);
    }

    /// Routes a packet that entered `realm` at `now`. NAT mappings are created, refreshed
    /// and checked here; every translation is traced.
    pub fn route(
        &mut self,
        now: Duration,
        mut realm: RealmId,
        pkt: PacketId,
        mut src: SocketAddrV4,
        mut dst: SocketAddrV4,
        trace: &mut Trace,
    ) -> Result<Arrival, (Hop, DropReason)> {
        for _ in 0..MAX_HOPS {
            if realm == RealmId::INTERNET && !self.blackholes.is_empty() {
                let (x, y) = (*src.ip(), *dst.ip());
                if self.blackholes.contains(&(x.min(y), x.max(y))) {
                    return Err((Hop::Realm(realm), DropReason::Blackholed));
                }
            }
            let r = &self.realms[realm.0 as usize];
            if let Some(host) = r.host_at(*dst.ip()) {
                return Ok(Arrival { host, src, dst });
            }
            if let Some(&n) = r.nats.get(dst.ip()) {
                let nat = &mut self.nats[n.0 as usize];
                let internal = nat
                    .inbound(now, src, dst, trace)
                    .map_err(|e| (Hop::Nat(n), e))?;
                dst = internal;
                realm = nat.inside();
                trace.push(
                    now,
                    Record::Translate {
                        nat: n,
                        pkt,
                        outbound: false,
                        src: src.into(),
                        dst: dst.into(),
                    },
                );
                continue;
            }
            let Some(g) = r.gateway else {
                return Err((Hop::Realm(realm), DropReason::NoRoute));
            };
            let nat = &mut self.nats[g.0 as usize];
            if nat.owns(*dst.ip()) {
                let Hairpin::On { external_source } = nat.config().hairpin else {
                    return Err((Hop::Nat(g), DropReason::HairpinDisabled));
                };
                let public_src = nat
                    .outbound(now, src, dst, trace)
                    .map_err(|e| (Hop::Nat(g), e))?;
                let internal = nat
                    .inbound(now, public_src, dst, trace)
                    .map_err(|e| (Hop::Nat(g), e))?;
                if external_source {
                    src = public_src;
                }
                dst = internal;
                trace.push(now, Record::Hairpin { nat: g, pkt });
                continue;
            }
            let public_src = nat
                .outbound(now, src, dst, trace)
                .map_err(|e| (Hop::Nat(g), e))?;
            src = public_src;
            realm = nat.outside();
            trace.push(
                now,
                Record::Translate {
                    nat: g,
                    pkt,
                    outbound: true,
                    src: src.into(),
                    dst: dst.into(),
                },
            );
        }
        Err((Hop::Realm(realm), DropReason::NoRoute))
    }
}
