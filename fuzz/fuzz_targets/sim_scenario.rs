#![no_main]
#![forbid(unsafe_code)]
//! See `tern_sim::fuzzing` for the scenario encoding and the invariants checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tern_sim::fuzzing::check_input(data));
