//! Reliable streams through the simulator (issue 5, must-show 1): a thousand transfers of
//! 0 B to 4 MiB under random link profiles deliver every byte exactly once, in order, and
//! end with FIN only after the last byte; and the regression test for Pilot's truncation at
//! close (write then close under 2 % loss never arrives short).

use std::time::Duration;

use tern_core::{Config, SessionId, TransportInfo};
use tern_sim::rng::SimRng;
use tern_sim::transfer::{Opener, TransferBook, TransferSpec, Transfers};
use tern_sim::{HostId, LinkConfig, Loss, Reorder, Sim, Topology, seeds};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);
const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// The size buckets of the sweep: (count, smallest, largest) — skewed small, as agent traffic
/// is, so the sweep stays fast. The largest bucket also holds ten transfers of exactly
/// 4 MiB.
const BUCKETS: [(usize, u64, u64); 6] = [
    (50, 0, 0),
    (300, 1, KIB),
    (300, KIB + 1, 64 * KIB),
    (250, 64 * KIB + 1, MIB),
    (90, MIB + 1, 4 * MIB - 1),
    (10, 4 * MIB, 4 * MIB),
];
const SCENARIOS: usize = 50;
const PER_SCENARIO: usize = 20;

/// The 1 000 sizes, shuffled deterministically.
fn sizes() -> Vec<u64> {
    let mut rng = SimRng::from_seed(0x5eed);
    // Log-uniform within each bucket, so small sizes within a bucket are common too.
    let mut v = Vec::new();
    for &(n, lo, hi) in &BUCKETS {
        for _ in 0..n {
            v.push(if lo == hi {
                lo
            } else {
                let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
                ((l + rng.f64() * (h - l)).exp() as u64).clamp(lo, hi)
            });
        }
    }
    for k in (1..v.len()).rev() {
        v.swap(k, rng.below(k as u64 + 1) as usize);
    }
    v
}

/// A random hostile link for one direction: 0–20 % loss (independent or in bursts),
/// reordering, duplication, jitter, sometimes a bandwidth limit with a queue, rare corruption.
fn random_link(rng: &mut SimRng) -> LinkConfig {
    let rate = 0.2 * rng.f64();
    let loss = match rng.below(3) {
        0 => Loss::Bernoulli(rate),
        1 => {
            // Bursts: mean burst of 1/r packets at 50–90 % loss; mean rate `rate`.
            let (r, bad) = (0.2 + 0.3 * rng.f64(), 0.5 + 0.4 * rng.f64());
            let pi_bad = (rate / bad).min(0.9);
            Loss::GilbertElliott {
                p: r * pi_bad / (1.0 - pi_bad),
                r,
                loss_good: 0.0,
                loss_bad: bad,
            }
        }
        _ => Loss::None,
    };
    let bandwidth = rng.chance(0.5).then(|| (5 + rng.below(96)) * 1_000_000);
    LinkConfig {
        mtu: 1500,
        bandwidth_bps: bandwidth,
        queue_bytes: (32 + rng.below(1024)) as usize * 1024,
        loss,
        corrupt: if rng.chance(0.2) {
            0.01 * rng.f64()
        } else {
            0.0
        },
        duplicate: if rng.chance(0.5) {
            0.05 * rng.f64()
        } else {
            0.0
        },
        delay: Duration::from_micros(500 + rng.below(50_000)),
        jitter: Duration::from_micros(rng.below(20_000)),
        fifo: rng.chance(0.5),
        reorder: rng.chance(0.5).then(|| Reorder {
            rate: 0.1 * rng.f64(),
            hold: Duration::from_micros(1000 + rng.below(50_000)),
        }),
    }
}

fn transport(sim: &Sim, h: HostId) -> Option<(SessionId, TransportInfo)> {
    let s = sim.established(h)?;
    let info = sim.node(h).session_info(s)?;
    Some((s, info.transport?))
}

/// Every byte of 1 000 transfers arrives exactly once, in order, with the FIN after the last
/// byte, under random hostile links. 50 scenarios of 20 transfers each (both directions,
/// staggered starts, mixed priorities, many concurrent); sizes per [`BUCKETS`].
#[test]
fn a_thousand_transfers_under_random_links_arrive_exactly_once_in_order() {
    let sizes = sizes();
    let mut config = Config::default();
    // At 20 % loss each way a handshake try fails often; give it time (as sessions.rs).
    config.handshake_timeout = 60 * S;
    // The burst-loss profiles are Gilbert–Elliott chains stepped once per packet, so when
    // loss recovery has backed off to a probe every few seconds a "burst" of a few packets
    // can silence one direction for tens of seconds. The default 45 s idle timeout then
    // (correctly) ends the session; this sweep is about what arrives, so it waits longer.
    config.idle_timeout = 180 * S;
    let mut failures = Vec::new();
    let (mut moved, mut transfers) = (0u64, 0usize);
    let only = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse::<usize>().ok());
    for scenario in 0..SCENARIOS {
        if only.is_some_and(|o| o != scenario) {
            continue;
        }
        let seed = scenario as u64;
        let mut rng = SimRng::from_seed(seed ^ 0xa11);
        let up = random_link(&mut rng);
        let down = random_link(&mut rng);
        let specs: Vec<TransferSpec> = sizes[scenario * PER_SCENARIO..][..PER_SCENARIO]
            .iter()
            .map(|&size| {
                let opener = if rng.chance(0.3) {
                    Opener::Acceptor
                } else {
                    Opener::Dialer
                };
                TransferSpec::new(size, opener)
                    .at(Duration::from_millis(rng.below(5000)))
                    .priority(rng.below(3) as i8 - 1)
            })
            .collect();
        let total: u64 = specs.iter().map(|s| s.size).sum();
        let book = TransferBook::new(specs);
        let name = format!("transfers_{scenario}");
        let mut t = Topology::new(&name, seed);
        t.host("b")
            .config(config.clone())
            .app(Transfers::acceptor(&book))
            .add();
        let a = t
            .host("a")
            .links(up.clone(), down.clone())
            .config(config.clone())
            .app(Transfers::dialer(&book, "b"))
            .add();
        let mut sim = t.build();
        let done = sim.run_until(3600 * S, |_| book.all_done() || book.has_errors());
        let result = book.check();
        if !done || result.is_err() {
            failures.push(format!(
                "SIM_SEED={scenario} (t={:?}, up {up:?}, down {down:?}): {}; a: {:?}",
                sim.now(),
                result.err().unwrap_or_default(),
                transport(&sim, a)
            ));
            continue;
        }
        // Nothing was sent twice as new data: the sender's first transmissions add up to
        // exactly the bytes written (both directions).
        let b = sim.host_id("b").unwrap();
        let sent: u64 = [a, b]
            .iter()
            .filter_map(|&h| transport(&sim, h))
            .map(|(_, t)| t.stream_bytes_sent)
            .sum();
        assert_eq!(sent, total, "SIM_SEED={scenario}: new bytes sent");
        sim.check_invariants().unwrap();
        let (_, ta) = transport(&sim, a).unwrap();
        if std::env::var("SHOW").is_ok() {
            eprintln!(
                "up {up:?}\ndown {down:?}\n{ta:?}\nb drops {:?}",
                sim.node(b).stats().drops
            );
        }
        eprintln!(
            "scenario {scenario}: {total} B in {:.1} s, loss up {:.3} down {:.3}, a lost {} pkts, resent {} B",
            sim.now().as_secs_f64(),
            up.loss.mean_rate(),
            down.loss.mean_rate(),
            ta.lost_packets,
            ta.stream_bytes_retransmitted
        );
        moved += total;
        transfers += PER_SCENARIO;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{transfers} transfers, {moved} bytes, all intact");
}

/// Pilot §7: "2 % random loss: write 400 KB then close, 15 times — 8 transfers silently
/// truncated (clean EOF, 180–393 KB received)". Here: 40 runs of one 400 KB stream, written
/// as fast as flow control takes it and finished right after the last write
/// (write-then-close), over links losing 2 % at each end (≈ 4 % per direction); every one
/// must arrive whole, and the FIN must come after the last byte.
#[test]
fn pilot_regression_write_then_close_under_two_percent_loss_never_arrives_short() {
    let link = LinkConfig {
        loss: Loss::Bernoulli(0.02),
        delay: 5 * MS,
        jitter: 2 * MS,
        bandwidth_bps: Some(100_000_000),
        queue_bytes: 256 << 10,
        ..LinkConfig::default()
    };
    let mut short = Vec::new();
    for seed in seeds(40) {
        let book = TransferBook::new(vec![TransferSpec::new(400_000, Opener::Dialer)]);
        let mut t = Topology::new("pilot_truncation", seed);
        t.host("b")
            .links(link.clone(), link.clone())
            .app(Transfers::acceptor(&book))
            .add();
        t.host("a")
            .links(link.clone(), link.clone())
            .app(Transfers::dialer(&book, "b"))
            .add();
        let mut sim = t.build();
        sim.run_until(120 * S, |_| book.all_done() || book.has_errors());
        let l = book.log(0);
        // Everything was written, and FIN'd right after the last write.
        assert_eq!(l.written, 400_000);
        assert!(l.write_done_at.is_some());
        if let Err(e) = book.check() {
            short.push(format!("SIM_SEED={seed}: {e}"));
        }
    }
    assert!(short.is_empty(), "{}", short.join("\n"));
}
