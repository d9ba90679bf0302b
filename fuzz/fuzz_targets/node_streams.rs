#![no_main]
#![forbid(unsafe_code)]
//! See `tern_core::fuzzing::node_streams` for the model and invariants checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tern_core::fuzzing::node_streams(data));
