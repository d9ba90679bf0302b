//! Randomness: one master seed, one independent stream per named entity. A stream's seed is a
//! hash of `(master, kind, name)`, so adding a host or a link never shifts the draws of
//! another entity, and renaming nothing keeps every draw identical.

use blake2::{Blake2s256, Digest};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::time::Duration;

/// Derives per-entity streams and seeds from the master seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RngTree {
    master: u64,
}

impl RngTree {
    /// A tree for `master`.
    pub fn new(master: u64) -> Self {
        Self { master }
    }

    /// The master seed.
    pub fn master(&self) -> u64 {
        self.master
    }

    /// 32 bytes derived from `(master, kind, name)` (node seeds, identities).
    pub fn seed_bytes(&self, kind: &str, name: &str) -> [u8; 32] {
        let mut h = Blake2s256::new();
        h.update(b"tern-sim rng v1\0");
        h.update(self.master.to_le_bytes());
        h.update((kind.len() as u64).to_le_bytes());
        h.update(kind.as_bytes());
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.finalize().into()
    }

    /// An independent stream for one entity.
    pub fn stream(&self, kind: &str, name: &str) -> SimRng {
        SimRng(ChaCha8Rng::from_seed(self.seed_bytes(kind, name)))
    }
}

/// A deterministic random stream (ChaCha8) with the helpers the models need.
#[derive(Clone, Debug)]
pub struct SimRng(ChaCha8Rng);

impl SimRng {
    /// A stream seeded directly (tests).
    pub fn from_seed(seed: u64) -> Self {
        RngTree::new(seed).stream("direct", "")
    }

    /// A uniform u64.
    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A uniform float in `[0, 1)` (53 bits).
    pub fn f64(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p` (no draw at all when `p <= 0`, so a zero-rate parameter
    /// never consumes randomness).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        self.f64() < p
    }

    /// A uniform integer in `[0, n)`; `n` must be non-zero.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        // Lemire's multiply-shift with rejection: unbiased.
        let threshold = n.wrapping_neg() % n;
        loop {
            let x = self.0.next_u64();
            let m = (x as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// A uniform integer in `[lo, hi]`.
    pub fn range_u16(&mut self, lo: u16, hi: u16) -> u16 {
        assert!(lo <= hi, "empty range");
        lo + self.below(u64::from(hi - lo) + 1) as u16
    }

    /// A uniform duration in `[0, max]` with nanosecond resolution (no draw if `max` is 0).
    pub fn duration_up_to(&mut self, max: Duration) -> Duration {
        if max.is_zero() {
            return Duration::ZERO;
        }
        let n = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.below(n.saturating_add(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_independent_and_reproducible() {
        let t = RngTree::new(7);
        let a1: Vec<u64> = (0..4)
            .map({
                let mut r = t.stream("link", "a/up");
                move |_| r.u64()
            })
            .collect();
        let a2: Vec<u64> = (0..4)
            .map({
                let mut r = t.stream("link", "a/up");
                move |_| r.u64()
            })
            .collect();
        assert_eq!(a1, a2);
        assert_ne!(t.stream("link", "b/up").u64(), a1[0]);
        assert_ne!(RngTree::new(8).stream("link", "a/up").u64(), a1[0]);
        // Kind and name are length-prefixed: ("ab","c") differs from ("a","bc").
        assert_ne!(t.seed_bytes("ab", "c"), t.seed_bytes("a", "bc"));
    }

    #[test]
    fn helpers_stay_in_range() {
        let mut r = SimRng::from_seed(1);
        for _ in 0..10_000 {
            let x = r.range_u16(1024, 1030);
            assert!((1024..=1030).contains(&x));
            let f = r.f64();
            assert!((0.0..1.0).contains(&f));
            assert!(r.duration_up_to(Duration::from_millis(3)) <= Duration::from_millis(3));
        }
        assert!(!r.chance(0.0));
        assert!(r.chance(1.0));
        // Mean of below(10) is close to 4.5.
        let mean = (0..100_000).map(|_| r.below(10)).sum::<u64>() as f64 / 100_000.0;
        assert!((mean - 4.5).abs() < 0.05, "{mean}");
    }
}
