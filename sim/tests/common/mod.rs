//! Helpers shared by the integration tests: traffic generators for raw hosts and measurement
//! of what arrived.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tern_sim::{HostId, RawDatagram, Sim};

/// Payload carrying a sequence number, `len` bytes long (at least 8): the number, repeated.
pub fn numbered(seq: u64, len: usize) -> Vec<u8> {
    let b = seq.to_le_bytes();
    (0..len.max(8)).map(|i| b[i % 8]).collect()
}

/// Decodes [`numbered`] by majority over the repetitions (survives one flipped bit).
pub fn seq_of(bytes: &[u8]) -> u64 {
    let mut out = [0u8; 8];
    for (k, o) in out.iter_mut().enumerate() {
        let mut counts: BTreeMap<u8, usize> = BTreeMap::new();
        for b in bytes.iter().skip(k).step_by(8) {
            *counts.entry(*b).or_default() += 1;
        }
        *o = counts
            .into_iter()
            .max_by_key(|(_, c)| *c)
            .map_or(0, |(b, _)| b);
    }
    u64::from_le_bytes(out)
}

/// Sends `n` numbered datagrams of `len` bytes from `from:port` to `to`, one every
/// `spacing`, then runs until everything has landed.
pub fn blast(
    sim: &mut Sim,
    from: HostId,
    port: u16,
    to: SocketAddr,
    n: u64,
    len: usize,
    spacing: Duration,
) {
    for seq in 0..n {
        sim.send_raw(from, port, to, &numbered(seq, len));
        sim.run_for(spacing);
    }
    assert!(sim.run_until_idle(Duration::from_secs(3600)));
}

/// Sequence numbers received, in arrival order.
pub fn arrivals(rx: &[RawDatagram]) -> Vec<u64> {
    rx.iter().map(|d| seq_of(&d.bytes)).collect()
}

/// Mean length of runs of consecutive missing numbers in `0..n` given what arrived.
pub fn mean_loss_burst(n: u64, received: &std::collections::BTreeSet<u64>) -> f64 {
    let (mut bursts, mut lost, mut in_burst) = (0u64, 0u64, false);
    for s in 0..n {
        if received.contains(&s) {
            in_burst = false;
        } else {
            lost += 1;
            if !in_burst {
                bursts += 1;
                in_burst = true;
            }
        }
    }
    if bursts == 0 {
        0.0
    } else {
        lost as f64 / bursts as f64
    }
}

/// Asserts `observed` is within `tol` of `expected`, with context.
pub fn assert_close(what: &str, observed: f64, expected: f64, tol: f64) {
    assert!(
        (observed - expected).abs() <= tol,
        "{what}: observed {observed:.5}, expected {expected:.5} ± {tol}"
    );
}

pub mod rdv;
