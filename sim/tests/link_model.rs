//! Each link parameter, verified by measurement over many packets (issue 4, must-show 2).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use tern_sim::{
    Direction, DropReason, Fault, HostId, LinkConfig, LinkPreset, Loss, Reorder, Sim, Topology,
    seed_from_env, seeds,
};

const MS: Duration = Duration::from_millis(1);

/// A raw sender whose uplink is `up`, and a raw receiver on an ideal link.
fn pair(name: &str, seed: u64, up: LinkConfig) -> (Sim, HostId, HostId) {
    let mut t = Topology::new(name, seed_from_env(seed));
    let a = t.host("a").raw().links(up, LinkConfig::default()).add();
    let b = t.host("b").raw().add();
    (t.build(), a, b)
}

#[test]
fn bernoulli_loss_rate_is_observed() {
    for seed in seeds(3) {
        let up = LinkConfig {
            loss: Loss::Bernoulli(0.10),
            ..LinkConfig::default()
        };
        let (mut sim, a, b) = pair("bernoulli_loss_rate_is_observed", seed, up);
        let n = 20_000;
        let dst = sim.addr(b);
        blast(&mut sim, a, 5000, dst, n, 100, MS);
        let got = sim.received(b).len() as f64;
        assert_close("loss rate", 1.0 - got / n as f64, 0.10, 0.01);
        assert_eq!(
            sim.counters().dropped(DropReason::Loss) + got as u64,
            n,
            "every packet is delivered or dropped for loss"
        );
        sim.check_invariants().unwrap();
    }
}

#[test]
fn gilbert_elliott_loss_rate_and_burst_length() {
    let loss = Loss::GilbertElliott {
        p: 0.05,
        r: 0.25,
        loss_good: 0.0,
        loss_bad: 1.0,
    };
    let up = LinkConfig {
        loss,
        ..LinkConfig::default()
    };
    let (mut sim, a, b) = pair("gilbert_elliott_loss_rate_and_burst_length", 4, up);
    let n = 40_000;
    let dst = sim.addr(b);
    blast(&mut sim, a, 5000, dst, n, 64, MS);
    let got: BTreeSet<u64> = arrivals(sim.received(b)).into_iter().collect();
    let rate = 1.0 - got.len() as f64 / n as f64;
    assert_close("GE loss rate", rate, loss.mean_rate(), 0.015);
    // Bursts: in the bad state every packet is lost, and it lasts 1/r = 4 packets on average.
    // Bernoulli loss at the same rate would give bursts of 1 / (1 - 0.167) = 1.2.
    assert_close("mean burst", mean_loss_burst(n, &got), 4.0, 0.4);
}

#[test]
fn explicit_reordering_happens_at_its_rate() {
    let up = LinkConfig {
        delay: 10 * MS,
        reorder: Some(Reorder {
            rate: 0.05,
            hold: 20 * MS,
        }),
        ..LinkConfig::default()
    };
    let (mut sim, a, b) = pair("explicit_reordering_happens_at_its_rate", 5, up);
    let n = 20_000;
    let dst = sim.addr(b);
    blast(&mut sim, a, 5000, dst, n, 64, MS);
    let order = arrivals(sim.received(b));
    assert_eq!(order.len() as u64, n, "reordering loses nothing");
    // A packet is late if a higher number arrived before it.
    let mut max = None;
    let late = order
        .iter()
        .filter(|&&s| {
            let l = max.is_some_and(|m| s < m);
            max = max.max(Some(s));
            l
        })
        .count();
    assert_close("late fraction", late as f64 / n as f64, 0.05, 0.006);
    assert_eq!(sim.link(a, Direction::Up).stats().held as usize, late);
}

#[test]
fn jitter_reorders_only_without_fifo() {
    for (fifo, expect_reordered) in [(true, false), (false, true)] {
        let up = LinkConfig {
            delay: 10 * MS,
            jitter: 5 * MS,
            fifo,
            ..LinkConfig::default()
        };
        let (mut sim, a, b) = pair("jitter_reorders_only_without_fifo", 6, up);
        let dst = sim.addr(b);
        blast(&mut sim, a, 5000, dst, 2_000, 64, MS);
        let order = arrivals(sim.received(b));
        let inversions = order.windows(2).filter(|w| w[1] < w[0]).count();
        assert_eq!(
            inversions > 0,
            expect_reordered,
            "fifo={fifo}: {inversions} inversions"
        );
        // Uniform jitter in [0, 5 ms] with 1 ms spacing: a packet overtakes its predecessor
        // with probability P(J1 - J2 > 1 ms) = (4/5)^2 / 2 = 0.32.
        if !fifo {
            assert_close(
                "adjacent inversions",
                inversions as f64 / 2_000.0,
                0.32,
                0.04,
            );
        }
    }
}

#[test]
fn duplication_happens_at_its_rate() {
    let up = LinkConfig {
        duplicate: 0.03,
        delay: 5 * MS,
        ..LinkConfig::default()
    };
    let (mut sim, a, b) = pair("duplication_happens_at_its_rate", 7, up);
    let n = 20_000;
    let dst = sim.addr(b);
    blast(&mut sim, a, 5000, dst, n, 64, MS);
    let order = arrivals(sim.received(b));
    let unique: BTreeSet<u64> = order.iter().copied().collect();
    assert_eq!(unique.len() as u64, n, "nothing lost");
    let dups = order.len() as u64 - n;
    assert_close("duplicate rate", dups as f64 / n as f64, 0.03, 0.005);
    assert_eq!(sim.counters().duplicated, dups);
    sim.check_invariants().unwrap();
}

#[test]
fn corruption_flips_one_bit_at_its_rate() {
    let up = LinkConfig {
        corrupt: 0.02,
        ..LinkConfig::default()
    };
    let (mut sim, a, b) = pair("corruption_flips_one_bit_at_its_rate", 8, up);
    let n = 20_000;
    let dst = sim.addr(b);
    blast(&mut sim, a, 5000, dst, n, 64, MS);
    let rx = sim.received(b);
    assert_eq!(rx.len() as u64, n);
    let mut corrupted = 0;
    for d in rx {
        let clean = numbered(seq_of(&d.bytes), d.bytes.len());
        let bits: u32 = clean
            .iter()
            .zip(&d.bytes)
            .map(|(x, y)| (x ^ y).count_ones())
            .sum();
        assert!(bits <= 1, "corruption flips exactly one bit, saw {bits}");
        corrupted += bits as u64;
    }
    assert_close("corruption rate", corrupted as f64 / n as f64, 0.02, 0.004);
    assert_eq!(sim.counters().corrupted, corrupted);
}

#[test]
fn packets_over_the_mtu_are_dropped() {
    let up = LinkConfig {
        mtu: 1500,
        ..LinkConfig::default()
    };
    let (mut sim, a, b) = pair("packets_over_the_mtu_are_dropped", 9, up);
    let dst = sim.addr(b);
    // 1472 + 28 bytes of IPv4/UDP header = 1500: fits. One more byte does not.
    for len in [1200, 1472, 1473, 9000, 1472] {
        sim.send_raw(a, 5000, dst, &vec![0u8; len]);
    }
    sim.run_until_idle(Duration::from_secs(1));
    let lens: Vec<usize> = sim.received(b).iter().map(|d| d.bytes.len()).collect();
    assert_eq!(lens, [1200, 1472, 1472]);
    assert_eq!(sim.counters().dropped(DropReason::Mtu), 2);
}

#[test]
fn bandwidth_limited_link_delivers_at_its_rate() {
    let rate = 1_000_000u64; // 1 Mbit/s
    let up = LinkConfig {
        bandwidth_bps: Some(rate),
        queue_bytes: 32 * 1024,
        delay: 20 * MS,
        ..LinkConfig::default()
    };
    let (mut sim, a, b) = pair("bandwidth_limited_link_delivers_at_its_rate", 10, up);
    // Offer twice the rate: 1000-byte payloads (1028 on the wire) every 4.112 ms.
    let wire = 1000 + 28;
    let spacing = Duration::from_nanos(wire as u64 * 8 * 1_000_000_000 / rate / 2);
    let dst = sim.addr(b);
    blast(&mut sim, a, 5000, dst, 5_000, 1000, spacing);
    let rx = sim.received(b);
    let span = (rx.last().unwrap().at - rx.first().unwrap().at).as_secs_f64();
    let measured = (rx.len() - 1) as f64 * wire as f64 * 8.0 / span;
    assert_close("throughput / rate", measured / rate as f64, 1.0, 0.05);
    // Half the offered load cannot fit: the queue tail-drops about half of it.
    let dropped = sim.counters().dropped(DropReason::QueueFull);
    assert_close("tail-drop share", dropped as f64 / 5_000.0, 0.5, 0.05);
    // Queueing delay never exceeds what the buffer holds: 32 KiB at 1 Mbit/s = 262 ms.
    let max_delay = rx
        .iter()
        .map(|d| d.at - spacing * seq_of(&d.bytes) as u32)
        .max()
        .unwrap();
    assert!(
        max_delay <= 20 * MS + Duration::from_millis(263),
        "{max_delay:?}"
    );
    assert!(
        max_delay >= 20 * MS + Duration::from_millis(200),
        "the queue filled: {max_delay:?}"
    );
}

#[test]
fn under_its_rate_a_link_neither_queues_nor_drops() {
    let up = LinkConfig {
        bandwidth_bps: Some(10_000_000),
        queue_bytes: 4096,
        delay: 5 * MS,
        ..LinkConfig::default()
    };
    let (mut sim, a, b) = pair("under_its_rate_a_link_neither_queues_nor_drops", 11, up);
    // 1000 B every 2 ms = 4.1 Mbit/s on the wire.
    let dst = sim.addr(b);
    blast(&mut sim, a, 5000, dst, 1_000, 1000, 2 * MS);
    let rx = sim.received(b);
    assert_eq!(rx.len(), 1_000);
    let tx = Duration::from_nanos(1028 * 8 * 100); // serialisation at 10 Mbit/s
    for d in rx {
        assert_eq!(d.at - 2 * MS * seq_of(&d.bytes) as u32, 5 * MS + tx);
    }
}

#[test]
fn delay_and_jitter_stay_in_range() {
    let up = LinkConfig {
        delay: 50 * MS,
        jitter: 10 * MS,
        fifo: false,
        ..LinkConfig::default()
    };
    let (mut sim, a, b) = pair("delay_and_jitter_stay_in_range", 12, up);
    let dst = sim.addr(b);
    blast(&mut sim, a, 5000, dst, 5_000, 64, MS);
    let delays: Vec<f64> = sim
        .received(b)
        .iter()
        .map(|d| (d.at - MS * seq_of(&d.bytes) as u32).as_secs_f64() * 1e3)
        .collect();
    assert!(delays.iter().all(|d| (50.0..=60.0).contains(d)));
    let mean = delays.iter().sum::<f64>() / delays.len() as f64;
    assert_close("mean one-way delay (ms)", mean, 55.0, 0.3);
}

#[test]
fn partition_drops_everything_until_healed() {
    let mut t = Topology::new("partition_drops_everything_until_healed", seed_from_env(13));
    let a = t.host("a").raw().link(LinkPreset::Lan).add();
    let b = t.host("b").raw().link(LinkPreset::Lan).add();
    t.fault(
        Duration::from_secs(1),
        Fault::Partition {
            host: a,
            direction: Direction::Both,
        },
    );
    t.fault(
        Duration::from_secs(2),
        Fault::Heal {
            host: a,
            direction: Direction::Both,
        },
    );
    // One way: from 3 s to 4 s only a's uplink is cut.
    t.fault(
        Duration::from_secs(3),
        Fault::Partition {
            host: a,
            direction: Direction::Up,
        },
    );
    t.fault(
        Duration::from_secs(4),
        Fault::Heal {
            host: a,
            direction: Direction::Up,
        },
    );
    let mut sim = t.build();
    let (to_b, to_a) = (sim.addr(b), sim.addr(a));
    let step = 10 * MS;
    for i in 0..500u64 {
        sim.send_raw(a, 5000, to_b, &numbered(i, 16));
        sim.send_raw(b, 5000, to_a, &numbered(i, 16));
        sim.run_for(step);
    }
    sim.run_until_idle(Duration::from_secs(1));
    let sent_at = |s: u64| step * s as u32;
    let in_window = |s: u64, from: u64, to: u64| {
        (Duration::from_secs(from)..Duration::from_secs(to)).contains(&sent_at(s))
    };
    let at_b: BTreeSet<u64> = arrivals(sim.received(b)).into_iter().collect();
    let at_a: BTreeSet<u64> = arrivals(sim.received(a)).into_iter().collect();
    for s in 0..500 {
        // Packets are cut at the sender's uplink and at the receiver's downlink, so only the
        // send time decides (a LAN hop is far shorter than the 10 ms spacing).
        let a_to_b = !in_window(s, 1, 2) && !in_window(s, 3, 4);
        let b_to_a = !in_window(s, 1, 2);
        assert_eq!(at_b.contains(&s), a_to_b, "a→b #{s}");
        assert_eq!(at_a.contains(&s), b_to_a, "b→a #{s}");
    }
    assert_eq!(
        sim.counters().dropped(DropReason::Partitioned),
        100 + 100 + 100
    );
}

#[test]
fn every_preset_passes_traffic_with_its_advertised_delay() {
    for preset in LinkPreset::ALL {
        let c = preset.config();
        let (mut sim, a, b) = pair("every_preset_passes_traffic", 14, c.clone());
        let dst = sim.addr(b);
        blast(&mut sim, a, 5000, dst, 500, 200, 20 * MS);
        let rx = sim.received(b);
        let expected = 1.0 - c.loss.mean_rate();
        assert!(
            rx.len() as f64 >= 500.0 * expected * 0.9,
            "{}: {} of 500 arrived",
            preset.name(),
            rx.len()
        );
        for d in rx {
            let delay = d.at - 20 * MS * seq_of(&d.bytes) as u32;
            assert!(
                delay >= c.delay,
                "{}: {delay:?} below the base delay",
                preset.name()
            );
        }
    }
}
