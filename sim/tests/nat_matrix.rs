//! The NAT matrix (issue 6, must-shows 1 and 2): every preset pair, several seeds each,
//! against the oracle. Every cell must end direct wherever the oracle says a direct path is
//! possible (every run for plain techniques, ≥ 95 % of runs for port prediction and
//! birthday probing), relayed wherever it says relay, and with a typed reason only where
//! UDP is blocked; in every connected run the first stream byte arrives over the relay
//! within 2 relayed RTTs of the directory answer and the whole stream arrives intact.
//! `cargo run --release -p tern-sim --bin nat-matrix` writes the table to `sim/NAT_MATRIX.md`.

mod common;

use std::time::Duration;

use common::rdv::{Place, Rdv, S, add_pair, add_server};
use tern_core::{Event, PathInfo};
use tern_sim::matrix::Matrix;
use tern_sim::oracle::{Outcome, Technique, expected_for_presets};
use tern_sim::{NatPreset, Topology, seeds};

/// Seeds per plain cell and per probabilistic cell (prediction, birthday).
const SEEDS: u64 = 6;
const PROBABILISTIC_SEEDS: u64 = 40;

fn check(m: &Matrix) {
    let bad = m.mismatches();
    assert!(
        bad.is_empty(),
        "{} cells do not match the oracle:\n{}\n\n{}",
        bad.len(),
        bad.join("\n"),
        m.render()
    );
    for c in &m.cells {
        assert!(!c.runs.is_empty());
    }
}

fn technique(pa: NatPreset, pb: NatPreset) -> Option<Technique> {
    match expected_for_presets(pa, pb) {
        Outcome::Direct(t) => Some(t),
        _ => None,
    }
}

#[test]
fn cells_the_oracle_connects_without_prediction_go_direct_every_time() {
    let m = Matrix::run(SEEDS, PROBABILISTIC_SEEDS, |a, b| {
        matches!(
            technique(a, b),
            Some(Technique::OneSideDials | Technique::SimultaneousOpen)
        )
    });
    assert_eq!(m.cells.len(), 30);
    check(&m);
}

#[test]
fn port_prediction_and_birthday_cells_go_direct_in_at_least_95_percent_of_runs() {
    let m = Matrix::run(SEEDS, PROBABILISTIC_SEEDS, |a, b| {
        matches!(
            technique(a, b),
            Some(
                Technique::PortPrediction
                    | Technique::PortPredictionFragile
                    | Technique::BirthdayProbing
            )
        )
    });
    assert_eq!(m.cells.len(), 13);
    for c in &m.cells {
        assert_eq!(c.runs.len() as u64, PROBABILISTIC_SEEDS);
    }
    check(&m);
}

#[test]
fn relay_cells_stay_relayed_and_udp_blocked_cells_report_a_typed_reason() {
    let m = Matrix::run(SEEDS, PROBABILISTIC_SEEDS, |a, b| technique(a, b).is_none());
    assert_eq!(m.cells.len(), 12);
    check(&m);
    // No probe storm where punching cannot work: a few dozen probes per attempt.
    for c in m.cells.iter().filter(|c| c.expected == Outcome::Relay) {
        for r in &c.runs {
            assert!(
                r.probes < 400,
                "{} × {}: {} probes",
                c.a.name(),
                c.b.name(),
                r.probes
            );
        }
    }
}

#[test]
fn the_table_lists_every_pair() {
    let m = Matrix::run(1, 1, |a, b| a == b);
    let md = m.render();
    for p in NatPreset::ALL {
        assert!(md.contains(&format!("| **{}** |", p.name())), "{md}");
    }
}

/// Must-show 2 on the hardest cells: the first bytes go through the relay at once (≤ 2 RTT
/// after the directory answer) and keep flowing while the nodes punch; a whole transfer
/// completes over the relay before the birthday probing finds the direct path.
#[test]
fn stream_bytes_never_wait_for_hole_punching() {
    for (pa, pb) in [
        (NatPreset::Home, NatPreset::CloudNatGw),
        (NatPreset::CloudNatGw, NatPreset::CloudNatGw),
    ] {
        for seed in seeds(3) {
            let mut t = Topology::new("first_bytes", seed);
            let rdv = add_server(&mut t);
            let (a, b, tx, rx) = add_pair(&mut t, Place::Preset(pa), Place::Preset(pb), 256 << 10);
            let mut r = Rdv::build(t, rdv, a, b, tx, rx);
            r.register();
            let t0 = r.sim.now();
            r.connect();
            assert!(
                r.run_until_transferred(10 * S),
                "{} × {}",
                pa.name(),
                pb.name()
            );
            let first = r.rx.borrow().first_byte_at.unwrap() - t0;
            let rtt = [a, b]
                .iter()
                .map(|&h| {
                    let st = r.sim.node(h).rendezvous_status().unwrap();
                    r.sim
                        .node(h)
                        .session_info(st.session.unwrap())
                        .unwrap()
                        .rtt
                        .unwrap()
                })
                .sum::<Duration>();
            assert!(
                first <= 2 * rtt,
                "{}: first byte after {first:?}, relayed RTT {rtt:?}",
                pa.name()
            );
            // All of it came over the relay: neither side had a direct path yet.
            let done = r.sim.now();
            for h in [a, b] {
                assert!(
                    !r.sim.events(h).iter().any(|(at, e)| *at <= done
                        && matches!(
                            e,
                            Event::PathChanged {
                                path: PathInfo::Direct(_),
                                ..
                            }
                        )),
                    "{} × {} seed {seed}: went direct before the transfer ended",
                    pa.name(),
                    pb.name()
                );
            }
            r.assert_intact(256 << 10, "relay first");
            if pb == NatPreset::Home || pa == NatPreset::Home {
                assert!(r.run_until_direct(60 * S), "and then it goes direct");
            }
        }
    }
}
