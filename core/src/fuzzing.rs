//! Check functions for the fuzz targets and their corpus-replay tests (enabled by the
//! `fuzzing` feature; not a stable API). Each decodes an operation sequence from raw bytes
//! with [`arbitrary::Unstructured`], drives one transport building block and compares it with
//! a simple reference model, panicking on any divergence or broken invariant.

use std::time::Instant;

/// A base instant for harnesses and tests. Only offsets from it are ever used, so runs stay
/// deterministic; this is the one place outside the drivers that reads the clock.
#[allow(clippy::disallowed_methods)]
pub fn epoch() -> Instant {
    Instant::now()
}
