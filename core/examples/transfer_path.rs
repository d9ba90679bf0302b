//! Moves N MiB of stream data between two in-memory `Node`s (`tern N`), or seals and opens
//! the same bytes with the bare `aes-gcm` crate (`bare N`), for instruction counting under
//! callgrind (deterministic, unlike wall-clock time on a shared machine):
//!
//! ```sh
//! cargo build --release -p tern-core --example transfer_path
//! for p in tern bare; do for n in 0 64; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/transfer_path $p $n 2>&1 | grep refs
//! done; done
//! ```
//! Instructions per stream byte = (refs at 64 − refs at 0) / 64 MiB. `tern 0` still sets up
//! the pipe and moves its 16 MiB warm-up, so the difference is the steady state only.
#![allow(clippy::disallowed_methods)]

#[path = "../benches/common/transfer.rs"]
mod transfer;

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "tern".into());
    let mib: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(16);
    let bytes = mib << 20;
    if which == "tern" {
        let mut p = transfer::Pipe::new();
        p.transfer(bytes);
        println!("tern {mib} MiB {:?}", p.sent());
    } else {
        let mut b = transfer::BareAead::new();
        println!("bare {mib} MiB {}", b.seal_open(bytes));
    }
}
