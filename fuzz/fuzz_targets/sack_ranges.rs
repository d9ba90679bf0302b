#![no_main]
#![forbid(unsafe_code)]
//! See `tern_core::fuzzing::sack_ranges` for the reference model and invariants checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tern_core::fuzzing::sack_ranges(data));
