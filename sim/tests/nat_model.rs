//! Each NAT behaviour against RFC 4787's definitions (issue 4, must-show 3), observed from
//! outside with raw endpoints: what source address servers see, and which packets get in.

mod common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use tern_sim::{
    DropReason, Fallback, Fault, Filtering, Hairpin, HostId, Mapping, NatConfig, NatId, NatPreset,
    Pooling, PortAlloc, RealmId, Record, Sim, Topology, seed_from_env,
};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

/// One NAT on the internet with two raw hosts inside (`a` on port 5000, `c` on `c_port`) and
/// two raw servers outside (`s1`, `s2`, on different IPs).
struct Lab {
    sim: Sim,
    nat: NatId,
    a: HostId,
    c: HostId,
    s1: HostId,
    s2: HostId,
}

fn lab(name: &str, config: NatConfig, c_port: u16) -> Lab {
    let mut t = Topology::new(name, seed_from_env(1));
    let nat = t.nat("nat", config).add();
    let a = t.host("a").raw().behind(nat).port(5000).add();
    let c = t.host("c").raw().behind(nat).port(c_port).add();
    let s1 = t.host("s1").raw().port(3478).add();
    let s2 = t.host("s2").raw().port(3478).add();
    Lab {
        sim: t.build(),
        nat,
        a,
        c,
        s1,
        s2,
    }
}

fn at(host: &Sim, h: HostId, port: u16) -> SocketAddr {
    SocketAddr::new(host.addr(h).ip(), port)
}

impl Lab {
    /// `from`'s port `port` sends to `to`; returns the source the receiver saw (if it arrived).
    fn send(&mut self, from: HostId, port: u16, to: SocketAddr) -> Option<SocketAddr> {
        let receiver = self.receiver(to);
        let before = receiver.map_or(0, |r| self.sim.received(r).len());
        self.sim.send_raw(from, port, to, b"x");
        self.sim.run_until_idle(S);
        let r = receiver?;
        let rx = self.sim.received(r);
        (rx.len() > before).then(|| rx.last().unwrap().from)
    }

    fn receiver(&self, to: SocketAddr) -> Option<HostId> {
        self.sim
            .hosts()
            .iter()
            .find(|h| SocketAddr::from(h.addr()).ip() == to.ip())
            .map(|h| h.id())
    }

    /// Sends from a server to a public address; returns whether `inside` received it.
    fn reaches(&mut self, from: HostId, port: u16, to: SocketAddr, inside: HostId) -> bool {
        let before = self.sim.received(inside).len();
        self.sim.send_raw(from, port, to, b"in");
        self.sim.run_until_idle(S);
        self.sim.received(inside).len() > before
    }

    fn wait(&mut self, d: Duration) {
        self.sim.run_for(d);
    }
}

fn eim_with(filtering: Filtering) -> NatConfig {
    NatConfig {
        filtering,
        hairpin: Hairpin::Off,
        ..NatConfig::full_cone()
    }
}

#[test]
fn eim_reuses_one_public_port_for_every_destination_and_edm_does_not() {
    for (mapping, distinct, mappings) in [
        (Mapping::EndpointIndependent, 1, 1),
        (Mapping::AddressDependent, 2, 2),
        (Mapping::AddressAndPortDependent, 3, 3),
    ] {
        let config = NatConfig {
            mapping,
            ports: PortAlloc::Sequential {
                start: 30000,
                delta: 1,
            },
            ..eim_with(Filtering::EndpointIndependent)
        };
        let mut l = lab("eim_reuses_one_public_port", config, 6000);
        let (s1a, s1b, s2a) = (
            at(&l.sim, l.s1, 3478),
            at(&l.sim, l.s1, 3479),
            at(&l.sim, l.s2, 3478),
        );
        let seen: Vec<SocketAddr> = [s1a, s1b, s2a]
            .into_iter()
            .map(|d| l.send(l.a, 5000, d).expect("outbound always passes"))
            .collect();
        let unique: BTreeSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), distinct, "{mapping:?}: {seen:?}");
        if mapping == Mapping::AddressDependent {
            assert_eq!(seen[0], seen[1], "ADM: same IP, same mapping");
        }
        assert_eq!(l.sim.nat(l.nat).mappings().count(), mappings);
        // The same destination again always reuses its mapping.
        assert_eq!(l.send(l.a, 5000, s1a), Some(seen[0]));
    }
}

#[test]
fn edm_preserving_nat_keeps_the_port_number_but_not_the_mapping() {
    // mobile-hard: a new mapping per destination, all with the internal port number, so the
    // port is predictable but each mapping only serves its own destination.
    let mut l = lab(
        "edm_preserving_nat_keeps_the_port_number",
        NatConfig::mobile_hard(),
        6000,
    );
    let (s1, s2) = (at(&l.sim, l.s1, 3478), at(&l.sim, l.s2, 3478));
    let p1 = l.send(l.a, 5000, s1).unwrap();
    let p2 = l.send(l.a, 5000, s2).unwrap();
    assert_eq!((p1.port(), p2.port()), (5000, 5000));
    assert_eq!(l.sim.nat(l.nat).mappings().count(), 2);
    // s2 may not use the mapping made for s1 … (APDM + APDF)
    let s2_from_other_port = l.reaches(l.s2, 9999, p1, l.a);
    assert!(!s2_from_other_port);
    // … but each destination reaches a through its own.
    assert!(l.reaches(l.s1, 3478, p1, l.a));
    assert!(l.reaches(l.s2, 3478, p2, l.a));
}

#[test]
fn each_filter_admits_exactly_what_it_should() {
    // (from s1:3478 = the socket a sent to, s1:9999 = same IP other port, s2:3478 = other IP)
    for (filtering, expect) in [
        (Filtering::EndpointIndependent, [true, true, true]),
        (Filtering::AddressDependent, [true, true, false]),
        (Filtering::AddressAndPortDependent, [true, false, false]),
    ] {
        let mut l = lab(
            "each_filter_admits_exactly_what_it_should",
            eim_with(filtering),
            6000,
        );
        let s1 = at(&l.sim, l.s1, 3478);
        let public = l.send(l.a, 5000, s1).unwrap();
        // Try the unsolicited ones first, so an admitted reply cannot change the outcome.
        let got = [
            l.reaches(l.s2, 3478, public, l.a),
            l.reaches(l.s1, 9999, public, l.a),
            l.reaches(l.s1, 3478, public, l.a),
        ];
        assert_eq!([got[2], got[1], got[0]], expect, "{filtering:?}");
        let refused = expect.iter().filter(|x| !**x).count() as u64;
        assert_eq!(l.sim.counters().dropped(DropReason::Filtered), refused);
        // A public port no mapping owns is never admitted, whatever the filter.
        let unmapped = SocketAddr::new(public.ip(), public.port().wrapping_add(7));
        assert!(!l.reaches(l.s1, 3478, unmapped, l.a));
        assert_eq!(l.sim.counters().dropped(DropReason::NoMapping), 1);
    }
}

/// Runs one timeout scenario on a home-like NAT: `a` sends to `s1` at each `outbound`
/// instant; `s1` answers at each `inbound` instant. Returns which answers got in.
fn timeline(config: &NatConfig, outbound: &[Duration], inbound: &[Duration]) -> Vec<bool> {
    let mut l = lab("mappings_expire_after_their_timeout", config.clone(), 6000);
    let s1 = at(&l.sim, l.s1, 3478);
    let mut public = None;
    let mut events: Vec<(Duration, bool)> = outbound.iter().map(|t| (*t, true)).collect();
    events.extend(inbound.iter().map(|t| (*t, false)));
    events.sort();
    let mut got = Vec::new();
    for (t, out) in events {
        let now = l.sim.now();
        l.wait(t - now);
        if out {
            public = Some(l.send(l.a, 5000, s1).unwrap());
        } else {
            got.push(l.reaches(l.s1, 3478, public.unwrap(), l.a));
        }
    }
    got
}

#[test]
fn mappings_expire_after_their_timeout_and_not_before() {
    let c = NatConfig {
        unreplied_timeout: 30 * S,
        established_timeout: 120 * S,
        inbound_refresh: false,
        ..NatConfig::home()
    };
    let t0 = S;
    // Unreplied: alive until 30 s after the last outbound packet, gone at exactly 30 s.
    assert_eq!(timeline(&c, &[t0], &[t0 + 30 * S - MS]), [true]);
    assert_eq!(timeline(&c, &[t0], &[t0 + 30 * S]), [false]);
    // Outbound traffic refreshes (REQ-6): a packet at +20 s moves expiry to +50 s.
    assert_eq!(
        timeline(&c, &[t0, t0 + 20 * S], &[t0 + 50 * S - MS]),
        [true]
    );
    assert_eq!(timeline(&c, &[t0, t0 + 20 * S], &[t0 + 50 * S]), [false]);
    // Once answered, the established timeout applies, counted from the last refresh.
    assert_eq!(
        timeline(&c, &[t0], &[t0 + S, t0 + 120 * S - MS]),
        [true, true]
    );
    assert_eq!(timeline(&c, &[t0], &[t0 + S, t0 + 120 * S]), [true, false]);
    // Without inbound refresh, answers do not extend it …
    assert_eq!(
        timeline(&c, &[t0], &[t0 + S, t0 + 100 * S, t0 + 130 * S]),
        [true, true, false]
    );
    // … with inbound refresh (RFC 4787 §4.3 MAY) they do.
    let refresh = NatConfig {
        inbound_refresh: true,
        ..c.clone()
    };
    assert_eq!(
        timeline(
            &refresh,
            &[t0],
            &[t0 + S, t0 + 100 * S, t0 + 220 * S - MS, t0 + 339 * S]
        ),
        [true, true, true, true]
    );
    assert_eq!(
        timeline(&refresh, &[t0], &[t0 + S, t0 + 121 * S]),
        [true, false]
    );
}

#[test]
fn expiry_is_traced_at_the_instant_it_happened() {
    let mut l = lab("expiry_is_traced", NatConfig::home(), 6000);
    l.sim.set_keep(tern_sim::Keep::All);
    let s1 = at(&l.sim, l.s1, 3478);
    l.wait(S);
    l.send(l.a, 5000, s1).unwrap();
    l.wait(60 * S);
    // Expiry is applied lazily, at the next NAT operation; the record says when it happened.
    l.send(l.c, 6000, s1).unwrap();
    let expired: Vec<Duration> = l
        .sim
        .trace()
        .records()
        .filter_map(|(_, r)| match r {
            Record::MapExpire { at, .. } => Some(*at),
            _ => None,
        })
        .collect();
    assert_eq!(expired, [S + 30 * S]);
    assert_eq!(l.sim.nat(l.nat).mappings().count(), 1);
}

#[test]
fn hairpin_works_only_where_enabled() {
    for (hairpin, expect) in [
        (Hairpin::Off, None),
        (
            Hairpin::On {
                external_source: true,
            },
            Some(true),
        ),
        (
            Hairpin::On {
                external_source: false,
            },
            Some(false),
        ),
    ] {
        let config = NatConfig {
            hairpin,
            ..NatConfig::full_cone()
        };
        let mut l = lab("hairpin_works_only_where_enabled", config, 6000);
        let s1 = at(&l.sim, l.s1, 3478);
        let c_public = l.send(l.c, 6000, s1).unwrap();
        let a_public = l.send(l.a, 5000, s1).unwrap();
        let before = l.sim.received(l.c).len();
        l.sim.send_raw(l.a, 5000, c_public, b"hairpin");
        l.sim.run_until_idle(S);
        let rx = &l.sim.received(l.c)[before..];
        match expect {
            None => {
                assert!(rx.is_empty(), "hairpin off must drop");
                assert_eq!(l.sim.counters().dropped(DropReason::HairpinDisabled), 1);
            }
            Some(external) => {
                assert_eq!(rx.len(), 1, "{hairpin:?}");
                let want = if external { a_public } else { l.sim.addr(l.a) };
                assert_eq!(rx[0].from, want, "{hairpin:?}");
            }
        }
    }
}

#[test]
fn port_preservation_with_both_fallbacks() {
    for fallback in [Fallback::Sequential, Fallback::Random] {
        let config = NatConfig {
            ports: PortAlloc::Preserve { fallback },
            ..NatConfig::home()
        };
        // c also uses internal port 5000, so it collides with a.
        let mut l = lab("port_preservation", config, 5000);
        let s1 = at(&l.sim, l.s1, 3478);
        assert_eq!(l.send(l.a, 5000, s1).unwrap().port(), 5000);
        let c_port = l.send(l.c, 5000, s1).unwrap().port();
        match fallback {
            Fallback::Sequential => assert_eq!(c_port, 5001),
            Fallback::Random => assert!(c_port != 5000 && c_port >= 1024, "{c_port}"),
        }
        // Other internal ports are preserved too.
        assert_eq!(l.send(l.a, 7777, s1).unwrap().port(), 7777);
    }
}

#[test]
fn sequential_allocation_steps_by_delta_across_hosts() {
    for delta in [1u16, 2, 7] {
        let config = NatConfig {
            ports: PortAlloc::Sequential {
                start: 20000,
                delta,
            },
            ..NatConfig::edm_sequential()
        };
        let mut l = lab("sequential_allocation", config, 6000);
        let mut ports = Vec::new();
        for dport in 3000..3004 {
            let d = at(&l.sim, l.s1, dport);
            ports.push(l.send(l.a, 5000, d).unwrap().port());
        }
        // Another host's mapping takes the next port: what makes prediction fragile.
        ports.push(l.send(l.c, 6000, at(&l.sim, l.s1, 3478)).unwrap().port());
        let want: Vec<u16> = (0..5).map(|i| 20000 + i * delta).collect();
        assert_eq!(ports, want, "delta {delta}");
    }
}

#[test]
fn random_allocation_is_spread_and_unpredictable() {
    let mut l = lab("random_allocation", NatConfig::cloud_natgw(), 6000);
    let mut ports = Vec::new();
    for dport in 0..300u16 {
        let d = at(&l.sim, l.s1, 10_000 + dport);
        ports.push(l.send(l.a, 5000, d).unwrap().port());
    }
    let unique: BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(unique.len(), 300, "every mapping gets a fresh port");
    assert!(ports.iter().all(|p| *p >= 1024));
    // Not sequential: almost no consecutive pair differs by one.
    let steps = ports
        .windows(2)
        .filter(|w| w[1].abs_diff(w[0]) <= 1)
        .count();
    assert!(steps <= 3, "{steps} near-sequential steps");
    // Uniform over 1024..=65535: mean 33279.5, σ of the mean ≈ 1075.
    let mean = ports.iter().map(|p| f64::from(*p)).sum::<f64>() / 300.0;
    assert!((mean - 33279.5).abs() < 4000.0, "mean {mean}");
    // Parity preservation (RFC 4787 §4.2.2) keeps an even internal port even.
    let parity = NatConfig {
        parity: true,
        ..NatConfig::cloud_natgw()
    };
    let mut l = lab("random_allocation_parity", parity, 6000);
    for dport in 0..50u16 {
        let d = at(&l.sim, l.s1, 10_000 + dport);
        assert_eq!(l.send(l.a, 5000, d).unwrap().port() % 2, 0);
    }
}

#[test]
fn chain_of_two_nats_composes() {
    // Home router (EIM + APDF) behind a CGNAT (EIM + APDF, block allocation).
    let mut t = Topology::new("chain_of_two_nats_composes", seed_from_env(1));
    let cgn = t.nat("cgn", NatConfig::cgnat()).add();
    let home = t.nat("home", NatConfig::home()).behind(cgn).add();
    let a = t.host("a").raw().behind(home).port(5000).add();
    let s1 = t.host("s1").raw().port(3478).add();
    let s2 = t.host("s2").raw().port(3478).add();
    let mut l = Lab {
        sim: t.build(),
        nat: home,
        a,
        c: a,
        s1,
        s2,
    };
    let (d1, d2) = (at(&l.sim, s1, 3478), at(&l.sim, s2, 3478));
    let p1 = l.send(a, 5000, d1).unwrap();
    let p2 = l.send(a, 5000, d2).unwrap();
    // EIM ∘ EIM = EIM: one public address for both servers, owned by the outer NAT.
    assert_eq!(p1, p2);
    let outer = l.sim.nat(cgn);
    assert!(outer.owns(match p1.ip() {
        std::net::IpAddr::V4(ip) => ip,
        _ => unreachable!(),
    }));
    // Each layer holds one mapping: home maps a → its address in the CGN's realm, the CGN
    // maps that → the public address.
    let inner_map: Vec<_> = l.sim.nat(home).mappings().collect();
    let outer_map: Vec<_> = l.sim.nat(cgn).mappings().collect();
    assert_eq!(inner_map.len(), 1);
    assert_eq!(outer_map.len(), 1);
    assert_eq!(outer_map[0].internal, inner_map[0].external);
    assert_eq!(SocketAddr::from(outer_map[0].external), p1);
    assert_eq!(l.sim.nat(home).outside(), RealmId(cgn.0 + 1));
    // Replies traverse both layers back; the filters compose (APDF ∩ APDF).
    assert!(l.reaches(s1, 3478, p1, a));
    assert!(!l.reaches(s1, 9999, p1, a));
    // An EDM layer anywhere makes the chain endpoint-dependent.
    let mut t = Topology::new("chain_edm_inside_eim", seed_from_env(1));
    let cone = t.nat("cone", NatConfig::full_cone()).add();
    let sym = t.nat("sym", NatConfig::cloud_natgw()).behind(cone).add();
    let a = t.host("a").raw().behind(sym).port(5000).add();
    let s1 = t.host("s1").raw().port(3478).add();
    let s2 = t.host("s2").raw().port(3478).add();
    let mut l = Lab {
        sim: t.build(),
        nat: sym,
        a,
        c: a,
        s1,
        s2,
    };
    let (d1, d2) = (at(&l.sim, s1, 3478), at(&l.sim, s2, 3478));
    assert_ne!(l.send(a, 5000, d1).unwrap(), l.send(a, 5000, d2).unwrap());
}

#[test]
fn per_host_mapping_quota_is_enforced() {
    let config = NatConfig {
        max_mappings_per_host: Some(4),
        ..NatConfig::edm_sequential()
    };
    let mut l = lab("per_host_mapping_quota_is_enforced", config, 6000);
    let arrived = (0..6u16)
        .filter(|i| l.send(l.a, 5000, at(&l.sim, l.s1, 3000 + i)).is_some())
        .count();
    assert_eq!(arrived, 4);
    assert_eq!(l.sim.counters().dropped(DropReason::QuotaExceeded), 2);
    assert_eq!(
        l.sim
            .nat(l.nat)
            .mappings_of(*SocketAddrV4::from_sim(&l.sim, l.a).ip()),
        4
    );
    // Another subscriber is unaffected, and the quota frees up when mappings expire.
    assert!(l.send(l.c, 6000, at(&l.sim, l.s1, 3000)).is_some());
    l.wait(31 * S);
    assert!(l.send(l.a, 5000, at(&l.sim, l.s1, 4000)).is_some());
    l.sim.check_invariants().unwrap();
}

trait FromSim {
    fn from_sim(sim: &Sim, h: HostId) -> SocketAddrV4;
}
impl FromSim for SocketAddrV4 {
    fn from_sim(sim: &Sim, h: HostId) -> SocketAddrV4 {
        sim.host(h).addr()
    }
}

#[test]
fn paired_pooling_keeps_one_ip_per_host_and_arbitrary_does_not() {
    for (pooling, want_ips) in [(Pooling::Paired, 1), (Pooling::Arbitrary, 2)] {
        let config = NatConfig {
            pooling,
            public_ips: 2,
            ..NatConfig::full_cone()
        };
        let mut l = lab("pooling", config, 6000);
        let s1 = at(&l.sim, l.s1, 3478);
        let ips: BTreeSet<_> = (0..20u16)
            .map(|i| l.send(l.a, 5000 + i, s1).unwrap().ip())
            .collect();
        assert_eq!(ips.len(), want_ips, "{pooling:?}");
    }
}

#[test]
fn faults_rebind_reboot_renumber_block_and_roam() {
    // Rebind: the mapping is lost and comes back on another port.
    let mut l = lab("fault_rebind", NatConfig::home(), 6000);
    let s1 = at(&l.sim, l.s1, 3478);
    let before = l.send(l.a, 5000, s1).unwrap();
    l.sim.apply(Fault::NatRebind(l.nat));
    assert!(!l.reaches(l.s1, 3478, before, l.a), "old mapping is gone");
    let after = l.send(l.a, 5000, s1).unwrap();
    assert_eq!(after.ip(), before.ip());
    assert_ne!(after.port(), before.port());

    // Reboot: allocators start over.
    let mut l = lab("fault_reboot", NatConfig::edm_sequential(), 6000);
    let s1 = at(&l.sim, l.s1, 3478);
    assert_eq!(l.send(l.a, 5000, s1).unwrap().port(), 20000);
    l.sim.apply(Fault::NatReboot(l.nat));
    assert_eq!(l.send(l.c, 6000, s1).unwrap().port(), 20000);

    // Public IP change: servers see the new address; the old one no longer routes.
    let mut l = lab("fault_new_ip", NatConfig::full_cone(), 6000);
    let s1 = at(&l.sim, l.s1, 3478);
    let old = l.send(l.a, 5000, s1).unwrap();
    l.sim.apply(Fault::NatNewPublicIp(l.nat));
    let new = l.send(l.a, 5000, s1).unwrap();
    assert_ne!(old.ip(), new.ip());
    assert!(!l.reaches(l.s1, 3478, old, l.a));
    assert_eq!(l.sim.counters().dropped(DropReason::NoRoute), 1);

    // UDP blocked at the NAT, then at the host.
    let mut l = lab("fault_block_udp", NatConfig::home(), 6000);
    let s1 = at(&l.sim, l.s1, 3478);
    l.sim.apply(Fault::NatBlockUdp {
        nat: l.nat,
        blocked: true,
    });
    assert_eq!(l.send(l.a, 5000, s1), None);
    l.sim.apply(Fault::NatBlockUdp {
        nat: l.nat,
        blocked: false,
    });
    assert!(l.send(l.a, 5000, s1).is_some());
    l.sim.apply(Fault::HostBlockUdp {
        host: l.a,
        blocked: true,
    });
    assert_eq!(l.send(l.a, 5000, s1), None);
    assert_eq!(l.sim.counters().dropped(DropReason::UdpBlocked), 2);

    // Roaming: the host moves to the internet with a fresh public address.
    let mut l = lab("fault_roam", NatConfig::home(), 6000);
    let s1 = at(&l.sim, l.s1, 3478);
    let natted = l.send(l.a, 5000, s1).unwrap();
    let old_local = l.sim.addr(l.a);
    l.sim.apply(Fault::Roam {
        host: l.a,
        realm: RealmId::INTERNET,
        notify: false,
    });
    let direct = l.send(l.a, 5000, s1).unwrap();
    assert_ne!(natted, direct);
    assert_eq!(direct, l.sim.addr(l.a));
    assert_ne!(direct, old_local);
}

#[test]
fn udp_blocked_preset_passes_nothing() {
    let mut t = Topology::new("udp_blocked_preset_passes_nothing", seed_from_env(1));
    let a = t.host("a").raw().behind_preset(NatPreset::UdpBlocked).add();
    let s = t.host("s").reflector().port(3478).add();
    let mut sim = t.build();
    let dst = sim.addr(s);
    sim.send_raw(a, 5000, dst, b"hello?");
    sim.run_until_idle(S);
    assert!(sim.received(s).is_empty());
    assert_eq!(sim.counters().dropped(DropReason::UdpBlocked), 1);
}
