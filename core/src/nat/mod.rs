//! NAT traversal logic: what a node tells its peer about how to reach it (candidates and NAT
//! hints), which addresses to probe in return (including predicted ports for
//! endpoint-dependent NATs and birthday-paradox spraying), and the paced probe schedule.
//! Pure functions and small state machines; the session sends the probes (authenticated
//! PATH_CHALLENGEs) and switches paths on the answers.
//!
//! Techniques by NAT pair (`p2p-anchors.md` §4.3): simultaneous open to host and reflexive
//! candidates for endpoint-independent mapping; port prediction (the port the peer's NAT
//! preserves, or the next ports of a sequential allocator) for endpoint-dependent mapping;
//! birthday probing (many random ports, paced) when only one side is endpoint-dependent and
//! random; relay otherwise.

pub mod punch;

use std::net::{IpAddr, SocketAddr};

use crate::rng::NodeRng;
use crate::wire::codec::{BufferTooSmall, Reader, Writer};

pub use punch::Punch;

/// How the NAT in front of a node maps ports, as far as it knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Mapping {
    /// Not known (no or one observation).
    #[default]
    Unknown,
    /// No NAT: the observed address is a local address.
    Public,
    /// Endpoint-independent: one public port for every destination.
    EndpointIndependent,
    /// Endpoint-dependent: a new public port per destination.
    EndpointDependent,
}

impl Mapping {
    fn code(self) -> u8 {
        match self {
            Mapping::Unknown => 0,
            Mapping::Public => 1,
            Mapping::EndpointIndependent => 2,
            Mapping::EndpointDependent => 3,
        }
    }

    fn from_code(c: u8) -> Self {
        match c {
            1 => Mapping::Public,
            2 => Mapping::EndpointIndependent,
            3 => Mapping::EndpointDependent,
            _ => Mapping::Unknown,
        }
    }
}

/// What a node tells its peer (the CANDIDATES frame).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hints {
    /// Its NAT's mapping behaviour.
    pub mapping: Mapping,
    /// Its local UDP port (an endpoint-dependent NAT that preserves ports maps to it).
    pub local_port: u16,
    /// Port difference between its two observations (a sequential allocator's step), 0 if
    /// unknown.
    pub port_step: i32,
    /// Addresses to try: host (LAN) addresses first, then reflexive ones.
    pub addrs: Vec<SocketAddr>,
}

/// Most addresses in a CANDIDATES frame.
pub const MAX_CANDIDATES: usize = 16;

impl Hints {
    /// Classifies the local NAT from the local socket and the addresses two server
    /// addresses observed.
    pub fn classify(local: &[SocketAddr], observed: [Option<SocketAddr>; 2]) -> (Mapping, i32) {
        match observed {
            [Some(a), _] if local.contains(&a) => (Mapping::Public, 0),
            [Some(a), Some(b)] if a == b => (Mapping::EndpointIndependent, 0),
            [Some(a), Some(b)] if a.ip() == b.ip() => (
                Mapping::EndpointDependent,
                i32::from(b.port()) - i32::from(a.port()),
            ),
            [Some(_), Some(_)] => (Mapping::EndpointDependent, 0),
            _ => (Mapping::Unknown, 0),
        }
    }

    /// Encodes the CANDIDATES frame body.
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        w.u8(self.mapping.code())?;
        w.u16(self.local_port)?;
        w.u32(self.port_step as u32)?;
        let n = self.addrs.len().min(MAX_CANDIDATES);
        w.u8(n as u8)?;
        for a in &self.addrs[..n] {
            w.socket_addr(*a)?;
        }
        Ok(())
    }

    /// Decodes a CANDIDATES frame body (`None` if malformed).
    pub fn decode(data: &[u8]) -> Option<Self> {
        let mut r = Reader::new(data);
        let mapping = Mapping::from_code(r.u8()?);
        let local_port = r.u16()?;
        let port_step = r.u32()? as i32;
        let n = usize::from(r.u8()?);
        if n > MAX_CANDIDATES {
            return None;
        }
        let addrs = (0..n)
            .map(|_| r.socket_addr())
            .collect::<Option<Vec<_>>>()?;
        r.is_empty().then_some(Self {
            mapping,
            local_port,
            port_step,
            addrs,
        })
    }

    /// The peer's public IP as its reflexive candidates show it.
    fn public_ip(&self) -> Option<IpAddr> {
        self.addrs.last().map(SocketAddr::ip)
    }
}

/// Birthday probing: ports sprayed at an endpoint-dependent-random peer (≈ 98 % with 256
/// mappings on the peer side, `p2p-anchors.md` §2.2).
pub const BIRTHDAY_PROBES: usize = 1024;
/// Port prediction: next ports tried after the last observed one (sequential allocators).
pub const PREDICT_SPAN: i32 = 8;

/// Addresses to probe for `peer`, given what we know about our own NAT: the peer's
/// candidates, then predicted ports, then (only when we are endpoint-independent and the
/// peer is endpoint-dependent with no usable prediction) random ports for birthday probing.
pub fn targets(peer: &Hints, ours: Mapping, rng: &mut NodeRng) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    let add = |out: &mut Vec<SocketAddr>, a: SocketAddr| {
        if a.port() != 0 && !out.contains(&a) {
            out.push(a);
        }
    };
    for a in &peer.addrs {
        add(&mut out, *a);
    }
    if peer.mapping != Mapping::EndpointDependent {
        return out;
    }
    let Some(ip) = peer.public_ip() else {
        return out;
    };
    // Preserved port: the NAT reuses the local port for each new destination when free.
    add(&mut out, SocketAddr::new(ip, peer.local_port));
    // Sequential allocation: the mapping toward us is the next one (or a few later).
    if peer.port_step != 0
        && let Some(last) = peer.addrs.last()
    {
        for k in 1..=PREDICT_SPAN {
            let p = i32::from(last.port()) + k * peer.port_step;
            if let Ok(p) = u16::try_from(p) {
                add(&mut out, SocketAddr::new(ip, p));
            }
        }
    }
    // Random allocation: spray, if our own mapping is stable enough to be found.
    if matches!(ours, Mapping::EndpointIndependent | Mapping::Public) {
        for _ in 0..BIRTHDAY_PROBES {
            let p = 1024 + (rng.u32() % (65536 - 1024)) as u16;
            add(&mut out, SocketAddr::new(ip, p));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classification_from_two_observations() {
        let local = [a("192.168.1.2:4000")];
        assert_eq!(
            Hints::classify(&local, [Some(local[0]), Some(local[0])]).0,
            Mapping::Public
        );
        assert_eq!(
            Hints::classify(&local, [Some(a("1.2.3.4:4000")), Some(a("1.2.3.4:4000"))]).0,
            Mapping::EndpointIndependent
        );
        assert_eq!(
            Hints::classify(&local, [Some(a("1.2.3.4:5000")), Some(a("1.2.3.4:5002"))]),
            (Mapping::EndpointDependent, 2)
        );
        assert_eq!(
            Hints::classify(&local, [Some(a("1.2.3.4:5000")), None]).0,
            Mapping::Unknown
        );
    }

    #[test]
    fn hints_round_trip() {
        let h = Hints {
            mapping: Mapping::EndpointDependent,
            local_port: 4000,
            port_step: -3,
            addrs: vec![a("10.0.0.2:4000"), a("[2001:db8::1]:9"), a("1.2.3.4:5000")],
        };
        let mut buf = [0u8; 256];
        let mut w = Writer::new(&mut buf);
        h.encode(&mut w).unwrap();
        let n = w.len();
        assert_eq!(Hints::decode(&buf[..n]), Some(h));
        assert_eq!(Hints::decode(&buf[..n - 1]), None);
    }

    #[test]
    fn predictions_follow_the_peer_nat() {
        let mut rng = NodeRng::new([1; 32]);
        let eim = Hints {
            mapping: Mapping::EndpointIndependent,
            local_port: 4000,
            port_step: 0,
            addrs: vec![a("10.0.0.2:4000"), a("1.2.3.4:4000")],
        };
        assert_eq!(
            targets(&eim, Mapping::EndpointDependent, &mut rng),
            eim.addrs
        );
        let seq = Hints {
            mapping: Mapping::EndpointDependent,
            local_port: 4000,
            port_step: 1,
            addrs: vec![a("1.2.3.4:6000")],
        };
        let t = targets(&seq, Mapping::EndpointDependent, &mut rng);
        assert!(t.contains(&a("1.2.3.4:4000")), "preserved port");
        assert!(
            t.contains(&a("1.2.3.4:6001")) && t.contains(&a("1.2.3.4:6008")),
            "sequential"
        );
        assert_eq!(
            t.len(),
            2 + PREDICT_SPAN as usize,
            "no spraying from a hard NAT"
        );
        let t = targets(&seq, Mapping::EndpointIndependent, &mut rng);
        assert!(
            t.len() > BIRTHDAY_PROBES,
            "an easy NAT sprays at a hard one"
        );
        assert!(t.iter().all(|x| x.ip() == a("1.2.3.4:1").ip()));
    }
}
