//! Writes the NAT matrix (issue 6, must-shows 1 and 2) to `sim/NAT_MATRIX.md`:
//! `cargo run --release -p tern-sim --bin nat-matrix [-- SEEDS PROBABILISTIC_SEEDS [A B]]`
//! (defaults 8 and 40; the simulation is deterministic, so the profile changes only the wall
//! time).
//! With two preset names it runs only that pair and prints each run (`SIM_SEED=n` for one
//! seed, `SIM_LOG=debug` for its trace).

use std::time::Instant;

use tern_sim::NatPreset;
use tern_sim::matrix::{Matrix, run_cell};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(8);
    let prob: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(40);
    if let (Some(a), Some(b)) = (args.get(2), args.get(3)) {
        let (a, b) = (
            NatPreset::from_name(a).expect("preset a"),
            NatPreset::from_name(b).expect("preset b"),
        );
        for seed in tern_sim::seeds(n) {
            #[allow(clippy::disallowed_methods)]
            let t = Instant::now();
            let r = run_cell(a, b, seed);
            println!(
                "seed {seed}: {:?} first byte {:?} (relayed {}) rtt {:?} direct {:?} probes {} intact {} [{:?} wall]",
                r.observed,
                r.first_byte,
                r.first_byte_relayed,
                r.relay_rtt,
                r.to_direct,
                r.probes,
                r.stream_intact,
                t.elapsed()
            );
        }
        return;
    }
    let m = Matrix::run(n, prob, |_, _| true);
    let out = m.render();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/NAT_MATRIX.md");
    std::fs::write(path, &out).expect("write NAT_MATRIX.md");
    println!("{out}");
    let bad = m.mismatches();
    if !bad.is_empty() {
        eprintln!(
            "{} cells do not match the oracle:\n{}",
            bad.len(),
            bad.join("\n")
        );
        std::process::exit(1);
    }
}
