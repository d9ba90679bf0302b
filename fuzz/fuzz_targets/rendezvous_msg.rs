#![no_main]
#![forbid(unsafe_code)]
//! See `tern_core::fuzzing::rendezvous_msg` for the invariants checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tern_core::fuzzing::rendezvous_msg(data));
