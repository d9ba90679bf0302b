//! tern sessions (handshake + pings) across every link preset and under 0–30 % loss with
//! reordering, duplication and corruption, over many seeds (issue 4, must-show 5). Hosts are
//! public or behind endpoint-independent NATs; NAT traversal itself is issue 6.

use std::time::Duration;

use tern_core::{Config, DropReason as CoreDrop, Event};
use tern_sim::{
    Dialer, HostId, LinkConfig, LinkPreset, Loss, NatPreset, Reorder, Sim, Topology, seeds,
};

const S: Duration = Duration::from_secs(1);

fn scenario(
    name: &str,
    seed: u64,
    a_nat: NatPreset,
    a_link: LinkConfig,
    b_link: LinkConfig,
    pings: u64,
) -> (Sim, HostId, HostId) {
    let mut t = Topology::new(name, seed);
    let b = t.host("b").links(b_link.clone(), b_link).add();
    let a = t
        .host("a")
        .behind_preset(a_nat)
        .links(a_link.clone(), a_link)
        .app(Dialer::new("b").pinging(S, pings))
        .add();
    (t.build(), a, b)
}

fn closed(sim: &Sim, h: HostId) -> Vec<Event> {
    sim.events(h)
        .iter()
        .filter(|(_, e)| matches!(e, Event::SessionClosed { .. }))
        .map(|(_, e)| *e)
        .collect()
}

#[test]
fn sessions_establish_and_ping_across_every_link_preset() {
    for preset in LinkPreset::ALL {
        for nat in [
            NatPreset::Public,
            NatPreset::Home,
            NatPreset::HomeBehindCgnat,
        ] {
            for seed in seeds(2) {
                let name = format!("preset_{}_{}", preset.name(), nat.name());
                let (mut sim, a, b) =
                    scenario(&name, seed, nat, preset.config(), preset.config(), 10);
                let up = sim.run_until(20 * S, |s| {
                    s.established(a).is_some() && s.established(b).is_some()
                });
                assert!(up, "{name} seed {seed}: no session; a: {:?}", sim.events(a));
                sim.run_for(15 * S);
                let pongs = sim.pongs(a);
                // The worst preset loses ~6 % per direction per link: ≥ 7 of 10 round trips.
                assert!(pongs >= 7, "{name} seed {seed}: {pongs} pongs of 10");
                assert!(closed(&sim, a).is_empty() && closed(&sim, b).is_empty());
                let (sa, sb) = (sim.node(a).stats(), sim.node(b).stats());
                if preset.config().corrupt == 0.0 {
                    // Nothing on these links forges or corrupts: authentication never fails.
                    assert_eq!(sa.drops.get(CoreDrop::DecryptFailed), 0, "{name}");
                    assert_eq!(sb.drops.get(CoreDrop::DecryptFailed), 0, "{name}");
                }
                sim.check_invariants().unwrap();
            }
        }
    }
}

/// A hostile link: `loss` each way, 5 % of packets held back 30 ms, 2 % duplicated, 1 %
/// corrupted, 20 ms ± 10 ms with jitter reordering.
fn hostile(loss: f64) -> LinkConfig {
    LinkConfig {
        loss: Loss::Bernoulli(loss),
        reorder: Some(Reorder {
            rate: 0.05,
            hold: Duration::from_millis(30),
        }),
        duplicate: 0.02,
        corrupt: 0.01,
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(10),
        fifo: false,
        ..LinkConfig::default()
    }
}

#[test]
fn sessions_establish_under_loss_reordering_duplication_and_corruption() {
    // The handshake retries with backoff (0.5 s doubling to 4 s). With the default 15 s
    // timeout that is 6 tries, and at 30 % loss each way a try fails about half the time,
    // so ~2 % of handshakes would give up; this sweep asks whether the handshake *can*
    // complete, so it gives it 60 s (18 tries). Both sides need the longer timeout: the
    // initiator resends the identical init, and once the responder has dropped its half-open
    // state it rejects that init's timestamp as a replay.
    let mut config = Config::default();
    config.handshake_timeout = 60 * S;
    let mut failures = Vec::new();
    for pct in [0u32, 5, 10, 15, 20, 25, 30] {
        let loss = f64::from(pct) / 100.0;
        let (mut pings, mut pongs, mut setup) = (0u64, 0u64, Vec::new());
        for seed in seeds(12) {
            let name = format!("hostile_{pct}pct");
            let mut t = Topology::new(&name, seed);
            let b = t.host("b").config(config.clone()).add();
            let a = t
                .host("a")
                .behind_preset(NatPreset::Home)
                .links(hostile(loss), hostile(loss))
                .config(config.clone())
                .app(Dialer::new("b").pinging(S, 20))
                .add();
            let mut sim = t.build();
            let up = sim.run_until(60 * S, |s| {
                s.established(a).is_some() && s.established(b).is_some()
            });
            if !up {
                failures.push(format!(
                    "{name} SIM_SEED={seed}: {:?}; responder drops {:?}",
                    sim.events(a),
                    sim.node(b).stats().drops
                ));
                continue;
            }
            setup.push(sim.now());
            sim.run_for(25 * S);
            pings += 20;
            pongs += sim.pongs(a) as u64;
            if sim.pongs(a) == 0 || !closed(&sim, a).is_empty() || !closed(&sim, b).is_empty() {
                failures.push(format!(
                    "{name} SIM_SEED={seed}: {} pongs, closed a {:?} b {:?}",
                    sim.pongs(a),
                    closed(&sim, a),
                    closed(&sim, b)
                ));
            }
            sim.check_invariants().unwrap();
        }
        // A ping and its pong each cross the hostile link once, where they may be lost or
        // corrupted (1 %); over all seeds the answered share must match that.
        let expected = ((1.0 - loss) * 0.99f64).powi(2);
        let observed = pongs as f64 / pings.max(1) as f64;
        if (observed - expected).abs() > 0.08 {
            failures.push(format!(
                "{pct} %: {observed:.3} of pings answered, expected {expected:.3}"
            ));
        }
        setup.sort();
        eprintln!(
            "loss {pct:>2} %: pongs {observed:.3} (expected {expected:.3}), median time to establish {:?}, max {:?}",
            setup.get(setup.len() / 2),
            setup.last()
        );
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Regression (found by the sweep above, `hostile_30pct` with `SIM_SEED=2`): the first five
/// responses are lost, so the handshake completes only at ~27 s. With a 60 s timeout on the
/// initiator alone it never did: the responder dropped its half-open state after its own
/// 15 s, and the initiator keeps resending the identical init, whose timestamp the responder
/// then rejects as a replay. Both sides waiting 60 s must establish.
#[test]
fn regression_hostile_30pct_seed_2_establishes_late() {
    let mut config = Config::default();
    config.handshake_timeout = 60 * S;
    let mut t = Topology::new("regression_hostile_30pct_seed_2", 2);
    let b = t.host("b").config(config.clone()).add();
    let a = t
        .host("a")
        .behind_preset(NatPreset::Home)
        .links(hostile(0.3), hostile(0.3))
        .config(config)
        .app(Dialer::new("b"))
        .add();
    let mut sim = t.build();
    assert!(sim.run_until(60 * S, |s| s.established(a).is_some()
        && s.established(b).is_some()));
    assert!(
        sim.now() > 20 * S,
        "the seed still exercises the late path: {:?}",
        sim.now()
    );
    assert!(sim.run_until(5 * S, |s| s.pongs(a) == 1));
}
