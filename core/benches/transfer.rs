//! Bulk stream transfer between two in-memory `Node`s (no sockets), in bytes per second,
//! next to the bare `aes-gcm` crate sealing and opening the same bytes in the same run
//! (issue 5, must-show 8). The difference is what the state machine costs per byte on top
//! of the AEAD: streams, frames, ACKs, loss recovery, congestion control, flow control and
//! both applications' copies.
//!
//! `cargo bench -p tern-core --bench transfer`
#![allow(clippy::disallowed_methods)]

mod common;

use common::transfer::{BareAead, Pipe};
use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};

const BYTES: u64 = 4 << 20;

fn transfer(c: &mut Criterion) {
    let mut g = c.benchmark_group("bulk_4MiB");
    g.throughput(Throughput::Bytes(BYTES));
    g.sample_size(30);
    let mut pipe = Pipe::new();
    let (p0, b0) = pipe.sent();
    let r0 = pipe.read;
    g.bench_function("tern_nodes_aes256gcm", |bench| {
        bench.iter(|| pipe.transfer(BYTES));
    });
    let (p1, b1) = pipe.sent();
    let moved = pipe.read - r0;
    eprintln!(
        "tern: {} datagrams ({:.3} per KiB of stream), {:.3} wire bytes per stream byte",
        p1 - p0,
        (p1 - p0) as f64 / (moved as f64 / 1024.0),
        (b1 - b0) as f64 / moved as f64
    );
    let mut bare = BareAead::new();
    g.bench_function("bare_aes256gcm_seal_open", |bench| {
        bench.iter(|| black_box(bare.seal_open(BYTES)));
    });
    g.finish();
}

criterion_group!(benches, transfer);
criterion_main!(benches);
