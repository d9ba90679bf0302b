//! End-to-end scenarios: keepalives against NAT timeouts, NAT rebinding and roaming under a
//! live session, pcap export and sim-time log stamps.

use std::time::Duration;

use tern_core::Event;
use tern_sim::{
    Capture, Dialer, Fault, HostId, LinkPreset, NatPreset, RealmId, Sim, Topology, seed_from_env,
};

const S: Duration = Duration::from_secs(1);

fn closed(sim: &Sim, h: HostId) -> usize {
    sim.events(h)
        .iter()
        .filter(|(_, e)| matches!(e, Event::SessionClosed { .. }))
        .count()
}

fn path_changes(sim: &Sim, h: HostId) -> usize {
    sim.events(h)
        .iter()
        .filter(|(_, e)| matches!(e, Event::PathChanged { .. }))
        .count()
}

/// `a` behind `nat` dials public `b` and pings every `every`.
fn dial(name: &str, nat: NatPreset, every: Duration, pings: u64) -> (Sim, HostId, HostId) {
    let mut t = Topology::new(name, seed_from_env(3));
    let b = t.host("b").link(LinkPreset::Lan).add();
    let a = t
        .host("a")
        .behind_preset(nat)
        .link(LinkPreset::Wifi)
        .app(Dialer::new("b").pinging(every, pings))
        .add();
    let mut sim = t.build();
    assert!(sim.run_until(10 * S, |s| s.established(a).is_some()
        && s.established(b).is_some()));
    (sim, a, b)
}

#[test]
fn idle_session_outlives_nat_timeouts_with_keepalives() {
    // 30 s unreplied / 60 s established (CGNAT) and 60 s (mobile): keepalives every 15 s
    // keep the mapping, for ten idle minutes.
    for nat in [
        NatPreset::Home,
        NatPreset::HomeBehindCgnat,
        NatPreset::MobileHard,
    ] {
        let (mut sim, a, b) = dial("idle_session_outlives_nat_timeouts", nat, S, 1);
        sim.run_for(600 * S);
        assert_eq!((closed(&sim, a), closed(&sim, b)), (0, 0), "{}", nat.name());
        // Still usable: a fresh ping gets its answer.
        let s = sim.established(a).unwrap();
        let id = sim.command(a, |n, now| n.ping(now, s)).unwrap();
        assert!(
            sim.run_until(5 * S, |sim| sim
                .events(a)
                .iter()
                .any(|(_, e)| matches!(e, Event::Pong { id: i, .. } if *i == id))),
            "{}",
            nat.name()
        );
        // The NAT really did expire nothing in between: one mapping per layer, all along.
        let created: u64 = sim.nats().iter().map(|n| n.stats().created).sum();
        assert_eq!(created as usize, nat.stack().len(), "{}", nat.name());
    }
}

#[test]
fn session_survives_a_nat_rebinding() {
    let (mut sim, a, b) = dial("session_survives_a_nat_rebinding", NatPreset::Home, S, 60);
    let nat = sim.nat_id("a/nat0").unwrap();
    sim.schedule(10 * S, Fault::NatRebind(nat));
    sim.run_for(40 * S);
    assert_eq!((closed(&sim, a), closed(&sim, b)), (0, 0));
    assert!(
        path_changes(&sim, b) >= 1,
        "b saw a's new public port: {:?}",
        sim.events(b)
    );
    // Pings after the rebinding are answered.
    let late = sim
        .events(a)
        .iter()
        .filter(|(t, e)| *t > 15 * S && matches!(e, Event::Pong { .. }))
        .count();
    assert!(late >= 20, "{late} pongs after the rebinding");
}

#[test]
fn session_survives_roaming_to_a_new_network() {
    let (mut sim, a, b) = dial("session_survives_roaming", NatPreset::Home, S, 60);
    sim.schedule(
        10 * S,
        Fault::Roam {
            host: a,
            realm: RealmId::INTERNET,
            notify: true,
        },
    );
    sim.run_for(40 * S);
    assert_eq!((closed(&sim, a), closed(&sim, b)), (0, 0));
    assert!(path_changes(&sim, b) >= 1);
    let late = sim
        .events(a)
        .iter()
        .filter(|(t, e)| *t > 15 * S && matches!(e, Event::Pong { .. }))
        .count();
    assert!(late >= 20, "{late} pongs after roaming");
}

#[test]
fn pcap_export_holds_every_delivery() {
    let (mut sim, _a, _b) = dial("pcap_export", NatPreset::Home, S, 5);
    let before = sim.counters().delivered;
    sim.enable_pcap(Capture::Deliveries);
    sim.run_for(10 * S);
    let pcap = sim.pcap().unwrap();
    assert_eq!(pcap.count(), sim.counters().delivered - before);
    assert!(pcap.count() >= 10);
    let path = std::env::temp_dir().join(format!("tern-sim-{}.pcap", std::process::id()));
    pcap.write_to(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
    assert_eq!(bytes.len(), pcap.bytes().len());
    // Timestamps are simulated time: the first record is stamped after the session started.
    let secs = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
    assert_eq!(
        u64::from(secs),
        tern_sim::clock::UNIX_START.as_secs() + sim.now().as_secs() - 10
    );
}

#[test]
fn log_lines_are_stamped_with_simulated_time() {
    let (mut sim, _a, _b) = dial("log_stamps", NatPreset::Public, S, 1);
    sim.run_for(123 * S);
    assert_eq!(tern_sim::log::now(), sim.now());
    assert_eq!(
        tern_sim::clock::SimTime(sim.now()).to_string(),
        format!(
            "{:>6}.{:06}s",
            sim.now().as_secs(),
            sim.now().subsec_micros()
        )
    );
}
