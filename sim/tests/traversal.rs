//! NAT traversal through the rendezvous server, end to end (issue 6, must-shows 3 and 4):
//! two peers behind one NAT that does not hairpin connect over their host candidates, and a
//! session carrying a stream survives — with every byte delivered in order — a NAT rebind,
//! a public-IP change, a host moving to another network, a 30-second mapping timeout, and
//! its direct path dying mid-transfer: it falls back to the relay and upgrades again, after
//! re-learning its reflexive address and re-sending candidates where its address changed.

mod common;

use std::time::Duration;

use common::rdv::{MS, Place, Rdv, S, add_pair, add_server, relayed_then_direct};
use tern_core::{Event, PathInfo};
use tern_sim::{DropReason, Fault, NatConfig, NatPreset, Topology, seeds};

/// Bytes of the transfers that run across faults: about 4 s at the links' 20 Mbit/s.
const BIG: u64 = 8 << 20;

fn behind(t: &mut Topology, name: &str, config: NatConfig) -> Place {
    Place::Behind(t.nat(name, config).add())
}

fn home_pair(name: &str, seed: u64, total: u64) -> Rdv {
    let mut t = Topology::new(name, seed);
    let rdv = add_server(&mut t);
    let na = behind(&mut t, "a-home", NatConfig::home());
    let nb = behind(&mut t, "b-home", NatConfig::home());
    let (a, b, tx, rx) = add_pair(&mut t, na, nb, total);
    Rdv::build(t, rdv, a, b, tx, rx)
}

#[test]
fn two_peers_behind_one_nat_without_hairpinning_connect_over_host_candidates() {
    for seed in seeds(4) {
        let mut t = Topology::new("same_nat_no_hairpin", seed);
        let rdv = add_server(&mut t);
        let office = t.nat("office", NatConfig::home()).add();
        assert_eq!(NatConfig::home().hairpin, tern_sim::Hairpin::Off);
        let (a, b, tx, rx) = add_pair(
            &mut t,
            Place::Behind(office),
            Place::Behind(office),
            1 << 20,
        );
        let mut r = Rdv::build(t, rdv, a, b, tx, rx);
        r.register();
        let (sa, sb) = (r.sim.addr(a), r.sim.addr(b));
        r.connect();
        assert!(r.run_until_direct(10 * S), "seed {seed}: no direct path");
        // The direct path is the LAN one: each side reaches the other's host address.
        assert_eq!(r.path(a), Some(PathInfo::Direct(sb)), "seed {seed}");
        assert_eq!(r.path(b), Some(PathInfo::Direct(sa)), "seed {seed}");
        assert!(r.run_until_transferred(30 * S), "seed {seed}: transfer");
        r.assert_intact(1 << 20, "same NAT");
        // Probes to the shared public address died at the NAT: it does not hairpin.
        assert!(r.sim.counters().dropped(DropReason::HairpinDisabled) > 0);
        assert_eq!(r.sim.counters().dropped(DropReason::Blackholed), 0);
    }
}

/// Runs a `BIG` transfer from `a` to `b` (both behind home NATs), applies `fault` 1 s after
/// the path went direct, and checks the session survives: no byte lost, no session closed,
/// back on a direct path within `recover`. Returns the scenario for further checks.
fn survives(
    name: &str,
    seed: u64,
    fault: impl FnOnce(&Rdv) -> Fault,
    recover: Duration,
) -> (Rdv, Duration) {
    let mut r = home_pair(name, seed, BIG);
    r.register();
    r.connect();
    assert!(
        r.run_until_direct(10 * S),
        "{name} seed {seed}: never direct"
    );
    r.sim.run_for(S);
    let received_before = r.rx.borrow().received;
    assert!(
        received_before > 0 && received_before < BIG,
        "{name}: the fault must hit mid-transfer"
    );
    let f = fault(&r);
    let t_fault = r.sim.now();
    r.sim.apply(f);
    // Falls back to the relay (or moves) and comes back to a direct path.
    let (a, b) = (r.a, r.b);
    let back = r.sim.run_until(recover, |s| {
        [a, b].iter().all(|&h| {
            s.events(h).iter().any(|(t, e)| {
                *t > t_fault
                    && matches!(
                        e,
                        Event::PathChanged {
                            path: PathInfo::Direct(_),
                            ..
                        }
                    )
            })
        })
    });
    assert!(
        back,
        "{name} seed {seed}: not direct again within {recover:?}: a {:?} b {:?}",
        r.path_changes(a, t_fault),
        r.path_changes(b, t_fault)
    );
    assert!(
        r.run_until_transferred(120 * S),
        "{name} seed {seed}: transfer stalled at {}",
        r.rx.borrow().received
    );
    r.assert_intact(BIG, name);
    assert_eq!(
        (r.closed(a), r.closed(b)),
        (0, 0),
        "{name}: a session closed"
    );
    assert!(r.both_direct(), "{name} seed {seed}: ends direct");
    r.sim.check_invariants().unwrap();
    (r, t_fault)
}

/// `a`'s reflexive address as the rendezvous server now reports it, and its NAT's live
/// public address.
fn observed(r: &Rdv) -> Option<std::net::SocketAddr> {
    r.sim
        .node(r.a)
        .rendezvous_status()
        .and_then(|s| s.observed[0])
}

#[test]
fn a_nat_rebind_mid_transfer_loses_no_byte_and_the_path_comes_back() {
    for seed in seeds(3) {
        let mut before = None;
        let (r, t_fault) = survives(
            "nat_rebind",
            seed,
            |r| {
                before = observed(r);
                Fault::NatRebind(r.sim.nat_id("a-home").unwrap())
            },
            30 * S,
        );
        // a re-learned its reflexive address (a new port) and told b: b went direct to it.
        let now = observed(&r).unwrap();
        assert_ne!(
            Some(now),
            before,
            "seed {seed}: the reflexive address moved"
        );
        assert_eq!(r.path(r.b), Some(PathInfo::Direct(now)), "seed {seed}");
        let changes = r.path_changes(r.b, t_fault);
        assert!(relayed_then_direct(&changes), "seed {seed}: b {changes:?}");
    }
}

#[test]
fn a_public_ip_change_mid_transfer_loses_no_byte_and_the_path_comes_back() {
    for seed in seeds(3) {
        let mut before = None;
        let (r, t_fault) = survives(
            "public_ip_change",
            seed,
            |r| {
                before = observed(r);
                Fault::NatNewPublicIp(r.sim.nat_id("a-home").unwrap())
            },
            30 * S,
        );
        let now = observed(&r).unwrap();
        assert_ne!(
            now.ip(),
            before.unwrap().ip(),
            "seed {seed}: new public IP learned"
        );
        assert_eq!(r.path(r.b), Some(PathInfo::Direct(now)), "seed {seed}");
        assert!(relayed_then_direct(&r.path_changes(r.b, t_fault)));
    }
}

#[test]
fn a_host_moving_to_another_network_mid_transfer_loses_no_byte() {
    // With `notify` the driver saw the interface change and told the node; without, the
    // node finds out from the server's new observation alone.
    for notify in [true, false] {
        for seed in seeds(3) {
            let mut t = Topology::new("roam", seed);
            let rdv = add_server(&mut t);
            let na = behind(&mut t, "a-home", NatConfig::home());
            let nb = behind(&mut t, "b-home", NatConfig::home());
            let cafe = t.nat("cafe", NatConfig::cgnat()).add();
            let (a, b, tx, rx) = add_pair(&mut t, na, nb, BIG);
            let mut r = Rdv::build(t, rdv, a, b, tx, rx);
            r.register();
            r.connect();
            assert!(r.run_until_direct(10 * S));
            r.sim.run_for(S);
            let before = observed(&r).unwrap();
            let t_fault = r.sim.now();
            // a leaves home for the café's carrier-grade NAT.
            let realm = r.sim.nat(cafe).inside();
            r.sim.apply(Fault::Roam {
                host: a,
                realm,
                notify,
            });
            assert!(
                r.run_until_transferred(120 * S),
                "notify {notify} seed {seed}: stalled at {}",
                r.rx.borrow().received
            );
            r.assert_intact(BIG, "roam");
            assert!(
                r.run_until_direct(60 * S),
                "notify {notify} seed {seed}: direct again"
            );
            assert_eq!((r.closed(a), r.closed(b)), (0, 0));
            // a's new reflexive address is the café's, and b reaches it there directly.
            let now = observed(&r).unwrap();
            assert_ne!(now, before);
            assert!(
                r.sim
                    .nat(cafe)
                    .public_ips()
                    .iter()
                    .any(|ip| now.ip() == *ip),
                "{now}"
            );
            assert_eq!(r.path(b), Some(PathInfo::Direct(now)), "seed {seed}");
            let changes = r.path_changes(a, t_fault);
            assert!(
                relayed_then_direct(&changes),
                "notify {notify} seed {seed}: {changes:?}"
            );
            // The node re-learned both observations (so it knows its new NAT's behaviour).
            let hints = r.sim.node(a).nat_hints();
            assert_eq!(hints.reflexive, vec![now], "seed {seed}");
            if notify {
                assert_eq!(hints.host, vec![r.sim.addr(a)], "new host candidate");
            }
        }
    }
}

#[test]
fn keepalives_hold_a_30_second_mapping_for_ten_idle_minutes() {
    // Both NATs forget any mapping 30 s after its last outbound packet, replied or not.
    let strict = NatConfig {
        unreplied_timeout: 30 * S,
        established_timeout: 30 * S,
        ..NatConfig::home()
    };
    for seed in seeds(2) {
        let mut t = Topology::new("mapping_timeout_30s", seed);
        let rdv = add_server(&mut t);
        let na = behind(&mut t, "a-nat", strict.clone());
        let nb = behind(&mut t, "b-nat", strict.clone());
        let (a, b, tx, rx) = add_pair(&mut t, na, nb, 64 << 10);
        let mut r = Rdv::build(t, rdv, a, b, tx, rx);
        r.register();
        r.connect();
        assert!(r.run_until_direct(10 * S));
        assert!(r.run_until_transferred(10 * S));
        let t_idle = r.sim.now();
        r.sim.run_for(600 * S);
        // Never left the direct path, nothing closed, the rendezvous channel stayed up.
        assert_eq!(r.path_changes(a, t_idle), vec![], "seed {seed}");
        assert_eq!(r.path_changes(b, t_idle), vec![], "seed {seed}");
        assert_eq!((r.closed(a), r.closed(b)), (0, 0));
        for h in [a, b] {
            assert!(
                !r.sim
                    .events(h)
                    .iter()
                    .any(|(_, e)| *e == Event::RendezvousDisconnected)
            );
        }
        // And it still carries traffic, directly.
        let s = r.sessions().0.unwrap();
        let id = r.sim.command(a, |n, now| n.ping(now, s)).unwrap();
        assert!(r.sim.run_until(S, |sim| {
            sim.events(a)
                .iter()
                .any(|(_, e)| matches!(e, Event::Pong { id: i, .. } if *i == id))
        }));
        assert!(r.both_direct());
        // The mappings really do expire after 30 s: only keepalives kept these alive.
        assert!(
            r.sim
                .nats()
                .iter()
                .all(|n| n.config().established_timeout == 30 * S || n.name() == "rdv")
        );
    }
}

#[test]
fn a_direct_path_dying_mid_transfer_falls_back_to_the_relay_and_upgrades_again() {
    for seed in seeds(3) {
        let mut r = home_pair("direct_path_dies", seed, BIG);
        r.register();
        r.connect();
        assert!(r.run_until_direct(10 * S));
        r.sim.run_for(S);
        let got = r.rx.borrow().received;
        assert!(got > 0 && got < BIG);
        let (a, b) = (r.a, r.b);
        let t_cut = r.sim.now();
        r.sim.apply(Fault::Blackhole {
            a,
            b,
            blocked: true,
        });
        // Both fall back to the relay within a few probe timeouts, and data keeps flowing.
        assert!(
            r.sim
                .run_until(10 * S, |s| [a, b].iter().all(|&h| s.events(h).iter().any(
                    |(t, e)| *t > t_cut
                        && matches!(
                            e,
                            Event::PathChanged {
                                path: PathInfo::Relayed { .. },
                                ..
                            }
                        )
                ))),
            "seed {seed}: no fallback: a {:?}",
            r.path_changes(a, t_cut)
        );
        let fell_back = r.sim.now() - t_cut;
        let at_fallback = r.rx.borrow().received;
        r.sim.run_for(3 * S);
        assert!(
            r.rx.borrow().received > at_fallback + (1 << 20),
            "seed {seed}: the relay carries the stream"
        );
        // The direct path heals; the next punching attempt finds it.
        r.sim.apply(Fault::Blackhole {
            a,
            b,
            blocked: false,
        });
        let t_heal = r.sim.now();
        assert!(
            r.run_until_direct(70 * S),
            "seed {seed}: no upgrade after healing"
        );
        assert!(r.run_until_transferred(60 * S));
        r.assert_intact(BIG, "direct path dies");
        assert_eq!((r.closed(a), r.closed(b)), (0, 0));
        eprintln!(
            "seed {seed}: fell back after {fell_back:?}, direct again {:?} after healing",
            r.sim.now() - t_heal
        );
        let _ = MS;
    }
}

#[test]
fn roaming_between_presets_keeps_the_stream() {
    // A mobile host moves from a home network to a hard (port-preserving EDM) carrier NAT.
    let mut t = Topology::new("roam_to_mobile", 7);
    let rdv = add_server(&mut t);
    let na = behind(&mut t, "a-home", NatConfig::home());
    let mobile = t.nat("mobile", NatConfig::mobile_hard()).add();
    let (a, b, tx, rx) = add_pair(&mut t, na, Place::Public, BIG);
    let mut r = Rdv::build(t, rdv, a, b, tx, rx);
    r.register();
    r.connect();
    assert!(r.run_until_direct(10 * S));
    r.sim.run_for(S);
    let realm = r.sim.nat(mobile).inside();
    r.sim.apply(Fault::Roam {
        host: a,
        realm,
        notify: true,
    });
    assert!(r.run_until_transferred(120 * S));
    r.assert_intact(BIG, "roam to mobile");
    assert!(r.run_until_direct(60 * S));
    let _ = NatPreset::MobileHard;
}

#[test]
fn punching_works_over_lossy_and_cellular_links() {
    // Bursty Wi-Fi loss on one side, a cellular link on the other: probes are repeated, a
    // sequential NAT's first probe is sent three times (a copy lost before the NAT must not
    // let another destination take the predicted port), and CANDIDATES lost on the relay are
    // resent unchanged; a spurious fallback (three probe timeouts in a burst) upgrades again.
    for (pa, pb) in [
        (NatPreset::EdmSequential, NatPreset::EdmSequential),
        (NatPreset::Home, NatPreset::CloudNatGw),
        (NatPreset::Cgnat, NatPreset::MobileHard),
    ] {
        for seed in seeds(6) {
            let mut t = Topology::new("lossy_links", seed);
            let rdv = t
                .host("rdv")
                .link(tern_sim::LinkPreset::Wifi)
                .rendezvous_server()
                .add();
            let (a, b, tx, rx) = add_pair(&mut t, Place::Preset(pa), Place::Preset(pb), 1 << 20);
            let mut r = Rdv::build(t, rdv, a, b, tx, rx);
            let both = tern_sim::Direction::Both;
            r.sim
                .set_link(a, both, tern_sim::LinkPreset::WifiLossy.config());
            r.sim
                .set_link(b, both, tern_sim::LinkPreset::Cellular.config());
            r.register();
            r.connect();
            assert!(
                r.run_until_direct(75 * S),
                "{} × {} seed {seed}: not direct",
                pa.name(),
                pb.name()
            );
            assert!(r.run_until_transferred(120 * S));
            r.assert_intact(1 << 20, "lossy links");
        }
    }
}
