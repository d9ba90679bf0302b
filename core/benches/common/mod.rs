//! Code shared by benches and examples.
pub mod transfer;
