//! NAT traversal logic: what a node tells its peer about how to reach it (candidates and NAT
//! hints), which addresses to probe in return (including predicted ports for
//! endpoint-dependent NATs and birthday-paradox spraying), and the paced probe schedule.
//! Pure functions and small state machines; the session sends the probes (authenticated
//! PATH_CHALLENGEs) and switches paths on the answers.
//!
//! Techniques by NAT pair (`p2p-anchors.md` §4.3):
//! - endpoint-independent mapping (or a port-preserving endpoint-dependent NAT, which looks
//!   the same from outside): simultaneous open to the host and reflexive candidates;
//! - sequential endpoint-dependent mapping: port prediction. Every new destination costs such
//!   a NAT a port, so a node behind one sends its *first* new probe to the most promising
//!   target (the peer's reflexive address, or the peer's predicted next port when the peer is
//!   sequential too): both NATs then allocate exactly the ports the other side predicted;
//! - random endpoint-dependent mapping against an easy peer: birthday probing. The hard side
//!   opens one mapping per extra socket toward the peer's reflexive address; the easy side
//!   sprays random ports of the hard side's IP once those mappings exist (≈ 98 % per attempt
//!   at 256 × 1024, `p2p-anchors.md` §2.2). A sequential-looking hard side does the same
//!   behind its prediction (two random observations can look sequential by chance): the
//!   prediction answers within the first round, before the spray would start;
//! - both sides endpoint-dependent with at least one random: relay (no probe storm).

pub mod punch;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::rng::NodeRng;
use crate::wire::codec::{BufferTooSmall, Reader, Writer};

pub use punch::{ProbeBudget, Punch};

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

    /// Public or endpoint-independent: one stable public address, the easy side.
    pub fn is_easy(self) -> bool {
        matches!(self, Mapping::Public | Mapping::EndpointIndependent)
    }
}

/// What a node tells its peer (the CANDIDATES frame).
///
/// ```text
/// mapping:u8 local_port:u16 port_step:i32 next_port:u16 punch_sockets:u16 epoch:u8
/// n_host:u8 host_addr*  n_reflexive:u8 reflexive_addr*
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hints {
    /// Its NAT's mapping behaviour.
    pub mapping: Mapping,
    /// Its local UDP port (an endpoint-dependent NAT that preserves ports maps to it).
    pub local_port: u16,
    /// Port difference between its two observations (a sequential allocator's step, in
    /// either order: loss can reorder which observation was allocated first), 0 if unknown.
    pub port_step: i32,
    /// A sequential NAT's side: the public port its next new mapping will most likely get
    /// (the last observed one advanced by every mapping the node has opened since); 0 if
    /// unknown.
    pub next_port: u16,
    /// Extra sockets it sends from when it plays the hard side of birthday probing (the
    /// easy side waits until they have opened their mappings).
    pub punch_sockets: u16,
    /// Bumped by the sender to ask for a new, synchronised attempt: the receiver punches at
    /// once and answers with its own (fresh) candidates, and the sender starts on the
    /// answer, so both work from each other's latest predictions.
    pub epoch: u8,
    /// Host (LAN) addresses.
    pub host: Vec<SocketAddr>,
    /// Server-reflexive addresses, in the order they were observed (the last is the most
    /// recent mapping).
    pub reflexive: Vec<SocketAddr>,
}

/// Most host addresses in a CANDIDATES frame.
pub const MAX_HOST_CANDIDATES: usize = 8;
/// Most reflexive addresses in a CANDIDATES frame.
pub const MAX_REFLEXIVE_CANDIDATES: usize = 4;
/// Most addresses in a CANDIDATES frame.
pub const MAX_CANDIDATES: usize = MAX_HOST_CANDIDATES + MAX_REFLEXIVE_CANDIDATES;
/// Largest port step still taken for a sequential allocator (anything larger, or a change
/// of IP, is treated as random allocation).
pub const MAX_SEQUENTIAL_STEP: i32 = 16;

impl Hints {
    /// Classifies the local NAT from the local sockets and the addresses two server
    /// addresses observed: `(mapping, port step)`.
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

    /// The step of a sequential endpoint-dependent allocator (positive), if the hints show
    /// one.
    pub fn sequential_step(&self) -> Option<i32> {
        // `unsigned_abs`: a peer may send i32::MIN.
        let step = self.port_step.unsigned_abs();
        (self.mapping == Mapping::EndpointDependent
            && step != 0
            && step <= MAX_SEQUENTIAL_STEP.unsigned_abs())
        .then_some(step as i32)
    }

    /// A sequential NAT's most likely next public port: `next_port` if given, else one step
    /// past the highest observation.
    pub fn predicted_next(&self) -> Option<SocketAddr> {
        let step = self.sequential_step()?;
        let ip = self.public_ip()?;
        let highest = self
            .reflexive
            .iter()
            .filter(|a| a.ip() == ip)
            .map(SocketAddr::port)
            .max()?;
        let next = if self.next_port != 0 {
            self.next_port
        } else {
            u16::try_from(i32::from(highest) + step).ok()?
        };
        Some(SocketAddr::new(ip, next))
    }

    /// Endpoint-dependent with unpredictable ports (only birthday probing can find them).
    pub fn is_random(&self) -> bool {
        self.mapping == Mapping::EndpointDependent && self.sequential_step().is_none()
    }

    /// Encodes the CANDIDATES frame body.
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        w.u8(self.mapping.code())?;
        w.u16(self.local_port)?;
        w.u32(self.port_step as u32)?;
        w.u16(self.next_port)?;
        w.u16(self.punch_sockets)?;
        w.u8(self.epoch)?;
        for (list, max) in [
            (&self.host, MAX_HOST_CANDIDATES),
            (&self.reflexive, MAX_REFLEXIVE_CANDIDATES),
        ] {
            let n = list.len().min(max);
            w.u8(n as u8)?;
            for a in &list[..n] {
                w.socket_addr(*a)?;
            }
        }
        Ok(())
    }

    /// Decodes a CANDIDATES frame body (`None` if malformed or over the limits).
    pub fn decode(data: &[u8]) -> Option<Self> {
        let mut r = Reader::new(data);
        let mapping = Mapping::from_code(r.u8()?);
        let local_port = r.u16()?;
        let port_step = r.u32()? as i32;
        let next_port = r.u16()?;
        let punch_sockets = r.u16()?;
        let epoch = r.u8()?;
        let mut lists = [Vec::new(), Vec::new()];
        for (list, max) in lists
            .iter_mut()
            .zip([MAX_HOST_CANDIDATES, MAX_REFLEXIVE_CANDIDATES])
        {
            let n = usize::from(r.u8()?);
            if n > max {
                return None;
            }
            for _ in 0..n {
                list.push(r.socket_addr()?);
            }
        }
        let [host, reflexive] = lists;
        r.is_empty().then_some(Self {
            mapping,
            local_port,
            port_step,
            next_port,
            punch_sockets,
            epoch,
            host,
            reflexive,
        })
    }

    /// The peer's public IP as its most recent reflexive candidate shows it.
    fn public_ip(&self) -> Option<IpAddr> {
        self.reflexive.last().map(SocketAddr::ip)
    }

    /// The most recent reflexive address.
    fn last_reflexive(&self) -> Option<SocketAddr> {
        self.reflexive.last().copied()
    }
}

/// Birthday probing: ports sprayed at an endpoint-dependent-random peer (≈ 98 % with 256
/// mappings on the peer side, `p2p-anchors.md` §2.2).
pub const BIRTHDAY_PROBES: usize = 1024;
/// Port prediction: next ports tried after the last observed one (sequential allocators).
pub const PREDICT_SPAN: i32 = 8;
/// Most extra sockets the hard side of birthday probing sends from.
pub const MAX_PUNCH_SOCKETS: usize = 512;
/// Extra wait before spraying, on top of the time the peer needs to open its sockets
/// (covers the difference between the two sides' start times).
pub const SPRAY_MARGIN: Duration = Duration::from_millis(400);

/// What one hole-punching attempt probes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Probed in every round, most important first: behind an endpoint-dependent NAT the
    /// first probe decides which port the NAT allocates toward the peer.
    pub candidates: Vec<SocketAddr>,
    /// Birthday spray (easy side): random ports of the peer's IP, each once.
    pub spray: Vec<SocketAddr>,
    /// When the spray starts, after the attempt starts.
    pub spray_delay: Duration,
    /// Hard side of birthday probing: one probe from each extra socket to this address.
    pub socket_target: Option<SocketAddr>,
}

impl Plan {
    /// Whether the plan probes nothing.
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty() && self.spray.is_empty() && self.socket_target.is_none()
    }
}

fn push_unique(out: &mut Vec<SocketAddr>, a: SocketAddr) {
    if a.port() != 0 && !out.contains(&a) {
        out.push(a);
    }
}

/// What to probe for `peer`, given our own hints (`ours`) and how many extra sockets we
/// have. See the module docs for the techniques.
pub fn plan(peer: &Hints, ours: &Hints, our_sockets: usize, rng: &mut NodeRng) -> Plan {
    let mut p = Plan::default();
    let ip = peer.public_ip();
    // The most promising public target first (it decides our endpoint-dependent NAT's
    // next port): the peer's predicted next port if it allocates sequentially, else its
    // latest reflexive address.
    if let (Some(step), Some(next)) = (peer.sequential_step(), peer.predicted_next()) {
        for k in 0..PREDICT_SPAN {
            if let Ok(port) = u16::try_from(i32::from(next.port()) + k * step) {
                push_unique(&mut p.candidates, SocketAddr::new(next.ip(), port));
            }
        }
    }
    for a in peer.reflexive.iter().rev() {
        push_unique(&mut p.candidates, *a);
    }
    if peer.mapping == Mapping::EndpointDependent
        && let Some(ip) = ip
    {
        // A port-preserving NAT maps the local port for each new destination when it can.
        push_unique(&mut p.candidates, SocketAddr::new(ip, peer.local_port));
    }
    for a in &peer.host {
        push_unique(&mut p.candidates, *a);
    }
    // Birthday probing between an easy side and an endpoint-dependent one. Against a
    // sequential-looking NAT it is the fallback: prediction usually wins in the first round,
    // long before the spray starts (and two random observations can look sequential).
    if ours.mapping.is_easy()
        && peer.mapping == Mapping::EndpointDependent
        && let Some(ip) = ip
    {
        let mut spray = Vec::with_capacity(BIRTHDAY_PROBES);
        let mut seen: std::collections::BTreeSet<u16> = p
            .candidates
            .iter()
            .filter(|a| a.ip() == ip)
            .map(SocketAddr::port)
            .collect();
        let mut tries = 0;
        while spray.len() < BIRTHDAY_PROBES && tries < 4 * BIRTHDAY_PROBES {
            tries += 1;
            let port = 1024 + (rng.u32() % (65536 - 1024)) as u16;
            if seen.insert(port) {
                spray.push(SocketAddr::new(ip, port));
            }
        }
        p.spray = spray;
        let sockets = usize::from(peer.punch_sockets).min(MAX_PUNCH_SOCKETS) as u32;
        p.spray_delay = punch::PROBE_INTERVAL * sockets + SPRAY_MARGIN;
    }
    if ours.mapping == Mapping::EndpointDependent && peer.mapping.is_easy() && our_sockets > 0 {
        p.socket_target = peer.last_reflexive().or_else(|| peer.host.first().copied());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn hints(mapping: Mapping, step: i32, reflexive: &[&str]) -> Hints {
        Hints {
            mapping,
            local_port: 4000,
            port_step: step,
            next_port: 0,
            punch_sockets: 256,
            epoch: 0,
            host: vec![a("10.0.0.2:4000")],
            reflexive: reflexive.iter().map(|s| a(s)).collect(),
        }
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
    fn hints_round_trip_and_limits() {
        let h = Hints {
            mapping: Mapping::EndpointDependent,
            local_port: 4000,
            port_step: -3,
            next_port: 6001,
            punch_sockets: 256,
            epoch: 9,
            host: vec![a("10.0.0.2:4000"), a("[2001:db8::1]:9")],
            reflexive: vec![a("1.2.3.4:5000")],
        };
        let mut buf = [0u8; 256];
        let mut w = Writer::new(&mut buf);
        h.encode(&mut w).unwrap();
        let n = w.len();
        assert_eq!(Hints::decode(&buf[..n]), Some(h.clone()));
        assert_eq!(Hints::decode(&buf[..n - 1]), None);
        // Too many host addresses.
        let mut bad = buf[..12].to_vec();
        bad.push(MAX_HOST_CANDIDATES as u8 + 1);
        assert_eq!(Hints::decode(&bad), None);
        // A hostile step (found by the rendezvous_msg fuzzer: `abs` overflowed).
        let hostile = Hints {
            port_step: i32::MIN,
            ..h.clone()
        };
        assert_eq!(hostile.sequential_step(), None);
    }

    #[test]
    fn plans_follow_the_nat_pair() {
        let mut rng = NodeRng::new([1; 32]);
        let eim = hints(Mapping::EndpointIndependent, 0, &["1.2.3.4:4000"]);
        let seq = hints(
            Mapping::EndpointDependent,
            1,
            &["5.6.7.8:20000", "5.6.7.8:20001"],
        );
        let random = hints(
            Mapping::EndpointDependent,
            23_456,
            &["9.9.9.9:31000", "9.9.9.9:54456"],
        );
        // Easy × easy: reflexive first, then host; no spray, no sockets.
        let p = plan(&eim, &eim, 256, &mut rng);
        assert_eq!(p.candidates, vec![a("1.2.3.4:4000"), a("10.0.0.2:4000")]);
        assert!(p.spray.is_empty() && p.socket_target.is_none());
        // Against a sequential NAT: its next port first (whichever observation came first).
        let p = plan(&seq, &seq, 256, &mut rng);
        assert_eq!(p.candidates[0], a("5.6.7.8:20002"));
        let reordered = hints(
            Mapping::EndpointDependent,
            -1,
            &["5.6.7.8:20001", "5.6.7.8:20000"],
        );
        assert_eq!(
            plan(&reordered, &seq, 256, &mut rng).candidates[0],
            a("5.6.7.8:20002")
        );
        // The peer's own estimate wins (it knows how many mappings it opened since).
        let moved = Hints {
            next_port: 20013,
            ..seq.clone()
        };
        assert_eq!(
            plan(&moved, &seq, 256, &mut rng).candidates[0],
            a("5.6.7.8:20013")
        );
        assert!(p.candidates.contains(&a("5.6.7.8:20009")));
        assert!(p.candidates.contains(&a("5.6.7.8:4000")), "preserved port");
        assert!(
            p.spray.is_empty(),
            "no spraying from or at a sequential NAT"
        );
        // Easy against random: spray after the peer's sockets had time to open.
        let p = plan(&random, &eim, 256, &mut rng);
        assert_eq!(p.spray.len(), BIRTHDAY_PROBES);
        assert!(p.spray.iter().all(|x| x.ip() == a("9.9.9.9:1").ip()));
        assert!(p.spray_delay >= punch::PROBE_INTERVAL * 256);
        assert!(p.socket_target.is_none());
        // Random against easy: the hard side's sockets aim at the peer's reflexive address.
        let p = plan(&eim, &random, 256, &mut rng);
        assert_eq!(p.socket_target, Some(a("1.2.3.4:4000")));
        assert!(p.spray.is_empty());
        // A sequential hard side opens its sockets too (behind its prediction).
        let p = plan(&eim, &seq, 256, &mut rng);
        assert_eq!(p.socket_target, Some(a("1.2.3.4:4000")));
        // Random against random or sequential: candidates only.
        for ours in [&random, &seq] {
            let p = plan(&random, ours, 256, &mut rng);
            assert!(p.spray.is_empty() && p.socket_target.is_none());
            assert!(p.candidates.len() <= MAX_CANDIDATES + PREDICT_SPAN as usize + 1);
        }
    }
}
