//! Replays the `sim_scenario` fuzz corpus through the same invariant check the fuzz target
//! runs, plus a few hundred generated inputs, so a plain `cargo test` exercises it.

use std::path::{Path, PathBuf};

use tern_sim::fuzzing;
use tern_sim::rng::SimRng;

fn corpus_dirs() -> Vec<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The fuzz crate's corpus for the `sim_scenario` target.
    vec![here.join("../fuzz/corpus/sim_scenario")]
}

#[test]
fn corpus_inputs_keep_the_simulator_invariants() {
    let mut files = 0;
    let mut packets = 0;
    for dir in corpus_dirs() {
        assert!(dir.is_dir(), "{} is missing", dir.display());
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        for path in entries {
            let data = std::fs::read(&path).unwrap();
            let s = fuzzing::run(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            packets += s.packets;
            files += 1;
        }
    }
    assert!(
        files >= 5,
        "the committed corpus is replayed ({files} files)"
    );
    assert!(packets > 0, "the corpus exercises the network");
}

#[test]
fn generated_inputs_keep_the_simulator_invariants() {
    let mut rng = SimRng::from_seed(tern_sim::seed_from_env(2024));
    let (mut ops, mut delivered) = (0, 0);
    for i in 0..300 {
        let len = 16 + rng.below(1500) as usize;
        let data: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        let s = fuzzing::run(&data).unwrap_or_else(|e| panic!("generated input {i}: {e}"));
        ops += s.ops;
        delivered += s.delivered;
    }
    assert!(
        ops > 1000 && delivered > 100,
        "ops {ops}, delivered {delivered}"
    );
}
