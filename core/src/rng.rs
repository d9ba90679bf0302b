//! The node's only source of randomness: a ChaCha20 CSPRNG seeded from the 32 bytes given to
//! `Node::new`. Production drivers fill the seed from the OS; tests and the simulator pass
//! fixed seeds, so whole runs are reproducible.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// Seeded CSPRNG.
#[derive(Clone, Debug)]
pub struct NodeRng(ChaCha20Rng);

impl NodeRng {
    /// A generator for `seed`.
    pub fn new(seed: [u8; 32]) -> Self {
        Self(ChaCha20Rng::from_seed(seed))
    }

    /// A random u32.
    pub fn u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    /// A random u64.
    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Fills `out`.
    pub fn fill(&mut self, out: &mut [u8]) {
        self.0.fill_bytes(out);
    }

    /// 32 random bytes (a seed for a sub-generator).
    pub fn seed(&mut self) -> [u8; 32] {
        let mut s = [0u8; 32];
        self.0.fill_bytes(&mut s);
        s
    }
}
